//! Offline injection: the `inject` command's pure part. Manifests in, the same
//! manifests out with every Stellar pod and pod template mutated exactly as the
//! webhook would mutate it, written as YAML that keeps every value's type.

use serde_json::Value;

use super::patch::build_patch;
use super::review::PodView;
use super::{Decision, DenyReason, InjectSettings, decide_pod};
use crate::peers::PeerSnapshot;

/// Why one document was not injected.
#[derive(Debug, thiserror::Error)]
pub enum NotInjected {
    #[error("cannot read the pod: {0}")]
    ReadPod(#[source] serde_json::Error),
    /// The webhook would refuse this pod; `message` is its answer.
    #[error("{message}")]
    Denied { reason: DenyReason, message: String },
    #[error("no peer snapshot")]
    NotReady,
    #[error("patch did not apply: {0}")]
    Patch(#[source] json_patch::PatchError),
}

/// One document that was not injected.
#[derive(Debug, thiserror::Error)]
#[error("document {document} ({kind} {namespace}/{name}): {source}")]
pub struct DocumentError {
    /// 1-based.
    pub document: usize,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: NotInjected,
}

/// Every document `inject` could not inject, one per line.
#[derive(Debug)]
pub struct InjectErrors(pub Vec<DocumentError>);

impl std::fmt::Display for InjectErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InjectErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.first().map(|e| e as _)
    }
}

/// Why an input file (`--nodes`, `-f`, `--extra-peers`) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("document {document}: {source}")]
    Yaml {
        /// 1-based.
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("document {document}: {source}")]
    Json {
        /// 1-based.
        document: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    ExtraPeers(#[from] crate::peers::extra::ExtraPeersError),
}

/// Splits multi-document YAML into JSON values; `kind: List` is flattened.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, InputError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let v = serde_yaml::Value::deserialize(doc)
            .map_err(|source| InputError::Yaml { document, source })?;
        if v.is_null() {
            continue;
        }
        let j: Value =
            serde_json::to_value(v).map_err(|source| InputError::Json { document, source })?;
        if j.get("kind").and_then(Value::as_str) == Some("List") {
            out.extend(
                j.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
        } else {
            out.push(j);
        }
    }
    Ok(out)
}

/// Mutates every Pod and every StatefulSet/Deployment pod template in `docs`.
pub fn inject_documents(
    docs: Vec<Value>,
    snap: &PeerSnapshot,
    settings: &InjectSettings,
    namespace: &str,
) -> Result<String, InjectErrors> {
    let mut out = String::new();
    let mut errors = Vec::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(namespace)
            .to_owned();
        let target = match kind.as_str() {
            "Pod" => Some(&mut doc),
            "StatefulSet" | "Deployment" => doc.pointer_mut("/spec/template"),
            _ => None,
        };
        if let Some(target) = target
            && let Err(source) = inject_one(target, &ns, snap, settings)
        {
            errors.push(DocumentError {
                document: i + 1,
                kind,
                namespace: ns,
                name,
                source,
            });
        }
        out.push_str("---\n");
        out.push_str(&super::yaml::to_yaml(&doc));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(InjectErrors(errors))
    }
}

fn inject_one(
    target: &mut Value,
    namespace: &str,
    snap: &PeerSnapshot,
    settings: &InjectSettings,
) -> Result<(), NotInjected> {
    let patch = {
        let view = <PodView<'_> as serde::Deserialize>::deserialize(&*target)
            .map_err(NotInjected::ReadPod)?;
        match decide_pod(&view, Some(namespace), Some(snap), settings) {
            Decision::Inject {
                shape,
                list,
                warnings,
                ..
            } => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                build_patch(&shape, &list, settings)
            }
            Decision::Skip(_) => return Ok(()),
            Decision::Deny { reason, message } => {
                return Err(NotInjected::Denied { reason, message });
            }
            Decision::NotReady => return Err(NotInjected::NotReady),
        }
    };
    json_patch::patch(target, &patch.0).map_err(NotInjected::Patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::NodeRecord;
    use crate::peers::PeerSettings;

    const NODES: &str = r#"
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: a, namespace: stellar}
spec: {nodeType: Validator, network: testnet}
---
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: b, namespace: stellar}
spec: {nodeType: Validator, network: testnet}
---
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: h, namespace: stellar}
spec: {nodeType: Horizon, network: testnet}
"#;

    const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: a, namespace: stellar}
spec:
  serviceName: a-headless
  selector: {matchLabels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: a}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: a}
    spec:
      containers:
      - {name: stellar-health-check, image: hc}
      - {name: stellar-node, image: core}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: h, namespace: stellar}
spec:
  selector: {matchLabels: {app.kubernetes.io/instance: h}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: h}
    spec:
      containers: [{name: stellar-node, image: horizon}]
---
apiVersion: v1
kind: Pod
metadata:
  name: b-0
  labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: b}
spec:
  containers: [{name: stellar-node, image: core}]
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: stellar}
spec: {ports: [{name: peer, port: 11625}]}
"#;

    fn snap() -> PeerSnapshot {
        let docs = yaml_documents(NODES).expect("nodes");
        let recs: Vec<NodeRecord> = docs
            .iter()
            .filter_map(|d| NodeRecord::from_json(d, "default"))
            .collect();
        PeerSnapshot::build(1, &recs, &PeerSettings::default())
    }

    #[test]
    fn offline_injection_mutates_pods_and_templates_like_the_webhook() {
        let s = snap();
        let docs = yaml_documents(MANIFESTS).expect("manifests");
        let out =
            inject_documents(docs, &s, &InjectSettings::default(), "stellar").expect("inject");
        let res = yaml_documents(&out).expect("output parses");
        assert_eq!(res.len(), 4);
        let env = |v: &Value, ptr: &str| -> Vec<(String, String)> {
            v.pointer(ptr)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap_or("").to_owned(),
                                e["value"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let a = env(&res[0], "/spec/template/spec/containers/1/env");
        assert!(
            a.contains(&(
                "STELLAR_PEERS".into(),
                "b-0.b-headless.stellar.svc.cluster.local:11625".into()
            )),
            "{a:?}"
        );
        assert!(
            env(&res[0], "/spec/template/spec/containers/0/env").is_empty(),
            "sidecar untouched"
        );
        assert!(
            res[0]
                .pointer("/spec/template/metadata/annotations/stellar.org~1peers-hash")
                .is_some()
        );
        let h = env(&res[1], "/spec/template/spec/containers/0/env");
        assert!(
            h.contains(&("STELLAR_PEER_COUNT".into(), "2".into())),
            "{h:?}"
        );
        let b = env(&res[2], "/spec/containers/0/env");
        assert!(
            b.contains(&(
                "STELLAR_PEERS".into(),
                "a-0.a-headless.stellar.svc.cluster.local:11625".into()
            )),
            "pod in default namespace -n stellar: {b:?}"
        );
        assert_eq!(
            res[3],
            yaml_documents(MANIFESTS).expect("m")[3],
            "Service unchanged"
        );
        // Injecting the output again changes nothing.
        let again =
            inject_documents(res, &s, &InjectSettings::default(), "stellar").expect("again");
        assert_eq!(again, out);
    }

    #[test]
    fn offline_injection_names_the_document_it_cannot_inject() {
        let s = snap();
        let docs = yaml_documents(MANIFESTS).expect("manifests");
        let e = inject_documents(docs, &s, &InjectSettings::default(), "elsewhere")
            .expect_err("unknown node");
        let msg = e.to_string();
        assert!(msg.contains("document 3 (Pod elsewhere/b-0)"), "{msg}");
        assert!(msg.contains("no StellarNode elsewhere/b"), "{msg}");
    }

    #[test]
    fn offline_injection_covers_captive_core() {
        let nodes = format!(
            "{NODES}---\napiVersion: stellar.org/v1alpha1\nkind: StellarNode\nmetadata: {{name: rpc, namespace: stellar, annotations: {{stellar.org/captive-core-config: /config/captive-core.cfg}}}}\nspec: {{nodeType: SorobanRpc, network: testnet}}\n"
        );
        let recs: Vec<NodeRecord> = yaml_documents(&nodes)
            .expect("nodes")
            .iter()
            .filter_map(|d| NodeRecord::from_json(d, "default"))
            .collect();
        let s = PeerSnapshot::build(1, &recs, &PeerSettings::default());
        let manifests = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: rpc, namespace: stellar}
spec:
  selector: {matchLabels: {app.kubernetes.io/instance: rpc}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: rpc}
    spec:
      containers:
      - name: stellar-node
        image: soroban-rpc
        volumeMounts: [{name: config, mountPath: /config}]
      volumes: [{name: config, configMap: {name: rpc-config}}]
"#;
        let settings = InjectSettings {
            init_image: "injector:1".into(),
            ..InjectSettings::default()
        };
        let docs = yaml_documents(manifests).expect("manifests");
        let out = inject_documents(docs, &s, &settings, "stellar").expect("inject");
        let res = yaml_documents(&out).expect("output parses");
        let tpl = &res[0]["spec"]["template"];
        let init = &tpl["spec"]["initContainers"][0];
        assert_eq!(init["name"], "stellar-peers-config");
        let args: Vec<&str> = init["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            args,
            [
                "render-config",
                "--base",
                "/config/captive-core.cfg",
                "--peers",
                "/etc/stellar/peers/peers.cfg",
                "--out",
                "/etc/stellar/merged/captive-core.cfg",
                "--flavour",
                "captive-core"
            ]
        );
        let env = tpl["spec"]["containers"][0]["env"].as_array().expect("env");
        assert!(env.iter().any(|e| e["name"] == "CAPTIVE_CORE_CONFIG_PATH"
            && e["value"] == "/etc/stellar/merged/captive-core.cfg"));
        // Again: nothing changes.
        let again = inject_documents(res, &s, &settings, "stellar").expect("again");
        assert_eq!(again, out);
    }

    #[test]
    fn bad_yaml_is_reported_with_its_document() {
        let e = yaml_documents("a: 1\n---\n: : :\n  - [").expect_err("bad");
        assert!(e.to_string().starts_with("document 2"), "{e}");
        let l =
            yaml_documents("kind: List\nitems:\n- {kind: Pod}\n- {kind: Service}\n").expect("list");
        assert_eq!(l.len(), 2);
    }
}
