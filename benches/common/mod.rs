//! Shared by the bench binaries: the fixture, synthetic StellarNodes, certificates,
//! the HTTPS load client, CPU accounting and the results file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use stellar_peer_injector::nodes::{NodeKind, NodeRecord};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The realistic validator pod AdmissionReview (pod `stellar/validator-1`, testnet).
pub const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/validator-pod-review.json");

/// The fixture's pod belongs to this StellarNode.
pub const FIXTURE_NAMESPACE: &str = "stellar";
pub const FIXTURE_NODE: &str = "validator-1";
pub const FIXTURE_NETWORK: &str = "testnet";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Networks the synthetic StellarNodes are spread over.
pub const NETWORKS: [&str; 4] = ["testnet", "mainnet", "futurenet", "private-1"];

/// One synthetic StellarNode, `i` from 0. Deterministic: the same `i` gives the same node.
///
/// Mix: 70 % validators, 20 % Horizon, 10 % Soroban RPC; networks round-robin over
/// [`NETWORKS`]; 8 namespaces; every 20th validator suspended; every 20th (another
/// residue) has a `stellar.org/peer-address` override.
pub fn synthetic_node(i: usize) -> (String, String, NodeKind, String, bool, Option<String>) {
    let network = NETWORKS[i % NETWORKS.len()].to_owned();
    let kind = match i % 10 {
        0..=6 => NodeKind::Validator,
        7 | 8 => NodeKind::Horizon,
        _ => NodeKind::SorobanRpc,
    };
    let namespace = if i.is_multiple_of(8) {
        "stellar".to_owned()
    } else {
        format!("stellar-{}", i % 8)
    };
    let name = format!("node-{i:05}");
    let suspended = kind == NodeKind::Validator && i % 20 == 13;
    let peer_address = (i % 20 == 5).then(|| format!("{name}.peers.example.org:11625"));
    (namespace, name, kind, network, suspended, peer_address)
}

/// `n` StellarNode records: the fixture's own validator plus `n - 1` synthetic ones.
pub fn records(n: usize) -> Vec<NodeRecord> {
    let mut out = vec![NodeRecord::new(
        FIXTURE_NAMESPACE,
        FIXTURE_NODE,
        NodeKind::Validator,
        FIXTURE_NETWORK,
    )];
    out.extend((0..n.saturating_sub(1)).map(|i| {
        let (namespace, name, kind, network, suspended, peer_address) = synthetic_node(i);
        let mut r = NodeRecord::new(&namespace, &name, kind, &network);
        r.suspended = suspended;
        r.peer_address = peer_address;
        r
    }));
    out
}

/// A development CA and serving certificate for 127.0.0.1/localhost in a fresh directory.
pub fn make_certs(tag: &str) -> PathBuf {
    let dir = repo_root()
        .join("target/bench-certs")
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    stellar_peer_injector::cmd::certs::generate(
        &dir,
        &["localhost".into()],
        &["127.0.0.1".parse().expect("ip")],
    )
    .expect("generate certificates");
    dir
}

/// A rustls client trusting only `ca.crt` of `certs`, HTTP/1.1 by ALPN.
pub fn tls_connector(certs: &Path) -> TlsConnector {
    let pem = std::fs::read(certs.join("ca.crt")).expect("read ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// One HTTPS keep-alive connection (HTTP/1.1, one request at a time).
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr, tls: &TlsConnector) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::from(addr.ip());
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// POSTs `body` to `/mutate`; returns the status and the whole response body.
    pub async fn post(&mut self, body: &Bytes) -> Result<(u16, Bytes), String> {
        let req = http::Request::post("/mutate")
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// Checks that an answer to the fixture is an allowed AdmissionReview with a JSON patch
/// that injects `STELLAR_PEERS`; returns the decoded patch.
pub fn verify_injected(status: u16, body: &[u8]) -> Result<Value, String> {
    use base64::Engine;
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("response JSON: {e}"))?;
    let r = &v["response"];
    if r["allowed"] != json!(true) || r["patchType"] != json!("JSONPatch") {
        return Err(format!("not an allowed JSONPatch answer: {v}"));
    }
    let b64 = r["patch"].as_str().ok_or("no patch in the answer")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("patch base64: {e}"))?;
    let patch: Value = serde_json::from_slice(&raw).map_err(|e| format!("patch JSON: {e}"))?;
    let text = patch.to_string();
    if !text.contains("STELLAR_PEERS") || !text.contains("stellar.org~1peers-hash") {
        return Err(format!("patch does not inject peers: {text}"));
    }
    Ok(patch)
}

/// Records the Linux thread ids of a tokio runtime's threads, to account their CPU time.
#[derive(Clone, Default)]
pub struct ThreadSet(Arc<Mutex<Vec<u32>>>);

impl ThreadSet {
    /// Call from `on_thread_start`.
    pub fn register_current(&self) {
        if let Ok(p) = std::fs::read_link("/proc/thread-self")
            && let Some(tid) = p
                .file_name()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
        {
            self.0.lock().expect("lock").push(tid);
        }
    }

    /// CPU time the threads have used so far (schedstat: nanoseconds on CPU).
    pub fn cpu(&self) -> Duration {
        let tids = self.0.lock().expect("lock").clone();
        let mut ns = 0u64;
        for tid in tids {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Duration::from_nanos(ns)
    }
}

/// Sets the calling thread's timer slack (default 50 us) so `thread::sleep` wakes
/// close to its deadline. Best effort: returns false if /proc refuses.
pub fn tighten_timer_slack(ns: u64) -> bool {
    let Some(tid) = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().and_then(|s| s.to_str()).map(str::to_owned))
    else {
        return false;
    };
    std::fs::write(format!("/proc/{tid}/timerslack_ns"), ns.to_string()).is_ok()
}

/// Whole-machine CPU use (all cores), from /proc/stat, in clock ticks:
/// `(busy, total, steal)`; steal is time the hypervisor gave to other guests.
fn machine_ticks() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let steal = v.get(7).copied().unwrap_or(0);
    (total - idle - steal, total, steal)
}

/// CPU ticks this process has used (utime + stime, children excluded).
fn own_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let g = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // Fields after the comm: state is 0, utime is 11, stime 12.
    g(11) + g(12)
}

/// How busy the machine was apart from this process, between `start` and `stop`.
pub struct BusyMeter {
    machine: (u64, u64, u64),
    own: u64,
    at: Instant,
}

impl BusyMeter {
    pub fn start() -> Self {
        Self {
            machine: machine_ticks(),
            own: own_ticks(),
            at: Instant::now(),
        }
    }

    /// `{elapsed_s, machine_busy_cores, this_process_cores, other_processes_cores, steal_cores}`.
    pub fn stop(&self) -> Value {
        let hz = 100.0; // USER_HZ on Linux
        let (busy, _, steal) = machine_ticks();
        let own = own_ticks();
        let secs = self.at.elapsed().as_secs_f64();
        let machine = (busy - self.machine.0) as f64 / hz / secs;
        let mine = (own - self.own) as f64 / hz / secs;
        json!({
            "elapsed_s": round(secs, 1),
            "machine_busy_cores": round(machine, 2),
            "this_process_cores": round(mine, 2),
            "other_processes_cores": round((machine - mine).max(0.0), 2),
            "steal_cores": round((steal - self.machine.2) as f64 / hz / secs, 2),
        })
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Facts about the machine for the results file.
pub fn machine_info() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cores": cores,
        "cpu_model": model,
        "memory_gib": round(mem_kib as f64 / 1024.0 / 1024.0, 1),
        "kernel": kernel.trim(),
        "loadavg_at_start": loadavg(),
    })
}

/// The 1, 5 and 15 minute load averages of `/proc/loadavg`, as text.
pub fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds since the Unix epoch and the same time as UTC text.
pub fn now_utc() -> Value {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({ "unix": secs, "utc": text })
}

/// The git commit the benchmarks ran on (with `-dirty` when the tree has changes).
pub fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(repo_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty { format!("{rev}-dirty") } else { rev }
}

/// Where the results live.
pub fn results_path() -> PathBuf {
    std::env::var_os("BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("benches/results/latest.json"))
}

/// Replaces one top-level section of the results file, keeping the others.
pub fn write_section(section: &str, value: Value) {
    let path = results_path();
    let mut all: Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}));
    if !all.is_object() {
        all = json!({});
    }
    all[section] = value;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("results dir");
    }
    let text = serde_json::to_string_pretty(&all).expect("results JSON") + "\n";
    std::fs::write(&path, text).expect("write results");
    eprintln!("results: section {section:?} written to {}", path.display());
}

/// True when cargo runs the binary as a benchmark (`cargo bench`), false under
/// `cargo test --all-targets`, which runs bench targets without `--bench`.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Reads a number from the environment, with a default.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads a comma-separated list of numbers from the environment, with a default.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}
