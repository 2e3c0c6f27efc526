//! `stellar-peer-injector serve` as a local process, and the certificates it serves.
//!
//! Cargo gives the binary's path (`CARGO_BIN_EXE_stellar-peer-injector`) only to the
//! main crate's tests and benches, so they hand it to the kit first: [`use_injector`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bed::{repo_root, state_dir};
use crate::http::{http_get, split_response};
use crate::ns::next_seq;

static BIN: OnceLock<PathBuf> = OnceLock::new();

/// Tells the kit where the injector binary is:
/// `testkit::use_injector(env!("CARGO_BIN_EXE_stellar-peer-injector"))`. The first call wins.
pub fn use_injector(path: impl Into<PathBuf>) {
    let _ = BIN.set(path.into());
}

/// The injector binary given to [`use_injector`].
pub fn injector_bin() -> Result<&'static Path, String> {
    BIN.get().map(PathBuf::as_path).ok_or_else(|| {
        "the test kit does not know the injector binary: call \
         testkit::use_injector(env!(\"CARGO_BIN_EXE_stellar-peer-injector\")) first"
            .to_owned()
    })
}

/// A free TCP port on 127.0.0.1 (0 when none could be found).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Writes a development CA and certificate for 127.0.0.1 into a fresh directory under
/// target/test-certs, with the binary's own `certs` command.
pub fn make_certs(tag: &str) -> Result<PathBuf, String> {
    let dir = repo_root()
        .join("target/test-certs")
        .join(format!("{tag}-{}", next_seq()));
    let out = Command::new(injector_bin()?)
        .args(["certs", "--out"])
        .arg(&dir)
        .args(["--ip", "127.0.0.1", "--host", "localhost"])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = || String::from_utf8_lossy(&out.stderr).into_owned();
    out.status
        .success()
        .then_some(dir)
        .ok_or_else(|| format!("certs failed: {}", stderr()))
}

/// How to start `stellar-peer-injector serve`: on free loopback ports, with fresh
/// certificates, the given kubeconfig and namespaces, no shutdown delay, and the
/// arguments added. [`Injector::start`] is the integration tests' way.
pub struct Serve {
    namespaces: String,
    kubeconfig: PathBuf,
    args: Vec<String>,
    rust_log: String,
    log_dir: PathBuf,
    tag: String,
    certs: Option<PathBuf>,
}

impl Serve {
    pub fn new(namespaces: &str, kubeconfig: &Path) -> Self {
        Self {
            namespaces: namespaces.to_owned(),
            kubeconfig: kubeconfig.to_path_buf(),
            args: Vec::new(),
            rust_log: "info".to_owned(),
            log_dir: state_dir().join("logs"),
            tag: namespaces.to_owned(),
            certs: None,
        }
    }

    /// More arguments for `serve`.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `RUST_LOG` (default `info`).
    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_owned();
        self
    }

    /// Where the log goes: `<dir>/injector-<tag>-<port>.log` (default: the shared bed's
    /// logs dir, tagged with the namespaces).
    pub fn log(mut self, dir: &Path, tag: &str) -> Self {
        self.log_dir = dir.to_path_buf();
        self.tag = tag.to_owned();
        self
    }

    /// Serve `<dir>/tls.crt` and `<dir>/tls.key` (its `ca.crt` is [`Injector::ca_pem`])
    /// instead of fresh certificates from [`make_certs`].
    pub fn certs(mut self, dir: &Path) -> Self {
        self.certs = Some(dir.to_path_buf());
        self
    }

    /// `--dns-server` of the bed the kubeconfig belongs to (its CoreDNS, on loopback),
    /// unless the arguments name one: the peer-resolution checks then never ask the
    /// machine's own resolver, which is not on loopback.
    fn dns_default(&self) -> Vec<String> {
        if self
            .args
            .iter()
            .any(|a| a.starts_with("--dns-server") || a.starts_with("--resolve-check-interval"))
        {
            return Vec::new();
        }
        let state = self.kubeconfig.parent().unwrap_or(Path::new("."));
        match crate::bed::Bed::new(&crate::bed::repo_root(), state.to_path_buf()).port("DNS_PORT") {
            Ok(port) => vec!["--dns-server".to_owned(), format!("127.0.0.1:{port}")],
            // Not a bed's kubeconfig: no DNS server on loopback to name, so no checks.
            Err(_) => vec!["--resolve-check-interval".to_owned(), "0s".to_owned()],
        }
    }

    /// Starts the process (it is killed when the [`Injector`] is dropped).
    pub fn spawn(self) -> Result<Injector, String> {
        let certs = match &self.certs {
            Some(dir) => dir.clone(),
            None => make_certs(&format!("injector-{}", self.tag))?,
        };
        let port = free_port();
        let admin_port = free_port();
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| format!("{}: {e}", self.log_dir.display()))?;
        let log = self
            .log_dir
            .join(format!("injector-{}-{port}.log", self.tag));
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(injector_bin()?)
            .arg("serve")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin_port}"),
            ])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespaces", &self.namespaces])
            .args(self.dns_default())
            .args(&self.args)
            // Tests that study shutdown pass --shutdown-delay; the others stop at once.
            .env("STELLAR_PEER_INJECTOR_SHUTDOWN_DELAY", "0s")
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawn injector: {e}"))?;
        Ok(Injector {
            child: Mutex::new(child),
            port,
            admin_port,
            certs,
            log,
            started,
        })
    }
}

/// A `stellar-peer-injector serve` process, killed when dropped.
pub struct Injector {
    child: Mutex<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub certs: PathBuf,
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Injector {
    /// Starts the injector watching `namespaces` with `kubeconfig` (certificates reloaded
    /// every 500 ms, its Lease in the first namespace, debug logs); `wait_ready` waits for
    /// /readyz.
    pub async fn start(
        namespaces: &str,
        kubeconfig: &Path,
        extra: &[&str],
        wait_ready: bool,
    ) -> Result<Self, String> {
        let lease_ns = namespaces.split(',').next().unwrap_or("default");
        // The ports are found free and then released before the injector binds them, so
        // on a busy machine another process can take one first: start again on new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let inj = Serve::new(namespaces, kubeconfig)
                .args([
                    "--tls-reload-interval",
                    "500ms",
                    "--lease-namespace",
                    lease_ns,
                ])
                .args(extra)
                .rust_log("info,stellar_peer_injector=debug")
                .spawn()?;
            if !wait_ready {
                return Ok(inj);
            }
            match inj
                .wait_ready(Duration::from_secs(30), Duration::from_millis(200))
                .await
            {
                Ok(_) => return Ok(inj),
                Err(e) => {
                    let log = inj.log_text();
                    let taken = log.to_ascii_lowercase().contains("address already in use");
                    if !(taken && attempt < 3) {
                        return Err(format!("{e}\ninjector log:\n{log}"));
                    }
                }
            }
        }
    }

    /// Polls `/readyz` every `every` until it answers 200; the time since spawn. Fails
    /// when the process exits or after `timeout` (counted from spawn).
    pub async fn wait_ready(&self, timeout: Duration, every: Duration) -> Result<Duration, String> {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        let deadline = self.started + timeout;
        loop {
            if let Ok((200, _)) = http_get(&url).await {
                return Ok(self.started.elapsed());
            }
            if let Ok(mut c) = self.child.lock()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(format!("injector exited before it was ready: {st}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for injector /readyz"
                ));
            }
            tokio::time::sleep(every).await;
        }
    }

    pub fn ca_pem(&self) -> Result<String, String> {
        std::fs::read_to_string(self.certs.join("ca.crt")).map_err(|e| e.to_string())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut c) = self.child.lock()
                && let Ok(Some(st)) = c.try_wait()
            {
                return st.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The injector's /metrics text (empty when it does not answer).
    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The value of an unlabelled metric, e.g. `stellar_peer_injector_cache_nodes`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// `(VmHWM, VmRSS)` of the process in KiB (0 when unknown).
    pub fn memory_kib(&self) -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let get = |k: &str| {
            s.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (get("VmHWM:"), get("VmRSS:"))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TLS connection to an injector's admission port, trusting its CA (no SNI, as for an IP URL).
pub async fn connect_tls(
    inj: &Injector,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let ca = std::fs::read(inj.certs.join("ca.crt")).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", inj.port))
        .await
        .map_err(|e| e.to_string())?;
    let sn = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(sn, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Sends an AdmissionReview straight to an injector over TLS (trusting its CA) and
/// returns the HTTP status and the JSON body (Null when the body is not JSON).
pub async fn admission_request(inj: &Injector, body: &[u8]) -> Result<(u16, Value), String> {
    let mut s = connect_tls(inj).await?;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (code, body) = split_response(&buf)?;
    let body = body.trim().to_owned();
    Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}
