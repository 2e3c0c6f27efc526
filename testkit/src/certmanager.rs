//! cert-manager's controller and cainjector (built by `tests/testbed/testbed build` into
//! the tool cache, see tests/testbed/cert-manager) as local processes against a bed, for
//! the chart's cert-manager mode. Not bed components: a trial starts them, scoped to one
//! namespace, and they are killed when the [`CertManager`] is dropped.
//!
//! Listeners: the controller's metrics server on a free 127.0.0.1 port
//! (`--metrics-listen-address`, default `0.0.0.0:9402`), pprof off (`--enable-profiling=false`,
//! and `--profiler-address` on 127.0.0.1 all the same); the cainjector has no metrics
//! listener in this version (its manager is built with `MetricsBindAddress: "0"`), no health
//! probe listener, and pprof off likewise. Leader election is off for both, so nothing
//! is written outside the namespace. [`CertManager::listeners`] reads what each process
//! really listens on, from /proc.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bed::Bed;
use crate::http::http_get;
use crate::injector::free_port;
use crate::wait::wait_for;

/// The CRDs in the tool cache (`<cert-manager-dir>/crds`).
pub const CRD_NAMES: [&str; 6] = [
    "certificaterequests.cert-manager.io",
    "certificates.cert-manager.io",
    "challenges.acme.cert-manager.io",
    "clusterissuers.cert-manager.io",
    "issuers.cert-manager.io",
    "orders.acme.cert-manager.io",
];

/// `tests/testbed/testbed cert-manager-dir`: bin/{controller,cainjector} and crds/.
pub fn cert_manager_dir(bed: &Bed) -> Result<PathBuf, String> {
    Ok(PathBuf::from(bed.run(&["cert-manager-dir"])?.trim()))
}

/// Applies cert-manager's CRDs to the bed (server-side, idempotent; they stay, like the
/// StellarNode CRD) and waits until they are established.
pub fn install_crds(bed: &Bed) -> Result<(), String> {
    let crds = cert_manager_dir(bed)?.join("crds");
    let dir = crds.display().to_string();
    bed.run(&[
        "kubectl",
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=stellar-peer-injector-tests",
        "-f",
        &dir,
    ])?;
    let names: Vec<String> = CRD_NAMES.iter().map(|n| format!("crd/{n}")).collect();
    let mut args = vec![
        "kubectl",
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
    ];
    args.extend(names.iter().map(String::as_str));
    bed.run(&args).map(|_| ())
}

/// One process with its log file.
struct Proc {
    child: Mutex<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(bin: &Path, args: &[String], kubeconfig: &Path, log: PathBuf) -> Result<Self, String> {
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            // The cainjector reads its kubeconfig through controller-runtime (the
            // --kubeconfig flag, or this).
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf);
        // Only the bed, on loopback: no proxy from the environment.
        for v in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        Ok(Self {
            child: Mutex::new(child),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` once it has exited.
    fn exited(&self) -> Option<String> {
        let mut c = self.child.lock().ok()?;
        c.try_wait().ok().flatten().map(|s| s.to_string())
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// cert-manager's controller and cainjector, scoped to one namespace, killed on drop.
pub struct CertManager {
    controller: Proc,
    cainjector: Proc,
    /// The controller's metrics port (127.0.0.1).
    pub metrics_port: u16,
    pub namespace: String,
}

/// A listening socket of a process: protocol and local address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub proto: &'static str,
    pub addr: SocketAddr,
}

impl CertManager {
    /// Starts both against `bed`, watching only `namespace` (the chart's release namespace,
    /// where its Issuers, Certificates and Secrets are); logs in `<state>/logs/`.
    pub fn start(bed: &Bed, namespace: &str) -> Result<Self, String> {
        let bin = cert_manager_dir(bed)?.join("bin");
        let logs = bed.state.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let kc = bed.kubeconfig.display().to_string();
        let metrics_port = free_port();
        let controller = Proc::spawn(
            &bin.join("controller"),
            &[
                format!("--kubeconfig={kc}"),
                format!("--namespace={namespace}"),
                format!("--cluster-resource-namespace={namespace}"),
                "--leader-elect=false".to_owned(),
                format!("--metrics-listen-address=127.0.0.1:{metrics_port}"),
                "--enable-profiling=false".to_owned(),
                format!("--profiler-address=127.0.0.1:{}", free_port()),
                // What the chart's Issuers and Certificates need; no ACME, Vault, Venafi
                // or ingress/gateway shims.
                "--controllers=issuers,certificaterequests-approver,\
                 certificaterequests-issuer-ca,certificaterequests-issuer-selfsigned,\
                 certificates-trigger,certificates-issuing,certificates-key-manager,\
                 certificates-request-manager,certificates-readiness,\
                 certificates-revision-manager,certificates-metrics"
                    .to_owned(),
                "--v=2".to_owned(),
            ],
            &bed.kubeconfig,
            logs.join(format!("cert-manager-controller-{namespace}.log")),
        )?;
        let cainjector = Proc::spawn(
            &bin.join("cainjector"),
            &[
                format!("--kubeconfig={kc}"),
                format!("--namespace={namespace}"),
                "--leader-elect=false".to_owned(),
                "--enable-profiling=false".to_owned(),
                format!("--profiler-address=127.0.0.1:{}", free_port()),
                "--v=2".to_owned(),
            ],
            &bed.kubeconfig,
            logs.join(format!("cert-manager-cainjector-{namespace}.log")),
        );
        let cainjector = match cainjector {
            Ok(p) => p,
            Err(e) => {
                controller.kill();
                return Err(e);
            }
        };
        Ok(Self {
            controller,
            cainjector,
            metrics_port,
            namespace: namespace.to_owned(),
        })
    }

    /// Waits for the controller's metrics endpoint (it is serving) while both processes
    /// run; fails with their logs when one exits.
    pub async fn wait_running(&self, timeout: Duration) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let url = Arc::new(url);
        let r = wait_for(timeout, "cert-manager's controller metrics", || {
            let url = url.clone();
            async move {
                if self.controller.exited().is_some() || self.cainjector.exited().is_some() {
                    return Some(false);
                }
                matches!(http_get(&url).await, Ok((200, _))).then_some(true)
            }
        })
        .await;
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("cert-manager exited\n{}", self.logs())),
            Err(e) => Err(format!("{e}\n{}", self.logs())),
        }
    }

    /// Fails with the logs when either process has exited.
    pub fn check_alive(&self) -> Result<(), String> {
        for (name, p) in [
            ("controller", &self.controller),
            ("cainjector", &self.cainjector),
        ] {
            if let Some(st) = p.exited() {
                return Err(format!(
                    "cert-manager {name} exited ({st})\n{}",
                    self.logs()
                ));
            }
        }
        Ok(())
    }

    /// The last lines of both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {}:\n{}\n--- {}:\n{}",
            self.controller.log.display(),
            self.controller.log_tail(40),
            self.cainjector.log.display(),
            self.cainjector.log_tail(40)
        )
    }

    /// The listening sockets of (controller, cainjector).
    pub fn listeners(&self) -> Result<(Vec<Listener>, Vec<Listener>), String> {
        Ok((
            listeners_of(self.controller.pid())?,
            listeners_of(self.cainjector.pid())?,
        ))
    }
}

impl Drop for CertManager {
    fn drop(&mut self) {
        self.cainjector.kill();
        self.controller.kill();
    }
}

/// The TCP sockets in LISTEN state and the bound UDP sockets that process `pid` holds,
/// from /proc/<pid>/fd and /proc/net/{tcp,tcp6,udp,udp6}.
pub fn listeners_of(pid: u32) -> Result<Vec<Listener>, String> {
    let fd_dir = format!("/proc/{pid}/fd");
    let mut inodes = BTreeSet::new();
    for e in std::fs::read_dir(&fd_dir).map_err(|e| format!("{fd_dir}: {e}"))? {
        let Ok(e) = e else { continue };
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut out = Vec::new();
    for (proto, file, v6) in [
        ("tcp", "tcp", false),
        ("tcp", "tcp6", true),
        ("udp", "udp", false),
        ("udp", "udp6", true),
    ] {
        let path = format!("/proc/{pid}/net/{file}");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let listening = if proto == "tcp" { *state == "0A" } else { true };
            if listening
                && inodes.contains(*inode)
                && let Some(addr) = parse_proc_addr(local, v6)
            {
                out.push(Listener { proto, addr });
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `0100007F:1F90` (IPv4, little-endian words) or the 32-hex-digit IPv6 form.
fn parse_proc_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 {
        if ip.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (w, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).ok()?;
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        let word = u32::from_str_radix(ip, 16).ok()?;
        IpAddr::V4(Ipv4Addr::from(word.to_le_bytes()))
    };
    Some(SocketAddr::new(ip, port))
}

/// The local ports of the peers with an established TCP connection to 127.0.0.1:`port`
/// (from /proc/net/tcp): who is connected to a local server now.
pub fn established_peers(port: u16) -> BTreeSet<u16> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state)) = (f.get(1), f.get(2), f.get(3)) else {
            continue;
        };
        if *state != "01" {
            continue;
        }
        if let (Some(l), Some(r)) = (
            parse_proc_addr(local, false),
            parse_proc_addr(remote, false),
        ) && l.port() == port
            && l.ip().is_loopback()
        {
            out.insert(r.port());
        }
    }
    out
}

/// The certificate (DER) a TLS server on 127.0.0.1:`port` presents, verified against
/// `ca_pem` for the name 127.0.0.1 (an IP SAN), as the API server verifies a webhook URL.
pub async fn served_certificate(port: u16, ca_pem: &str) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
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
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let sn = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(sn, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_owned())?
    .map_err(|e| format!("TLS handshake with 127.0.0.1:{port}: {e}"))?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "the server presented no certificate".to_owned())
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| "no certificate in the PEM text".to_owned())?
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_parse() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90", false),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000:24C2", false),
            Some("0.0.0.0:9410".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050", true),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_proc_addr("zz:1", false), None);
    }

    #[test]
    fn this_process_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listeners_of(std::process::id()).unwrap();
        assert!(
            found
                .iter()
                .any(|x| x.proto == "tcp" && x.addr == SocketAddr::from(([127, 0, 0, 1], port))),
            "{found:?}"
        );
    }
}
