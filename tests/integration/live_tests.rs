//! Live peer updates on the bed's real node (`--peer-updates live`): a running validator
//! learns an added peer through `connect` on its admin port, from the `stellar-peers-live`
//! sidecar, and nothing restarts.
//!
//! stellar-core cannot be built here: the main container is the bed's STAND-IN for it
//! (tests/testbed/images/stellar-core-standin.c), which serves stellar-core's admin routes
//! (`connect`, `peers`, the booting answer) as `CommandHandler.cpp` writes them and logs
//! every call it gets. These trials read that log. Like `realnode::*`, they are reported
//! as not run when the real node is turned off.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use stellar_peer_injector::crd::StellarNode;

use crate::realnode_tests::running_with_peers;
use crate::support::*;

/// The running pod `<name>-0` once its stellar-core knows `peer`: started with it in its
/// file, or told through `connect` (a pod created before that peer's StellarNode was seen
/// is updated live, not restarted).
async fn running_knowing(ns: &TestNs, name: &str, peer: &str) -> Result<Pod, String> {
    let api = ns.api::<Pod>();
    let pod = format!("{name}-0");
    let target = connect_target(peer);
    wait_for(
        Duration::from_secs(150),
        &format!("{pod} running and knowing {peer}"),
        || {
            let (api, pod, target) = (api.clone(), pod.clone(), target.clone());
            async move {
                let p = api.get(&pod).await.ok()?;
                let log = container_log(&api, &pod, "stellar-node").await.ok()?;
                let (_, cfg) = standin_printed_config(&log)?;
                (cfg.contains(peer) || standin_connect_calls(&log).contains(&target)).then_some(p)
            }
        },
    )
    .await
}

/// (uid, restartCount of `stellar-node`) of a pod.
fn identity(p: &Pod) -> (Option<String>, i32) {
    let restarts = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "stellar-node"))
        .map_or(-1, |c| c.restart_count);
    (p.metadata.uid.clone(), restarts)
}

/// Waits until `pod`'s stand-in has received `connect` for `want`; returns its log.
async fn connected(api: &Api<Pod>, pod: &str, want: &str, secs: u64) -> Result<String, String> {
    let last = std::sync::Mutex::new(String::new());
    let r = wait_for(
        Duration::from_secs(secs),
        &format!("{pod} to get {want}"),
        || {
            let (api, last) = (api.clone(), &last);
            async move {
                let log = container_log(&api, pod, "stellar-node").await.ok()?;
                let hit = standin_connect_calls(&log).iter().any(|c| c == want);
                *last.lock().unwrap_or_else(|e| e.into_inner()) = log.clone();
                hit.then_some(log)
            }
        },
    )
    .await;
    match r {
        Ok(log) => Ok(log),
        Err(e) => {
            let sidecar = container_log(api, pod, "stellar-peers-live")
                .await
                .unwrap_or_else(|e| e);
            Err(format!(
                "{e}; stand-in log:\n{}\nsidecar log:\n{sidecar}",
                last.lock().unwrap_or_else(|e| e.into_inner())
            ))
        }
    }
}

/// The sidecar's `/metrics`, through the API server's pod proxy (the bed's bridge).
async fn sidecar_metrics(ns: &TestNs, pod: &str) -> Result<String, String> {
    let req = ::http::Request::get(format!(
        "/api/v1/namespaces/{}/pods/{pod}:11680/proxy/metrics",
        ns.name
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    ns.client
        .request_text(req)
        .await
        .map_err(|e| format!("metrics of {pod}: {e}"))
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two running validators; a third is added. Each of the two gets `connect` for exactly
/// the new peer, from its sidecar, and neither restarts. The sidecar rewrote the merged
/// file: a restart of the stellar-core container (a kill, the kubelet starts it again in
/// the same pod) starts it with a file that holds the new peer. Then the third is
/// removed: nothing restarts, no `connect` is sent, and the pods' peers annotation drops it.
pub async fn a_new_validator_is_connected_live_and_nothing_restarts() -> TestResult {
    let (node, ns, inj, hook) =
        crate::realnode_tests::merge_mode_injector_with("live", &["--peer-updates", "live"])
            .await?;
    let n = ns.name.clone();
    let result: TestResult = async {
        add_validator_with(&ns, "v1", operator_cfg(), &node, |_| {}).await?;
        add_validator_with(&ns, "v2", operator_cfg(), &node, |_| {}).await?;
        let before1 = running_knowing(&ns, "v1", &svc("v2", &n)).await?;
        let before2 = running_knowing(&ns, "v2", &svc("v1", &n)).await?;
        let api = ns.api::<Pod>();
        let mut earlier = Vec::new();
        for pod in ["v1-0", "v2-0"] {
            earlier.push(
                standin_connect_calls(&container_log(&api, pod, "stellar-node").await?).len(),
            );
        }
        add_validator_with(&ns, "v3", operator_cfg(), &node, |_| {}).await?;
        let want = connect_target(&svc("v3", &n));
        for ((pod, before), skip) in [("v1-0", &before1), ("v2-0", &before2)]
            .into_iter()
            .zip(earlier)
        {
            let log = connected(&api, pod, &want, 90).await?;
            // The calls since v3 was added: for v3 only (retries included).
            let calls: Vec<String> = standin_connect_calls(&log).into_iter().skip(skip).collect();
            ensure(
                !calls.is_empty() && calls.iter().all(|c| c == &want),
                || format!("{pod} got connect for more than the new peer: {calls:?}"),
            )?;
            let now = api.get(pod).await.map_err(|e| e.to_string())?;
            ensure_eq!(
                identity(&now),
                (before.metadata.uid.clone(), 0),
                "{pod}: same pod, no restart"
            )?;
            let sidecar = container_log(&api, pod, "stellar-peers-live").await?;
            ensure(
                sidecar.contains("peers changed") && sidecar.contains(&svc("v3", &n)),
                || format!("{pod}'s sidecar log does not show the change:\n{sidecar}"),
            )?;
        }
        // The merged file on disk follows: kill stellar-core, the kubelet starts it again
        // in the same pod (init containers do not run again), and it reads the new file.
        let pod = api.get("v1-0").await.map_err(|e| e.to_string())?;
        let cid = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == "stellar-node"))
            .and_then(|c| c.container_id.clone())
            .ok_or("no container id for v1-0/stellar-node")?;
        let id = cid.rsplit("://").next().unwrap_or(&cid).to_owned();
        node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id])?;
        let restarted = wait_for(
            Duration::from_secs(90),
            "v1-0's stellar-node restarted",
            || {
                let api = api.clone();
                async move {
                    let p = api.get("v1-0").await.ok()?;
                    (identity(&p).1 >= 1
                        && p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    c.name == "stellar-node"
                                        && c.state.as_ref().is_some_and(|s| s.running.is_some())
                                })
                            }))
                    .then_some(p)
                }
            },
        )
        .await?;
        ensure_eq!(restarted.metadata.uid, before1.metadata.uid, "the same pod")?;
        let (_, cfg) =
            running_with_peers(&ns, "v1", &BTreeSet::from([svc("v2", &n), svc("v3", &n)])).await?;
        ensure(cfg.contains(&svc("v3", &n)), || {
            format!("restarted with:\n{cfg}")
        })?;

        // Removed: the pods' annotation drops v3, nothing restarts, no connect is sent.
        let v2_before = api.get("v2-0").await.map_err(|e| e.to_string())?;
        let calls_before =
            standin_connect_calls(&container_log(&api, "v2-0", "stellar-node").await?);
        ns.api::<StellarNode>()
            .delete("v3", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        ns.api::<StatefulSet>()
            .delete("v3", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let gone = svc("v3", &n);
        wait_for(Duration::from_secs(60), "v2-0's peers without v3", || {
            let (api, gone) = (api.clone(), gone.clone());
            async move {
                let p = api.get("v2-0").await.ok()?;
                let cfg = annotation(&p, "stellar.org/peers-config")?;
                (!cfg.contains(&gone)).then_some(())
            }
        })
        .await?;
        let sidecar = wait_for(
            Duration::from_secs(30),
            "v2-0's sidecar to see the removal",
            || {
                let api = api.clone();
                async move {
                    let log = container_log(&api, "v2-0", "stellar-peers-live")
                        .await
                        .ok()?;
                    log.contains("removed=[\"").then_some(log)
                }
            },
        )
        .await?;
        ensure(sidecar.contains(&gone), || {
            format!("sidecar log:\n{sidecar}")
        })?;
        let v2_after = api.get("v2-0").await.map_err(|e| e.to_string())?;
        ensure_eq!(
            identity(&v2_after),
            identity(&v2_before),
            "v2-0 after the removal"
        )?;
        let log = container_log(&api, "v2-0", "stellar-node").await?;
        ensure_eq!(
            standin_connect_calls(&log),
            calls_before,
            "v2-0's connect calls after the removal (none new)"
        )?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// An admin port that does not answer for its first 25 s (the stand-in's
/// STANDIN_ADMIN_DOWN_SECONDS): the sidecar retries with back-off, counts the failed calls
/// on its /metrics, connects once the port answers, and nothing restarts.
pub async fn an_admin_port_that_answers_late_is_retried_then_connected() -> TestResult {
    let (node, ns, inj, hook) =
        crate::realnode_tests::merge_mode_injector_with("livelate", &["--peer-updates", "live"])
            .await?;
    let n = ns.name.clone();
    let result: TestResult = async {
        add_validator_with(&ns, "v1", operator_cfg(), &node, |sts| {
            if let Some(env) =
                sts["spec"]["template"]["spec"]["containers"][0]["env"].as_array_mut()
            {
                env.push(json!({"name": "STANDIN_ADMIN_DOWN_SECONDS", "value": "25"}));
            }
        })
        .await?;
        add_validator_with(&ns, "v2", operator_cfg(), &node, |_| {}).await?;
        let before = running_knowing(&ns, "v1", &svc("v2", &n)).await?;
        add_validator_with(&ns, "v3", operator_cfg(), &node, |_| {}).await?;
        let api = ns.api::<Pod>();
        let failures = wait_for(
            Duration::from_secs(40),
            "failed connect calls counted",
            || {
                let ns = &ns;
                async move {
                    let m = sidecar_metrics(ns, "v1-0").await.ok()?;
                    let f = metric(
                        &m,
                        "stellar_peers_live_connects_total{answer=\"unreachable\"}",
                    );
                    (f >= 1.0).then_some(f)
                }
            },
        )
        .await?;
        let want = connect_target(&svc("v3", &n));
        connected(&api, "v1-0", &want, 90).await?;
        let m = sidecar_metrics(&ns, "v1-0").await?;
        // v3, and v2 too when v1-0 started before v2 was known.
        let ok = metric(
            &m,
            "stellar_peers_live_connects_total{answer=\"connected\"}",
        );
        ensure((1.0..=2.0).contains(&ok), || {
            format!("connected calls: {ok}\n{m}")
        })?;
        ensure(failures >= 1.0, || "no failed call was counted".to_owned())?;
        let sidecar = container_log(&api, "v1-0", "stellar-peers-live").await?;
        ensure(sidecar.contains("does not answer"), || {
            format!("the sidecar did not say the port did not answer:\n{sidecar}")
        })?;
        let now = api.get("v1-0").await.map_err(|e| e.to_string())?;
        ensure_eq!(
            identity(&now),
            (before.metadata.uid.clone(), 0),
            "v1-0: same pod, no restart"
        )?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}
