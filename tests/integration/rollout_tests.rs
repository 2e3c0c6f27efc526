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

/// One StatefulSet as the monitor keeps it.
struct Seen {
    sts: StatefulSet,
    /// The template hash it was first seen with (`None`: created without one).
    first_hash: Option<String>,
    /// Its template hash changed since it was first seen: the injector rolled it. From
    /// then on, whenever it is unavailable, that is because of us.
    touched: bool,
}

#[derive(Default)]
struct MonitorState {
    seen: BTreeMap<String, Seen>,
    /// Per network: the most StatefulSets unavailable because of us at once.
    max_ours: BTreeMap<String, usize>,
    /// Rolls (a RollingUpdate template change) that started while another workload of
    /// the network was already unavailable, whatever the cause.
    violations: Vec<String>,
    /// Every template hash each StatefulSet carried, in order.
    hashes: BTreeMap<String, Vec<String>>,
}

fn network_of(s: &StatefulSet) -> String {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("stellar-network"))
        .cloned()
        .unwrap_or_default()
}

fn status_line(name: &str, s: &Seen) -> String {
    let st = s.sts.status.clone().unwrap_or_default();
    let short = |h: Option<String>| h.map(|h| h.chars().take(8).collect::<String>());
    format!(
        "{name}: gen {:?}/{:?} ready {:?}/{} updated {:?} rev {} hash {:?}{}{}",
        s.sts.metadata.generation,
        st.observed_generation,
        st.ready_replicas,
        st.replicas,
        st.updated_replicas,
        if st.current_revision.is_some() && st.current_revision == st.update_revision {
            "current"
        } else {
            "rolling"
        },
        short(template_hash(&s.sts)),
        if unavailable(&s.sts) {
            " UNAVAILABLE"
        } else {
            ""
        },
        if s.touched { " (rolled by us)" } else { "" },
    )
}

impl MonitorState {
    fn apply(&mut self, s: StatefulSet, log: &mut Vec<String>) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let hash = template_hash(&s);
        if let Some(h) = &hash {
            let list = self.hashes.entry(name.clone()).or_default();
            if list.last() != Some(h) {
                list.push(h.clone());
            }
        }
        let net = network_of(&s);
        let on_delete = observe::sts_state(&s).is_some_and(|w| w.on_delete);
        let (first_hash, was_touched, old_hash) = match self.seen.get(&name) {
            Some(old) => (old.first_hash.clone(), old.touched, template_hash(&old.sts)),
            None => (hash.clone(), false, hash.clone()),
        };
        let changed = old_hash != hash;
        if changed && !on_delete {
            // Our roll of this one starts now: nothing else of its network may be
            // unavailable at this point (in the watch's commit order).
            let others: Vec<String> = self
                .seen
                .iter()
                .filter(|(n, o)| {
                    // A workload scaled to zero is leaving its network, not holding a slot;
                    // one the operator marked skip-wait was released from it on purpose.
                    let member = o.sts.spec.as_ref().and_then(|s| s.replicas) != Some(0)
                        && o.sts
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("stellar.org/rollout"))
                            .is_none_or(|v| v != "skip-wait");
                    **n != name && member && network_of(&o.sts) == net && unavailable(&o.sts)
                })
                .map(|(n, _)| n.clone())
                .collect();
            if !others.is_empty() {
                self.violations.push(format!(
                    "{name} started rolling while {others:?} of {net} were unavailable"
                ));
            }
        }
        let touched = was_touched || first_hash != hash;
        self.seen.insert(
            name.clone(),
            Seen {
                sts: s,
                first_hash,
                touched,
            },
        );
        log.push(format!("apply {name}"));
    }

    fn account(&mut self, log: &mut Vec<String>) {
        let mut ours: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, s) in &self.seen {
            if s.touched && unavailable(&s.sts) {
                ours.entry(network_of(&s.sts))
                    .or_default()
                    .push(name.clone());
            }
        }
        for (net, names) in ours {
            let e = self.max_ours.entry(net.clone()).or_default();
            if names.len() > *e {
                *e = names.len();
                if names.len() > 1 {
                    eprintln!("monitor: {net} unavailable at once because of us: {names:?}");
                }
            }
        }
        for (name, s) in &self.seen {
            log.push(format!("  {}", status_line(name, s)));
        }
    }
}

/// Watches StatefulSets and records, per network label, the most of them unavailable
/// *because of us* at once (unavailable by the injector's own rule, after the injector
/// changed their template), every roll that started while another workload of its
/// network was unavailable for any reason, and every template hash each carried. A
/// new validator that is still starting is not our doing, but holds the slot: the
/// injector must not start a roll beside it. The timeline goes to
/// `<state dir>/logs/monitor-<namespace>.log`.
pub struct Monitor {
    state: Arc<Mutex<MonitorState>>,
    timeline: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    pub fn start(ns: &TestNs) -> Self {
        let state: Arc<Mutex<MonitorState>> = Arc::default();
        let timeline = state_dir()
            .join("logs")
            .join(format!("monitor-{}.log", ns.name));
        let s2 = state.clone();
        let path = timeline.clone();
        let api = ns.api::<StatefulSet>();
        let task = tokio::spawn(async move {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&path).ok();
            let t0 = std::time::Instant::now();
            // A re-list (the watch expired, or the apiserver was slow) is collected apart
            // and replaces the state when complete, so objects deleted meanwhile and
            // stale versions never mix with fresh ones.
            let mut relist: Option<Vec<StatefulSet>> = None;
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                let mut log = Vec::new();
                {
                    let mut st = s2.lock().expect("lock");
                    match ev {
                        Ok(watcher::Event::Init) => {
                            relist = Some(Vec::new());
                            continue;
                        }
                        Ok(watcher::Event::InitApply(s)) => {
                            if let Some(r) = relist.as_mut() {
                                r.push(s);
                            }
                            continue;
                        }
                        Ok(watcher::Event::InitDone) => {
                            let fresh = relist.take().unwrap_or_default();
                            let names: Vec<String> = fresh
                                .iter()
                                .map(|s| s.metadata.name.clone().unwrap_or_default())
                                .collect();
                            st.seen.retain(|n, _| names.contains(n));
                            for s in fresh {
                                st.apply(s, &mut log);
                            }
                            log.push("relisted".into());
                        }
                        Ok(watcher::Event::Apply(s)) => st.apply(s, &mut log),
                        Ok(watcher::Event::Delete(s)) => {
                            let name = s.metadata.name.clone().unwrap_or_default();
                            st.seen.remove(&name);
                            log.push(format!("delete {name}"));
                        }
                        Err(e) => {
                            log.push(format!("watch error: {e}"));
                        }
                    }
                    st.account(&mut log);
                }
                if let Some(f) = file.as_mut() {
                    let at = t0.elapsed().as_secs_f64();
                    for l in log {
                        let _ = writeln!(f, "{at:9.3} {l}");
                    }
                }
            }
        });
        Self {
            state,
            timeline,
            task,
        }
    }

    /// Waits until every StatefulSet seen is available, then forgets the maxima: what
    /// setup left starting is not counted against what follows.
    pub async fn settle_and_reset(&self, secs: u64) -> TestResult {
        wait_for(
            Duration::from_secs(secs),
            "every StatefulSet available",
            || async {
                let st = self.state.lock().expect("lock");
                (!st.seen.is_empty() && st.seen.values().all(|s| !unavailable(&s.sts)))
                    .then_some(())
            },
        )
        .await
        .map_err(|e| format!("{e}; timeline in {}", self.timeline.display()))?;
        let mut st = self.state.lock().expect("lock");
        st.max_ours.clear();
        st.violations.clear();
        Ok(())
    }

    /// The most StatefulSets of `net` unavailable because of us at once.
    pub fn max_rolling(&self, net: &str) -> usize {
        let st = self.state.lock().expect("lock");
        st.max_ours.get(net).copied().unwrap_or(0)
    }

    /// Fails unless at most `max` of `net` were unavailable because of us at once, and
    /// no roll started beside another unavailable workload.
    pub fn check(&self, net: &str, max: usize) -> TestResult {
        let st = self.state.lock().expect("lock");
        let most = st.max_ours.get(net).copied().unwrap_or(0);
        let violations: Vec<&String> = st
            .violations
            .iter()
            .filter(|v| v.contains(&format!(" of {net} ")))
            .collect();
        ensure(most <= max && violations.is_empty(), || {
            format!(
                "{most} {net} StatefulSets unavailable at once because of us (at most {max} allowed); \
                 rolls started beside an unavailable one: {violations:?}; timeline in {}",
                self.timeline.display()
            )
        })
    }

    pub fn hash_changes(&self, sts: &str) -> usize {
        let st = self.state.lock().expect("lock");
        st.hashes.get(sts).map_or(0, Vec::len)
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
        monitor.settle_and_reset(120).await?;

        // Add a fourth validator: v1..v3 roll, one StatefulSet at a time.
        add_validator(&ns, "v4", "testnet").await?;
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3", "v4"], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        monitor.check("testnet", 1)?;
        ensure(monitor.max_rolling("testnet") == 1, || {
            format!(
                "{} testnet StatefulSets were seen rolling because of us; expected 1",
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
        monitor.settle_and_reset(120).await?;
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
        monitor.check("testnet", 1)?;
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
        monitor.settle_and_reset(120).await?;
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
        monitor.check("testnet", 1)?;
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
