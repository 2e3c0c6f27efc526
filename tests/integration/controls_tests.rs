//! The operator's rollout controls on the real control plane: pause at each level,
//! rollout windows, and a stuck validator released by `skip-wait`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;

use crate::rollout_tests::{Monitor, add_validator, setup};
use crate::support::*;

/// Waits until a metric sample has this value.
async fn wait_metric(inj: &Injector, series: &str, want: f64, secs: u64) -> TestResult {
    let r = wait_for(
        Duration::from_secs(secs),
        &format!("{series} = {want}"),
        || async { (metric_value(&inj.metrics().await, series) == Some(want)).then_some(()) },
    )
    .await;
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let m = inj.metrics().await;
            let rollout: Vec<&str> = m.lines().filter(|l| l.contains("rollout")).collect();
            Err(format!(
                "{e}\nrollout metrics:\n{}\nlog:\n{}",
                rollout.join("\n"),
                inj.log_text()
            ))
        }
    }
}

/// Waits until workload `kind`/`name` has an Event with `reason`.
async fn wait_event(ns: &TestNs, kind: &str, name: &str, reason: &str, secs: u64) -> TestResult {
    wait_event_about(ns, kind, name, reason, Duration::from_secs(secs))
        .await
        .map(|_| ())
}

/// Two testnet validators with each other's peers, settled: the start of every trial here.
async fn two_validators(ns: &TestNs, monitor: &Monitor) -> TestResult {
    setup(ns, &[("v1", "testnet"), ("v2", "testnet")], &[]).await?;
    wait_peer_mesh(ns, &["v1", "v2"], &["v1", "v2"], 90).await?;
    monitor.settle_and_reset(120).await
}

async fn annotate<K>(api: &Api<K>, name: &str, key: &str, value: Option<&str>) -> TestResult
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let v: Value = value.map_or(Value::Null, |v| json!(v));
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {key: v}}})),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("annotate {name}: {e}"))
}

const ROLLOUT: &str = "stellar.org/rollout";
const WAITING_PAUSED: &str =
    "stellar_peer_injector_rollouts_waiting{network=\"testnet\",reason=\"paused\"}";

fn unchanged(monitor: &Monitor, names: &[&str]) -> TestResult {
    for v in names {
        ensure(monitor.hash_changes(v) == 0, || {
            format!("{v} was rolled although its rollout is held")
        })?;
    }
    Ok(())
}

/// Paused on the namespace, then on the StellarNode, then on the workload: nothing held
/// is touched, the wait shows in the metric and an Event; removing the pause resumes
/// the rollout under the quorum rule.
pub async fn pause_at_each_level_holds_the_rollout() -> TestResult {
    let ns = TestNs::new("pause").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let result = async {
        two_validators(&ns, &monitor).await?;

        // 1. The namespace is paused: adding v3 makes v1 and v2 stale, and both wait.
        annotate(&namespaces, &n, ROLLOUT, Some("paused")).await?;
        add_validator(&ns, "v3", "testnet").await?;
        wait_metric(&inj, WAITING_PAUSED, 2.0, 90).await?;
        wait_event(&ns, "StatefulSet", "v1", "RolloutPaused", 60).await?;
        unchanged(&monitor, &["v1", "v2"])?;

        // 2. Only the StellarNode v1 is paused: v2 rolls, v1 waits.
        let nodes = ns.api::<StellarNode>();
        annotate(&nodes, "v1", ROLLOUT, Some("paused")).await?;
        annotate(&namespaces, &n, ROLLOUT, None).await?;
        wait_peers(&ns, "v2", &[svc("v1", &n), svc("v3", &n)], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        wait_metric(&inj, WAITING_PAUSED, 1.0, 60).await?;
        unchanged(&monitor, &["v1"])?;

        // 3. The pause moves to v1's StatefulSet: v1 still waits.
        let sts = ns.api::<StatefulSet>();
        annotate(&sts, "v1", ROLLOUT, Some("paused")).await?;
        annotate(&nodes, "v1", ROLLOUT, None).await?;
        // The loop says v1 is held by its workload now.
        wait_for(
            Duration::from_secs(60),
            "v1 held by its workload's pause",
            || async {
                inj.log_text()
                    .contains("paused by stellar.org/rollout on its workload")
                    .then_some(())
            },
        )
        .await?;
        wait_metric(&inj, WAITING_PAUSED, 1.0, 60).await?;
        unchanged(&monitor, &["v1"])?;

        // 4. Unpaused: v1 rolls.
        annotate(&sts, "v1", ROLLOUT, None).await?;
        wait_peers(&ns, "v1", &[svc("v2", &n), svc("v3", &n)], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        monitor.check("testnet", 1)
    }
    .await;
    let _ = annotate(&namespaces, &n, ROLLOUT, None).await;
    delete_webhook(&ns.client, &hook).await;
    result
}

/// The daily window `[now + 2 h, now + 3 h)` is closed: a change queues up. A
/// StellarNode's own window that contains now opens it for that node.
pub async fn a_closed_window_queues_until_it_opens() -> TestResult {
    let ns = TestNs::new("window").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        / 60;
    let hhmm = |m: u64| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    let closed = format!("{}-{}", hhmm(now_min + 120), hhmm(now_min + 180));
    let open = format!("{}-{}", hhmm(now_min + 1440 - 60), hhmm(now_min + 120));
    let inj = Injector::start(
        &n,
        &bed.kubeconfig,
        &["--debounce", "0s", "--rollout-window", &closed],
        true,
    )
    .await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let result = async {
        two_validators(&ns, &monitor).await?;
        add_validator(&ns, "v3", "testnet").await?;
        // v3's own pod is injected at once, whatever the window.
        wait_peers(&ns, "v3", &[svc("v1", &n), svc("v2", &n)], 90).await?;
        wait_metric(
            &inj,
            "stellar_peer_injector_rollouts_waiting{network=\"testnet\",reason=\"window\"}",
            2.0,
            90,
        )
        .await?;
        unchanged(&monitor, &["v1", "v2"])?;
        // The window opens for v1 and v2 (their own override contains now).
        let nodes = ns.api::<StellarNode>();
        for v in ["v1", "v2"] {
            annotate(&nodes, v, "stellar.org/rollout-window", Some(&open)).await?;
        }
        wait_peer_mesh(&ns, &["v1", "v2"], &["v1", "v2", "v3"], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        monitor.check("testnet", 1)
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

/// A validator whose pod can never be scheduled holds its network's slot: after
/// `--stuck-after` it is reported (Event, metric) and the others still wait; the
/// operator's `skip-wait` on it lets them roll.
pub async fn a_stuck_validator_is_reported_and_skip_wait_releases_the_others() -> TestResult {
    let ns = TestNs::new("stuck").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(
        &n,
        &bed.kubeconfig,
        &["--debounce", "0s", "--stuck-after", "5s"],
        true,
    )
    .await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let result = async {
        two_validators(&ns, &monitor).await?;
        // v3 can never be scheduled.
        ns.create::<StellarNode>(stellar_node("v3", "Validator", "testnet", false))
            .await?;
        let mut sts = operator_statefulset("v3", "Validator", "testnet", 1);
        sts["spec"]["template"]["spec"]["nodeSelector"] =
            json!({"kubernetes.io/hostname": "no-such-node"});
        ns.create::<StatefulSet>(sts).await?;
        wait_metric(
            &inj,
            "stellar_peer_injector_rollouts_stuck{network=\"testnet\"}",
            1.0,
            90,
        )
        .await?;
        wait_event(&ns, "StatefulSet", "v3", "RolloutStuck", 60).await?;
        wait_metric(
            &inj,
            "stellar_peer_injector_rollouts_waiting{network=\"testnet\",reason=\"slot\"}",
            2.0,
            30,
        )
        .await?;
        unchanged(&monitor, &["v1", "v2"])?;
        // The operator decides to let the others proceed.
        annotate(&ns.api::<StatefulSet>(), "v3", ROLLOUT, Some("skip-wait")).await?;
        wait_peer_mesh(&ns, &["v1", "v2"], &["v1", "v2", "v3"], 120)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        wait_event(&ns, "StatefulSet", "v3", "RolloutStuckSkipped", 60).await?;
        // v1 and v2 still rolled one at a time.
        monitor.check("testnet", 1)
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}
