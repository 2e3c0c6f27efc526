//! Edge: a watch-backed cache of StellarNodes that publishes immutable peer snapshots.
//!
//! Each watched namespace (or the whole cluster) has its own kube-runtime watcher.
//! Objects are kept as lenient [`NodeRecord`]s, so a malformed StellarNode is
//! skipped alone (see [`WatchedNode`] for why not kube's `DeserializeGuard`). A re-list (after a watch expires or kube-apiserver restarts) is
//! buffered until it completes, so readers keep the last good snapshot meanwhile and
//! never see an empty or partial one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use futures::stream::{AbortHandle, BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;

use crate::crd::StellarNode;
use crate::nodes::NodeRecord;
use crate::obs::metrics::Metrics;
use crate::peers::{PeerSettings, PeerSnapshot};
use crate::watch::remote::{Link, LinkOrigin};

/// A StellarNode as the watcher decodes it: minimal metadata and a lenient record.
///
/// Its API names (group, version, kind, plural, scope) are those of the one
/// definition, the derived [`StellarNode`]; only the decoding differs. Decoding never
/// fails: every defect of the spec becomes the record's `problem`, field by field
/// ([`NodeRecord::from_json`]), so one bad object is one problem and the rest of a list
/// still loads. kube's `DeserializeGuard<StellarNode>` would isolate failures too, but
/// it keeps only serde's message without the field's path (a user would read `invalid
/// type: integer`, not `spec.nodeType must be a string`), so the record would need this
/// reader anyway for its per-field problems; and it buffers and clones every object
/// before the typed decode, on the start-up list of 10,000 StellarNodes.
#[derive(Clone, Debug)]
pub struct WatchedNode {
    metadata: ObjectMeta,
    /// `None` when the object has no name (never from a real API server).
    pub record: Option<NodeRecord>,
}

impl<'de> Deserialize<'de> for WatchedNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let m = v.get("metadata");
        let s = |k: &str| {
            m.and_then(|m| m.get(k))
                .and_then(|x| x.as_str())
                .map(str::to_owned)
        };
        let metadata = ObjectMeta {
            name: s("name"),
            namespace: s("namespace"),
            resource_version: s("resourceVersion"),
            uid: s("uid"),
            ..ObjectMeta::default()
        };
        let record = NodeRecord::from_json(&v, "");
        Ok(Self { metadata, record })
    }
}

/// Every name from [`StellarNode`]'s derive (`crate::crd`).
impl Resource for WatchedNode {
    type DynamicType = <StellarNode as Resource>::DynamicType;
    type Scope = <StellarNode as Resource>::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        StellarNode::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        StellarNode::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        StellarNode::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        StellarNode::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

type Key = (String, String);

/// The current snapshot, readable without locks on the request path.
pub struct PeerCache {
    current: ArcSwapOption<PeerSnapshot>,
    tx: watch::Sender<Option<Arc<PeerSnapshot>>>,
    version: AtomicU64,
}

impl Default for PeerCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerCache {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(None);
        Self {
            current: ArcSwapOption::empty(),
            tx,
            version: AtomicU64::new(0),
        }
    }

    /// The current snapshot, `None` until the first complete list.
    pub fn snapshot(&self) -> Option<Arc<PeerSnapshot>> {
        self.current.load_full()
    }

    /// Cheap access for the request path.
    pub fn load(&self) -> arc_swap::Guard<Option<Arc<PeerSnapshot>>> {
        self.current.load()
    }

    pub fn is_synced(&self) -> bool {
        self.current.load().is_some()
    }

    /// Notifies on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<PeerSnapshot>>> {
        self.tx.subscribe()
    }

    /// Builds and publishes a snapshot from `records`.
    pub fn publish<'a>(
        &self,
        records: impl IntoIterator<Item = &'a NodeRecord>,
        settings: &PeerSettings,
    ) -> Arc<PeerSnapshot> {
        self.publish_linked(records, std::iter::empty(), settings)
    }

    /// Builds and publishes a snapshot from this cluster's and linked clusters' records.
    pub fn publish_linked<'a, 'c>(
        &self,
        local: impl IntoIterator<Item = &'a NodeRecord>,
        remote: impl IntoIterator<Item = (&'c str, &'a NodeRecord)>,
        settings: &PeerSettings,
    ) -> Arc<PeerSnapshot> {
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        let snap = Arc::new(PeerSnapshot::build_linked(version, local, remote, settings));
        self.current.store(Some(snap.clone()));
        self.tx.send_replace(Some(snap.clone()));
        snap
    }
}

/// One watched scope: its live objects and the re-list in progress.
#[derive(Default)]
struct Scope {
    live: HashMap<Key, NodeRecord>,
    relist: Option<HashMap<Key, NodeRecord>>,
    synced: bool,
}

fn key_of(n: &WatchedNode) -> Option<(Key, NodeRecord)> {
    let r = n.record.clone()?;
    Some(((r.namespace.clone(), r.name.clone()), r))
}

impl Scope {
    /// Applies one event; returns whether the live set changed.
    fn apply(&mut self, ev: Event<WatchedNode>) -> bool {
        match ev {
            Event::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            Event::InitApply(n) => {
                if let (Some(buf), Some((k, r))) = (self.relist.as_mut(), key_of(&n)) {
                    buf.insert(k, r);
                }
                false
            }
            Event::InitDone => {
                if let Some(buf) = self.relist.take() {
                    let changed = buf != self.live || !self.synced;
                    self.live = buf;
                    self.synced = true;
                    changed
                } else {
                    false
                }
            }
            Event::Apply(n) => match key_of(&n) {
                Some((k, r)) => self.live.insert(k, r.clone()).as_ref() != Some(&r),
                None => false,
            },
            Event::Delete(n) => match key_of(&n) {
                Some((k, _)) => self.live.remove(&k).is_some(),
                None => false,
            },
        }
    }
}

/// Where the StellarNodes come from: this cluster, and the clusters linked to it.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Watched namespaces of this cluster (empty: all).
    pub namespaces: Vec<String>,
    /// The namespace whose labelled Secrets link clusters (`None`: no Secret watch).
    pub link_namespace: Option<String>,
    /// Links given as files (`--remote-kubeconfig NAME=PATH`), fixed for the process.
    pub link_files: Vec<crate::watch::remote::Link>,
    /// How long the first snapshot waits for every linked cluster's first list.
    pub first_sync_timeout: std::time::Duration,
    /// Where the linked clusters' clients are published for the rollout loop.
    pub linked: Arc<crate::watch::remote::Linked>,
    /// This cluster's `--cluster-name`: a link Secret naming it is refused.
    pub own_cluster: Option<String>,
}

/// One event for the loop, tagged with its source.
enum Msg {
    Local(usize, watcher::Result<Event<WatchedNode>>),
    Secret(watcher::Result<Event<Secret>>),
    /// From a linked cluster's watch: (cluster, link generation, event).
    Remote(Arc<str>, u64, watcher::Result<Event<WatchedNode>>),
}

/// One linked cluster.
struct Remote {
    link: Link,
    /// Bumped on every relink: events of an older watch are dropped.
    generation: u64,
    abort: AbortHandle,
    scope: Scope,
    /// Its last list or watch request succeeded.
    healthy: bool,
    last_sync: Option<i64>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The loop's state: every source's objects, and what is linked.
struct Feeds {
    local: Vec<Scope>,
    /// The link Secrets as listed (by name), with re-lists buffered like [`Scope`]'s.
    secrets: HashMap<String, Secret>,
    secrets_relist: Option<HashMap<String, Secret>>,
    secrets_synced: bool,
    remotes: BTreeMap<String, Remote>,
    next_generation: u64,
    /// Link errors already logged (text), so a broken Secret is told once per content.
    told: BTreeSet<String>,
    /// The linked clusters' clients, for the rollout loop.
    linked: Arc<crate::watch::remote::Linked>,
    /// This cluster's name: never linked.
    own_cluster: Option<String>,
}

impl Feeds {
    /// Starts or restarts the watch of a linked cluster, keeping its last known nodes
    /// until the new watch has listed them (a relink never empties it).
    async fn link(
        &mut self,
        link: Link,
        events: &mut SelectAll<BoxStream<'static, Msg>>,
        metrics: &Metrics,
    ) {
        let client = match link.client().await {
            Ok(c) => c,
            Err(e) => {
                self.tell_link_error(&e, metrics);
                return;
            }
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        let cluster: Arc<str> = Arc::from(link.cluster.as_str());
        self.linked
            .set(&link.cluster, client.clone(), link.lease_namespace.clone());
        let api: Api<WatchedNode> = Api::all(client);
        let (stream, abort) = futures::stream::abortable(
            watcher(api, watcher::Config::default().any_semantic()).default_backoff(),
        );
        events.push(
            stream
                .map(move |ev| Msg::Remote(cluster.clone(), generation, ev))
                .boxed(),
        );
        let name = link.cluster.clone();
        tracing::info!(cluster = %name, origin = %link.origin, "linking cluster");
        match self.remotes.get_mut(&name) {
            Some(r) => {
                r.abort.abort();
                r.link = link;
                r.generation = generation;
                r.abort = abort;
            }
            None => {
                metrics.observe_remote(&name, false, 0, None);
                self.remotes.insert(
                    name,
                    Remote {
                        link,
                        generation,
                        abort,
                        scope: Scope::default(),
                        healthy: false,
                        last_sync: None,
                    },
                );
            }
        }
    }

    fn tell_link_error(&mut self, e: &crate::watch::remote::LinkError, metrics: &Metrics) {
        metrics.errors(crate::obs::metrics::ErrorKind::RemoteLink);
        let text = crate::causes::chain(e);
        if self.told.insert(text.clone()) {
            tracing::warn!(error = %text, "cannot link a cluster; fix the link Secret or file (a cluster linked before stays linked)");
        }
    }

    /// Links, relinks and unlinks so that the Secret-made links are those the Secrets ask for.
    async fn reconcile_links(
        &mut self,
        events: &mut SelectAll<BoxStream<'static, Msg>>,
        metrics: &Metrics,
    ) -> bool {
        let previous: BTreeMap<String, Link> = self
            .remotes
            .iter()
            .filter(|(_, r)| matches!(r.link.origin, LinkOrigin::Secret(_)))
            .map(|(c, r)| (c.clone(), r.link.clone()))
            .collect();
        let (mut wanted, errors) = crate::watch::remote::desired_links(
            self.secrets.values(),
            &previous,
            self.own_cluster.as_deref(),
        );
        for e in &errors {
            self.tell_link_error(e, metrics);
        }
        // A file link names its cluster for good: a Secret naming the same one is ignored.
        wanted.retain(|c, l| match self.remotes.get(c) {
            Some(r) if matches!(r.link.origin, LinkOrigin::File(_)) => {
                let e = format!(
                    "{} names cluster {c}, which --remote-kubeconfig links already; it is ignored",
                    l.origin
                );
                if self.told.insert(e.clone()) {
                    tracing::warn!("{e}");
                }
                false
            }
            _ => true,
        });
        let mut changed = false;
        for c in previous.keys() {
            if !wanted.contains_key(c)
                && let Some(r) = self.remotes.remove(c)
            {
                r.abort.abort();
                self.linked.remove(c);
                metrics.forget_remote(c);
                tracing::info!(cluster = %c, "unlinked cluster: its StellarNodes leave the peers");
                changed = true;
            }
        }
        for (c, l) in wanted {
            let same = self
                .remotes
                .get(&c)
                .is_some_and(|r| r.link.fingerprint == l.fingerprint && r.link.origin == l.origin);
            if !same {
                self.link(l, events, metrics).await;
            }
        }
        changed
    }

    /// Every linked cluster has listed its StellarNodes once.
    fn remotes_synced(&self) -> bool {
        self.remotes.values().all(|r| r.scope.synced)
    }

    fn publish(&self, cache: &PeerCache, settings: &PeerSettings) -> Arc<PeerSnapshot> {
        let remote = self
            .remotes
            .iter()
            .flat_map(|(c, r)| r.scope.live.values().map(move |n| (c.as_str(), n)));
        cache.publish_linked(
            self.local.iter().flat_map(|s| s.live.values()),
            remote,
            settings,
        )
    }

    /// Applies one event; returns whether the peers may have changed.
    async fn handle(
        &mut self,
        msg: Msg,
        events: &mut SelectAll<BoxStream<'static, Msg>>,
        metrics: &Metrics,
    ) -> bool {
        match msg {
            Msg::Local(i, ev) => handle(&mut self.local[i], ev),
            Msg::Remote(cluster, generation, ev) => {
                let Some(r) = self
                    .remotes
                    .get_mut(&*cluster)
                    .filter(|r| r.generation == generation)
                else {
                    return false; // from a watch since replaced or unlinked
                };
                let changed = match ev {
                    Ok(ev) => {
                        let complete =
                            matches!(ev, Event::InitDone | Event::Apply(_) | Event::Delete(_));
                        let changed = r.scope.apply(ev);
                        if complete {
                            r.healthy = true;
                            r.last_sync = Some(unix_now());
                        }
                        changed
                    }
                    Err(e) => {
                        metrics.remote_error(&cluster);
                        if r.healthy || !r.scope.synced {
                            let hint = crate::causes::ApiCause::of_watch(&e).hint(
                                "the link's credentials must allow list and watch on stellarnodes.stellar.org there (run remote-secret again)",
                                "the StellarNode CRD must be installed in that cluster",
                            );
                            tracing::warn!(cluster = %cluster, error = %crate::causes::Chain(&e), "linked cluster unreachable or refusing: keeping its last known peers and retrying with backoff. {hint}");
                        }
                        r.healthy = false;
                        false
                    }
                };
                metrics.observe_remote(
                    &cluster,
                    r.healthy && r.scope.synced,
                    r.scope.live.len(),
                    r.last_sync,
                );
                changed
            }
            Msg::Secret(ev) => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        let hint = crate::causes::ApiCause::of_watch(&e).hint(
                            "the injector's Role must allow list and watch on secrets in its namespace",
                            "the injector's namespace must exist",
                        );
                        tracing::warn!(error = %crate::causes::Chain(&e), "link Secret watch failed; retrying with backoff and keeping the links. {hint}");
                        return false;
                    }
                };
                let name = |s: &Secret| s.metadata.name.clone().unwrap_or_default();
                let settled = match ev {
                    Event::Init => {
                        self.secrets_relist = Some(HashMap::new());
                        false
                    }
                    Event::InitApply(s) => {
                        if let Some(buf) = self.secrets_relist.as_mut() {
                            buf.insert(name(&s), s);
                        }
                        false
                    }
                    Event::InitDone => {
                        if let Some(buf) = self.secrets_relist.take() {
                            self.secrets = buf;
                        }
                        self.secrets_synced = true;
                        true
                    }
                    Event::Apply(s) => {
                        self.secrets.insert(name(&s), s);
                        self.secrets_synced
                    }
                    Event::Delete(s) => {
                        self.secrets.remove(&name(&s));
                        self.secrets_synced
                    }
                };
                settled && self.reconcile_links(events, metrics).await
            }
        }
    }
}

/// Runs the watchers forever, publishing a snapshot whenever the peers may have changed.
///
/// The first snapshot waits until this cluster's StellarNodes are listed, the link
/// Secrets too, and every linked cluster's StellarNodes, but for linked clusters at
/// most `first_sync_timeout`: a restart then does not inject short lists and roll
/// again a moment later, and an unreachable linked cluster cannot keep the injector
/// from serving.
pub async fn run(
    client: Client,
    sources: Sources,
    settings: PeerSettings,
    cache: Arc<PeerCache>,
    metrics: Arc<Metrics>,
) {
    let apis: Vec<Api<WatchedNode>> = scoped_apis(&client, &sources.namespaces);
    let mut feeds = Feeds {
        local: apis.iter().map(|_| Scope::default()).collect(),
        secrets: HashMap::new(),
        secrets_relist: None,
        secrets_synced: sources.link_namespace.is_none(),
        remotes: BTreeMap::new(),
        next_generation: 0,
        told: BTreeSet::new(),
        linked: sources.linked.clone(),
        own_cluster: sources.own_cluster.clone(),
    };
    let streams = apis.into_iter().enumerate().map(|(i, api)| {
        // Lists are served from the apiserver's watch cache (resourceVersion "0", what
        // client-go informers do): one response instead of pages read from etcd, about
        // 4x faster to ready with 10,000 StellarNodes. The watch that follows brings any
        // change the cache had not seen yet.
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .map(move |ev| Msg::Local(i, ev))
            .boxed()
    });
    let mut events: SelectAll<BoxStream<'static, Msg>> = futures::stream::select_all(streams);
    if let Some(ns) = &sources.link_namespace {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let cfg = watcher::Config::default()
            .labels(&format!("{}=true", crate::watch::remote::REMOTE_LABEL))
            .any_semantic();
        events.push(
            kube::runtime::watcher(api, cfg)
                .default_backoff()
                .map(Msg::Secret)
                .boxed(),
        );
    }
    for link in sources.link_files.clone() {
        feeds.link(link, &mut events, &metrics).await;
    }
    let deadline = tokio::time::Instant::now() + sources.first_sync_timeout;
    let mut waited_out = sources.first_sync_timeout.is_zero();
    let mut logged: BTreeSet<crate::peers::Problem> = BTreeSet::new();
    let mut logged_remote: BTreeSet<crate::peers::RemoteProblem> = BTreeSet::new();
    let mut dirty = false;
    loop {
        let first = cache.snapshot().is_none();
        let msg = if first && !waited_out {
            tokio::select! {
                m = events.next() => m,
                () = tokio::time::sleep_until(deadline) => {
                    waited_out = true;
                    dirty = true;
                    let late: Vec<&str> = feeds.remotes.iter().filter(|(_, r)| !r.scope.synced).map(|(c, _)| c.as_str()).collect();
                    if !late.is_empty() {
                        tracing::warn!(clusters = ?late, timeout = ?sources.first_sync_timeout,
                            "linked clusters not listed in time: serving without their peers until they are (see --remote-sync-timeout)");
                    }
                    None
                }
            }
        } else {
            match events.next().await {
                Some(m) => Some(m),
                None => return,
            }
        };
        if let Some(m) = msg {
            dirty |= feeds.handle(m, &mut events, &metrics).await;
        }
        // Take everything already waiting, then publish once.
        while let Some(Some(m)) = events.next().now_or_never() {
            dirty |= feeds.handle(m, &mut events, &metrics).await;
        }
        let ready = feeds.local.iter().all(|s| s.synced)
            && feeds.secrets_synced
            && (!first || waited_out || feeds.remotes_synced());
        if dirty && ready {
            dirty = false;
            let snap = feeds.publish(&cache, &settings);
            metrics.observe_snapshot(&snap);
            let now: BTreeSet<crate::peers::Problem> = snap.problems.iter().cloned().collect();
            for p in now.difference(&logged) {
                tracing::warn!(node = %p.node, kind = ?p.kind, problem = %p.message, "StellarNode skipped or corrected; fix the object to clear this warning");
            }
            logged = now;
            let now: BTreeSet<crate::peers::RemoteProblem> =
                snap.remote_problems.iter().cloned().collect();
            for p in now.difference(&logged_remote) {
                tracing::warn!(cluster = %p.cluster, node = %p.node, problem = %p.message, "validator of a linked cluster left out; fix the object in that cluster");
            }
            logged_remote = now;
            tracing::info!(
                version = snap.version,
                nodes = snap.node_count(),
                linked_clusters = snap.remotes.len(),
                networks = snap.networks().count(),
                "peer snapshot published"
            );
        }
    }
}

fn watcher(
    api: Api<WatchedNode>,
    cfg: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<WatchedNode>>> + Send + 'static {
    watcher::watcher(api, cfg)
}

fn handle(scope: &mut Scope, ev: watcher::Result<Event<WatchedNode>>) -> bool {
    match ev {
        Ok(ev) => scope.apply(ev),
        Err(e) => {
            let hint = crate::causes::ApiCause::of_watch(&e).hint(
                "the injector's ClusterRole must allow list and watch on stellarnodes.stellar.org",
                "the StellarNode CRD (stellarnodes.stellar.org) must be installed",
            );
            tracing::warn!(error = %crate::causes::Chain(&e), "StellarNode watch failed; retrying with backoff and serving the last good snapshot. {hint}");
            false
        }
    }
}

/// One `Api` per watched namespace, or a single cluster-wide one when none is given.
pub fn scoped_apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// One snapshot from the cluster, listed once (for `peers` and `explain`): the
/// StellarNodes in `namespaces` (all when empty) and those of every cluster linked by
/// `sources`. The notes say which linked clusters could not be listed.
pub async fn snapshot_once(
    client: &Client,
    namespaces: &[String],
    sources: &Sources,
    settings: &PeerSettings,
) -> Result<(PeerSnapshot, Vec<String>), kube::Error> {
    let records = list_once(client.clone(), namespaces).await?;
    let (remote, notes) = list_linked(client, sources).await?;
    let snapshot = PeerSnapshot::build_linked(
        1,
        &records,
        remote
            .iter()
            .flat_map(|(c, rs)| rs.iter().map(move |r| (c.as_str(), r))),
        settings,
    );
    Ok((snapshot, notes))
}

/// Lists StellarNodes once.
async fn list_once(client: Client, namespaces: &[String]) -> Result<Vec<NodeRecord>, kube::Error> {
    let apis: Vec<Api<WatchedNode>> = scoped_apis(&client, namespaces);
    let mut out = Vec::new();
    for api in apis {
        let list = api.list(&Default::default()).await?;
        out.extend(list.items.into_iter().filter_map(|n| n.record));
    }
    Ok(out)
}

/// Lists the linked clusters' StellarNodes once: the links are the files and, with
/// `link_namespace`, the link Secrets there. A cluster that cannot be listed is left out,
/// with its error.
async fn list_linked(
    client: &Client,
    sources: &Sources,
) -> Result<(Vec<(String, Vec<NodeRecord>)>, Vec<String>), kube::Error> {
    let mut links: BTreeMap<String, Link> = BTreeMap::new();
    let mut errors = Vec::new();
    for l in &sources.link_files {
        links.insert(l.cluster.clone(), l.clone());
    }
    if let Some(ns) = &sources.link_namespace {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let lp = kube::api::ListParams::default()
            .labels(&format!("{}=true", crate::watch::remote::REMOTE_LABEL));
        let secrets = api.list(&lp).await?;
        let (wanted, errs) = crate::watch::remote::desired_links(
            &secrets.items,
            &BTreeMap::new(),
            sources.own_cluster.as_deref(),
        );
        errors.extend(errs.iter().map(|e| crate::causes::chain(e)));
        for (c, l) in wanted {
            links.entry(c).or_insert(l);
        }
    }
    let mut out = Vec::new();
    for (cluster, link) in links {
        let listed = match link.client().await {
            Ok(c) => list_once(c, &[]).await.map_err(|e| e.to_string()),
            Err(e) => Err(crate::causes::chain(&e)),
        };
        match listed {
            Ok(records) => out.push((cluster, records)),
            Err(e) => errors.push(format!(
                "cluster {cluster} ({}): {e}; its peers are not shown",
                link.origin
            )),
        }
    }
    Ok((out, errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wn(name: &str, net: &str) -> WatchedNode {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"},
            "spec": {"nodeType": "Validator", "network": net}}),
        )
        .expect("node")
    }

    #[test]
    fn relist_is_buffered_until_done() {
        let mut s = Scope::default();
        assert!(!s.apply(Event::Init));
        assert!(!s.apply(Event::InitApply(wn("a", "testnet"))));
        assert!(!s.synced);
        assert!(s.apply(Event::InitDone));
        assert!(s.synced);
        assert_eq!(s.live.len(), 1);
        // A re-list in progress leaves the live set alone.
        assert!(!s.apply(Event::Init));
        assert!(!s.apply(Event::InitApply(wn("b", "testnet"))));
        assert_eq!(s.live.len(), 1);
        assert!(s.apply(Event::InitDone));
        assert_eq!(
            s.live.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        // The same list again changes nothing.
        s.apply(Event::Init);
        s.apply(Event::InitApply(wn("b", "testnet")));
        assert!(!s.apply(Event::InitDone));
    }

    #[test]
    fn apply_and_delete_report_changes() {
        let mut s = Scope::default();
        assert!(s.apply(Event::Apply(wn("a", "testnet"))));
        assert!(!s.apply(Event::Apply(wn("a", "testnet"))), "same content");
        assert!(s.apply(Event::Apply(wn("a", "mainnet"))));
        assert!(s.apply(Event::Delete(wn("a", "mainnet"))));
        assert!(!s.apply(Event::Delete(wn("a", "mainnet"))));
    }

    #[test]
    fn api_names_are_the_crds() {
        use kube::CustomResourceExt;
        let crd = StellarNode::crd();
        assert_eq!(WatchedNode::group(&()), crd.spec.group);
        assert_eq!(WatchedNode::plural(&()), crd.spec.names.plural);
        assert_eq!(WatchedNode::kind(&()), crd.spec.names.kind);
        assert_eq!(WatchedNode::version(&()), crd.spec.versions[0].name);
        assert_eq!(
            WatchedNode::url_path(&(), Some("ns")),
            "/apis/stellar.org/v1alpha1/namespaces/ns/stellarnodes"
        );
    }

    #[test]
    fn malformed_objects_decode_leniently() {
        let n: WatchedNode = serde_json::from_value(
            json!({"metadata": {"name": "x", "namespace": "ns"}, "spec": {"nodeType": 5}}),
        )
        .expect("lenient");
        assert!(n.record.expect("record").problem.is_some());
        assert_eq!(n.metadata.name.as_deref(), Some("x"));
    }
}
