use std::collections::HashSet;

use super::*;
use crate::live::PeerUpdates;
use crate::nodes::{NodeKind, NodeRecord};
use crate::peers::{Lookup, PeerSettings, PeerSnapshot};

fn rec(name: &str, kind: NodeKind, net: &str) -> NodeRecord {
    NodeRecord::new("ns", name, kind, net)
}

fn snap(nodes: &[NodeRecord]) -> PeerSnapshot {
    PeerSnapshot::build(1, nodes, &PeerSettings::default())
}

fn hash(s: &PeerSnapshot, name: &str) -> String {
    match s.lookup("ns", name) {
        Lookup::Found(l) => l.hash.clone(),
        other => panic!("{other:?}"),
    }
}

fn key(kind: Kind, name: &str) -> WorkloadKey {
    WorkloadKey {
        kind,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn wl(name: &str, template_hash: Option<&str>) -> WorkloadState {
    WorkloadState {
        key: key(Kind::StatefulSet, name),
        instance: name.into(),
        template_hash: template_hash.map(str::to_owned),
        opted_out: false,
        on_delete: false,
        replicas: 1,
        generation: 1,
        settled: true,
        control: crate::rollout::controls::Control::Normal,
    }
}

fn pod(name: &str, instance: &str, hash: Option<&str>) -> PodState {
    PodState {
        namespace: "ns".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        instance: instance.into(),
        hash: hash.map(str::to_owned),
        ready: true,
        terminating: false,
        opted_out: false,
        live: false,
    }
}

const ONE: PlanSettings = PlanSettings {
    max_concurrent: 1,
    on_delete: OnDeletePolicy::Delete,
    heal_uninjected: false,
    peer_updates: PeerUpdates::Restart,
};

fn annotated(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Annotate { key, .. } => Some(key.name.clone()),
            _ => None,
        })
        .collect()
}

/// Three testnet validators, all current, plus v4 just added.
fn four() -> (PeerSnapshot, Vec<WorkloadState>, Vec<PodState>) {
    let old = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
        rec("v3", NodeKind::Validator, "testnet"),
    ]);
    let new = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
        rec("v3", NodeKind::Validator, "testnet"),
        rec("v4", NodeKind::Validator, "testnet"),
    ]);
    let mut w = Vec::new();
    let mut p = Vec::new();
    for n in ["v1", "v2", "v3"] {
        let h = hash(&old, n);
        w.push(wl(n, Some(&h)));
        p.push(pod(&format!("{n}-0"), n, Some(&h)));
    }
    let h4 = hash(&new, "v4");
    w.push(wl("v4", None));
    p.push(pod("v4-0", "v4", Some(&h4)));
    (new, w, p)
}

#[test]
fn nothing_stale_means_nothing_to_do() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
    ]);
    let w = vec![wl("v1", Some(&hash(&s, "v1"))), wl("v2", None)];
    // v2's template was never annotated, but its pod has the current hash: no roll.
    let p = vec![
        pod("v1-0", "v1", Some(&hash(&s, "v1"))),
        pod("v2-0", "v2", Some(&hash(&s, "v2"))),
    ];
    let plan = plan(&s, &w, &p, &HashSet::new(), &[], &ONE);
    assert_eq!(plan, Plan::default());
}

#[test]
fn adding_a_validator_rolls_the_others_one_at_a_time() {
    let (s, w, p) = four();
    let plan1 = plan(&s, &w, &p, &HashSet::new(), &[], &ONE);
    assert_eq!(annotated(&plan1), ["v1"]);
    assert_eq!(plan1.pending.get("testnet"), Some(&3));
    // v1 is now busy (acted, not yet observed): nothing else starts.
    let acted: HashSet<_> = [key(Kind::StatefulSet, "v1")].into();
    assert!(plan(&s, &w, &p, &acted, &[], &ONE).actions.is_empty());
    // v1 rolling (not settled): still nothing.
    let mut w2 = w.clone();
    w2[0].template_hash = Some(hash(&s, "v1"));
    w2[0].settled = false;
    assert!(
        plan(&s, &w2, &p, &HashSet::new(), &[], &ONE)
            .actions
            .is_empty()
    );
    // v1 done (new pod has the new hash): v2 next.
    w2[0].settled = true;
    let mut p2 = p.clone();
    p2[0].hash = Some(hash(&s, "v1"));
    assert_eq!(
        annotated(&plan(&s, &w2, &p2, &HashSet::new(), &[], &ONE)),
        ["v2"]
    );
}

#[test]
fn concurrency_budget_counts_busy_workloads_we_did_not_start() {
    let (s, mut w, p) = four();
    w[3].settled = false; // v4 is still coming up
    assert!(
        plan(&s, &w, &p, &HashSet::new(), &[], &ONE)
            .actions
            .is_empty()
    );
    let two = PlanSettings {
        max_concurrent: 2,
        ..ONE
    };
    assert_eq!(
        annotated(&plan(&s, &w, &p, &HashSet::new(), &[], &two)),
        ["v1"]
    );
    let three = PlanSettings {
        max_concurrent: 3,
        ..ONE
    };
    w[3].settled = true;
    assert_eq!(
        annotated(&plan(&s, &w, &p, &HashSet::new(), &[], &three)),
        ["v1", "v2", "v3"]
    );
}

#[test]
fn networks_roll_independently_and_unchanged_networks_are_untouched() {
    let nodes = [
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
        rec("m1", NodeKind::Validator, "mainnet"),
        rec("m2", NodeKind::Validator, "mainnet"),
    ];
    let s = snap(&nodes);
    let w = vec![
        wl("v1", Some("old")),
        wl("v2", Some("old")),
        wl("m1", Some(&hash(&s, "m1"))),
        wl("m2", Some("old")),
    ];
    let plan = plan(&s, &w, &[], &HashSet::new(), &[], &ONE);
    assert_eq!(annotated(&plan), ["m2", "v1"]);
    assert!(plan.actions.iter().all(|a| a.key().name != "m1"));
}

#[test]
fn validators_roll_before_horizon_and_soroban() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
        rec("h", NodeKind::Horizon, "testnet"),
        rec("r", NodeKind::SorobanRpc, "testnet"),
    ]);
    let mut h = wl("h", Some("old"));
    h.key.kind = Kind::Deployment;
    let w = vec![h.clone(), wl("r", Some("old")), wl("v2", Some("old"))];
    let three = PlanSettings {
        max_concurrent: 3,
        ..ONE
    };
    assert_eq!(
        annotated(&plan(&s, &w, &[], &HashSet::new(), &[], &three)),
        ["v2"]
    );
    let w = vec![h, wl("r", Some("old")), wl("v2", Some(&hash(&s, "v2")))];
    let p = plan(&s, &w, &[], &HashSet::new(), &[], &three);
    assert_eq!(annotated(&p), ["r", "h"]);
    assert_eq!(p.actions[1].key().kind, Kind::Deployment);
}

#[test]
fn pods_that_missed_injection_are_healed_one_pod_at_a_time() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
    ]);
    let h1 = hash(&s, "v1");
    let mut w1 = wl("v1", Some(&h1));
    w1.replicas = 2;
    let p = vec![
        pod("v1-1", "v1", None),
        pod("v1-0", "v1", Some("stale")),
        pod("v2-0", "v2", Some(&hash(&s, "v2"))),
    ];
    let plan1 = plan(
        &s,
        &[w1.clone(), wl("v2", None)],
        &p,
        &HashSet::new(),
        &[],
        &ONE,
    );
    assert_eq!(
        plan1.actions,
        [Action::DeletePod {
            key: key(Kind::StatefulSet, "v1"),
            network: "testnet".into(),
            pod: "v1-0".into(),
            uid: "uid-v1-0".into(),
            hash: h1.clone()
        }]
    );
    // With the template unset, a RollingUpdate StatefulSet is rolled by annotating it.
    w1.template_hash = None;
    assert_eq!(
        annotated(&plan(&s, &[w1], &p, &HashSet::new(), &[], &ONE)),
        ["v1"]
    );
}

#[test]
fn workloads_that_predate_the_injector_wait_unless_healing_is_on() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
        rec("v3", NodeKind::Validator, "testnet"),
    ]);
    // v1 and v2 were running before the injector: no hash on template or pods.
    // v3 was injected once; one pod of it missed injection later (an outage).
    let mut w3 = wl("v3", None);
    w3.replicas = 2;
    let w = vec![wl("v1", None), wl("v2", None), w3];
    let p = vec![
        pod("v1-0", "v1", None),
        pod("v2-0", "v2", None),
        pod("v3-0", "v3", Some(&hash(&s, "v3"))),
        pod("v3-1", "v3", None),
    ];
    let off = plan(&s, &w, &p, &HashSet::new(), &[], &ONE);
    assert_eq!(annotated(&off), ["v3"], "{off:?}");
    let why: Vec<(&str, &Wait)> = off
        .waiting
        .iter()
        .map(|w| (w.key.name.as_str(), &w.why))
        .collect();
    assert_eq!(why, [("v1", &Wait::Uninjected), ("v2", &Wait::Uninjected)]);
    // Waiting for the operator's choice takes no slot, and counts as pending.
    assert_eq!(off.pending["testnet"], 3);
    // The listing of dry-run and `explain --all`: every stale workload, in order.
    let listing: Vec<(String, String)> = off
        .restarts()
        .iter()
        .map(|r| (r.key.name.clone(), r.next.to_string()))
        .collect();
    assert_eq!(listing.len(), 3);
    assert_eq!(
        listing[2],
        ("v3".into(), "roll now (template annotation)".into())
    );
    assert!(listing[0].1.starts_with("never injected"), "{listing:?}");
    let heal = PlanSettings {
        heal_uninjected: true,
        ..ONE
    };
    let on = plan(&s, &w, &p, &HashSet::new(), &[], &heal);
    assert_eq!(annotated(&on), ["v1"], "one per network at a time: {on:?}");
    assert!(on.waiting.iter().all(|w| w.why != Wait::Uninjected));
    // A workload with no pods yet is not "uninjected": its pods will be injected.
    let empty = plan(&s, &[wl("v1", None)], &[], &HashSet::new(), &[], &ONE);
    assert!(
        empty.actions.is_empty() && empty.waiting.is_empty(),
        "{empty:?}"
    );
}

#[test]
fn on_delete_statefulsets_get_pods_deleted_or_an_event() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
    ]);
    let mut w = wl("v1", Some("old"));
    w.on_delete = true;
    let p = vec![pod("v1-0", "v1", Some("old"))];
    // First the template, then (once settled with the new template) the pods.
    assert_eq!(
        annotated(&plan(&s, &[w.clone()], &p, &HashSet::new(), &[], &ONE)),
        ["v1"]
    );
    w.template_hash = Some(hash(&s, "v1"));
    let del = plan(&s, &[w.clone()], &p, &HashSet::new(), &[], &ONE);
    assert!(matches!(&del.actions[..], [Action::DeletePod { pod, .. }] if pod == "v1-0"));
    // Unset template on OnDelete: delete directly (annotating would not roll anything).
    w.template_hash = None;
    assert!(matches!(
        &plan(&s, &[w.clone()], &p, &HashSet::new(), &[], &ONE).actions[..],
        [Action::DeletePod { .. }]
    ));
    let ev = PlanSettings {
        on_delete: OnDeletePolicy::Event,
        ..ONE
    };
    let n = plan(&s, &[w.clone()], &p, &HashSet::new(), &[], &ev);
    assert!(
        matches!(&n.actions[..], [Action::Notify { stale_pods: 1, .. }]),
        "{n:?}"
    );
    // Not while a pod is being replaced.
    w.settled = false;
    assert!(
        plan(&s, &[w], &p, &HashSet::new(), &[], &ONE)
            .actions
            .is_empty()
    );
}

#[test]
fn skipped_workloads() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
    ]);
    let mut opted = wl("v1", Some("old"));
    opted.opted_out = true;
    let mut zero = wl("v2", Some("old"));
    zero.replicas = 0;
    let unknown = wl("ghost", Some("old"));
    let p = [pod("v2-0", "v2", None)];
    let mut opted_pod = pod("v1-0", "v1", None);
    opted_pod.opted_out = true;
    let plan = plan(
        &s,
        &[opted, zero, unknown],
        &[p[0].clone(), opted_pod],
        &HashSet::new(),
        &[],
        &ONE,
    );
    assert!(plan.actions.is_empty(), "{plan:?}");
}

#[test]
fn terminating_pods_are_ignored() {
    let s = snap(&[
        rec("v1", NodeKind::Validator, "testnet"),
        rec("v2", NodeKind::Validator, "testnet"),
    ]);
    let mut p = pod("v1-0", "v1", Some("old"));
    p.terminating = true;
    let plan = plan(
        &s,
        &[wl("v1", Some(&hash(&s, "v1")))],
        &[p],
        &HashSet::new(),
        &[],
        &ONE,
    );
    assert!(plan.actions.is_empty());
}

#[test]
fn a_validator_whose_workload_is_not_there_yet_counts_as_busy() {
    let (s, w, p) = four();
    // v4's StatefulSet has not appeared yet.
    let w3: Vec<WorkloadState> = w.into_iter().filter(|x| x.instance != "v4").collect();
    let arriving = without_workload(&s, &w3);
    assert_eq!(arriving, [("ns".to_owned(), "v4".to_owned())]);
    assert!(
        plan(&s, &w3, &p, &HashSet::new(), &arriving, &ONE)
            .actions
            .is_empty()
    );
    // Once the loop's grace period is over it stops waiting for it.
    assert_eq!(
        annotated(&plan(&s, &w3, &p, &HashSet::new(), &[], &ONE)),
        ["v1"]
    );
}

fn live_names(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Live { pod, .. } => Some(pod.clone()),
            _ => None,
        })
        .collect()
}

fn with_policy(policy: PeerUpdates) -> PlanSettings {
    PlanSettings {
        peer_updates: policy,
        ..ONE
    }
}

#[test]
fn live_updates_every_running_sidecar_pod_at_once_and_rolls_nothing() {
    let (s, w, mut p) = four();
    for x in &mut p {
        x.live = true;
    }
    let first = plan(
        &s,
        &w,
        &p,
        &HashSet::new(),
        &[],
        &with_policy(PeerUpdates::Live),
    );
    // No slot: all three at once, even with max_concurrent 1; no template touched.
    assert_eq!(live_names(&first), ["v1-0", "v2-0", "v3-0"]);
    assert!(annotated(&first).is_empty(), "{first:?}");
    // Each carries the hash of its own StellarNode's list.
    for a in &first.actions {
        if let Action::Live { key, hash: h, .. } = a {
            assert_eq!(h, &hash(&s, &key.name));
        }
    }
    // Once the pods carry the new hash, a live workload is current with its old template.
    for x in &mut p {
        x.hash = Some(hash(&s, &x.instance));
    }
    let after = plan(
        &s,
        &w,
        &p,
        &HashSet::new(),
        &[],
        &with_policy(PeerUpdates::Live),
    );
    assert_eq!(after, Plan::default());
}

#[test]
fn live_then_restart_updates_now_and_still_rolls_one_at_a_time() {
    let (s, w, mut p) = four();
    for x in &mut p {
        x.live = true;
    }
    let settings = with_policy(PeerUpdates::LiveThenRestart);
    let plan1 = plan(&s, &w, &p, &HashSet::new(), &[], &settings);
    assert_eq!(live_names(&plan1), ["v1-0", "v2-0", "v3-0"]);
    assert_eq!(annotated(&plan1), ["v1"]);
    // While v1 rolls, its pods are not updated live: a restart and a live update never
    // meet in one pod.
    let mut w2 = w.clone();
    w2[0].template_hash = Some(hash(&s, "v1"));
    w2[0].settled = false;
    let plan2 = plan(&s, &w2, &p, &HashSet::new(), &[], &settings);
    assert_eq!(live_names(&plan2), ["v2-0", "v3-0"]);
    assert!(annotated(&plan2).is_empty());
}

#[test]
fn a_pod_without_the_sidecar_falls_back_to_a_restart() {
    let (s, w, mut p) = four();
    p[0].live = true; // v1-0 has the sidecar; v2-0 and v3-0 predate it
    let plan = plan(
        &s,
        &w,
        &p,
        &HashSet::new(),
        &[],
        &with_policy(PeerUpdates::Live),
    );
    assert_eq!(live_names(&plan), ["v1-0"]);
    // v2 and v3 roll as before: one slot, v2 first.
    assert_eq!(annotated(&plan), ["v2"]);
    assert_eq!(plan.pending.get("testnet"), Some(&2));
}

#[test]
fn the_stellar_node_annotation_overrides_the_default_policy() {
    let nodes = |policy: Option<PeerUpdates>| {
        let mut v = Vec::new();
        for n in ["v1", "v2", "v3", "v4"] {
            let mut r = rec(n, NodeKind::Validator, "testnet");
            r.peer_updates = policy;
            v.push(r);
        }
        snap(&v)
    };
    let (_, w, mut p) = four();
    for x in &mut p {
        x.live = true;
    }
    let s = nodes(Some(PeerUpdates::Live));
    let live = plan(&s, &w, &p, &HashSet::new(), &[], &ONE);
    assert_eq!(live_names(&live), ["v1-0", "v2-0", "v3-0"]);
    let s = nodes(Some(PeerUpdates::Restart));
    let restart = plan(
        &s,
        &w,
        &p,
        &HashSet::new(),
        &[],
        &with_policy(PeerUpdates::Live),
    );
    assert!(live_names(&restart).is_empty());
    assert_eq!(annotated(&restart), ["v1"]);
}

#[test]
fn a_paused_workload_is_not_updated_live() {
    let (s, w, mut p) = four();
    for x in &mut p {
        x.live = true;
    }
    let mut gates = Gates::default();
    gates.held.insert(
        key(Kind::StatefulSet, "v2"),
        Wait::Paused(PauseLevel::StellarNode),
    );
    let plan = plan_gated(
        &s,
        &w,
        &p,
        &HashSet::new(),
        &[],
        &gates,
        &with_policy(PeerUpdates::Live),
    );
    assert_eq!(live_names(&plan), ["v1-0", "v3-0"]);
}
