//! The StellarNode custom resource (`stellar.org/v1alpha1`), compatible with the
//! Stellar-K8s operator's CRD: the fields the injector reads are typed, everything
//! else is preserved (`x-kubernetes-preserve-unknown-fields`).
//!
//! This is the one definition of the resource: its group, version, kind, plural and
//! scope are also the watch cache's ([`crate::watch::cache::WatchedNode`] takes them from
//! here). The cache does not deserialize into these types but reads each object
//! leniently ([`crate::nodes`]), so a malformed object never breaks the watch; the
//! types serve the `crd` subcommand, tests and the examples.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Spec of a StellarNode, as far as the injector is concerned.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "stellar.org",
    version = "v1alpha1",
    kind = "StellarNode",
    plural = "stellarnodes",
    shortname = "sn",
    namespaced,
    status = "StellarNodeStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.nodeType"}"#,
    printcolumn = r#"{"name":"Network","type":"string","jsonPath":".spec.network"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspended"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct StellarNodeSpec {
    /// `Validator`, `Horizon` or `SorobanRpc`.
    pub node_type: String,
    /// `mainnet`, `testnet`, `futurenet`, a custom network name, or the
    /// operator's `{"custom": "<name>"}` form.
    #[schemars(schema_with = "network_schema")]
    pub network: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_config: Option<ValidatorConfig>,
}

fn network_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "mainnet, testnet, futurenet, a custom network name, or {\"custom\": \"<name>\"}",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// `spec.validatorConfig`: only `knownPeers` is typed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ValidatorConfig {
    /// Raw TOML the operator puts in the node's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_peers: Option<String>,
    /// The validator's public DNS name: linked clusters reach it by `hostname` on port
    /// 11625 when it has no `stellar.org/peer-address` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_dns: Option<ExternalDns>,
}

/// `spec.validatorConfig.externalDns`: only `hostname` is read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ExternalDns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// Status written by the operator; the injector does not read it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct StellarNodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// The CRD as YAML, for `stellar-peer-injector crd` and the chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&StellarNode::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_names_and_scope() {
        let crd = StellarNode::crd();
        assert_eq!(crd.spec.group, "stellar.org");
        assert_eq!(crd.spec.names.plural, "stellarnodes");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["sn".to_owned()][..])
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        let yaml = crd_yaml().expect("yaml");
        assert!(
            yaml.contains("x-kubernetes-preserve-unknown-fields: true"),
            "{yaml}"
        );
    }
}
