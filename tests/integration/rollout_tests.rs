//! Rolling update on peer change, on the real control plane.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use stellar_peer_injector::crd::StellarNode;
use stellar_peer_injector::rollout::observe;

use crate::support::*;

/// Unavailable by the injector's own rule (`rollout::observe`): its controller has not
/// observed, readied and (RollingUpdate) rolled it. An OnDelete StatefulSet whose
/// template changed while its old pod is still ready is available; a new validator
/// that is still starting is not.
fn unavailable(s: &StatefulSet) -> bool {
    observe::sts_state(s).is_none_or(|w| !w.settled)
}

type Hashes = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Appends the StatefulSet's template hash to its history when it changed.
fn record_hash(hashes: &Hashes, s: &StatefulSet) {
    if let Some(h) = template_hash(s) {
        let mut hs = hashes.lock().expect("lock");
        let list = hs
            .entry(s.metadata.name.clone().unwrap_or_default())
            .or_default();
        if list.last() != Some(&h) {
            list.push(h);
        }
    }
}

/// Watches StatefulSets and records, per network label, the most rolling at once,
/// and every template hash each StatefulSet carried.
pub struct Monitor {
    max_rolling: Arc<Mutex<BTreeMap<String, usize>>>,
    hashes: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    pub fn start(ns: &TestNs) -> Self {
        let max_rolling: Arc<Mutex<BTreeMap<String, usize>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        let hashes: Arc<Mutex<BTreeMap<String, Vec<String>>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        let (m2, h2) = (max_rolling.clone(), hashes.clone());
        let api = ns.api::<StatefulSet>();
        let task = tokio::spawn(async move {
            let mut state: BTreeMap<String, StatefulSet> = BTreeMap::new();
            // A re-list (the watch expired, or the apiserver was slow) is collected apart
            // and replaces the state when complete, so objects deleted meanwhile and
            // stale versions never mix with fresh ones.
            let mut relist: Option<BTreeMap<String, StatefulSet>> = None;
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Init) => {
                        relist = Some(BTreeMap::new());
                        continue;
                    }
                    Ok(watcher::Event::InitApply(s)) => {
                        record_hash(&h2, &s);
                        if let Some(r) = relist.as_mut() {
                            r.insert(s.metadata.name.clone().unwrap_or_default(), s);
                        }
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(r) = relist.take() {
                            state = r;
                        }
                    }
                    Ok(watcher::Event::Apply(s)) => {
                        record_hash(&h2, &s);
                        state.insert(s.metadata.name.clone().unwrap_or_default(), s);
                    }
                    Ok(watcher::Event::Delete(s)) => {
                        state.remove(&s.metadata.name.clone().unwrap_or_default());
                    }
                    _ => {}
                }
                let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in state.values() {
                    let net = s
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("stellar-network"))
                        .cloned()
                        .unwrap_or_default();
                    if unavailable(s) {
                        per.entry(net)
                            .or_default()
                            .push(s.metadata.name.clone().unwrap_or_default());
                    }
                }
                let mut m = m2.lock().expect("lock");
                for (net, names) in per {
                    let e = m.entry(net.clone()).or_default();
                    if names.len() > *e {
                        *e = names.len();
                        if names.len() > 1 {
                            eprintln!("monitor: {net} unavailable at once: {names:?}");
                        }
                    }
                }
            }
        });
        Self {
            max_rolling,
            hashes,
            task,
        }
    }

    pub fn reset(&self) {
        self.max_rolling.lock().expect("lock").clear();
    }

    pub fn max_rolling(&self, net: &str) -> usize {
        self.max_rolling
            .lock()
            .expect("lock")
            .get(net)
            .copied()
            .unwrap_or(0)
    }

    pub fn hash_changes(&self, sts: &str) -> usize {
        self.hashes
            .lock()
            .expect("lock")
            .get(sts)
            .map_or(0, Vec::len)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn setup(ns: &TestNs, nodes: &[(&str, &str)], kind_on_delete: &[&str]) -> TestResult {
    for (name, net) in nodes {
        ns.create::<StellarNode>(stellar_node(name, "Validator", net, false))
            .await?;
    }
    for (name, net) in nodes {
        let mut sts = operator_statefulset(name, "Validator", net, 1);
        if kind_on_delete.contains(name) {
            sts["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        }
        ns.create::<StatefulSet>(sts).await?;
    }
    Ok(())
}

pub async fn add_validator(ns: &TestNs, name: &str, net: &str) -> TestResult {
    ns.create::<StellarNode>(stellar_node(name, "Validator", net, false))
        .await?;
    ns.create::<StatefulSet>(operator_statefulset(name, "Validator", net, 1))
        .await?;
    Ok(())
}

async fn sts_versions(ns: &TestNs) -> Result<BTreeMap<String, (String, Option<i64>)>, String> {
    let l = ns
        .api::<StatefulSet>()
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(l.items
        .into_iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                (
                    s.metadata.resource_version.clone().unwrap_or_default(),
                    s.metadata.generation,
                ),
            )
        })
        .collect())
}

pub async fn peer_changes_roll_one_statefulset_at_a_time() -> TestResult {
    let ns = TestNs::new("roll").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let args = ["--debounce", "1s"];
    let inj = Injector::start(&n, &bed.kubeconfig, &args, true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let result = async {
        setup(
            &ns,
            &[
                ("v1", "testnet"),
                ("v2", "testnet"),
                ("v3", "testnet"),
                ("m1", "mainnet"),
                ("m2", "mainnet"),
            ],
            &[],
        )
        .await?;
        // A Horizon node (a Deployment) of the same network.
        ns.create::<StellarNode>(stellar_node("h1", "Horizon", "testnet", false))
            .await?;
        ns.create::<k8s_openapi::api::apps::v1::Deployment>(
            crate::injection_tests::horizon_deployment("h1", "testnet"),
        )
        .await?;
        wait_peers(
            &ns,
            "h1",
            &[svc("v1", &n), svc("v2", &n), svc("v3", &n)],
            60,
        )
        .await?;
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3"], 60).await?;
        wait_peers(&ns, "m1", &[svc("m2", &n)], 60).await?;
        // A fresh network: nothing is stale, so nothing was annotated.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = sts_versions(&ns).await?;
        for v in ["v1", "v2", "v3", "m1", "m2"] {
            ensure(monitor.hash_changes(v) == 0, || {
                format!("{v} was annotated although nothing changed")
            })?;
        }
        monitor.reset();

        // Add a fourth validator: v1..v3 roll, one StatefulSet at a time.
        add_validator(&ns, "v4", "testnet").await?;
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3", "v4"], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        ensure(monitor.max_rolling("testnet") == 1, || {
            format!(
                "{} testnet StatefulSets rolled at once",
                monitor.max_rolling("testnet")
            )
        })?;
        // The Horizon Deployment rolls too, after every validator of its network.
        let all4: Vec<String> = ["v1", "v2", "v3", "v4"]
            .iter()
            .map(|o| svc(o, &n))
            .collect();
        wait_peers(&ns, "h1", &all4, 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        let events: kube::Api<k8s_openapi::api::events::v1::Event> = ns.api();
        let evs = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let when = |kind: &str, name: &str| {
            evs.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("PeersChanged"))
                .filter(|e| {
                    e.regarding.as_ref().is_some_and(|r| {
                        r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                    })
                })
                .filter_map(|e| e.event_time.as_ref().map(|t| t.0))
                .max()
        };
        let h1_at = when("Deployment", "h1").ok_or("no PeersChanged Event on Deployment h1")?;
        for v in ["v1", "v2", "v3"] {
            let at = when("StatefulSet", v).ok_or(format!("no PeersChanged Event on {v}"))?;
            ensure(at <= h1_at, || {
                format!("Horizon rolled before validator {v}")
            })?;
        }
        // Another network is untouched.
        let after = sts_versions(&ns).await?;
        for m in ["m1", "m2"] {
            ensure(before.get(m) == after.get(m), || {
                format!(
                    "mainnet {m} changed: {:?} -> {:?}",
                    before.get(m),
                    after.get(m)
                )
            })?;
        }
        // The template hash is what the new pod got, and an Event says what changed.
        let v1 = ns
            .api::<StatefulSet>()
            .get("v1")
            .await
            .map_err(|e| e.to_string())?;
        let (_, pod_hash) = pod_peers(&ns, "v1").await.ok_or("v1 pod")?;
        ensure(template_hash(&v1) == pod_hash, || {
            format!("template {:?} != pod {pod_hash:?}", template_hash(&v1))
        })?;
        let events: kube::Api<k8s_openapi::api::events::v1::Event> = ns.api();
        let evs = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            evs.items.iter().any(|e| {
                e.reason.as_deref() == Some("PeersChanged")
                    && e.note
                        .as_deref()
                        .unwrap_or("")
                        .contains(&format!("added [{}]", svc("v4", &n)))
            }),
            || {
                format!(
                    "no PeersChanged Event naming v4: {:?}",
                    evs.items.iter().map(|e| e.note.clone()).collect::<Vec<_>>()
                )
            },
        )?;
        let metrics = inj.metrics().await;
        ensure(
            metrics.contains(
                "stellar_peer_injector_rollouts_total{network=\"testnet\",outcome=\"started\"} 4",
            ),
            || {
                format!(
                    "rollout metric: {}",
                    metrics
                        .lines()
                        .filter(|l| l.contains("rollouts"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            },
        )?;

        // Restarting the injector with nothing changed patches nothing.
        inj.kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stable = sts_versions(&ns).await?;
        let inj2 = Injector::start(&n, &bed.kubeconfig, &args, true).await?;
        // In a cluster the Service follows the new replica; here the URL must.
        register_webhook(&ns.client, &n, &inj2.url(), &inj2.ca_pem()?, "Fail", true).await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let later = sts_versions(&ns).await?;
        let gens = |m: &BTreeMap<String, (String, Option<i64>)>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.1))
                .collect::<BTreeMap<_, _>>()
        };
        ensure(gens(&stable) == gens(&later), || {
            format!(
                "restart changed templates: {:?} -> {:?}",
                gens(&stable),
                gens(&later)
            )
        })?;

        // Suspending a validator removes it from the others' peers.
        monitor.reset();
        let pp = PatchParams::default();
        ns.api::<StellarNode>()
            .patch(
                "v3",
                &pp,
                &Patch::Merge(json!({"spec": {"suspended": true}})),
            )
            .await
            .map_err(|e| e.to_string())?;
        ns.api::<StatefulSet>()
            .patch("v3", &pp, &Patch::Merge(json!({"spec": {"replicas": 0}})))
            .await
            .map_err(|e| e.to_string())?;
        wait_peers(&ns, "v1", &[svc("v2", &n), svc("v4", &n)], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj2.log_text()))?;
        wait_peers(&ns, "v2", &[svc("v1", &n), svc("v4", &n)], 120).await?;
        // Deleting one likewise.
        ns.api::<StellarNode>()
            .delete("v4", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        ns.api::<StatefulSet>()
            .delete("v4", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        wait_peers(&ns, "v1", &[svc("v2", &n)], 120).await?;
        wait_peers(&ns, "v2", &[svc("v1", &n)], 120).await?;
        ensure(monitor.max_rolling("testnet") <= 1, || {
            format!(
                "{} testnet StatefulSets rolled at once",
                monitor.max_rolling("testnet")
            )
        })?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

pub async fn a_burst_within_the_debounce_window_rolls_once() -> TestResult {
    let ns = TestNs::new("burst").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(
        &n,
        &bed.kubeconfig,
        &["--debounce", "4s", "--max-concurrent-rollouts", "3"],
        true,
    )
    .await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let result = async {
        setup(&ns, &[("v1", "testnet"), ("v2", "testnet")], &[]).await?;
        wait_peers(&ns, "v1", &[svc("v2", &n)], 60).await?;
        wait_peers(&ns, "v2", &[svc("v1", &n)], 60).await?;
        // Three changes in quick succession (well within 4 s).
        for name in ["v3", "v4", "v5"] {
            add_validator(&ns, name, "testnet").await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let want: Vec<String> = ["v2", "v3", "v4", "v5"]
            .iter()
            .map(|o| svc(o, &n))
            .collect();
        wait_peers(&ns, "v1", &want, 90)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure(monitor.hash_changes("v1") == 1, || {
            format!("v1 template changed {} times", monitor.hash_changes("v1"))
        })?;
        ensure(monitor.hash_changes("v2") == 1, || {
            format!("v2 template changed {} times", monitor.hash_changes("v2"))
        })?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

pub async fn on_delete_statefulsets_and_leader_election() -> TestResult {
    let ns = TestNs::new("ondel").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    // Two injectors at once: only the Lease holder may roll.
    let a = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    let b = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    let hook = register_webhook(&ns.client, &n, &a.url(), &a.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let result = async {
        setup(&ns, &[("v1", "testnet"), ("v2", "testnet")], &["v1", "v2"]).await?;
        wait_peers(&ns, "v1", &[svc("v2", &n)], 60).await?;
        let first_uid = |ns: &TestNs| {
            let api = ns.api::<Pod>();
            async move { api.get("v1-0").await.ok().and_then(|p| p.metadata.uid) }
        };
        let uid_before = first_uid(&ns).await.ok_or("v1-0")?;
        wait_peers(&ns, "v2", &[svc("v1", &n)], 60).await?;
        monitor.reset();
        add_validator(&ns, "v3", "testnet").await?;
        // OnDelete: the loop deletes the stale pod itself; the replacement gets the new list.
        wait_peers(&ns, "v1", &[svc("v2", &n), svc("v3", &n)], 120)
            .await
            .map_err(|e| format!("{e}\nA:\n{}\nB:\n{}", a.log_text(), b.log_text()))?;
        wait_peers(&ns, "v2", &[svc("v1", &n), svc("v3", &n)], 120).await?;
        ensure(
            first_uid(&ns).await.is_some_and(|u| u != uid_before),
            || "v1-0 was not replaced".into(),
        )?;
        ensure(monitor.max_rolling("testnet") <= 1, || {
            format!("{} rolled at once", monitor.max_rolling("testnet"))
        })?;
        let (ma, mb) = (a.metrics().await, b.metrics().await);
        let leader_line = |m: &str| {
            m.lines()
                .find(|l| l.starts_with("stellar_peer_injector_rollout_leader "))
                .unwrap_or("")
                .to_owned()
        };
        let leaders = [&ma, &mb]
            .iter()
            .filter(|m| leader_line(m) == "stellar_peer_injector_rollout_leader 1")
            .count();
        ensure(leaders == 1, || {
            format!(
                "{leaders} leaders: A {:?}, B {:?}",
                leader_line(&ma),
                leader_line(&mb)
            )
        })?;
        let acted = [&ma, &mb]
            .iter()
            .filter(|m| m.contains("outcome=\"started\""))
            .count();
        ensure(acted == 1, || format!("{acted} injectors acted"))?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}
