//! Peer injection on the real control plane: pods made by the StatefulSet and
//! ReplicaSet controllers get exactly their network's peers.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use serde_json::json;
use stellar_peer_injector::crd::StellarNode;

use crate::support::*;

async fn first_pod(ns: &TestNs, instance: &str) -> Result<Pod, String> {
    let api = ns.api::<Pod>();
    let sel = format!("app.kubernetes.io/instance={instance}");
    wait_for(
        Duration::from_secs(60),
        &format!("a pod of {instance}"),
        || {
            let api = api.clone();
            let sel = sel.clone();
            async move {
                api.list(&ListParams::default().labels(&sel))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .next()
            }
        },
    )
    .await
}

pub fn horizon_deployment(name: &str, network: &str) -> serde_json::Value {
    let labels = operator_labels(name, "Horizon", network);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "stellar-node", "image": "stellar/horizon"}]}}}
    })
}

pub async fn controller_made_pods_get_their_networks_peers() -> TestResult {
    let ns = TestNs::new("inject").await?;
    let n = ns.name.clone();
    for (name, ty, net, sus) in [
        ("v1", "Validator", "testnet", false),
        ("v2", "Validator", "testnet", false),
        ("v3", "Validator", "Testnet", false),
        ("v4", "Validator", "testnet", true),
        ("h1", "Horizon", "testnet", false),
        ("m1", "Validator", "mainnet", false),
        ("m2", "Validator", "mainnet", false),
    ] {
        ns.create::<StellarNode>(stellar_node(name, ty, net, sus))
            .await?;
    }
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--rollout", "off"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", false).await?;
    let result = async {
        for v in ["v1", "v2", "v3", "m1", "m2"] {
            let net = if v.starts_with('m') { "mainnet" } else { "testnet" };
            ns.create::<StatefulSet>(operator_statefulset(v, "Validator", net, 1)).await?;
        }
        ns.create::<Deployment>(horizon_deployment("h1", "testnet")).await?;

        let v1 = first_pod(&ns, "v1").await?;
        let want_v1 = [svc("v2", &n), svc("v3", &n)].join(",");
        ensure_eq!(env_get(&v1, "stellar-node", "STELLAR_PEERS"), Some(want_v1), "v1's peers; injector log:\n{}", inj.log_text())?;
        ensure_eq!(env_get(&v1, "stellar-node", "STELLAR_PEER_COUNT").as_deref(), Some("2"), "v1's peer count")?;
        ensure_eq!(env_get(&v1, "stellar-node", "STELLAR_NETWORK").as_deref(), Some("testnet"), "v1's network")?;
        ensure(env_get(&v1, "stellar-health-check", "STELLAR_PEERS").is_none(), || "sidecar got peers".into())?;
        ensure_eq!(env_get(&v1, "stellar-node", "STELLAR_CORE_SEED").as_deref(), Some("SXXX"), "v1's own env")?;
        let hash = annotation(&v1, "stellar.org/peers-hash");
        ensure(hash.is_some() && hash == env_get(&v1, "stellar-node", "STELLAR_PEERS_HASH"), || "hash annotation != env".into())?;
        ensure(annotation(&v1, "stellar.org/peer-count").as_deref() == Some("2"), || "peer-count annotation".into())?;
        let status = annotation(&v1, "stellar.org/peers-injection-status");
        let want = format!(r#"{{"version":"{}","mode":"env"}}"#, env!("CARGO_PKG_VERSION"));
        ensure(status.as_deref() == Some(want.as_str()), || format!("injection status annotation: {status:?}"))?;
        let cfg = annotation(&v1, "stellar.org/peers-config").unwrap_or_default();
        let parsed: toml::Table = toml::from_str(&cfg).map_err(|e| format!("snippet is not TOML: {e}\n{cfg}"))?;
        // Both peers are validators, so preferred: each is written once, in PREFERRED_PEERS.
        ensure(parsed["PREFERRED_PEERS"].as_array().map(Vec::len) == Some(2), || format!("snippet: {cfg}"))?;
        ensure(parsed["KNOWN_PEERS"].as_array().map(Vec::len) == Some(0), || format!("snippet: {cfg}"))?;
        let spec = v1.spec.clone().unwrap_or_default();
        let vol = spec.volumes.unwrap_or_default().into_iter().find(|v| v.name == "stellar-peers");
        ensure(vol.and_then(|v| v.downward_api).is_some(), || "no downwardAPI volume".into())?;
        let node_c = spec.containers.iter().find(|c| c.name == "stellar-node").cloned().unwrap_or_default();
        let mount = node_c.volume_mounts.unwrap_or_default().into_iter().find(|m| m.name == "stellar-peers");
        ensure(
            mount.as_ref().map(|m| (m.mount_path.as_str(), m.read_only)) == Some(("/etc/stellar/peers", Some(true))),
            || format!("mount {mount:?}"),
        )?;

        let v3 = first_pod(&ns, "v3").await?;
        let want_v3 = [svc("v1", &n), svc("v2", &n)].join(",");
        ensure_eq!(env_get(&v3, "stellar-node", "STELLAR_PEERS"), Some(want_v3), "v3's peers")?;

        let m1 = first_pod(&ns, "m1").await?;
        ensure_eq!(env_get(&m1, "stellar-node", "STELLAR_PEERS"), Some(svc("m2", &n)), "m1's peers")?;
        ensure_eq!(env_get(&m1, "stellar-node", "STELLAR_NETWORK").as_deref(), Some("mainnet"), "m1's network")?;

        let h1 = first_pod(&ns, "h1").await?;
        let want_h1 = [svc("v1", &n), svc("v2", &n), svc("v3", &n)].join(",");
        ensure_eq!(env_get(&h1, "stellar-node", "STELLAR_PEERS"), Some(want_h1), "h1's peers")?;

        // A pod of another app is sent to the webhook (no objectSelector here) and left alone.
        let plain: Pod = ns
            .create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}))
            .await?;
        let untouched = annotation(&plain, "stellar.org/peers-hash").is_none()
            && env_get(&plain, "nginx", "STELLAR_PEERS").is_none()
            && !plain.spec.clone().unwrap_or_default().volumes.unwrap_or_default().iter().any(|v| v.name == "stellar-peers");
        ensure(untouched, || format!("non-Stellar pod was changed: {plain:?}"))?;

        // Opt-out.
        let mut opt = serde_json::to_value(&v1).map_err(|e| e.to_string())?;
        opt["metadata"] = json!({"name": "optout", "labels": operator_labels("v1", "Validator", "testnet"),
            "annotations": {"stellar.org/inject-peers": "false"}});
        opt["spec"]["volumes"] = json!([]);
        opt["spec"]["containers"] = json!([{"name": "stellar-node", "image": "x"}]);
        opt["spec"].as_object_mut().map(|s| s.remove("nodeName"));
        opt.as_object_mut().map(|o| o.remove("status"));
        let opted: Pod = ns.create(opt).await?;
        ensure(env_get(&opted, "stellar-node", "STELLAR_PEERS").is_none(), || "opted-out pod was injected".into())?;

        // Dry run behaves like a real request and leaves nothing behind.
        let dry: Pod = serde_json::from_value(json!({"metadata": {"name": "dry", "labels": operator_labels("m2", "Validator", "mainnet")},
            "spec": {"containers": [{"name": "stellar-node", "image": "x"}]}})).map_err(|e| e.to_string())?;
        let pp = PostParams { dry_run: true, ..Default::default() };
        let dried = ns.api::<Pod>().create(&pp, &dry).await.map_err(|e| format!("dry run: {e}"))?;
        ensure(env_get(&dried, "stellar-node", "STELLAR_PEERS") == Some(svc("m1", &n)), || "dry run not injected".into())?;
        ensure(ns.api::<Pod>().get_opt("dry").await.map_err(|e| e.to_string())?.is_none(), || "dry run persisted".into())?;

        // A pod naming an unknown StellarNode is refused with a message saying what to do.
        let ghost: Pod = serde_json::from_value(json!({"metadata": {"name": "ghost", "labels": operator_labels("ghost", "Validator", "testnet")},
            "spec": {"containers": [{"name": "stellar-node", "image": "x"}]}})).map_err(|e| e.to_string())?;
        match ns.api::<Pod>().create(&PostParams::default(), &ghost).await {
            Ok(_) => return Err("pod of an unknown StellarNode was admitted".into()),
            Err(e) => ensure(e.to_string().contains("no StellarNode") && e.to_string().contains("inject-peers"), || format!("message: {e}"))?,
        }

        // The `peers` command sees the same sets.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stellar-peer-injector"))
            .args(["peers", "-o", "json", "--namespaces", &n, "--kubeconfig"])
            .arg(&bed.kubeconfig)
            .output()
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("peers output: {e}"))?;
        ensure(v["networks"]["testnet"]["peers"].as_array().map(Vec::len) == Some(3), || format!("peers: {v}"))?;
        ensure(v["networks"]["mainnet"]["peers"].as_array().map(Vec::len) == Some(2), || format!("peers: {v}"))?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

/// A kubeconfig for a ServiceAccount token, against the bed's API server.
pub(crate) async fn token_kubeconfig(ns: &TestNs, sa: &str) -> Result<std::path::PathBuf, String> {
    let sa_api = ns.api::<ServiceAccount>();
    let acct: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": sa}})).map_err(|e| e.to_string())?;
    sa_api
        .create(&PostParams::default(), &acct)
        .await
        .map_err(|e| format!("create sa: {e}"))?;
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .map_err(|e| e.to_string())?;
    let token = sa_api
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .map_err(|e| format!("token request: {e}"))?
        .status
        .map(|s| s.token)
        .ok_or("no token")?;
    let admin = std::fs::read_to_string(&bed()?.kubeconfig).map_err(|e| e.to_string())?;
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&admin).map_err(|e| e.to_string())?;
    if let Some(users) = kc.get_mut("users").and_then(|u| u.as_sequence_mut()) {
        for u in users {
            u["user"] =
                serde_yaml::to_value(std::collections::BTreeMap::from([("token", token.clone())]))
                    .map_err(|e| e.to_string())?;
        }
    }
    let path = repo_root()
        .join("target/testbed")
        .join(format!("kubeconfig-{}-{sa}", ns.name));
    std::fs::write(
        &path,
        serde_yaml::to_string(&kc).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

pub async fn unsynced_webhook_follows_failure_policy() -> TestResult {
    let ns = TestNs::new("unsynced").await?;
    let n = ns.name.clone();
    ns.create::<StellarNode>(stellar_node("v1", "Validator", "testnet", false))
        .await?;
    // A ServiceAccount with no RBAC at all: the injector's list is forbidden, so it never syncs.
    let kc = token_kubeconfig(&ns, "nobody").await?;
    let inj = Injector::start(&n, &kc, &["--rollout", "off"], false).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, _) = http_get(&format!("http://127.0.0.1:{}/readyz", inj.admin_port)).await?;
    ensure(code == 503, || {
        format!("/readyz answered {code} with an unsynced cache")
    })?;

    let pod = |name: &str| -> Result<Pod, String> {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": operator_labels("v1", "Validator", "testnet")},
            "spec": {"containers": [{"name": "stellar-node", "image": "x"}]}}))
        .map_err(|e| e.to_string())
    };
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", false).await?;
    let result = async {
        match ns.api::<Pod>().create(&PostParams::default(), &pod("fail")?).await {
            Ok(_) => return Err("failurePolicy Fail: an unsynced webhook let a Stellar pod through".into()),
            Err(e) => ensure(e.to_string().contains("peers.stellar.org"), || format!("unexpected error: {e}"))?,
        }
        // Other pods are not blocked by an unsynced injector.
        let plain: Pod = ns
            .create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}))
            .await?;
        ensure(plain.metadata.name.as_deref() == Some("plain"), || "plain pod".into())?;
        register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Ignore", false).await?;
        let p = ns.api::<Pod>().create(&PostParams::default(), &pod("ignore")?).await.map_err(|e| format!("Ignore policy: {e}"))?;
        ensure(env_get(&p, "stellar-node", "STELLAR_PEERS").is_none(), || "an unsynced cache injected peers".into())?;
        ensure(inj.log_text().contains("not synced"), || "no log line about the unsynced cache".into())?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

/// Strings that YAML 1.1 readers (kubectl's sigs.k8s.io/yaml, PyYAML) would type as
/// booleans, numbers or null if `inject` wrote them unquoted.
const YAML_TRICKY: &[&str] = &[
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "N",
    "true",
    "False",
    "null",
    "~",
    "0123",
    "1e3",
    "1:20",
    "0x1F",
    ".inf",
    "-1",
    "2026-12-01",
    "",
    "with: colon",
    "#hash",
];

/// `inject` output read back by the real kubectl and apiserver keeps every value's type.
pub async fn inject_output_round_trips_through_kubectl() -> TestResult {
    let ns = TestNs::new("yaml").await?;
    let n = ns.name.clone();
    let dir = repo_root().join("target/testbed/yaml-tests").join(&n);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let nodes = dir.join("nodes.yaml");
    std::fs::write(
        &nodes,
        format!(
            "apiVersion: stellar.org/v1alpha1\nkind: StellarNode\nmetadata: {{name: v1, namespace: {n}}}\nspec: {{nodeType: Validator, network: testnet}}\n---\n\
             apiVersion: stellar.org/v1alpha1\nkind: StellarNode\nmetadata: {{name: v2, namespace: {n}}}\nspec: {{nodeType: Validator, network: testnet}}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let env: Vec<serde_json::Value> = YAML_TRICKY
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": format!("V{i}"), "value": v}))
        .collect();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "v1-0", "namespace": n, "labels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": "v1", "on": "yes"},
                     "annotations": {"note": "0123"}},
        "spec": {"containers": [{"name": "stellar-node", "image": "stellar/stellar-core:22.1.0", "env": env,
                                 "args": ["run", "--conf", "/config/stellar-core.cfg"]}]}
    });
    // The input is JSON, which is YAML that every reader types the same way.
    let pod_file = dir.join("pod.yaml");
    std::fs::write(&pod_file, pod.to_string()).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stellar-peer-injector"))
        .arg("inject")
        .arg("--nodes")
        .arg(&nodes)
        .arg("-f")
        .arg(&pod_file)
        .output()
        .map_err(|e| e.to_string())?;
    ensure(out.status.success(), || {
        format!("inject failed: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    let back = crate::chart_tests::run_ok(
        "kubectl",
        &[
            "create",
            "--dry-run=server",
            "-n",
            &n,
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&yaml),
    )
    .map_err(|e| format!("{e}\ninject output:\n{yaml}"))?;
    let back: serde_json::Value = serde_json::from_str(&back).map_err(|e| e.to_string())?;
    let got = back["spec"]["containers"][0]["env"]
        .as_array()
        .ok_or("no env in kubectl's answer")?;
    for (i, want) in YAML_TRICKY.iter().enumerate() {
        let name = format!("V{i}");
        let v = got
            .iter()
            .find(|e| e["name"] == name.as_str())
            .ok_or_else(|| format!("{name} lost"))?;
        // An empty value is dropped by the apiserver (omitempty); every other one must
        // come back as the same string.
        let value = v.get("value").cloned().unwrap_or(json!(""));
        ensure(value == json!(want), || {
            format!("{name}: {want:?} came back as {value}\ninject output:\n{yaml}")
        })?;
    }
    ensure(
        back["metadata"]["labels"]["on"] == "yes"
            && back["metadata"]["annotations"]["note"] == "0123",
        || format!("labels/annotations changed: {}", back["metadata"]),
    )?;
    // And the injected peers are there.
    ensure(
        got.iter()
            .any(|e| e["name"] == "STELLAR_PEERS" && e["value"] == svc("v2", &n).as_str()),
        || format!("no STELLAR_PEERS: {got:?}"),
    )?;
    Ok(())
}
