//! Validators of the Stellar-K8s operator's exact shape on the bed's real node: shared by
//! the real-node trials and the live-updates benchmark.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;

use crate::ns::TestNs;
use crate::objects::{operator_labels, stellar_node};
use crate::realnode::{RealNode, on_real_node};

/// The operator's `stellar-core.cfg` for a validator (tests/fixtures/configs/README.md).
pub const OPERATOR_CFG: &str =
    include_str!("../../tests/fixtures/configs/operator-quorum-recent.cfg");
/// The network passphrase of [`OPERATOR_CFG`].
pub const PASSPHRASE: &str = "Test SDF Network ; September 2015";

/// The operator's ConfigMap data for a validator: its `stellar-core.cfg`.
pub fn operator_cfg() -> Value {
    json!({"stellar-core.cfg": OPERATOR_CFG, "NETWORK_PASSPHRASE": PASSPHRASE})
}

/// The operator's validator StatefulSet as its code builds it (REFERENCE.md): `stellar-node`
/// (image `stellar/stellar-core:<version>`, no command, no args) first, `stellar-health-check`
/// second, ConfigMap `{name}-config` read-only at /config, data at /opt/stellar/data, the seed
/// from a Secret. On the real node, with three differences from the operator's pods, each
/// forced by the bed: no AppArmor annotations (this host has no AppArmor, and the kubelet
/// refuses pods that ask for it); the health-check sidecar runs the bed's pause image (no
/// registry serves stellar/health-check here) and so has no probes; and the pod asks for the
/// real node. `stellar/stellar-core:22.1.0` is the bed's STAND-IN for stellar-core.
pub fn operator_validator(name: &str, pause_image: &str) -> Value {
    let labels = operator_labels(name, "Validator", "testnet");
    let mut spec = json!({
        "containers": [
            {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0",
             "ports": [{"containerPort": 11625}],
             "env": [{"name": "STELLAR_CORE_SEED", "valueFrom": {"secretKeyRef": {"name": format!("{name}-seed"), "key": "STELLAR_CORE_SEED"}}}],
             "volumeMounts": [{"name": "data", "mountPath": "/opt/stellar/data"},
                              {"name": "config", "mountPath": "/config", "readOnly": true}]},
            {"name": "stellar-health-check", "image": pause_image,
             "ports": [{"name": "health", "containerPort": 8081}]}
        ],
        "terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "data", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": format!("{name}-config")}}]
    });
    on_real_node(&mut spec);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": format!("{name}-headless"),
            "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
            "template": {"metadata": {"labels": labels}, "spec": spec}
        }
    })
}

pub fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

pub fn seed_secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-seed")},
           "stringData": {"STELLAR_CORE_SEED": "SDHOAMBNLGCE2MV5ZKIVZAQD3VCLGP53P3OBSBI6UN5L5XZI5TKHFQL4"}})
}

/// A validator of the operator's shape on the real node: StellarNode, ConfigMap (with
/// `cfg_data` as its data), seed Secret and StatefulSet.
pub async fn add_validator(
    ns: &TestNs,
    name: &str,
    cfg_data: Value,
    node: &RealNode,
) -> Result<(), String> {
    add_validator_with(ns, name, cfg_data, node, |_| {}).await
}

/// [`add_validator`], with `tweak` applied to the StatefulSet first.
pub async fn add_validator_with(
    ns: &TestNs,
    name: &str,
    cfg_data: Value,
    node: &RealNode,
    tweak: impl FnOnce(&mut Value),
) -> Result<(), String> {
    ns.create::<StellarNode>(stellar_node(name, "Validator", "testnet", false))
        .await?;
    ns.create::<ConfigMap>(config_map(&format!("{name}-config"), cfg_data))
        .await?;
    ns.create::<Secret>(seed_secret(name)).await?;
    let mut sts = operator_validator(name, &node.pause_image);
    tweak(&mut sts);
    ns.create::<StatefulSet>(sts).await?;
    Ok(())
}
