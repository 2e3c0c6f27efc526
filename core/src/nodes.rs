//! A lenient, minimal view of a StellarNode: only what the peer logic needs.
//!
//! The watch cache and the offline `inject` command both turn whatever JSON they
//! receive into a [`NodeRecord`]. A malformed object never fails the whole list:
//! it becomes a record carrying a `problem`, which excludes it from peer sets and
//! makes admission for its pods answer with that problem.

use serde_json::Value;

use crate::rollout::controls::{ANNOTATION_ROLLOUT, ANNOTATION_WINDOW, Control, Windows};

/// Annotation on a StellarNode that overrides its peer address (public or external address).
pub const PEER_ADDRESS_ANNOTATION: &str = "stellar.org/peer-address";
/// Annotation (on a StellarNode or a pod) that selects how peers reach stellar-core:
/// `merge` or `env` (see [`crate::inject::ConfigMode`]).
pub const CONFIG_MODE_ANNOTATION: &str = "stellar.org/peers-config-mode";

/// Annotation (on a StellarNode or a pod) naming the captive-core file of a Horizon or
/// stellar-rpc container, where admission cannot read it: set through `envFrom` (SDF's
/// horizon chart: `/config/stellar-core.cfg`), in stellar-rpc's `--config-path` TOML
/// (SDF's soroban-rpc chart: `/config/stellar-captive-core.cfg`), or not wired at all
/// (the operator's SorobanRpc ConfigMap key `captive-core.cfg`, at
/// `/config/captive-core.cfg`).
pub const CAPTIVE_CONFIG_ANNOTATION: &str = "stellar.org/captive-core-config";

/// The `spec.nodeType` of a StellarNode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Validator,
    Horizon,
    SorobanRpc,
    /// A node type this version does not know. Not a peer; its pods still get peers.
    Other(String),
}

impl NodeKind {
    pub fn parse(s: &str) -> Self {
        match s {
            "Validator" => Self::Validator,
            "Horizon" => Self::Horizon,
            "SorobanRpc" => Self::SorobanRpc,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Validator => "Validator",
            Self::Horizon => "Horizon",
            Self::SorobanRpc => "SorobanRpc",
            Self::Other(s) => s,
        }
    }

    /// Validators roll before everything else.
    pub fn rollout_tier(&self) -> u8 {
        match self {
            Self::Validator => 0,
            _ => 1,
        }
    }
}

/// What the injector knows about one StellarNode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub namespace: String,
    pub name: String,
    pub kind: NodeKind,
    /// Normalised network name (see [`normalize_network`]).
    pub network: String,
    pub suspended: bool,
    /// Value of the `stellar.org/peer-address` annotation, if set.
    pub peer_address: Option<String>,
    /// Why this object cannot be used, if it cannot. Such a node is never a peer.
    pub problem: Option<NodeProblem>,
    /// `metadata.uid` (owner of the governing Service the injector creates).
    pub uid: Option<String>,
    /// The user's own peers from `spec.validatorConfig.knownPeers`, normalised.
    pub user_peers: UserPeers,
    /// Why `spec.validatorConfig.knownPeers` could not be used. Only this node's own
    /// extra peers are dropped; the node itself stays usable.
    pub user_peers_problem: Option<UserPeersError>,
    /// The `stellar.org/peers-config-mode` annotation, if set.
    pub config_mode: Option<String>,
    /// The `stellar.org/captive-core-config` annotation, if set.
    pub captive_config: Option<String>,
    /// The `stellar.org/rollout` annotation (pause, skip-wait).
    pub rollout: Control,
    /// The `stellar.org/rollout-window` override of `--rollout-window`.
    pub rollout_window: Option<Windows>,
    /// Why a rollout annotation was not understood (it is then ignored).
    pub rollout_problem: Option<String>,
    /// `spec.validatorConfig.externalDns.hostname`: the name other clusters reach this
    /// validator by (port 11625), when it has no `stellar.org/peer-address`.
    pub external_hostname: Option<String>,
    /// The `stellar.org/peer-updates` override of `--peer-updates`.
    pub peer_updates: Option<crate::live::PeerUpdates>,
}

pub use crate::config::UserPeers;
use crate::config::UserPeersError;

/// One defect of a StellarNode's spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("spec is missing")]
    NoSpec,
    #[error("spec.{field} is missing")]
    Missing { field: &'static str },
    #[error("spec.{field} must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("spec.network object must be {{\"custom\": \"<name>\"}}")]
    NetworkObject,
    #[error("spec.network is empty")]
    EmptyNetwork,
}

/// Why a StellarNode cannot be used: every defect found, in the order of the spec's
/// fields (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProblem(pub Vec<Defect>);

impl From<Defect> for NodeProblem {
    fn from(d: Defect) -> Self {
        Self(vec![d])
    }
}

impl std::fmt::Display for NodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NodeProblem {}

impl NodeRecord {
    /// A well-formed node that is not suspended and has no peer-address annotation.
    pub fn new(namespace: &str, name: &str, kind: NodeKind, network: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind,
            network: network.to_owned(),
            suspended: false,
            peer_address: None,
            problem: None,
            uid: None,
            user_peers: UserPeers::default(),
            user_peers_problem: None,
            config_mode: None,
            captive_config: None,
            rollout: Control::Normal,
            rollout_window: None,
            rollout_problem: None,
            external_hostname: None,
            peer_updates: None,
        }
    }

    /// A validator that is not suspended and has no problem: a peer of its network.
    pub fn is_peer(&self) -> bool {
        self.problem.is_none() && self.kind == NodeKind::Validator && !self.suspended
    }

    /// Reads a StellarNode from its JSON form. Never fails: an object whose name is
    /// missing gives `None`; any other defect is recorded in `problem`.
    pub fn from_json(obj: &Value, default_namespace: &str) -> Option<Self> {
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str()?.to_owned();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default_namespace)
            .to_owned();
        let annotation = |key: &str| {
            meta.get("annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let peer_address = annotation(PEER_ADDRESS_ANNOTATION);
        let config_mode = annotation(CONFIG_MODE_ANNOTATION);
        let captive_config = annotation(CAPTIVE_CONFIG_ANNOTATION);
        let (rollout, mut rollout_problem) =
            Control::parse(annotation(ANNOTATION_ROLLOUT).as_deref());
        let rollout_window = match annotation(ANNOTATION_WINDOW).map(|t| Windows::parse(&t)) {
            None => None,
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => {
                rollout_problem = Some(format!(
                    "{ANNOTATION_WINDOW}: {e}; --rollout-window applies"
                ));
                None
            }
        };
        let peer_updates = match annotation(crate::live::ANNOTATION_PEER_UPDATES) {
            None => None,
            Some(v) => match crate::live::PeerUpdates::parse(&v) {
                Some(p) => Some(p),
                None => {
                    rollout_problem = Some(format!(
                        "{}: {v:?} is not one of {}; --peer-updates applies",
                        crate::live::ANNOTATION_PEER_UPDATES,
                        crate::live::PeerUpdates::NAMES.join(", ")
                    ));
                    None
                }
            },
        };
        let uid = meta.get("uid").and_then(Value::as_str).map(str::to_owned);
        let mut problems = Vec::new();
        let spec = obj.get("spec");
        if spec.is_none() {
            problems.push(Defect::NoSpec);
        }
        let kind = match spec.and_then(|s| s.get("nodeType")) {
            Some(Value::String(s)) => NodeKind::parse(s),
            Some(other) => {
                problems.push(Defect::WrongType {
                    field: "nodeType",
                    expected: "a string",
                    found: json_type(other),
                });
                NodeKind::Other(String::new())
            }
            None => {
                if spec.is_some() {
                    problems.push(Defect::Missing { field: "nodeType" });
                }
                NodeKind::Other(String::new())
            }
        };
        let network = match spec.and_then(|s| s.get("network")) {
            Some(v) => match network_from_json(v) {
                Ok(n) => n,
                Err(e) => {
                    problems.push(e);
                    String::new()
                }
            },
            None => {
                if spec.is_some() {
                    problems.push(Defect::Missing { field: "network" });
                }
                String::new()
            }
        };
        let suspended = match spec.and_then(|s| s.get("suspended")) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                problems.push(Defect::WrongType {
                    field: "suspended",
                    expected: "a boolean",
                    found: json_type(other),
                });
                false
            }
        };
        let problem = (!problems.is_empty()).then_some(NodeProblem(problems));
        let external_hostname = spec
            .and_then(|s| s.get("validatorConfig"))
            .and_then(|c| c.get("externalDns"))
            .and_then(|d| d.get("hostname"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        let (user_peers, user_peers_problem) = match spec
            .and_then(|s| s.get("validatorConfig"))
            .and_then(|c| c.get("knownPeers"))
        {
            None | Some(Value::Null) => (UserPeers::default(), None),
            Some(Value::String(raw)) => match crate::config::parse_user_peers(raw) {
                Ok(p) => (p, None),
                Err(e) => (UserPeers::default(), Some(e)),
            },
            Some(other) => (
                UserPeers::default(),
                Some(UserPeersError::NotAString {
                    found: json_type(other),
                }),
            ),
        };
        Some(Self {
            namespace,
            name,
            kind,
            network,
            suspended,
            peer_address,
            problem,
            uid,
            user_peers,
            user_peers_problem,
            config_mode,
            captive_config,
            rollout,
            rollout_window,
            rollout_problem,
            external_hostname,
            peer_updates,
        })
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `spec.network` as the operator writes it: a string (`mainnet`, `Testnet`, `my-net`)
/// or the externally tagged custom form `{"custom": "..."}` / `{"Custom": "..."}`.
fn network_from_json(v: &Value) -> Result<String, Defect> {
    let raw = match v {
        Value::String(s) => s.as_str(),
        Value::Object(map) if map.len() == 1 => match map.iter().next() {
            Some((k, Value::String(s))) if k.eq_ignore_ascii_case("custom") => s.as_str(),
            _ => return Err(Defect::NetworkObject),
        },
        other => {
            return Err(Defect::WrongType {
                field: "network",
                expected: "a string",
                found: json_type(other),
            });
        }
    };
    let n = normalize_network(raw);
    if n.is_empty() {
        return Err(Defect::EmptyNetwork);
    }
    Ok(n)
}

/// The well-known networks compare case-insensitively (`Mainnet` == `mainnet`);
/// custom network names are kept exactly as written, trimmed.
pub fn normalize_network(raw: &str) -> String {
    let t = raw.trim();
    for known in ["mainnet", "testnet", "futurenet"] {
        if t.eq_ignore_ascii_case(known) {
            return known.to_owned();
        }
    }
    t.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> NodeRecord {
        NodeRecord::from_json(&v, "default").expect("record")
    }

    #[test]
    fn reads_operator_shaped_validator() {
        let r = rec(json!({
            "apiVersion": "stellar.org/v1alpha1", "kind": "StellarNode",
            "metadata": {"name": "v1", "namespace": "stellar", "annotations": {"stellar.org/peer-address": "v1.example.org:11625"}},
            "spec": {"nodeType": "Validator", "network": "testnet", "version": "v21", "validatorConfig": {"knownPeers": "x"}, "unknownField": {"a": 1}}
        }));
        assert_eq!(r.namespace, "stellar");
        assert_eq!(r.kind, NodeKind::Validator);
        assert_eq!(r.network, "testnet");
        assert!(!r.suspended);
        assert_eq!(r.peer_address.as_deref(), Some("v1.example.org:11625"));
        assert!(r.is_peer());
        assert_eq!(r.external_hostname, None);
    }

    #[test]
    fn reads_the_external_dns_hostname() {
        let r = rec(
            json!({"metadata": {"name": "v1"}, "spec": {"nodeType": "Validator", "network": "testnet",
            "validatorConfig": {"externalDns": {"hostname": " v1.b.example.org ", "ttl": 300}}}}),
        );
        assert_eq!(r.external_hostname.as_deref(), Some("v1.b.example.org"));
        for bad in [
            json!({"hostname": 5}),
            json!({"hostname": ""}),
            json!("x"),
            json!(null),
        ] {
            let r = rec(
                json!({"metadata": {"name": "v1"}, "spec": {"nodeType": "Validator", "network": "testnet",
                "validatorConfig": {"externalDns": bad}}}),
            );
            assert_eq!(r.external_hostname, None, "{bad}");
            assert!(r.problem.is_none());
        }
    }

    #[test]
    fn network_forms() {
        for (v, want) in [
            (json!("Mainnet"), "mainnet"),
            (json!("TESTNET"), "testnet"),
            (json!("futurenet"), "futurenet"),
            (json!("my-private-net"), "my-private-net"),
            (json!({"custom": "my-net"}), "my-net"),
            (json!({"Custom": "my-net"}), "my-net"),
        ] {
            let r = rec(
                json!({"metadata": {"name": "a"}, "spec": {"nodeType": "Validator", "network": v}}),
            );
            assert_eq!(r.network, want);
            assert!(r.problem.is_none());
        }
    }

    #[test]
    fn malformed_fields_become_problems_not_failures() {
        let r = rec(
            json!({"metadata": {"name": "a"}, "spec": {"nodeType": 7, "network": ["x"], "suspended": "yes"}}),
        );
        let p = r.problem.clone().expect("problem").to_string();
        assert!(p.contains("spec.nodeType must be a string"), "{p}");
        assert!(p.contains("spec.network must be a string"), "{p}");
        assert!(p.contains("spec.suspended must be a boolean"), "{p}");
        assert!(!r.is_peer());
        let r = rec(json!({"metadata": {"name": "a"}}));
        assert_eq!(r.problem, Some(Defect::NoSpec.into()));
        let r = rec(json!({"metadata": {"name": "a"}, "spec": {"network": "  "}}));
        assert!(
            r.problem
                .expect("problem")
                .0
                .contains(&Defect::EmptyNetwork)
        );
    }

    #[test]
    fn unknown_node_type_is_not_a_peer_but_valid() {
        let r = rec(
            json!({"metadata": {"name": "a"}, "spec": {"nodeType": "Archiver", "network": "testnet"}}),
        );
        assert!(r.problem.is_none());
        assert_eq!(r.kind, NodeKind::Other("Archiver".into()));
        assert!(!r.is_peer());
    }

    #[test]
    fn suspended_validator_is_not_a_peer() {
        let r = rec(
            json!({"metadata": {"name": "a"}, "spec": {"nodeType": "Validator", "network": "testnet", "suspended": true}}),
        );
        assert!(!r.is_peer());
    }

    #[test]
    fn missing_name_gives_none_and_namespace_defaults() {
        assert!(NodeRecord::from_json(&json!({"metadata": {}}), "d").is_none());
        assert!(NodeRecord::from_json(&json!("str"), "d").is_none());
        let r = rec(
            json!({"metadata": {"name": "a"}, "spec": {"nodeType": "Horizon", "network": "testnet"}}),
        );
        assert_eq!(r.namespace, "default");
    }
}
