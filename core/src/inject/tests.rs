use serde_json::{Value, json};

use super::review::{ReviewError, parse_review};
use super::*;
use crate::nodes::{Defect, NodeKind, NodeRecord};
use crate::peers::{PeerSettings, PeerSnapshot};

const REVIEW: &str = include_str!("../../../tests/fixtures/validator-pod-review.json");

fn node(ns: &str, name: &str, kind: NodeKind, net: &str) -> NodeRecord {
    NodeRecord::new(ns, name, kind, net)
}

fn snapshot() -> PeerSnapshot {
    let mut bad = node("stellar", "broken", NodeKind::Validator, "testnet");
    bad.problem = Some(Defect::NetworkObject.into());
    PeerSnapshot::build(
        1,
        &[
            node("stellar", "validator-1", NodeKind::Validator, "testnet"),
            node("stellar", "validator-2", NodeKind::Validator, "testnet"),
            node("other", "validator-3", NodeKind::Validator, "testnet"),
            node("stellar", "mainnet-1", NodeKind::Validator, "mainnet"),
            node("stellar", "horizon", NodeKind::Horizon, "testnet"),
            bad,
        ],
        &PeerSettings::default(),
    )
}

fn review_with(f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(REVIEW).expect("fixture");
    f(&mut v);
    v.to_string()
}

fn decide_body(body: &str, snap: Option<&PeerSnapshot>) -> Decision {
    let req = parse_review(body.as_bytes()).expect("review");
    decide(&req, snap, &InjectSettings::default())
}

fn pod_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).expect("json");
    v["request"]["object"].clone()
}

/// The patch of an injection decision.
fn patch_of(d: &Decision, settings: &InjectSettings) -> json_patch::Patch {
    let Decision::Inject { shape, list, .. } = d else {
        panic!("expected injection, got {d:?}")
    };
    patch::build_patch(shape, list, settings)
}

/// Applies the decision's patch to the review's pod and returns the new pod.
fn apply(body: &str, d: &Decision) -> Value {
    apply_with(body, d, &InjectSettings::default())
}

fn apply_with(body: &str, d: &Decision, settings: &InjectSettings) -> Value {
    let patch = patch_of(d, settings);
    let mut pod = pod_of(body);
    json_patch::patch(&mut pod, &patch.0).expect("patch applies");
    let _: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod.clone()).expect("still a Pod");
    pod
}

fn env_of(pod: &Value, container: &str) -> Vec<(String, Value)> {
    let c = pod["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == container)
        .expect("container");
    c["env"].as_array().map_or(vec![], |e| {
        e.iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap_or_default().to_owned(),
                    x["value"].clone(),
                )
            })
            .collect()
    })
}

fn env_value(pod: &Value, container: &str, name: &str) -> Option<String> {
    env_of(pod, container)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}

#[test]
fn operator_pod_gets_its_peers_in_the_stellar_node_container() {
    let snap = snapshot();
    let d = decide_body(REVIEW, Some(&snap));
    let pod = apply(REVIEW, &d);
    let peers = "validator-2-0.validator-2-headless.stellar.svc.cluster.local:11625,validator-3-0.validator-3-headless.other.svc.cluster.local:11625";
    assert_eq!(
        env_value(&pod, "stellar-node", "STELLAR_PEERS").as_deref(),
        Some(peers)
    );
    assert_eq!(
        env_value(&pod, "stellar-node", "STELLAR_PEER_COUNT").as_deref(),
        Some("2")
    );
    assert_eq!(
        env_value(&pod, "stellar-node", "STELLAR_NETWORK").as_deref(),
        Some("testnet")
    );
    assert_eq!(
        env_value(&pod, "stellar-node", "STELLAR_PEERS_CONFIG").as_deref(),
        Some("/etc/stellar/peers/peers.cfg")
    );
    // The seed env and the sidecar are untouched.
    assert_eq!(env_of(&pod, "stellar-node")[0].0, "STELLAR_CORE_SEED");
    assert!(env_of(&pod, "stellar-health-check").is_empty());
    let Decision::Inject {
        list,
        warnings,
        node,
        ..
    } = &d
    else {
        unreachable!()
    };
    assert_eq!(node, "stellar/validator-1");
    assert!(warnings.is_empty(), "{warnings:?}");
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["stellar.org/peers-hash"], list.hash.as_str());
    assert_eq!(
        env_value(&pod, "stellar-node", "STELLAR_PEERS_HASH"),
        Some(list.hash.clone())
    );
    assert_eq!(ann["stellar.org/peer-count"], "2");
    assert_eq!(ann["stellar.org/peers-config"], list.config.as_str());
    let status: Value =
        serde_json::from_str(ann[ANNOTATION_STATUS].as_str().expect("status annotation"))
            .expect("status is JSON");
    assert_eq!(
        status,
        json!({"version": env!("CARGO_PKG_VERSION"), "mode": "env"})
    );
    assert_eq!(
        ann["stellar.org/seed-rotated-at"], "2026-11-01T10:00:00Z",
        "other annotations kept"
    );
    let vol = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "stellar-peers")
        .expect("volume");
    assert_eq!(vol["downwardAPI"]["items"][0]["path"], "peers.cfg");
    assert_eq!(
        vol["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.annotations['stellar.org/peers-config']"
    );
    let mounts = pod["spec"]["containers"][1]["volumeMounts"]
        .as_array()
        .expect("mounts");
    let m = mounts
        .iter()
        .find(|m| m["name"] == "stellar-peers")
        .expect("mount");
    assert_eq!(m["mountPath"], "/etc/stellar/peers");
    assert_eq!(m["readOnly"], true);
}

#[test]
fn patch_paths_escape_json_pointer_characters() {
    let snap = snapshot();
    let patch = patch_of(
        &decide_body(REVIEW, Some(&snap)),
        &InjectSettings::default(),
    );
    let text = serde_json::to_string(&patch).expect("serialize");
    assert!(
        text.contains("/metadata/annotations/stellar.org~1peers-hash"),
        "{text}"
    );
}

#[test]
fn injection_is_idempotent_and_a_fixpoint() {
    let snap = snapshot();
    let first = apply(REVIEW, &decide_body(REVIEW, Some(&snap)));
    let body2 = review_with(|v| v["request"]["object"] = first.clone());
    let second = apply(&body2, &decide_body(&body2, Some(&snap)));
    assert_eq!(first, second, "a second pass changes nothing");
    let names: Vec<String> = env_of(&second, "stellar-node")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(names.len(), dedup.len(), "no duplicate env vars: {names:?}");
    assert_eq!(
        second["spec"]["volumes"]
            .as_array()
            .map(|v| v.iter().filter(|x| x["name"] == "stellar-peers").count()),
        Some(1)
    );
}

#[test]
fn stale_values_and_duplicates_are_replaced() {
    let snap = snapshot();
    let body = review_with(|v| {
        let env = v["request"]["object"]["spec"]["containers"][1]["env"]
            .as_array_mut()
            .expect("env");
        env.push(json!({"name": "STELLAR_PEERS", "value": "old:11625"}));
        env.push(json!({"name": "OTHER", "value": "x"}));
        env.push(json!({"name": "STELLAR_PEERS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}));
        env.push(json!({"name": "STELLAR_PEER_COUNT", "value": "9"}));
        v["request"]["object"]["metadata"]["annotations"]["stellar.org/peers-hash"] =
            json!("stale");
    });
    let pod = apply(&body, &decide_body(&body, Some(&snap)));
    let env = env_of(&pod, "stellar-node");
    assert_eq!(env.iter().filter(|(n, _)| n == "STELLAR_PEERS").count(), 1);
    assert_eq!(
        env.iter()
            .filter(|(n, _)| n == "STELLAR_PEER_COUNT")
            .count(),
        1
    );
    assert!(env.iter().any(|(n, v)| n == "OTHER" && v == "x"));
    assert_eq!(
        env_value(&pod, "stellar-node", "STELLAR_PEER_COUNT").as_deref(),
        Some("2")
    );
    assert_ne!(
        pod["metadata"]["annotations"]["stellar.org/peers-hash"],
        "stale"
    );
}

#[test]
fn minimal_pod_without_env_volumes_or_annotations() {
    let snap = snapshot();
    let body = review_with(|v| {
        v["request"]["object"] = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": "horizon"}},
            "spec": {"containers": [{"name": "horizon", "image": "h"}]}
        });
    });
    let d = decide_body(&body, Some(&snap));
    let Decision::Inject { warnings, .. } = &d else {
        panic!("{d:?}")
    };
    assert!(
        warnings[0].contains("no container named \"stellar-node\""),
        "{warnings:?}"
    );
    let pod = apply(&body, &d);
    // Horizon gets every testnet validator.
    assert_eq!(
        env_value(&pod, "horizon", "STELLAR_PEER_COUNT").as_deref(),
        Some("3")
    );
    assert_eq!(
        pod["metadata"]["annotations"]["stellar.org/peer-count"],
        "3"
    );
}

#[test]
fn pod_without_metadata_map_paths() {
    let snap = snapshot();
    let pod = json!({"metadata": {"labels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": "horizon"}}, "spec": {"containers": [{"name": "stellar-node"}]}});
    let view = <review::PodView<'_> as serde::Deserialize>::deserialize(&pod).expect("view");
    let d = decide_pod(
        &view,
        Some("stellar"),
        Some(&snap),
        &InjectSettings::default(),
    );
    let patch = patch_of(&d, &InjectSettings::default());
    let mut p = pod.clone();
    json_patch::patch(&mut p, &patch.0).expect("applies");
    assert_eq!(p["metadata"]["annotations"]["stellar.org/peer-count"], "3");
}

#[test]
fn network_is_never_mixed_and_self_never_included() {
    let snap = snapshot();
    let body = review_with(|v| {
        v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
            json!("mainnet-1");
    });
    let d = decide_body(&body, Some(&snap));
    let Decision::Inject { list, warnings, .. } = &d else {
        panic!("{d:?}")
    };
    assert!(
        list.known.is_empty(),
        "mainnet-1 is alone on mainnet: {:?}",
        list.known
    );
    assert!(
        warnings.iter().any(|w| w.contains("empty peer list")),
        "{warnings:?}"
    );
}

#[test]
fn skips() {
    let snap = snapshot();
    let cases: Vec<(String, SkipReason)> = vec![
        (
            review_with(|v| v["request"]["operation"] = json!("UPDATE")),
            SkipReason::NotCreate,
        ),
        (
            review_with(|v| v["request"]["operation"] = json!("DELETE")),
            SkipReason::NotCreate,
        ),
        (
            review_with(|v| {
                v["request"]["kind"] =
                    json!({"group": "apps", "version": "v1", "kind": "StatefulSet"})
            }),
            SkipReason::NotPod,
        ),
        (
            review_with(|v| {
                v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Service"})
            }),
            SkipReason::NotPod,
        ),
        (
            review_with(|v| v["request"]["subResource"] = json!("ephemeralcontainers")),
            SkipReason::NotPod,
        ),
        (
            review_with(|v| {
                v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/name"] =
                    json!("nginx")
            }),
            SkipReason::NotStellar,
        ),
        (
            review_with(|v| v["request"]["object"]["metadata"]["labels"] = json!(null)),
            SkipReason::NotStellar,
        ),
        (
            review_with(|v| v["request"]["object"]["metadata"] = json!(null)),
            SkipReason::NotStellar,
        ),
        (
            review_with(|v| {
                v["request"]["object"]["metadata"]["labels"]
                    .as_object_mut()
                    .map(|l| l.remove("app.kubernetes.io/instance"));
            }),
            SkipReason::NoInstanceLabel,
        ),
        (
            review_with(|v| {
                v["request"]["object"]["metadata"]["annotations"]["stellar.org/inject-peers"] =
                    json!("false")
            }),
            SkipReason::OptedOut,
        ),
        (
            review_with(|v| {
                v["request"]["object"]["metadata"]["annotations"]["stellar.org/inject-peers"] =
                    json!("False")
            }),
            SkipReason::OptedOut,
        ),
    ];
    for (body, want) in cases {
        match decide_body(&body, Some(&snap)) {
            Decision::Skip(r) => assert_eq!(r, want),
            other => panic!("want skip {want:?}, got {other:?}"),
        }
        // Skips never depend on the cache.
        match decide_body(&body, None) {
            Decision::Skip(r) => assert_eq!(r, want),
            other => panic!("unsynced: want skip {want:?}, got {other:?}"),
        }
    }
    // inject-peers: "true" does not opt out.
    let body = review_with(|v| {
        v["request"]["object"]["metadata"]["annotations"]["stellar.org/inject-peers"] =
            json!("true")
    });
    assert!(matches!(
        decide_body(&body, Some(&snap)),
        Decision::Inject { .. }
    ));
}

#[test]
fn unsynced_cache_answers_not_ready_for_stellar_pods() {
    assert!(matches!(decide_body(REVIEW, None), Decision::NotReady));
}

#[test]
fn denials_say_what_to_do() {
    let snap = snapshot();
    let cases: Vec<(String, DenyReason, &str)> = vec![
        (
            review_with(|v| {
                v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
                    json!("ghost")
            }),
            DenyReason::UnknownNode,
            "no StellarNode stellar/ghost",
        ),
        (
            review_with(|v| v["request"]["namespace"] = json!("elsewhere")),
            DenyReason::UnknownNode,
            "elsewhere/validator-1",
        ),
        (
            review_with(|v| {
                v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
                    json!("broken")
            }),
            DenyReason::InvalidNode,
            "fix its spec",
        ),
        (
            review_with(|v| v["request"]["object"]["spec"]["containers"] = json!([])),
            DenyReason::NoContainers,
            "no containers",
        ),
        (
            review_with(|v| v["request"]["object"]["spec"]["containers"] = json!("x")),
            DenyReason::MalformedPod,
            "cannot read the pod",
        ),
        (
            review_with(|v| v["request"]["object"]["metadata"]["labels"]["x"] = json!(5)),
            DenyReason::MalformedPod,
            "cannot read the pod",
        ),
        (
            review_with(|v| v["request"]["object"] = json!(null)),
            DenyReason::MalformedPod,
            "no object",
        ),
    ];
    for (body, want, text) in cases {
        match decide_body(&body, Some(&snap)) {
            Decision::Deny { reason, message } => {
                assert_eq!(reason, want);
                assert!(message.contains(text), "{message}");
            }
            other => panic!("want deny {want:?}, got {other:?}"),
        }
    }
}

#[test]
fn namespace_falls_back_to_object_metadata() {
    let snap = snapshot();
    let body = review_with(|v| {
        v["request"].as_object_mut().map(|r| r.remove("namespace"));
    });
    assert!(matches!(
        decide_body(&body, Some(&snap)),
        Decision::Inject { .. }
    ));
    let body = review_with(|v| {
        v["request"].as_object_mut().map(|r| r.remove("namespace"));
        v["request"]["object"]["metadata"]
            .as_object_mut()
            .map(|m| m.remove("namespace"));
    });
    assert!(matches!(
        decide_body(&body, Some(&snap)),
        Decision::Deny {
            reason: DenyReason::NoNamespace,
            ..
        }
    ));
}

#[test]
fn review_errors_are_explained() {
    assert!(matches!(
        parse_review(b"{not json"),
        Err(ReviewError::Json(_))
    ));
    assert!(matches!(parse_review(b"[]"), Err(ReviewError::Json(_))));
    let v1beta1 = review_with(|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1"));
    let e = parse_review(v1beta1.as_bytes()).expect_err("v1beta1");
    assert!(
        e.to_string().contains("admissionReviewVersions: [v1]"),
        "{e}"
    );
    let kind = review_with(|v| v["kind"] = json!("Pod"));
    assert!(matches!(
        parse_review(kind.as_bytes()),
        Err(ReviewError::Kind(_))
    ));
    let noreq = review_with(|v| {
        v.as_object_mut().map(|o| o.remove("request"));
    });
    assert!(matches!(
        parse_review(noreq.as_bytes()),
        Err(ReviewError::NoRequest)
    ));
    let nouid = review_with(|v| {
        v["request"].as_object_mut().map(|o| o.remove("uid"));
    });
    assert!(matches!(
        parse_review(nouid.as_bytes()),
        Err(ReviewError::Json(_))
    ));
}

#[test]
fn custom_container_and_mount_path() {
    let snap = snapshot();
    let settings = InjectSettings {
        container: "stellar-health-check".into(),
        mount_path: "/run/peers/core.toml".into(),
        ..InjectSettings::default()
    };
    settings.validate().expect("valid");
    let req = parse_review(REVIEW.as_bytes()).expect("review");
    let d = decide(&req, Some(&snap), &settings);
    let pod = apply_with(REVIEW, &d, &settings);
    assert_eq!(
        env_value(&pod, "stellar-health-check", "STELLAR_PEERS_CONFIG").as_deref(),
        Some("/run/peers/core.toml")
    );
    assert!(env_value(&pod, "stellar-node", "STELLAR_PEERS").is_none());
    let vol = pod["spec"]["volumes"]
        .as_array()
        .expect("v")
        .iter()
        .find(|v| v["name"] == "stellar-peers")
        .cloned()
        .expect("vol");
    assert_eq!(vol["downwardAPI"]["items"][0]["path"], "core.toml");
}

#[test]
fn mount_path_validation() {
    for bad in [
        "peers.cfg",
        "/peers.cfg",
        "/etc/peers/",
        "/etc/../x/p.cfg",
        "",
    ] {
        let s = InjectSettings {
            mount_path: bad.into(),
            ..InjectSettings::default()
        };
        assert!(s.validate().is_err(), "{bad:?} accepted");
    }
    let s = InjectSettings::default();
    assert_eq!(
        (s.mount_dir(), s.file_name()),
        ("/etc/stellar/peers", "peers.cfg")
    );
}

#[test]
fn labels_and_annotations_keep_only_what_the_decision_reads() {
    let pod = r#"{"metadata": {
        "labels": {"a": "1", "app.kubernetes.io\/name": "stellar-node",
                   "app.kubernetes.io/instance": "first", "app.kubernetes.io/instance": "validator-1"},
        "annotations": {"stellar.org/inject-peers": "\u0066alse", "other": "x"}},
        "spec": {"containers": []}}"#;
    let view: review::PodView<'_> = serde_json::from_str(pod).expect("view");
    assert_eq!(
        view.name_label(),
        Some("stellar-node"),
        "escaped key matched"
    );
    assert_eq!(
        view.instance_label(),
        Some("validator-1"),
        "last duplicate wins"
    );
    assert_eq!(
        view.inject_annotation(),
        Some("false"),
        "escaped value read"
    );
    // Every value must still be a string, as in a Pod.
    for bad in [
        r#"{"metadata": {"labels": {"a": 1}}}"#,
        r#"{"metadata": {"annotations": {"a": null}}}"#,
        r#"{"metadata": {"labels": ["app.kubernetes.io/name"]}}"#,
    ] {
        assert!(
            serde_json::from_str::<review::PodView<'_>>(bad).is_err(),
            "{bad}"
        );
    }
    // Absent and null maps are fine.
    let view: review::PodView<'_> =
        serde_json::from_str(r#"{"metadata": {"labels": null}}"#).expect("null labels");
    assert_eq!(view.name_label(), None);
}

#[test]
fn body_must_be_utf8() {
    let mut body = REVIEW.as_bytes().to_vec();
    let i = body
        .windows(8)
        .position(|w| w == b"stellar-")
        .expect("text");
    body[i] = 0xff;
    let e = parse_review(&body).expect_err("not UTF-8");
    assert!(matches!(e, ReviewError::Utf8(_)), "{e:?}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

#[test]
fn patch_shape_captures_what_the_patch_depends_on() {
    let snap = snapshot();
    let shape_of = |body: &str| match decide_body(body, Some(&snap)) {
        Decision::Inject { shape, .. } => shape,
        d => panic!("{d:?}"),
    };
    let base = shape_of(REVIEW);
    // Things the patch does not read leave the shape alone.
    let cosmetic = review_with(|v| {
        v["request"]["uid"] = json!("another");
        v["request"]["object"]["metadata"]["labels"]["extra"] = json!("x");
        v["request"]["object"]["spec"]["containers"][1]["image"] = json!("other:1");
        v["request"]["object"]["spec"]["containers"][1]["env"][0]["value"] = json!("y");
    });
    assert_eq!(shape_of(&cosmetic), base);
    // Things it does read change it.
    for change in [
        review_with(|v| {
            v["request"]["object"]["spec"]["containers"][1]["env"]
                .as_array_mut()
                .expect("env")
                .insert(0, json!({"name": "STELLAR_NETWORK", "value": "x"}));
        }),
        review_with(|v| {
            v["request"]["object"]["spec"]["containers"][1]
                .as_object_mut()
                .expect("container")
                .remove("env");
        }),
        review_with(|v| {
            v["request"]["object"]["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("annotations");
        }),
        review_with(|v| {
            v["request"]["object"]["spec"]["containers"]
                .as_array_mut()
                .expect("containers")
                .reverse();
        }),
    ] {
        assert_ne!(shape_of(&change), base);
    }
}

fn merge_settings() -> InjectSettings {
    InjectSettings {
        init_image: "stellar-peer-injector:test".into(),
        ..InjectSettings::default()
    }
}

fn decide_with(body: &str, snap: &PeerSnapshot, settings: &InjectSettings) -> Decision {
    let req = parse_review(body.as_bytes()).expect("review");
    decide(&req, Some(snap), settings)
}

fn init_of(pod: &Value) -> Vec<Value> {
    pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Pod Security `restricted` (pod-security-admission's checks, container by container):
/// the injected init container passes them by itself, whatever the pod sets.
#[test]
fn the_init_container_satisfies_pod_security_restricted_by_itself() {
    let snap = snapshot();
    let s = merge_settings();
    let body = review_with(|_| {});
    let d = decide_with(&body, &snap, &s);
    let pod = apply_with(&body, &d, &s);
    let init = init_of(&pod);
    let ours = init
        .iter()
        .find(|c| c["name"] == INIT_CONTAINER_NAME)
        .expect("the init container");
    let sc = &ours["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert_ne!(sc["runAsUser"], 0, "{sc}");
    assert!(sc["runAsUser"].is_u64(), "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    assert!(sc["capabilities"]["add"].is_null(), "{sc}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    assert!(
        sc["privileged"].is_null() || sc["privileged"] == false,
        "{sc}"
    );
}

#[test]
fn merge_mode_adds_the_init_container_the_emptydir_and_the_conf() {
    let snap = snapshot();
    let s = merge_settings();
    // The fixture's validator runs `/usr/bin/stellar-core run --conf /config/stellar-core.cfg`
    // and already has an init container of its own.
    let body = review_with(|v| {
        v["request"]["object"]["spec"]["initContainers"] =
            json!([{"name": "own-init", "image": "busybox"}]);
    });
    let d = decide_with(&body, &snap, &s);
    let pod = apply_with(&body, &d, &s);
    let init = init_of(&pod);
    assert_eq!(init.len(), 2);
    assert_eq!(init[0]["name"], "own-init", "ours goes after the pod's own");
    assert_eq!(init[1]["name"], INIT_CONTAINER_NAME);
    assert_eq!(init[1]["image"], "stellar-peer-injector:test");
    assert_eq!(
        init[1]["args"],
        json!([
            "render-config",
            "--base",
            "/config/stellar-core.cfg",
            "--peers",
            "/etc/stellar/peers/peers.cfg",
            "--out",
            "/etc/stellar/merged/stellar-core.cfg"
        ])
    );
    let mounts: Vec<(&str, &str)> = init[1]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or(""),
                m["mountPath"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("config", "/config"),
            ("stellar-peers", "/etc/stellar/peers"),
            ("stellar-peers-merged", "/etc/stellar/merged")
        ]
    );
    let main = pod["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "stellar-node")
        .cloned()
        .expect("main");
    assert_eq!(main["command"], json!(["/usr/bin/stellar-core"]));
    assert_eq!(
        main["args"],
        json!(["run", "--conf", "/etc/stellar/merged/stellar-core.cfg"])
    );
    assert!(
        main["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["name"] == MERGED_VOLUME_NAME && m["readOnly"] == true)
    );
    assert!(
        pod["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["name"] == MERGED_VOLUME_NAME && v["emptyDir"].is_object())
    );
    assert_eq!(
        pod["metadata"]["annotations"][ANNOTATION_CONFIG_BASE],
        "/config/stellar-core.cfg"
    );
    let status: Value = serde_json::from_str(
        pod["metadata"]["annotations"][ANNOTATION_STATUS]
            .as_str()
            .expect("status annotation"),
    )
    .expect("status is JSON");
    assert_eq!(
        status,
        json!({"version": env!("CARGO_PKG_VERSION"), "mode": "merge"})
    );
    // A second pass (reinvocation, re-applied manifest) is a fixpoint.
    let body2 = review_with(|v| v["request"]["object"] = pod.clone());
    let again = apply_with(&body2, &decide_with(&body2, &snap, &s), &s);
    assert_eq!(again, pod);
}

#[test]
fn operator_shaped_container_without_args_is_given_run_conf() {
    let snap = snapshot();
    let s = merge_settings();
    let body = review_with(|v| {
        let c = &mut v["request"]["object"]["spec"]["containers"][1];
        c.as_object_mut().expect("container").remove("command");
        c.as_object_mut().expect("container").remove("args");
    });
    let pod = apply_with(&body, &decide_with(&body, &snap, &s), &s);
    let main = &pod["spec"]["containers"][1];
    assert!(main.get("command").is_none());
    assert_eq!(
        main["args"],
        json!(["run", "--conf", "/etc/stellar/merged/stellar-core.cfg"])
    );
}

#[test]
fn env_mode_and_non_validators_are_unchanged_and_odd_commands_are_left_alone() {
    let snap = snapshot();
    let s = merge_settings();
    // Annotated env: no init container.
    let body = review_with(|v| {
        v["request"]["object"]["metadata"]["annotations"]["stellar.org/peers-config-mode"] =
            json!("env");
    });
    let pod = apply_with(&body, &decide_with(&body, &snap, &s), &s);
    assert!(init_of(&pod).is_empty());
    assert_eq!(
        pod["spec"]["containers"][1]["args"],
        json!(["run", "--conf", "/config/stellar-core.cfg"])
    );
    // A shell command: left alone, with a warning.
    let body = review_with(|v| {
        v["request"]["object"]["spec"]["containers"][1]["command"] =
            json!(["/bin/sh", "-c", "exec stellar-core run"]);
    });
    let d = decide_with(&body, &snap, &s);
    let Decision::Inject { warnings, .. } = &d else {
        panic!("{d:?}")
    };
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("is not stellar-core") && w.contains("left alone")),
        "{warnings:?}"
    );
    let pod = apply_with(&body, &d, &s);
    assert!(init_of(&pod).is_empty());
    assert!(env_value(&pod, "stellar-node", "STELLAR_PEERS").is_some());
    // Horizon's pods get env vars only.
    let body = review_with(|v| {
        v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
            json!("horizon");
    });
    let pod = apply_with(&body, &decide_with(&body, &snap, &s), &s);
    assert!(init_of(&pod).is_empty());
}

#[test]
fn read_replicas_get_env_and_the_snippet_only() {
    let snap = snapshot();
    let s = merge_settings();
    // The operator's {name}-read pod: the validator's labels plus the role, a bash script.
    let body = review_with(|v| {
        let pod = &mut v["request"]["object"];
        pod["metadata"]["labels"]["stellar.org/role"] = json!("read-replica");
        pod["spec"]["containers"] = json!([{"name": "stellar-core", "image": "stellar/stellar-core",
            "command": ["/bin/bash", "/config/startup.sh"],
            "volumeMounts": [{"name": "config", "mountPath": "/config"}]}]);
    });
    let d = decide_with(&body, &snap, &s);
    let Decision::Inject {
        warnings,
        config_problem,
        ..
    } = &d
    else {
        panic!("{d:?}")
    };
    assert!(config_problem.is_none(), "{config_problem:?}");
    assert!(
        warnings.iter().all(|w| w.contains("no container named")),
        "{warnings:?}"
    );
    let pod = apply_with(&body, &d, &s);
    assert!(init_of(&pod).is_empty());
    assert!(env_value(&pod, "stellar-core", "STELLAR_PEERS").is_some());
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        json!(["/bin/bash", "/config/startup.sh"])
    );
}

#[test]
fn captive_and_validator_init_containers_share_one_builder() {
    use super::config::{BaseMount, CaptiveWiring, MergePlan};
    let s = merge_settings();
    let plan = |captive| MergePlan {
        base: "/config/x.cfg".into(),
        base_mount: BaseMount {
            name: "config".into(),
            mount_path: "/config".into(),
            sub_path: None,
        },
        args: vec![],
        captive,
    };
    let peers = json!({"name": VOLUME_NAME, "mountPath": "/etc/stellar/peers", "readOnly": true});
    let core = patch::init_container(&plan(None), &s, peers.clone());
    let captive = patch::init_container(&plan(Some(CaptiveWiring::Env)), &s, peers);
    for key in [
        "name",
        "image",
        "securityContext",
        "resources",
        "terminationMessagePolicy",
        "volumeMounts",
    ] {
        assert_eq!(core[key], captive[key], "{key}");
    }
    assert_eq!(captive["securityContext"]["runAsNonRoot"], true);
    let args = |v: &Value| -> Vec<String> {
        v["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("arg").to_owned())
            .collect()
    };
    assert_eq!(
        args(&captive),
        [
            "render-config",
            "--base",
            "/config/x.cfg",
            "--peers",
            "/etc/stellar/peers/peers.cfg",
            "--out",
            "/etc/stellar/merged/captive-core.cfg",
            "--flavour",
            "captive-core"
        ]
    );
    assert_eq!(
        args(&core),
        [
            "render-config",
            "--base",
            "/config/x.cfg",
            "--peers",
            "/etc/stellar/peers/peers.cfg",
            "--out",
            "/etc/stellar/merged/stellar-core.cfg"
        ]
    );
}

/// A live policy adds the native sidecar after the init container: the same image,
/// mounts and securityContext, `live-peers` instead of `render-config`; re-injection
/// keeps one of each; `restart` adds nothing, and neither does env mode.
#[test]
fn a_live_policy_adds_the_live_sidecar_after_the_init_container() {
    use crate::live::{LIVE_CONTAINER_NAME, PeerUpdates};
    let snap = snapshot();
    let s = InjectSettings {
        peer_updates: PeerUpdates::Live,
        ..merge_settings()
    };
    let body = review_with(|_| {});
    let d = decide_with(&body, &snap, &s);
    let pod = apply_with(&body, &d, &s);
    let init = init_of(&pod);
    let names: Vec<&str> = init.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, [INIT_CONTAINER_NAME, LIVE_CONTAINER_NAME]);
    let (first, live) = (&init[0], &init[1]);
    assert_eq!(live["restartPolicy"], "Always");
    assert!(first["restartPolicy"].is_null());
    assert_eq!(live["args"][0], "live-peers");
    assert_eq!(
        live["args"].as_array().map(|a| &a[1..]),
        first["args"].as_array().map(|a| &a[1..])
    );
    assert_eq!(live["image"], first["image"]);
    assert_eq!(live["securityContext"], first["securityContext"]);
    assert_eq!(live["volumeMounts"], first["volumeMounts"]);
    // Injecting the injected pod again changes nothing.
    let again = review_with(|v| v["request"]["object"] = pod.clone());
    let d2 = decide_with(&again, &snap, &s);
    assert_eq!(apply_with(&again, &d2, &s), pod);
    // Restart (the default) and env mode: no sidecar.
    for settings in [
        merge_settings(),
        InjectSettings {
            peer_updates: PeerUpdates::Live,
            config_mode: ConfigMode::Env,
            ..merge_settings()
        },
    ] {
        let d = decide_with(&body, &snap, &settings);
        let pod = apply_with(&body, &d, &settings);
        assert!(
            init_of(&pod)
                .iter()
                .all(|c| c["name"] != LIVE_CONTAINER_NAME),
            "{settings:?}"
        );
    }
}
