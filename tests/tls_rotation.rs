//! Certificate files rotated in place under continuous load: no request fails,
//! and new connections get the new certificate within seconds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use stellar_peer_injector::inject::InjectSettings;
use stellar_peer_injector::nodes::{NodeKind, NodeRecord};
use stellar_peer_injector::obs::metrics::Metrics;
use stellar_peer_injector::peers::PeerSettings;
use stellar_peer_injector::server::{self, AdmissionState, tls::CertWatcher};
use stellar_peer_injector::watch::cache::PeerCache;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const REVIEW: &str = include_str!("fixtures/validator-pod-review.json");

fn leaf(path: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(path).expect("cert");
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .expect("one cert")
        .expect("pem")
}

fn request() -> Vec<u8> {
    let mut r = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        REVIEW.len()
    )
    .into_bytes();
    r.extend_from_slice(REVIEW.as_bytes());
    r
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response<R: tokio::io::AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let code = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_nothing() {
    let base = std::env::temp_dir().join(format!("spi-rotate-{}", std::process::id()));
    let live = base.join("live");
    let (a, b) = (base.join("a"), base.join("b"));
    let ips = ["127.0.0.1".parse().expect("ip")];
    stellar_peer_injector::cmd::certs::generate(&a, &["localhost".into()], &ips).expect("a");
    stellar_peer_injector::cmd::certs::generate(&b, &["localhost".into()], &ips).expect("b");
    std::fs::create_dir_all(&live).expect("live");
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(a.join(f), live.join(f)).expect("copy");
    }
    let metrics = Arc::new(Metrics::new());
    let certs = CertWatcher::load(&live.join("tls.crt"), &live.join("tls.key")).expect("load");
    let tls = certs.server_config().expect("config");
    tokio::spawn(certs.run(Duration::from_millis(200), metrics.clone()));
    let cache = Arc::new(PeerCache::new());
    let rec = |n: &str| NodeRecord::new("stellar", n, NodeKind::Validator, "testnet");
    cache.publish(
        &[rec("validator-1"), rec("validator-2")],
        &PeerSettings::default(),
    );
    let state = Arc::new(AdmissionState {
        body_timeout: Duration::from_secs(5),
        ..AdmissionState::new(cache, InjectSettings::default(), metrics.clone())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(
        server::TlsServer::new(listener, tls, server::admission_router(state))
            .drain(Duration::from_secs(1))
            .run(stop_rx),
    );

    // The client trusts both CAs, as the apiserver does while caBundle holds both.
    let mut roots = rustls::RootCertStore::empty();
    for dir in [&a, &b] {
        let pem = std::fs::read(dir.join("ca.crt")).expect("ca");
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(c.expect("pem")).expect("add");
        }
    }
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    // Full handshakes only: a resumed session reports the certificate of its first handshake.
    let mut cfg = Arc::unwrap_or_clone(cfg);
    cfg.resumption = rustls::client::Resumption::disabled();
    let cfg = Arc::new(cfg);
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let new_leaf = leaf(&b.join("tls.crt"));
    let saw_new_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (connector, ok, failed, stop, new_leaf, saw) = (
            connector.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
            new_leaf.clone(),
            saw_new_at.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                // Workers 0-1 keep connections alive for 50 requests; 2-3 reconnect every time.
                let per_conn = if worker < 2 { 50 } else { 1 };
                let tcp = match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(t) => t,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                };
                let Ok(stream) = connector
                    .connect(ServerName::try_from("127.0.0.1").expect("ip"), tcp)
                    .await
                else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                if stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    == Some(&new_leaf)
                {
                    saw.lock().expect("lock").get_or_insert_with(Instant::now);
                }
                let mut r = BufReader::new(stream);
                for _ in 0..per_conn {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let res = async {
                        r.get_mut().write_all(&request()).await?;
                        read_response(&mut r).await
                    }
                    .await;
                    match res {
                        Ok(200) => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Rotate in place the way a Secret volume update lands: one file, then the other.
    let rotated_at = Instant::now();
    let tmp = live.join(".tls.crt.new");
    std::fs::copy(b.join("tls.crt"), &tmp).expect("copy");
    std::fs::rename(&tmp, live.join("tls.crt")).expect("rename crt");
    tokio::time::sleep(Duration::from_millis(450)).await; // a poll sees a mismatched pair here
    let tmp = live.join(".tls.key.new");
    std::fs::copy(b.join("tls.key"), &tmp).expect("copy");
    std::fs::rename(&tmp, live.join("tls.key")).expect("rename key");
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during rotation",
        ok + failed
    );
    let m = metrics.encode();
    let saw = saw_new_at
        .lock()
        .expect("lock")
        .unwrap_or_else(|| panic!("the new certificate was never served (ok {ok}); metrics:\n{m}"));
    let delay = saw.duration_since(rotated_at);
    assert!(
        delay < Duration::from_secs(3),
        "new certificate served only after {delay:?}"
    );
    let m = metrics.encode();
    assert!(
        m.contains("stellar_peer_injector_tls_certificate_reloads_total{result=\"success\"} 1"),
        "{m}"
    );
    let _ = std::fs::remove_dir_all(&base);
}
