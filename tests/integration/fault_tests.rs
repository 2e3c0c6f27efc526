//! Faults on the real control plane: API server and etcd restarts, graceful
//! shutdown, malformed StellarNodes, and the injector killed during a rollout.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::json;
use stellar_peer_injector::crd::StellarNode;

use crate::rollout_tests::{Monitor, add_validator, setup};
use crate::support::*;

/// Asks the injector directly: must inject exactly `want` (never an empty or partial list).
async fn direct(inj: &Injector, ns: &str, instance: &str, want: &str) -> TestResult {
    let (code, v) = admission_request(inj, &review_for(ns, instance)).await?;
    ensure(code == 200, || {
        format!("direct admission answered {code}: {v}")
    })?;
    ensure_eq!(
        injected_peers(&v).as_deref(),
        Some(want),
        "the peers the injector answered with"
    )
}

fn probe_pod(instance: &str) -> Result<Pod, String> {
    serde_json::from_value(
        json!({"metadata": {"generateName": format!("{instance}-probe-"),
        "labels": operator_labels(instance, "Validator", "testnet")},
        "spec": {"containers": [{"name": "stellar-node", "image": "x"}]}}),
    )
    .map_err(|e| e.to_string())
}

/// Creates dry-run pods until the injected list equals `want`.
async fn wait_dry_run_peers(ns: &TestNs, instance: &str, want: &str, secs: u64) -> TestResult {
    let api = ns.api::<Pod>();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let pod = probe_pod(instance)?;
    wait_for(
        Duration::from_secs(secs),
        &format!("a dry-run {instance} pod with peers {want}"),
        || {
            let (api, pp, pod) = (api.clone(), pp.clone(), pod.clone());
            async move {
                let p = api.create(&pp, &pod).await.ok()?;
                (env_get(&p, "stellar-node", "STELLAR_PEERS").as_deref() == Some(want))
                    .then_some(())
            }
        },
    )
    .await
}

pub async fn apiserver_and_etcd_restarts_keep_the_last_good_peers() -> TestResult {
    exclusive!(); // runs alone: it stops and restarts parts of the bed
    let ns = TestNs::new("restart").await?;
    let n = ns.name.clone();
    for v in ["v1", "v2"] {
        ns.create::<StellarNode>(stellar_node(v, "Validator", "testnet", false))
            .await?;
    }
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--rollout", "off"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result = async {
        let one = svc("v2", &n);
        wait_dry_run_peers(&ns, "v1", &one, 30).await?;
        for component in ["kube-apiserver", "etcd"] {
            // Keep asking the injector directly while the component restarts.
            let probe = async {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut answers = 0;
                while Instant::now() < deadline {
                    direct(&inj, &n, "v1", &one).await?;
                    answers += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if answers > 30 {
                        break;
                    }
                }
                Ok::<usize, String>(answers)
            };
            let restart = tokio::task::spawn_blocking(move || restart_component(component));
            let answers = probe.await?;
            restart.await.map_err(|e| e.to_string())??;
            ensure(answers > 0, || "no answers during the restart".into())?;
            let (code, _) =
                http_get(&format!("http://127.0.0.1:{}/readyz", inj.admin_port)).await?;
            ensure(code == 200, || {
                format!(
                    "/readyz {code} after {component} restart: the last good snapshot is still good"
                )
            })?;
            direct(&inj, &n, "v1", &one).await?;
        }
        // kube-controller-manager 1.32 against Debian's etcd 3.4 can keep stale informer
        // caches after etcd restarts; restart the bed's own clients so that the tests
        // after this one get a trustworthy bed. The injector is not restarted: its
        // recovery is what this test is about.
        for dependent in ["kube-controller-manager", "kube-scheduler", "kwok"] {
            tokio::task::spawn_blocking(move || restart_component(dependent))
                .await
                .map_err(|e| e.to_string())??;
        }
        // A new kwok takes over the fake nodes only when the old one's node Leases
        // expire (40 s): wait until a pod really becomes Ready again.
        let probe: Pod = serde_json::from_value(json!({"metadata": {"name": "bed-probe"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}))
        .map_err(|e| e.to_string())?;
        ns.api::<Pod>()
            .create(&PostParams::default(), &probe)
            .await
            .map_err(|e| e.to_string())?;
        wait_for(
            Duration::from_secs(120),
            "a pod Ready on the restarted bed",
            || async {
                let p = ns.api::<Pod>().get("bed-probe").await.ok()?;
                let ready = p
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            },
        )
        .await?;
        // The cache recovered on its own: a new validator shows up in new pods.
        let client = client().await?;
        let fresh: kube::Api<StellarNode> = kube::Api::namespaced(client, &n);
        let v3: StellarNode =
            serde_json::from_value(stellar_node("v3", "Validator", "testnet", false))
                .map_err(|e| e.to_string())?;
        wait_for(
            Duration::from_secs(30),
            "StellarNode v3 created after the restarts",
            || {
                let (fresh, v3) = (fresh.clone(), v3.clone());
                async move { fresh.create(&PostParams::default(), &v3).await.ok() }
            },
        )
        .await?;
        let two = [svc("v2", &n), svc("v3", &n)].join(",");
        wait_dry_run_peers(&ns, "v1", &two, 60)
            .await
            .map_err(|e| format!("{e}\n{}", inj.log_text()))?;
        direct(&inj, &n, "v1", &two).await
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

pub async fn sigterm_goes_unready_first_then_drains() -> TestResult {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let ns = TestNs::new("shutdown").await?;
    let n = ns.name.clone();
    ns.create::<StellarNode>(stellar_node("v1", "Validator", "testnet", false))
        .await?;
    let bed = bed()?;
    let inj = Injector::start(
        &n,
        &bed.kubeconfig,
        &[
            "--rollout",
            "off",
            "--shutdown-delay",
            "2s",
            "--drain-timeout",
            "5s",
        ],
        true,
    )
    .await?;
    // A keep-alive connection, as kube-apiserver keeps one.
    let tls = connect_tls(&inj).await?;
    let mut conn = BufReader::new(tls);
    let body = review_for(&n, "v1");
    let request = |b: &[u8]| {
        let mut r = format!("POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", b.len()).into_bytes();
        r.extend_from_slice(b);
        r
    };
    async fn status<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<u16, String> {
        let mut line = String::new();
        r.read_line(&mut line).await.map_err(|e| e.to_string())?;
        let code = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or(format!("status line {line:?}"))?;
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await.map_err(|e| e.to_string())?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut b = vec![0; len];
        r.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok(code)
    }
    conn.get_mut()
        .write_all(&request(&body))
        .await
        .map_err(|e| e.to_string())?;
    ensure(status(&mut conn).await? == 200, || "first request".into())?;

    let signalled = Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &inj.pid().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    ensure(ok.success(), || "kill -TERM failed".into())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = http_get(&format!("http://127.0.0.1:{}/readyz", inj.admin_port)).await?;
    ensure(code == 503, || {
        format!("/readyz answered {code} right after SIGTERM")
    })?;
    // Still serving during the delay, on the existing connection.
    conn.get_mut()
        .write_all(&request(&body))
        .await
        .map_err(|e| e.to_string())?;
    ensure(status(&mut conn).await? == 200, || {
        "request during the shutdown delay failed".into()
    })?;
    // After the delay the idle keep-alive connection is closed by the server.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), conn.read_to_end(&mut rest)).await;
    ensure(closed.is_ok(), || {
        "keep-alive connection not closed after the delay".into()
    })?;
    ensure(signalled.elapsed() >= Duration::from_millis(1800), || {
        format!(
            "closed after {:?}, before the 2 s delay",
            signalled.elapsed()
        )
    })?;
    let exit = inj.wait_exit(Duration::from_secs(10));
    ensure_eq!(exit, Some(0), "the SIGTERMed injector's exit status")?;
    ensure(
        tokio::net::TcpStream::connect(("127.0.0.1", inj.port))
            .await
            .is_err(),
        || "still accepting".into(),
    )?;
    Ok(())
}

pub async fn malformed_stellarnodes_are_skipped_alone() -> TestResult {
    let ns = TestNs::new("malformed").await?;
    let n = ns.name.clone();
    for v in ["v1", "v2"] {
        ns.create::<StellarNode>(stellar_node(v, "Validator", "testnet", false))
            .await?;
    }
    // A wrong type where the injector needs a string, an unknown node type, and a
    // wrong type in a field the injector does not read.
    let mut bad = stellar_node("bad", "Validator", "testnet", false);
    bad["spec"]["network"] = json!(5);
    ns.create::<StellarNode>(bad).await?;
    let mut arch = stellar_node("archiver", "Archiver", "testnet", false);
    arch["spec"]["storage"] = json!(5);
    ns.create::<StellarNode>(arch).await?;
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--rollout", "off"], true).await?;
    let both = [svc("v1", &n), svc("v2", &n)].join(",");
    direct(&inj, &n, "archiver", &both).await?;
    direct(&inj, &n, "v1", &svc("v2", &n)).await?;
    let (code, v) = admission_request(&inj, &review_for(&n, "bad")).await?;
    ensure(code == 200 && v["response"]["allowed"] == false, || {
        format!("bad node's pod: {code} {v}")
    })?;
    let msg = v["response"]["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    ensure(
        msg.contains("malformed") && msg.contains("spec.network"),
        || format!("message: {msg}"),
    )?;
    let log = inj.log_text();
    ensure(
        log.contains("StellarNode skipped") && log.contains(&format!("{n}/bad")),
        || format!("no warning about {n}/bad:\n{log}"),
    )?;
    let m = inj.metrics().await;
    ensure(
        m.contains("stellar_peer_injector_cache_invalid_nodes 1"),
        || "invalid-nodes gauge".into(),
    )?;
    // Still following changes.
    ns.create::<StellarNode>(stellar_node("v3", "Validator", "testnet", false))
        .await?;
    let three = [svc("v2", &n), svc("v3", &n)].join(",");
    wait_for(Duration::from_secs(20), "v3 in the cache", || async {
        direct(&inj, &n, "v1", &three).await.ok()
    })
    .await
}

pub async fn injector_killed_during_a_rollout_resumes_it_safely() -> TestResult {
    let ns = TestNs::new("killroll").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let args = ["--debounce", "0s"];
    let a = Injector::start(&n, &bed.kubeconfig, &args, true).await?;
    let hook = register_webhook(&ns.client, &n, &a.url(), &a.ca_pem()?, "Fail", true).await?;
    let monitor = Monitor::start(&ns);
    let result = async {
        setup(
            &ns,
            &[("v1", "testnet"), ("v2", "testnet"), ("v3", "testnet")],
            &[],
        )
        .await?;
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3"], 60).await?;
        monitor.settle_and_reset(120).await?;
        add_validator(&ns, "v4", "testnet").await?;
        // Kill the injector as soon as its first rollout has started.
        wait_for(Duration::from_secs(60), "the first rollout", || async {
            a.metrics()
                .await
                .contains("outcome=\"started\"")
                .then_some(())
        })
        .await?;
        a.kill();
        let b = Injector::start(&n, &bed.kubeconfig, &args, true).await?;
        register_webhook(&ns.client, &n, &b.url(), &b.ca_pem()?, "Fail", true).await?;
        wait_peer_mesh(&ns, &["v1", "v2", "v3"], &["v1", "v2", "v3", "v4"], 150)
            .await
            .map_err(|e| format!("{e}\n{}", b.log_text()))?;
        monitor
            .check("testnet", 1)
            .map_err(|e| format!("across the restart: {e}"))
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}

fn leads(metrics: &str) -> bool {
    metrics
        .lines()
        .any(|l| l == "stellar_peer_injector_rollout_leader 1")
}

/// The leader, SIGTERMed, gives the Lease up at once, with the default `--shutdown-delay`
/// (it still serves, unready, for that long): the standby leads within 3 s.
pub async fn sigterm_hands_the_lease_over_quickly() -> TestResult {
    use stellar_peer_injector::cli::DEFAULT_SHUTDOWN_DELAY;
    let ns = TestNs::new("handover").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let a = Injector::start(
        &n,
        &bed.kubeconfig,
        &[
            "--debounce",
            "0s",
            "--shutdown-delay",
            DEFAULT_SHUTDOWN_DELAY,
        ],
        true,
    )
    .await?;
    wait_for(Duration::from_secs(30), "A to lead", || async {
        leads(&a.metrics().await).then_some(())
    })
    .await?;
    let b = Injector::start(&n, &bed.kubeconfig, &["--debounce", "0s"], true).await?;
    // B is a standby: the Lease is A's and far from expiring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure(!leads(&b.metrics().await), || {
        "B leads while A holds the Lease".into()
    })?;
    let signalled = Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    ensure(ok.success(), || "kill -TERM failed".into())?;
    wait_for(Duration::from_secs(20), "B to lead", || async {
        leads(&b.metrics().await).then_some(())
    })
    .await?;
    let took = signalled.elapsed();
    ensure(took < Duration::from_secs(3), || {
        format!(
            "handover took {took:?}\nA:\n{}\nB:\n{}",
            a.log_text(),
            b.log_text()
        )
    })?;
    ensure(a.log_text().contains("released the leader Lease"), || {
        format!("A did not release the Lease:\n{}", a.log_text())
    })
}

/// A replica that loses the Lease while it waits out the debounce never patches.
pub async fn a_leader_that_lost_the_lease_during_the_debounce_never_patches() -> TestResult {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    let ns = TestNs::new("lostlease").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let inj = Injector::start(&n, &bed.kubeconfig, &["--debounce", "8s"], true).await?;
    let hook = register_webhook(&ns.client, &n, &inj.url(), &inj.ca_pem()?, "Fail", true).await?;
    let result: TestResult = async {
        setup(&ns, &[("v1", "testnet"), ("v2", "testnet")], &[]).await?;
        wait_peer_mesh(&ns, &["v1", "v2"], &["v1", "v2"], 90).await?;
        wait_for(Duration::from_secs(30), "the injector to lead", || async {
            leads(&inj.metrics().await).then_some(())
        })
        .await?;
        let generations = || async {
            let l = ns
                .api::<StatefulSet>()
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<Vec<(String, Option<i64>)>, String>(
                l.items
                    .into_iter()
                    .map(|s| (s.metadata.name.unwrap_or_default(), s.metadata.generation))
                    .collect(),
            )
        };
        let before = generations().await?;
        // A change: the debounce starts.
        add_validator(&ns, "v3", "testnet").await?;
        // Someone else takes the Lease (as a new leader would after a partition) and keeps
        // it fresh for longer than the debounce.
        let leases = ns.api::<Lease>();
        let until = Instant::now() + Duration::from_secs(14);
        let mut took = false;
        while Instant::now() < until {
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            );
            let r = leases
                .patch(
                    "stellar-peer-injector",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"holderIdentity": "someone-else", "renewTime": now, "leaseDurationSeconds": 15}})),
                )
                .await;
            took |= r.is_ok();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ensure(took, || "could not take the Lease".into())?;
        ensure(!leads(&inj.metrics().await), || "the injector still says it leads".into())?;
        let after = generations().await?;
        let touched: Vec<_> = after
            .iter()
            .filter(|(name, g)| before.iter().any(|(b, bg)| b == name && bg != g))
            .collect();
        ensure(touched.is_empty(), || {
            format!("patched without the Lease: {touched:?}\n{}", inj.log_text())
        })?;
        ensure(!inj.metrics().await.contains("outcome=\"started\""), || {
            format!("acted without the Lease:\n{}", inj.log_text())
        })?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result
}
