//! Pure rollout planning: a peer snapshot and the workloads' observed state in,
//! the next actions out. No I/O and no clock: the loop supplies both.
//!
//! Rules:
//! - a workload is stale when its pod template's `stellar.org/peers-hash` differs
//!   from the hash its StellarNode should have, or (template current or unset) when
//!   one of its pods carries another hash or none (missed injection);
//! - within one network at most `max_concurrent` workloads are busy (rolling, not
//!   ready, or just acted on) at once, counting busy ones we did not start;
//! - validators of a network roll before its Horizon and Soroban RPC nodes;
//! - RollingUpdate workloads roll by a template annotation change; OnDelete
//!   StatefulSets and pods that missed injection are replaced one pod at a time.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::controls::{Control, PauseLevel};
use crate::inject::{ANNOTATION_HASH, ANNOTATION_OPT_OUT};
use crate::live::PeerUpdates;
use crate::peers::{Lookup, PeerSnapshot};

/// StatefulSet or Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    StatefulSet,
    Deployment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StatefulSet => "StatefulSet",
            Self::Deployment => "Deployment",
        }
    }
}

/// Identifies a workload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// What the loop observed of one StatefulSet or Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadState {
    pub key: WorkloadKey,
    /// The `app.kubernetes.io/instance` label: the StellarNode's name.
    pub instance: String,
    pub template_hash: Option<String>,
    /// Template annotated `stellar.org/inject-peers: "false"`.
    pub opted_out: bool,
    /// `updateStrategy: OnDelete` (StatefulSets only).
    pub on_delete: bool,
    pub replicas: i32,
    /// `metadata.generation` (0 when unset).
    pub generation: i64,
    /// The controller has finished: generation observed, all replicas updated
    /// (RollingUpdate) and ready.
    pub settled: bool,
    /// The workload's own `stellar.org/rollout` annotation.
    pub control: Control,
}

/// What the loop observed of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub instance: String,
    pub hash: Option<String>,
    pub ready: bool,
    pub terminating: bool,
    pub opted_out: bool,
    /// It carries the live sidecar: a peer change can reach it without a restart.
    pub live: bool,
}

/// What the OnDelete / healing path may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDeletePolicy {
    /// Delete stale pods one at a time.
    Delete,
    /// Only record an Event.
    Event,
}

/// Planner settings.
#[derive(Clone, Copy, Debug)]
pub struct PlanSettings {
    pub max_concurrent: usize,
    pub on_delete: OnDeletePolicy,
    /// Restart workloads that were never injected (`--heal-uninjected`): no pod of theirs
    /// and not their template carries a peers hash, so they predate the injector (or were
    /// all created while it was down under failurePolicy Ignore). Off: they wait, told.
    pub heal_uninjected: bool,
    /// What a peer change does where the StellarNode does not say
    /// (`stellar.org/peer-updates`).
    pub peer_updates: PeerUpdates,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the template annotation to `hash` (rolls RollingUpdate workloads).
    Annotate {
        key: WorkloadKey,
        network: String,
        hash: String,
        previous: Option<String>,
    },
    /// Delete one stale pod (OnDelete StatefulSets, pods that missed injection).
    DeletePod {
        key: WorkloadKey,
        network: String,
        pod: String,
        uid: String,
        hash: String,
    },
    /// Update one running pod's peers in place: its snippet annotation and hash. Its live
    /// sidecar rewrites the merged file and calls `connect` for the added peers. Takes
    /// no slot: nothing restarts.
    Live {
        key: WorkloadKey,
        network: String,
        pod: String,
        uid: String,
        hash: String,
        /// The new snippet (`stellar.org/peers-config`) and peer count.
        config: String,
        count: String,
    },
    /// Stale pods that policy forbids deleting: tell the user.
    Notify {
        key: WorkloadKey,
        network: String,
        hash: String,
        stale_pods: usize,
    },
    /// Tell the operator about a rollout control taking effect (an Event, no write).
    Report {
        key: WorkloadKey,
        network: String,
        report: Report,
    },
}

/// What a [`Action::Report`] tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A rollout to `hash` is held by a pause.
    Paused { level: PauseLevel, hash: String },
    /// The workload has been unavailable this long, holding its network's slot unless
    /// released by `skip-wait`.
    Stuck { minutes: u64, skip_wait: bool },
    /// None of its pods was ever injected, and `--heal-uninjected` is off.
    Uninjected { hash: String },
}

impl Report {
    /// Told once per distinct value of this key (see `state`).
    pub fn dedup_key(&self) -> String {
        match self {
            Self::Paused { level, hash } => format!("paused:{}:{hash}", level.as_str()),
            Self::Stuck { skip_wait, .. } => format!("stuck:{skip_wait}"),
            Self::Uninjected { hash } => format!("uninjected:{hash}"),
        }
    }
}

impl Action {
    pub fn key(&self) -> &WorkloadKey {
        match self {
            Self::Annotate { key, .. }
            | Self::Live { key, .. }
            | Self::DeletePod { key, .. }
            | Self::Notify { key, .. }
            | Self::Report { key, .. } => key,
        }
    }

    pub fn network(&self) -> &str {
        match self {
            Self::Annotate { network, .. }
            | Self::Live { network, .. }
            | Self::DeletePod { network, .. }
            | Self::Notify { network, .. }
            | Self::Report { network, .. } => network,
        }
    }
}

/// Why a stale workload is not acted on now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Paused by `stellar.org/rollout: paused` at this level.
    Paused(PauseLevel),
    /// Outside its rollout window; it opens in this many minutes.
    Window { opens_in_minutes: u16 },
    /// It is itself not settled (or our last action on it is still in flight).
    Settling,
    /// Its network's slots are held by these (workloads, or validators still arriving).
    Slot { held_by: Vec<String> },
    /// The network's validators roll first.
    ValidatorsFirst,
    /// Never injected (it predates the injector), and `--heal-uninjected` is off.
    Uninjected,
}

impl Wait {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Paused(_) => "paused",
            Self::Window { .. } => "window",
            Self::Settling => "settling",
            Self::Slot { .. } => "slot",
            Self::ValidatorsFirst => "validators_first",
            Self::Uninjected => "uninjected",
        }
    }
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Paused(level) => {
                write!(f, "paused by stellar.org/rollout on its {}", level.as_str())
            }
            Self::Window { opens_in_minutes } => {
                write!(
                    f,
                    "outside its rollout window (opens in {opens_in_minutes} min)"
                )
            }
            Self::Settling => f.write_str("waiting for itself to settle"),
            Self::Slot { held_by } => {
                write!(f, "waiting for the slot held by {}", held_by.join(", "))
            }
            Self::ValidatorsFirst => {
                f.write_str("waiting for its network's validators to roll first")
            }
            Self::Uninjected => f.write_str(
                "never injected (its pods predate the injector); restarted only with --heal-uninjected=true, or restart it yourself",
            ),
        }
    }
}

/// A stale workload that waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub key: WorkloadKey,
    pub network: String,
    pub hash: String,
    pub why: Wait,
}

/// Operator controls the planner obeys, worked out by the caller (see `state`).
#[derive(Clone, Debug, Default)]
pub struct Gates {
    /// Stale workloads that must not be acted on now (paused, outside their window).
    pub held: HashMap<WorkloadKey, Wait>,
    /// Unavailable workloads that do not hold their network's slot: stuck and marked
    /// `skip-wait` by the operator.
    pub released: HashSet<WorkloadKey>,
}

/// A workload that has held its network's slot for longer than `--stuck-after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    pub key: WorkloadKey,
    pub network: String,
    pub minutes: u64,
    /// Released by `stellar.org/rollout: skip-wait`: it no longer holds the slot.
    pub skip_wait: bool,
}

/// The plan: actions, plus how many stale workloads wait per network, why each waits,
/// and which workloads are stuck.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub pending: BTreeMap<String, usize>,
    pub waiting: Vec<Waiting>,
    pub stuck: Vec<Stuck>,
}

/// What the loop will do about one stale workload: now, or why not yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Roll it by a template annotation.
    Roll,
    /// Replace this stale pod (OnDelete, or a pod that missed injection).
    ReplacePod(String),
    /// Only an Event about its stale pods (`--on-delete-policy=event`).
    EventOnly,
    /// Update this running pod's peers in place (live policy).
    Live(String),
    /// It waits.
    Wait(Wait),
}

impl std::fmt::Display for NextStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Roll => f.write_str("roll now (template annotation)"),
            Self::ReplacePod(p) => write!(f, "replace pod {p} now"),
            Self::EventOnly => f.write_str("an Event only (--on-delete-policy=event)"),
            Self::Live(p) => write!(f, "update pod {p} live (connect, no restart)"),
            Self::Wait(w) => w.fmt(f),
        }
    }
}

/// One stale workload of a plan and what happens to it next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub key: WorkloadKey,
    pub network: String,
    pub hash: String,
    pub next: NextStep,
}

impl Plan {
    /// Every stale workload, acted on now or waiting, sorted by network then workload:
    /// what `--rollout=dry-run` logs and `explain --all` prints.
    pub fn restarts(&self) -> Vec<Restart> {
        let mut out: Vec<Restart> = self
            .actions
            .iter()
            .filter_map(|a| {
                let (next, hash) = match a {
                    Action::Annotate { hash, .. } => (NextStep::Roll, hash),
                    Action::DeletePod { pod, hash, .. } => {
                        (NextStep::ReplacePod(pod.clone()), hash)
                    }
                    Action::Notify { hash, .. } => (NextStep::EventOnly, hash),
                    Action::Live { pod, hash, .. } => (NextStep::Live(pod.clone()), hash),
                    Action::Report { .. } => return None,
                };
                Some(Restart {
                    key: a.key().clone(),
                    network: a.network().to_owned(),
                    hash: hash.clone(),
                    next,
                })
            })
            .chain(self.waiting.iter().map(|w| Restart {
                key: w.key.clone(),
                network: w.network.clone(),
                hash: w.hash.clone(),
                next: NextStep::Wait(w.why.clone()),
            }))
            .collect();
        out.sort_by(|a, b| a.network.cmp(&b.network).then(a.key.cmp(&b.key)));
        out
    }
}

#[derive(Debug)]
enum Need {
    Template,
    Pods(Vec<usize>),
}

/// Plans the next actions. `recently_acted` are workloads acted on whose change the
/// watch has not shown yet; `arriving` are validators (namespace, name) whose workload
/// the operator has not created yet. Both count as busy in their network.
pub fn plan(
    snapshot: &PeerSnapshot,
    workloads: &[WorkloadState],
    pods: &[PodState],
    recently_acted: &HashSet<WorkloadKey>,
    arriving: &[(String, String)],
    settings: &PlanSettings,
) -> Plan {
    plan_gated(
        snapshot,
        workloads,
        pods,
        recently_acted,
        arriving,
        &Gates::default(),
        settings,
    )
}

/// [`plan`], obeying the operator's [`Gates`]: a held workload is never acted on and
/// takes no slot; a released one does not hold its network's slot.
pub fn plan_gated(
    snapshot: &PeerSnapshot,
    workloads: &[WorkloadState],
    pods: &[PodState],
    recently_acted: &HashSet<WorkloadKey>,
    arriving: &[(String, String)],
    gates: &Gates,
    settings: &PlanSettings,
) -> Plan {
    let mut pods_by: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, p) in pods.iter().enumerate() {
        pods_by
            .entry((&p.namespace, &p.instance))
            .or_default()
            .push(i);
    }
    // Per network: busy count and candidates (tier, key, workload index, need, hash).
    struct Net<'a> {
        busy: usize,
        busy_names: Vec<String>,
        stale_validators: usize,
        candidates: Vec<(u8, &'a WorkloadKey, usize, Need, String)>,
    }
    let mut nets: BTreeMap<String, Net<'_>> = BTreeMap::new();
    let mut waiting = Vec::new();
    let mut live = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        if w.opted_out {
            continue;
        }
        let Some(entry) = snapshot.node(&w.key.namespace, &w.instance) else {
            continue;
        };
        let Lookup::Found(list) = snapshot.lookup(&w.key.namespace, &w.instance) else {
            continue;
        };
        let tier = entry.record.kind.rollout_tier();
        let net = nets.entry(list.network.clone()).or_insert_with(|| Net {
            busy: 0,
            busy_names: Vec::new(),
            stale_validators: 0,
            candidates: Vec::new(),
        });
        let busy =
            (!w.settled && !gates.released.contains(&w.key)) || recently_acted.contains(&w.key);
        if busy {
            net.busy += 1;
            net.busy_names.push(w.key.to_string());
        }
        if w.replicas == 0 {
            continue;
        }
        let desired = &list.hash;
        let own_pods: Vec<usize> = pods_by
            .get(&(w.key.namespace.as_str(), w.instance.as_str()))
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&i| !pods[i].opted_out && !pods[i].terminating)
                    .collect()
            })
            .unwrap_or_default();
        let mut stale_pods: Vec<usize> = own_pods
            .iter()
            .copied()
            .filter(|&i| pods[i].hash.as_ref() != Some(desired))
            .collect();
        let policy = entry.record.peer_updates.unwrap_or(settings.peer_updates);
        // Live: running pods with the sidecar are updated in place, now, without a slot.
        // Not while the workload rolls (its new pods get the current list at creation:
        // a live update and a restart never meet in one pod), nor while it is paused.
        let paused = matches!(gates.held.get(&w.key), Some(Wait::Paused(_)));
        if policy.is_live() && !busy && !paused {
            stale_pods.retain(|&i| {
                let p = &pods[i];
                if !p.live {
                    return true;
                }
                live.push(Action::Live {
                    key: w.key.clone(),
                    network: list.network.clone(),
                    pod: p.name.clone(),
                    uid: p.uid.clone(),
                    hash: desired.clone(),
                    config: list.config.clone(),
                    count: list.count.clone(),
                });
                false
            });
        }
        // Annotating an OnDelete StatefulSet rolls nothing: replace its pods directly.
        let rolls_on_template = !(w.key.kind == Kind::StatefulSet && w.on_delete);
        let template_stale = w.template_hash.as_ref().is_some_and(|h| h != desired);
        let need = match &w.template_hash {
            // Live alone leaves the template as it is: its pods are current in place, and
            // a pod created later gets the current list from the webhook.
            Some(_) if template_stale && policy == PeerUpdates::Live && stale_pods.is_empty() => {
                None
            }
            Some(_) if template_stale => Some(Need::Template),
            None if !stale_pods.is_empty() && rolls_on_template => Some(Need::Template),
            _ if !stale_pods.is_empty() => Some(Need::Pods(stale_pods)),
            _ => None,
        };
        // No pod of it and not its template was ever injected: it predates the injector.
        let never_injected = w.template_hash.is_none()
            && !own_pods.is_empty()
            && own_pods.iter().all(|&i| pods[i].hash.is_none());
        if let Some(need) = need {
            if never_injected && !settings.heal_uninjected {
                waiting.push(Waiting {
                    key: w.key.clone(),
                    network: list.network.clone(),
                    hash: desired.clone(),
                    why: Wait::Uninjected,
                });
                continue;
            }
            if let Some(why) = gates.held.get(&w.key) {
                waiting.push(Waiting {
                    key: w.key.clone(),
                    network: list.network.clone(),
                    hash: desired.clone(),
                    why: why.clone(),
                });
                continue;
            }
            let notify_only =
                matches!(need, Need::Pods(_)) && settings.on_delete == OnDeletePolicy::Event;
            if tier == 0 && !notify_only {
                net.stale_validators += 1;
            }
            // Busy workloads stay pending and are not acted on until they settle.
            let rank = if busy { u8::MAX } else { tier };
            net.candidates
                .push((rank, &w.key, wi, need, desired.clone()));
        }
    }
    for (ns, name) in arriving {
        if let Some(e) = snapshot.node(ns, name).filter(|e| e.record.is_peer()) {
            let net = nets.entry(e.record.network.clone()).or_insert_with(|| Net {
                busy: 0,
                busy_names: Vec::new(),
                stale_validators: 0,
                candidates: Vec::new(),
            });
            net.busy += 1;
            net.busy_names
                .push(format!("StellarNode {ns}/{name} (arriving)"));
        }
    }
    let mut out = Plan {
        actions: live,
        ..Plan::default()
    };
    for w in &waiting {
        *out.pending.entry(w.network.clone()).or_default() += 1;
    }
    out.waiting = waiting;
    for (network, mut net) in nets {
        net.candidates
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
        let pending = net.candidates.len();
        if pending > 0 {
            *out.pending.entry(network.clone()).or_default() += pending;
        }
        let mut free = settings.max_concurrent.saturating_sub(net.busy);
        for (tier, key, wi, need, hash) in net.candidates {
            let wait = |why| Waiting {
                key: key.clone(),
                network: network.clone(),
                hash: hash.clone(),
                why,
            };
            if tier == u8::MAX {
                out.waiting.push(wait(Wait::Settling));
                continue; // busy: wait for it to settle
            }
            let w = &workloads[wi];
            let on_delete_path = matches!(need, Need::Pods(_));
            if on_delete_path && settings.on_delete == OnDeletePolicy::Event {
                if let Need::Pods(stale) = &need {
                    out.actions.push(Action::Notify {
                        key: key.clone(),
                        network: network.clone(),
                        hash,
                        stale_pods: stale.len(),
                    });
                }
                continue;
            }
            if tier > 0 && net.stale_validators > 0 {
                out.waiting.push(wait(Wait::ValidatorsFirst));
                continue; // validators of this network first
            }
            if free == 0 {
                // Held by the busy ones, and by those this plan acts on now.
                out.waiting.push(wait(Wait::Slot {
                    held_by: net.busy_names.clone(),
                }));
                continue;
            }
            free -= 1;
            net.busy_names.push(key.to_string());
            match need {
                Need::Template => {
                    // The list being replaced: the template's, else the one its pods carry.
                    let previous = w.template_hash.clone().or_else(|| {
                        pods_by
                            .get(&(w.key.namespace.as_str(), w.instance.as_str()))
                            .and_then(|v| v.iter().find_map(|&i| pods[i].hash.clone()))
                    });
                    out.actions.push(Action::Annotate {
                        key: key.clone(),
                        network: network.clone(),
                        hash,
                        previous,
                    })
                }
                Need::Pods(stale) => {
                    // One pod at a time, lowest name first, only when none is unready.
                    if let Some(&pi) = stale
                        .iter()
                        .min_by(|&&a, &&b| pods[a].name.cmp(&pods[b].name))
                    {
                        let p = &pods[pi];
                        out.actions.push(Action::DeletePod {
                            key: key.clone(),
                            network: network.clone(),
                            pod: p.name.clone(),
                            uid: p.uid.clone(),
                            hash,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Validators of the snapshot that have no workload among `workloads`.
pub fn without_workload(
    snapshot: &PeerSnapshot,
    workloads: &[WorkloadState],
) -> Vec<(String, String)> {
    let have: HashSet<(&str, &str)> = workloads
        .iter()
        .map(|w| (w.key.namespace.as_str(), w.instance.as_str()))
        .collect();
    snapshot
        .nodes()
        .filter(|e| {
            e.record.is_peer()
                && !have.contains(&(e.record.namespace.as_str(), e.record.name.as_str()))
        })
        .map(|e| (e.record.namespace.clone(), e.record.name.clone()))
        .collect()
}

/// Reads the fields the planner needs from a pod-template or pod annotation map.
pub fn hash_and_opt_out(annotations: Option<&BTreeMap<String, String>>) -> (Option<String>, bool) {
    let Some(a) = annotations else {
        return (None, false);
    };
    let opted = a
        .get(ANNOTATION_OPT_OUT)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    (a.get(ANNOTATION_HASH).cloned(), opted)
}

#[cfg(test)]
mod tests;
