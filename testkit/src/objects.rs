//! Test objects shaped like the operator's (StellarNodes, StatefulSets, their labels),
//! and readers of what the injector wrote: pod env and annotations, template hashes,
//! admission answers, and the peers of a node's pods.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::TestResult;
use crate::ns::TestNs;
use crate::wait::wait_for;

/// Operator-shaped labels of a StellarNode's workload and pods.
pub fn operator_labels(name: &str, node_type: &str, network: &str) -> Value {
    let component = match node_type {
        "Validator" => "validator",
        "Horizon" => "horizon",
        _ => "sorobanrpc",
    };
    json!({
        "app.kubernetes.io/name": "stellar-node",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "stellar-operator",
        "stellar.org/node-type": node_type,
        "stellar-network": network,
    })
}

/// A StellarNode as the operator's users write it.
pub fn stellar_node(name: &str, node_type: &str, network: &str, suspended: bool) -> Value {
    json!({
        "apiVersion": "stellar.org/v1alpha1", "kind": "StellarNode",
        "metadata": {"name": name},
        "spec": {"nodeType": node_type, "network": network, "version": "v22.1.0", "suspended": suspended,
                 "storage": {"storageClass": "standard", "size": "100Gi"}}
    })
}

/// The StatefulSet the operator makes for a validator (pod template with the
/// health-check sidecar first, as the operator does).
pub fn operator_statefulset(name: &str, node_type: &str, network: &str, replicas: i32) -> Value {
    let labels = operator_labels(name, node_type, network);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": format!("{name}-headless"),
            "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [
                    {"name": "stellar-health-check", "image": "stellar/health-check:v0.3.1"},
                    {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0", "ports": [{"name": "peer", "containerPort": 11625}],
                     "env": [{"name": "STELLAR_CORE_SEED", "value": "SXXX"}]}
                ]}
            }
        }
    })
}

/// The pod's `Ready` condition is `True`.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Env of a named container of a pod.
pub fn pod_env(pod: &Pod, container: &str) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

pub fn env_get(pod: &Pod, container: &str, name: &str) -> Option<String> {
    pod_env(pod, container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.annotations.as_ref()?.get(key).cloned()
}

/// The fixture review, re-targeted at StellarNode `namespace/instance`.
pub fn review_for(namespace: &str, instance: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/validator-pod-review.json"
    ))
    .unwrap_or(Value::Null);
    v["request"]["namespace"] = json!(namespace);
    v["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] = json!(instance);
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Decodes the JSON patch of an admission answer and returns the STELLAR_PEERS value it sets.
pub fn injected_peers(answer: &Value) -> Option<String> {
    let b64 = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let ops: Vec<Value> = serde_json::from_slice(&bytes).ok()?;
    ops.iter().find_map(|op| {
        let v = &op["value"];
        if v["name"] == "STELLAR_PEERS" {
            return v["value"].as_str().map(str::to_owned);
        }
        v.as_array()?
            .iter()
            .find(|e| e["name"] == "STELLAR_PEERS")?["value"]
            .as_str()
            .map(str::to_owned)
    })
}

/// The address StellarNode `name` in namespace `ns` is known by to its peers.
pub fn svc(name: &str, ns: &str) -> String {
    format!("{name}-0.{name}-headless.{ns}.svc.cluster.local:11625")
}

/// `STELLAR_PEERS` and the `stellar.org/peers-hash` annotation of the first Ready pod of
/// `instance` that is not being deleted.
pub async fn pod_peers(ns: &TestNs, instance: &str) -> Option<(String, Option<String>)> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}")))
        .await
        .ok()?;
    let p = pods
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())?;
    if !pod_ready(&p) {
        return None;
    }
    Some((
        env_get(&p, "stellar-node", "STELLAR_PEERS").unwrap_or_default(),
        annotation(&p, "stellar.org/peers-hash"),
    ))
}

/// Waits until the first Ready pod of `instance` was injected (it carries the
/// peers-hash annotation) with exactly `want` as peers.
pub async fn wait_peers(ns: &TestNs, instance: &str, want: &[String], secs: u64) -> TestResult {
    let want = want.join(",");
    wait_for(
        Duration::from_secs(secs),
        &format!("{instance} pod with peers {want}"),
        || {
            let want = want.clone();
            async move {
                pod_peers(ns, instance)
                    .await
                    .filter(|(p, hash)| *p == want && hash.is_some())
                    .map(|_| ())
            }
        },
    )
    .await
}

/// Waits until each of `waiting` has exactly the other members of `network` (StellarNode
/// names in `ns`) as peers, `secs` for each.
pub async fn wait_peer_mesh(
    ns: &TestNs,
    waiting: &[&str],
    network: &[&str],
    secs: u64,
) -> TestResult {
    for v in waiting {
        let others: Vec<String> = network
            .iter()
            .filter(|o| *o != v)
            .map(|o| svc(o, &ns.name))
            .collect();
        wait_peers(ns, v, &others, secs).await?;
    }
    Ok(())
}

/// The `stellar.org/peers-hash` annotation of a StatefulSet's pod template: the peer
/// list its pods were (or will be) made with, as the rollout loop writes it.
pub fn template_hash(s: &StatefulSet) -> Option<String> {
    pod_template_hash(&s.spec.as_ref()?.template)
}

/// The `stellar.org/peers-hash` annotation of any pod template (a Deployment's too).
pub fn pod_template_hash(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Option<String> {
    t.metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(stellar_peer_injector::inject::ANNOTATION_HASH)
        .cloned()
}
