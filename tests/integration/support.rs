//! Test bed plumbing: the control plane (tests/testbed/testbed), a namespace per
//! test, injector processes, webhook configurations and polling helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};

pub type TestResult = Result<(), String>;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn testbed_script() -> PathBuf {
    repo_root().join("tests/testbed/testbed")
}

/// The running control plane.
pub struct Bed {
    pub kubeconfig: PathBuf,
    /// True when this test run started the bed (and so stops it at the end).
    pub started_here: bool,
}

static BED: OnceLock<Result<Bed, String>> = OnceLock::new();
static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

pub fn rt() -> &'static tokio::runtime::Runtime {
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new(testbed_script())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", testbed_script().display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`tests/testbed/testbed {}` failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Brings the bed up once for the whole run. A failure fails every test with the reason.
pub fn bed() -> Result<&'static Bed, String> {
    BED.get_or_init(|| {
        let already = run_script(&["status"]).is_ok();
        if !already {
            run_script(&["up"])?;
        }
        let bed = Bed {
            kubeconfig: state_dir().join("kubeconfig"),
            started_here: !already,
        };
        rt().block_on(install_crd(&bed))?;
        Ok(bed)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Stops the bed if this run started it (set STELLAR_TESTBED_KEEP=1 to keep it).
pub fn teardown() {
    if let Some(Ok(bed)) = BED.get()
        && bed.started_here
        && std::env::var_os("STELLAR_TESTBED_KEEP").is_none()
        && let Err(e) = run_script(&["down"])
    {
        eprintln!("warning: {e}");
    }
}

pub async fn client() -> Result<Client, String> {
    let bed = bed()?;
    let kc = kube::config::Kubeconfig::read_from(&bed.kubeconfig).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(cfg).map_err(|e| e.to_string())
}

async fn install_crd(bed: &Bed) -> Result<(), String> {
    let _ = bed;
    let c = client_raw().await?;
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(c);
    let crd = stellar_peer_injector::crd::StellarNode::crd();
    let pp = kube::api::PatchParams::apply("stellar-peer-injector-tests").force();
    api.patch(
        "stellarnodes.stellar.org",
        &pp,
        &kube::api::Patch::Apply(&crd),
    )
    .await
    .map_err(|e| format!("install CRD: {e}"))?;
    wait_for(Duration::from_secs(30), "CRD established", || {
        let api = api.clone();
        async move {
            let c = api.get("stellarnodes.stellar.org").await.ok()?;
            let ok = c
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ok.then_some(())
        }
    })
    .await
}

async fn client_raw() -> Result<Client, String> {
    let path = state_dir().join("kubeconfig");
    let kc = kube::config::Kubeconfig::read_from(&path).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(cfg).map_err(|e| e.to_string())
}

/// Polls `f` until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T, String>
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace of its own for one test, deleted when dropped.
pub struct TestNs {
    pub name: String,
    pub client: Client,
}

impl TestNs {
    pub async fn new(prefix: &str) -> Result<Self, String> {
        let client = client().await?;
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id() % 10000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("create namespace {name}: {e}"))?;
        // Pods need the default ServiceAccount, made by the controller manager.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for(Duration::from_secs(30), "default ServiceAccount", || {
            let sa = sa.clone();
            async move { sa.get_opt("default").await.ok().flatten() }
        })
        .await?;
        Ok(Self { name, client })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates any namespaced object from JSON.
    pub async fn create<K>(&self, v: Value) -> Result<K, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(v).map_err(|e| format!("bad test object: {e}"))?;
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .map_err(|e| format!("create: {e}"))
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let _ =
                rt().block_on(async move { api.delete(&name, &DeleteParams::background()).await });
        })
        .join();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stellar-peer-injector")
}

/// Writes a development CA and certificate for 127.0.0.1 into a fresh directory.
pub fn make_certs(tag: &str) -> Result<PathBuf, String> {
    let dir = repo_root()
        .join("target/test-certs")
        .join(format!("{tag}-{}", SEQ.fetch_add(1, Ordering::SeqCst)));
    let out = Command::new(bin())
        .args(["certs", "--out"])
        .arg(&dir)
        .args(["--ip", "127.0.0.1", "--host", "localhost"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}

/// A `stellar-peer-injector serve` process, killed when dropped.
pub struct Injector {
    child: Mutex<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub certs: PathBuf,
    pub log: PathBuf,
}

impl Injector {
    /// Starts the injector watching `namespaces` with `kubeconfig`; `wait_ready` waits for /readyz.
    pub async fn start(
        namespaces: &str,
        kubeconfig: &Path,
        extra: &[&str],
        wait_ready: bool,
    ) -> Result<Self, String> {
        let certs = make_certs("injector")?;
        let port = free_port();
        let admin_port = free_port();
        let log = state_dir()
            .join("logs")
            .join(format!("injector-{namespaces}-{port}.log"));
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(bin())
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
            .arg(kubeconfig)
            .args(["--namespaces", namespaces, "--tls-reload-interval", "500ms"])
            .args([
                "--lease-namespace",
                namespaces.split(',').next().unwrap_or("default"),
            ])
            .args(extra)
            // Tests that study shutdown pass --shutdown-delay; the others stop at once.
            .env("STELLAR_PEER_INJECTOR_SHUTDOWN_DELAY", "0s")
            .env("RUST_LOG", "info,stellar_peer_injector=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawn injector: {e}"))?;
        let inj = Self {
            child: Mutex::new(child),
            port,
            admin_port,
            certs,
            log,
        };
        if wait_ready {
            let url = format!("http://127.0.0.1:{admin_port}/readyz");
            let r = wait_for(Duration::from_secs(30), "injector /readyz", || {
                let url = url.clone();
                async move {
                    http_get(&url)
                        .await
                        .ok()
                        .filter(|(code, _)| *code == 200)
                        .map(|_| ())
                }
            })
            .await;
            if let Err(e) = r {
                return Err(format!("{e}\ninjector log:\n{}", inj.log_text()));
            }
        }
        Ok(inj)
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
}

impl Injector {
    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The injector's /metrics text.
    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Status code and body of a raw HTTP/1.1 response read to the end.
fn split_response(buf: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(buf).into_owned();
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

/// Minimal HTTP/1.1 GET over plain TCP: (status, body).
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
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
    let (code, body) = split_response(&buf)?;
    Ok((code, body))
}

/// Registers a MutatingWebhookConfiguration for pods in `ns` only, pointing at `url`.
pub async fn register_webhook(
    client: &Client,
    ns: &str,
    url: &str,
    ca_pem: &str,
    failure_policy: &str,
    object_selector: bool,
) -> Result<String, String> {
    use base64::Engine;
    let name = format!("spi-test-{ns}");
    let mut hook = json!({
        "name": "peers.stellar.org",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "failurePolicy": failure_policy,
        "reinvocationPolicy": "IfNeeded",
        "clientConfig": {"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}]
    });
    if object_selector {
        hook["objectSelector"] = json!({"matchLabels": {"app.kubernetes.io/name": "stellar-node"}});
    }
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": [hook]
    }))
    .map_err(|e| e.to_string())?;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = api.delete(&name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &cfg)
        .await
        .map_err(|e| format!("create webhook config: {e}"))?;
    // The apiserver picks new configurations up asynchronously.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(name)
}

pub async fn delete_webhook(client: &Client, name: &str) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Operator-shaped labels of a StellarNode's workload and pods.
pub fn operator_labels(name: &str, node_type: &str, network: &str) -> Value {
    let component = match node_type {
        "Validator" => "validator",
        "Horizon" => "horizon",
        _ => "sorobanrpc",
    };
    json!({
        "app.kubernetes.io/name": "stellar-node",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "stellar-operator",
        "stellar.org/node-type": node_type,
        "stellar-network": network,
    })
}

/// A StellarNode as the operator's users write it.
pub fn stellar_node(name: &str, node_type: &str, network: &str, suspended: bool) -> Value {
    json!({
        "apiVersion": "stellar.org/v1alpha1", "kind": "StellarNode",
        "metadata": {"name": name},
        "spec": {"nodeType": node_type, "network": network, "version": "v22.1.0", "suspended": suspended,
                 "storage": {"storageClass": "standard", "size": "100Gi"}}
    })
}

/// The StatefulSet the operator makes for a validator (pod template with the
/// health-check sidecar first, as the operator does).
pub fn operator_statefulset(name: &str, node_type: &str, network: &str, replicas: i32) -> Value {
    let labels = operator_labels(name, node_type, network);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": format!("{name}-headless"),
            "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [
                    {"name": "stellar-health-check", "image": "stellar/health-check:v0.3.1"},
                    {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0", "ports": [{"name": "peer", "containerPort": 11625}],
                     "env": [{"name": "STELLAR_CORE_SEED", "value": "SXXX"}]}
                ]}
            }
        }
    })
}

/// Env of a named container of a pod.
pub fn pod_env(pod: &Pod, container: &str) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

pub fn env_get(pod: &Pod, container: &str, name: &str) -> Option<String> {
    pod_env(pod, container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.annotations.as_ref()?.get(key).cloned()
}

pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg()) }
}

/// Restarts one component of the bed (`etcd`, `kube-apiserver`, ...) and waits until it is healthy.
pub fn restart_component(name: &str) -> Result<(), String> {
    run_script(&["restart", name]).map(|_| ())
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
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
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
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(sn, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Sends an AdmissionReview straight to an injector over TLS (trusting its CA) and
/// returns the HTTP status and the JSON body (Null when the body is not JSON).
pub async fn admission_request(inj: &Injector, body: &[u8]) -> Result<(u16, Value), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// The fixture review, re-targeted at StellarNode `namespace/instance`.
pub fn review_for(namespace: &str, instance: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(include_str!("../fixtures/validator-pod-review.json"))
        .unwrap_or(Value::Null);
    v["request"]["namespace"] = json!(namespace);
    v["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    v["request"]["object"]["metadata"]["labels"]["app.kubernetes.io/instance"] = json!(instance);
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Decodes the JSON patch of an admission answer and returns the STELLAR_PEERS value it sets.
pub fn injected_peers(answer: &Value) -> Option<String> {
    use base64::Engine;
    let b64 = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let ops: Vec<Value> = serde_json::from_slice(&bytes).ok()?;
    ops.iter().find_map(|op| {
        let v = &op["value"];
        if v["name"] == "STELLAR_PEERS" {
            return v["value"].as_str().map(str::to_owned);
        }
        v.as_array()?
            .iter()
            .find(|e| e["name"] == "STELLAR_PEERS")?["value"]
            .as_str()
            .map(str::to_owned)
    })
}

impl Injector {
    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
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
}

/// The address StellarNode `name` in namespace `ns` is known by to its peers.
pub fn svc(name: &str, ns: &str) -> String {
    format!("{name}-0.{name}-headless.{ns}.svc.cluster.local:11625")
}

/// `STELLAR_PEERS` and the `stellar.org/peers-hash` annotation of the first Ready pod of
/// `instance` that is not being deleted.
pub async fn pod_peers(ns: &TestNs, instance: &str) -> Option<(String, Option<String>)> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={instance}")))
        .await
        .ok()?;
    let p = pods
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())?;
    let ready = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    Some((
        env_get(&p, "stellar-node", "STELLAR_PEERS").unwrap_or_default(),
        annotation(&p, "stellar.org/peers-hash"),
    ))
}

/// Waits until the first Ready pod of `instance` was injected (it carries the
/// peers-hash annotation) with exactly `want` as peers.
pub async fn wait_peers(ns: &TestNs, instance: &str, want: &[String], secs: u64) -> TestResult {
    let want = want.join(",");
    wait_for(
        Duration::from_secs(secs),
        &format!("{instance} pod with peers {want}"),
        || {
            let want = want.clone();
            async move {
                pod_peers(ns, instance)
                    .await
                    .filter(|(p, hash)| *p == want && hash.is_some())
                    .map(|_| ())
            }
        },
    )
    .await
}

/// Waits until each of `waiting` has exactly the other members of `network` (StellarNode
/// names in `ns`) as peers, `secs` for each.
pub async fn wait_peer_mesh(
    ns: &TestNs,
    waiting: &[&str],
    network: &[&str],
    secs: u64,
) -> TestResult {
    for v in waiting {
        let others: Vec<String> = network
            .iter()
            .filter(|o| *o != v)
            .map(|o| svc(o, &ns.name))
            .collect();
        wait_peers(ns, v, &others, secs).await?;
    }
    Ok(())
}

/// The bed's state dir: `TESTBED_STATE_DIR` (as tests/testbed/testbed reads it), by default
/// target/testbed.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("TESTBED_STATE_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                std::env::current_dir().unwrap_or_default().join(d)
            }
        }
        _ => repo_root().join("target/testbed"),
    }
}

/// The bed's ports.env (`KCM_PORT`, `DNS_PORT`, ...), as the bed saved it last.
pub fn bed_ports() -> Result<std::collections::BTreeMap<String, u16>, String> {
    let path = state_dir().join("ports.env");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k.trim().to_owned(), v.trim().parse().ok()?)))
        .collect())
}

/// One port of ports.env.
pub fn bed_port(var: &str) -> Result<u16, String> {
    bed_ports()?.get(var).copied().ok_or_else(|| {
        format!(
            "{var} is not in {}",
            state_dir().join("ports.env").display()
        )
    })
}

/// Stops one component of the bed and leaves it stopped (`testbed stop`).
pub fn stop_component(name: &str) -> Result<(), String> {
    run_script(&["stop", name]).map(|_| ())
}

/// The last `n` lines of a bed component's log.
pub fn component_log_tail(component: &str, n: usize) -> String {
    let path = state_dir().join("logs").join(format!("{component}.log"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// What is wrong with the bed, as `testbed status` sees it: `None` when it is healthy,
/// otherwise a one-line summary and the details (each broken component with its log's tail).
pub fn bed_problems() -> Option<(String, String)> {
    let out = match Command::new(testbed_script()).arg("status").output() {
        Ok(out) => out,
        Err(e) => {
            let msg = format!("cannot run {}: {e}", testbed_script().display());
            return Some((msg.clone(), msg));
        }
    };
    if out.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let broken: Vec<(&str, String)> = stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let state: Vec<&str> = words.take(2).collect();
            match state.as_slice() {
                ["stopped", ..] => Some((name, "stopped".to_owned())),
                ["running", "unhealthy"] => Some((name, "running but unhealthy".to_owned())),
                ["down", ..] => Some((name, "down".to_owned())),
                _ => None,
            }
        })
        .collect();
    let summary = if broken.is_empty() {
        format!("`testbed status` failed ({})", out.status)
    } else {
        broken
            .iter()
            .map(|(n, s)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut details = format!("{summary}\n`testbed status`:\n{stdout}");
    for (name, _) in broken.iter().filter(|(n, _)| *n != "api") {
        details.push_str(&format!(
            "\nlast lines of {}:\n{}\n",
            state_dir()
                .join("logs")
                .join(format!("{name}.log"))
                .display(),
            component_log_tail(name, 15)
        ));
    }
    Some((summary, details))
}

/// Waits up to `patience` for the bed to be healthy (a loaded machine can miss one health
/// probe); fails with [`bed_problems`]' summary and details.
pub fn check_bed(patience: Duration) -> Result<(), (String, String)> {
    let deadline = Instant::now() + patience;
    loop {
        match bed_problems() {
            None => return Ok(()),
            Some(p) if Instant::now() >= deadline => return Err(p),
            Some(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The bed's CoreDNS (UDP and TCP on 127.0.0.1).
pub fn dns_addr() -> Result<std::net::SocketAddr, String> {
    Ok(std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        bed_port("DNS_PORT")?,
    )))
}

/// Asks the bed's CoreDNS for the A records of `name`, with the injector's own DNS client
/// (one query, 2 s per attempt). An unknown name is `Err("NXDOMAIN: <name>")`; other
/// failures are other errors.
pub async fn resolve_a(name: &str) -> Result<Vec<std::net::Ipv4Addr>, String> {
    use stellar_peer_injector::dns::{Answer, Resolver};
    let resolver = Resolver::new(vec![dns_addr()?], Duration::from_secs(2));
    match resolver.lookup_a(name).await {
        Ok(Answer::Addresses(ips)) => Ok(ips),
        Ok(Answer::NoRecords) => Ok(Vec::new()),
        Ok(Answer::NoSuchName) => Err(format!("NXDOMAIN: {name}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The value of the metric sample `series` (name and labels exactly as exported, e.g.
/// `stellar_peer_injector_peers_unresolvable{network="testnet"}`) in a /metrics text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The `events.k8s.io` Events in `ns` about StellarNode `node` with `reason`.
pub async fn node_events(
    ns: &TestNs,
    node: &str,
    reason: &str,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list Events: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("StellarNode") && r.name.as_deref() == Some(node)
                })
        })
        .collect())
}

/// Waits until StellarNode `node` has at least one Event with `reason`; returns them.
pub async fn wait_node_event(
    ns: &TestNs,
    node: &str,
    reason: &str,
    timeout: Duration,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    wait_for(
        timeout,
        &format!("a {reason} Event on StellarNode {node}"),
        || async {
            node_events(ns, node, reason)
                .await
                .ok()
                .filter(|e| !e.is_empty())
        },
    )
    .await
}

/// How many times an Event was recorded (1 plus its series' repeats).
pub fn event_count(e: &k8s_openapi::api::events::v1::Event) -> i32 {
    e.series.as_ref().map_or(1, |s| s.count)
}
