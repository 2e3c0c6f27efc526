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

/// Daily UTC windows `[now + 2 h, now + 3 h)`, closed now, and `[now - 1 h, now + 2 h)`,
/// open now, as `--rollout-window` takes them.
fn windows_around_now() -> Result<(String, String), String> {
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        / 60;
    let hhmm = |m: u64| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    Ok((
        format!("{}-{}", hhmm(now_min + 120), hhmm(now_min + 180)),
        format!("{}-{}", hhmm(now_min + 1440 - 60), hhmm(now_min + 120)),
    ))
}

/// The daily window `[now + 2 h, now + 3 h)` is closed: a change queues up. A
/// StellarNode's own window that contains now opens it for that node.
pub async fn a_closed_window_queues_until_it_opens() -> TestResult {
    let ns = TestNs::new("window").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let (closed, open) = windows_around_now()?;
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

/// Runs `stellar-peer-injector explain ARGS -o json` against the bed; its JSON.
pub(crate) async fn explain_json(args: &[&str]) -> Result<Value, String> {
    let bin = testkit::injector_bin()?;
    let kubeconfig = bed()?.kubeconfig.display().to_string();
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("explain")
        .args(args)
        .args(["--kubeconfig", &kubeconfig, "-o", "json"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| format!("run explain: {e}"))?
        .map_err(|e| format!("run explain: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "explain {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "explain {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `explain --all`'s listing: (workload name, next step) per stale workload.
fn listing(v: &Value) -> Vec<(String, String)> {
    v["restarts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["next"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Pods of `instance` in `ns` that exist and are Ready.
async fn wait_pod_ready(ns: &TestNs, name: &str, secs: u64) -> TestResult {
    let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
    wait_for(
        Duration::from_secs(secs),
        &format!("pod {name} Ready"),
        || async {
            let p = pods.get_opt(name).await.ok().flatten()?;
            p.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        },
    )
    .await
}

/// Validators running before the injector is installed: the first install restarts
/// nothing by default and says so (Event, metric, `explain --all`); `explain --all
/// --heal-uninjected=true` lists what healing would restart. Once the operator restarts
/// v1 itself, later peer changes roll it, and each change's Event tells its own peers.
pub async fn a_first_install_restarts_nothing_unless_asked() -> TestResult {
    let ns = TestNs::new("firstinst").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    // The fleet predates the injector: no webhook, so its pods carry no peers.
    setup(&ns, &[("v1", "testnet"), ("v2", "testnet")], &[]).await?;
    wait_pod_ready(&ns, "v1-0", 90).await?;
    wait_pod_ready(&ns, "v2-0", 90).await?;
    // Before installing: what a first run would do, without and with healing.
    let plain = explain_json(&["--all", "--namespaces", &n]).await?;
    let l = listing(&plain);
    ensure(
        l.len() == 2 && l.iter().all(|(_, next)| next.starts_with("never injected")),
        || format!("explain --all before install: {l:?}"),
    )?;
    let heal = explain_json(&["--all", "--namespaces", &n, "--heal-uninjected=true"]).await?;
    let l = listing(&heal);
    ensure(
        l == [
            ("v1".to_owned(), "roll now (template annotation)".to_owned()),
            (
                "v2".to_owned(),
                "waiting for the slot held by StatefulSet ".to_owned() + &n + "/v1",
            ),
        ],
        || format!("explain --all --heal-uninjected=true: {l:?}"),
    )?;
    // ... and in a rollout window that is closed now: both wait for it.
    let (closed, _) = windows_around_now()?;
    let later = explain_json(&[
        "--all",
        "--namespaces",
        &n,
        "--heal-uninjected=true",
        "--rollout-window",
        &closed,
    ])
    .await?;
    let l = listing(&later);
    ensure(
        l.len() == 2
            && l.iter()
                .all(|(_, next)| next.starts_with("outside its rollout window")),
        || format!("explain --all with a closed window: {l:?}"),
    )?;
    let monitor = Monitor::start(&ns);
    monitor.settle_and_reset(120).await?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result = async {
        // Installed: both wait, told once each; nothing is restarted.
        let uninjected =
            "stellar_peer_injector_rollouts_waiting{network=\"testnet\",reason=\"uninjected\"}";
        wait_metric(&inj, uninjected, 2.0, 90).await?;
        let told = wait_event_about(
            &ns,
            "StatefulSet",
            "v1",
            "PeersNotInjected",
            Duration::from_secs(60),
        )
        .await?;
        let note = told[0].note.clone().unwrap_or_default();
        ensure(note.contains("--heal-uninjected"), || {
            format!("PeersNotInjected note: {note}")
        })?;
        unchanged(&monitor, &["v1", "v2"])?;
        let v1 = explain_json(&["--pod", &format!("{n}/v1-0"), "--namespaces", &n]).await?;
        let e = &v1["explanations"][0];
        ensure(
            e["webhook"]["matched"] == true
                && e["injector"]["outcome"] == "inject"
                && e["running"][0]["hash"].is_null()
                && e["next"]
                    .as_str()
                    .is_some_and(|s| s.contains("never injected")),
            || format!("explain --pod v1-0: {e}"),
        )?;

        // The operator restarts v1 itself: its new pod is injected.
        let sts = ns.api::<StatefulSet>();
        sts.patch(
            "v1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-12-02T00:00:00Z"}}}}})),
        )
        .await
        .map_err(|e| format!("restart v1: {e}"))?;
        wait_peers(&ns, "v1", &[svc("v2", &n)], 120).await?;
        wait_metric(&inj, uninjected, 1.0, 60).await?;
        let node = explain_json(&["--stellarnode", &format!("{n}/v1"), "--namespaces", &n]).await?;
        let e = &node["explanations"][0];
        ensure(
            e["running"]
                .as_array()
                .is_some_and(|r| r.iter().all(|p| p["current"] == true))
                && e["next"] == "nothing: its workload carries the current peers",
            || format!("explain --stellarnode v1 after its restart: {e}"),
        )?;
        monitor.settle_and_reset(120).await?;

        // Two peer changes: v1 rolls twice, and each PeersChanged Event names its own
        // added validator. v2 still waits for the operator.
        for (i, added) in ["v3", "v4"].into_iter().enumerate() {
            add_validator(&ns, added, "testnet").await?;
            let want = wait_for(
                Duration::from_secs(120),
                &format!("PeersChanged Event #{} on v1", i + 1),
                || async {
                    let evs = events_about(&ns, "StatefulSet", "v1", "PeersChanged")
                        .await
                        .ok()?;
                    (evs.len() > i).then_some(evs)
                },
            )
            .await
            .map_err(|e| format!("{e}\nlog:\n{}", inj.log_text()))?;
            let notes: Vec<String> = want.iter().filter_map(|e| e.note.clone()).collect();
            ensure(
                notes
                    .iter()
                    .any(|t| t.contains(&format!("added [{}]", svc(added, &n)))),
                || format!("no PeersChanged note tells {added} was added: {notes:?}"),
            )?;
            wait_pod_ready(&ns, &format!("{added}-0"), 90).await?;
            monitor.settle_and_reset(180).await?;
        }
        let notes: Vec<String> = events_about(&ns, "StatefulSet", "v1", "PeersChanged")
            .await?
            .iter()
            .filter_map(|e| e.note.clone())
            .collect();
        ensure(notes.len() >= 2 && notes[0] != notes[1], || {
            format!("each change has its own Event and note: {notes:?}")
        })?;
        ensure(monitor.hash_changes("v2") == 0, || {
            "v2 was restarted without --heal-uninjected".into()
        })
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

/// `explain` says why a pod is or is not injected: opted out, or left out by the
/// webhook configuration's namespaceSelector; and a pause shows as the next step.
pub async fn explain_tells_why_a_pod_is_not_injected() -> TestResult {
    let ns = TestNs::new("explain").await?;
    let other = TestNs::new("explainout").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result = async {
        setup(&ns, &[("v1", "testnet"), ("v2", "testnet")], &[]).await?;
        wait_peer_mesh(&ns, &["v1", "v2"], &["v1", "v2"], 90).await?;
        let mut opted = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "optout", "labels": operator_labels("v1", "Validator", "testnet"),
                          "annotations": {"stellar.org/inject-peers": "false"}},
            "spec": {"containers": [{"name": "stellar-node", "image": "stellar/stellar-core"}]}
        });
        ns.create::<k8s_openapi::api::core::v1::Pod>(opted.clone())
            .await?;
        let v = explain_json(&["--pod", &format!("{n}/optout"), "--namespaces", &n]).await?;
        let e = &v["explanations"][0];
        ensure(
            e["webhook"]["matched"] == true
                && e["injector"]["outcome"] == "skip"
                && e["injector"]["reason"] == "opted-out",
            || format!("explain opted-out pod: {e}"),
        )?;
        // The same pod in a namespace the webhook configuration leaves out.
        opted["metadata"]["name"] = json!("elsewhere");
        opted["metadata"]["annotations"] = json!({});
        other
            .create::<k8s_openapi::api::core::v1::Pod>(opted.clone())
            .await?;
        let v = explain_json(&["--pod", &format!("{}/elsewhere", other.name)]).await?;
        let e = &v["explanations"][0];
        let why = e["webhook"]["excluded_by"].to_string();
        ensure(
            e["webhook"]["matched"] == false
                && why.contains(&hook)
                && why.contains("namespaceSelector"),
            || format!("explain pod outside the webhook's namespaces: {e}"),
        )?;
        // A pod naming a StellarNode that does not exist there: the injector would refuse it.
        opted["metadata"]["name"] = json!("nonode");
        opted["metadata"]["labels"] = operator_labels("ghost", "Validator", "testnet");
        other
            .create::<k8s_openapi::api::core::v1::Pod>(opted)
            .await?;
        let v = explain_json(&["--pod", &format!("{}/nonode", other.name)]).await?;
        let e = &v["explanations"][0];
        ensure(
            e["injector"]["outcome"] == "deny"
                && e["injector"]["reason"] == "unknown-node"
                && e["kind"].is_null(),
            || format!("explain pod of an unknown StellarNode: {e}"),
        )?;
        // A pause on the StellarNode is the next step of its stale workload.
        annotate(&ns.api::<StellarNode>(), "v1", ROLLOUT, Some("paused")).await?;
        add_validator(&ns, "v3", "testnet").await?;
        let v = wait_for(
            Duration::from_secs(60),
            "explain sees v1 paused",
            || async {
                let v = explain_json(&["--stellarnode", &format!("{n}/v1"), "--namespaces", &n])
                    .await
                    .ok()?;
                v["explanations"][0]["next"]
                    .as_str()
                    .is_some_and(|s| s.contains("paused by stellar.org/rollout on its StellarNode"))
                    .then_some(v)
            },
        )
        .await?;
        ensure(
            v["explanations"][0]["peers"]["known"]
                .as_array()
                .is_some_and(|k| k.len() == 2),
            || format!("v1's peers with v3 added: {v}"),
        )
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}
