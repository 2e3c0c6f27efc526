//! Peers reach stellar-core, on the real control plane: addresses that resolve through
//! the bed's CoreDNS, and the config file stellar-core reads, for pods shaped like the
//! Stellar-K8s operator's and like SDF's chart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use stellar_peer_injector::config;
use stellar_peer_injector::crd::StellarNode;

use crate::support::*;

/// The operator's `stellar-core.cfg` for a validator with a `[QUORUM_SET]` (see
/// tests/fixtures/configs/README.md for the source it copies).
const OPERATOR_CFG: &str = include_str!("../fixtures/configs/operator-quorum-recent.cfg");
/// SDF's chart config with its own KNOWN_PEERS/PREFERRED_PEERS.
const CHART_CFG: &str = include_str!("../fixtures/configs/chart-futurenet-peers.cfg");

const INIT_IMAGE: &str = "stellar-peer-injector:bed";

/// The operator's validator StatefulSet, as its code builds it: `stellar-node` with no
/// command and no args, ConfigMap `{name}-config` read-only at /config, data at
/// /opt/stellar/data, the health-check sidecar second.
fn operator_validator(name: &str, network: &str) -> Value {
    let labels = operator_labels(name, "Validator", network);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": format!("{name}-headless"),
            "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0",
                         "ports": [{"containerPort": 11625}],
                         "env": [{"name": "STELLAR_CORE_SEED", "valueFrom": {"secretKeyRef": {"name": format!("{name}-seed"), "key": "STELLAR_CORE_SEED"}}}],
                         "volumeMounts": [{"name": "data", "mountPath": "/opt/stellar/data"},
                                          {"name": "config", "mountPath": "/config", "readOnly": true}]},
                        {"name": "stellar-health-check", "image": "stellar/health-check:v0.3.1",
                         "ports": [{"name": "health", "containerPort": 8081}]}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}},
                                {"name": "config", "configMap": {"name": format!("{name}-config")}}]
                }
            }
        }
    })
}

/// SDF's chart (charts/core): StatefulSet `<fullname>` with `serviceName: <fullname>`,
/// init container `core-init`, container `core` with `run --conf /config/stellar-core.cfg
/// --console`, ConfigMap `<fullname>` at /config; the webhook's labels come from
/// `core.labels`.
fn sdf_validator(name: &str) -> Value {
    let labels = json!({"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name,
                        "app": "stellar-core"});
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": "stellar-core", "app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": {"checksum/core-cm": "x"}},
                "spec": {
                    "initContainers": [{"name": "core-init", "image": "stellar/stellar-core:22.1.0",
                                        "command": ["/bin/bash", "/init/init.sh"],
                                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "containers": [{"name": "core", "image": "stellar/stellar-core:22.1.0",
                                    "args": ["run", "--conf", "/config/stellar-core.cfg", "--console"],
                                    "volumeMounts": [{"name": "config", "mountPath": "/config"},
                                                     {"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "emptyDir": {}},
                                {"name": "config", "configMap": {"name": name}}]
                }
            }
        }
    })
}

fn config_map(name: &str, cfg: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"stellar-core.cfg": cfg, "NETWORK_PASSPHRASE": "Test SDF Network ; September 2015"}})
}

/// A live pod of `instance` (with `want_hash`, one carrying that peers hash).
pub(crate) async fn pod_of(
    ns: &TestNs,
    instance: &str,
    want_hash: Option<&str>,
) -> Result<Pod, String> {
    let api = ns.api::<Pod>();
    let sel = format!("app.kubernetes.io/instance={instance}");
    wait_for(
        Duration::from_secs(120),
        &format!("a pod of {instance}"),
        || {
            let (api, sel) = (api.clone(), sel.clone());
            async move {
                api.list(&ListParams::default().labels(&sel))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && want_hash.is_none_or(|h| {
                                annotation(p, "stellar.org/peers-hash").as_deref() == Some(h)
                            })
                    })
            }
        },
    )
    .await
}

/// Lays the pod's volumes out as the kubelet would, under `root`: each mount of the init
/// container at `root/<mountPath>` (ConfigMap keys as files, the downwardAPI item from
/// the pod's annotation, emptyDir empty). Returns the init container's args with every
/// path moved under `root`.
pub(crate) async fn lay_out(ns: &TestNs, pod: &Pod, root: &Path) -> Result<Vec<String>, String> {
    let spec = pod.spec.as_ref().ok_or("pod without spec")?;
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "stellar-peers-config")
        .ok_or("no stellar-peers-config init container")?;
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let mut moved = Vec::new();
    for m in init.volume_mounts.iter().flatten() {
        let dir = root.join(m.mount_path.trim_start_matches('/'));
        let vol = volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| format!("volume {} of mount {} missing", m.name, m.mount_path))?;
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if let Some(cm) = &vol.config_map {
            let data = ns
                .api::<ConfigMap>()
                .get(&cm.name)
                .await
                .map_err(|e| format!("ConfigMap {}: {e}", cm.name))?
                .data
                .unwrap_or_default();
            for (k, v) in data {
                std::fs::write(dir.join(k), v).map_err(|e| e.to_string())?;
            }
        } else if let Some(d) = &vol.downward_api {
            for item in d.items.iter().flatten() {
                let path = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                let key = path
                    .and_then(|p| p.strip_prefix("metadata.annotations['"))
                    .and_then(|p| p.strip_suffix("']"))
                    .ok_or("unexpected downwardAPI item")?;
                let text = annotation(pod, key).ok_or_else(|| format!("annotation {key}"))?;
                std::fs::write(dir.join(&item.path), text).map_err(|e| e.to_string())?;
            }
        }
        moved.push(m.mount_path.clone());
    }
    let args = init.args.clone().unwrap_or_default();
    Ok(args
        .into_iter()
        .map(|a| {
            if a.starts_with('/') {
                root.join(a.trim_start_matches('/')).display().to_string()
            } else {
                a
            }
        })
        .collect())
}

/// Runs the init container's command line with the binary; returns the merged file.
async fn run_init(ns: &TestNs, pod: &Pod, tag: &str) -> Result<String, String> {
    let root: PathBuf = repo_root()
        .join("target/testbed/config-tests")
        .join(format!("{}-{tag}", ns.name));
    let _ = std::fs::remove_dir_all(&root);
    let args = lay_out(ns, pod, &root).await?;
    let out = Command::new(env!("CARGO_BIN_EXE_stellar-peer-injector"))
        .args(&args)
        .arg("--termination-log")
        .arg(root.join("termination-log"))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "render-config {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let merged = args
        .iter()
        .skip_while(|a| *a != "--out")
        .nth(1)
        .ok_or("no --out")?;
    std::fs::read_to_string(merged).map_err(|e| format!("{merged}: {e}"))
}

fn peers_in(cfg: &str, key: &str) -> Result<BTreeSet<String>, String> {
    let v: toml::Table = cfg.parse().map_err(|e| format!("merged config: {e}"))?;
    Ok(v.get(key)
        .and_then(|a| a.as_array())
        .ok_or_else(|| format!("{key} missing or not top-level"))?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect())
}

/// What stellar-core dials from a config: `KNOWN_PEERS` ∪ `PREFERRED_PEERS` (the injector
/// writes a preferred peer in `PREFERRED_PEERS` only).
fn dialed(cfg: &str) -> Result<BTreeSet<String>, String> {
    let mut all = peers_in(cfg, "KNOWN_PEERS")?;
    all.extend(peers_in(cfg, "PREFERRED_PEERS")?);
    Ok(all)
}

fn main_container<'a>(
    pod: &'a Pod,
    name: &str,
) -> Result<&'a k8s_openapi::api::core::v1::Container, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .ok_or_else(|| format!("container {name}"))
}

pub async fn operator_and_sdf_pods_read_a_merged_config() -> TestResult {
    let ns = TestNs::new("cfg").await?;
    let n = ns.name.clone();
    let (inj, hook) =
        injector_with_webhook(&ns, &["--init-image", INIT_IMAGE, "--debounce", "0s"]).await?;
    let result: TestResult = async {
        let mut v1 = stellar_node("v1", "Validator", "testnet", false);
        v1["spec"]["validatorConfig"] = json!({"knownPeers": "KNOWN_PEERS = [\"core-live-a.stellar.org:11625\"]\nPREFERRED_PEERS = [\"Core-Live-B.stellar.org\"]"});
        ns.create::<StellarNode>(v1).await?;
        ns.create::<StellarNode>(stellar_node("v2", "Validator", "testnet", false))
            .await?;
        let mut sdf = stellar_node("sdf1", "Validator", "testnet", false);
        sdf["metadata"]["annotations"] = json!({"stellar.org/peer-address": format!("sdf1-0.sdf1.{n}.svc.cluster.local:11625")});
        ns.create::<StellarNode>(sdf).await?;
        for name in ["v1", "v2"] {
            ns.create::<ConfigMap>(config_map(&format!("{name}-config"), OPERATOR_CFG))
                .await?;
            ns.create::<StatefulSet>(operator_validator(name, "testnet"))
                .await?;
        }
        ns.create::<ConfigMap>(config_map("sdf1", CHART_CFG)).await?;
        ns.create::<StatefulSet>(sdf_validator("sdf1")).await?;

        // The operator's pod: init container last, emptyDir, `run --conf <merged>`.
        let p1 = pod_of(&ns, "v1", None).await?;
        let spec = p1.spec.as_ref().ok_or("spec")?;
        let inits: Vec<&str> = spec.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
        ensure(inits == ["stellar-peers-config"], || format!("init containers {inits:?}"))?;
        let init = &spec.init_containers.as_ref().ok_or("init")?[0];
        ensure(init.image.as_deref() == Some(INIT_IMAGE), || format!("init image {:?}", init.image))?;
        ensure(
            spec.volumes.iter().flatten().any(|v| v.name == "stellar-peers-merged" && v.empty_dir.is_some()),
            || "no emptyDir for the merged config".into(),
        )?;
        let main = main_container(&p1, "stellar-node")?;
        ensure(main.command.is_none(), || format!("command {:?}", main.command))?;
        ensure(
            main.args.as_deref() == Some(&["run".to_owned(), "--conf".to_owned(), "/etc/stellar/merged/stellar-core.cfg".to_owned()][..]),
            || format!("args {:?}", main.args),
        )?;

        // SDF's pod: after core-init, and its --conf rewritten, --console kept.
        let ps = pod_of(&ns, "sdf1", None).await?;
        let inits: Vec<&str> = ps.spec.iter().flat_map(|s| s.init_containers.iter().flatten()).map(|c| c.name.as_str()).collect();
        ensure(inits == ["core-init", "stellar-peers-config"], || format!("init containers {inits:?}"))?;
        let core = main_container(&ps, "core")?;
        ensure(
            core.args.as_deref() == Some(&["run".to_owned(), "--conf".to_owned(), "/etc/stellar/merged/stellar-core.cfg".to_owned(), "--console".to_owned()][..]),
            || format!("args {:?}", core.args),
        )?;

        // The init containers' own command lines over the pods' real volumes.
        let sdf_addr = format!("sdf1-0.sdf1.{n}.svc.cluster.local:11625");
        let want_v1: BTreeSet<String> = [
            svc("v2", &n),
            sdf_addr.clone(),
            "core-live-a.stellar.org:11625".into(),
            "core-live-b.stellar.org:11625".into(),
        ]
        .into();
        let p1 = wait_for(Duration::from_secs(60), "v1's pod with all its peers", || {
            let ns = &ns;
            let want = want_v1.clone();
            async move {
                let p = pod_of(ns, "v1", None).await.ok()?;
                let cfg = annotation(&p, "stellar.org/peers-config")?;
                want.iter().all(|w| cfg.contains(w.as_str())).then_some(p)
            }
        })
        .await?;
        let merged = run_init(&ns, &p1, "v1").await?;
        config::check_ours(&merged).map_err(|v| format!("merged config breaks our rules: {v:?}\n{merged}"))?;
        ensure(dialed(&merged)? == want_v1, || format!("KNOWN_PEERS and PREFERRED_PEERS:\n{merged}"))?;
        // The node's own known (not preferred) peer is the one KNOWN_PEERS entry of ours.
        ensure(
            peers_in(&merged, "KNOWN_PEERS")? == BTreeSet::from(["core-live-a.stellar.org:11625".to_owned()]),
            || format!("KNOWN_PEERS:\n{merged}"),
        )?;
        let pref = peers_in(&merged, "PREFERRED_PEERS")?;
        ensure(
            pref == BTreeSet::from([svc("v2", &n), sdf_addr.clone(), "core-live-b.stellar.org:11625".to_owned()]),
            || format!("PREFERRED_PEERS {pref:?}"),
        )?;
        // Everything else of the operator's file is kept byte for byte, quorum set included.
        for line in OPERATOR_CFG.lines() {
            ensure(merged.lines().any(|l| l == line), || format!("line {line:?} lost:\n{merged}"))?;
        }
        // The operator's own defect (its CATCHUP lines inside [QUORUM_SET]) stays its own.
        if let Err(v) = config::check(&merged) {
            ensure(v.iter().all(|x| !x.is_ours()), || format!("{v:?}"))?;
        }

        let ps = pod_of(&ns, "sdf1", None).await?;
        let merged = run_init(&ns, &ps, "sdf1").await?;
        config::check_ours(&merged).map_err(|v| format!("{v:?}\n{merged}"))?;
        let known = dialed(&merged)?;
        let chart_own: Vec<String> = peers_in(CHART_CFG, "KNOWN_PEERS")?
            .iter()
            .map(|a| stellar_peer_injector::peers::address::normalize(a).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        for want in [svc("v1", &n), svc("v2", &n)].iter().chain(&chart_own) {
            ensure(known.contains(want), || format!("{want} missing from {known:?}"))?;
        }
        ensure(!known.contains(&sdf_addr), || "sdf1 got itself".into())?;
        let assignments = merged
            .lines()
            .filter(|l| l.trim_start().starts_with("KNOWN_PEERS"))
            .count();
        ensure(assignments == 1, || format!("{assignments} KNOWN_PEERS assignments:\n{merged}"))?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// Every injected address resolves through the bed's CoreDNS to its pod's IP, with and
/// without the operator's own Service, and the injector created the missing governing
/// Services (and left the operator's alone).
pub async fn injected_addresses_resolve_to_their_pods() -> TestResult {
    let ns = TestNs::new("dns").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &[], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result: TestResult = async {
        // The operator's Service builder (a ClusterIP Service `{name}`), for one node only.
        ns.create::<Service>(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "v3", "labels": {"made-by": "operator"}},
            "spec": {"selector": {"app.kubernetes.io/instance": "v3"}, "ports": [{"name": "peer", "port": 11625}, {"name": "http", "port": 11626}]}}))
            .await?;
        for name in ["v1", "v2", "v3"] {
            ns.create::<StellarNode>(stellar_node(name, "Validator", "testnet", false)).await?;
            ns.create::<StatefulSet>(operator_statefulset(name, "Validator", "testnet", 1)).await?;
        }
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3"], 120).await?;
        for name in ["v1", "v2", "v3"] {
            let svc_obj = wait_for(Duration::from_secs(60), &format!("Service {name}-headless"), || {
                let api = ns.api::<Service>();
                async move { api.get_opt(&format!("{name}-headless")).await.ok().flatten() }
            })
            .await?;
            let spec = svc_obj.spec.as_ref().ok_or("spec")?;
            ensure(spec.cluster_ip.as_deref() == Some("None") && spec.publish_not_ready_addresses == Some(true),
                || format!("{name}-headless is not headless with not-ready addresses: {spec:?}"))?;
            let owner = svc_obj.metadata.owner_references.as_deref().unwrap_or_default();
            ensure(owner.iter().any(|o| o.kind == "StellarNode" && o.name == name), || format!("owners {owner:?}"))?;
        }
        // The operator's Service is untouched.
        let op = ns.api::<Service>().get("v3").await.map_err(|e| e.to_string())?;
        ensure(op.metadata.labels.as_ref().and_then(|l| l.get("made-by")).map(String::as_str) == Some("operator")
            && op.metadata.owner_references.is_none(), || format!("operator's Service changed: {:?}", op.metadata))?;
        // Every address injected into every pod resolves to that peer's pod IP.
        for name in ["v1", "v2", "v3"] {
            let (peers, _) = pod_peers(&ns, name).await.ok_or_else(|| format!("{name}: no peers"))?;
            for addr in peers.split(',') {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let peer = host.split('-').next().unwrap_or_default();
                let ip = ns.api::<Pod>().get(&format!("{peer}-0")).await.map_err(|e| e.to_string())?
                    .status.and_then(|s| s.pod_ip).ok_or_else(|| format!("{peer}-0 has no IP"))?;
                let got = resolve_within(host, Duration::from_secs(60)).await?;
                ensure(got.iter().any(|g| g.to_string() == ip), || format!("{host} -> {got:?}, pod IP {ip}"))?;
            }
        }
        // Deleting a StellarNode removes its governing Service (owner reference).
        ns.api::<StellarNode>().delete("v1", &Default::default()).await.map_err(|e| e.to_string())?;
        wait_for(Duration::from_secs(90), "v1-headless to be garbage-collected", || {
            let api = ns.api::<Service>();
            async move { api.get_opt("v1-headless").await.ok().and_then(|s| s.is_none().then_some(())) }
        })
        .await?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// Resolves `host` through the bed's CoreDNS, retrying while EndpointSlices propagate;
/// the error carries the last answer (NXDOMAIN included).
async fn resolve_within(host: &str, timeout: Duration) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match resolve_a(host).await {
            Ok(ips) if !ips.is_empty() => return Ok(ips),
            Ok(_) => "no A records".to_owned(),
            Err(e) => e,
        };
        if std::time::Instant::now() > deadline {
            return Err(format!("{host} did not resolve within {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Editing one StellarNode's `knownPeers` rolls that node alone.
pub async fn editing_known_peers_rolls_that_node_alone() -> TestResult {
    let ns = TestNs::new("kp").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result: TestResult = async {
        for name in ["v1", "v2"] {
            ns.create::<StellarNode>(stellar_node(name, "Validator", "testnet", false)).await?;
            ns.create::<StatefulSet>(operator_statefulset(name, "Validator", "testnet", 1)).await?;
        }
        wait_peer_mesh(&ns, &["v1", "v2"], &["v1", "v2"], 120).await?;
        let hash_of = |name: &'static str| {
            let api = ns.api::<StatefulSet>();
            async move {
                api.get(name).await.ok().and_then(|s| {
                    s.spec?.template.metadata?.annotations?.get("stellar.org/peers-hash").cloned()
                })
            }
        };
        let before_v2 = ns.api::<StatefulSet>().get("v2").await.map_err(|e| e.to_string())?;
        let v2_gen = before_v2.metadata.generation;
        ns.api::<StellarNode>()
            .patch("v1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"validatorConfig": {"knownPeers": "KNOWN_PEERS = [\"core-live-c.stellar.org\"]"}}})))
            .await
            .map_err(|e| e.to_string())?;
        // STELLAR_PEERS is sorted.
        wait_peers(&ns, "v1", &["core-live-c.stellar.org:11625".into(), svc("v2", &n)], 120).await?;
        let h1 = hash_of("v1").await.ok_or("v1 has no template hash")?;
        let p1 = pod_of(&ns, "v1", Some(&h1)).await?;
        ensure(annotation(&p1, "stellar.org/peers-hash").as_deref() == Some(h1.as_str()), || "v1 pod".into())?;
        // v2 was not touched: same generation, same list.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after_v2 = ns.api::<StatefulSet>().get("v2").await.map_err(|e| e.to_string())?;
        ensure(after_v2.metadata.generation == v2_gen, || {
            format!("v2 rolled too: generation {v2_gen:?} -> {:?}", after_v2.metadata.generation)
        })?;
        wait_peers(&ns, "v2", &[svc("v1", &n)], 30).await?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// `stellar_peer_injector_peers_unresolvable{network="testnet"}` of `inj` (absent: `None`).
async fn unresolvable(inj: &Injector) -> Option<f64> {
    metric_value(
        &inj.metrics().await,
        "stellar_peer_injector_peers_unresolvable{network=\"testnet\"}",
    )
}

async fn wait_unresolvable(inj: &Injector, want: f64, secs: u64) -> TestResult {
    let last = std::cell::Cell::new(None);
    let r = wait_for(
        Duration::from_secs(secs),
        &format!("peers_unresolvable{{network=\"testnet\"}} to be {want}"),
        || async {
            last.set(unresolvable(inj).await);
            (last.get() == Some(want)).then_some(())
        },
    )
    .await;
    r.map_err(|e| format!("{e} (last seen {:?})", last.get()))
}

/// Runs `stellar-peer-injector peers --resolve` for namespace `ns`: (stdout, stderr).
fn peers_resolve(ns: &str, dns: &str, json: bool) -> Result<(String, String), String> {
    let bed = bed()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stellar-peer-injector"));
    cmd.args([
        "peers",
        "--resolve",
        "--dns-server",
        dns,
        "--namespaces",
        ns,
    ])
    .arg("--kubeconfig")
    .arg(&bed.kubeconfig);
    if json {
        cmd.args(["-o", "json"]);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if !out.status.success() {
        return Err(format!("peers --resolve failed: {stderr}"));
    }
    Ok((stdout, stderr))
}

/// A validator whose peer name cannot resolve (an annotation naming nothing, a validator
/// whose pod does not exist) shows in the metric at once, gets one PeerUnresolvable Event
/// after the grace period, and shows in `peers --resolve`; once its name resolves (the
/// annotation removed and a pod, or just the pod) the metric drops.
pub async fn unresolvable_peers_are_reported_until_they_resolve() -> TestResult {
    let ns = TestNs::new("unres").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let dns = dns_addr()?.to_string();
    let inj = Injector::start(
        &n,
        &bed.kubeconfig,
        &[
            "--debounce",
            "0s",
            "--dns-server",
            &dns,
            "--resolve-check-interval",
            "1s",
            "--resolve-grace",
            "3s",
        ],
        true,
    )
    .await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result: TestResult = async {
        // v1 resolves once its pod and governing Service exist.
        ns.create::<StellarNode>(stellar_node("v1", "Validator", "testnet", false))
            .await?;
        ns.create::<StatefulSet>(operator_statefulset("v1", "Validator", "testnet", 1))
            .await?;
        wait_unresolvable(&inj, 0.0, 120).await?;

        // v2's annotation names nothing; v3 has no pod at all.
        let bad = format!("nothing-here.{n}.svc.cluster.local:11625");
        let mut v2 = stellar_node("v2", "Validator", "testnet", false);
        v2["metadata"]["annotations"] = json!({"stellar.org/peer-address": bad});
        ns.create::<StellarNode>(v2).await?;
        ns.create::<StellarNode>(stellar_node("v3", "Validator", "testnet", false))
            .await?;
        wait_unresolvable(&inj, 2.0, 60).await?;

        let ev2 = wait_node_event(&ns, "v2", "PeerUnresolvable", Duration::from_secs(60)).await?;
        let note2 = ev2[0].note.clone().unwrap_or_default();
        ensure(
            ev2[0].type_.as_deref() == Some("Warning")
                && note2.contains(&bad)
                && note2.contains("stellar.org/peer-address"),
            || format!("v2's Event: {:?}", ev2[0]),
        )?;
        let ev3 = wait_node_event(&ns, "v3", "PeerUnresolvable", Duration::from_secs(60)).await?;
        let note3 = ev3[0].note.clone().unwrap_or_default();
        ensure(
            note3.contains(&svc("v3", &n))
                && note3.contains("pod v3-0")
                && note3.contains("v3-headless"),
            || format!("v3's Event: {:?}", ev3[0]),
        )?;

        // `peers --resolve` through the same DNS shows the two, and only them.
        let (out, _) = peers_resolve(&n, &dns, true)?;
        let v: Value =
            serde_json::from_str(&out).map_err(|e| format!("peers output {out}: {e}"))?;
        let listed: BTreeSet<String> = v["unresolvable"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["address"].as_str().map(str::to_owned))
            .collect();
        ensure(
            listed == BTreeSet::from([bad.clone(), svc("v3", &n)]),
            || format!("unresolvable: {v}"),
        )?;
        let peers = v["networks"]["testnet"]["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let v1_resolves = peers
            .iter()
            .find(|p| p["address"] == svc("v1", &n))
            .map(|p| p["resolves"].clone());
        ensure(v1_resolves == Some(json!(true)), || format!("v1 in {v}"))?;
        let (table, _) = peers_resolve(&n, &dns, false)?;
        ensure(
            table
                .lines()
                .any(|l| l.contains(&bad) && l.contains("no (NXDOMAIN)")),
            || format!("table:\n{table}"),
        )?;
        // Without a DNS server to ask it says so, and judges nothing.
        let nowhere = format!("127.0.0.1:{}", free_port());
        let (table, err) = peers_resolve(&n, &nowhere, false)?;
        ensure(err.contains("no peer address was checked"), || {
            format!("stderr: {err}")
        })?;
        ensure(!table.contains("no (") && table.contains("unknown"), || {
            format!("table:\n{table}")
        })?;

        // Fixed: v2 loses the annotation and gets its pod; v3 stays broken.
        ns.api::<StellarNode>()
            .patch(
                "v2",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"stellar.org/peer-address": null}}}),
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        ns.create::<StatefulSet>(operator_statefulset("v2", "Validator", "testnet", 1))
            .await?;
        wait_unresolvable(&inj, 1.0, 120).await?;
        // One Event per episode: v3 was told once, however many rounds ran since.
        let ev3 = node_events(&ns, "v3", "PeerUnresolvable").await?;
        ensure(ev3.len() == 1 && event_count(&ev3[0]) == 1, || {
            format!("v3's Events: {ev3:?}")
        })?;
        // v3 gets its pod: the same address resolves, the episode ends.
        ns.create::<StatefulSet>(operator_statefulset("v3", "Validator", "testnet", 1))
            .await?;
        wait_unresolvable(&inj, 0.0, 120).await?;
        let log = inj.log_text();
        let v3 = svc("v3", &n);
        ensure(
            log.lines()
                .any(|l| l.contains("peer address does not resolve") && l.contains(&v3))
                && log
                    .lines()
                    .any(|l| l.contains("peer address resolves again") && l.contains(&v3)),
            || "the log does not tell v3's episode".into(),
        )?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// Invalid `validatorConfig.knownPeers` gets a Warning Event on that StellarNode alone
/// (once per distinct problem), and the others keep working; a pod whose command merge mode
/// does not understand gets one Event on its StellarNode, however many such pods come.
pub async fn user_problems_become_events_on_their_stellarnode() -> TestResult {
    let ns = TestNs::new("uprob").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(
        &n,
        &bed.kubeconfig,
        &[
            "--init-image",
            INIT_IMAGE,
            "--debounce",
            "0s",
            "--resolve-check-interval",
            "0s",
        ],
        true,
    )
    .await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result: TestResult = async {
        let mut v1 = stellar_node("v1", "Validator", "testnet", false);
        v1["spec"]["validatorConfig"] = json!({"knownPeers": "KNOWN_PEERS = [\"core-live-a.stellar.org:11625\""});
        let mut v2 = stellar_node("v2", "Validator", "testnet", false);
        v2["spec"]["validatorConfig"] = json!({"knownPeers": "KNOWN_PEERS = [\"core-live-b.stellar.org\"]"});
        ns.create::<StellarNode>(v1).await?;
        ns.create::<StellarNode>(v2).await?;
        ns.create::<StellarNode>(stellar_node("sh1", "Validator", "testnet", false)).await?;
        for name in ["v1", "v2", "sh1"] {
            ns.create::<ConfigMap>(config_map(&format!("{name}-config"), OPERATOR_CFG)).await?;
        }
        for name in ["v1", "v2"] {
            ns.create::<StatefulSet>(operator_validator(name, "testnet")).await?;
        }
        // sh1 starts stellar-core through a shell: merge mode leaves it alone.
        let mut sh1 = operator_validator("sh1", "testnet");
        sh1["spec"]["template"]["spec"]["containers"][0]["command"] =
            json!(["/bin/sh", "-c", "exec stellar-core run --conf /config/stellar-core.cfg"]);
        ns.create::<StatefulSet>(sh1).await?;

        let ev = wait_node_event(&ns, "v1", "InvalidKnownPeers", Duration::from_secs(60)).await?;
        let note = ev[0].note.clone().unwrap_or_default();
        ensure(ev[0].type_.as_deref() == Some("Warning") && note.contains("spec.validatorConfig.knownPeers"),
            || format!("v1's Event: {:?}", ev[0]))?;
        // The others are unaffected: their lists, v2's own peer included, and no such Event.
        wait_peers(&ns, "v2", &["core-live-b.stellar.org:11625".into(), svc("sh1", &n), svc("v1", &n)], 120).await?;
        wait_peers(&ns, "v1", &[svc("sh1", &n), svc("v2", &n)], 120).await?;
        for other in ["v2", "sh1"] {
            let evs = node_events(&ns, other, "InvalidKnownPeers").await?;
            ensure(evs.is_empty(), || format!("{other} got {evs:?}"))?;
        }

        let ev = wait_node_event(&ns, "sh1", "PeersConfigNotMerged", Duration::from_secs(60)).await?;
        let note = ev[0].note.clone().unwrap_or_default();
        ensure(ev[0].type_.as_deref() == Some("Warning") && note.contains("is not stellar-core") && note.contains("stellar.org/peers-config-mode"),
            || format!("sh1's Event: {:?}", ev[0]))?;
        let p = pod_of(&ns, "sh1", None).await?;
        let inits = p.spec.as_ref().and_then(|s| s.init_containers.as_ref()).map_or(0, Vec::len);
        ensure(inits == 0 && env_get(&p, "stellar-node", "STELLAR_PEERS").is_some(),
            || format!("sh1's pod: {} init containers, env {:?}", inits, pod_env(&p, "stellar-node")))?;
        // A second such pod: the same problem, no second Event.
        ns.api::<StatefulSet>()
            .patch("sh1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}})))
            .await
            .map_err(|e| e.to_string())?;
        wait_for(Duration::from_secs(120), "pod sh1-1 admitted", || {
            let api = ns.api::<Pod>();
            async move { api.get_opt("sh1-1").await.ok().flatten() }
        })
        .await?;
        // Another knownPeers mistake on v1 is another problem: a second Event. Queued after
        // sh1-1's notice, so once it shows, sh1-1's was handled too.
        ns.api::<StellarNode>()
            .patch("v1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"validatorConfig": {"knownPeers": "KNOWN_PEERS = [\"bad host\"]"}}})))
            .await
            .map_err(|e| e.to_string())?;
        let evs = wait_for(Duration::from_secs(60), "a second InvalidKnownPeers Event on v1", || async {
            node_events(&ns, "v1", "InvalidKnownPeers").await.ok().filter(|e| e.len() == 2)
        })
        .await?;
        ensure(evs.iter().any(|e| e.note.as_deref().unwrap_or("").contains("bad host")), || format!("{evs:?}"))?;
        let evs = node_events(&ns, "sh1", "PeersConfigNotMerged").await?;
        ensure(evs.len() == 1 && event_count(&evs[0]) == 1, || format!("sh1's Events: {evs:?}"))?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// A validator pod that is compliant with Pod Security `restricted` as the user wrote it,
/// in the operator's shape, with the securityContext a hardened install sets per
/// container (the pod sets none of it, so every container is judged by its own).
fn restricted_validator_pod(name: &str, network: &str) -> Value {
    let labels = operator_labels(name, "Validator", network);
    let hardened = json!({
        "runAsNonRoot": true, "runAsUser": 10000,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    });
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-0"), "labels": labels},
        "spec": {
            "containers": [
                {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0",
                 "securityContext": hardened,
                 "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": true}]},
                {"name": "stellar-health-check", "image": "stellar/health-check:v0.3.1",
                 "securityContext": hardened}
            ],
            "volumes": [{"name": "config", "configMap": {"name": format!("{name}-config")}}]
        }
    })
}

/// Pod Security admission (the apiserver's own plugin, which judges the pod after the
/// mutating webhooks) accepts an injected validator in namespaces that enforce
/// `restricted` and `baseline`: the init container merge mode adds is compliant by
/// itself. The control: the plugin does refuse a pod whose container is not.
pub async fn pod_security_restricted_and_baseline_accept_injected_pods() -> TestResult {
    use k8s_openapi::api::core::v1::Namespace;
    for level in ["restricted", "baseline"] {
        let ns = TestNs::new(&format!("psa-{level}")).await?;
        let n = ns.name.clone();
        let label = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});
        kube::Api::<Namespace>::all(ns.client.clone())
            .patch(&n, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .map_err(|e| format!("label namespace {n}: {e}"))?;
        let bed = bed()?;
        let inj = Injector::start(
            &n,
            &bed.kubeconfig,
            &["--init-image", INIT_IMAGE, "--rollout", "off"],
            true,
        )
        .await?;
        let hook =
            register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
        let result: TestResult = async {
            ns.create::<StellarNode>(stellar_node("v1", "Validator", "testnet", false))
                .await?;
            ns.create::<StellarNode>(stellar_node("v2", "Validator", "testnet", false))
                .await?;
            ns.create::<ConfigMap>(config_map("v1-config", OPERATOR_CFG))
                .await?;
            // The snapshot has v2 before the pod is created: its peer list is not empty.
            let want = [svc("v2", &n)];
            wait_for(
                Duration::from_secs(30),
                "the injector to see v2",
                || async {
                    let (_, answer) = admission_request(&inj, &review_for(&n, "v1")).await.ok()?;
                    injected_peers(&answer).filter(|p| p.contains(want[0].as_str()))
                },
            )
            .await?;
            let pod: Pod = ns
                .create::<Pod>(restricted_validator_pod("v1", "testnet"))
                .await
                .map_err(|e| format!("{level}: the injected pod was refused: {e}"))?;
            let inits: Vec<&str> = pod
                .spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .map(|c| c.name.as_str())
                .collect();
            ensure(inits == ["stellar-peers-config"], || {
                format!(
                    "{level}: init containers {inits:?}: the pod was not injected in merge mode"
                )
            })?;
            if level == "restricted" {
                // The control: a container without runAsNonRoot and seccomp is refused here.
                let mut bare = restricted_validator_pod("v9", "testnet");
                bare["metadata"]["labels"] = json!({"app": "not-stellar"});
                bare["spec"]["containers"][1]["securityContext"] = json!({});
                let refused = ns.create::<Pod>(bare).await;
                ensure(
                    refused.as_ref().is_err_and(|e| e.contains("restricted")),
                    || format!("Pod Security did not refuse a non-compliant pod: {refused:?}"),
                )?;
            }
            Ok(())
        }
        .await;
        delete_webhook(&ns.client, &hook).await;
        result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))?;
    }
    Ok(())
}
