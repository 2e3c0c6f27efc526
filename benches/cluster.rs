//! On the test bed (a real control plane on loopback, tests/testbed): memory and
//! start-up time of `stellar-peer-injector serve` holding 10,000 StellarNodes, and
//! propagation latency from a StellarNode change to the StatefulSets' template
//! annotation `stellar.org/peers-hash`.
//!
//! `cargo bench --bench cluster` (about 5 minutes) writes the `cluster` section of
//! `benches/results/latest.json`. Under `cargo test --all-targets` it does nothing.
//!
//! By default it brings up a private bed: a copy of tests/testbed under
//! target/bench-bed, so its state (target/bench-bed/target/testbed) and ports are its
//! own and concurrent test runs on the repository's bed neither disturb it nor are
//! disturbed; it stops that bed at the end. Environment (all optional):
//! - `BENCH_BED=shared`: use the repository's bed instead (started if down, then stopped)
//! - `BENCH_KEEP_BED=1`: leave the bed running at the end
//! - `BENCH_MEM_NODES` (10000), `BENCH_STARTUP_RUNS` (3), `BENCH_CHANGES` (36)
//! - `BENCH_SKIP_MEMORY=1`, `BENCH_SKIP_PROPAGATION=1`

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;
use stellar_peer_injector::nodes::{NodeKind, NodeRecord};
use stellar_peer_injector::peers::{Lookup, PeerSettings, PeerSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;

const HASH: &str = "stellar.org/peers-hash";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stellar-peer-injector")
}

// ---------------------------------------------------------------- the bed

struct Bed {
    script: PathBuf,
    kubeconfig: PathBuf,
    logs: PathBuf,
    started_here: bool,
}

fn run_script(script: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(script)
        .args(args)
        .env("TESTBED_TIMEOUT", "120")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{} {}` failed: {stdout}\n{}",
            script.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Bed {
    fn up() -> Result<Self, String> {
        let shared = std::env::var("BENCH_BED").is_ok_and(|v| v == "shared");
        let root = if shared {
            repo_root()
        } else {
            // A private copy of the bed: same script and pins, its own state and ports.
            let root = repo_root().join("target/bench-bed");
            std::fs::create_dir_all(root.join("tests")).map_err(|e| e.to_string())?;
            let st = Command::new("cp")
                .args(["-a", "--"])
                .arg(repo_root().join("tests/testbed"))
                .arg(root.join("tests/"))
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err("cannot copy tests/testbed".into());
            }
            root
        };
        let script = root.join("tests/testbed/testbed");
        let already = run_script(&script, &["status"]).is_ok();
        if !already {
            eprintln!("cluster: starting the bed ({})", script.display());
            run_script(&script, &["up"])?;
        }
        let logs = repo_root().join("target/bench-logs");
        std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
        Ok(Self {
            kubeconfig: root.join("target/testbed/kubeconfig"),
            script,
            logs,
            started_here: !already,
        })
    }

    async fn client(&self) -> Result<Client, String> {
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).map_err(|e| e.to_string())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        Client::try_from(cfg).map_err(|e| e.to_string())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if self.started_here && std::env::var_os("BENCH_KEEP_BED").is_none() {
            eprintln!("cluster: stopping the bed");
            if let Err(e) = run_script(&self.script, &["down"]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn install_crd(client: &Client) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("stellar-peer-injector-bench").force();
    api.patch(
        "stellarnodes.stellar.org",
        &pp,
        &Patch::Apply(&StellarNode::crd()),
    )
    .await
    .map_err(|e| format!("install CRD: {e}"))?;
    wait_for(Duration::from_secs(30), "CRD established", || {
        let api = api.clone();
        async move {
            let c = api.get("stellarnodes.stellar.org").await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await
}

async fn create_namespace(client: &Client, name: &str) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .map_err(|e| format!("create namespace {name}: {e}"))?;
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait_for(Duration::from_secs(30), "default ServiceAccount", || {
        let sa = sa.clone();
        async move { sa.get_opt("default").await.ok().flatten() }
    })
    .await?;
    Ok(())
}

async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

// ---------------------------------------------------------------- the injector process

struct Injector {
    child: Child,
    port: u16,
    admin_port: u16,
    certs: PathBuf,
    started: Instant,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Injector {
    fn spawn(bed: &Bed, ns: &str, extra: &[&str], tag: &str) -> Result<Self, String> {
        let certs = make_certs(&format!("cluster-{tag}"));
        let port = free_port();
        let admin_port = free_port();
        let log = bed.logs.join(format!("injector-{tag}-{port}.log"));
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(bin())
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .arg("--kubeconfig")
            .arg(&bed.kubeconfig)
            .args(["--namespaces", ns, "--shutdown-delay", "0s"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawn injector: {e}"))?;
        Ok(Self {
            child,
            port,
            admin_port,
            certs,
            started,
        })
    }

    /// Time from spawn to the first `/readyz` 200 (polled every 5 ms).
    async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let url = format!("127.0.0.1:{}", self.admin_port);
        let deadline = self.started + timeout;
        loop {
            if let Ok((200, _)) = http_get(&url, "/readyz").await {
                return Ok(self.started.elapsed());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("injector exited early: {st}"));
            }
            if Instant::now() > deadline {
                return Err(format!("injector not ready after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http_get(&format!("127.0.0.1:{}", self.admin_port), "/metrics")
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// `(VmHWM, VmRSS)` in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let get = |k: &str| {
            s.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (get("VmHWM:"), get("VmRSS:"))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 GET over plain TCP on loopback: (status, body).
async fn http_get(host: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {text}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 1)
}

// ---------------------------------------------------------------- memory and start-up

fn stellar_node_json(
    name: &str,
    kind: &str,
    network: &str,
    suspended: bool,
    addr: Option<&str>,
) -> Value {
    let mut v = json!({
        "apiVersion": "stellar.org/v1alpha1", "kind": "StellarNode",
        "metadata": {"name": name, "labels": {"stellar-network": network}},
        "spec": {"nodeType": kind, "network": network, "version": "v22.1.0", "suspended": suspended,
                 "storage": {"storageClass": "standard", "size": "100Gi"}}
    });
    if let Some(a) = addr {
        v["metadata"]["annotations"] = json!({ "stellar.org/peer-address": a });
    }
    v
}

async fn create_nodes(client: &Client, ns: &str, n: usize) -> Result<Duration, String> {
    let api: Api<StellarNode> = Api::namespaced(client.clone(), ns);
    let mut objs = vec![stellar_node_json(
        FIXTURE_NODE,
        "Validator",
        FIXTURE_NETWORK,
        false,
        None,
    )];
    objs.extend((0..n.saturating_sub(1)).map(|i| {
        let (_, name, kind, network, suspended, addr) = synthetic_node(i);
        stellar_node_json(&name, kind.as_str(), &network, suspended, addr.as_deref())
    }));
    let t = Instant::now();
    futures::stream::iter(objs.into_iter().map(|o| {
        let api = api.clone();
        async move {
            let node: StellarNode = serde_json::from_value(o).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &node)
                .await
                .map(|_| ())
                .map_err(|e| format!("create StellarNode: {e}"))
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(t.elapsed())
}

/// How long listing every StellarNode of `ns` takes: paged by 500 (what the cache's
/// watcher does by default) and in one go from the apiserver's watch cache
/// (`resourceVersion=0`, what `watcher::Config::any_semantic()` asks for).
async fn list_timing(client: &Client, ns: &str) -> Result<Value, String> {
    use kube::api::{ApiResource, DynamicObject, ListParams};
    let ar = ApiResource::erase::<StellarNode>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let (mut paged, mut any) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(tok) = &token {
                lp = lp.continue_token(tok);
            }
            let page = api.list(&lp).await.map_err(|e| format!("list: {e}"))?;
            n += page.items.len();
            token = page.metadata.continue_.filter(|c| !c.is_empty());
            if token.is_none() {
                break;
            }
        }
        paged.push((t.elapsed().as_secs_f64(), n));
        let t = Instant::now();
        let all = api
            .list(&ListParams::default().match_any())
            .await
            .map_err(|e| format!("list: {e}"))?;
        any.push((t.elapsed().as_secs_f64(), all.items.len()));
    }
    let med = |v: &mut Vec<(f64, usize)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let (p, pn) = med(&mut paged);
    let (a, an) = med(&mut any);
    println!(
        "LIST of {pn} StellarNodes: paged by 500 {p:.3} s; resourceVersion=0 (watch cache) {a:.3} s ({an} objects); median of 3"
    );
    Ok(json!({
        "objects": pn,
        "paged_500_s": round(p, 3),
        "resource_version_0_s": round(a, 3),
    }))
}

/// The fixture review, for a pod of StellarNode `validator-1` in `ns`.
fn fixture_in(ns: &str) -> Bytes {
    let mut v: Value = serde_json::from_slice(FIXTURE).expect("fixture");
    v["request"]["namespace"] = json!(ns);
    v["request"]["object"]["metadata"]["namespace"] = json!(ns);
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

/// Sends `n` admission requests over `conns` keep-alive connections; checks the patch.
async fn admission_load(
    inj: &Injector,
    body: &Bytes,
    n: usize,
    conns: usize,
) -> Result<(), String> {
    let tls = tls_connector(&inj.certs);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", inj.port).parse().expect("addr");
    let mut first = Conn::open(addr, &tls).await?;
    let (s, b) = first.post(body).await?;
    verify_injected(s, &b)?;
    let len = b.len();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut c = Conn::open(addr, &tls).await?;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..n / conns {
                let (s, b) = c.post(&body).await?;
                if s != 200 || b.len() != len {
                    return Err(format!("unexpected answer {s}, {} bytes", b.len()));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn memory_bench(bed: &Bed, client: &Client) -> Result<Value, String> {
    let n = env_f64("BENCH_MEM_NODES", 10000.0) as usize;
    let runs = (env_f64("BENCH_STARTUP_RUNS", 3.0) as usize).max(1);
    let ns = format!("bench-mem-{}", std::process::id());
    create_namespace(client, &ns).await?;
    eprintln!("cluster: creating {n} StellarNodes in {ns}");
    let took = create_nodes(client, &ns, n).await?;
    eprintln!("cluster: created in {:.1} s", took.as_secs_f64());
    let body = fixture_in(&ns);
    let mut results = Vec::new();
    let modes: Vec<(&str, Vec<&str>)> =
        std::iter::repeat_n(("off", vec!["--rollout", "off"]), runs)
            .chain(std::iter::once((
                "on",
                vec![
                    "--rollout",
                    "on",
                    "--lease-namespace",
                    &ns,
                    "--debounce",
                    "0s",
                ],
            )))
            .collect();
    for (i, (mode, args)) in modes.iter().enumerate() {
        let mut inj = Injector::spawn(bed, &ns, args, &format!("mem-{mode}-{i}"))?;
        let ready = inj.wait_ready(Duration::from_secs(60)).await;
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                inj.stop();
                return Err(e);
            }
        };
        let cached = inj.metric("stellar_peer_injector_cache_nodes").await;
        let (hwm_ready, rss_ready) = inj.memory_kib();
        // Let the rollout loop (when on) compute every node's list, then serve requests.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (hwm_idle, _) = inj.memory_kib();
        let load = admission_load(&inj, &body, 4000, 8).await;
        let (hwm, rss) = inj.memory_kib();
        println!(
            "serve --rollout {mode:<3} {n} StellarNodes: ready in {:>6.3} s; VmHWM at ready {:>5.1} MiB, after 3 s {:>5.1} MiB, after 4,000 requests {:>5.1} MiB (VmRSS {:.1} MiB); cache_nodes {:?}",
            ready.as_secs_f64(),
            mib(hwm_ready),
            mib(hwm_idle),
            mib(hwm),
            mib(rss),
            cached,
        );
        inj.stop();
        load?;
        results.push(json!({
            "rollout": mode,
            "ready_s": round(ready.as_secs_f64(), 3),
            "cache_nodes_metric": cached,
            "vm_hwm_mib_at_ready": mib(hwm_ready),
            "vm_rss_mib_at_ready": mib(rss_ready),
            "vm_hwm_mib_after_3s": mib(hwm_idle),
            "vm_hwm_mib_after_4000_requests": mib(hwm),
            "vm_rss_mib_after_4000_requests": mib(rss),
        }));
    }
    let listing = list_timing(client, &ns).await?;
    delete_namespace(client, &ns).await;
    let off: Vec<&Value> = results.iter().filter(|r| r["rollout"] == "off").collect();
    let mut ready: Vec<f64> = off.iter().filter_map(|r| r["ready_s"].as_f64()).collect();
    ready.sort_by(f64::total_cmp);
    let peak_off = off
        .iter()
        .filter_map(|r| r["vm_hwm_mib_after_4000_requests"].as_f64())
        .fold(0.0, f64::max);
    let peak_on = results
        .iter()
        .filter(|r| r["rollout"] == "on")
        .filter_map(|r| r["vm_hwm_mib_after_4000_requests"].as_f64())
        .fold(0.0, f64::max);
    let median_ready = ready[ready.len() / 2];
    let max_ready = ready.last().copied().unwrap_or(0.0);
    Ok(json!({
        "stellar_nodes": n,
        "namespace_objects_created_in_s": round(took.as_secs_f64(), 1),
        "runs": results,
        "peak_vm_hwm_mib_rollout_off": peak_off,
        "peak_vm_hwm_mib_rollout_on": peak_on,
        "ready_s_rollout_off": {"median": median_ready, "max": max_ready, "all": ready},
        "list_all_stellarnodes": listing,
        "targets": {
            "peak_rss_target_mib": 64,
            "peak_rss_met": peak_off < 64.0,
            "ready_target_s": 5,
            "ready_met": max_ready < 5.0,
        },
    }))
}

// ---------------------------------------------------------------- propagation

fn operator_labels(name: &str, kind: &str, network: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "stellar-node",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": if kind == "Validator" { "validator" } else { "horizon" },
        "app.kubernetes.io/managed-by": "stellar-operator",
        "stellar.org/node-type": kind,
        "stellar-network": network,
    })
}

/// The StatefulSet the operator makes for a StellarNode (one replica).
fn operator_statefulset(name: &str, kind: &str, network: &str) -> StatefulSet {
    let labels = operator_labels(name, kind, network);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": format!("{name}-headless"),
            "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [
                    {"name": "stellar-health-check", "image": "stellar/health-check:v0.3.1"},
                    {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0",
                     "ports": [{"name": "peer", "containerPort": 11625}],
                     "env": [{"name": "STELLAR_CORE_SEED", "value": "SXXX"}]}
                ]}
            }
        }
    }))
    .expect("statefulset")
}

async fn register_webhook(client: &Client, ns: &str, inj: &Injector) -> Result<String, String> {
    use base64::Engine;
    let ca = std::fs::read(inj.certs.join("ca.crt")).map_err(|e| e.to_string())?;
    let name = format!("spi-bench-{ns}");
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "peers.stellar.org",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "clientConfig": {"url": format!("https://127.0.0.1:{}/mutate", inj.port),
                             "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "objectSelector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}]
        }]
    }))
    .map_err(|e| e.to_string())?;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.create(&PostParams::default(), &cfg)
        .await
        .map_err(|e| format!("create webhook config: {e}"))?;
    // The apiserver picks new configurations up asynchronously.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(name)
}

/// What the bench's StatefulSet watch has seen.
#[derive(Default)]
struct Seen {
    /// Per StatefulSet: every change of the template hash, with when it was seen.
    transitions: HashMap<String, Vec<(Instant, Option<String>)>>,
    latest: HashMap<String, StatefulSet>,
}

fn template_hash(s: &StatefulSet) -> Option<String> {
    s.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(HASH)
        .cloned()
}

/// Same rule as the rollout loop: the controller has finished with it.
fn settled(s: &StatefulSet) -> bool {
    let replicas = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = s.status.as_ref() else {
        return false;
    };
    st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0)
        && st.ready_replicas.unwrap_or(0) == replicas
        && st.updated_replicas.unwrap_or(0) == replicas
        && st.current_revision == st.update_revision
}

fn watch_statefulsets(
    client: &Client,
    ns: &str,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            let now = Instant::now();
            if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev {
                let name = s.metadata.name.clone().unwrap_or_default();
                let h = template_hash(&s);
                let mut g = s2.lock().expect("lock");
                let t = g.transitions.entry(name.clone()).or_default();
                if t.last().map(|(_, x)| x) != Some(&h) {
                    t.push((now, h));
                }
                g.latest.insert(name, s);
            } else if let Ok(watcher::Event::Delete(s)) = ev {
                let name = s.metadata.name.clone().unwrap_or_default();
                s2.lock().expect("lock").latest.remove(&name);
            }
        }
    });
    (seen, task)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Change {
    Create,
    Suspend,
    Resume,
    Delete,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Delete => "delete",
        }
    }
}

/// The expected template hash of every StellarNode's pods, from the bench's own model
/// of the namespace (the same pure code and default settings as the injector).
fn expected(model: &BTreeMap<String, NodeRecord>) -> BTreeMap<String, String> {
    let snap = PeerSnapshot::build(1, model.values(), &PeerSettings::default());
    model
        .values()
        .filter_map(|r| match snap.lookup(&r.namespace, &r.name) {
            Lookup::Found(l) => Some((r.name.clone(), l.hash.clone())),
            _ => None,
        })
        .collect()
}

fn record(ns: &str, name: &str, kind: NodeKind, network: &str) -> NodeRecord {
    NodeRecord::new(ns, name, kind, network)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn dist_ms(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    json!({
        "n": s.len(),
        "p50": round(percentile(&s, 0.5), 1),
        "p90": round(percentile(&s, 0.9), 1),
        "p99": round(percentile(&s, 0.99), 1),
        "max": round(s.last().copied().unwrap_or(f64::NAN), 1),
        "min": round(s.first().copied().unwrap_or(f64::NAN), 1),
    })
}

async fn propagation_bench(bed: &Bed, client: &Client) -> Result<Value, String> {
    let changes = env_f64("BENCH_CHANGES", 36.0) as usize;
    let nets = ["testnet", "mainnet", "futurenet"];
    let validators_per_net = 4;
    let ns = format!("bench-prop-{}", std::process::id());
    create_namespace(client, &ns).await?;
    let nodes_api: Api<StellarNode> = Api::namespaced(client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let mut model: BTreeMap<String, NodeRecord> = BTreeMap::new();
    for net in nets {
        for k in 0..validators_per_net {
            let name = format!("{net}-v{k}");
            model.insert(name.clone(), record(&ns, &name, NodeKind::Validator, net));
        }
        let name = format!("{net}-horizon");
        model.insert(name.clone(), record(&ns, &name, NodeKind::Horizon, net));
    }
    for r in model.values() {
        let node: StellarNode = serde_json::from_value(stellar_node_json(
            &r.name,
            r.kind.as_str(),
            &r.network,
            false,
            None,
        ))
        .map_err(|e| e.to_string())?;
        nodes_api
            .create(&PostParams::default(), &node)
            .await
            .map_err(|e| format!("create StellarNode: {e}"))?;
    }
    let statefulsets = model.len();
    let max_concurrent = (statefulsets + changes).to_string();
    let mut inj = Injector::spawn(
        bed,
        &ns,
        &[
            "--rollout",
            "on",
            "--lease-namespace",
            &ns,
            "--debounce",
            "0s",
            "--max-concurrent-rollouts",
            &max_concurrent,
        ],
        "propagation",
    )?;
    inj.wait_ready(Duration::from_secs(60)).await?;
    let hook = register_webhook(client, &ns, &inj).await?;
    let (seen, watch_task) = watch_statefulsets(client, &ns);
    for r in model.values() {
        sts_api
            .create(
                &PostParams::default(),
                &operator_statefulset(&r.name, r.kind.as_str(), &r.network),
            )
            .await
            .map_err(|e| format!("create StatefulSet: {e}"))?;
    }
    let result = run_changes(client, &ns, &mut model, &seen, changes, &nets).await;
    watch_task.abort();
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = api.delete(&hook, &DeleteParams::default()).await;
    inj.stop();
    delete_namespace(client, &ns).await;
    let mut v = result?;
    v["setup"] = json!({
        "networks": nets,
        "validators_per_network": validators_per_net,
        "horizon_per_network": 1,
        "replicas_per_statefulset": 1,
        "injector_flags": format!("--rollout on --debounce 0s --max-concurrent-rollouts {max_concurrent}"),
        "webhook": "registered for the namespace, failurePolicy Fail",
    });
    Ok(v)
}

async fn run_changes(
    client: &Client,
    ns: &str,
    model: &mut BTreeMap<String, NodeRecord>,
    seen: &Arc<Mutex<Seen>>,
    changes: usize,
    nets: &[&str],
) -> Result<Value, String> {
    let nodes_api: Api<StellarNode> = Api::namespaced(client.clone(), ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    // Wait for the initial rollout: every StatefulSet settled.
    let names: Vec<String> = model.keys().cloned().collect();
    wait_for(
        Duration::from_secs(180),
        "initial StatefulSets settled",
        || {
            let g = seen.lock().expect("lock");
            let ok = names.iter().all(|n| g.latest.get(n).is_some_and(settled));
            async move { ok.then_some(()) }
        },
    )
    .await?;
    eprintln!(
        "cluster: {} StatefulSets settled; starting {changes} changes",
        names.len()
    );
    let mut last_annotation: HashMap<String, Instant> = HashMap::new();
    let mut per_change = Vec::new();
    let (mut firsts, mut alls, mut each, mut settles) = (vec![], vec![], vec![], vec![]);
    let mut all_vals = vec![];
    let mut failures = 0usize;
    let kinds = [
        Change::Create,
        Change::Suspend,
        Change::Resume,
        Change::Delete,
    ];
    for k in 0..changes {
        let net = nets[k % nets.len()];
        let step = k / nets.len();
        let change = kinds[step % kinds.len()];
        let extra = format!("{net}-x{}", step / kinds.len());
        // Quiet network: every StatefulSet of it settled and none annotated in the
        // last 5.5 s (the loop treats a workload it acted on within 5 s as busy).
        let members: Vec<String> = model
            .values()
            .filter(|r| r.network == net)
            .map(|r| r.name.clone())
            .collect();
        let last = last_annotation.get(net).copied();
        wait_for(Duration::from_secs(180), &format!("{net} quiet"), || {
            let g = seen.lock().expect("lock");
            let ok = members.iter().all(|n| g.latest.get(n).is_some_and(settled))
                && last.is_none_or(|t| t.elapsed() > Duration::from_millis(5500));
            async move { ok.then_some(()) }
        })
        .await?;
        let before = expected(model);
        match change {
            Change::Create => {
                model.insert(extra.clone(), record(ns, &extra, NodeKind::Validator, net));
            }
            Change::Suspend => {
                model.get_mut(&extra).expect("node").suspended = true;
            }
            Change::Resume => {
                model.get_mut(&extra).expect("node").suspended = false;
            }
            Change::Delete => {
                model.remove(&extra);
            }
        }
        let after = expected(model);
        let affected: Vec<(String, String)> = {
            let g = seen.lock().expect("lock");
            after
                .iter()
                .filter(|(name, h)| {
                    g.latest.contains_key(*name) && before.get(*name).is_some_and(|b| b != *h)
                })
                .map(|(n, h)| (n.clone(), h.clone()))
                .collect()
        };
        let t0 = Instant::now();
        let call = match change {
            Change::Create => {
                let node: StellarNode = serde_json::from_value(stellar_node_json(
                    &extra,
                    "Validator",
                    net,
                    false,
                    None,
                ))
                .map_err(|e| e.to_string())?;
                nodes_api
                    .create(&PostParams::default(), &node)
                    .await
                    .map(|_| ())
            }
            Change::Suspend | Change::Resume => nodes_api
                .patch(
                    &extra,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"suspended": change == Change::Suspend}})),
                )
                .await
                .map(|_| ()),
            Change::Delete => nodes_api
                .delete(&extra, &DeleteParams::default())
                .await
                .map(|_| ()),
        };
        let api_ms = t0.elapsed().as_secs_f64() * 1e3;
        call.map_err(|e| format!("{} {extra}: {e}", change.as_str()))?;
        // Every affected StatefulSet carries its new hash (first transition after t0).
        let found = wait_for(Duration::from_secs(30), "annotations", || {
            let g = seen.lock().expect("lock");
            let times: Option<Vec<(String, f64)>> = affected
                .iter()
                .map(|(name, h)| {
                    g.transitions.get(name).and_then(|ts| {
                        ts.iter()
                            .find(|(t, x)| *t >= t0 && x.as_deref() == Some(h.as_str()))
                            .map(|(t, _)| (name.clone(), (*t - t0).as_secs_f64() * 1e3))
                    })
                })
                .collect();
            async move { times }
        })
        .await;
        let Ok(times) = found else {
            failures += 1;
            eprintln!(
                "cluster: change {k} ({} {extra}) did not propagate in 30 s",
                change.as_str()
            );
            per_change.push(json!({"change": change.as_str(), "node": extra, "network": net, "error": "not propagated in 30 s"}));
            continue;
        };
        last_annotation.insert(net.to_owned(), Instant::now());
        let ms: Vec<f64> = times.iter().map(|(_, t)| *t).collect();
        let first = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let all = ms.iter().copied().fold(0.0, f64::max);
        let is_validator = |n: &str| model.get(n).is_some_and(|r| r.kind == NodeKind::Validator);
        let all_validators = times
            .iter()
            .filter(|(n, _)| is_validator(n))
            .map(|(_, t)| *t)
            .fold(0.0, f64::max);
        // The rollout itself (kwok pods, 1 s delete delay): until all settled again.
        let affected_names: Vec<String> = affected.iter().map(|(n, _)| n.clone()).collect();
        let settle = wait_for(Duration::from_secs(120), "rollout settled", || {
            let g = seen.lock().expect("lock");
            let ok = affected_names
                .iter()
                .all(|n| g.latest.get(n).is_some_and(settled));
            async move { ok.then_some(()) }
        })
        .await
        .map(|()| t0.elapsed().as_secs_f64())
        .ok();
        match change {
            Change::Create => {
                // The operator's StatefulSet for the new validator, once the injector knows it.
                let r = &model[&extra];
                sts_api
                    .create(
                        &PostParams::default(),
                        &operator_statefulset(&r.name, r.kind.as_str(), &r.network),
                    )
                    .await
                    .map_err(|e| format!("create StatefulSet: {e}"))?;
            }
            Change::Delete => {
                let _ = sts_api.delete(&extra, &DeleteParams::background()).await;
            }
            _ => {}
        }
        println!(
            "change {k:>2} {:<7} {extra:<14} affected {:>2}: API call {api_ms:>5.1} ms; annotated: first {first:>6.1} ms, all validators {all_validators:>6.1} ms, all {all:>6.1} ms; rollout settled {}",
            change.as_str(),
            affected.len(),
            settle.map_or("-".into(), |s| format!("{s:.1} s")),
        );
        firsts.push(first);
        alls.push(all);
        all_vals.push(all_validators);
        each.extend(ms.iter().copied());
        if let Some(s) = settle {
            settles.push(s * 1e3);
        }
        per_change.push(json!({
            "change": change.as_str(), "node": extra, "network": net,
            "affected_statefulsets": affected.len(),
            "api_call_ms": round(api_ms, 1),
            "first_ms": round(first, 1), "all_validators_ms": round(all_validators, 1), "all_ms": round(all, 1),
            "each_ms": times.iter().map(|(n, t)| json!({"statefulset": n, "ms": round(*t, 1)})).collect::<Vec<_>>(),
            "rollout_settled_s": settle.map(|s| round(s, 2)),
        }));
    }
    let all_sorted = {
        let mut s = alls.clone();
        s.sort_by(f64::total_cmp);
        s
    };
    let p99 = percentile(&all_sorted, 0.99);
    Ok(json!({
        "changes": changes,
        "failed_changes": failures,
        "time_to_all_affected_ms": dist_ms(&alls),
        "time_to_all_affected_validators_ms": dist_ms(&all_vals),
        "time_to_first_affected_ms": dist_ms(&firsts),
        "time_per_statefulset_ms": dist_ms(&each),
        "rollout_settled_ms": dist_ms(&settles),
        "per_change": per_change,
        "targets": {
            "p99_target_ms": 1000,
            "p99_all_affected_ms": round(p99, 1),
            "p99_met": failures == 0 && p99 < 1000.0,
        },
    }))
}

fn main() {
    if !bench_mode() {
        eprintln!("cluster: skipped (needs the test bed; run `cargo bench --bench cluster`)");
        return;
    }
    let machine = machine_info();
    let busy = BusyMeter::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bed = match Bed::up() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cluster: cannot bring the bed up: {e}");
            std::process::exit(1);
        }
    };
    let out = rt.block_on(async {
        let client = bed.client().await?;
        install_crd(&client).await?;
        let memory = if std::env::var_os("BENCH_SKIP_MEMORY").is_some() {
            Value::Null
        } else {
            memory_bench(&bed, &client).await?
        };
        let propagation = if std::env::var_os("BENCH_SKIP_PROPAGATION").is_some() {
            Value::Null
        } else {
            propagation_bench(&bed, &client).await?
        };
        Ok::<_, String>((memory, propagation))
    });
    let busy = busy.stop();
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(bed);
    let (memory, propagation) = match out {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cluster: failed: {e}");
            std::process::exit(1);
        }
    };
    println!("machine during the run: {busy}");
    write_section(
        "cluster",
        json!({
            "command": "cargo bench --bench cluster",
            "git": git_revision(),
            "time": now_utc(),
            "machine": machine,
            "machine_load_during_run": busy,
            "note": "machine_load_during_run counts the bed (etcd, kube-apiserver, controllers, kwok) and the injector as other processes",
            "memory": memory,
            "propagation": propagation,
        }),
    );
}
