//! Captive core on the real control plane: a Horizon StellarNode's pod (made by its
//! Deployment, through the API server, on kwok) gets the init container and the env
//! that points Horizon at the merged captive-core file; the init step's own command
//! line, run over the kubelet's layout of the pod's volumes, writes a file the real
//! captive-core parser accepts; a peer change rolls the Horizon Deployment once, and
//! never while a validator of its network holds the rollout slot.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::runtime::watcher;
use serde_json::json;
use stellar_peer_injector::crd::StellarNode;
use stellar_peer_injector::rollout::observe;

use crate::config_tests::{lay_out, pod_of};
use crate::support::*;

const INIT_IMAGE: &str = "stellar-peer-injector:bed";
const TESTNET: &str = "Test SDF Network ; September 2015";
/// The operator's SorobanRpc-style captive-core file (tests/fixtures/captive).
const CAPTIVE_CFG: &str = include_str!("../fixtures/captive/operator-sorobanrpc-testnet.cfg");
const MERGED: &str = "/etc/stellar/merged/captive-core.cfg";

/// The operator's Horizon Deployment, with its ConfigMap `{name}-config` (here holding a
/// captive-core file, which the StellarNode's `stellar.org/captive-core-config` names)
/// at /config and the health-check sidecar.
fn horizon_deployment(name: &str) -> serde_json::Value {
    let labels = operator_labels(name, "Horizon", "testnet");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1,
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [
                                  {"name": "stellar-node", "image": "stellar/stellar-horizon:22.0.0",
                                   "volumeMounts": [{"name": "data", "mountPath": "/opt/stellar/data"},
                                                    {"name": "config", "mountPath": "/config", "readOnly": true}]},
                                  {"name": "stellar-health-check", "image": "stellar/health-check:v0.3.1"}],
                                       "volumes": [{"name": "data", "emptyDir": {}},
                                                   {"name": "config", "configMap": {"name": format!("{name}-config")}}]}}}
    })
}

/// The bed's captive-check (the real captive-core parser).
fn checker() -> Result<PathBuf, String> {
    let bed = bed()?;
    let dir = bed.run(&["bin-dir"])?;
    let bin = PathBuf::from(dir.trim()).join("captive-check");
    ensure(bin.is_file(), || {
        format!("{} missing: run tests/testbed/testbed build", bin.display())
    })?;
    Ok(bin)
}

/// Template hashes a Deployment went through, and every change made while a
/// StatefulSet of the network was unavailable (by its own status).
#[derive(Default)]
struct Seen {
    hashes: Vec<Option<String>>,
    unavailable: BTreeSet<String>,
    /// Every StatefulSet seen unavailable since the last reset: the check above ran
    /// against real disruptions.
    ever_unavailable: BTreeSet<String>,
    violations: Vec<String>,
}

/// Watches the namespace's StatefulSets and the Deployment `name`.
fn watch(ns: &TestNs, name: &str) -> (Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s1 = seen.clone();
    let sts_api = ns.api::<StatefulSet>();
    let sts = tokio::spawn(async move {
        let mut ev = watcher(sts_api, watcher::Config::default()).boxed();
        while let Some(e) = ev.next().await {
            if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = e {
                let n = s.metadata.name.clone().unwrap_or_default();
                let settled = observe::sts_state(&s).is_some_and(|w| w.settled);
                let mut st = s1.lock().expect("lock");
                if settled {
                    st.unavailable.remove(&n);
                } else {
                    st.ever_unavailable.insert(n.clone());
                    st.unavailable.insert(n);
                }
            }
        }
    });
    let s2 = seen.clone();
    let dep_api = ns.api::<Deployment>();
    let want = name.to_owned();
    let dep = tokio::spawn(async move {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={want}"));
        let mut ev = watcher(dep_api, cfg).boxed();
        while let Some(e) = ev.next().await {
            if let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = e {
                let h = d.spec.as_ref().and_then(|s| pod_template_hash(&s.template));
                let mut st = s2.lock().expect("lock");
                if st.hashes.last() != Some(&h) {
                    if !st.hashes.is_empty() && !st.unavailable.is_empty() {
                        let v = format!(
                            "{want} rolled to {h:?} while {:?} were unavailable",
                            st.unavailable
                        );
                        st.violations.push(v);
                    }
                    st.hashes.push(h);
                }
            }
        }
    });
    (seen, vec![sts, dep])
}

pub async fn horizon_reads_a_merged_captive_core_file_and_rolls_after_validators() -> TestResult {
    let bin = checker()?;
    let ns = TestNs::new("captive").await?;
    let n = ns.name.clone();
    let (inj, hook) =
        injector_with_webhook(&ns, &["--init-image", INIT_IMAGE, "--debounce", "0s"]).await?;
    let (seen, tasks) = watch(&ns, "h1");
    let result: TestResult = async {
        for v in ["v1", "v2"] {
            ns.create::<StellarNode>(stellar_node(v, "Validator", "testnet", false))
                .await?;
            ns.create::<StatefulSet>(operator_statefulset(v, "Validator", "testnet", 1))
                .await?;
        }
        let mut h1 = stellar_node("h1", "Horizon", "testnet", false);
        h1["metadata"]["annotations"] =
            json!({"stellar.org/captive-core-config": "/config/captive-core.cfg"});
        ns.create::<StellarNode>(h1).await?;
        ns.create::<ConfigMap>(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "h1-config"},
            "data": {"captive-core.cfg": CAPTIVE_CFG, "STELLAR_CORE_URL": "http://v1:11626"}}),
        )
        .await?;
        ns.create::<Deployment>(horizon_deployment("h1")).await?;
        let two = [svc("v1", &n), svc("v2", &n)];
        wait_peers(&ns, "h1", &two, 120).await?;

        // The pod the API server made: init container (captive flavour), env, emptyDir.
        let pod = pod_of(&ns, "h1", None).await?;
        let spec = pod.spec.as_ref().ok_or("spec")?;
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == "stellar-peers-config")
            .ok_or("no stellar-peers-config init container")?;
        let args = init.args.clone().unwrap_or_default();
        ensure(
            args.windows(2).any(|w| w == ["--flavour", "captive-core"]),
            || format!("init args {args:?}"),
        )?;
        ensure(
            args.windows(2)
                .any(|w| w == ["--base", "/config/captive-core.cfg"]),
            || format!("init args {args:?}"),
        )?;
        let main = spec
            .containers
            .iter()
            .find(|c| c.name == "stellar-node")
            .ok_or("main container")?;
        ensure(main.args.is_none() && main.command.is_none(), || {
            format!("args {:?}", main.args)
        })?;
        let env = env_get(&pod, "stellar-node", "CAPTIVE_CORE_CONFIG_PATH");
        ensure(env.as_deref() == Some(MERGED), || {
            format!("CAPTIVE_CORE_CONFIG_PATH {env:?}")
        })?;
        let status = annotation(&pod, "stellar.org/peers-injection-status").unwrap_or_default();
        ensure(status.contains("\"captive-merge\""), || {
            format!("status {status}")
        })?;

        // The init step's own command line over the kubelet's layout, judged by the parser.
        let root = repo_root().join("target/testbed/captive-tests").join(&n);
        let _ = std::fs::remove_dir_all(&root);
        let args = lay_out(&ns, &pod, &root).await?;
        let out = Command::new(env!("CARGO_BIN_EXE_stellar-peer-injector"))
            .args(&args)
            .arg("--termination-log")
            .arg(root.join("termination-log"))
            .output()
            .map_err(|e| e.to_string())?;
        ensure(out.status.success(), || {
            format!(
                "render-config {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let merged_path = args
            .iter()
            .skip_while(|a| *a != "--out")
            .nth(1)
            .ok_or("no --out")?;
        let merged =
            std::fs::read_to_string(merged_path).map_err(|e| format!("{merged_path}: {e}"))?;
        let judged = Command::new(&bin)
            .arg("--passphrase")
            .arg(TESTNET)
            .arg(merged_path)
            .output()
            .map_err(|e| e.to_string())?;
        ensure(judged.status.success(), || {
            format!(
                "captive-check refused it: {}\n{merged}",
                String::from_utf8_lossy(&judged.stdout)
            )
        })?;
        let t: toml::Table = merged.parse().map_err(|e| format!("{e}"))?;
        let pref: BTreeSet<String> = t
            .get("PREFERRED_PEERS")
            .and_then(|v| v.as_array())
            .ok_or("no top-level PREFERRED_PEERS")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        ensure(pref == BTreeSet::from(two.clone()), || {
            format!("PREFERRED_PEERS {pref:?}")
        })?;
        ensure(!merged.contains("KNOWN_PEERS"), || merged.clone())?;
        let _ = std::fs::remove_dir_all(&root);

        // A Horizon that names no captive-core file (the operator's, unannotated): env
        // mode, and a Warning Event on its StellarNode saying what to set.
        ns.create::<StellarNode>(stellar_node("h2", "Horizon", "testnet", false))
            .await?;
        ns.create::<Deployment>(horizon_deployment("h2")).await?;
        let evs = wait_event_about(
            &ns,
            "StellarNode",
            "h2",
            "PeersConfigNotMerged",
            Duration::from_secs(60),
        )
        .await?;
        let note = evs
            .iter()
            .filter_map(|e| e.note.as_deref())
            .collect::<Vec<_>>()
            .join(" | ");
        ensure(
            note.contains("stellar.org/captive-core-config")
                && note.contains("--captive-core-config-path"),
            || format!("Event notes: {note}"),
        )?;
        ns.api::<Deployment>()
            .delete("h2", &Default::default())
            .await
            .map_err(|e| e.to_string())?;

        // A peer change: v3 joins. v1 and v2 roll first; h1 rolls once, after them, and
        // never while a testnet StatefulSet is unavailable (v3 starting included).
        let before = {
            let mut st = seen.lock().expect("lock");
            st.ever_unavailable.clear();
            st.hashes.len()
        };
        ns.create::<StellarNode>(stellar_node("v3", "Validator", "testnet", false))
            .await?;
        ns.create::<StatefulSet>(operator_statefulset("v3", "Validator", "testnet", 1))
            .await?;
        let three = [svc("v1", &n), svc("v2", &n), svc("v3", &n)];
        wait_peers(&ns, "h1", &three, 180).await?;
        // Let a second roll show itself if there were one.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let st = seen.lock().expect("lock");
        let rolls = st.hashes.len() - before;
        ensure(rolls == 1, || {
            format!(
                "h1 went through {rolls} template hashes after the change: {:?}",
                st.hashes
            )
        })?;
        ensure(st.violations.is_empty(), || format!("{:?}", st.violations))?;
        // The validators did roll (and v3 started) meanwhile: h1 waited for real slots.
        let want: BTreeSet<String> = ["v1", "v2", "v3"].iter().map(|s| (*s).to_owned()).collect();
        ensure(st.ever_unavailable == want, || {
            format!("unavailable meanwhile: {:?}", st.ever_unavailable)
        })?;
        Ok(())
    }
    .await;
    for t in tasks {
        t.abort();
    }
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// The operator's read replicas of validator `name`: StatefulSet `{name}-read`, the
/// validator's labels plus `stellar.org/role=read-replica`, container `stellar-core`
/// running the startup script.
fn read_replicas(name: &str, replicas: i32) -> serde_json::Value {
    let mut labels = operator_labels(name, "Validator", "testnet");
    labels["stellar.org/role"] = json!("read-replica");
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("{name}-read"), "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": format!("{name}-read"),
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name, "stellar.org/role": "read-replica"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [
                    {"name": "stellar-core", "image": "stellar/stellar-core:22.1.0",
                     "command": ["/bin/bash", "/config/startup.sh"],
                     "volumeMounts": [{"name": "config", "mountPath": "/config"}]}],
                         "volumes": [{"name": "config", "configMap": {"name": format!("{name}-read-config")}}]}
            }
        }
    })
}

/// Read replicas get env vars and the snippet, never count as their validator's pods
/// (which would keep it from ever settling and hold the network's slot), and are never
/// rolled: a peer change rolls v1 and v2, and leaves v1-read's template alone.
pub async fn read_replicas_neither_hold_the_slot_nor_roll() -> TestResult {
    let ns = TestNs::new("readrep").await?;
    let n = ns.name.clone();
    let (inj, hook) =
        injector_with_webhook(&ns, &["--init-image", INIT_IMAGE, "--debounce", "0s"]).await?;
    let result: TestResult = async {
        for v in ["v1", "v2"] {
            ns.create::<StellarNode>(stellar_node(v, "Validator", "testnet", false))
                .await?;
            ns.create::<StatefulSet>(operator_statefulset(v, "Validator", "testnet", 1))
                .await?;
        }
        ns.create::<StatefulSet>(read_replicas("v1", 2)).await?;
        wait_peers(&ns, "v2", &[svc("v1", &n)], 120).await?;
        // The replicas' pods: injected in env mode, their script left alone.
        let api = ns.api::<Pod>();
        let pods = wait_for(
            Duration::from_secs(120),
            "two injected read replica pods",
            || {
                let api = api.clone();
                async move {
                    let l = api
                        .list(&ListParams::default().labels("stellar.org/role=read-replica"))
                        .await
                        .ok()?;
                    (l.items.len() == 2
                        && l.items
                            .iter()
                            .all(|p| annotation(p, "stellar.org/peers-hash").is_some()))
                    .then_some(l.items)
                }
            },
        )
        .await?;
        for p in &pods {
            let spec = p.spec.as_ref().ok_or("spec")?;
            ensure(spec.init_containers.is_none(), || {
                format!("{:?} got an init container", p.metadata.name)
            })?;
            let c = &spec.containers[0];
            ensure(
                c.command.as_deref()
                    == Some(&["/bin/bash".to_owned(), "/config/startup.sh".to_owned()][..]),
                || format!("command {:?}", c.command),
            )?;
            ensure(
                env_get(p, "stellar-core", "STELLAR_PEERS").as_deref()
                    == Some(svc("v2", &n).as_str()),
                || {
                    format!(
                        "{:?}: STELLAR_PEERS {:?}",
                        p.metadata.name,
                        env_get(p, "stellar-core", "STELLAR_PEERS")
                    )
                },
            )?;
            let status = annotation(p, "stellar.org/peers-injection-status").unwrap_or_default();
            ensure(status.contains("\"env\""), || format!("status {status}"))?;
        }
        // A peer change: v1 and v2 both roll (v1 settles although its replicas' pods
        // share its instance label), the replicas' template is never annotated.
        ns.create::<StellarNode>(stellar_node("v3", "Validator", "testnet", false))
            .await?;
        ns.create::<StatefulSet>(operator_statefulset("v3", "Validator", "testnet", 1))
            .await?;
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3"], 180).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let sts = ns.api::<StatefulSet>();
        for v in ["v1", "v2"] {
            let s = sts.get(v).await.map_err(|e| e.to_string())?;
            ensure(template_hash(&s).is_some(), || {
                format!("{v} was not rolled")
            })?;
        }
        let read = sts.get("v1-read").await.map_err(|e| e.to_string())?;
        ensure(template_hash(&read).is_none(), || {
            "v1-read's template was annotated: rolled as a validator".into()
        })?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}
