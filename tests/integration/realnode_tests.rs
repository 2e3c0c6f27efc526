//! Real pods on the bed's real node (tests/testbed/realnode.sh): the injector's own image as
//! the `stellar-peers-config` init container, a stand-in for stellar-core in the operator's
//! image name that prints the file it was started with, names resolved from inside a pod
//! through the DNS Service, and Pod Security admission judging injected pods.
//!
//! Every pod here asks for the real node ([`on_real_node`]): nodeSelector and the toleration
//! of its taint. When the run turns the real node off (`TESTBED_REAL_NODE=0`), main.rs marks
//! these trials ignored and says so in the summary; when the bed cannot run one, they fail
//! with the bed's reason.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stellar_peer_injector::config;
use stellar_peer_injector::crd::StellarNode;

use crate::support::*;

/// Where the injector's merge mode writes the merged file (its default).
const MERGED: &str = "/etc/stellar/merged/stellar-core.cfg";

/// The start every merge-mode trial shares: the bed's real node, a namespace of its own,
/// an injector whose `--init-image` is the injector's own image (imported into the node),
/// and its webhook (failurePolicy Fail). Returns the webhook's name, for `delete_webhook`.
async fn merge_mode_injector(prefix: &str) -> Result<(RealNode, TestNs, Injector, String), String> {
    merge_mode_injector_with(prefix, &[]).await
}

/// [`merge_mode_injector`] with more flags for the injector.
pub(crate) async fn merge_mode_injector_with(
    prefix: &str,
    extra: &[&str],
) -> Result<(RealNode, TestNs, Injector, String), String> {
    let node = real_node()?;
    let image = injector_image(&node)?;
    let ns = TestNs::new(prefix).await?;
    let mut args = vec!["--init-image", image, "--debounce", "0s"];
    args.extend_from_slice(extra);
    let (inj, hook) = injector_with_webhook(&ns, &args).await?;
    Ok((node, ns, inj, hook))
}

fn peers_in(cfg: &str, key: &str) -> Result<BTreeSet<String>, String> {
    let v: toml::Table = cfg.parse().map_err(|e| format!("printed config: {e}"))?;
    Ok(v.get(key)
        .and_then(|a| a.as_array())
        .ok_or_else(|| format!("{key} missing or not top-level"))?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect())
}

/// The running pod of StatefulSet `name` whose stand-in stellar-core printed a config holding
/// every address of `want`: the pod and the printed file.
pub(crate) async fn running_with_peers(
    ns: &TestNs,
    name: &str,
    want: &BTreeSet<String>,
) -> Result<(Pod, String), String> {
    running_with_peers_in(ns, &format!("{name}-0"), "stellar-node", want).await
}

/// [`running_with_peers`] for pod `pod_name` whose stellar-core runs in container `container`.
async fn running_with_peers_in(
    ns: &TestNs,
    pod_name: &str,
    container: &'static str,
    want: &BTreeSet<String>,
) -> Result<(Pod, String), String> {
    let api = ns.api::<Pod>();
    let pod_name = pod_name.to_owned();
    let last = std::sync::Mutex::new(String::from("(no pod yet)"));
    let found = wait_for(
        Duration::from_secs(150),
        &format!("{pod_name} running with its peers"),
        || {
            let (api, pod_name, last) = (api.clone(), pod_name.clone(), &last);
            let note = move |s: String| *last.lock().unwrap_or_else(|e| e.into_inner()) = s;
            async move {
                let pod = api.get(&pod_name).await.ok()?;
                let running = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.name == container
                                && c.state.as_ref().is_some_and(|s| s.running.is_some())
                        })
                    });
                if !running {
                    note(format!(
                        "phase {:?}",
                        pod.status.as_ref().and_then(|s| s.phase.clone())
                    ));
                    return None;
                }
                let log = container_log(&api, &pod_name, container).await.ok()?;
                let Some((path, cfg)) = standin_printed_config(&log) else {
                    note(format!(
                        "{container}'s log has no printed config yet:\n{log}"
                    ));
                    return None;
                };
                if path != MERGED {
                    note(format!("the stand-in was started with --conf {path}"));
                    return None;
                }
                if !want.iter().all(|w| cfg.contains(w.as_str())) {
                    note(format!("the printed file lacks some of {want:?}:\n{cfg}"));
                    return None;
                }
                Some((pod, cfg))
            }
        },
    )
    .await;
    found.map_err(|e| {
        format!(
            "{e}; last seen: {}",
            last.lock().unwrap_or_else(|e| e.into_inner())
        )
    })
}

/// Resolves `names` from inside a pod on the real node with the bed's getaddrinfo() probe
/// (through the pod's resolv.conf: the DNS Service); the probe's output once every name
/// resolved, retried while EndpointSlices catch up.
async fn resolve_in_pod(ns: &TestNs, node: &RealNode, names: &[String]) -> Result<String, String> {
    let api = ns.api::<Pod>();
    let mut last = String::new();
    for attempt in 0..10 {
        let name = format!("dns-probe-{attempt}");
        let mut spec = json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                              "containers": [{"name": "probe", "image": node.dns_probe_image, "args": names}]});
        on_real_node(&mut spec);
        ns.create::<Pod>(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        )
        .await?;
        let phase = wait_for(
            Duration::from_secs(60),
            &format!("{name} to finish"),
            || {
                let (api, name) = (api.clone(), name.clone());
                async move {
                    let p = api.get(&name).await.ok()?;
                    let phase = p.status.and_then(|s| s.phase)?;
                    (phase == "Succeeded" || phase == "Failed").then_some(phase)
                }
            },
        )
        .await?;
        last = container_log(&api, &name, "probe").await?;
        if phase == "Succeeded" {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(format!(
        "names did not all resolve from inside a pod; last probe:\n{last}"
    ))
}

/// A validator pod of the operator's exact shape, injected in merge mode, runs on the real
/// node: the injector's image writes the merged file in `stellar-peers-config`, the stand-in
/// stellar-core is started with it and prints it; the file passes the rules checker and holds
/// the other validator's per-pod address; and every injected per-pod name resolves, from
/// inside a pod through the DNS Service, to that pod's real IP.
pub async fn realnode_operator_validator_runs_its_merged_config() -> TestResult {
    let (node, ns, inj, hook) = merge_mode_injector("real").await?;
    let n = ns.name.clone();
    let result: TestResult = async {
        add_validator(&ns, "v1", operator_cfg(), &node).await?;
        add_validator(&ns, "v2", operator_cfg(), &node).await?;
        let (p1, cfg1) = running_with_peers(&ns, "v1", &BTreeSet::from([svc("v2", &n)])).await?;
        let (p2, cfg2) = running_with_peers(&ns, "v2", &BTreeSet::from([svc("v1", &n)])).await?;
        for (pod, cfg) in [(&p1, &cfg1), (&p2, &cfg2)] {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            ensure(
                pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str()),
                || {
                    format!(
                        "{name} is not on the real node: {:?}",
                        pod.spec.as_ref().and_then(|s| s.node_name.clone())
                    )
                },
            )?;
            let init = pod
                .status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == "stellar-peers-config"))
                .ok_or_else(|| format!("{name}: no status of stellar-peers-config"))?;
            let exit = init
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code);
            ensure(exit == Some(0), || {
                format!("{name}: stellar-peers-config ended {:?}", init.state)
            })?;
            config::check_ours(cfg)
                .map_err(|v| format!("{name}'s printed config breaks our rules: {v:?}\n{cfg}"))?;
            // The operator's file is kept line for line.
            for line in OPERATOR_CFG.lines() {
                ensure(cfg.lines().any(|l| l == line), || {
                    format!("{name}: line {line:?} lost:\n{cfg}")
                })?;
            }
        }
        // Validators are preferred peers: written in PREFERRED_PEERS, which stellar-core
        // dials whether or not KNOWN_PEERS lists them.
        ensure(
            peers_in(&cfg1, "PREFERRED_PEERS")?.contains(&svc("v2", &n)),
            || format!("v1's PREFERRED_PEERS:\n{cfg1}"),
        )?;
        ensure(
            peers_in(&cfg2, "PREFERRED_PEERS")?.contains(&svc("v1", &n)),
            || format!("v2's PREFERRED_PEERS:\n{cfg2}"),
        )?;

        // Every injected per-pod name, resolved as stellar-core would from inside a pod.
        let injected: Vec<String> = peers_in(&cfg1, "PREFERRED_PEERS")?
            .into_iter()
            .chain(peers_in(&cfg2, "PREFERRED_PEERS")?)
            .filter(|a| a.contains(&format!(".{n}.svc.cluster.local")))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        ensure(injected.len() == 2, || {
            format!("injected per-pod names: {injected:?}")
        })?;
        let out = resolve_in_pod(&ns, &node, &injected).await?;
        for (addr, pod) in [(svc("v1", &n), &p1), (svc("v2", &n), &p2)] {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .ok_or("pod without IP")?;
            let line = out
                .lines()
                .find(|l| l.split_whitespace().next() == Some(addr.as_str()))
                .ok_or_else(|| format!("{addr} not in the probe's output:\n{out}"))?;
            ensure(line.split_whitespace().skip(1).any(|a| a == ip), || {
                format!("{addr} resolved to {line:?}, the pod's IP is {ip}")
            })?;
        }
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// SDF's chart's `stellar-core.cfg` (tests/fixtures/configs/README.md), with its own
/// `KNOWN_PEERS` and `PREFERRED_PEERS`.
const SDF_CHART_CFG: &str = include_str!("../fixtures/configs/chart-futurenet-peers.cfg");

/// SDF's chart's default `core.initScript` (stellar/helm-charts @ 721a73cf,
/// charts/core/values.yaml), as its `<fullname>-init-scripts` ConfigMap holds it.
const SDF_INIT_SH: &str = r#"#!/bin/bash
set -ex

# Try to run upgrade-db to install latest schema. If schema is not present yet
# the command will fail. In such case we run new-db to create schema from scratch.
stellar-core upgrade-db --conf /config/stellar-core.cfg --console || \
stellar-core new-db --conf /config/stellar-core.cfg --console

## Below can be used to initialize history archive in an idempotent way
# ls -l /var/lib/stellar/local_archive/.well-known/stellar-history.json || \
# stellar-core new-hist local --conf /config/stellar-core.cfg --console
"#;

/// The per-pod address of release `release`'s first pod: `<fullname>-0.<fullname>.<ns>.svc...`.
fn sdf_addr(release: &str, ns: &str) -> String {
    format!("{release}-core-0.{release}-core.{ns}.svc.cluster.local:11625")
}

/// What SDF's chart (stellar/helm-charts @ 721a73cf0cc2dec6a55e3b9df3301e1862550035,
/// charts/core/templates: core-cm.yaml, core-init-scripts-cm.yaml, core-sts.yaml) renders for
/// release `release` (fullname `<release>-core`) with persistence off, `global.network:
/// testnet` and `core.labels` naming the StellarNode: ConfigMap `<fullname>` (key
/// `stellar-core.cfg`), ConfigMap `<fullname>-init-scripts` (`init.sh`, mode 0755), the headless
/// Service `<fullname>` (publishNotReadyAddresses) and the StatefulSet whose init container
/// `core-init` runs `/bin/bash /init-scripts/init.sh` and whose container `core` runs `run
/// --conf /config/stellar-core.cfg --console` with the chart's default readinessProbe (`/bin/sh
/// -c "curl http://localhost:11626/info | grep '\"state\" : \"Synced!\"'"`). The chart is not vendored and nothing is
/// fetched: the objects are written here after its templates, as config_tests does for SDF's
/// shape. Bed differences: the checksum annotations hold a fixed value (the chart puts the
/// sha256 of the rendered ConfigMaps there), the pod asks for the real node, and its grace
/// period is 2 s.
fn sdf_chart_objects(release: &str) -> Vec<Value> {
    let full = format!("{release}-core");
    let meta_labels =
        json!({"app": full, "chart": "core-0.0.0", "release": release, "heritage": "Helm"});
    let image = "docker.io/stellar/stellar-core:22.1.0";
    let vls = format!("{full}-var-lib-stellar");
    let mut spec = json!({
        "initContainers": [{
            "name": "core-init", "image": image,
            "command": ["/bin/bash", "/init-scripts/init.sh"],
            "imagePullPolicy": "IfNotPresent",
            "volumeMounts": [{"mountPath": "/config", "name": "core-config"},
                             {"mountPath": "/var/lib/stellar", "name": vls},
                             {"mountPath": "/init-scripts", "name": "init-scripts"}]
        }],
        "containers": [{
            "name": "core", "image": image,
            "args": ["run", "--conf", "/config/stellar-core.cfg", "--console"],
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 11626, "name": "core"}, {"containerPort": 11625, "name": "core-peer"}],
            // The chart's default core.readinessProbe.
            "readinessProbe": {"exec": {"command": [
                "/bin/sh", "-c", "curl http://localhost:11626/info | grep '\"state\" : \"Synced!\"'\n"]}},
            "volumeMounts": [{"mountPath": "/config", "name": "core-config"},
                             {"mountPath": "/var/lib/stellar", "name": vls}]
        }],
        "volumes": [{"name": "core-config", "configMap": {"name": full}},
                    {"name": "init-scripts", "configMap": {"name": format!("{full}-init-scripts"), "defaultMode": 0o755}},
                    {"name": vls, "emptyDir": {}}],
        "terminationGracePeriodSeconds": 2
    });
    on_real_node(&mut spec);
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": full, "labels": meta_labels},
               "data": {"stellar-core.cfg": SDF_CHART_CFG}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": format!("{full}-init-scripts"), "labels": meta_labels},
               "data": {"init.sh": SDF_INIT_SH}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": full, "labels": meta_labels},
               "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                        "ports": [{"name": "core", "port": 11626, "targetPort": 11626},
                                  {"name": "core-peer", "port": 11625, "targetPort": 11625}],
                        "selector": {"app": full}}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": full, "labels": meta_labels},
        "spec": {
            "replicas": 1, "podManagementPolicy": "Parallel", "serviceName": full,
            "selector": {"matchLabels": {"app": full}},
            "template": {
                "metadata": {
                    "labels": {"app": full, "release": release, "horizon_network": "testnet",
                               "app.kubernetes.io/name": "stellar-node",
                               "app.kubernetes.io/instance": full},
                    "annotations": {"checksum/core-cm": "0".repeat(64),
                                    "checksum/core-init-scripts-cm": "0".repeat(64)}
                },
                "spec": spec
            }
        }}),
    ]
}

/// An SDF-chart validator on the real node: its StellarNode (named like the chart's fullname,
/// with `stellar.org/peer-address` naming the chart's per-pod address) and the chart's objects.
async fn add_sdf_validator(ns: &TestNs, release: &str) -> TestResult {
    let full = format!("{release}-core");
    let mut sn = stellar_node(&full, "Validator", "testnet", false);
    sn["metadata"]["annotations"] =
        json!({"stellar.org/peer-address": sdf_addr(release, &ns.name)});
    ns.create::<StellarNode>(sn).await?;
    for obj in sdf_chart_objects(release) {
        match obj["kind"].as_str() {
            Some("ConfigMap") => {
                ns.create::<ConfigMap>(obj).await?;
            }
            Some("Service") => {
                ns.create::<Service>(obj).await?;
            }
            _ => {
                ns.create::<StatefulSet>(obj).await?;
            }
        }
    }
    Ok(())
}

/// The terminated state of init container `name` of `pod`: its exit code.
fn init_exit(pod: &Pod, name: &str) -> Result<Option<i32>, String> {
    let st = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == name))
        .ok_or_else(|| format!("no status of init container {name}"))?;
    Ok(st
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code))
}

/// Two validators of SDF's chart shape (charts/core), injected in merge mode, run on the real
/// node: the chart's `core-init` really runs its `init.sh` under Debian's bash in the
/// stand-in's image (bash's `set -x` trace and the stand-in's `upgrade-db` line are in its
/// log, exit 0), then `stellar-peers-config` writes the merged file, and the stand-in
/// stellar-core in container `core` is started with `run --conf <merged> --console` and
/// prints a file that passes the rules checker, holds the other validator's per-pod address
/// and not its own, keeps the chart's own peers and every other line of the chart's file; the
/// stand-in's admin port opens on 0.0.0.0:11626, as the chart's `PUBLIC_HTTP_PORT=true` asks,
/// and the chart's readinessProbe (sh, curl and grep on the stand-in's `/info`) makes the pod
/// Ready. A third validator then rolls both: the loop finds the chart's StatefulSets by their
/// pod template's labels.
pub async fn realnode_sdf_chart_validator_runs_core_init_under_bash_and_its_merged_config()
-> TestResult {
    let (node, ns, inj, hook) = merge_mode_injector("realsdf").await?;
    let n = ns.name.clone();
    let result: TestResult = async {
        add_sdf_validator(&ns, "sdf1").await?;
        add_sdf_validator(&ns, "sdf2").await?;
        let (a1, a2) = (sdf_addr("sdf1", &n), sdf_addr("sdf2", &n));
        let (p1, cfg1) =
            running_with_peers_in(&ns, "sdf1-core-0", "core", &BTreeSet::from([a2.clone()]))
                .await?;
        let (p2, cfg2) =
            running_with_peers_in(&ns, "sdf2-core-0", "core", &BTreeSet::from([a1.clone()]))
                .await?;
        let chart_known: BTreeSet<String> = peers_in(SDF_CHART_CFG, "KNOWN_PEERS")?
            .iter()
            .map(|a| stellar_peer_injector::peers::address::normalize(a).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let api = ns.api::<Pod>();
        for (pod, cfg, own, other) in [(&p1, &cfg1, &a1, &a2), (&p2, &cfg2, &a2, &a1)] {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let spec = pod.spec.as_ref().ok_or("pod without spec")?;
            ensure(
                spec.node_name.as_deref() == Some(node.name.as_str()),
                || format!("{name} is not on the real node: {:?}", spec.node_name),
            )?;
            let inits: Vec<&str> = spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            ensure(inits == ["core-init", "stellar-peers-config"], || {
                format!("{name}: init containers {inits:?}")
            })?;
            for init in ["core-init", "stellar-peers-config"] {
                let exit = init_exit(pod, init)?;
                ensure(exit == Some(0), || format!("{name}: {init} ended {exit:?}"))?;
            }
            let core = spec
                .containers
                .iter()
                .find(|c| c.name == "core")
                .ok_or("no container core")?;
            let want_args = ["run", "--conf", MERGED, "--console"].map(str::to_owned);
            ensure(core.args.as_deref() == Some(&want_args[..]), || {
                format!("{name}: core's args {:?}", core.args)
            })?;
            // core-init ran the chart's script under bash: its xtrace, then the stand-in.
            let init_log = container_log(&api, name, "core-init").await?;
            for want in [
                "+ stellar-core upgrade-db --conf /config/stellar-core.cfg --console",
                "stellar-core stand-in: upgrade-db --conf /config/stellar-core.cfg",
            ] {
                ensure(init_log.contains(want), || {
                    format!("{name}: core-init's log lacks {want:?}:\n{init_log}")
                })?;
            }
            config::check_ours(cfg)
                .map_err(|v| format!("{name}'s printed config breaks our rules: {v:?}\n{cfg}"))?;
            let known = peers_in(cfg, "KNOWN_PEERS")?;
            // The other validator is a preferred peer: in PREFERRED_PEERS (stellar-core
            // dials those whether or not KNOWN_PEERS lists them); itself in neither.
            let preferred = peers_in(cfg, "PREFERRED_PEERS")?;
            ensure(
                preferred.contains(other) && !preferred.contains(own) && !known.contains(own),
                || format!("{name}: PREFERRED_PEERS {preferred:?}, KNOWN_PEERS {known:?} (want {other}, not {own})"),
            )?;
            ensure(chart_known.is_subset(&known), || {
                format!("{name}: the chart's own peers {chart_known:?} not all in {known:?}")
            })?;
            // Every line of the chart's file that is not a peer list is kept as it is.
            for line in SDF_CHART_CFG
                .lines()
                .filter(|l| !l.starts_with("KNOWN_PEERS") && !l.starts_with("PREFERRED_PEERS"))
            {
                ensure(cfg.lines().any(|l| l == line), || {
                    format!("{name}: line {line:?} lost:\n{cfg}")
                })?;
            }
            let core_log = container_log(&api, name, "core").await?;
            ensure(
                core_log.contains("stellar-core stand-in: admin listening on 0.0.0.0:11626\n"),
                || format!("{name}: the stand-in's admin port did not open:\n{core_log}"),
            )?;
            // The chart's readinessProbe passes: the pod becomes Ready, and the probe's calls
            // are in the stand-in's record.
            let ready = wait_for(Duration::from_secs(60), &format!("{name} Ready"), || {
                let (api, name) = (api.clone(), name.to_owned());
                async move {
                    let p = api.get(&name).await.ok()?;
                    ready_since(&p).map(|_| ())
                }
            })
            .await;
            let core_log = container_log(&api, name, "core").await?;
            ready.map_err(|e| format!("{e}; core's log:\n{core_log}"))?;
            ensure(
                core_log.contains("stellar-core stand-in: admin GET /info -> 200 {\n"),
                || format!("{name}: no probe call in core's log:\n{core_log}"),
            )?;
        }
        // A third validator: the loop finds the chart's StatefulSets by their pod template's
        // labels (the chart puts `core.labels` there only) and rolls them, one at a time
        // through the chart's readiness probe; the new pods' files hold the new peer.
        add_sdf_validator(&ns, "sdf3").await?;
        let a3 = sdf_addr("sdf3", &n);
        for (old, name) in [(&p1, "sdf1-core-0"), (&p2, "sdf2-core-0")] {
            let (new, _) =
                running_with_peers_in(&ns, name, "core", &BTreeSet::from([a3.clone()])).await?;
            ensure(new.metadata.uid != old.metadata.uid, || {
                format!("{name} was not replaced")
            })?;
        }
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// A base config that is missing, or not TOML, leaves the pod in `Init:Error` (then
/// `Init:CrashLoopBackOff` as the kubelet retries), and `kubectl get pod` and `describe` show
/// the init container's one-line reason.
pub async fn realnode_a_bad_base_config_shows_init_error_with_its_reason() -> TestResult {
    let (node, ns, inj, hook) = merge_mode_injector("realerr").await?;
    let n = ns.name.clone();
    let bed = bed()?;
    let result: TestResult = async {
        // The ConfigMap exists (or the kubelet would wait for it) but has no stellar-core.cfg.
        add_validator(&ns, "nocfg", json!({"NETWORK_PASSPHRASE": PASSPHRASE}), &node).await?;
        add_validator(&ns, "badcfg", json!({"stellar-core.cfg": "NETWORK_PASSPHRASE = \"unterminated\n[QUORUM_SET\n", "NETWORK_PASSPHRASE": PASSPHRASE}), &node).await?;
        let api = ns.api::<Pod>();
        for name in ["nocfg-0", "badcfg-0"] {
            let message = wait_for(Duration::from_secs(120), &format!("{name}'s init container to fail"), || {
                let (api, name) = (api.clone(), name.to_owned());
                async move {
                    let p = api.get(&name).await.ok()?;
                    let st = p.status?.init_container_statuses?.into_iter().find(|c| c.name == "stellar-peers-config")?;
                    let t = st.state.as_ref().and_then(|s| s.terminated.clone())
                        .or_else(|| st.last_state.as_ref().and_then(|s| s.terminated.clone()))?;
                    (t.exit_code != 0).then(|| t.message.unwrap_or_default())
                }
            })
            .await?;
            let message = message.trim().to_owned();
            ensure(!message.is_empty() && !message.contains('\n'), || format!("{name}: termination message {message:?}"))?;
            let get = bed.run(&["kubectl", "get", "pod", "-n", &n, name, "--no-headers"])?;
            ensure(get.contains("Init:Error") || get.contains("Init:CrashLoopBackOff"), || format!("kubectl get pod: {get}"))?;
            let describe = bed.run(&["kubectl", "describe", "pod", "-n", &n, name])?;
            ensure(describe.contains(&message), || format!("describe lacks {message:?}:\n{describe}"))?;
            // The injector reports it too: `explain` names the failed step with its reason.
            let pod_ref = format!("{n}/{name}");
            let explained = crate::controls_tests::explain_json(&["--pod", &pod_ref]).await?;
            let failed = explained.pointer("/explanations/0/running").and_then(Value::as_array).into_iter().flatten()
                .find(|r| r["name"] == name).and_then(|r| r["init_failed"].as_str()).map(str::to_owned);
            ensure(failed.as_deref() == Some(message.as_str()), || format!("explain --pod {pod_ref}: init_failed {failed:?}, want {message:?}: {explained}"))?;
        }
        // The loop (leader) reports both: a metric, and one Event on each StellarNode.
        wait_for(Duration::from_secs(60), "init_failures{network=\"testnet\"} to be 2", || async {
            (inj.metric("stellar_peer_injector_init_failures{network=\"testnet\"}").await == Some(2.0)).then_some(())
        })
        .await?;
        let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
        for node in ["nocfg", "badcfg"] {
            let notes = wait_for(Duration::from_secs(60), &format!("a PeersConfigFailed Event on StellarNode {node}"), || {
                let events = events.clone();
                async move {
                    let notes: Vec<String> = events.list(&ListParams::default()).await.ok()?.items.into_iter()
                        .filter(|e| e.reason.as_deref() == Some("PeersConfigFailed"))
                        .filter(|e| e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some("StellarNode") && r.name.as_deref() == Some(node)))
                        .filter_map(|e| e.note)
                        .collect();
                    (!notes.is_empty()).then_some(notes)
                }
            })
            .await?;
            ensure(notes.iter().all(|t| t.contains(&format!("pod {node}-0")) && t.contains("render-config")), || format!("{node}: {notes:?}"))?;
        }
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// A namespace that enforces Pod Security `restricted` accepts a compliant validator pod once
/// it is injected, and the pod runs on the real node. This needs the injected init container
/// to be compliant by itself (runAsNonRoot, seccomp RuntimeDefault, no privilege escalation,
/// all capabilities dropped): the pod here sets those per container, not for the pod, as the
/// admission plugin judges every container, injected ones included.
pub async fn realnode_restricted_namespace_accepts_an_injected_compliant_pod() -> TestResult {
    let (node, ns, inj, hook) = merge_mode_injector("realpsa").await?;
    let n = ns.name.clone();
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                                 "pod-security.kubernetes.io/enforce-version": "latest"}}});
    namespaces
        .patch(&n, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .map_err(|e| format!("label namespace: {e}"))?;
    let result: TestResult = async {
        ns.create::<StellarNode>(stellar_node("r1", "Validator", "testnet", false)).await?;
        ns.create::<ConfigMap>(config_map("r1-config", operator_cfg())).await?;
        let restricted = json!({"runAsNonRoot": true, "runAsUser": 10001, "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
        let mut spec = json!({
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {"name": "stellar-node", "image": "stellar/stellar-core:22.1.0", "securityContext": restricted,
                 "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": true}]},
                {"name": "stellar-health-check", "image": node.pause_image, "securityContext": restricted}
            ],
            "volumes": [{"name": "config", "configMap": {"name": "r1-config"}}]
        });
        on_real_node(&mut spec);
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "r1-0", "labels": operator_labels("r1", "Validator", "testnet")},
                         "spec": spec});
        let pod: Pod = serde_json::from_value(pod).map_err(|e| e.to_string())?;
        let api = ns.api::<Pod>();
        api.create(&PostParams::default(), &pod)
            .await
            .map_err(|e| format!("the restricted namespace refused the injected pod: {e}"))?;
        let created = api.get("r1-0").await.map_err(|e| e.to_string())?;
        let inits: Vec<String> = created.spec.iter().flat_map(|s| s.init_containers.iter().flatten()).map(|c| c.name.clone()).collect();
        ensure(inits == ["stellar-peers-config"], || format!("not injected: init containers {inits:?}"))?;
        wait_for(Duration::from_secs(120), "r1-0's stand-in to run", || {
            let api = api.clone();
            async move {
                let log = container_log(&api, "r1-0", "stellar-node").await.ok()?;
                standin_printed_config(&log)
            }
        })
        .await?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// Runs the bed's helm (its state under the bed's dir) with `args`.
fn helm(args: &[&str]) -> Result<String, String> {
    crate::chart_tests::run_ok("helm", args, None)
}

/// The chart installed in-cluster as users install it: its defaults (two replicas, helm-made
/// certificates, the webhook through its Service, `failurePolicy: Fail`), except the image
/// (the injector's, imported into the real node's containerd), its pull policy (`Never`: there
/// is no registry) and the real node's nodeSelector and toleration (on kwok's nodes the pods
/// would only pretend to run). Exclusive: with the chart's default namespaceSelector its
/// webhook also sees the other trials' namespaces.
///
/// Pods of StellarNodes on a kwok node and on the real node are injected through the
/// Service; and deleting the leader pod makes the other replica lead within 3 s with the
/// chart's default shutdown delay (the Lease must be released when shutdown starts, not after
/// the delay).
pub async fn realnode_chart_in_cluster_injects_through_its_service_and_hands_over() -> TestResult {
    exclusive!();
    let node = real_node()?;
    let image = injector_image(&node)?;
    let rel = TestNs::new("chartreal").await?;
    let wl = TestNs::new("chartrealwl").await?;
    let release = format!("r-{}", rel.name);
    let (repository, tag) = image.rsplit_once(':').ok_or("image without a tag")?;
    let values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    });
    let dir = repo_root().join("target/testbed/realnode-chart");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join(format!("{release}.values.json"));
    std::fs::write(&file, values.to_string()).map_err(|e| e.to_string())?;
    let chart = repo_root().join("charts/stellar-peer-injector");
    let (chart, file) = (chart.display().to_string(), file.display().to_string());
    helm(&[
        "install",
        &release,
        &chart,
        "--namespace",
        &rel.name,
        "--values",
        &file,
        "--wait",
        "--timeout",
        "180s",
    ])?;
    let result: TestResult = async {
        let pods = rel.api::<Pod>();
        let sel = format!("app.kubernetes.io/instance={release}");
        let list = pods
            .list(&kube::api::ListParams::default().labels(&sel))
            .await
            .map_err(|e| e.to_string())?;
        ensure(list.items.len() == 2, || {
            format!("{} injector pods", list.items.len())
        })?;
        for p in &list.items {
            let on = p.spec.as_ref().and_then(|s| s.node_name.clone());
            ensure(on.as_deref() == Some(node.name.as_str()), || {
                format!("injector pod on {on:?}")
            })?;
        }
        // A validator on a kwok node and one on the real node, both injected by the chart's pods.
        let n = wl.name.clone();
        wl.create::<StellarNode>(stellar_node("k1", "Validator", "testnet", false))
            .await?;
        // On a kwok node, explicitly (the bed labels them type=kwok).
        let mut k1 = operator_statefulset("k1", "Validator", "testnet", 1);
        k1["spec"]["template"]["spec"]["nodeSelector"] = json!({"type": "kwok"});
        wl.create::<StatefulSet>(k1).await?;
        add_validator(&wl, "v1", operator_cfg(), &node).await?;
        wait_for(Duration::from_secs(90), "k1-0 (kwok node) injected", || {
            let api = wl.api::<Pod>();
            async move {
                api.get("k1-0")
                    .await
                    .ok()
                    .and_then(|p| annotation(&p, "stellar.org/peers-hash"))
            }
        })
        .await?;
        running_with_peers(&wl, "v1", &BTreeSet::from([svc("k1", &n)])).await?;

        // Handover: delete the leader pod, with the chart's default grace and shutdown delay.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = rel.api();
        let holder = |l: &k8s_openapi::api::coordination::v1::Lease| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty())
        };
        let leader = wait_for(Duration::from_secs(60), "a leader", || {
            let leases = leases.clone();
            async move {
                leases
                    .get("stellar-peer-injector")
                    .await
                    .ok()
                    .as_ref()
                    .and_then(holder)
            }
        })
        .await?;
        let started = std::time::Instant::now();
        pods.delete(&leader, &Default::default())
            .await
            .map_err(|e| format!("delete {leader}: {e}"))?;
        let next = wait_for(Duration::from_secs(60), "another replica to lead", || {
            let (leases, leader) = (leases.clone(), leader.clone());
            async move {
                let h = leases
                    .get("stellar-peer-injector")
                    .await
                    .ok()
                    .as_ref()
                    .and_then(holder)?;
                (h != leader).then_some(h)
            }
        })
        .await?;
        let took = started.elapsed();
        ensure(took < Duration::from_secs(3), || {
            format!("{next} led {took:?} after {leader} was deleted (want < 3 s)")
        })?;

        // Upgrade with no refused pod: Stellar pods created without a pause through a
        // `helm upgrade` that rolls the injector's Deployment, and through deleting one of
        // its pods. Every one must be admitted and injected.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let creator = tokio::spawn(create_pods_until(wl.api::<Pod>(), stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        helm(&[
            "upgrade", &release, &chart, "--namespace", &rel.name, "--values", &file,
            "--set", "podAnnotations.upgraded=yes", "--wait", "--timeout", "180s",
        ])?;
        let after_upgrade = wait_for(Duration::from_secs(60), "two Ready injector pods", || {
            let pods = pods.clone();
            let sel = sel.clone();
            async move { ready_names(&pods, &sel).await.filter(|r| r.len() == 2) }
        })
        .await?;
        pods.delete(&after_upgrade[0], &Default::default())
            .await
            .map_err(|e| format!("delete {}: {e}", after_upgrade[0]))?;
        wait_for(Duration::from_secs(90), "two Ready injector pods again", || {
            let pods = pods.clone();
            let sel = sel.clone();
            let gone = after_upgrade[0].clone();
            async move {
                ready_names(&pods, &sel)
                    .await
                    .filter(|r| r.len() == 2 && !r.contains(&gone))
            }
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let tally = creator.await.map_err(|e| e.to_string())?;
        ensure(tally.created >= 20 && tally.refused.is_empty() && tally.uninjected.is_empty(), || {
            format!(
                "through helm upgrade and an injector pod's deletion: {} created, refused {:?}, uninjected {:?}",
                tally.created, tally.refused, tally.uninjected
            )
        })?;
        eprintln!(
            "upgrade and pod deletion: {} Stellar pods created, 0 refused, 0 uninjected",
            tally.created
        );

        // `kubectl drain` of the real node respects the chart's PodDisruptionBudget
        // (minAvailable 1): it evicts one injector pod, whose replacement has nowhere to
        // go (the node is cordoned), and is refused the other one.
        let drained = bed()?.run(&[
            "kubectl", "drain", &node.name, "--pod-selector", &sel, "--ignore-daemonsets",
            "--delete-emptydir-data", "--timeout", "20s",
        ]);
        let _ = bed()?.run(&["kubectl", "uncordon", &node.name]);
        match drained {
            Ok(text) => return Err(format!("kubectl drain evicted every injector pod despite the PodDisruptionBudget:\n{text}")),
            Err(text) => ensure(text.contains("disruption budget"), || {
                format!("kubectl drain failed, but not at the PodDisruptionBudget:\n{text}")
            })?,
        }
        let ready = ready_names(&pods, &sel).await.unwrap_or_default();
        ensure(!ready.is_empty(), || "no injector pod left Ready during the drain".into())?;
        wait_for(Duration::from_secs(90), "two Ready injector pods after uncordon", || {
            let pods = pods.clone();
            let sel = sel.clone();
            async move { ready_names(&pods, &sel).await.filter(|r| r.len() == 2) }
        })
        .await?;
        Ok(())
    }
    .await;
    let _ = helm(&[
        "uninstall",
        &release,
        "--namespace",
        &rel.name,
        "--wait",
        "--timeout",
        "60s",
    ]);
    result
}

/// The Ready, not terminating pods matching `sel`, by name.
async fn ready_names(pods: &Api<Pod>, sel: &str) -> Option<Vec<String>> {
    let list = pods.list(&ListParams::default().labels(sel)).await.ok()?;
    Some(
        list.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect(),
    )
}

/// What became of the Stellar pods [`create_pods_until`] created.
struct Tally {
    created: usize,
    /// The API server's answer to each create that failed.
    refused: Vec<String>,
    /// Pods admitted without peers.
    uninjected: Vec<String>,
}

/// Creates a Stellar pod of StellarNode `k1` (on a kwok node) every 200 ms until `stop`.
async fn create_pods_until(
    api: Api<Pod>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    let mut t = Tally {
        created: 0,
        refused: Vec::new(),
        uninjected: Vec::new(),
    };
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        i += 1;
        let name = format!("k1-burst-{i}");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": operator_labels("k1", "Validator", "testnet")},
            "spec": {"nodeSelector": {"type": "kwok"},
                     "containers": [{"name": "stellar-node", "image": "stellar/stellar-core:22.1.0"}]}});
        match serde_json::from_value::<Pod>(pod) {
            Err(e) => t.refused.push(format!("{name}: bad test object: {e}")),
            Ok(pod) => match api.create(&PostParams::default(), &pod).await {
                Err(e) => t.refused.push(format!("{name}: {e}")),
                Ok(p) => {
                    t.created += 1;
                    if annotation(&p, "stellar.org/peers-hash").is_none() {
                        t.uninjected.push(name);
                    }
                }
            },
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t
}

/// What a real kubelet does to files under a pod's securityContext: stellar-core running as
/// another user than the init container (stellar-core's own image runs as a non-root user;
/// the init container as the injector image's 65532), with a read-only root filesystem and an
/// `fsGroup`, still reads the merged file the init container wrote into the shared emptyDir, and
/// the init container reads the ConfigMap through the kubelet's `..data` symlinks.
pub async fn realnode_merged_file_is_readable_by_stellar_core_as_another_user() -> TestResult {
    let (node, ns, inj, hook) = merge_mode_injector("realuid").await?;
    let n = ns.name.clone();
    let result: TestResult = async {
        for name in ["u1", "u2"] {
            ns.create::<StellarNode>(stellar_node(name, "Validator", "testnet", false))
                .await?;
            ns.create::<ConfigMap>(config_map(&format!("{name}-config"), operator_cfg()))
                .await?;
            ns.create::<Secret>(seed_secret(name)).await?;
            let mut sts = operator_validator(name, &node.pause_image);
            let spec = &mut sts["spec"]["template"]["spec"];
            spec["securityContext"] = json!({"fsGroup": 10000});
            spec["containers"][0]["securityContext"] =
                json!({"runAsUser": 10001, "runAsGroup": 10001, "readOnlyRootFilesystem": true});
            ns.create::<StatefulSet>(sts).await?;
        }
        let (_, cfg) = running_with_peers(&ns, "u1", &BTreeSet::from([svc("u2", &n)])).await?;
        config::check_ours(&cfg)
            .map_err(|v| format!("printed config breaks our rules: {v:?}\n{cfg}"))?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}

/// When the Ready condition of `pod` last became True.
fn ready_since(pod: &Pod) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .clone()
}

/// A third validator restarts the two running on the real node one at a time, with the
/// kubelet's real readiness: each new pod's stand-in prints a file holding the new peer, and
/// the second pod was created only after the first new one was Ready.
pub async fn realnode_a_new_validator_rolls_the_real_pods_one_at_a_time() -> TestResult {
    let (node, ns, inj, hook) = merge_mode_injector("realroll").await?;
    let n = ns.name.clone();
    let result: TestResult = async {
        add_validator(&ns, "v1", operator_cfg(), &node).await?;
        add_validator(&ns, "v2", operator_cfg(), &node).await?;
        let (old1, _) = running_with_peers(&ns, "v1", &BTreeSet::from([svc("v2", &n)])).await?;
        let (old2, _) = running_with_peers(&ns, "v2", &BTreeSet::from([svc("v1", &n)])).await?;
        add_validator(&ns, "v3", operator_cfg(), &node).await?;
        let (p1, _) = running_with_peers(&ns, "v1", &BTreeSet::from([svc("v3", &n)])).await?;
        let (p2, _) = running_with_peers(&ns, "v2", &BTreeSet::from([svc("v3", &n)])).await?;
        for (old, new) in [(&old1, &p1), (&old2, &p2)] {
            ensure(old.metadata.uid != new.metadata.uid, || {
                format!("{:?} was not replaced", new.metadata.name)
            })?;
        }
        let (first, second) = if p1.metadata.creation_timestamp <= p2.metadata.creation_timestamp {
            (&p1, &p2)
        } else {
            (&p2, &p1)
        };
        let ready = ready_since(first).ok_or("the first new pod is not Ready")?;
        let created = second
            .metadata
            .creation_timestamp
            .clone()
            .ok_or("no creation time")?;
        ensure(ready.0 <= created.0, || {
            format!(
                "{:?} was created at {:?}, before {:?} was Ready ({:?}): not one at a time",
                second.metadata.name, created.0, first.metadata.name, ready.0
            )
        })?;
        Ok(())
    }
    .await;
    delete_webhook(&ns.client, &hook).await;
    result.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
}
