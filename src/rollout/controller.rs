//! Edge: the rollout loop. Watches StatefulSets, Deployments and Pods of StellarNodes,
//! asks the pure planner what to do and does it (server-side apply of the template
//! annotation under our own field manager, pod deletion, Events), only while this
//! replica holds the leader Lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::controls::Windows;
use super::observe;
use super::plan::{Action, Kind, PlanSettings, Report, WorkloadKey, WorkloadState};
use super::state::{Next, RolloutState, StateSettings};
use crate::inject::{ANNOTATION_HASH, LABEL_NAME, LABEL_NAME_VALUE};
use crate::obs::events::{EventSink, Notice};
use crate::obs::metrics::{Metrics, RolloutOutcome};
use crate::peers::{Lookup, PeerSnapshot};
use crate::watch::cache::PeerCache;

/// Field manager of the template annotation.
pub const FIELD_MANAGER: &str = "stellar-peer-injector";

/// `--rollout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    On,
    DryRun,
    Off,
}

/// Loop settings.
#[derive(Clone, Debug)]
pub struct RolloutSettings {
    pub mode: Mode,
    pub plan: PlanSettings,
    pub debounce: Duration,
    /// `--rollout-window`.
    pub windows: Windows,
    /// `--stuck-after`.
    pub stuck_after: Duration,
    pub namespaces: Vec<String>,
    /// This cluster's side of the cross-cluster protocol, when clusters are linked
    /// (`--cluster-name`); see [`super::coordination`].
    pub coordination: Option<super::coordination::Coordinator>,
}

/// Why a validator roll in a network shared with linked clusters cannot start now.
#[derive(Debug, thiserror::Error)]
enum NotNow {
    /// Another cluster has (or is about to have) the slot, or we back off: who and why.
    #[error("{0}")]
    Waits(String),
    /// This cluster's own rollout flag could not be read or written.
    #[error("cannot read or write this cluster's rollout flag")]
    Flags(#[source] kube::Error),
}

/// The cross-cluster protocol in this leader: the core's state
/// ([`super::linking::Linking`], clock passed in) and the reads and writes it asks for.
struct Linking {
    me: super::coordination::Coordinator,
    linked: Arc<crate::watch::remote::Linked>,
    state: super::linking::Linking,
}

impl Linking {
    /// May this leader start a validator roll in `network` now? Runs the protocol.
    async fn acquire(
        &mut self,
        client: &Client,
        snap: &PeerSnapshot,
        network: &str,
    ) -> Result<(), NotNow> {
        use super::coordination::{Phase, Seen, decide, read};
        use super::linking::{Start, keeps_intent};
        match self.state.start(network, Instant::now()) {
            Start::Holding => return Ok(()),
            Start::Renew => {
                self.me
                    .write(client, network, Phase::Holding)
                    .await
                    .map_err(NotNow::Flags)?;
                self.state.holding(network, Instant::now());
                return Ok(());
            }
            // Backed off a moment ago: no API calls until the retry is due.
            Start::BackedOff(why) => return Err(NotNow::Waits(why)),
            Start::Ask => {}
        }
        // A leader that restarted (or took over) while this cluster held the network.
        if self.me.own(client, network).await.map_err(NotNow::Flags)? == Some(Phase::Holding) {
            self.state.holding(network, Instant::now());
            return Ok(());
        }
        self.me
            .write(client, network, Phase::Intent)
            .await
            .map_err(NotNow::Flags)?;
        let mut others = Vec::new();
        for cluster in snap.clusters_sharing(network) {
            let seen = match self.linked.get(cluster, &self.me.namespace) {
                Some((c, ns)) => {
                    let peer = super::coordination::Peer {
                        cluster: cluster.to_owned(),
                        client: c,
                        namespace: ns,
                        leader_lease: self.me.leader_lease.clone(),
                        validators: snap.remote_validators(cluster, network),
                    };
                    read(&peer, network).await
                }
                None => Seen::Unknown("not linked now".into()),
            };
            others.push((cluster.to_owned(), seen));
        }
        let decision = decide(&self.me.cluster, &others);
        let Some(why) = decision.waits_for() else {
            self.me
                .write(client, network, Phase::Holding)
                .await
                .map_err(NotNow::Flags)?;
            self.state.won(network, Instant::now());
            tracing::info!(network, cluster = %self.me.cluster, "this cluster holds the network's cross-cluster rollout slot");
            return Ok(());
        };
        if !keeps_intent(&decision) {
            // Every other decision backs off: clear the flag and wait.
            self.me
                .clear(client, network)
                .await
                .map_err(NotNow::Flags)?;
        }
        if self.state.waits(network, &decision, &why, Instant::now()) {
            tracing::info!(network, "validator rollouts wait for {why}");
        }
        Err(NotNow::Waits(why))
    }

    /// Clears the flags of networks none of our validators is busy in (and intents
    /// not asked for again this tick).
    async fn release_idle(
        &mut self,
        client: &Client,
        busy: &std::collections::BTreeSet<String>,
        asked: &std::collections::BTreeSet<String>,
    ) {
        for n in self.state.idle(busy, asked) {
            match self.me.clear(client, &n).await {
                Ok(()) => {
                    if self.state.cleared(&n) {
                        tracing::info!(network = %n, "validators settled: released the network's cross-cluster rollout slot");
                    }
                }
                Err(e) => {
                    tracing::warn!(network = %n, error = %crate::causes::Chain(&e), "cannot clear this cluster's rollout flag; it expires by itself")
                }
            }
        }
    }
}

/// The networks with a validator workload of ours that is rolling, not settled, or
/// just acted on: those keep their cross-cluster slot.
fn busy_validator_networks(
    snap: &PeerSnapshot,
    workloads: &[WorkloadState],
    in_flight: &std::collections::HashSet<WorkloadKey>,
) -> std::collections::BTreeSet<String> {
    workloads
        .iter()
        .filter(|w| !w.settled || in_flight.contains(&w.key))
        .filter_map(|w| snap.node(&w.key.namespace, &w.instance))
        .filter(|e| e.record.is_peer())
        .map(|e| e.record.network.clone())
        .collect()
}

struct Stores {
    sts: Vec<Store<StatefulSet>>,
    deploy: Vec<Store<Deployment>>,
    pods: Vec<Store<Pod>>,
    namespaces: Vec<Store<Namespace>>,
}

/// The namespaces the loop works in, for their pause annotation: one watch of a single
/// namespace each (by name), or of all namespaces when it works cluster-wide.
fn namespace_watches(namespaces: &[String]) -> Vec<watcher::Config> {
    let base = watcher::Config::default().any_semantic();
    if namespaces.is_empty() {
        vec![base]
    } else {
        namespaces
            .iter()
            .map(|n| base.clone().fields(&format!("metadata.name={n}")))
            .collect()
    }
}

/// Starts a reflector whose task the caller's `tasks` owns (dropping the set stops it).
fn start_reflector<K>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    cfg: watcher::Config,
    notify: Arc<Notify>,
    strip: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, cfg)
            .default_backoff()
            .modify(move |o: &mut K| {
                o.managed_fields_mut().clear();
                strip(o);
            }),
    );
    tasks.spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                let hint = crate::causes::ApiCause::of_watch(&e).hint(
                    "the injector's ClusterRole must allow list and watch on this kind",
                    "the kind must be served by the API server",
                );
                tracing::warn!(error = %crate::causes::Chain(&e), kind = %K::kind(&Default::default()), "watch failed; retrying with backoff. {hint}");
            }
            notify.notify_one();
        }
    });
    reader
}

/// What the loop keeps of a watched StatefulSet: a Stellar one without its pod spec (the
/// loop reads labels, annotations, strategy, replicas and status), any other as an empty
/// shell, so that watching every workload costs little memory.
fn strip_sts(s: &mut StatefulSet) {
    let stellar = observe::is_stellar_workload(&s.metadata, s.spec.as_ref().map(|x| &x.template));
    if !stellar {
        shell(&mut s.metadata);
        s.spec = None;
        s.status = None;
    } else if let Some(spec) = s.spec.as_mut() {
        spec.template.spec = None;
        spec.volume_claim_templates = None;
    }
}

/// [`strip_sts`] for Deployments.
fn strip_deploy(d: &mut Deployment) {
    let stellar = observe::is_stellar_workload(&d.metadata, d.spec.as_ref().map(|x| &x.template));
    if !stellar {
        shell(&mut d.metadata);
        d.spec = None;
        d.status = None;
    } else if let Some(spec) = d.spec.as_mut() {
        spec.template.spec = None;
    }
}

fn shell(m: &mut ObjectMeta) {
    m.labels = None;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
}

/// Runs the loop forever; acts only while `leader` is true, and checks that again
/// right before every write.
pub async fn run(
    client: Client,
    cache: Arc<PeerCache>,
    s: RolloutSettings,
    mut leader: watch::Receiver<bool>,
    events: EventSink,
    metrics: Arc<Metrics>,
    linked: Arc<crate::watch::remote::Linked>,
) {
    let notify = Arc::new(Notify::new());
    // The reflectors' tasks live exactly as long as this loop.
    let mut tasks = JoinSet::new();
    // Listed from the apiserver's watch cache, as informers do (see `cache::run`). Pods
    // by their label; workloads all, since SDF's charts label only their pod templates
    // (kept: the Stellar ones, without their pod spec; the others as empty shells).
    let every = watcher::Config::default().any_semantic();
    let ours = every
        .clone()
        .labels(&format!("{LABEL_NAME}={LABEL_NAME_VALUE}"));
    let scoped = |tasks: &mut JoinSet<()>| {
        (
            crate::watch::cache::scoped_apis::<StatefulSet>(&client, &s.namespaces)
                .into_iter()
                .map(|a| start_reflector(tasks, a, every.clone(), notify.clone(), strip_sts))
                .collect(),
            crate::watch::cache::scoped_apis::<Deployment>(&client, &s.namespaces)
                .into_iter()
                .map(|a| start_reflector(tasks, a, every.clone(), notify.clone(), strip_deploy))
                .collect(),
            crate::watch::cache::scoped_apis::<Pod>(&client, &s.namespaces)
                .into_iter()
                .map(|a| start_reflector(tasks, a, ours.clone(), notify.clone(), |_| {}))
                .collect(),
        )
    };
    let (sts, deploy, pods) = scoped(&mut tasks);
    let stores = Stores {
        sts,
        deploy,
        pods,
        namespaces: namespace_watches(&s.namespaces)
            .into_iter()
            .map(|cfg| {
                start_reflector(
                    &mut tasks,
                    Api::<Namespace>::all(client.clone()),
                    cfg,
                    notify.clone(),
                    |_| {},
                )
            })
            .collect(),
    };
    for st in &stores.sts {
        let _ = st.wait_until_ready().await;
    }
    for st in &stores.deploy {
        let _ = st.wait_until_ready().await;
    }
    for st in &stores.pods {
        let _ = st.wait_until_ready().await;
    }
    for st in &stores.namespaces {
        let _ = st.wait_until_ready().await;
    }
    tracing::info!(mode = ?s.mode, max_concurrent = s.plan.max_concurrent, debounce = ?s.debounce, "rollout loop watching workloads");
    let mut snaps = cache.subscribe();
    let mut state = RolloutState::new(StateSettings {
        windows: s.windows.clone(),
        stuck_after: s.stuck_after,
        ..StateSettings::new(s.plan, s.debounce)
    });
    let mut history = History::default();
    let mut told = Told::default();
    let mut linking = s.coordination.clone().map(|me| Linking {
        me,
        linked: linked.clone(),
        state: Default::default(),
    });
    let mut wake = Duration::ZERO;
    let mut last_listing = Vec::new();
    loop {
        let tick = if s.debounce.is_zero() {
            Duration::from_secs(1)
        } else {
            s.debounce.min(Duration::from_secs(1))
        };
        let wait = if wake.is_zero() { tick } else { wake.min(tick) };
        tokio::select! {
            _ = notify.notified() => {}
            r = snaps.changed() => if r.is_err() { return; },
            r = leader.changed() => if r.is_err() { return; },
            () = tokio::time::sleep(wait) => {}
        }
        wake = Duration::ZERO;
        let Some(snap) = cache.snapshot() else {
            continue;
        };
        history.remember(&snap);
        told.tell_control_problems(&snap, &stores);
        if !*leader.borrow() {
            state.see_snapshot(Instant::now(), &snap);
            metrics.rollout_leader.set(0);
            continue;
        }
        metrics.rollout_leader.set(1);
        let (sts, deploy, pods) = (
            stores.sts.iter().flat_map(Store::state).collect::<Vec<_>>(),
            stores
                .deploy
                .iter()
                .flat_map(Store::state)
                .collect::<Vec<_>>(),
            stores
                .pods
                .iter()
                .flat_map(Store::state)
                .collect::<Vec<_>>(),
        );
        told.tell_init_failures(&snap, pods.iter().map(|o| &**o), &events, &metrics);
        let mut observed = observe::observe(
            sts.iter().map(|o| &**o),
            deploy.iter().map(|o| &**o),
            pods.iter().map(|o| &**o),
        );
        observed.paused_namespaces = stores
            .namespaces
            .iter()
            .flat_map(Store::state)
            .filter(|n| observe::namespace_paused(&n.metadata))
            .map(|n| n.name_any())
            .collect();
        let minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| super::controls::minute_of_day(d.as_secs()));
        let (plan, expired) = match state.next_at(Instant::now(), Some(minute), &snap, &observed) {
            Next::Debounce(left, live) => {
                // Live updates restart nothing: they go now, not after the burst.
                let exec = Exec {
                    client: &client,
                    events: &events,
                    s: &s,
                    snap: &snap,
                    history: &history,
                    workloads: &observed.workloads,
                    metrics: &metrics,
                };
                for action in live {
                    exec.run(&mut state, &action).await;
                }
                wake = left;
                continue;
            }
            Next::Act { plan, expired } => (plan, expired),
        };
        for key in expired {
            tracing::warn!(workload = %key, "the effect of our last rollout action was never observed; planning it again");
        }
        metrics.rollouts_pending.clear();
        for (net, n) in &plan.pending {
            metrics
                .rollouts_pending
                .get_or_create(&crate::obs::metrics::NetworkLabels {
                    network: net.clone(),
                })
                .set(*n as i64);
        }
        metrics.rollouts_waiting.clear();
        for w in &plan.waiting {
            metrics
                .rollouts_waiting
                .get_or_create(&crate::obs::metrics::WaitLabels {
                    network: w.network.clone(),
                    reason: w.why.label(),
                })
                .inc();
        }
        metrics.rollouts_stuck.clear();
        for st in &plan.stuck {
            metrics
                .rollouts_stuck
                .get_or_create(&crate::obs::metrics::NetworkLabels {
                    network: st.network.clone(),
                })
                .inc();
        }
        for w in &plan.waiting {
            tracing::debug!(workload = %w.key, network = %w.network, hash = %w.hash, "not rolled now: {}", w.why);
        }
        if s.mode == Mode::DryRun {
            dry_run_listing(&mut last_listing, &plan);
        }
        let mut asked = std::collections::BTreeSet::new();
        let mut acted: std::collections::HashSet<WorkloadKey> = Default::default();
        for action in plan.actions {
            // Leadership can be lost at any moment (Lease renewal failed, SIGTERM released
            // it): never write without it.
            if !*leader.borrow() {
                tracing::info!(workload = %action.key(), "not the leader any more; leaving the action to the new leader");
                break;
            }
            // A validator roll in a network that spans linked clusters needs its slot.
            if let Some(l) = linking.as_mut()
                && rolls_validator(&snap, &observed.workloads, &action)
                && !snap.clusters_sharing(action.network()).is_empty()
            {
                asked.insert(action.network().to_owned());
                if let Err(e) = l.acquire(&client, &snap, action.network()).await {
                    if let NotNow::Flags(source) = &e {
                        let hint = crate::causes::ApiCause::of(source).hint(
                            "the injector's Role must allow get, create, update and delete on leases.coordination.k8s.io in its namespace",
                            "the injector's namespace must exist",
                        );
                        tracing::warn!(network = %action.network(), error = %crate::causes::Chain(&e),
                            "validator rollouts of a network shared with linked clusters wait: {hint}");
                    }
                    metrics
                        .rollouts_waiting
                        .get_or_create(&crate::obs::metrics::WaitLabels {
                            network: action.network().to_owned(),
                            reason: "linked_cluster",
                        })
                        .inc();
                    continue;
                }
            }
            // A live update restarts nothing: it does not make the network busy.
            if !matches!(
                action,
                Action::Report { .. } | Action::Notify { .. } | Action::Live { .. }
            ) {
                acted.insert(action.key().clone());
            }
            Exec {
                client: &client,
                events: &events,
                s: &s,
                snap: &snap,
                history: &history,
                workloads: &observed.workloads,
                metrics: &metrics,
            }
            .run(&mut state, &action)
            .await;
        }
        if let Some(l) = linking.as_mut()
            && *leader.borrow()
        {
            let mut in_flight: std::collections::HashSet<WorkloadKey> =
                state.in_flight().cloned().collect();
            in_flight.extend(acted);
            let busy = busy_validator_networks(&snap, &observed.workloads, &in_flight);
            l.release_idle(&client, &busy, &asked).await;
        }
    }
}

/// `--rollout=dry-run`: logs every workload the loop would restart, each time that set
/// changes (the first pass lists what a first install would restart).
fn dry_run_listing(last: &mut Vec<(WorkloadKey, String)>, plan: &super::plan::Plan) {
    let restarts = plan.restarts();
    let now: Vec<(WorkloadKey, String)> = restarts
        .iter()
        .map(|r| (r.key.clone(), r.hash.clone()))
        .collect();
    if now == *last {
        return;
    }
    *last = now;
    tracing::info!(
        count = restarts.len(),
        "dry run: the rollout loop would restart {} workload(s){}",
        restarts.len(),
        if restarts.is_empty() { "" } else { ":" }
    );
    for r in &restarts {
        tracing::info!(workload = %r.key, network = %r.network, hash = %r.hash, "dry run: would restart: {}", r.next);
    }
}

/// Does `action` start or continue a validator's roll (a write that can make it unavailable)?
fn rolls_validator(snap: &PeerSnapshot, workloads: &[WorkloadState], action: &Action) -> bool {
    if !matches!(action, Action::Annotate { .. } | Action::DeletePod { .. }) {
        return false;
    }
    workloads
        .iter()
        .find(|w| &w.key == action.key())
        .and_then(|w| snap.node(&w.key.namespace, &w.instance))
        .is_some_and(|e| e.record.is_peer())
}

/// Rollout annotations that were not understood, each logged once while it stays.
#[derive(Default)]
struct Told {
    version: Option<u64>,
    told: std::collections::HashSet<String>,
    /// Failed init steps already told: `uid/pod/message`.
    init_told: std::collections::HashSet<String>,
}

impl Told {
    /// Pods whose merge-mode init step failed: one Warning Event `PeersConfigFailed` on
    /// the StellarNode per pod and reason, and `init_failures{network}` (set each round).
    fn tell_init_failures<'a>(
        &mut self,
        snap: &PeerSnapshot,
        pods: impl IntoIterator<Item = &'a Pod>,
        events: &EventSink,
        metrics: &Metrics,
    ) {
        let failures: Vec<observe::InitFailure> =
            pods.into_iter().filter_map(observe::init_failure).collect();
        metrics.init_failures.clear();
        let mut now = std::collections::HashSet::new();
        for f in &failures {
            let node = snap.node(&f.namespace, &f.instance);
            let network = node.map_or_else(String::new, |n| n.record.network.clone());
            metrics
                .init_failures
                .get_or_create(&crate::obs::metrics::NetworkLabels { network })
                .inc();
            let key = format!("{}/{}/{}", f.uid, f.pod, f.message);
            if !self.init_told.contains(&key) {
                tracing::warn!(namespace = %f.namespace, pod = %f.pod, failures = f.failures,
                    "init container {} failed: {}", crate::inject::INIT_CONTAINER_NAME, f.message);
                events.send(Notice::warning(
                    crate::obs::events::stellar_node(
                        &f.namespace,
                        &f.instance,
                        node.and_then(|n| n.record.uid.as_deref()),
                    ),
                    "PeersConfigFailed",
                    "MergeConfig",
                    format!(
                        "pod {}: init container {} failed ({} time(s)), so stellar-core cannot start: {}. Fix the base config (or its mount), or set stellar.org/config-mode=env on the StellarNode.",
                        f.pod,
                        crate::inject::INIT_CONTAINER_NAME,
                        f.failures,
                        f.message
                    ),
                ));
            }
            now.insert(key);
        }
        self.init_told = now;
    }

    fn tell_control_problems(&mut self, snap: &PeerSnapshot, stores: &Stores) {
        let mut now = std::collections::HashSet::new();
        if self.version != Some(snap.version) {
            self.version = Some(snap.version);
            for e in snap.nodes() {
                if let Some(p) = &e.record.rollout_problem {
                    now.insert(format!(
                        "StellarNode {}/{}: {p}",
                        e.record.namespace, e.record.name
                    ));
                }
            }
        } else {
            now.extend(
                self.told
                    .iter()
                    .filter(|t| t.starts_with("StellarNode "))
                    .cloned(),
            );
        }
        let mut check = |kind: &str, meta: &ObjectMeta| {
            let value = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(super::controls::ANNOTATION_ROLLOUT));
            if let (_, Some(p)) = super::controls::Control::parse(value.map(String::as_str)) {
                let name = meta.name.as_deref().unwrap_or_default();
                let what = match &meta.namespace {
                    Some(ns) => format!("{kind} {ns}/{name}"),
                    None => format!("{kind} {name}"),
                };
                now.insert(format!("{what}: {p}"));
            }
        };
        for s in stores.sts.iter().flat_map(Store::state) {
            check("StatefulSet", &s.metadata);
        }
        for d in stores.deploy.iter().flat_map(Store::state) {
            check("Deployment", &d.metadata);
        }
        for n in stores.namespaces.iter().flat_map(Store::state) {
            check("Namespace", &n.metadata);
        }
        for t in now.difference(&self.told) {
            tracing::warn!("rollout annotation ignored: {t}");
        }
        self.told = now;
    }
}

/// The last few snapshots, to say in Events which peers a rollout adds and removes.
/// Only the node being rolled has its old list looked up, so keeping them costs little:
/// rendering every node's list on every snapshot cost ~180 MiB at 10,000 StellarNodes.
#[derive(Default)]
struct History {
    recent: std::collections::VecDeque<Arc<PeerSnapshot>>,
}

/// How many snapshots back an Event can describe.
const HISTORY_DEPTH: usize = 8;

impl History {
    fn remember(&mut self, snap: &Arc<PeerSnapshot>) {
        if self
            .recent
            .front()
            .is_some_and(|s| s.version == snap.version)
        {
            return;
        }
        self.recent.push_front(snap.clone());
        self.recent.truncate(HISTORY_DEPTH);
    }

    /// Describes the change for `namespace/instance` from the list whose hash was `previous`.
    fn diff(
        &self,
        namespace: &str,
        instance: &str,
        previous: Option<&str>,
        now: &[Arc<str>],
    ) -> String {
        let old = previous.and_then(|h| {
            self.recent
                .iter()
                .find_map(|s| match s.lookup(namespace, instance) {
                    Lookup::Found(l) if *l.hash == *h => Some(l),
                    _ => None,
                })
        });
        let Some(old) = old else {
            return format!(
                "now {} peers (previous list not known to this injector)",
                now.len()
            );
        };
        let old = &old.known;
        let added: Vec<&str> = now
            .iter()
            .filter(|a| !old.contains(a))
            .map(|a| &**a)
            .collect();
        let removed: Vec<&str> = old
            .iter()
            .filter(|a| !now.contains(a))
            .map(|a| &**a)
            .collect();
        format!(
            "added [{}], removed [{}], now {} peers",
            added.join(", "),
            removed.join(", "),
            now.len()
        )
    }
}

fn reference(key: &WorkloadKey) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(key.kind.as_str().into()),
        namespace: Some(key.namespace.clone()),
        name: Some(key.name.clone()),
        ..Default::default()
    }
}

/// What executing one action needs: the write, its metric and the state's record of it.
struct Exec<'a> {
    client: &'a Client,
    events: &'a EventSink,
    s: &'a RolloutSettings,
    snap: &'a PeerSnapshot,
    history: &'a History,
    workloads: &'a [WorkloadState],
    metrics: &'a Metrics,
}

impl Exec<'_> {
    /// Executes `action`, counts its outcome and records it in the loop's state.
    async fn run(&self, state: &mut RolloutState, action: &Action) {
        let outcome = execute(
            self.client,
            self.events,
            self.s,
            self.snap,
            self.history,
            self.workloads,
            action,
        )
        .await;
        self.metrics.rollout(action.network(), outcome);
        state.record(Instant::now(), action, outcome != RolloutOutcome::Failed);
    }
}

async fn execute(
    client: &Client,
    events: &EventSink,
    s: &RolloutSettings,
    snap: &PeerSnapshot,
    history: &History,
    workloads: &[WorkloadState],
    action: &Action,
) -> RolloutOutcome {
    let key = action.key();
    let instance = workloads
        .iter()
        .find(|w| &w.key == key)
        .map(|w| w.instance.clone())
        .unwrap_or_default();
    let list = match snap.lookup(&key.namespace, &instance) {
        Lookup::Found(l) => l,
        _ => return RolloutOutcome::Failed,
    };
    let dry = s.mode == Mode::DryRun;
    let mut warning = false;
    let (reason, note, result): (&'static str, String, Result<(), kube::Error>) = match action {
        Action::Annotate {
            hash,
            previous,
            network,
            ..
        } => {
            let what = history.diff(&key.namespace, &instance, previous.as_deref(), &list.known);
            tracing::info!(workload = %key, %network, %hash, previous = ?previous, dry_run = dry, "rolling out new peers: {what}");
            let r = if dry {
                Ok(())
            } else {
                annotate(client, key, hash).await
            };
            (
                "PeersChanged",
                format!("Rolling out new peers (hash {hash}): {what}"),
                r,
            )
        }
        Action::DeletePod {
            pod,
            uid,
            hash,
            network,
            ..
        } => {
            tracing::info!(workload = %key, %network, %pod, %hash, dry_run = dry, "replacing pod with stale peers");
            let r = if dry {
                Ok(())
            } else {
                delete_pod(client, &key.namespace, pod, uid).await
            };
            (
                "PeersStalePodReplaced",
                format!(
                    "Deleted pod {pod}: its peers are stale (want hash {hash}); its replacement gets the current list"
                ),
                r,
            )
        }
        Action::Live {
            pod,
            uid,
            hash,
            network,
            config,
            count,
            ..
        } => {
            let previous = workloads
                .iter()
                .find(|w| &w.key == key)
                .and_then(|w| w.template_hash.clone());
            let what = history.diff(&key.namespace, &instance, previous.as_deref(), &list.known);
            tracing::info!(workload = %key, %network, %pod, %hash, dry_run = dry, "updating a running pod's peers live (its sidecar connects the added ones; no restart): {what}");
            let r = if dry {
                Ok(())
            } else {
                patch_pod_peers(client, &key.namespace, pod, uid, hash, config, count).await
            };
            (
                "PeersUpdatedLive",
                format!("Updated pod {pod}'s peers in place (hash {hash}), no restart: {what}"),
                r,
            )
        }
        Action::Report { report, .. } => {
            let (reason, note, warn) = report_event(key, report);
            if warn {
                tracing::warn!(workload = %key, "{note}");
            } else {
                tracing::info!(workload = %key, "{note}");
            }
            // Told once per report by the rollout state.
            warning = warn;
            (reason, note, Ok(()))
        }
        Action::Notify {
            hash, stale_pods, ..
        } => {
            tracing::warn!(workload = %key, %hash, stale_pods, "pods have stale peers; OnDelete policy is 'event', so delete them to pick up the new list");
            (
                "PeersStale",
                format!(
                    "{stale_pods} pod(s) have stale peers (want hash {hash}); delete them to pick up the new list (--on-delete-policy=event)"
                ),
                Ok(()),
            )
        }
    };
    if let Err(e) = &result {
        let hint = crate::causes::ApiCause::of(e).hint(
            "the injector's ClusterRole must allow patch on statefulsets and deployments, and delete and patch on pods",
            "the workload or pod is gone; the next pass sees it",
        );
        tracing::warn!(workload = %key, error = %crate::causes::Chain(e), "rollout action failed; retrying on the next pass. {hint}");
        return RolloutOutcome::Failed;
    }
    if dry {
        return RolloutOutcome::DryRun;
    }
    // Each action is its own Event: never deduplicated, except a live update sent again
    // (during a burst, or before the watch shows the pod's new hash): the same note.
    events.send(Notice {
        regarding: reference(key),
        warning,
        reason,
        action: "Rollout",
        note,
        dedup: matches!(action, Action::Live { .. }),
    });
    match action {
        Action::Notify { .. } | Action::Report { .. } => RolloutOutcome::EventOnly,
        Action::Live { .. } => RolloutOutcome::Live,
        _ => RolloutOutcome::Started,
    }
}

/// The Event for a report: reason, note, and whether it is a warning.
fn report_event(key: &WorkloadKey, report: &Report) -> (&'static str, String, bool) {
    match report {
        Report::Paused { level, hash } => (
            "RolloutPaused",
            format!(
                "New peers (hash {hash}) are waiting: the rollout is paused by stellar.org/rollout=paused on the {}. Remove the annotation to resume; it then rolls under the usual quorum rule",
                level.as_str()
            ),
            false,
        ),
        Report::Stuck {
            minutes,
            skip_wait: false,
        } => (
            "RolloutStuck",
            format!(
                "{key} has not been ready for {minutes} min and holds its network's rollout slot, so no other workload of the network rolls. Fix it, or annotate it stellar.org/rollout=skip-wait to let the others proceed (your decision: quorum comes first)"
            ),
            true,
        ),
        Report::Uninjected { hash } => (
            "PeersNotInjected",
            format!(
                "{key}'s pods were never injected (they predate the injector), so they run without the peer list (hash {hash}). \
                 Restart it yourself (kubectl rollout restart), or run the injector with --heal-uninjected=true \
                 (Helm: rollout.healUninjected) to have it restarted under the quorum rule"
            ),
            true,
        ),
        Report::Stuck {
            minutes,
            skip_wait: true,
        } => (
            "RolloutStuckSkipped",
            format!(
                "{key} has not been ready for {minutes} min; stellar.org/rollout=skip-wait is set, so it no longer holds its network's rollout slot and the others proceed"
            ),
            true,
        ),
    }
}

async fn annotate(client: &Client, key: &WorkloadKey, hash: &str) -> Result<(), kube::Error> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let body = |api_version: &str| {
        json!({
            "apiVersion": api_version, "kind": key.kind.as_str(),
            "metadata": {"name": key.name, "namespace": key.namespace},
            "spec": {"template": {"metadata": {"annotations": {ANNOTATION_HASH: hash}}}}
        })
    };
    match key.kind {
        Kind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), &key.namespace)
                .patch(&key.name, &pp, &Patch::Apply(body("apps/v1")))
                .await?;
        }
        Kind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), &key.namespace)
                .patch(&key.name, &pp, &Patch::Apply(body("apps/v1")))
                .await?;
        }
    }
    Ok(())
}

/// Sets a running pod's peers annotations (snippet, hash, count), only if it is still
/// the pod the plan saw (a JSON patch that tests its uid). The kubelet then rewrites the
/// snippet file, which the pod's live sidecar follows.
async fn patch_pod_peers(
    client: &Client,
    ns: &str,
    name: &str,
    uid: &str,
    hash: &str,
    config: &str,
    count: &str,
) -> Result<(), kube::Error> {
    use crate::inject::{ANNOTATION_CONFIG, ANNOTATION_COUNT, ANNOTATION_HASH};
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    let ops = serde_json::json!([
        { "op": "test", "path": "/metadata/uid", "value": uid },
        { "op": "add", "path": format!("/metadata/annotations/{}", esc(ANNOTATION_CONFIG)), "value": config },
        { "op": "add", "path": format!("/metadata/annotations/{}", esc(ANNOTATION_HASH)), "value": hash },
        { "op": "add", "path": format!("/metadata/annotations/{}", esc(ANNOTATION_COUNT)), "value": count },
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    match Api::<Pod>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or replaced by another pod of the same name: the next pass sees it.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete_pod(client: &Client, ns: &str, name: &str, uid: &str) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<Pod>::namespaced(client.clone(), ns)
        .delete(name, &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
