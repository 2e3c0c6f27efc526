//! Linked clusters on two real control planes side by side: the shared bed ("a") and
//! a second bed ("b", `testkit::second_bed`), each with its own injector, linked by
//! Secrets that hold the other's kubeconfig.
//!
//! Every trial uses a network of its own, so trials sharing bed b never see each
//! other's validators (a link watches the whole linked cluster).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;

use crate::support::*;

/// A validator StellarNode, with `externalDns.hostname` when `external` is given.
fn validator(name: &str, net: &str, external: Option<&str>) -> Value {
    let mut v = stellar_node(name, "Validator", net, false);
    if let Some(h) = external {
        v["spec"]["validatorConfig"] = json!({"externalDns": {"hostname": h, "ttl": 300}});
    }
    v
}

/// Validators named `name` in `ns` of cluster `cluster`, each with a StatefulSet shaped
/// like the operator's and the external name `<name>.<net>.<cluster>.example.org`.
async fn add_validators(net: &str, list: &[(&TestNs, &str, &str)]) -> TestResult {
    for (ns, n, c) in list {
        let ext = format!("{n}.{net}.{c}.example.org");
        ns.create::<StellarNode>(validator(n, net, Some(&ext)))
            .await?;
        ns.create::<StatefulSet>(operator_statefulset(n, "Validator", net, 1))
            .await?;
    }
    Ok(())
}

/// Whether StatefulSet `name` is settled by the rollout loop's rule (`None`: not read).
async fn sts_settled(ns: &TestNs, name: &str) -> Option<bool> {
    let s = ns.api::<StatefulSet>().get_opt(name).await.ok().flatten()?;
    Some(stellar_peer_injector::rollout::observe::sts_state(&s).is_some_and(|w| w.settled))
}

/// Waits until StatefulSet `name` is (or is not) settled.
async fn wait_settled(ns: &TestNs, name: &str, settled: bool, secs: u64) -> TestResult {
    let what = format!("{name} {}settled", if settled { "" } else { "not " });
    wait_for(Duration::from_secs(secs), &what, || async {
        (sts_settled(ns, name).await == Some(settled)).then_some(())
    })
    .await
}

/// A link Secret in `ns` for cluster `cluster`, holding the kubeconfig at `path`.
async fn link(
    ns: &TestNs,
    cluster: &str,
    kubeconfig: &std::path::Path,
    lease_namespace: &str,
) -> TestResult {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    ns.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("link-{cluster}"),
                     "labels": {"stellar.org/remote-cluster": "true"},
                     "annotations": {"stellar.org/cluster-name": cluster,
                                     "stellar.org/lease-namespace": lease_namespace}},
        "stringData": {"kubeconfig": text}
    }))
    .await
    .map(|_| ())
}

/// Waits until `instance`'s Ready pod has exactly `want` (in any order) as peers.
async fn wait_sorted(
    ns: &TestNs,
    instance: &str,
    want: &[&str],
    secs: u64,
    inj: &Injector,
) -> TestResult {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    match wait_peers(ns, instance, &want, secs).await {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "{e}\nlast seen: {:?}\ninjector log:\n{}",
            pod_peers(ns, instance).await,
            tail(&inj.log_text(), 40)
        )),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn wait_metric(inj: &Injector, series: &str, want: Option<f64>, secs: u64) -> TestResult {
    let r = wait_for(
        Duration::from_secs(secs),
        &format!("{series} = {want:?}"),
        || async { (metric_value(&inj.metrics().await, series) == want).then_some(()) },
    )
    .await;
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let m = inj.metrics().await;
            let remote: Vec<&str> = m.lines().filter(|l| l.contains("remote")).collect();
            Err(format!(
                "{e}\nremote metrics:\n{}\nlog:\n{}",
                remote.join("\n"),
                tail(&inj.log_text(), 40)
            ))
        }
    }
}

fn template_hashes(list: &[StatefulSet]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                template_hash(s),
            )
        })
        .collect()
}

async fn statefulsets(ns: &TestNs) -> Result<Vec<StatefulSet>, String> {
    ns.api::<StatefulSet>()
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// Two namespaces, one in each bed, linked both ways (a link Secret in each naming the
/// other's namespace for its rollout flags), each with its own injector (`--cluster-name`
/// a and b, debounce 1 s) registered as its bed's webhook: the start of the trials that
/// link both ways.
struct LinkedPair {
    ns_a: TestNs,
    ns_b: TestNs,
    inj_a: Injector,
    inj_b: Injector,
    hooks: [String; 2],
}

impl LinkedPair {
    async fn start(prefix_a: &str, prefix_b: &str) -> Result<Self, String> {
        let (a, b) = (bed()?, second_bed()?);
        let ns_a = TestNs::new(prefix_a).await?;
        let ns_b = TestNs::with_client(b.client().await?, prefix_b).await?;
        link(&ns_a, "b", &b.kubeconfig, &ns_b.name).await?;
        link(&ns_b, "a", &a.kubeconfig, &ns_a.name).await?;
        let start = |ns: &TestNs, me: &'static str, kubeconfig: std::path::PathBuf| {
            let ns = ns.name.clone();
            async move {
                let flags = [
                    "--remote-secret-namespace",
                    &ns,
                    "--cluster-name",
                    me,
                    "--debounce",
                    "1s",
                ];
                Injector::start(&ns, &kubeconfig, &flags, true).await
            }
        };
        let inj_a = start(&ns_a, "a", a.kubeconfig.clone()).await?;
        let inj_b = start(&ns_b, "b", b.kubeconfig.clone()).await?;
        let hook_a = register_webhook(
            &ns_a.client,
            &ns_a.name,
            &inj_a.url(),
            &inj_a.ca_pem()?,
            "Fail",
            true,
        )
        .await?;
        let hook_b = register_webhook(
            &ns_b.client,
            &ns_b.name,
            &inj_b.url(),
            &inj_b.ca_pem()?,
            "Fail",
            true,
        )
        .await?;
        Ok(Self {
            ns_a,
            ns_b,
            inj_a,
            inj_b,
            hooks: [hook_a, hook_b],
        })
    }
}

/// Removes the pair's webhook registrations.
async fn unhook(ns_a: &TestNs, ns_b: &TestNs, hooks: &[String; 2]) {
    delete_webhook(&ns_a.client, &hooks[0]).await;
    delete_webhook(&ns_b.client, &hooks[1]).await;
}

pub async fn multicluster_validators_of_linked_clusters_get_each_others_external_addresses()
-> TestResult {
    let (a, b) = (bed()?, second_bed()?);
    let LinkedPair {
        ns_a,
        ns_b,
        inj_a,
        inj_b,
        hooks,
    } = LinkedPair::start("mca", "mcb").await?;
    let net = ns_a.name.clone();
    let ext = |n: &str, c: &str| format!("{n}.{net}.{c}.example.org");
    let ext_addr = |n: &str, c: &str| format!("{}:11625", ext(n, c));
    let result = async {
        // a1 and b1 have an external name; a2 and b2 do not.
        ns_a.create::<StellarNode>(validator("a1", &net, Some(&ext("a1", "a"))))
            .await?;
        ns_a.create::<StellarNode>(validator("a2", &net, None))
            .await?;
        ns_b.create::<StellarNode>(validator("b1", &net, Some(&ext("b1", "b"))))
            .await?;
        ns_b.create::<StellarNode>(validator("b2", &net, None))
            .await?;
        for (ns, n) in [(&ns_a, "a1"), (&ns_a, "a2"), (&ns_b, "b1"), (&ns_b, "b2")] {
            ns.create::<StatefulSet>(operator_statefulset(n, "Validator", &net, 1))
                .await?;
        }
        let (a1, a2) = (svc("a1", &ns_a.name), svc("a2", &ns_a.name));
        let (b1, b2) = (svc("b1", &ns_b.name), svc("b2", &ns_b.name));
        // Own cluster's in-cluster names, the other's external names, never itself, and
        // never a remote validator without an external name.
        wait_sorted(&ns_a, "a1", &[&a2, &ext_addr("b1", "b")], 120, &inj_a).await?;
        wait_sorted(&ns_a, "a2", &[&a1, &ext_addr("b1", "b")], 120, &inj_a).await?;
        wait_sorted(&ns_b, "b1", &[&b2, &ext_addr("a1", "a")], 120, &inj_b).await?;
        wait_sorted(&ns_b, "b2", &[&b1, &ext_addr("a1", "a")], 120, &inj_b).await?;
        wait_metric(
            &inj_a,
            "stellar_peer_injector_remote_cluster_synced{cluster=\"b\"}",
            Some(1.0),
            30,
        )
        .await?;
        wait_metric(
            &inj_a,
            "stellar_peer_injector_remote_peers_excluded{cluster=\"b\"}",
            Some(1.0),
            30,
        )
        .await?;
        wait_metric(
            &inj_b,
            "stellar_peer_injector_remote_peers_excluded{cluster=\"a\"}",
            Some(1.0),
            30,
        )
        .await?;
        let seen = metric_value(
            &inj_a.metrics().await,
            "stellar_peer_injector_remote_cluster_nodes{cluster=\"b\"}",
        );
        ensure(seen.is_some_and(|n| n >= 2.0), || {
            format!("stellar_peer_injector_remote_cluster_nodes{{b}} = {seen:?}")
        })?;
        ensure(
            inj_a
                .log_text()
                .contains("validator of a linked cluster left out"),
            || "no log warning for b2, which has no external address".to_owned(),
        )?;

        // `peers` shows the same, from outside both clusters.
        let out = std::process::Command::new(injector_bin()?)
            .args([
                "peers",
                "-o",
                "json",
                "--namespaces",
                &ns_a.name,
                "--kubeconfig",
            ])
            .arg(&a.kubeconfig)
            .arg("--remote-kubeconfig")
            .arg(format!("b={}", b.kubeconfig.display()))
            .output()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "peers -o json: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let peers: Vec<(String, String)> = v["networks"][&net]["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["address"].as_str().unwrap_or("").to_owned(),
                    p["from"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let mut want = vec![
            (a1.clone(), "local".to_owned()),
            (a2.clone(), "local".to_owned()),
            (ext_addr("b1", "b"), "b".to_owned()),
        ];
        want.sort();
        ensure_eq!(peers, want, "peers -o json")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure(
            stderr.contains(&format!("cluster b: {}/b2: left out", ns_b.name)),
            || format!("peers stderr: {stderr}"),
        )?;

        // Deleting the link Secret unlinks b: its peers leave a's lists, and each of a's
        // validators rolls once.
        let before = template_hashes(&statefulsets(&ns_a).await?);
        ns_a.api::<Secret>()
            .delete("link-b", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        wait_sorted(&ns_a, "a1", &[&a2], 120, &inj_a).await?;
        wait_sorted(&ns_a, "a2", &[&a1], 120, &inj_a).await?;
        wait_metric(
            &inj_a,
            "stellar_peer_injector_remote_cluster_synced{cluster=\"b\"}",
            None,
            30,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = template_hashes(&statefulsets(&ns_a).await?);
        for ((name, h0), (_, h1)) in before.iter().zip(&after) {
            ensure(h0 != h1 && h1.is_some(), || {
                format!("{name}: template hash {h0:?} -> {h1:?}, expected one change")
            })?;
        }
        // b still links a.
        wait_sorted(&ns_b, "b1", &[&b2, &ext_addr("a1", "a")], 30, &inj_b).await
    }
    .await;
    unhook(&ns_a, &ns_b, &hooks).await;
    result
}

pub async fn multicluster_an_unreachable_linked_cluster_changes_nothing_until_it_returns()
-> TestResult {
    exclusive!();
    let (a, b) = (bed()?, second_bed()?);
    let ns_a = TestNs::new("mcu").await?;
    let ns_b = TestNs::with_client(b.client().await?, "mcv").await?;
    let net = ns_a.name.clone();
    let ext_addr = |n: &str| format!("{n}.{net}.b.example.org:11625");
    link(&ns_a, "b", &b.kubeconfig, &ns_b.name).await?;
    let extra = [
        "--remote-secret-namespace",
        &ns_a.name,
        "--cluster-name",
        "a",
        "--debounce",
        "1s",
    ];
    let inj = Injector::start(&ns_a.name, &a.kubeconfig, &extra, true).await?;
    // b's own injector: its leader Lease in ns_b tells a where b's rollout flags are.
    let _inj_b = Injector::start(&ns_b.name, &b.kubeconfig, &["--debounce", "1s"], true).await?;
    let hook = register_webhook(
        &ns_a.client,
        &ns_a.name,
        &inj.url(),
        &inj.ca_pem()?,
        "Fail",
        true,
    )
    .await?;
    let mut stopped = false;
    let result = async {
        for n in ["b1", "b2"] {
            ns_b.create::<StellarNode>(validator(n, &net, Some(&format!("{n}.{net}.b.example.org")))).await?;
        }
        ns_a.create::<StellarNode>(validator("a1", &net, None)).await?;
        ns_a.create::<StatefulSet>(operator_statefulset("a1", "Validator", &net, 1)).await?;
        wait_sorted(&ns_a, "a1", &[&ext_addr("b1"), &ext_addr("b2")], 120, &inj).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = template_hashes(&statefulsets(&ns_a).await?);

        // b's API server goes away: a keeps b's last known peers, and patches nothing.
        b.run(&["stop", "kube-apiserver"])?;
        stopped = true;
        wait_metric(&inj, "stellar_peer_injector_remote_cluster_synced{cluster=\"b\"}", Some(0.0), 120).await?;
        let errors = metric_value(&inj.metrics().await, "stellar_peer_injector_remote_cluster_errors_total{cluster=\"b\"}");
        ensure(errors.is_some_and(|e| e >= 1.0), || format!("stellar_peer_injector_remote_cluster_errors_total{{b}} = {errors:?}"))?;
        // A pod made meanwhile gets the whole list.
        let pods = ns_a.api::<Pod>();
        pods.delete("a1-0", &DeleteParams::default()).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        wait_sorted(&ns_a, "a1", &[&ext_addr("b1"), &ext_addr("b2")], 120, &inj).await?;
        ensure_eq!(template_hashes(&statefulsets(&ns_a).await?), before, "a's templates while b is down")?;

        // An injector that starts while b is down waits --remote-sync-timeout for it
        // before it is ready, and then serves without b.
        let late = Injector::start(
            &ns_a.name,
            &a.kubeconfig,
            &["--remote-secret-namespace", &ns_a.name, "--rollout", "off", "--remote-sync-timeout", "8s"],
            false,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let early = inj_ready(&late).await;
        ensure(!early, || "ready 3 s after start although linked cluster b was never listed and --remote-sync-timeout is 8s".to_owned())?;
        late.wait_ready(Duration::from_secs(90), Duration::from_millis(200)).await?;
        ensure(late.log_text().contains("linked clusters not listed in time"), || tail(&late.log_text(), 30))?;
        drop(late);

        // b returns; a StellarNode deleted there leaves a's lists.
        b.run(&["restart", "kube-apiserver"])?;
        stopped = false;
        wait_metric(&inj, "stellar_peer_injector_remote_cluster_synced{cluster=\"b\"}", Some(1.0), 120).await?;
        ns_b.api::<StellarNode>().delete("b2", &DeleteParams::default()).await.map_err(|e| e.to_string())?;
        wait_sorted(&ns_a, "a1", &[&ext_addr("b1")], 120, &inj).await
    }
    .await;
    if stopped {
        let _ = b.run(&["restart", "kube-apiserver"]);
    }
    delete_webhook(&ns_a.client, &hook).await;
    // Later trials on b need its controllers back, not just its API server: they resync
    // with backoff after the outage. A token Secret being filled shows they are.
    let back = controllers_back(&ns_b).await;
    result.and(back)
}

/// Waits until bed b's kube-controller-manager acts again (its token controller fills a
/// new ServiceAccount token Secret).
async fn controllers_back(ns: &TestNs) -> TestResult {
    let name = "controllers-back";
    ns.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": "default"}}
    }))
    .await?;
    let api = ns.api::<Secret>();
    wait_for(
        Duration::from_secs(180),
        "bed b's controllers to act again after its API server came back",
        || {
            let api = api.clone();
            async move {
                let s = api.get_opt(name).await.ok().flatten()?;
                s.data.as_ref()?.get("token").map(|_| ())
            }
        },
    )
    .await
}

async fn inj_ready(inj: &Injector) -> bool {
    inj.wait_ready(
        inj.started.elapsed() + Duration::from_millis(300),
        Duration::from_millis(100),
    )
    .await
    .is_ok()
}

/// Watches the StatefulSets of one namespace in each cluster and keeps, across both,
/// the most validators unavailable at once because an injector rolled them (their
/// template changed since [`CrossMonitor::reset`]), by the injector's own rule of
/// "unavailable" (`rollout::observe`).
struct CrossMonitor {
    state: std::sync::Arc<std::sync::Mutex<Cross>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct Cross {
    /// (cluster, name) -> (template hash at reset, latest object)
    seen: std::collections::BTreeMap<(String, String), (Option<String>, StatefulSet)>,
    max: usize,
    timeline: Vec<String>,
}

impl Cross {
    fn rolling(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, (base, s))| template_hash(s) != *base)
            .filter(|(_, (_, s))| {
                stellar_peer_injector::rollout::observe::sts_state(s).is_none_or(|w| !w.settled)
            })
            .map(|((c, n), _)| format!("{c}/{n}"))
            .collect()
    }

    fn unsettled(&self) -> usize {
        self.seen
            .values()
            .filter(|(_, s)| {
                stellar_peer_injector::rollout::observe::sts_state(s).is_none_or(|w| !w.settled)
            })
            .count()
    }
}

impl CrossMonitor {
    fn start(namespaces: &[(&str, &TestNs)]) -> Self {
        use futures::StreamExt;
        use kube::runtime::watcher::Event;
        let state = std::sync::Arc::new(std::sync::Mutex::new(Cross::default()));
        let tasks = namespaces
            .iter()
            .map(|(cluster, ns)| {
                let (cluster, api, state) = (
                    (*cluster).to_owned(),
                    ns.api::<StatefulSet>(),
                    state.clone(),
                );
                tokio::spawn(async move {
                    let mut w = std::pin::pin!(kube::runtime::watcher(api, Default::default()));
                    while let Some(ev) = w.next().await {
                        let s = match ev {
                            Ok(Event::Apply(s) | Event::InitApply(s)) => s,
                            _ => continue,
                        };
                        let mut st = state
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let key = (cluster.clone(), s.metadata.name.clone().unwrap_or_default());
                        let base = st
                            .seen
                            .get(&key)
                            .map_or_else(|| template_hash(&s), |(b, _)| b.clone());
                        st.seen.insert(key, (base, s));
                        let rolling = st.rolling();
                        st.max = st.max.max(rolling.len());
                        let line = format!("rolling: {rolling:?}");
                        if st.timeline.last() != Some(&line) {
                            st.timeline.push(line);
                        }
                    }
                })
            })
            .collect();
        Self { state, tasks }
    }

    /// Takes every StatefulSet's current template as its base, and forgets the maximum.
    fn reset(&self) {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (base, s) in st.seen.values_mut() {
            *base = template_hash(s);
        }
        st.max = 0;
        st.timeline.clear();
    }

    fn unsettled(&self) -> usize {
        self.state.lock().map_or(usize::MAX, |s| s.unsettled())
    }

    fn max_and_timeline(&self) -> (usize, Vec<String>) {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (st.max, st.timeline.clone())
    }
}

impl Drop for CrossMonitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn multicluster_a_validator_added_in_one_cluster_rolls_both_one_at_a_time() -> TestResult
{
    let LinkedPair {
        ns_a,
        ns_b,
        inj_a,
        inj_b,
        hooks,
    } = LinkedPair::start("mcq", "mcr").await?;
    let net = ns_a.name.clone();
    let ext = |n: &str, c: &str| format!("{n}.{net}.{c}.example.org");
    let ea = |n: &str, c: &str| format!("{}:11625", ext(n, c));
    let monitor = CrossMonitor::start(&[("a", &ns_a), ("b", &ns_b)]);
    let result = async {
        add_validators(&net, &[(&ns_a, "a1", "a"), (&ns_a, "a2", "a"), (&ns_b, "b1", "b"), (&ns_b, "b2", "b")]).await?;
        let (a1, a2) = (svc("a1", &ns_a.name), svc("a2", &ns_a.name));
        let (b1, b2, b3) = (svc("b1", &ns_b.name), svc("b2", &ns_b.name), svc("b3", &ns_b.name));
        wait_sorted(&ns_a, "a1", &[&a2, &ea("b1", "b"), &ea("b2", "b")], 180, &inj_a).await?;
        wait_sorted(&ns_a, "a2", &[&a1, &ea("b1", "b"), &ea("b2", "b")], 180, &inj_a).await?;
        wait_sorted(&ns_b, "b1", &[&b2, &ea("a1", "a"), &ea("a2", "a")], 180, &inj_b).await?;
        wait_sorted(&ns_b, "b2", &[&b1, &ea("a1", "a"), &ea("a2", "a")], 180, &inj_b).await?;
        // Settled: every StatefulSet available again.
        wait_for(Duration::from_secs(120), "all validators settled", || async {
            (monitor.unsettled() == 0).then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        monitor.reset();

        // b3 joins in b: a1, a2, b1 and b2 all roll, one at a time across both clusters.
        add_validators(&net, &[(&ns_b, "b3", "b")]).await?;
        let all_b = [ea("b1", "b"), ea("b2", "b"), ea("b3", "b")];
        wait_sorted(&ns_a, "a1", &[&a2, &all_b[0], &all_b[1], &all_b[2]], 240, &inj_a).await?;
        wait_sorted(&ns_a, "a2", &[&a1, &all_b[0], &all_b[1], &all_b[2]], 240, &inj_a).await?;
        wait_sorted(&ns_b, "b1", &[&b2, &b3, &ea("a1", "a"), &ea("a2", "a")], 240, &inj_b).await?;
        wait_sorted(&ns_b, "b2", &[&b1, &b3, &ea("a1", "a"), &ea("a2", "a")], 240, &inj_b).await?;
        let (max, timeline) = monitor.max_and_timeline();
        let rolled: std::collections::BTreeSet<&str> = timeline
            .iter()
            .flat_map(|l| ["a/a1", "a/a2", "b/b1", "b/b2"].into_iter().filter(move |n| l.contains(*n)))
            .collect();
        ensure(max == 1, || {
            format!(
                "{max} validators rolled at once across the two clusters (expected 1):\n{}\na log:\n{}\nb log:\n{}",
                timeline.join("\n"),
                tail(&inj_a.log_text(), 30),
                tail(&inj_b.log_text(), 30)
            )
        })?;
        ensure(rolled.len() == 4, || format!("expected a1, a2, b1 and b2 to roll in turn: {timeline:?}"))?;
        ensure(
            inj_a.log_text().contains("holds the network's cross-cluster rollout slot")
                && inj_b.log_text().contains("holds the network's cross-cluster rollout slot"),
            || "both clusters should have held the slot in turn".to_owned(),
        )
    }
    .await;
    unhook(&ns_a, &ns_b, &hooks).await;
    result
}

/// An injector that died in the middle of a roll leaves its flag to expire and its
/// validator starting. Bed b shows exactly that: an expired `holding` flag of b, and b1
/// not ready (its new pod cannot be scheduled). A peer change in a must then wait for
/// b1, not for the flag, and roll only once b1 is ready again.
pub async fn multicluster_a_linked_validator_not_ready_holds_the_slot_after_its_flag_expired()
-> TestResult {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    use stellar_peer_injector::rollout::coordination::{FLAG_NETWORK_ANNOTATION, flag_name};
    let LinkedPair {
        ns_a,
        ns_b,
        inj_a,
        inj_b,
        hooks,
    } = LinkedPair::start("mcx", "mcy").await?;
    let net = ns_a.name.clone();
    let result = async {
        add_validators(&net, &[(&ns_a, "a1", "a"), (&ns_b, "b1", "b")]).await?;
        let b1_ext = format!("b1.{net}.b.example.org:11625");
        wait_sorted(&ns_a, "a1", &[&b1_ext], 180, &inj_a).await?;
        wait_settled(&ns_a, "a1", true, 120).await?;
        wait_settled(&ns_b, "b1", true, 120).await?;

        // b "died mid-roll": its flag expired long ago, and b1's new pod cannot start.
        ns_b.create::<Lease>(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": flag_name(&net), "annotations": {FLAG_NETWORK_ANNOTATION: &net}},
            "spec": {"holderIdentity": "b/holding", "leaseDurationSeconds": 90,
                     "renewTime": "2026-01-01T00:00:00.000000Z"}
        }))
        .await?;
        let unschedulable = json!({"spec": {"template": {"spec": {"nodeSelector": {"stellar.org/no-such-node": "x"}}}}});
        ns_b.api::<StatefulSet>()
            .patch("b1", &PatchParams::default(), &Patch::Merge(&unschedulable))
            .await
            .map_err(|e| format!("make b1 unschedulable: {e}"))?;
        wait_settled(&ns_b, "b1", false, 60).await?;

        // a's peer set changes (a2 is local and has no external name, so b's does not).
        let a1_before = ns_a
            .api::<StatefulSet>()
            .get("a1")
            .await
            .map_err(|e| e.to_string())?;
        let hash_before = template_hash(&a1_before);
        ns_a.create::<StellarNode>(validator("a2", &net, None)).await?;
        ns_a.create::<StatefulSet>(operator_statefulset("a2", "Validator", &net, 1)).await?;
        wait_settled(&ns_a, "a2", true, 120).await?;
        let waiting = format!(
            "stellar_peer_injector_rollouts_waiting{{network=\"{net}\",reason=\"linked_cluster\"}}"
        );
        wait_metric(&inj_a, &waiting, Some(1.0), 60).await?;
        let why = format!("validator {}/b1 of linked cluster b to be ready", ns_b.name);
        ensure(inj_a.log_text().contains(&why), || {
            format!("a's log should say it waits for {why}:\n{}", tail(&inj_a.log_text(), 30))
        })?;
        // It keeps waiting: no roll of a1 while b1 is not ready.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let a1_now = ns_a
            .api::<StatefulSet>()
            .get("a1")
            .await
            .map_err(|e| e.to_string())?;
        ensure_eq!(
            template_hash(&a1_now),
            hash_before,
            "a1 must not roll while b1 is not ready"
        )?;

        // b1 starts again: a1 rolls and gets a2.
        let schedulable = json!({"spec": {"template": {"spec": {"nodeSelector": null}}}});
        ns_b.api::<StatefulSet>()
            .patch("b1", &PatchParams::default(), &Patch::Merge(&schedulable))
            .await
            .map_err(|e| format!("make b1 schedulable again: {e}"))?;
        // A StatefulSet does not replace a pod of a bad revision that never became
        // ready (the documented forced rollback): its operator deletes it.
        ns_b.api::<Pod>()
            .delete("b1-0", &DeleteParams::default())
            .await
            .map_err(|e| format!("delete the pending b1-0: {e}"))?;
        wait_sorted(&ns_a, "a1", &[&b1_ext, &svc("a2", &ns_a.name)], 180, &inj_a).await?;
        ensure(
            !inj_b.log_text().contains("panicked"),
            || format!("b's injector:\n{}", tail(&inj_b.log_text(), 30)),
        )
    }
    .await;
    unhook(&ns_a, &ns_b, &hooks).await;
    result
}
