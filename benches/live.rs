//! On the bed's real node: how long a peer change takes to reach running validators.
//!
//! - **live** (`--peer-updates live`): from a new validator's StellarNode being created to
//!   the `connect` call for its address arriving on the admin port of every running
//!   validator of the network (the time the stand-in logged it, from the container log's
//!   own timestamps), and whether any of them restarted.
//! - **restart** (`--peer-updates restart`, today's default): from the same change to
//!   every running validator replaced by a Ready pod carrying the new peers.
//!
//! stellar-core cannot be built here: the validators run the bed's STAND-IN for it
//! (tests/testbed/images/stellar-core-standin.c), which answers the admin routes as
//! `CommandHandler.cpp` does and logs each call. The added validators are StellarNodes
//! only (no pods), so their names do not resolve and the stand-in answers `connect` with
//! stellar-core's "Could not resolve" exception: the figure is the call's arrival, which is
//! what the injector controls. The stand-in's pods have no readiness delay; the operator's
//! real pods have a 60 s `initialDelaySeconds`, which the restart figure does not include.
//!
//! `cargo bench --bench live` (about 4 minutes) writes the `live` section of
//! `benches/results/latest.json`. It uses the repository's bed (one real node per machine),
//! started if down and then stopped (`STELLAR_TESTBED_KEEP=1` keeps it). Environment:
//! `BENCH_LIVE_PODS` (10), `BENCH_LIVE_CHANGES` (10), `BENCH_LIVE_SKIP_RESTART=1`.
//! Both injectors run with the default flags (`--debounce 5s` included), except the policy.
//! Under `cargo test --all-targets` it does nothing.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde_json::json;
use stellar_peer_injector::crd::StellarNode;
use testkit::{
    TestNs, add_validator, connect_target, delete_webhook, injector_image, injector_with_webhook,
    operator_cfg, pod_ready, real_node, standin_admin_target, stellar_node, svc, wait_for,
};

use common::*;

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The earliest time `pod`'s stand-in logged a `connect` for `target`.
async fn connect_time(api: &Api<Pod>, pod: &str, target: &str) -> Option<f64> {
    let lp = LogParams {
        container: Some("stellar-node".into()),
        timestamps: true,
        ..Default::default()
    };
    let log = api.logs(pod, &lp).await.ok()?;
    // Each line: the kubelet's RFC 3339 timestamp, then what the container wrote.
    log.lines().find_map(|l| {
        let (ts, line) = l.split_once(' ')?;
        if standin_admin_target(line)? != target {
            return None;
        }
        let t: k8s_openapi::jiff::Timestamp = ts.parse().ok()?;
        Some(t.as_nanosecond() as f64 / 1e9)
    })
}

/// (uid, restartCount of stellar-node) of every pod of the namespace, by name.
async fn identities(api: &Api<Pod>) -> Result<BTreeMap<String, (String, i32)>, String> {
    let pods = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(pods
        .items
        .iter()
        .filter_map(|p| {
            let restarts = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find(|c| c.name == "stellar-node")?
                .restart_count;
            Some((
                p.metadata.name.clone()?,
                (p.metadata.uid.clone()?, restarts),
            ))
        })
        .collect())
}

/// Waits until every pod of `names` runs its stand-in and is Ready.
async fn all_running(api: &Api<Pod>, names: &[String], secs: u64) -> Result<(), String> {
    wait_for(
        Duration::from_secs(secs),
        "the validators running",
        || async {
            for n in names {
                let p = api.get(&format!("{n}-0")).await.ok()?;
                if !pod_ready(&p) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `pods` running validators of one network in a namespace of their own, injected by an
/// injector with the default flags plus `extra`.
struct Network {
    ns: TestNs,
    inj: testkit::Injector,
    hook: String,
    names: Vec<String>,
    api: Api<Pod>,
    before: BTreeMap<String, (String, i32)>,
}

async fn network(prefix: &str, extra: &[&str], pods: usize) -> Result<Network, String> {
    let node = real_node()?;
    let image = injector_image(&node)?;
    let ns = TestNs::new(prefix).await?;
    let mut args = vec!["--init-image", image];
    args.extend_from_slice(extra);
    let (inj, hook) = injector_with_webhook(&ns, &args).await?;
    let names: Vec<String> = (0..pods).map(|i| format!("v{i:02}")).collect();
    for n in &names {
        add_validator(&ns, n, operator_cfg(), &node).await?;
    }
    let api = ns.api::<Pod>();
    all_running(&api, &names, 300).await?;
    let before = identities(&api).await?;
    Ok(Network {
        ns,
        inj,
        hook,
        names,
        api,
        before,
    })
}

async fn live_run(pods: usize, changes: usize) -> Result<serde_json::Value, String> {
    let Network {
        ns,
        inj,
        hook,
        names,
        api,
        before,
    } = network("benchlive", &["--peer-updates", "live"], pods).await?;
    let mut every = Vec::new(); // per change: the slowest pod
    let mut each = Vec::new(); // per (change, pod)
    for k in 0..changes {
        let added = format!("a{k:02}");
        let target = connect_target(&svc(&added, &ns.name));
        let t0 = now_s();
        ns.create::<StellarNode>(stellar_node(&added, "Validator", "testnet", false))
            .await?;
        let times = wait_for(Duration::from_secs(60), "connect in every pod", || {
            let (api, names, target) = (api.clone(), names.clone(), target.clone());
            async move {
                let mut out = Vec::new();
                for n in &names {
                    out.push(connect_time(&api, &format!("{n}-0"), &target).await?);
                }
                Some(out)
            }
        })
        .await
        .map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))?;
        let lat: Vec<f64> = times.iter().map(|t| t - t0).collect();
        let worst = lat.iter().copied().fold(f64::MIN, f64::max);
        eprintln!("live: change {k}: every pod in {worst:.2} s");
        every.push(worst);
        each.extend(lat);
    }
    let after = identities(&api).await?;
    let restarts = names
        .iter()
        .map(|n| format!("{n}-0"))
        .filter(|p| before.get(p) != after.get(p))
        .count();
    delete_webhook(&ns.client, &hook).await;
    every.sort_by(f64::total_cmp);
    each.sort_by(f64::total_cmp);
    Ok(json!({
        "running_validators": pods,
        "changes": changes,
        "every_pod_s": {"p50": round(pct(&every, 50.0), 2), "p99": round(pct(&every, 99.0), 2), "max": round(pct(&every, 100.0), 2)},
        "each_pod_s": {"p50": round(pct(&each, 50.0), 2), "p99": round(pct(&each, 99.0), 2)},
        "pods_restarted_or_replaced": restarts,
    }))
}

async fn restart_run(pods: usize) -> Result<serde_json::Value, String> {
    let Network {
        ns,
        inj,
        hook,
        names,
        api,
        before,
    } = network("benchrestart", &[], pods).await?;
    let t0 = now_s();
    ns.create::<StellarNode>(stellar_node("a00", "Validator", "testnet", false))
        .await?;
    let sts = ns.api::<StatefulSet>();
    let (names2, api2) = (names.clone(), api.clone());
    wait_for(
        Duration::from_secs(600),
        "every validator replaced",
        move || {
            let (names, api, sts, before) =
                (names2.clone(), api2.clone(), sts.clone(), before.clone());
            async move {
                let now = identities(&api).await.ok()?;
                for n in &names {
                    let pod = format!("{n}-0");
                    let s = sts.get(n).await.ok()?;
                    let st = s.status?;
                    let settled = st.ready_replicas == Some(1) && st.updated_replicas == Some(1);
                    if now.get(&pod).map(|x| &x.0) == before.get(&pod).map(|x| &x.0) || !settled {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await
    .map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))?;
    let took = now_s() - t0;
    eprintln!("restart: every validator replaced in {took:.1} s");
    delete_webhook(&ns.client, &hook).await;
    Ok(json!({"running_validators": pods, "all_replaced_s": round(took, 1), "pods_replaced": pods}))
}

fn main() {
    if !bench_mode() {
        eprintln!("live: skipped (needs the test bed's real node; run `cargo bench --bench live`)");
        return;
    }
    let pods = env_f64("BENCH_LIVE_PODS", 10.0) as usize;
    let changes = env_f64("BENCH_LIVE_CHANGES", 10.0) as usize;
    let machine = machine_info();
    let busy = BusyMeter::start();
    testkit::use_injector(env!("CARGO_BIN_EXE_stellar-peer-injector"));
    if let Err(e) = testkit::bed() {
        eprintln!("live: cannot bring the bed up: {e}");
        std::process::exit(1);
    }
    let out = testkit::rt().block_on(async {
        let live = live_run(pods, changes).await?;
        let restart = if std::env::var_os("BENCH_LIVE_SKIP_RESTART").is_some() {
            serde_json::Value::Null
        } else {
            restart_run(pods).await?
        };
        Ok::<_, String>((live, restart))
    });
    let busy = busy.stop();
    testkit::teardown();
    let (live, restart) = match out {
        Ok(x) => x,
        Err(e) => {
            eprintln!("live: failed: {e}");
            std::process::exit(1);
        }
    };
    println!("live: {live}\nrestart: {restart}\nmachine during the run: {busy}");
    write_section(
        "live",
        json!({
            "command": "cargo bench --bench live",
            "git": git_revision(),
            "time": now_utc(),
            "machine": machine,
            "machine_load_during_run": busy,
            "note": "stand-in stellar-core (tests/testbed/images/stellar-core-standin.c); added validators are StellarNodes without pods",
            "live": live,
            "restart": restart,
        }),
    );
}
