//! Pure: the governing Services validators need for their in-cluster addresses.
//!
//! A validator without `stellar.org/peer-address` is known by its pod's stable name
//! through its StatefulSet's governing Service, `{name}-headless` (see
//! [`super::address::pod_address`]). The Stellar-K8s operator names that Service in
//! `serviceName` but does not create it, so the injector does when it is missing.

use serde_json::{Value, json};

use super::PeerSnapshot;
use super::address::{self, DEFAULT_PEER_PORT};
use crate::inject::{LABEL_INSTANCE, LABEL_NAME, LABEL_NAME_VALUE};

/// Label on the Services the injector created (and so may own).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "stellar-peer-injector";

/// One governing Service a validator's address needs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoverningService {
    pub namespace: String,
    /// The Service's name, `{node}-headless`.
    pub name: String,
    /// The StellarNode's name.
    pub node: String,
    /// The StellarNode's uid, for the owner reference (absent offline).
    pub node_uid: Option<String>,
}

/// The governing Services of every validator that is a peer by its in-cluster pod
/// address (an explicit `stellar.org/peer-address` needs none), sorted.
pub fn wanted(snapshot: &PeerSnapshot) -> Vec<GoverningService> {
    let domain = &snapshot.settings().cluster_domain;
    let mut out: Vec<GoverningService> = snapshot
        .nodes()
        .filter(|e| e.record.is_peer())
        .filter(|e| {
            let r = &e.record;
            e.self_address() == Some(address::pod_address(&r.name, &r.namespace, domain).as_str())
        })
        .map(|e| GoverningService {
            namespace: e.record.namespace.clone(),
            name: address::governing_service(&e.record.name),
            node: e.record.name.clone(),
            node_uid: e.record.uid.clone(),
        })
        .collect();
    out.sort();
    out
}

/// The Service object: headless, selecting the node's pods, port `peer`, publishing
/// not-ready addresses so that peers resolve while they start, owned by the
/// StellarNode so that it goes when the node goes.
pub fn manifest(s: &GoverningService) -> Value {
    let mut meta = json!({
        "name": s.name,
        "namespace": s.namespace,
        "labels": {
            MANAGED_BY_LABEL: MANAGED_BY,
            LABEL_NAME: LABEL_NAME_VALUE,
            LABEL_INSTANCE: s.node,
        },
    });
    if let Some(uid) = &s.node_uid {
        meta["ownerReferences"] = json!([{
            "apiVersion": "stellar.org/v1alpha1",
            "kind": "StellarNode",
            "name": s.node,
            "uid": uid,
        }]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": { LABEL_NAME: LABEL_NAME_VALUE, LABEL_INSTANCE: s.node },
            "ports": [{ "name": "peer", "port": DEFAULT_PEER_PORT, "targetPort": DEFAULT_PEER_PORT, "protocol": "TCP" }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{NodeKind, NodeRecord};
    use crate::peers::PeerSettings;

    #[test]
    fn only_validators_known_by_their_pod_address_need_one() {
        let mut v1 = NodeRecord::new("ns", "v1", NodeKind::Validator, "testnet");
        v1.uid = Some("u1".into());
        let mut ext = NodeRecord::new("ns", "v2", NodeKind::Validator, "testnet");
        ext.peer_address = Some("v2.example.org".into());
        let mut bad_addr = NodeRecord::new("ns", "v3", NodeKind::Validator, "testnet");
        bad_addr.peer_address = Some("[::1]".into()); // falls back to the pod address
        let mut suspended = NodeRecord::new("ns", "v4", NodeKind::Validator, "testnet");
        suspended.suspended = true;
        let mut broken = NodeRecord::new("ns", "v5", NodeKind::Validator, "testnet");
        broken.problem = Some(crate::nodes::Defect::NoSpec.into());
        let h = NodeRecord::new("ns", "h", NodeKind::Horizon, "testnet");
        let s = PeerSnapshot::build(
            1,
            &[v1, ext, bad_addr, suspended, broken, h],
            &PeerSettings::default(),
        );
        let w = wanted(&s);
        let names: Vec<&str> = w.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["v1-headless", "v3-headless"]);
        assert_eq!(w[0].node_uid.as_deref(), Some("u1"));
    }

    #[test]
    fn manifest_is_a_headless_service_for_the_nodes_pods() {
        let g = GoverningService {
            namespace: "ns".into(),
            name: "v1-headless".into(),
            node: "v1".into(),
            node_uid: Some("u1".into()),
        };
        let svc: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(manifest(&g)).expect("a Service");
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let sel = spec.selector.expect("selector");
        assert_eq!(sel.get(LABEL_INSTANCE).map(String::as_str), Some("v1"));
        assert_eq!(
            sel.get(LABEL_NAME).map(String::as_str),
            Some("stellar-node")
        );
        let ports = spec.ports.expect("ports");
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("peer"), 11625)
        );
        let owner = &svc.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StellarNode", "u1")
        );
        assert_eq!(
            svc.metadata
                .labels
                .expect("labels")
                .get(MANAGED_BY_LABEL)
                .map(String::as_str),
            Some(MANAGED_BY)
        );
        // The pod address's Service is this one.
        assert!(address::pod_address("v1", "ns", "cluster.local").contains(".v1-headless.ns.svc."));
    }
}
