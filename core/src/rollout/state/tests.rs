//! The policy state fed delayed, reordered and status-less observations.

use std::time::{Duration, Instant};

use super::*;
use crate::live::PeerUpdates;
use crate::nodes::{NodeKind, NodeRecord};
use crate::peers::{Lookup, PeerSettings};
use crate::rollout::controls::{Control, Windows};
use crate::rollout::observe::{Observed, combine};
use crate::rollout::plan::{Kind, OnDeletePolicy, PodState, Wait, WorkloadState};

const ONE: PlanSettings = PlanSettings {
    max_concurrent: 1,
    on_delete: OnDeletePolicy::Delete,
    heal_uninjected: false,
    peer_updates: PeerUpdates::Restart,
};

fn snap(version: u64, names: &[&str]) -> PeerSnapshot {
    let recs: Vec<NodeRecord> = names
        .iter()
        .map(|n| NodeRecord::new("ns", n, NodeKind::Validator, "testnet"))
        .collect();
    PeerSnapshot::build(version, &recs, &PeerSettings::default())
}

fn hash(s: &PeerSnapshot, name: &str) -> String {
    match s.lookup("ns", name) {
        Lookup::Found(l) => l.hash.clone(),
        other => panic!("{other:?}"),
    }
}

fn key(name: &str) -> WorkloadKey {
    WorkloadKey {
        kind: Kind::StatefulSet,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn wl(name: &str, hash: &str, settled: bool, generation: i64) -> WorkloadState {
    WorkloadState {
        key: key(name),
        instance: name.into(),
        template_hash: Some(hash.into()),
        opted_out: false,
        on_delete: false,
        replicas: 1,
        generation,
        settled,
        control: Control::Normal,
    }
}

fn pod(name: &str, uid: &str, hash: &str, ready: bool) -> PodState {
    PodState {
        namespace: "ns".into(),
        name: format!("{name}-0"),
        uid: uid.into(),
        instance: name.into(),
        hash: Some(hash.into()),
        ready,
        terminating: false,
        opted_out: false,
        live: false,
    }
}

fn settings(debounce: Duration) -> StateSettings {
    StateSettings::new(ONE, debounce)
}

fn acts(n: &Next) -> Vec<String> {
    match n {
        Next::Debounce(..) => vec!["debounce".into()],
        Next::Act { plan, .. } => plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Annotate { key, .. } => format!("annotate {}", key.name),
                Action::DeletePod { pod, .. } => format!("delete {pod}"),
                Action::Live { pod, .. } => format!("live {pod}"),
                Action::Notify { key, .. } => format!("notify {}", key.name),
                Action::Report { key, report, .. } => {
                    format!("report {} {}", key.name, report.dedup_key())
                }
            })
            .collect(),
    }
}

fn record_all(st: &mut RolloutState, now: Instant, n: &Next) {
    if let Next::Act { plan, .. } = n {
        for a in &plan.actions {
            st.record(now, a, true);
        }
    }
}

/// v1 and v2 current for {v1, v2}; v3 just added.
fn three() -> (PeerSnapshot, PeerSnapshot) {
    (snap(1, &["v1", "v2"]), snap(2, &["v1", "v2", "v3"]))
}

fn obs(w: Vec<WorkloadState>, p: Vec<PodState>) -> Observed {
    combine(w, p)
}

#[test]
fn debounce_waits_for_a_quiet_peer_set() {
    let t0 = Instant::now();
    let (old, new) = three();
    let mut st = RolloutState::new(settings(Duration::from_secs(10)));
    st.see_snapshot(t0, &old);
    let o = obs(vec![], vec![]);
    assert_eq!(
        st.next(t0 + Duration::from_secs(4), &new, &o),
        Next::Debounce(Duration::from_secs(10), vec![])
    );
    assert_eq!(
        st.next(t0 + Duration::from_secs(9), &new, &o),
        Next::Debounce(Duration::from_secs(5), vec![])
    );
    assert!(matches!(
        st.next(t0 + Duration::from_secs(14), &new, &o),
        Next::Act { .. }
    ));
}

/// Live updates do not wait for the debounce window: they restart nothing. The rolls of
/// the same change still wait for it.
#[test]
fn live_updates_go_during_the_debounce_window() {
    let t0 = Instant::now();
    let (old, new) = three();
    let live = PlanSettings {
        peer_updates: PeerUpdates::Live,
        ..ONE
    };
    let mut st = RolloutState::new(StateSettings::new(live, Duration::from_secs(10)));
    st.see_snapshot(t0, &old);
    let (h1, h2) = (hash(&old, "v1"), hash(&old, "v2"));
    let mut pods = vec![pod("v1", "u1", &h1, true), pod("v2", "u2", &h2, true)];
    pods[0].live = true; // v2-0 predates the sidecar: it waits and restarts
    let o = obs(vec![wl("v1", &h1, true, 1), wl("v2", &h2, true, 1)], pods);
    match st.next(t0 + Duration::from_secs(1), &new, &o) {
        Next::Debounce(left, actions) => {
            assert_eq!(left, Duration::from_secs(10));
            let names: Vec<String> = actions
                .iter()
                .map(|a| match a {
                    Action::Live { pod, hash: h, .. } => {
                        format!("{pod} {}", h == &hash(&new, "v1"))
                    }
                    other => panic!("only live updates during the window: {other:?}"),
                })
                .collect();
            assert_eq!(names, ["v1-0 true"]);
        }
        other => panic!("{other:?}"),
    }
    // With restart (the default) nothing goes during the window.
    let mut st = RolloutState::new(settings(Duration::from_secs(10)));
    st.see_snapshot(t0, &old);
    assert_eq!(
        st.next(t0 + Duration::from_secs(1), &new, &o),
        Next::Debounce(Duration::from_secs(10), vec![])
    );
}

#[test]
fn a_new_validator_seen_before_its_workload_or_its_status_holds_the_slot() {
    let t0 = Instant::now();
    let (old, new) = three();
    let (h1o, h2o) = (hash(&old, "v1"), hash(&old, "v2"));
    let h3 = hash(&new, "v3");
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let base = vec![wl("v1", &h1o, true, 1), wl("v2", &h2o, true, 1)];
    let pods = vec![pod("v1", "u1", &h1o, true), pod("v2", "u2", &h2o, true)];
    // StellarNode v3 known, its StatefulSet not yet seen: arriving.
    let n = st.next(t0, &new, &obs(base.clone(), pods.clone()));
    assert!(acts(&n).is_empty(), "{n:?}");
    // Its StatefulSet seen without status (sts_state makes that unsettled).
    let mut w = base.clone();
    w.push(wl("v3", &h3, false, 1));
    let n = st.next(
        t0 + Duration::from_secs(1),
        &new,
        &obs(w.clone(), pods.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    // Its status says ready but its pod is not seen yet.
    w[2].settled = true;
    let n = st.next(
        t0 + Duration::from_secs(2),
        &new,
        &obs(w.clone(), pods.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    // Its pod is seen, not ready.
    let mut p = pods.clone();
    p.push(pod("v3", "u3", &h3, false));
    let n = st.next(
        t0 + Duration::from_secs(3),
        &new,
        &obs(w.clone(), p.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    // Ready: exactly one of the others starts.
    p[2].ready = true;
    let n = st.next(t0 + Duration::from_secs(4), &new, &obs(w, p));
    assert_eq!(acts(&n), ["annotate v1"]);
}

#[test]
fn an_arriving_validator_stops_holding_the_slot_after_its_grace() {
    let t0 = Instant::now();
    let (old, new) = three();
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let o = obs(
        vec![
            wl("v1", &hash(&old, "v1"), true, 1),
            wl("v2", &hash(&old, "v2"), true, 1),
        ],
        vec![
            pod("v1", "u1", &hash(&old, "v1"), true),
            pod("v2", "u2", &hash(&old, "v2"), true),
        ],
    );
    assert!(acts(&st.next(t0, &new, &o)).is_empty());
    let later = t0 + st.settings().arrival_grace;
    assert_eq!(acts(&st.next(later, &new, &o)), ["annotate v1"]);
}

#[test]
fn an_annotation_holds_the_slot_until_the_watch_shows_it_however_late() {
    let t0 = Instant::now();
    let (old, new) = three();
    let (h1o, h2o, h1, h2, h3) = (
        hash(&old, "v1"),
        hash(&old, "v2"),
        hash(&new, "v1"),
        hash(&new, "v2"),
        hash(&new, "v3"),
    );
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let stale = obs(
        vec![
            wl("v1", &h1o, true, 1),
            wl("v2", &h2o, true, 1),
            wl("v3", &h3, true, 1),
        ],
        vec![
            pod("v1", "u1", &h1o, true),
            pod("v2", "u2", &h2o, true),
            pod("v3", "u3", &h3, true),
        ],
    );
    let n = st.next(t0, &new, &stale);
    assert_eq!(acts(&n), ["annotate v1"]);
    record_all(&mut st, t0, &n);
    // The watch keeps showing the old v1 for minutes: v2 is never started meanwhile.
    for s in [1, 5, 30, 120, 299] {
        let n = st.next(t0 + Duration::from_secs(s), &new, &stale);
        assert!(acts(&n).is_empty(), "after {s} s: {n:?}");
    }
    // Our change seen, status not caught up.
    let mut w = stale.workloads.clone();
    w[0] = wl("v1", &h1, false, 2);
    let n = st.next(
        t0 + Duration::from_secs(300),
        &new,
        &obs(w.clone(), stale.pods.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    // Status says done but the pod seen is still the old one being replaced.
    w[0].settled = true;
    let mut p = stale.pods.clone();
    p[0] = pod("v1", "u1b", &h1, false);
    let n = st.next(
        t0 + Duration::from_secs(301),
        &new,
        &obs(w.clone(), p.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    p[0].ready = true;
    let n = st.next(
        t0 + Duration::from_secs(302),
        &new,
        &obs(w.clone(), p.clone()),
    );
    assert_eq!(acts(&n), ["annotate v2"]);
    record_all(&mut st, t0 + Duration::from_secs(302), &n);
    // A relist from a lagging cache shows v1 at its old generation again: it holds
    // the slot instead of looking available.
    let mut back = w.clone();
    back[0] = wl("v1", &h1o, true, 1);
    back[1] = wl("v2", &h2, false, 2);
    let n = st.next(t0 + Duration::from_secs(303), &new, &obs(back, p.clone()));
    assert!(acts(&n).is_empty(), "{n:?}");
    let _ = h2;
}

#[test]
fn an_action_never_observed_is_given_up_after_the_timeout() {
    let t0 = Instant::now();
    let (old, new) = three();
    let h3 = hash(&new, "v3");
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let stale = obs(
        vec![
            wl("v1", &hash(&old, "v1"), true, 1),
            wl("v2", &hash(&old, "v2"), true, 1),
            wl("v3", &h3, true, 1),
        ],
        vec![
            pod("v1", "u1", &hash(&old, "v1"), true),
            pod("v2", "u2", &hash(&old, "v2"), true),
            pod("v3", "u3", &h3, true),
        ],
    );
    let n = st.next(t0, &new, &stale);
    record_all(&mut st, t0, &n);
    let timeout = st.settings().in_flight_timeout;
    match st.next(t0 + timeout, &new, &stale) {
        Next::Act { plan, expired } => {
            assert_eq!(expired, [key("v1")]);
            // Redone on the same workload, never a second one.
            assert_eq!(plan.actions.len(), 1);
            assert_eq!(plan.actions[0].key(), &key("v1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_write_does_not_hold_the_slot() {
    let t0 = Instant::now();
    let (old, new) = three();
    let h3 = hash(&new, "v3");
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let o = obs(
        vec![
            wl("v1", &hash(&old, "v1"), true, 1),
            wl("v2", &hash(&old, "v2"), true, 1),
            wl("v3", &h3, true, 1),
        ],
        vec![
            pod("v1", "u1", &hash(&old, "v1"), true),
            pod("v2", "u2", &hash(&old, "v2"), true),
            pod("v3", "u3", &h3, true),
        ],
    );
    let n = st.next(t0, &new, &o);
    if let Next::Act { plan, .. } = &n {
        st.record(t0, &plan.actions[0], false);
    }
    assert_eq!(acts(&st.next(t0, &new, &o)), ["annotate v1"]);
}

#[test]
fn deleted_pods_hold_the_slot_until_seen_gone_and_never_look_available_again() {
    let t0 = Instant::now();
    let (old, new) = three();
    let (h1, h2, h3) = (hash(&new, "v1"), hash(&new, "v2"), hash(&new, "v3"));
    let mut st = RolloutState::new(settings(Duration::ZERO));
    // OnDelete: templates already current, pods stale.
    let mut w = vec![
        wl("v1", &h1, true, 2),
        wl("v2", &h2, true, 2),
        wl("v3", &h3, true, 1),
    ];
    w[0].on_delete = true;
    w[1].on_delete = true;
    let p = vec![
        pod("v1", "u1", &hash(&old, "v1"), true),
        pod("v2", "u2", &hash(&old, "v2"), true),
        pod("v3", "u3", &h3, true),
    ];
    let n = st.next(t0, &new, &obs(w.clone(), p.clone()));
    assert_eq!(acts(&n), ["delete v1-0"]);
    record_all(&mut st, t0, &n);
    // The deletion is not seen for a long time: v2's pod is not touched.
    for s in [1, 10, 100] {
        let n = st.next(
            t0 + Duration::from_secs(s),
            &new,
            &obs(w.clone(), p.clone()),
        );
        assert!(acts(&n).is_empty(), "after {s} s: {n:?}");
    }
    // Seen gone; the StatefulSet's status still says ready (it lags): no pod, no slot.
    let without: Vec<PodState> = p[1..].to_vec();
    let n = st.next(
        t0 + Duration::from_secs(101),
        &new,
        &obs(w.clone(), without.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    // A stale relist shows the deleted pod again, ready: still not available.
    let n = st.next(
        t0 + Duration::from_secs(102),
        &new,
        &obs(w.clone(), p.clone()),
    );
    assert!(acts(&n).is_empty(), "{n:?}");
    // The replacement is ready: v2 next.
    let mut p2 = without;
    p2.insert(0, pod("v1", "u1b", &h1, true));
    let n = st.next(t0 + Duration::from_secs(103), &new, &obs(w, p2));
    assert_eq!(acts(&n), ["delete v2-0"]);
}

#[test]
fn stale_pod_events_are_sent_once_per_change() {
    let t0 = Instant::now();
    let (old, new) = three();
    let h3 = hash(&new, "v3");
    let plan = PlanSettings {
        on_delete: OnDeletePolicy::Event,
        ..ONE
    };
    let mut st = RolloutState::new(StateSettings::new(plan, Duration::ZERO));
    let mut w = vec![wl("v1", &hash(&new, "v1"), true, 2), wl("v3", &h3, true, 1)];
    w[0].on_delete = true;
    let p = vec![
        pod("v1", "u1", &hash(&old, "v1"), true),
        pod("v3", "u3", &h3, true),
    ];
    let new2 = snap(2, &["v1", "v2", "v3"]);
    let o = obs(w.clone(), p.clone());
    let n = st.next(t0, &new2, &o);
    assert_eq!(acts(&n), ["notify v1"]);
    record_all(&mut st, t0, &n);
    assert!(acts(&st.next(t0, &new2, &o)).is_empty());
    // The pod was replaced by hand: forgotten, so a later change is told again.
    let mut p2 = p.clone();
    p2[0] = pod("v1", "u1b", &hash(&new2, "v1"), true);
    assert!(acts(&st.next(t0, &new2, &obs(w.clone(), p2))).is_empty());
    assert_eq!(acts(&st.next(t0, &new2, &o)), ["notify v1"]);
}

// --- a simulated cluster whose watch lags behind, differently for every object ---------

/// A tiny deterministic generator (no dependency, same sequence every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[derive(Clone, Debug)]
struct SimPod {
    uid: String,
    hash: String,
    ready_at: u64,
}

#[derive(Clone, Debug)]
struct SimSts {
    name: String,
    on_delete: bool,
    generation: i64,
    template: String,
    pod: Option<SimPod>,
    /// What the StatefulSet controller last wrote to status: (observed generation, ready, rolled).
    status: Option<(i64, bool, bool)>,
}

struct Sim {
    now: u64,
    sts: Vec<SimSts>,
    /// Every state of the cluster, with its time, for lagging views.
    history: Vec<(u64, Vec<SimSts>)>,
    uid: u64,
}

impl Sim {
    fn new_uid(&mut self) -> String {
        self.uid += 1;
        format!("uid{}", self.uid)
    }

    /// One step of the StatefulSet controller and the kubelet.
    fn step(&mut self, rng: &mut Lcg) {
        self.now += 1;
        let now = self.now;
        for i in 0..self.sts.len() {
            let needs_pod = self.sts[i].pod.is_none();
            let replace = !self.sts[i].on_delete
                && self.sts[i]
                    .pod
                    .as_ref()
                    .is_some_and(|p| p.hash != self.sts[i].template);
            if replace {
                self.sts[i].pod = None; // RollingUpdate deletes the old pod first
            } else if needs_pod && rng.below(2) == 0 {
                let uid = self.new_uid();
                let s = &mut self.sts[i];
                s.pod = Some(SimPod {
                    uid,
                    hash: s.template.clone(),
                    ready_at: now + 1 + rng.below(4),
                });
            }
            let s = &mut self.sts[i];
            if rng.below(3) > 0 {
                let ready = s.pod.as_ref().is_some_and(|p| p.ready_at <= now);
                let rolled = s.pod.as_ref().is_some_and(|p| p.hash == s.template);
                s.status = Some((s.generation, ready, rolled));
            }
        }
        self.history.push((self.now, self.sts.clone()));
    }

    fn unavailable(&self) -> Vec<String> {
        self.sts
            .iter()
            .filter(|s| s.pod.as_ref().is_none_or(|p| p.ready_at > self.now))
            .map(|s| s.name.clone())
            .collect()
    }

    /// What a watch sees: each object as it was some steps ago (its own lag, never
    /// going back in time for that object unless `relist_back` forces a stale relist).
    fn view(&self, seen_at: &mut [usize], rng: &mut Lcg, relist_back: bool) -> Observed {
        let last = self.history.len() - 1;
        let mut workloads = Vec::new();
        let mut pods = Vec::new();
        for (i, at) in seen_at.iter_mut().enumerate() {
            if relist_back {
                *at = at.saturating_sub(rng.below(12) as usize);
            } else {
                // Up to 6 steps behind, never going back.
                *at = (*at).max(last.saturating_sub(rng.below(7) as usize));
            }
            let (state_now, cluster) = &self.history[*at];
            let Some(s) = cluster.get(i) else {
                continue; // this object did not exist yet at that point
            };
            let state_now = *state_now;
            let settled = s.status.is_some_and(|(g, ready, rolled)| {
                g >= s.generation && ready && (rolled || s.on_delete)
            });
            workloads.push(WorkloadState {
                key: key(&s.name),
                instance: s.name.clone(),
                template_hash: Some(s.template.clone()),
                opted_out: false,
                on_delete: s.on_delete,
                replicas: 1,
                generation: s.generation,
                settled,
                control: Control::Normal,
            });
            if let Some(p) = &s.pod {
                pods.push(PodState {
                    namespace: "ns".into(),
                    name: format!("{}-0", s.name),
                    uid: p.uid.clone(),
                    instance: s.name.clone(),
                    hash: Some(p.hash.clone()),
                    ready: p.ready_at <= state_now,
                    terminating: false,
                    opted_out: false,
                    live: false,
                });
            }
        }
        combine(workloads, pods)
    }

    fn execute(&mut self, a: &Action) -> bool {
        let Some(i) = self.sts.iter().position(|s| &key(&s.name) == a.key()) else {
            return false;
        };
        let s = &mut self.sts[i];
        match a {
            Action::Annotate { hash, .. } => {
                if &s.template != hash {
                    s.template = hash.clone();
                    s.generation += 1;
                }
                true
            }
            Action::DeletePod { uid, .. } => {
                if s.pod.as_ref().is_some_and(|p| &p.uid == uid) {
                    s.pod = None;
                }
                true
            }
            Action::Notify { .. } | Action::Report { .. } | Action::Live { .. } => true,
        }
    }
}

/// Adds a fourth validator to a network of three (two OnDelete) and rolls it with the
/// loop's views lagging per object, sometimes going back (stale relists). At no step are
/// two validators unavailable, although the new one starting counts.
#[test]
fn never_two_unavailable_however_late_the_views() {
    for seed in 0..300u64 {
        let mut rng = Lcg(seed);
        let old = snap(1, &["v1", "v2", "v3"]);
        let new = snap(2, &["v1", "v2", "v3", "v4"]);
        let t0 = Instant::now();
        let mut sim = Sim {
            now: 10,
            sts: Vec::new(),
            history: Vec::new(),
            uid: 0,
        };
        for (n, on_delete) in [("v1", true), ("v2", false), ("v3", true)] {
            let uid = sim.new_uid();
            sim.sts.push(SimSts {
                name: n.into(),
                on_delete,
                generation: 1,
                template: hash(&old, n),
                pod: Some(SimPod {
                    uid,
                    hash: hash(&old, n),
                    ready_at: 0,
                }),
                status: Some((1, true, true)),
            });
        }
        sim.history.push((sim.now, sim.sts.clone()));
        let mut st = RolloutState::new(settings(Duration::ZERO));
        let mut seen_at = vec![0usize; 4];
        let mut added = false;
        for step in 0..400u64 {
            let now = t0 + Duration::from_secs(step);
            if step == 3 {
                // The operator creates v4's StatefulSet a little after its StellarNode.
                sim.sts.push(SimSts {
                    name: "v4".into(),
                    on_delete: false,
                    generation: 1,
                    template: hash(&new, "v4"),
                    pod: None,
                    status: None,
                });
                added = true;
            }
            sim.step(&mut rng);
            let unavailable = sim.unavailable();
            assert!(
                unavailable.len() <= 1,
                "seed {seed} step {step}: unavailable at once {unavailable:?}"
            );
            let relist_back = rng.below(25) == 0;
            let view = sim.view(&mut seen_at, &mut rng, relist_back);
            let s = if added || step > 1 { &new } else { &old };
            if let Next::Act { plan, .. } = st.next(now, s, &view) {
                for a in &plan.actions {
                    let done = sim.execute(a);
                    st.record(now, a, done);
                }
            }
        }
        // And it finishes: every validator runs the new list.
        for s in &sim.sts {
            let want = hash(&new, &s.name);
            assert_eq!(
                s.pod.as_ref().map(|p| p.hash.as_str()),
                Some(want.as_str()),
                "seed {seed}: {} not rolled",
                s.name
            );
        }
    }
}

// --- Operator controls: pause, windows, stuck --------------------------------------

fn snap_with(version: u64, names: &[&str], edit: impl Fn(&mut NodeRecord)) -> PeerSnapshot {
    let recs: Vec<NodeRecord> = names
        .iter()
        .map(|n| {
            let mut r = NodeRecord::new("ns", n, NodeKind::Validator, "testnet");
            edit(&mut r);
            r
        })
        .collect();
    PeerSnapshot::build(version, &recs, &PeerSettings::default())
}

/// v1, v2 current for {v1, v2}, all settled; the new snapshot adds v3 (settled too).
fn stale_pair(new: &PeerSnapshot) -> Observed {
    let old = snap(1, &["v1", "v2"]);
    let (h1, h2, h3) = (hash(&old, "v1"), hash(&old, "v2"), hash(new, "v3"));
    obs(
        vec![
            wl("v1", &h1, true, 1),
            wl("v2", &h2, true, 1),
            wl("v3", &h3, true, 1),
        ],
        vec![
            pod("v1", "u1", &h1, true),
            pod("v2", "u2", &h2, true),
            pod("v3", "u3", &h3, true),
        ],
    )
}

fn waiting(n: &Next) -> Vec<String> {
    match n {
        Next::Act { plan, .. } => plan
            .waiting
            .iter()
            .map(|w| format!("{} {}", w.key.name, w.why.label()))
            .collect(),
        Next::Debounce(..) => vec!["debounce".into()],
    }
}

#[test]
fn a_paused_workload_is_not_touched_and_is_reported_once() {
    let t0 = Instant::now();
    let new = snap(2, &["v1", "v2", "v3"]);
    let mut o = stale_pair(&new);
    o.workloads[0].control = Control::Paused;
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let n = st.next(t0, &new, &o);
    // v1 is held without taking the slot: v2 rolls.
    assert_eq!(
        acts(&n),
        [
            "annotate v2",
            &format!("report v1 paused:workload:{}", hash(&new, "v1"))
        ]
    );
    assert_eq!(waiting(&n), ["v1 paused"]);
    record_all(&mut st, t0, &n);
    // Told once: the next pass (v2 in flight) only waits.
    let n = st.next(t0 + Duration::from_secs(1), &new, &o);
    assert!(acts(&n).is_empty(), "{n:?}");
    assert_eq!(waiting(&n), ["v1 paused", "v2 settling"]);
    // Unpaused: it rolls under the quorum rule, once v2 has taken effect and settled.
    o.workloads[0].control = Control::Normal;
    o.workloads[1].template_hash = Some(hash(&new, "v2"));
    o.pods[1].hash = Some(hash(&new, "v2"));
    let n = st.next(t0 + Duration::from_secs(2), &new, &o);
    assert_eq!(acts(&n), ["annotate v1"]);
}

#[test]
fn pause_on_the_namespace_or_the_stellarnode_holds_its_workloads() {
    let t0 = Instant::now();
    // The StellarNode v1 is paused.
    let new = snap_with(2, &["v1", "v2", "v3"], |r| {
        if r.name == "v1" {
            r.rollout = Control::Paused;
        }
    });
    let o = stale_pair(&new);
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let n = st.next(t0, &new, &o);
    assert_eq!(waiting(&n), ["v1 paused"]);
    assert!(acts(&n).contains(&"annotate v2".to_owned()), "{n:?}");
    assert!(
        acts(&n)
            .iter()
            .any(|a| a.starts_with("report v1 paused:StellarNode:")),
        "{n:?}"
    );
    // The whole namespace is paused: nothing is annotated.
    let new = snap(2, &["v1", "v2", "v3"]);
    let mut o = stale_pair(&new);
    o.paused_namespaces.insert("ns".into());
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let n = st.next(t0, &new, &o);
    assert!(acts(&n).iter().all(|a| a.starts_with("report ")), "{n:?}");
    assert_eq!(waiting(&n), ["v1 paused", "v2 paused"]);
}

#[test]
fn outside_the_window_changes_queue_and_roll_when_it_opens() {
    let t0 = Instant::now();
    let new = snap(2, &["v1", "v2", "v3"]);
    let o = stale_pair(&new);
    let mut s = settings(Duration::ZERO);
    s.windows = Windows::parse("02:00-04:00").expect("window");
    let mut st = RolloutState::new(s);
    // 01:00 UTC: closed, opens in an hour.
    let n = st.next_at(t0, Some(60), &new, &o);
    assert!(acts(&n).is_empty(), "{n:?}");
    match &n {
        Next::Act { plan, .. } => {
            assert_eq!(
                plan.waiting[0].why,
                Wait::Window {
                    opens_in_minutes: 60
                }
            );
            assert_eq!(plan.pending.get("testnet"), Some(&2));
        }
        other => panic!("{other:?}"),
    }
    // 02:30: open, one at a time.
    let n = st.next_at(t0 + Duration::from_secs(1), Some(150), &new, &o);
    assert_eq!(acts(&n), ["annotate v1"]);
    // A StellarNode's own window overrides the flag.
    let new = snap_with(3, &["v1", "v2", "v3"], |r| {
        r.rollout_window = Some(Windows::Always);
    });
    let mut s = settings(Duration::ZERO);
    s.windows = Windows::parse("02:00-04:00").expect("window");
    let mut st = RolloutState::new(s);
    let n = st.next_at(t0, Some(60), &new, &stale_pair(&new));
    assert_eq!(acts(&n), ["annotate v1"]);
}

#[test]
fn a_stuck_workload_holds_the_slot_until_the_operator_says_skip_wait() {
    let t0 = Instant::now();
    let new = snap(2, &["v1", "v2", "v3"]);
    let mut o = stale_pair(&new);
    // v3 (the new validator) never becomes ready.
    o.workloads[2].settled = false;
    let mut s = settings(Duration::ZERO);
    s.stuck_after = Duration::from_secs(600);
    let mut st = RolloutState::new(s);
    assert!(acts(&st.next(t0, &new, &o)).is_empty());
    // Ten minutes later it is stuck: reported once, still holding the slot.
    let later = t0 + Duration::from_secs(600);
    let n = st.next(later, &new, &o);
    assert_eq!(acts(&n), ["report v3 stuck:false"]);
    match &n {
        Next::Act { plan, .. } => {
            assert_eq!(plan.stuck.len(), 1);
            assert_eq!(plan.stuck[0].minutes, 10);
            assert!(
                matches!(&plan.waiting[0].why, Wait::Slot { held_by } if held_by[0].contains("v3"))
            );
        }
        other => panic!("{other:?}"),
    }
    record_all(&mut st, later, &n);
    assert!(acts(&st.next(later + Duration::from_secs(1), &new, &o)).is_empty());
    // skip-wait: reported again (its own Event), and the others proceed.
    o.workloads[2].control = Control::SkipWait;
    let n = st.next(later + Duration::from_secs(2), &new, &o);
    assert_eq!(acts(&n), ["annotate v1", "report v3 stuck:true"]);
    // skip-wait on a workload that is not stuck releases nothing.
    let mut o = stale_pair(&new);
    o.workloads[2].settled = false;
    o.workloads[2].control = Control::SkipWait;
    let mut s = settings(Duration::ZERO);
    s.stuck_after = Duration::from_secs(600);
    let mut st = RolloutState::new(s);
    assert!(acts(&st.next(t0, &new, &o)).is_empty());
    // Once it is ready again the episode ends; a later one is told again.
}

#[test]
fn a_stuck_episode_that_ends_is_told_again_next_time() {
    let t0 = Instant::now();
    let new = snap(2, &["v1", "v2", "v3"]);
    let mut o = stale_pair(&new);
    o.workloads[0].template_hash = Some(hash(&new, "v1"));
    o.pods[0].hash = Some(hash(&new, "v1"));
    o.workloads[1].template_hash = Some(hash(&new, "v2"));
    o.pods[1].hash = Some(hash(&new, "v2"));
    o.workloads[2].settled = false;
    let mut s = settings(Duration::ZERO);
    s.stuck_after = Duration::from_secs(60);
    let mut st = RolloutState::new(s);
    let _ = st.next(t0, &new, &o);
    let n = st.next(t0 + Duration::from_secs(60), &new, &o);
    assert_eq!(acts(&n), ["report v3 stuck:false"]);
    record_all(&mut st, t0, &n);
    o.workloads[2].settled = true;
    assert!(acts(&st.next(t0 + Duration::from_secs(61), &new, &o)).is_empty());
    o.workloads[2].settled = false;
    assert!(acts(&st.next(t0 + Duration::from_secs(62), &new, &o)).is_empty());
    let n = st.next(t0 + Duration::from_secs(122), &new, &o);
    assert_eq!(acts(&n), ["report v3 stuck:false"]);
}

#[test]
fn a_workload_that_predates_the_injector_is_told_once_and_healed_only_when_asked() {
    let t0 = Instant::now();
    let new = snap(2, &["v1", "v2", "v3"]);
    let mut o = stale_pair(&new);
    // v1 predates the injector: neither its template nor its pod carries a hash.
    o.workloads[0].template_hash = None;
    o.pods[0].hash = None;
    let mut st = RolloutState::new(settings(Duration::ZERO));
    let n = st.next(t0, &new, &o);
    assert_eq!(waiting(&n), ["v1 uninjected"]);
    let told = acts(&n);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told.contains(&"annotate v2".to_owned()), "{told:?}");
    assert!(
        told.iter().any(|a| a.starts_with("report v1 uninjected:")),
        "{told:?}"
    );
    record_all(&mut st, t0, &n);
    // Told once: the next pass only waits (v2's annotation is in flight).
    let n = st.next(t0 + Duration::from_secs(1), &new, &o);
    assert!(
        acts(&n).iter().all(|a| !a.starts_with("report v1")),
        "{n:?}"
    );
    // With --heal-uninjected it is restarted like any stale workload.
    let mut s = settings(Duration::ZERO);
    s.plan.heal_uninjected = true;
    let mut st = RolloutState::new(s);
    let n = st.next(t0, &new, &o);
    assert_eq!(
        acts(&n),
        ["annotate v1"],
        "one at a time, lowest name first"
    );
}
