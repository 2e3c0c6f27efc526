//! Fuzzes the request path: AdmissionReview decoding, the decision and patch
//! building. Every patch must apply cleanly to the object it was made for, and a
//! valid Pod must stay a valid Pod.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stellar_peer_injector::inject::patch::build_patch;
use stellar_peer_injector::inject::review::parse_review;
use stellar_peer_injector::inject::{Decision, InjectSettings, decide};
use stellar_peer_injector::nodes::{Defect, NodeKind, NodeRecord};
use stellar_peer_injector::peers::{PeerSettings, PeerSnapshot};

fn snapshot() -> &'static PeerSnapshot {
    static S: OnceLock<PeerSnapshot> = OnceLock::new();
    S.get_or_init(|| {
        let rec = NodeRecord::new;
        let mut bad = rec("stellar", "broken", NodeKind::Validator, "testnet");
        bad.problem = Some(Defect::NetworkObject.into());
        let nodes = vec![
            rec("stellar", "validator-1", NodeKind::Validator, "testnet"),
            rec("stellar", "validator-2", NodeKind::Validator, "testnet"),
            rec("stellar", "h", NodeKind::Horizon, "testnet"),
            rec("stellar", "m", NodeKind::Validator, "mainnet"),
            rec("a~b", "c/d", NodeKind::Validator, "ü"),
            bad,
        ];
        PeerSnapshot::build(1, &nodes, &PeerSettings { max_peers: 2, ..PeerSettings::default() })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_review(data) else { return };
    let settings = InjectSettings::default();
    let decision = decide(&req, Some(snapshot()), &settings);
    let Decision::Inject { shape, list, .. } = decision else { return };
    let patch = build_patch(&shape, &list, &settings);
    // The webhook skips fields it does not read without validating their escapes (a
    // lone `\ud800` there is harmless to it); such a body has no JSON Value to patch.
    let Ok(full) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let mut obj = full["request"]["object"].clone();
    assert!(obj.is_object(), "injected without an object");
    let was_pod = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(obj.clone()).is_ok();
    // The patch survives its own wire form.
    let bytes = serde_json::to_vec(&patch).expect("patch serializes");
    let back: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch deserializes");
    json_patch::patch(&mut obj, &back.0).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    if was_pod {
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(obj).expect("a Pod stays a Pod");
    }
});
