use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::nodes::{NodeKind, NodeRecord};
use crate::peers::{PeerSettings, PeerSnapshot};
use crate::rollout::plan::{Kind, NextStep, Restart, Wait, WorkloadKey};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sel(v: Value) -> LabelSelector {
    serde_json::from_value(v).expect("selector")
}

#[test]
fn label_selectors_match_like_the_api_server() {
    let l = labels(&[("a", "1"), ("b", "2")]);
    assert!(selector_matches(None, &l));
    assert!(selector_matches(Some(&sel(json!({}))), &l));
    assert!(selector_matches(
        Some(&sel(json!({"matchLabels": {"a": "1"}}))),
        &l
    ));
    assert!(!selector_matches(
        Some(&sel(json!({"matchLabels": {"a": "2"}}))),
        &l
    ));
    let expr = |op: &str, values: Value| {
        sel(json!({"matchExpressions": [{"key": "a", "operator": op, "values": values}]}))
    };
    assert!(selector_matches(Some(&expr("In", json!(["1", "3"]))), &l));
    assert!(!selector_matches(Some(&expr("In", json!(["3"]))), &l));
    assert!(selector_matches(Some(&expr("NotIn", json!(["3"]))), &l));
    assert!(!selector_matches(Some(&expr("NotIn", json!(["1"]))), &l));
    // NotIn selects objects without the key.
    assert!(selector_matches(
        Some(&expr("NotIn", json!(["1"]))),
        &labels(&[])
    ));
    assert!(selector_matches(Some(&expr("Exists", json!(null))), &l));
    assert!(!selector_matches(
        Some(&expr("DoesNotExist", json!(null))),
        &l
    ));
    assert!(!selector_matches(Some(&expr("Gt", json!(["0"]))), &l));
    // Both parts must hold.
    let both = sel(json!({"matchLabels": {"b": "2"},
        "matchExpressions": [{"key": "a", "operator": "In", "values": ["9"]}]}));
    assert!(!selector_matches(Some(&both), &l));
}

/// A configuration as the chart renders it, for namespaces other than `excluded`.
fn chart_config(name: &str, excluded: &str) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
            "objectSelector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node"}},
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [excluded]}]},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
        }, {
            "name": "other.example.com",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"url": "https://127.0.0.1:1/other"},
        }]
    }))
    .expect("configuration")
}

#[test]
fn the_webhook_verdict_names_the_rule_that_decides() {
    let stellar = labels(&[("app.kubernetes.io/name", "stellar-node")]);
    let ns = |n: &str| labels(&[("kubernetes.io/metadata.name", n)]);
    let cfgs = [chart_config("spi", "stellar-system")];
    let v = webhook_verdict(Some(&cfgs), WEBHOOK_NAME, &ns("stellar"), &stellar);
    assert_eq!(v.matched, Some(true));
    assert_eq!(v.matched_by, ["spi/peers.stellar.org"]);
    let v = webhook_verdict(Some(&cfgs), WEBHOOK_NAME, &ns("stellar-system"), &stellar);
    assert_eq!(v.matched, Some(false));
    assert!(v.excluded_by[0].contains("namespaceSelector"), "{v:?}");
    let v = webhook_verdict(Some(&cfgs), WEBHOOK_NAME, &ns("stellar"), &labels(&[]));
    assert!(v.excluded_by[0].contains("objectSelector"), "{v:?}");
    // A configuration without Pod CREATE in its rules.
    let mut update_only = chart_config("upd", "x");
    if let Some(hooks) = update_only.webhooks.as_mut()
        && let Some(rules) = hooks[0].rules.as_mut()
    {
        rules[0].operations = Some(vec!["UPDATE".into()]);
    }
    let v = webhook_verdict(Some(&[update_only]), WEBHOOK_NAME, &ns("stellar"), &stellar);
    assert!(v.excluded_by[0].contains("Pod CREATE"), "{v:?}");
    // None configured, and none given.
    let v = webhook_verdict(Some(&[]), WEBHOOK_NAME, &ns("stellar"), &stellar);
    assert_eq!((v.matched, v.excluded_by.len()), (Some(false), 0));
    assert_eq!(
        webhook_verdict(None, WEBHOOK_NAME, &ns("a"), &stellar).matched,
        None
    );
    // Any matching configuration sends it.
    let two = [chart_config("a", "stellar"), chart_config("b", "other")];
    let v = webhook_verdict(Some(&two), WEBHOOK_NAME, &ns("stellar"), &stellar);
    assert_eq!((v.matched_by.len(), v.excluded_by.len()), (1, 1));
}

fn snap() -> PeerSnapshot {
    let recs = [
        NodeRecord::new("stellar", "v1", NodeKind::Validator, "testnet"),
        NodeRecord::new("stellar", "v2", NodeKind::Validator, "testnet"),
        NodeRecord::new("stellar", "h", NodeKind::Horizon, "testnet"),
    ];
    PeerSnapshot::build(1, &recs, &PeerSettings::default())
}

fn pod(instance: &str, annotations: Value) -> Value {
    json!({
        "metadata": {
            "name": format!("{instance}-0"),
            "namespace": "stellar",
            "labels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": instance},
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "stellar-node", "image": "stellar/stellar-core"}]}
    })
}

fn key(name: &str) -> WorkloadKey {
    WorkloadKey {
        kind: Kind::StatefulSet,
        namespace: "stellar".into(),
        name: name.into(),
    }
}

#[test]
fn a_pod_is_explained_end_to_end() {
    let s = snap();
    let settings = InjectSettings::default();
    let cfgs = [chart_config("spi", "stellar-system")];
    let Lookup::Found(list) = s.lookup("stellar", "v1") else {
        panic!("v1 known")
    };
    let restarts = [Restart {
        key: key("v1"),
        network: "testnet".into(),
        hash: list.hash.clone(),
        next: NextStep::Wait(Wait::Slot {
            held_by: vec!["StatefulSet stellar/v2".into()],
        }),
    }];
    let instances: BTreeMap<WorkloadKey, String> = [(key("v1"), "v1".to_owned())].into();
    let ctx = Context {
        snapshot: Some(&s),
        settings: &settings,
        webhooks: Some(&cfgs),
        webhook_name: WEBHOOK_NAME,
        namespace_labels: BTreeMap::new(),
        running: vec![
            SeenPod {
                name: "v1-0".into(),
                hash: None,
                init_failed: None,
                live: false,
            },
            SeenPod {
                name: "v1-1".into(),
                hash: Some(list.hash.clone()),
                init_failed: None,
                live: false,
            },
        ],
        restarts: Some(&restarts),
        instances: &instances,
    };
    let e = explain(
        "Pod stellar/v1-0".into(),
        &pod("v1", json!({})),
        "stellar",
        &ctx,
    );
    assert_eq!(e.webhook.matched, Some(true));
    assert!(
        matches!(e.injector, Verdict::Inject { mode: "env", .. }),
        "{e:?}"
    );
    assert_eq!(e.stellarnode.as_deref(), Some("stellar/v1"));
    assert_eq!(e.kind.as_deref(), Some("Validator"));
    let peers = e.peers.as_ref().expect("peers");
    assert_eq!(peers.hash, list.hash);
    assert_eq!(peers.known.len(), 1, "v2 only: {peers:?}");
    assert!(peers.known[0].starts_with("v2-0.v2-headless."), "{peers:?}");
    assert_eq!(
        e.running.iter().map(|r| r.current).collect::<Vec<_>>(),
        [false, true]
    );
    assert_eq!(
        e.next.as_deref(),
        Some("StatefulSet stellar/v1: waiting for the slot held by StatefulSet stellar/v2")
    );
    let table = render_table(std::slice::from_ref(&e));
    for want in [
        "matches: spi/peers.stellar.org",
        "injects (env mode)",
        "stellar/v1 (Validator, network testnet)",
        "v1-0 never injected, v1-1 current",
        "waiting for the slot held by",
    ] {
        assert!(table.contains(want), "{want:?} in\n{table}");
    }
    let j = serde_json::to_value(&e).expect("json");
    assert_eq!(j["injector"]["outcome"], "inject");
    assert_eq!(j["peers"]["hash"], list.hash.as_str());

    // Opted out, unknown node, no workload, no snapshot.
    let out = explain(
        "Pod stellar/v1-0".into(),
        &pod("v1", json!({"stellar.org/inject-peers": "false"})),
        "stellar",
        &ctx,
    );
    assert!(
        matches!(
            &out.injector,
            Verdict::Skip {
                reason: "opted-out",
                ..
            }
        ),
        "{out:?}"
    );
    let unknown = explain(
        "Pod stellar/x-0".into(),
        &pod("x", json!({})),
        "stellar",
        &ctx,
    );
    assert!(
        matches!(
            &unknown.injector,
            Verdict::Deny {
                reason: "unknown-node",
                ..
            }
        ),
        "{unknown:?}"
    );
    assert_eq!(unknown.kind, None);
    assert_eq!(
        unknown.next.as_deref(),
        Some("nothing: there is no peer list for it")
    );
    let bare = explain(
        "Pod stellar/h-0".into(),
        &pod("h", json!({})),
        "stellar",
        &ctx,
    );
    assert!(
        bare.next.as_deref().is_some_and(|n| n.contains("has none")),
        "{bare:?}"
    );
    let no_snap = Context {
        snapshot: None,
        ..ctx
    };
    let ns = explain(
        "Pod stellar/v1-0".into(),
        &pod("v1", json!({})),
        "stellar",
        &no_snap,
    );
    assert_eq!(ns.injector, Verdict::NotReady);
}

#[test]
fn horizon_pods_are_explained_in_captive_merge_mode_or_why_not() {
    let s = snap();
    let settings = InjectSettings {
        init_image: "injector:1".into(),
        ..InjectSettings::default()
    };
    let instances = BTreeMap::new();
    let ctx = Context {
        snapshot: Some(&s),
        settings: &settings,
        webhooks: None,
        webhook_name: WEBHOOK_NAME,
        namespace_labels: BTreeMap::new(),
        running: vec![],
        restarts: None,
        instances: &instances,
    };
    let mut p = pod(
        "h",
        json!({"stellar.org/captive-core-config": "/config/captive-core.cfg"}),
    );
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "config", "mountPath": "/config"}]);
    let e = explain("Pod stellar/h-0".into(), &p, "stellar", &ctx);
    assert_eq!(
        e.injector,
        Verdict::Inject {
            mode: "captive-merge",
            warnings: vec![]
        }
    );
    assert!(render_table(std::slice::from_ref(&e)).contains("injects (captive-merge mode)"));
    // Without a file: env mode, and the warning says what to set.
    let e = explain(
        "Pod stellar/h-0".into(),
        &pod("h", json!({})),
        "stellar",
        &ctx,
    );
    let Verdict::Inject { mode, warnings } = &e.injector else {
        panic!("{e:?}")
    };
    assert_eq!(*mode, "env");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("stellar.org/captive-core-config")),
        "{warnings:?}"
    );
}

#[test]
fn the_restart_listing_says_what_happens_now_and_later() {
    assert!(render_restarts(&[]).contains("restarts nothing"));
    let r = [
        Restart {
            key: key("v1"),
            network: "testnet".into(),
            hash: "aaaa".into(),
            next: NextStep::Roll,
        },
        Restart {
            key: key("v2"),
            network: "testnet".into(),
            hash: "aaaa".into(),
            next: NextStep::Wait(Wait::Uninjected),
        },
    ];
    let t = render_restarts(&r);
    assert!(t.starts_with("NETWORK"), "{t}");
    assert!(
        t.contains("StatefulSet stellar/v1") && t.contains("roll now"),
        "{t}"
    );
    assert!(t.contains("never injected"), "{t}");
    assert!(t.contains("2 workload(s) stale: 1 acted on now"), "{t}");
    let j = restarts_json(&r);
    assert_eq!(j[0]["now"], true);
    assert_eq!(j[1]["now"], false);
    assert_eq!(j[1]["name"], "v2");
}

#[test]
fn running_pods_are_those_of_the_node() {
    let pods = [
        pod("v1", json!({"stellar.org/peers-hash": "h1"})),
        pod("v2", json!({})),
        json!({"metadata": {"name": "other", "namespace": "elsewhere",
               "labels": {"app.kubernetes.io/instance": "v1"}}}),
    ];
    let seen = |name: &str, hash: Option<&str>| SeenPod {
        name: name.to_owned(),
        hash: hash.map(str::to_owned),
        init_failed: None,
        live: false,
    };
    assert_eq!(
        running_of(&pods, "stellar", "v1"),
        [seen("v1-0", Some("h1"))]
    );
    assert_eq!(running_of(&pods, "stellar", "v2"), [seen("v2-0", None)]);
}

#[test]
fn a_pod_whose_init_step_failed_says_so_with_the_reason() {
    let mut failed = pod("v1", json!({"stellar.org/peers-hash": "h1"}));
    failed["status"] = json!({"initContainerStatuses": [{
        "name": "stellar-peers-config", "ready": false, "restartCount": 1, "image": "i", "imageID": "",
        "state": {"terminated": {"exitCode": 1, "message": "render-config: /config/stellar-core.cfg: not valid TOML"}}
    }]});
    let seen = running_of(&[failed], "stellar", "v1");
    assert_eq!(
        seen[0].init_failed.as_deref(),
        Some("render-config: /config/stellar-core.cfg: not valid TOML")
    );
    let s = snap();
    let settings = InjectSettings::default();
    let instances = BTreeMap::new();
    let ctx = Context {
        snapshot: Some(&s),
        settings: &settings,
        webhooks: None,
        webhook_name: WEBHOOK_NAME,
        namespace_labels: BTreeMap::new(),
        running: seen,
        restarts: None,
        instances: &instances,
    };
    let e = explain(
        "Pod stellar/v1-0".into(),
        &pod("v1", json!({})),
        "stellar",
        &ctx,
    );
    let t = render_table(&[e]);
    assert!(
        t.contains("cannot start: init container stellar-peers-config failed: render-config: /config/stellar-core.cfg: not valid TOML"),
        "{t}"
    );
}
