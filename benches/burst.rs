//! Admission as the API server sees it: Stellar pods created in bursts through the bed's
//! real kube-apiserver, with the injector as a `serve` process behind a
//! MutatingWebhookConfiguration (`failurePolicy: Fail`).
//!
//! Each round makes two bursts of `BENCH_BURST_REPLICAS` (300) operator-shaped validator
//! pods, and waits until every pod exists (kwok plays the kubelet): it scales one
//! StatefulSet (`podManagementPolicy: Parallel`) from 0, so that the StatefulSet
//! controller creates them at its client's rate, then creates as many pods itself,
//! `BENCH_BURST_IN_FLIGHT` (32) at a time. Per burst it reports:
//! - the API server's own `apiserver_admission_webhook_admission_duration_seconds`
//!   histogram for our webhook (the difference over the round; p50/p99 interpolated
//!   within its buckets as Prometheus' `histogram_quantile` does), and its
//!   `apiserver_request_duration_seconds` for pod CREATE (what the StatefulSet controller
//!   waits for);
//! - every refused pod (webhook rejections by the API server's count, `FailedCreate`
//!   Events of the StatefulSet) and every uninjected pod (no `stellar.org/peers-hash`
//!   equal to the one the pure code computes, or no `STELLAR_PEERS`): both must be 0;
//! - the injector's own admission-duration histogram over the burst (body in to answer
//!   out, so the rest of the API server's figure is TLS, HTTP and waiting for a CPU);
//! - the injector's CPU over the burst (utime + stime of the process), per pod, also
//!   less its background rate measured over the 5 s before the burst;
//! - the API server's connections to the injector (sampled every 20 ms from
//!   /proc/net/tcp: the most at once, and how many distinct ones were seen).
//!
//! `cargo bench --bench burst` (about 4 minutes) writes the `burst` section of
//! `benches/results/latest.json` (`BENCH_RESULTS=path` to write elsewhere). Under
//! `cargo test --all-targets` it does nothing.
//!
//! It brings up a private bed (a copy of tests/testbed under target/burst-bed, its own
//! state and ports), never with the machine's real node, and stops it at the end.
//! Environment (all optional):
//! - `BENCH_BURST_REPLICAS` (300), `BENCH_BURST_ROUNDS` (3), `BENCH_BURST_NODES` (1001:
//!   the fixture's validator plus synthetic StellarNodes, as in the admission bench),
//!   `BENCH_BURST_IN_FLIGHT` (32)
//! - `BENCH_KEEP_BED=1`: leave the bed running at the end

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;
use stellar_peer_injector::nodes::NodeRecord;
use stellar_peer_injector::peers::{Lookup, PeerSettings, PeerSnapshot};
use testkit::{
    Bed, Serve, TestNs, annotation, delete_webhook, env_get, install_crd, register_webhook,
    stellar_node,
};

use common::*;

/// The webhook's name in the MutatingWebhookConfiguration (`testkit::register_webhook`),
/// which is the `name` label of the API server's webhook metrics.
const WEBHOOK: &str = "peers.stellar.org";

/// The private bed: a copy of tests/testbed under target/burst-bed, without the real node.
fn burst_bed() -> Result<Bed, String> {
    let root = repo_root().join("target/burst-bed");
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
    let mut bed = Bed::new(&root, root.join("target/testbed"))
        .without_real_node()
        .with_timeout(120);
    eprintln!("burst: bringing the bed up ({})", bed.script.display());
    bed.up()?;
    Ok(bed)
}

/// A StellarNode of the bench's namespace, labelled with its network, with an optional
/// `stellar.org/peer-address`.
fn node_json(rec: &NodeRecord) -> Value {
    let mut v = stellar_node(&rec.name, rec.kind.as_str(), &rec.network, rec.suspended);
    v["metadata"]["labels"] = json!({"stellar-network": rec.network});
    if let Some(a) = &rec.peer_address {
        v["metadata"]["annotations"] = json!({ "stellar.org/peer-address": a });
    }
    v
}

/// The fixture's validator and `n - 1` synthetic StellarNodes, all in `ns`.
fn model(ns: &str, n: usize) -> Vec<NodeRecord> {
    records(n)
        .into_iter()
        .map(|mut r| {
            r.namespace = ns.to_owned();
            r
        })
        .collect()
}

async fn create_nodes(client: &Client, ns: &str, recs: &[NodeRecord]) -> Result<(), String> {
    let api: Api<StellarNode> = Api::namespaced(client.clone(), ns);
    for chunk in recs.chunks(32) {
        let mut calls = Vec::with_capacity(chunk.len());
        for r in chunk {
            let node: StellarNode =
                serde_json::from_value(node_json(r)).map_err(|e| e.to_string())?;
            let api = api.clone();
            calls.push(async move { api.create(&PostParams::default(), &node).await });
        }
        for r in futures::future::join_all(calls).await {
            r.map_err(|e| format!("create StellarNode: {e}"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- Prometheus text

/// The cumulative buckets (`le` → count) of histogram `family` summed over every series
/// whose labels contain all of `want`, plus its `_count` and `_sum` likewise.
#[derive(Clone, Debug, Default, PartialEq)]
struct Hist {
    buckets: BTreeMap<u64, f64>, // le in nanoseconds (+Inf as u64::MAX)
    count: f64,
    sum: f64,
}

/// The value of label `key` in a series' label text (`a="x",b="y"`).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

fn hist(text: &str, family: &str, want: &[(&str, &str)]) -> Hist {
    let mut h = Hist::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        // `family_suffix{labels} value`, or `family_suffix value` for an unlabelled one.
        let (suffix, labels, value) = match rest.split_once('{') {
            Some((suffix, rest)) => match rest.rsplit_once('}') {
                Some((labels, value)) => (suffix, labels, value),
                None => continue,
            },
            None => match rest.split_once(' ') {
                Some((suffix, value)) => (suffix, "", value),
                None => continue,
            },
        };
        if !want.iter().all(|(k, v)| label(labels, k) == Some(v)) {
            continue;
        }
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        match suffix {
            "_bucket" => {
                let le = match label(labels, "le") {
                    Some("+Inf") => u64::MAX,
                    Some(s) => match s.parse::<f64>() {
                        Ok(x) => (x * 1e9).round() as u64,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                *h.buckets.entry(le).or_default() += value;
            }
            "_count" => h.count += value,
            "_sum" => h.sum += value,
            _ => {}
        }
    }
    h
}

impl Hist {
    /// `self - before` (the observations made in between).
    fn since(&self, before: &Hist) -> Hist {
        Hist {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c - before.buckets.get(le).copied().unwrap_or(0.0)))
                .collect(),
            count: self.count - before.count,
            sum: self.sum - before.sum,
        }
    }

    /// Quantile `q` in seconds, linear within the bucket that holds it (Prometheus'
    /// `histogram_quantile`); the highest finite bound when it falls in +Inf.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = *self.buckets.get(&u64::MAX)?;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lo, mut below) = (0.0, 0.0);
        for (&le, &c) in &self.buckets {
            if c >= rank {
                if le == u64::MAX {
                    return Some(lo);
                }
                let hi = le as f64 / 1e9;
                let inside = c - below;
                return Some(if inside > 0.0 {
                    lo + (hi - lo) * (rank - below) / inside
                } else {
                    hi
                });
            }
            lo = le as f64 / 1e9;
            below = c;
        }
        None
    }

    fn summary(&self) -> Value {
        let ms = |x: Option<f64>| x.map(|s| round(s * 1e3, 2));
        json!({
            "count": self.count,
            "mean_ms": (self.count > 0.0).then(|| round(self.sum / self.count * 1e3, 2)),
            "p50_ms": ms(self.quantile(0.5)),
            "p99_ms": ms(self.quantile(0.99)),
            "buckets": self.buckets.iter().map(|(le, c)| {
                let le = if *le == u64::MAX { "+Inf".to_owned() } else { format!("{}", *le as f64 / 1e9) };
                json!([le, c])
            }).collect::<Vec<_>>(),
        })
    }
}

/// The sum of counter `family` over the series whose labels contain all of `want`.
fn counter(text: &str, family: &str, want: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once('}')?;
            want.iter()
                .all(|(k, v)| label(labels, k) == Some(v))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

async fn apiserver_metrics(client: &Client) -> Result<String, String> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(req)
        .await
        .map_err(|e| format!("GET /metrics: {e}"))
}

/// CPU time of process `pid` in seconds: the sum of its threads' on-CPU time
/// (schedstat, nanoseconds; the process's threads live as long as it does), or
/// utime + stime (10 ms ticks) when schedstat cannot be read.
fn process_cpu(pid: u32) -> f64 {
    let mut ns = 0u64;
    let mut read = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Some(x) = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                ns += x;
                read = true;
            }
        }
    }
    if read {
        return ns as f64 / 1e9;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let g = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (g(11) + g(12)) as f64 / 100.0
}

/// The remote ports of the TCP connections to 127.0.0.1:`port` established now
/// (/proc/net/tcp: the injector listens on IPv4 loopback).
fn connections_to(port: u16) -> Vec<u16> {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address rem_address st; 01 = ESTABLISHED
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"01"))
                .then(|| u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok())?
        })
        .collect()
}

/// Samples the connections to `port` every 20 ms until `stop`: (most at once, distinct
/// remote ports seen: a lower bound of the connections opened).
async fn watch_connections(port: u16, stop: tokio::sync::watch::Receiver<bool>) -> (usize, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut most = 0;
    while !*stop.borrow() {
        let now = connections_to(port);
        most = most.max(now.len());
        seen.extend(now);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (most, seen.len())
}

/// The injector's own histogram of time from a complete request body to the answer.
const INJECTOR_DURATION: &str = "stellar_peer_injector_admission_duration_seconds";

// ---------------------------------------------------------------- the burst

async fn scale(api: &Api<StatefulSet>, name: &str, replicas: usize) -> Result<(), String> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("scale {name} to {replicas}: {e}"))
}

async fn pods_of(api: &Api<Pod>, instance: &str) -> Result<Vec<Pod>, String> {
    api.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}")))
        .await
        .map(|l| l.items)
        .map_err(|e| format!("list pods: {e}"))
}

/// How pods are created in a burst.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Scale the StatefulSet of the fixture's validator from 0 (the StatefulSet
    /// controller creates the pods, at its own client's rate).
    StatefulSet,
    /// The bench creates the pods itself, `in_flight` at a time (a validator StellarNode
    /// of its own, so the StatefulSet never adopts them).
    Direct { in_flight: usize },
}

impl Mode {
    fn instance(self) -> &'static str {
        match self {
            Self::StatefulSet => FIXTURE_NODE,
            Self::Direct { .. } => DIRECT_NODE,
        }
    }
}

/// The synthetic validator whose pods the direct bursts create (`synthetic_node(0)`).
const DIRECT_NODE: &str = "node-00000";

/// A pod as the operator's StatefulSet makes it, for StellarNode `instance`.
fn direct_pod(instance: &str, network: &str, name: &str) -> Result<Pod, String> {
    let sts = testkit::operator_statefulset(instance, "Validator", network, 1);
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": sts["spec"]["template"]["metadata"].clone(),
        "spec": sts["spec"]["template"]["spec"].clone()});
    pod["metadata"]["name"] = json!(name);
    serde_json::from_value(pod).map_err(|e| e.to_string())
}

/// Creates the pods of one burst and returns the creations the API server refused.
async fn create_burst(
    client: &Client,
    ns: &str,
    mode: Mode,
    replicas: usize,
    k: usize,
) -> Result<Vec<String>, String> {
    match mode {
        Mode::StatefulSet => {
            let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            scale(&sts, FIXTURE_NODE, replicas).await?;
            Ok(Vec::new())
        }
        Mode::Direct { in_flight } => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let mut refused = Vec::new();
            let names: Vec<String> = (0..replicas).map(|i| format!("burst-{k}-{i}")).collect();
            for chunk in names.chunks(in_flight.max(1)) {
                let calls = chunk.iter().map(|name| {
                    let pods = pods.clone();
                    async move {
                        let pod = direct_pod(DIRECT_NODE, NETWORKS[0], name)?;
                        pods.create(&PostParams::default(), &pod)
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("{name}: {e}"))
                    }
                });
                for r in futures::future::join_all(calls).await {
                    if let Err(e) = r {
                        refused.push(e);
                    }
                }
            }
            Ok(refused)
        }
    }
}

/// Removes the pods of a burst and waits until they are gone.
async fn remove_burst(client: &Client, ns: &str, mode: Mode) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match mode {
        Mode::StatefulSet => {
            let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            scale(&sts, FIXTURE_NODE, 0).await?;
        }
        Mode::Direct { .. } => {
            pods.delete_collection(
                &kube::api::DeleteParams::default().grace_period(0),
                &ListParams::default().labels(&format!("app.kubernetes.io/instance={DIRECT_NODE}")),
            )
            .await
            .map_err(|e| format!("delete pods: {e}"))?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pods_of(&pods, mode.instance()).await?.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{mode:?}: pods still there after 300 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// How long the injector's CPU is measured before each burst, for its background rate
/// (watches, address checks) to be told apart from admission.
const IDLE: Duration = Duration::from_secs(5);

#[expect(
    clippy::too_many_arguments,
    reason = "one bench round, all of it reported"
)]
async fn burst_round(
    client: &Client,
    ns: &str,
    inj: &testkit::Injector,
    mode: Mode,
    replicas: usize,
    want_hash: &str,
    k: usize,
    events_seen: &mut usize,
) -> Result<Value, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let failed_creates = || async {
        events
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
                    .map(|e| e.count.unwrap_or(1).max(1) as usize)
                    .sum::<usize>()
            })
            .map_err(|e| format!("list events: {e}"))
    };
    let idle0 = process_cpu(inj.pid());
    tokio::time::sleep(IDLE).await;
    let idle_cores = (process_cpu(inj.pid()) - idle0) / IDLE.as_secs_f64();
    let load = loadavg();
    let failed_before = failed_creates().await?.max(*events_seen);
    let m0 = apiserver_metrics(client).await?;
    let i0 = inj.metrics().await;
    let cpu0 = process_cpu(inj.pid());
    let busy = BusyMeter::start();
    let (stop_conns, stop_rx) = tokio::sync::watch::channel(false);
    let conns = tokio::spawn(watch_connections(inj.port, stop_rx));
    let t0 = Instant::now();
    let refused_calls = create_burst(client, ns, mode, replicas, k).await?;
    let deadline = t0 + Duration::from_secs(300);
    let mut seen = 0;
    while seen + refused_calls.len() < replicas {
        if Instant::now() > deadline {
            return Err(format!(
                "round {k} {mode:?}: only {seen} of {replicas} pods after 300 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = pods_of(&pods, mode.instance()).await?.len();
    }
    let took = t0.elapsed();
    let cpu = process_cpu(inj.pid()) - cpu0;
    let _ = stop_conns.send(true);
    let (conns_most, conns_seen) = conns.await.unwrap_or((0, 0));
    let busy = busy.stop();
    let m1 = apiserver_metrics(client).await?;
    let i1 = inj.metrics().await;
    let own = hist(&i1, INJECTOR_DURATION, &[]).since(&hist(&i0, INJECTOR_DURATION, &[]));
    let failed_now = failed_creates().await?;
    let failed = failed_now - failed_before;
    *events_seen = failed_now;
    let created = pods_of(&pods, mode.instance()).await?;
    let uninjected: Vec<String> = created
        .iter()
        .filter(|p| {
            annotation(p, "stellar.org/peers-hash").as_deref() != Some(want_hash)
                || env_get(p, "stellar-node", "STELLAR_PEERS").is_none_or(|v| v.is_empty())
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let hook = [("name", WEBHOOK), ("operation", "CREATE")];
    let family = "apiserver_admission_webhook_admission_duration_seconds";
    let webhook = hist(&m1, family, &hook).since(&hist(&m0, family, &hook));
    let rejections = "apiserver_admission_webhook_rejection_count";
    let rejected = counter(&m1, rejections, &[("name", WEBHOOK)])
        - counter(&m0, rejections, &[("name", WEBHOOK)]);
    let create = [("verb", "POST"), ("resource", "pods")];
    let family = "apiserver_request_duration_seconds";
    let pod_create = hist(&m1, family, &create).since(&hist(&m0, family, &create));
    remove_burst(client, ns, mode).await?;
    let above_idle = (cpu - idle_cores * took.as_secs_f64()).max(0.0);
    let r = json!({
        "round": k,
        "mode": format!("{mode:?}"),
        "loadavg_at_start": load,
        "pods": created.len(),
        "burst_s": round(took.as_secs_f64(), 2),
        "refused_failed_create_events": failed,
        "refused_create_calls": refused_calls.len(),
        "refused_examples": refused_calls.iter().take(3).collect::<Vec<_>>(),
        "webhook_rejections": rejected,
        "uninjected": uninjected.len(),
        "uninjected_pods": uninjected,
        "webhook_admission_duration": webhook.summary(),
        "pod_create_request_duration": pod_create.summary(),
        "injector_admission_duration": own.summary(),
        "connections_most_at_once": conns_most,
        "connections_seen": conns_seen,
        "injector_cpu_s": round(cpu, 3),
        "injector_idle_cores_before": round(idle_cores, 4),
        "injector_cpu_ms_per_pod": round(cpu * 1e3 / replicas as f64, 3),
        "injector_cpu_ms_per_pod_above_idle": round(above_idle * 1e3 / replicas as f64, 3),
        "machine": busy,
    });
    eprintln!(
        "burst: round {k} {mode:?}: {} pods in {:.1} s, webhook p50 {} ms p99 {} ms (mean {}; in the injector p50 {} p99 {}), refused {failed}+{}+{rejected}, uninjected {}, injector CPU {cpu:.3} s ({} ms/pod above idle), API server connections {conns_seen} seen, {conns_most} at once, load {load}",
        created.len(),
        took.as_secs_f64(),
        r["webhook_admission_duration"]["p50_ms"],
        r["webhook_admission_duration"]["p99_ms"],
        r["webhook_admission_duration"]["mean_ms"],
        r["injector_admission_duration"]["p50_ms"],
        r["injector_admission_duration"]["p99_ms"],
        refused_calls.len(),
        uninjected.len(),
        r["injector_cpu_ms_per_pod_above_idle"],
    );
    Ok(r)
}

async fn run(bed: &Bed, client: &Client) -> Result<Value, String> {
    let replicas = env_f64("BENCH_BURST_REPLICAS", 300.0) as usize;
    let rounds = env_f64("BENCH_BURST_ROUNDS", 3.0) as usize;
    let n = env_f64("BENCH_BURST_NODES", 1001.0) as usize;
    let namespace = TestNs::with_client(client.clone(), "bench-burst").await?;
    let ns = namespace.name.clone();
    let recs = model(&ns, n);
    let t = Instant::now();
    create_nodes(client, &ns, &recs).await?;
    eprintln!(
        "burst: {n} StellarNodes created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let snap = PeerSnapshot::build(1, recs.iter(), &PeerSettings::default());
    let hash_of = |node: &str| match snap.lookup(&ns, node) {
        Lookup::Found(l) => Ok((l.hash.clone(), l.known.len())),
        other => Err(format!("validator {node} has no list: {other:?}")),
    };
    let (sts_hash, peers) = hash_of(FIXTURE_NODE)?;
    let (direct_hash, _) = hash_of(DIRECT_NODE)?;
    let in_flight = env_f64("BENCH_BURST_IN_FLIGHT", 32.0) as usize;
    let inj = Serve::new(&ns, &bed.kubeconfig)
        .args(["--rollout", "off"])
        .log(&repo_root().join("target/bench-logs"), "burst")
        .spawn()?;
    inj.wait_ready(Duration::from_secs(60), Duration::from_millis(10))
        .await?;
    let hook = register_webhook(client, &ns, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let mut sts = testkit::operator_statefulset(FIXTURE_NODE, "Validator", FIXTURE_NETWORK, 0);
    sts["spec"]["podManagementPolicy"] = json!("Parallel");
    let sts: StatefulSet = serde_json::from_value(sts).map_err(|e| e.to_string())?;
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sts)
        .await
        .map_err(|e| format!("create StatefulSet: {e}"))?;
    // Start once the injector is done with its start-up work (it creates the governing
    // Services of ~700 validators): under 0.05 cores over a second, or after 60 s.
    let quiet_by = Instant::now() + Duration::from_secs(60);
    loop {
        let c0 = process_cpu(inj.pid());
        tokio::time::sleep(Duration::from_secs(1)).await;
        if process_cpu(inj.pid()) - c0 < 0.05 || Instant::now() > quiet_by {
            break;
        }
    }
    let mut out = Vec::new();
    let mut result = Ok(());
    let mut events_seen = 0;
    'rounds: for k in 0..rounds {
        // Interleaved: each round runs both kinds of burst.
        for (mode, hash) in [
            (Mode::StatefulSet, &sts_hash),
            (Mode::Direct { in_flight }, &direct_hash),
        ] {
            match burst_round(client, &ns, &inj, mode, replicas, hash, k, &mut events_seen).await {
                Ok(r) => out.push(r),
                Err(e) => {
                    result = Err(e);
                    break 'rounds;
                }
            }
        }
    }
    delete_webhook(client, &hook).await;
    drop(inj);
    drop(namespace);
    result?;
    let med = |mode: &str, f: &dyn Fn(&Value) -> Option<f64>| {
        let mut v: Vec<f64> = out
            .iter()
            .filter(|r| r["mode"].as_str().is_some_and(|m| m.starts_with(mode)))
            .filter_map(f)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let medians = |mode: &str| {
        json!({
            "webhook_p50_ms": med(mode, &|r| r["webhook_admission_duration"]["p50_ms"].as_f64()),
            "webhook_p99_ms": med(mode, &|r| r["webhook_admission_duration"]["p99_ms"].as_f64()),
            "webhook_mean_ms": med(mode, &|r| r["webhook_admission_duration"]["mean_ms"].as_f64()),
            "injector_p50_ms": med(mode, &|r| r["injector_admission_duration"]["p50_ms"].as_f64()),
            "injector_p99_ms": med(mode, &|r| r["injector_admission_duration"]["p99_ms"].as_f64()),
            "pod_create_p50_ms": med(mode, &|r| r["pod_create_request_duration"]["p50_ms"].as_f64()),
            "pod_create_p99_ms": med(mode, &|r| r["pod_create_request_duration"]["p99_ms"].as_f64()),
            "burst_s": med(mode, &|r| r["burst_s"].as_f64()),
            "connections_seen": med(mode, &|r| r["connections_seen"].as_f64()),
            "injector_cpu_ms_per_pod": med(mode, &|r| r["injector_cpu_ms_per_pod"].as_f64()),
            "injector_cpu_ms_per_pod_above_idle": med(mode, &|r| r["injector_cpu_ms_per_pod_above_idle"].as_f64()),
        })
    };
    Ok(json!({
        "setup": {
            "stellar_nodes": n,
            "peers_of_the_burst_pods": peers,
            "direct_in_flight": in_flight,
            "replicas": replicas,
            "rounds": rounds,
            "statefulset": "operator-shaped validator, podManagementPolicy Parallel, scaled 0 -> replicas (the controller creates them at its client's rate)",
            "direct": "the same pods created by the bench, in_flight at a time, for another validator StellarNode",
            "webhook": "namespace and objectSelector, failurePolicy Fail, timeoutSeconds 5",
            "injector": "serve --rollout off, RUST_LOG=info",
        },
        "median": {
            "statefulset": medians("StatefulSet"),
            "direct": medians("Direct"),
        },
        "refused_total": out.iter().map(|r| r["refused_failed_create_events"].as_f64().unwrap_or(0.0) + r["refused_create_calls"].as_f64().unwrap_or(0.0) + r["webhook_rejections"].as_f64().unwrap_or(0.0)).sum::<f64>(),
        "uninjected_total": out.iter().map(|r| r["uninjected"].as_f64().unwrap_or(0.0)).sum::<f64>(),
        "rounds": out,
    }))
}

fn main() {
    if !bench_mode() {
        eprintln!("burst: skipped (needs the test bed; run `cargo bench --bench burst`)");
        return;
    }
    let machine = machine_info();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    testkit::use_injector(env!("CARGO_BIN_EXE_stellar-peer-injector"));
    let bed = match burst_bed() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("burst: cannot bring the bed up: {e}");
            std::process::exit(1);
        }
    };
    let out = rt.block_on(async {
        let client = bed.client().await?;
        install_crd(&client, "stellar-peer-injector-bench").await?;
        run(&bed, &client).await
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    if bed.down_if_started("BENCH_KEEP_BED") {
        eprintln!("burst: stopped the bed");
    }
    let burst = match out {
        Ok(x) => x,
        Err(e) => {
            eprintln!("burst: failed: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&burst["median"]).unwrap_or_default()
    );
    write_section(
        "burst",
        json!({
            "command": "cargo bench --bench burst",
            "git": git_revision(),
            "time": now_utc(),
            "machine": machine,
            "note": "machine load per round counts the bed and the injector as other processes",
            "burst": burst,
        }),
    );
}
