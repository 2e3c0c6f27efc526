//! Edge: the rollout loop. Watches StatefulSets, Deployments and Pods of StellarNodes,
//! asks the pure planner what to do and does it (server-side apply of the template
//! annotation under our own field manager, pod deletion, Events), only while this
//! replica holds the leader Lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::observe;
use super::plan::{Action, Kind, PlanSettings, WorkloadKey, WorkloadState};
use super::state::{Next, RolloutState, StateSettings};
use crate::cache::PeerCache;
use crate::inject::{ANNOTATION_HASH, LABEL_NAME, LABEL_NAME_VALUE};
use crate::metrics::Metrics;
use crate::peers::{Lookup, PeerSnapshot};

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
    pub namespaces: Vec<String>,
    pub identity: String,
}

struct Stores {
    sts: Vec<Store<StatefulSet>>,
    deploy: Vec<Store<Deployment>>,
    pods: Vec<Store<Pod>>,
}

fn start_reflector<K>(api: Api<K>, notify: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    // Listed from the apiserver's watch cache, as informers do (see `cache::run`).
    let cfg = watcher::Config::default()
        .any_semantic()
        .labels(&format!("{LABEL_NAME}={LABEL_NAME_VALUE}"));
    let stream = reflector::reflector(
        writer,
        watcher(api, cfg).default_backoff().modify(|o: &mut K| {
            o.managed_fields_mut().clear();
        }),
    );
    tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(ev) = s.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed; retrying with backoff");
            }
            notify.notify_one();
        }
    });
    reader
}

/// Runs the loop forever; acts only while `leader` is true, and checks that again
/// right before every write.
pub async fn run(
    client: Client,
    cache: Arc<PeerCache>,
    s: RolloutSettings,
    mut leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let notify = Arc::new(Notify::new());
    let stores = Stores {
        sts: crate::cache::scoped_apis::<StatefulSet>(&client, &s.namespaces)
            .into_iter()
            .map(|a| start_reflector(a, notify.clone()))
            .collect(),
        deploy: crate::cache::scoped_apis::<Deployment>(&client, &s.namespaces)
            .into_iter()
            .map(|a| start_reflector(a, notify.clone()))
            .collect(),
        pods: crate::cache::scoped_apis::<Pod>(&client, &s.namespaces)
            .into_iter()
            .map(|a| start_reflector(a, notify.clone()))
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
    tracing::info!(mode = ?s.mode, max_concurrent = s.plan.max_concurrent, debounce = ?s.debounce, "rollout loop watching workloads");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(s.identity.clone()),
        },
    );
    let mut snaps = cache.subscribe();
    let mut state = RolloutState::new(StateSettings::new(s.plan, s.debounce));
    let mut history = History::default();
    let mut wake = Duration::ZERO;
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
        let observed = observe::observe(
            sts.iter().map(|o| &**o),
            deploy.iter().map(|o| &**o),
            pods.iter().map(|o| &**o),
        );
        let (plan, expired) = match state.next(Instant::now(), &snap, &observed) {
            Next::Debounce(left) => {
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
                .get_or_create(&crate::metrics::NetworkLabels {
                    network: net.clone(),
                })
                .set(*n as i64);
        }
        for action in plan.actions {
            // Leadership can be lost at any moment (Lease renewal failed, SIGTERM released
            // it): never write without it.
            if !*leader.borrow() {
                tracing::info!(workload = %action.key(), "not the leader any more; leaving the action to the new leader");
                break;
            }
            let outcome = execute(
                &client,
                &recorder,
                &s,
                &snap,
                &history,
                &observed.workloads,
                &action,
            )
            .await;
            metrics.rollout(action.network(), outcome);
            state.record(Instant::now(), &action, outcome != RolloutOutcome::Failed);
        }
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

/// What became of one rollout action (label `outcome` of `rollouts_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// The template was annotated or the stale pod deleted.
    Started,
    /// `--rollout=dry-run`: logged only.
    DryRun,
    /// OnDelete policy `event`: only an Event was recorded.
    EventOnly,
    /// The write failed; retried on the next pass.
    Failed,
}

impl RolloutOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::DryRun => "dry_run",
            Self::EventOnly => "event_only",
            Self::Failed => "failed",
        }
    }
}

async fn execute(
    client: &Client,
    recorder: &Recorder,
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
    let (reason, note, result): (&str, String, Result<(), kube::Error>) = match action {
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
        tracing::warn!(workload = %key, error = %e, "rollout action failed; retrying on the next pass. Check the injector's RBAC for patching workloads and deleting pods");
        return RolloutOutcome::Failed;
    }
    if dry {
        return RolloutOutcome::DryRun;
    }
    let ev = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Rollout".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &reference(key)).await {
        tracing::debug!(error = %e, "cannot record Event");
    }
    match action {
        Action::Notify { .. } => RolloutOutcome::EventOnly,
        _ => RolloutOutcome::Started,
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
