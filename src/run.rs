//! What each subcommand does.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tokio::sync::watch;

use crate::cache::{self, PeerCache};
use crate::cli::{CertsArgs, Cli, Command, InjectArgs, LogFormat, Output, PeersArgs, ServeArgs};
use crate::error::Error;
use crate::inject::patch::build_patch;
use crate::inject::review::PodView;
use crate::inject::{Decision, InjectSettings, decide_pod};
use crate::metrics::Metrics;
use crate::nodes::NodeRecord;
use crate::peers::PeerSnapshot;
use crate::server::{self, AdminState, AdmissionState, Timeouts, tls::CertWatcher};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve(a) => {
            init_tracing(a.log_format);
            serve(*a).await
        }
        Command::Inject(a) => {
            init_tracing(LogFormat::Plain);
            let out = inject(&a)?;
            print!("{out}");
            Ok(())
        }
        Command::Peers(a) => {
            init_tracing(LogFormat::Plain);
            peers(a).await
        }
        Command::Crd => {
            print!(
                "{}",
                crate::crd::crd_yaml().map_err(|e| Error::Config(e.to_string()))?
            );
            Ok(())
        }
        Command::Certs(CertsArgs { out, hosts, ips }) => {
            crate::certs::generate(&out, &hosts, &ips)?;
            eprintln!("wrote {}/{{ca.crt,tls.crt,tls.key}}", out.display());
            Ok(())
        }
        Command::RenderConfig(a) => crate::config::render::main(&a),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: `kubectl logs` and log collectors get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Plain => b.try_init(),
    };
}

async fn serve(args: ServeArgs) -> Result<(), Error> {
    let peer_settings = args.peers.settings()?;
    let inject_settings = args.patch.settings()?;
    let certs = CertWatcher::load(&args.tls_cert, &args.tls_key)?;
    let tls = certs.server_config()?;
    let client = args.kube.client().await?;
    let metrics = Arc::new(Metrics::new());
    let cache = Arc::new(PeerCache::new());
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);

    let https = server::bind(args.listen).await?;
    let admin = server::bind(args.admin_listen).await?;
    tracing::info!(https = %args.listen, admin = %args.admin_listen, namespaces = ?args.kube.namespaces(),
        max_peers = peer_settings.max_peers, cluster_domain = %peer_settings.cluster_domain, "stellar-peer-injector starting");

    tokio::spawn(cache::run(
        client.clone(),
        args.kube.namespaces(),
        peer_settings,
        cache.clone(),
        metrics.clone(),
    ));
    start_rollout(&args, client, cache.clone(), metrics.clone())?;
    tokio::spawn(certs.run(args.tls_reload_interval, metrics.clone()));
    let admission = server::admission_router(Arc::new(AdmissionState {
        cache: cache.clone(),
        settings: inject_settings,
        metrics: metrics.clone(),
        body_timeout: Timeouts::default().body,
        patches: Default::default(),
    }));
    let tls_task = tokio::spawn(server::serve_tls(
        https,
        tls,
        admission,
        Timeouts::default(),
        stop_rx.clone(),
        args.drain_timeout,
    ));
    let admin_router = server::admin_router(Arc::new(AdminState {
        cache,
        metrics,
        draining: draining.clone(),
    }));
    let admin_task = tokio::spawn(server::serve_plain(admin, admin_router, stop_rx));

    shutdown_signal().await;
    draining.store(true, Ordering::SeqCst);
    tracing::info!(delay = ?args.shutdown_delay, "shutdown requested: /readyz now fails; still serving until the delay ends");
    tokio::time::sleep(args.shutdown_delay).await;
    let _ = stop_tx.send(true);
    let _ = tls_task.await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

fn start_rollout(
    args: &ServeArgs,
    client: kube::Client,
    cache: Arc<PeerCache>,
    metrics: Arc<Metrics>,
) -> Result<(), Error> {
    use crate::rollout::{controller, lease, plan};
    if args.rollout == controller::Mode::Off {
        tracing::info!("rollout loop off (--rollout=off)");
        return Ok(());
    }
    let namespace = args.lease_namespace.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
        Error::Config("the rollout loop needs a namespace for its leader Lease: pass --lease-namespace or set POD_NAMESPACE (or --rollout=off)".into())
    })?;
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "injector".into());
            format!("{host}-{}", std::process::id())
        });
    let (leader_tx, leader_rx) = watch::channel(false);
    tokio::spawn(lease::run(
        client.clone(),
        lease::LeaseSettings {
            name: args.lease_name.clone(),
            namespace,
            identity: identity.clone(),
            duration: std::time::Duration::from_secs(15),
            renew_every: std::time::Duration::from_secs(2),
        },
        leader_tx,
    ));
    let settings = controller::RolloutSettings {
        mode: args.rollout,
        plan: plan::PlanSettings {
            max_concurrent: usize::from(args.max_concurrent_rollouts),
            on_delete: match args.on_delete_policy {
                crate::cli::OnDeletePolicyArg::Delete => plan::OnDeletePolicy::Delete,
                crate::cli::OnDeletePolicyArg::Event => plan::OnDeletePolicy::Event,
            },
        },
        debounce: args.debounce,
        namespaces: args.kube.namespaces(),
        identity,
    };
    tokio::spawn(controller::run(client, cache, settings, leader_rx, metrics));
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn peers(args: PeersArgs) -> Result<(), Error> {
    let settings = args.peers.settings()?;
    let client = args.kube.client().await?;
    let records = cache::list_once(client, &args.kube.namespaces()).await?;
    let snap = PeerSnapshot::build(1, &records, &settings);
    for (node, problem) in &snap.problems {
        eprintln!("warning: {node}: {problem}");
    }
    let nets: Vec<_> = snap
        .networks()
        .filter(|(n, _)| args.network.as_deref().is_none_or(|w| w == *n))
        .collect();
    match args.output {
        Output::Json => {
            let obj: serde_json::Map<String, Value> = nets
                .iter()
                .map(|(n, p)| {
                    let peers: Vec<Value> = p
                        .entries()
                        .map(|(a, pref)| serde_json::json!({"address": a, "preferred": pref}))
                        .collect();
                    (
                        (*n).to_owned(),
                        serde_json::json!({"validators": p.validators, "peers": peers}),
                    )
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "networks": obj }))
                    .unwrap_or_default()
            );
        }
        Output::Table => {
            let w = nets.iter().map(|(n, _)| n.len()).max().unwrap_or(7).max(7);
            println!("{:<w$}  {:<9}  PEER", "NETWORK", "PREFERRED");
            for (n, p) in &nets {
                for (a, pref) in p.entries() {
                    println!("{n:<w$}  {:<9}  {a}", if pref { "yes" } else { "no" });
                }
            }
        }
    }
    Ok(())
}

fn read_input(path: &str) -> Result<String, Error> {
    let mut s = String::new();
    if path == "-" {
        std::io::stdin().read_to_string(&mut s)?;
    } else {
        s = std::fs::read_to_string(path).map_err(|e| Error::Input {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(s)
}

/// Splits multi-document YAML into JSON values; `kind: List` is flattened.
pub fn yaml_documents(text: &str, path: &str) -> Result<Vec<Value>, Error> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Input {
            path: path.to_owned(),
            message: format!("document {}: {e}", i + 1),
        })?;
        if v.is_null() {
            continue;
        }
        let j: Value = serde_json::to_value(v).map_err(|e| Error::Input {
            path: path.to_owned(),
            message: format!("document {}: {e}", i + 1),
        })?;
        if j.get("kind").and_then(Value::as_str) == Some("List") {
            out.extend(
                j.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
        } else {
            out.push(j);
        }
    }
    Ok(out)
}

/// Offline injection: returns the mutated manifests as multi-document YAML.
pub fn inject(args: &InjectArgs) -> Result<String, Error> {
    if args.nodes == "-" && args.file == "-" {
        return Err(Error::Config(
            "--nodes and -f cannot both read stdin".to_owned(),
        ));
    }
    let settings = args.peers.settings()?;
    let patch = args.patch.settings()?;
    let node_docs = yaml_documents(&read_input(&args.nodes)?, &args.nodes)?;
    let records: Vec<NodeRecord> = node_docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("StellarNode"))
        .filter_map(|d| NodeRecord::from_json(d, &args.namespace))
        .collect();
    let snap = PeerSnapshot::build(1, &records, &settings);
    for (node, problem) in &snap.problems {
        eprintln!("warning: {node}: {problem}");
    }
    let docs = yaml_documents(&read_input(&args.file)?, &args.file)?;
    inject_documents(docs, &snap, &patch, &args.namespace)
}

/// Mutates every Pod and every StatefulSet/Deployment pod template in `docs`.
pub fn inject_documents(
    docs: Vec<Value>,
    snap: &PeerSnapshot,
    settings: &InjectSettings,
    namespace: &str,
) -> Result<String, Error> {
    let mut out = String::new();
    let mut errors = Vec::new();
    for (i, mut doc) in docs.into_iter().enumerate() {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(namespace)
            .to_owned();
        let target = match kind.as_str() {
            "Pod" => Some(&mut doc),
            "StatefulSet" | "Deployment" => doc.pointer_mut("/spec/template"),
            _ => None,
        };
        if let Some(target) = target
            && let Err(e) = inject_one(target, &ns, snap, settings)
        {
            errors.push(format!("document {} ({kind} {ns}/{name}): {e}", i + 1));
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).map_err(|e| Error::Config(e.to_string()))?);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Config(errors.join("\n")))
    }
}

fn inject_one(
    target: &mut Value,
    namespace: &str,
    snap: &PeerSnapshot,
    settings: &InjectSettings,
) -> Result<(), String> {
    let patch = {
        let view = <PodView<'_> as serde::Deserialize>::deserialize(&*target)
            .map_err(|e| format!("cannot read the pod: {e}"))?;
        match decide_pod(&view, Some(namespace), Some(snap), settings) {
            Decision::Inject {
                shape,
                list,
                warnings,
                ..
            } => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                build_patch(&shape, &list, settings)
            }
            Decision::Skip(_) => return Ok(()),
            Decision::Deny { message, .. } => return Err(message),
            Decision::NotReady => return Err("no peer snapshot".to_owned()),
        }
    };
    json_patch::patch(target, &patch.0).map_err(|e| format!("patch did not apply: {e}"))
}

/// Parses the command line and runs it.
pub fn main_with(cli: Cli) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::PeerSettings;

    const NODES: &str = r#"
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: a, namespace: stellar}
spec: {nodeType: Validator, network: testnet}
---
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: b, namespace: stellar}
spec: {nodeType: Validator, network: testnet}
---
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: h, namespace: stellar}
spec: {nodeType: Horizon, network: testnet}
"#;

    const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: a, namespace: stellar}
spec:
  serviceName: a-headless
  selector: {matchLabels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: a}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: a}
    spec:
      containers:
      - {name: stellar-health-check, image: hc}
      - {name: stellar-node, image: core}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: h, namespace: stellar}
spec:
  selector: {matchLabels: {app.kubernetes.io/instance: h}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: h}
    spec:
      containers: [{name: stellar-node, image: horizon}]
---
apiVersion: v1
kind: Pod
metadata:
  name: b-0
  labels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: b}
spec:
  containers: [{name: stellar-node, image: core}]
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: stellar}
spec: {ports: [{name: peer, port: 11625}]}
"#;

    fn snap() -> PeerSnapshot {
        let docs = yaml_documents(NODES, "nodes").expect("nodes");
        let recs: Vec<NodeRecord> = docs
            .iter()
            .filter_map(|d| NodeRecord::from_json(d, "default"))
            .collect();
        PeerSnapshot::build(1, &recs, &PeerSettings::default())
    }

    #[test]
    fn offline_injection_mutates_pods_and_templates_like_the_webhook() {
        let s = snap();
        let docs = yaml_documents(MANIFESTS, "m").expect("manifests");
        let out =
            inject_documents(docs, &s, &InjectSettings::default(), "stellar").expect("inject");
        let res = yaml_documents(&out, "out").expect("output parses");
        assert_eq!(res.len(), 4);
        let env = |v: &Value, ptr: &str| -> Vec<(String, String)> {
            v.pointer(ptr)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap_or("").to_owned(),
                                e["value"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let a = env(&res[0], "/spec/template/spec/containers/1/env");
        assert!(
            a.contains(&(
                "STELLAR_PEERS".into(),
                "b.stellar.svc.cluster.local:11625".into()
            )),
            "{a:?}"
        );
        assert!(
            env(&res[0], "/spec/template/spec/containers/0/env").is_empty(),
            "sidecar untouched"
        );
        assert!(
            res[0]
                .pointer("/spec/template/metadata/annotations/stellar.org~1peers-hash")
                .is_some()
        );
        let h = env(&res[1], "/spec/template/spec/containers/0/env");
        assert!(
            h.contains(&("STELLAR_PEER_COUNT".into(), "2".into())),
            "{h:?}"
        );
        let b = env(&res[2], "/spec/containers/0/env");
        assert!(
            b.contains(&(
                "STELLAR_PEERS".into(),
                "a.stellar.svc.cluster.local:11625".into()
            )),
            "pod in default namespace -n stellar: {b:?}"
        );
        assert_eq!(
            res[3],
            yaml_documents(MANIFESTS, "m").expect("m")[3],
            "Service unchanged"
        );
        // Injecting the output again changes nothing.
        let again =
            inject_documents(res, &s, &InjectSettings::default(), "stellar").expect("again");
        assert_eq!(again, out);
    }

    #[test]
    fn offline_injection_names_the_document_it_cannot_inject() {
        let s = snap();
        let docs = yaml_documents(MANIFESTS, "m").expect("manifests");
        let e = inject_documents(docs, &s, &InjectSettings::default(), "elsewhere")
            .expect_err("unknown node");
        let msg = e.to_string();
        assert!(msg.contains("document 3 (Pod elsewhere/b-0)"), "{msg}");
        assert!(msg.contains("no StellarNode elsewhere/b"), "{msg}");
    }

    #[test]
    fn bad_yaml_is_reported_with_its_document() {
        let e = yaml_documents("a: 1\n---\n: : :\n  - [", "f.yaml").expect_err("bad");
        assert!(e.to_string().starts_with("f.yaml: document 2"), "{e}");
        let l = yaml_documents(
            "kind: List\nitems:\n- {kind: Pod}\n- {kind: Service}\n",
            "l",
        )
        .expect("list");
        assert_eq!(l.len(), 2);
    }
}
