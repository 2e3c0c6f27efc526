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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;
use stellar_peer_injector::nodes::{NodeKind, NodeRecord};
use stellar_peer_injector::peers::{Lookup, PeerSettings, PeerSnapshot};
use stellar_peer_injector::rollout::observe;
use testkit::{
    Bed, Injector, Serve, TestNs, delete_webhook, install_crd, register_webhook, review_for,
    stellar_node, template_hash, wait_for_every,
};

use common::*;

/// How often the bench polls what its watch has seen (its latencies come from the watch's
/// own timestamps, not from the polling).
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------- the bed and the injector

/// The bed the bench runs on: a private copy of tests/testbed under target/bench-bed
/// (its own state dir and ports), or with `BENCH_BED=shared` the repository's; up.
fn bench_bed() -> Result<Bed, String> {
    let mut bed = if std::env::var("BENCH_BED").is_ok_and(|v| v == "shared") {
        Bed::shared()
    } else {
        // A private copy of the bed: same script and pins, its own state and ports.
        let root = repo_root().join("target/bench-bed");
        std::fs::create_dir_all(root.join("tests")).map_err(|e| e.to_string())?;
        let st = std::process::Command::new("cp")
            .args(["-a", "--"])
            .arg(repo_root().join("tests/testbed"))
            .arg(root.join("tests/"))
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("cannot copy tests/testbed".into());
        }
        Bed::new(&root, root.join("target/testbed"))
    }
    .with_timeout(120);
    eprintln!(
        "cluster: bringing the bed up unless it is ({})",
        bed.script.display()
    );
    bed.up()?;
    Ok(bed)
}

/// `serve` on `bed` for namespace `ns`, logging to target/bench-logs/injector-<tag>-<port>.log.
fn spawn_injector(bed: &Bed, ns: &str, extra: &[&str], tag: &str) -> Result<Injector, String> {
    Serve::new(ns, &bed.kubeconfig)
        .args(extra)
        .log(&repo_root().join("target/bench-logs"), tag)
        .spawn()
}

fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 1)
}

// ---------------------------------------------------------------- memory and start-up

/// A StellarNode as the operator's users write it, labelled with its network, with an
/// optional `stellar.org/peer-address`.
fn stellar_node_json(
    name: &str,
    kind: &str,
    network: &str,
    suspended: bool,
    addr: Option<&str>,
) -> Value {
    let mut v = stellar_node(name, kind, network, suspended);
    v["metadata"]["labels"] = json!({"stellar-network": network});
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
    Bytes::from(review_for(ns, FIXTURE_NODE))
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
    let namespace = TestNs::with_client(client.clone(), "bench-mem").await?;
    let ns = namespace.name.clone();
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
        let inj = spawn_injector(bed, &ns, args, &format!("mem-{mode}-{i}"))?;
        // Time from spawn to the first `/readyz` 200, polled every 5 ms.
        let ready = inj
            .wait_ready(Duration::from_secs(60), Duration::from_millis(5))
            .await?;
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
        drop(inj);
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
    drop(namespace);
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

/// The StatefulSet the operator makes for a StellarNode (one replica).
fn operator_statefulset(name: &str, kind: &str, network: &str) -> StatefulSet {
    serde_json::from_value(testkit::operator_statefulset(name, kind, network, 1))
        .expect("statefulset")
}

/// What the bench's StatefulSet watch has seen.
#[derive(Default)]
struct Seen {
    /// Per StatefulSet: every change of the template hash, with when it was seen.
    transitions: HashMap<String, Vec<(Instant, Option<String>)>>,
    latest: HashMap<String, StatefulSet>,
}

/// The rollout loop's own rule (`rollout::observe`): the controller has finished with it.
fn settled(s: &StatefulSet) -> bool {
    observe::sts_state(s).is_some_and(|w| w.settled)
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
    let namespace = TestNs::with_client(client.clone(), "bench-prop").await?;
    let ns = namespace.name.clone();
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
    let inj = spawn_injector(
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
    inj.wait_ready(Duration::from_secs(60), Duration::from_millis(5))
        .await?;
    let hook = register_webhook(client, &ns, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
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
    delete_webhook(client, &hook).await;
    drop(inj);
    drop(namespace);
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
    wait_for_every(
        POLL,
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
        wait_for_every(
            POLL,
            Duration::from_secs(180),
            &format!("{net} quiet"),
            || {
                let g = seen.lock().expect("lock");
                let ok = members.iter().all(|n| g.latest.get(n).is_some_and(settled))
                    && last.is_none_or(|t| t.elapsed() > Duration::from_millis(5500));
                async move { ok.then_some(()) }
            },
        )
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
        let found = wait_for_every(POLL, Duration::from_secs(30), "annotations", || {
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
        let settle = wait_for_every(POLL, Duration::from_secs(120), "rollout settled", || {
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
    testkit::use_injector(env!("CARGO_BIN_EXE_stellar-peer-injector"));
    let bed = match bench_bed() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cluster: cannot bring the bed up: {e}");
            std::process::exit(1);
        }
    };
    let out = rt.block_on(async {
        let client = bed.client().await?;
        install_crd(&client, "stellar-peer-injector-bench").await?;
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
    if bed.down_if_started("BENCH_KEEP_BED") {
        eprintln!("cluster: stopped the bed");
    }
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
