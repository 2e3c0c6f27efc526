//! Pure: the rollout loop's policy state and its transition.
//!
//! The loop feeds in the time, the current peer snapshot and what it observed of the
//! cluster, and gets back what to do. Everything the loop used to keep in local
//! variables lives here: when the peer set last changed (debounce), which actions are
//! still in flight, which validators are arriving, and which Events were already sent.
//!
//! The one rule: never more than `max_concurrent` workloads of one network busy, where
//! busy means unavailable (see [`super::observe`]) *or* acted on by us and not yet seen
//! to have taken effect. "Taken effect" is read from the observation itself, not from a
//! timer: an annotation is in flight until the workload is seen carrying it, a pod
//! deletion until that pod (by uid) is seen gone. So however late or stale the events
//! are, a workload we touched never looks available before the watch shows our change.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::controls::{Control, PauseLevel, Windows};
use super::observe::Observed;
use super::plan::{self, Action, Gates, Plan, PlanSettings, Report, Stuck, Wait, WorkloadKey};
use crate::peers::{Lookup, PeerSnapshot};

/// Timings of the policy.
#[derive(Clone, Debug)]
pub struct StateSettings {
    pub plan: PlanSettings,
    /// Act only once the peer set has been quiet this long.
    pub debounce: Duration,
    /// How long a validator without a workload counts as coming up.
    pub arrival_grace: Duration,
    /// How long an action may stay unobserved before it is given up (and may be redone).
    pub in_flight_timeout: Duration,
    /// When rollouts may start (`--rollout-window`); a StellarNode may override it.
    pub windows: Windows,
    /// A workload unavailable this long is reported stuck (`--stuck-after`).
    pub stuck_after: Duration,
}

impl StateSettings {
    pub fn new(plan: PlanSettings, debounce: Duration) -> Self {
        Self {
            plan,
            debounce,
            arrival_grace: Duration::from_secs(60),
            in_flight_timeout: Duration::from_secs(300),
            windows: Windows::Always,
            stuck_after: Duration::from_secs(15 * 60),
        }
    }
}

/// What an action waits for before it stops holding its network's slot.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Effect {
    /// The workload's template carries this hash.
    TemplateHash(String),
    /// No pod with this uid is seen.
    PodGone(String),
}

#[derive(Clone, Debug)]
struct InFlight {
    effect: Effect,
    since: Instant,
}

/// The result of one transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The peer set changed less than the debounce window ago: look again after this long.
    /// Live updates ([`Action::Live`]) do not wait for the burst to end: they restart
    /// nothing, so they go now (and again, idempotently, if the burst goes on).
    Debounce(Duration, Vec<Action>),
    /// The plan: its actions are to be executed in order, each reported back with
    /// [`RolloutState::record`].
    Act {
        plan: Plan,
        /// In-flight actions given up because their effect was never observed.
        expired: Vec<WorkloadKey>,
    },
}

/// The loop's policy state. Plain data: no I/O, no clock.
#[derive(Debug)]
pub struct RolloutState {
    settings: StateSettings,
    last_version: Option<u64>,
    last_change: Option<Instant>,
    in_flight: HashMap<WorkloadKey, InFlight>,
    first_seen: HashMap<(String, String), Instant>,
    notified: HashSet<(WorkloadKey, String)>,
    /// Since when each workload has been unavailable, for `--stuck-after`.
    unavailable_since: HashMap<WorkloadKey, Instant>,
    /// The newest generation seen of each workload: a view older than that (a relist
    /// from a lagging cache) is stale and counts as unavailable.
    newest_generation: HashMap<WorkloadKey, i64>,
    /// Pods we deleted, by uid: a view that shows one again is stale.
    deleted: HashMap<String, (WorkloadKey, Instant)>,
}

impl RolloutState {
    pub fn new(settings: StateSettings) -> Self {
        Self {
            settings,
            last_version: None,
            last_change: None,
            in_flight: HashMap::new(),
            first_seen: HashMap::new(),
            notified: HashSet::new(),
            unavailable_since: HashMap::new(),
            newest_generation: HashMap::new(),
            deleted: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &StateSettings {
        &self.settings
    }

    /// Workloads whose last action has not been seen to take effect yet.
    pub fn in_flight(&self) -> impl Iterator<Item = &WorkloadKey> {
        self.in_flight.keys()
    }

    /// Notes the snapshot's version (starting the debounce window when it changed).
    /// Called on every wake-up, leader or not, so that a replica that becomes leader
    /// knows how long the peer set has been quiet.
    pub fn see_snapshot(&mut self, now: Instant, snapshot: &PeerSnapshot) {
        if self.last_version != Some(snapshot.version) {
            // The first snapshot counts as a change too: a process that starts during a
            // burst of changes coalesces it like any other.
            self.last_change = Some(now);
            self.last_version = Some(snapshot.version);
        }
    }

    /// One transition: what to do now, without a wall clock (rollout windows are not
    /// checked; see [`Self::next_at`]).
    pub fn next(&mut self, now: Instant, snapshot: &PeerSnapshot, observed: &Observed) -> Next {
        self.next_at(now, None, snapshot, observed)
    }

    /// One transition at `now`, `utc_minute` being the minute of the UTC day (for the
    /// rollout windows; `None` does not check them).
    pub fn next_at(
        &mut self,
        now: Instant,
        utc_minute: Option<u16>,
        snapshot: &PeerSnapshot,
        observed: &Observed,
    ) -> Next {
        self.see_snapshot(now, snapshot);
        if let Some(changed) = self.last_change {
            let quiet = now.saturating_duration_since(changed);
            if quiet < self.settings.debounce {
                let live = self.live_now(now, utc_minute, snapshot, observed);
                return Next::Debounce(self.settings.debounce - quiet, live);
            }
        }
        let expired = self.settle_in_flight(now, observed);
        let mut busy: HashSet<WorkloadKey> = self.in_flight.keys().cloned().collect();
        busy.extend(self.stale_views(now, observed));
        let arriving = self.arriving(now, snapshot, observed);
        let (gates, stuck) = self.gates(now, utc_minute, snapshot, observed);
        let mut plan = plan::plan_gated(
            snapshot,
            &observed.workloads,
            &observed.pods,
            &busy,
            &arriving,
            &gates,
            &self.settings.plan,
        );
        // Tell the operator, once, what a control holds or what is stuck.
        for w in &plan.waiting {
            let report = match &w.why {
                Wait::Paused(level) => Report::Paused {
                    level: *level,
                    hash: w.hash.clone(),
                },
                Wait::Uninjected => Report::Uninjected {
                    hash: w.hash.clone(),
                },
                _ => continue,
            };
            plan.actions.push(Action::Report {
                key: w.key.clone(),
                network: w.network.clone(),
                report,
            });
        }
        for st in &stuck {
            plan.actions.push(Action::Report {
                key: st.key.clone(),
                network: st.network.clone(),
                report: Report::Stuck {
                    minutes: st.minutes,
                    skip_wait: st.skip_wait,
                },
            });
        }
        plan.stuck = stuck;
        // An Event for stale pods is sent once per (workload, hash), a report once per
        // (workload, what it tells); forget the ones that no longer apply, so a later
        // change is told again.
        let wanted: HashSet<(WorkloadKey, String)> =
            plan.actions.iter().filter_map(dedup_key).collect();
        self.notified.retain(|n| wanted.contains(n));
        plan.actions
            .retain(|a| dedup_key(a).is_none_or(|k| !self.notified.contains(&k)));
        Next::Act { plan, expired }
    }

    /// Reports how an action from [`Self::next`] went: `done` when the write succeeded
    /// (or, for Events, was sent).
    pub fn record(&mut self, now: Instant, action: &Action, done: bool) {
        if !done {
            return;
        }
        let effect = match action {
            Action::Annotate { hash, .. } => Effect::TemplateHash(hash.clone()),
            Action::DeletePod { key, uid, .. } => {
                self.deleted.insert(uid.clone(), (key.clone(), now));
                Effect::PodGone(uid.clone())
            }
            // Takes no slot and is idempotent: the watch shows the pod's new hash, and
            // until then the same patch again changes nothing.
            Action::Live { .. } => return,
            Action::Notify { .. } | Action::Report { .. } => {
                if let Some(k) = dedup_key(action) {
                    self.notified.insert(k);
                }
                return;
            }
        };
        self.in_flight
            .insert(action.key().clone(), InFlight { effect, since: now });
    }

    /// The live updates a plan made now would contain (none when no node takes live
    /// updates): what goes during the debounce window.
    fn live_now(
        &mut self,
        now: Instant,
        utc_minute: Option<u16>,
        snapshot: &PeerSnapshot,
        observed: &Observed,
    ) -> Vec<Action> {
        let any_live = self.settings.plan.peer_updates.is_live()
            || snapshot
                .nodes()
                .any(|n| n.record.peer_updates.is_some_and(|p| p.is_live()));
        if !any_live {
            return Vec::new();
        }
        let mut busy: HashSet<WorkloadKey> = self.in_flight.keys().cloned().collect();
        busy.extend(self.stale_views(now, observed));
        let (gates, _) = self.gates(now, utc_minute, snapshot, observed);
        plan::plan_gated(
            snapshot,
            &observed.workloads,
            &observed.pods,
            &busy,
            &[],
            &gates,
            &self.settings.plan,
        )
        .actions
        .into_iter()
        .filter(|a| matches!(a, Action::Live { .. }))
        .collect()
    }

    /// Drops in-flight actions whose effect is observed (or whose workload is gone);
    /// returns the ones given up after the timeout.
    fn settle_in_flight(&mut self, now: Instant, observed: &Observed) -> Vec<WorkloadKey> {
        let timeout = self.settings.in_flight_timeout;
        let mut expired = Vec::new();
        self.in_flight.retain(|key, f| {
            let Some(w) = observed.workloads.iter().find(|w| &w.key == key) else {
                return false; // the workload is gone: nothing of ours is pending on it
            };
            let seen = match &f.effect {
                Effect::TemplateHash(h) => w.template_hash.as_ref() == Some(h),
                Effect::PodGone(uid) => !observed.pods.iter().any(|p| &p.uid == uid),
            };
            if seen {
                return false;
            }
            if now.saturating_duration_since(f.since) >= timeout {
                expired.push(key.clone());
                return false;
            }
            true
        });
        expired.sort();
        expired
    }

    /// Workloads whose view is older than one already seen: a generation below the
    /// newest seen, or a pod we deleted shown again. Both count as busy.
    fn stale_views(&mut self, now: Instant, observed: &Observed) -> Vec<WorkloadKey> {
        let mut stale = Vec::new();
        let present: HashSet<&WorkloadKey> = observed.workloads.iter().map(|w| &w.key).collect();
        self.newest_generation.retain(|k, _| present.contains(k));
        for w in &observed.workloads {
            let newest = self
                .newest_generation
                .entry(w.key.clone())
                .or_insert(w.generation);
            if w.generation < *newest {
                stale.push(w.key.clone());
            } else {
                *newest = w.generation;
            }
        }
        let keep = self.settings.in_flight_timeout;
        self.deleted
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < keep);
        for p in &observed.pods {
            if let Some((key, _)) = self.deleted.get(&p.uid)
                && !self.in_flight.contains_key(key)
            {
                stale.push(key.clone());
            }
        }
        stale
    }

    /// The operator's controls: which stale workloads are held (paused at some level,
    /// or outside their window), which unavailable ones are stuck, and which of those
    /// are released from holding their network's slot by `skip-wait`.
    fn gates(
        &mut self,
        now: Instant,
        utc_minute: Option<u16>,
        snapshot: &PeerSnapshot,
        observed: &Observed,
    ) -> (Gates, Vec<Stuck>) {
        let mut gates = Gates::default();
        let mut stuck = Vec::new();
        let present: HashSet<&WorkloadKey> = observed.workloads.iter().map(|w| &w.key).collect();
        self.unavailable_since.retain(|k, _| present.contains(k));
        for w in &observed.workloads {
            let node = snapshot.node(&w.key.namespace, &w.instance);
            let record = node.map(|e| &e.record);
            let node_control = record.map_or(Control::Normal, |r| r.rollout);
            let pause = if observed.paused_namespaces.contains(&w.key.namespace) {
                Some(PauseLevel::Namespace)
            } else if node_control == Control::Paused {
                Some(PauseLevel::StellarNode)
            } else if w.control == Control::Paused {
                Some(PauseLevel::Workload)
            } else {
                None
            };
            if let Some(level) = pause {
                gates.held.insert(w.key.clone(), Wait::Paused(level));
            } else if let Some(minute) = utc_minute {
                let windows = record
                    .and_then(|r| r.rollout_window.as_ref())
                    .unwrap_or(&self.settings.windows);
                if !windows.open_at(minute) {
                    gates.held.insert(
                        w.key.clone(),
                        Wait::Window {
                            opens_in_minutes: windows.opens_in(minute),
                        },
                    );
                }
            }
            if w.settled {
                self.unavailable_since.remove(&w.key);
                continue;
            }
            let since = *self.unavailable_since.entry(w.key.clone()).or_insert(now);
            let down = now.saturating_duration_since(since);
            if down < self.settings.stuck_after {
                continue;
            }
            let Lookup::Found(list) = snapshot.lookup(&w.key.namespace, &w.instance) else {
                continue;
            };
            let skip_wait = w.control == Control::SkipWait || node_control == Control::SkipWait;
            if skip_wait {
                gates.released.insert(w.key.clone());
            }
            stuck.push(Stuck {
                key: w.key.clone(),
                network: list.network.clone(),
                minutes: down.as_secs() / 60,
                skip_wait,
            });
        }
        (gates, stuck)
    }

    /// Validators of the snapshot without a workload yet, within their arrival grace.
    fn arriving(
        &mut self,
        now: Instant,
        snapshot: &PeerSnapshot,
        observed: &Observed,
    ) -> Vec<(String, String)> {
        let missing = plan::without_workload(snapshot, &observed.workloads);
        self.first_seen.retain(|k, _| missing.contains(k));
        let grace = self.settings.arrival_grace;
        missing
            .into_iter()
            .filter(|k| {
                let first = *self.first_seen.entry(k.clone()).or_insert(now);
                now.saturating_duration_since(first) < grace
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

/// The key an Event-only action is told once by.
fn dedup_key(a: &Action) -> Option<(WorkloadKey, String)> {
    match a {
        Action::Notify { key, hash, .. } => Some((key.clone(), hash.clone())),
        Action::Report { key, report, .. } => Some((key.clone(), report.dedup_key())),
        _ => None,
    }
}
