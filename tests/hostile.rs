//! Bad input never crashes or hangs the admission server: a table of hostile
//! requests over real TLS, slow and silent clients, plaintext, old TLS versions and
//! unknown SNI. Each gets a bounded, well-formed answer and the server stays healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use stellar_peer_injector::inject::InjectSettings;
use stellar_peer_injector::nodes::{NodeKind, NodeRecord};
use stellar_peer_injector::obs::metrics::Metrics;
use stellar_peer_injector::peers::PeerSettings;
use stellar_peer_injector::server::{self, AdmissionState, Timeouts, tls::CertWatcher};
use stellar_peer_injector::watch::cache::PeerCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REVIEW: &str = include_str!("fixtures/validator-pod-review.json");

struct Server {
    port: u16,
    ca: Vec<u8>,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn node(name: &str) -> NodeRecord {
    NodeRecord::new("stellar", name, NodeKind::Validator, "testnet")
}

async fn start() -> Server {
    let dir = std::env::temp_dir().join(format!(
        "spi-hostile-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    stellar_peer_injector::cmd::certs::generate(
        &dir,
        &["localhost".into()],
        &["127.0.0.1".parse().expect("ip")],
    )
    .expect("certs");
    let certs = CertWatcher::load(&dir.join("tls.crt"), &dir.join("tls.key")).expect("load");
    let tls = certs.server_config().expect("config");
    let cache = Arc::new(PeerCache::new());
    cache.publish(
        &[node("validator-1"), node("validator-2")],
        &PeerSettings::default(),
    );
    let timeouts = Timeouts {
        handshake: Duration::from_secs(2),
        header: Duration::from_secs(2),
        body: Duration::from_secs(2),
    };
    let state = Arc::new(AdmissionState {
        body_timeout: timeouts.body,
        ..AdmissionState::new(cache, InjectSettings::default(), Arc::new(Metrics::new()))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(
        server::TlsServer::new(listener, tls, server::admission_router(state))
            .timeouts(timeouts)
            .drain(Duration::from_secs(1))
            .run(rx),
    );
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca");
    Server {
        port,
        ca,
        _stop: tx,
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

fn client_config(
    ca: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c.expect("ca pem")).expect("add ca");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn tls(
    s: &Server,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let cfg = client_config(&s.ca, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let tcp = TcpStream::connect(("127.0.0.1", s.port)).await?;
    let sn = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(cfg).connect(sn, tcp).await
}

/// Sends raw bytes over TLS and reads until the server closes (bounded). It reads while
/// it writes, as an HTTP client does: a server that answers an oversized body early (413)
/// closes without reading the rest, so the write may then fail with a broken pipe or a
/// reset, and that is not an error as long as the answer came.
async fn exchange(s: &Server, raw: &[u8]) -> (u16, String) {
    let stream = tls(s, "127.0.0.1").await.expect("tls");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let write = async {
        let r = wr.write_all(raw).await;
        if r.is_ok() {
            let _ = wr.flush().await;
        }
        r
    };
    let read = async {
        let mut buf = Vec::new();
        // A close without close_notify is an error here; what was read still counts.
        let _ = rd.read_to_end(&mut buf).await;
        buf
    };
    let (written, buf) =
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(write, read) })
            .await
            .expect("bounded answer");
    if let Err(e) = &written {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) && !buf.is_empty(),
            "write failed ({e}) and no answer came: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    // No status line: code 0, and the body says what came instead.
    testkit::http::split_response(&buf).unwrap_or_else(|e| (0, e))
}

fn post(body: &[u8], content_type: Option<&str>) -> Vec<u8> {
    let mut r = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        r.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

fn review_with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(REVIEW).expect("fixture");
    f(&mut v);
    serde_json::to_vec(&v).expect("json")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Status(u16),
    /// 200, allowed, no patch.
    Allowed,
    /// 200, allowed, with a patch that applies cleanly.
    Patched,
    /// 200, allowed: false.
    Denied,
}

async fn check(s: &Server, name: &str, raw: Vec<u8>, original: Option<Value>, want: Want) {
    let started = Instant::now();
    let (code, body) = exchange(s, &raw).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{name}: took {:?}",
        started.elapsed()
    );
    match want {
        Want::Status(c) => {
            assert_eq!(code, c, "{name}: body {body}");
            assert!(
                !body.trim().is_empty(),
                "{name}: an error must say what is wrong"
            );
        }
        _ => {
            assert_eq!(code, 200, "{name}: body {body}");
            let v: Value = serde_json::from_str(body.trim())
                .unwrap_or_else(|e| panic!("{name}: response not JSON ({e}): {body}"));
            assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{name}");
            assert_eq!(v["kind"], "AdmissionReview", "{name}");
            let r = &v["response"];
            assert!(r["uid"].is_string(), "{name}: uid");
            match want {
                Want::Allowed => {
                    assert_eq!(r["allowed"], true, "{name}: {r}");
                    assert!(r.get("patch").is_none(), "{name}: unexpected patch");
                }
                Want::Denied => {
                    assert_eq!(r["allowed"], false, "{name}: {r}");
                    assert!(
                        r["status"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty()),
                        "{name}: no message"
                    );
                }
                Want::Patched => {
                    assert_eq!(r["allowed"], true, "{name}: {r}");
                    assert_eq!(r["patchType"], "JSONPatch", "{name}");
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(r["patch"].as_str().expect("patch"))
                        .expect("base64");
                    let patch: json_patch::Patch =
                        serde_json::from_slice(&bytes).expect("patch json");
                    let mut pod = original.clone().expect("original object");
                    json_patch::patch(&mut pod, &patch.0)
                        .unwrap_or_else(|e| panic!("{name}: patch does not apply: {e}"));
                    let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod)
                        .unwrap_or_else(|e| panic!("{name}: patched pod invalid: {e}"));
                }
                Want::Status(_) => unreachable!(),
            }
        }
    }
}

fn obj(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| v["request"]["object"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_bounded_answers() {
    let s = start().await;
    let json = Some("application/json");
    let mut cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("invalid JSON", post(b"{not json", json), Want::Status(400)),
        ("empty body", post(b"", json), Want::Status(400)),
        ("truncated JSON", post(&REVIEW.as_bytes()[..4000], json), Want::Status(400)),
        ("JSON array", post(b"[1,2,3]", json), Want::Status(400)),
        ("JSON string", post(b"\"AdmissionReview\"", json), Want::Status(400)),
        ("JSON null", post(b"null", json), Want::Status(400)),
        ("invalid UTF-8", post(b"{\"kind\":\"\xff\xfe\"}", json), Want::Status(400)),
        ("NUL bytes", post(b"\0\0\0\0", json), Want::Status(400)),
        ("deeply nested", post(&[b"[".repeat(100_000), b"]".repeat(100_000)].concat(), json), Want::Status(400)),
        ("not an AdmissionReview", post(br#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#, json), Want::Status(400)),
        ("v1beta1 review", post(&review_with(|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1")), json), Want::Status(400)),
        ("missing request", post(&review_with(|v| { v.as_object_mut().map(|o| o.remove("request")); }), json), Want::Status(400)),
        ("request null", post(&review_with(|v| v["request"] = json!(null)), json), Want::Status(400)),
        ("uid missing", post(&review_with(|v| { v["request"].as_object_mut().map(|o| o.remove("uid")); }), json), Want::Status(400)),
        ("uid a number", post(&review_with(|v| v["request"]["uid"] = json!(5)), json), Want::Status(400)),
        ("request.kind missing", post(&review_with(|v| { v["request"].as_object_mut().map(|o| o.remove("kind")); }), json), Want::Status(400)),
        ("wrong content type", post(REVIEW.as_bytes(), Some("text/plain")), Want::Status(415)),
        ("no content type", post(REVIEW.as_bytes(), None), Want::Status(415)),
        ("GET /mutate", b"GET /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Want::Status(405)),
        ("unknown path", b"POST /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(), Want::Status(404)),
        ("declared 4 MiB body", format!("POST /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 4 << 20).into_bytes(), Want::Status(413)),
        ("chunked body over the limit", {
            let mut r = b"POST /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..4 {
                r.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
                r.extend(std::iter::repeat_n(b' ', 1 << 20));
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }, Want::Status(413)),
        ("a Service, not a Pod", post(&review_with(|v| v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Service"})), json), Want::Allowed),
        ("UPDATE", post(&review_with(|v| v["request"]["operation"] = json!("UPDATE")), json), Want::Allowed),
        ("other app's pod", post(&review_with(|v| v["request"]["object"]["metadata"]["labels"] = json!({"app": "nginx"})), json), Want::Allowed),
        ("opted out", post(&review_with(|v| v["request"]["object"]["metadata"]["annotations"]["stellar.org/inject-peers"] = json!("false")), json), Want::Allowed),
        ("pod with no containers", post(&review_with(|v| v["request"]["object"]["spec"]["containers"] = json!([])), json), Want::Denied),
        ("containers not a list", post(&review_with(|v| v["request"]["object"]["spec"]["containers"] = json!({"a": 1})), json), Want::Denied),
        ("labels a list", post(&review_with(|v| v["request"]["object"]["metadata"]["labels"] = json!(["x"])), json), Want::Denied),
        ("object missing", post(&review_with(|v| { v["request"].as_object_mut().map(|o| o.remove("object")); }), json), Want::Denied),
        ("duplicate keys in JSON", post(&{
            let mut b = REVIEW.as_bytes().to_vec();
            let pos = b.iter().position(|&c| c == b'{').expect("brace") + 1;
            b.splice(pos..pos, br#""kind":"Junk","#.iter().copied());
            b
        }, json), Want::Status(400)),
        ("unknown StellarNode", post(&review_with(|v| v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] = json!("ghost")), json), Want::Denied),
    ];
    // Cases whose patch must apply to their own object.
    let patched: Vec<(&str, Vec<u8>)> = vec![
        ("the fixture", REVIEW.as_bytes().to_vec()),
        (
            "dry run",
            review_with(|v| v["request"]["dryRun"] = json!(true)),
        ),
        (
            "huge label value",
            review_with(|v| {
                v["request"]["object"]["metadata"]["labels"]["huge"] = json!("x".repeat(1 << 20))
            }),
        ),
        (
            "10,000 env vars",
            review_with(|v| {
                let env: Vec<Value> = (0..10_000)
                    .map(|i| json!({"name": format!("VAR_{i}"), "value": "v"}))
                    .collect();
                v["request"]["object"]["spec"]["containers"][1]["env"] = json!(env);
            }),
        ),
        (
            "unicode, ~ and / in names",
            review_with(|v| {
                v["request"]["object"]["metadata"]["annotations"]["a~b/c.d/ü"] =
                    json!("ünïcødé ~/ \u{1F680}");
                v["request"]["object"]["spec"]["containers"][0]["name"] = json!("side~car/ü");
                v["request"]["object"]["spec"]["containers"][1]["env"][1]["name"] = json!("X~/Y");
            }),
        ),
        (
            "no annotations at all",
            review_with(|v| {
                v["request"]["object"]["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("annotations"));
            }),
        ),
        (
            "no volumes, no env, no mounts",
            review_with(|v| {
                v["request"]["object"]["spec"]
                    .as_object_mut()
                    .map(|m| m.remove("volumes"));
                if let Some(c) = v["request"]["object"]["spec"]["containers"][1].as_object_mut() {
                    c.remove("env");
                    c.remove("volumeMounts");
                }
            }),
        ),
    ];
    let n_patched = patched.len();
    for (name, body) in patched {
        let o = obj(&body);
        check(&s, name, post(&body, json), o, Want::Patched).await;
    }
    let total = cases.len() + n_patched;
    assert!(total >= 30, "only {total} cases");
    for (name, raw, want) in cases.drain(..) {
        check(&s, name, raw, None, want).await;
    }
    // Still healthy.
    check(
        &s,
        "after all that",
        post(REVIEW.as_bytes(), json),
        obj(REVIEW.as_bytes()),
        Want::Patched,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_off() {
    let s = start().await;
    // Connects and sends nothing: dropped after the handshake timeout.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(6), tcp.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "server sent data to a silent client");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        started.elapsed()
    );

    // Sends headers one byte per second: cut off by the header timeout.
    let started = Instant::now();
    let mut t = tls(&s, "127.0.0.1").await.expect("tls");
    let req = b"POST /mutate HTTP/1.1\r\nHost: x\r\n";
    let mut closed = false;
    for b in req {
        if t.write_all(&[*b]).await.is_err() || t.flush().await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), t.read(&mut probe)).await {
            let _ = n;
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    assert!(closed, "slow header client was never cut off");
    assert!(started.elapsed() < Duration::from_secs(8));

    // Sends the body one byte per second: 408 after the body timeout.
    let started = Instant::now();
    let mut t = tls(&s, "127.0.0.1").await.expect("tls");
    t.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), t.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "slow body: {text}");
    assert!(started.elapsed() < Duration::from_secs(8));
    check(
        &s,
        "healthy after slow clients",
        post(REVIEW.as_bytes(), Some("application/json")),
        obj(REVIEW.as_bytes()),
        Want::Patched,
    )
    .await;
}

/// A TLS 1.0/1.1 ClientHello (no supported_versions extension), built by hand
/// because rustls clients cannot speak those versions.
fn old_client_hello(minor: u8) -> Vec<u8> {
    let mut hs = vec![3, minor];
    hs.extend_from_slice(&[7u8; 32]); // random
    hs.push(0); // session id
    hs.extend_from_slice(&[0, 4, 0xc0, 0x14, 0x00, 0x2f]); // ECDHE-RSA-AES256-SHA, AES128-SHA
    hs.extend_from_slice(&[1, 0]); // null compression
    let mut msg = vec![1, 0, (hs.len() >> 8) as u8, hs.len() as u8];
    msg.extend_from_slice(&hs);
    let mut rec = vec![0x16, 3, 1, (msg.len() >> 8) as u8, msg.len() as u8];
    rec.extend_from_slice(&msg);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_old_tls_and_unknown_sni_are_refused() {
    let s = start().await;
    for minor in [1u8, 2] {
        let mut tcp = TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        tcp.write_all(&old_client_hello(minor))
            .await
            .expect("hello");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
            .await
            .expect("closed in time");
        assert!(!buf.is_empty(), "TLS 1.{}: no alert", minor - 1);
        assert_eq!(
            buf[0],
            0x15,
            "TLS 1.{}: expected an alert record, got {buf:?}",
            minor - 1
        );
    }
    // Plaintext HTTP to the TLS port: no HTTP answer, the connection ends.
    let mut tcp = TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    tcp.write_all(&post(REVIEW.as_bytes(), Some("application/json")))
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1"),
        "plaintext got an HTTP answer"
    );
    // TLS 1.2 and 1.3 work.
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = client_config(&s.ca, &[v]);
        let tcp = TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("127.0.0.1").expect("ip"), tcp)
            .await
            .unwrap_or_else(|e| panic!("{v:?} refused: {e}"));
    }
    // SNI the certificate covers: fine. Another name: refused by the server.
    tls(&s, "localhost").await.expect("localhost SNI");
    let e = tls(&s, "evil.example.org")
        .await
        .expect_err("unknown SNI accepted");
    let msg = e.to_string();
    assert!(
        !msg.contains("UnknownIssuer") && !msg.contains("NotValidForName"),
        "refused by the client, not the server: {msg}"
    );
    check(
        &s,
        "healthy after refusals",
        post(REVIEW.as_bytes(), Some("application/json")),
        obj(REVIEW.as_bytes()),
        Want::Patched,
    )
    .await;
}
