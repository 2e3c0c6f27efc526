//! The test bed is a real control plane: StatefulSets become Ready through kwok,
//! rolling updates replace pods one at a time, kube-apiserver calls webhooks, CoreDNS
//! resolves Pod names, and a restart survives a port taken meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::support::*;

fn plain_statefulset(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "fake"}]}}}
    })
}

async fn wait_sts_rolled_out(
    ns: &TestNs,
    name: &str,
    replicas: i32,
) -> Result<StatefulSet, String> {
    let api = ns.api::<StatefulSet>();
    wait_for(
        Duration::from_secs(90),
        &format!("StatefulSet {name} {replicas}/{replicas} Ready and rolled out"),
        || {
            let api = api.clone();
            let name = name.to_owned();
            async move {
                let s = api.get(&name).await.ok()?;
                let st = s.status.clone()?;
                let done = st.observed_generation == s.metadata.generation
                    && st.ready_replicas == Some(replicas)
                    && st.updated_replicas == Some(replicas)
                    && st.current_revision.is_some()
                    && st.current_revision == st.update_revision;
                done.then_some(s)
            }
        },
    )
    .await
}

pub async fn statefulset_reaches_ready() -> TestResult {
    let ns = TestNs::new("bed-ready").await?;
    ns.create::<StatefulSet>(plain_statefulset("web", 3))
        .await?;
    wait_sts_rolled_out(&ns, "web", 3).await?;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .map_err(|e| e.to_string())?;
    ensure_eq!(pods.items.len(), 3, "pods of the StatefulSet")?;
    for p in &pods.items {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        ensure(!node.is_empty(), || {
            format!("pod {:?} not scheduled", p.metadata.name)
        })?;
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        ensure_eq!(phase, "Running", "phase of pod {:?}", p.metadata.name)?;
    }
    Ok(())
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub async fn rolling_update_replaces_pods_one_at_a_time() -> TestResult {
    let ns = TestNs::new("bed-roll").await?;
    ns.create::<StatefulSet>(plain_statefulset("roll", 3))
        .await?;
    let before = wait_sts_rolled_out(&ns, "roll", 3).await?;
    let old_rev = before
        .status
        .and_then(|s| s.current_revision)
        .unwrap_or_default();
    let pods_api = ns.api::<Pod>();
    let old_uids: BTreeSet<String> = pods_api
        .list(&ListParams::default().labels("app=roll"))
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();

    let mut events = watcher(
        pods_api.clone(),
        watcher::Config::default().labels("app=roll"),
    )
    .boxed();
    // Drain the initial list before changing anything.
    let mut state: BTreeMap<String, Pod> = BTreeMap::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitApply(p)))) => {
                state.insert(p.metadata.name.clone().unwrap_or_default(), p);
            }
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => return Err(format!("pod watch failed: {other:?}")),
        }
    }
    let patch =
        json!({"spec": {"template": {"metadata": {"annotations": {"testbed/rollout": "1"}}}}});
    ns.api::<StatefulSet>()
        .patch("roll", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| e.to_string())?;

    let mut max_unavailable = 0;
    let mut seen_uids: BTreeSet<String> = old_uids.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let sts_api = ns.api::<StatefulSet>();
    loop {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "rollout did not finish in 120 s; pods: {:?}",
                state.keys().collect::<Vec<_>>()
            ));
        }
        // Wake at least every second: the StatefulSet status may settle after the last pod event.
        let ev = match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            Ok(ev) => ev,
            Err(_) => Some(Ok(watcher::Event::InitDone)),
        };
        match ev {
            Some(Ok(watcher::Event::Apply(p))) => {
                if let Some(u) = &p.metadata.uid {
                    seen_uids.insert(u.clone());
                }
                state.insert(p.metadata.name.clone().unwrap_or_default(), p);
            }
            Some(Ok(watcher::Event::Delete(p))) => {
                state.remove(&p.metadata.name.clone().unwrap_or_default());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("pod watch error: {e}")),
            None => return Err("pod watch ended".into()),
        }
        let present = state.len();
        let unavailable = state
            .values()
            .filter(|p| !is_ready(p) || p.metadata.deletion_timestamp.is_some())
            .count()
            + 3usize.saturating_sub(present);
        max_unavailable = max_unavailable.max(unavailable);
        ensure(unavailable <= 1, || {
            format!(
                "{unavailable} pods unavailable at once: RollingUpdate must replace one at a time"
            )
        })?;
        let s = sts_api.get("roll").await.map_err(|e| e.to_string())?;
        if let Some(st) = s.status
            && st.observed_generation == s.metadata.generation
            && st.updated_replicas == Some(3)
            && st.ready_replicas == Some(3)
            && st.current_revision == st.update_revision
            && st.current_revision.as_deref() != Some(&old_rev)
            && state.values().all(is_ready)
            && state.len() == 3
            // The status is read fresh, the pods through the watch, which may lag behind:
            // wait until the watch, too, shows only replacements.
            && state
                .values()
                .all(|p| !old_uids.contains(p.metadata.uid.as_deref().unwrap_or("")))
        {
            break;
        }
    }
    let replaced = state
        .values()
        .filter(|p| !old_uids.contains(p.metadata.uid.as_deref().unwrap_or("")))
        .count();
    ensure(replaced == 3, || {
        format!("only {replaced} of 3 pods were replaced")
    })?;
    ensure(max_unavailable == 1, || {
        "no pod was ever unavailable: the rollout was not observed".to_owned()
    })?;
    ensure(seen_uids.len() == 6, || {
        format!(
            "expected 3 old + 3 new pods, saw {} pod UIDs",
            seen_uids.len()
        )
    })?;
    Ok(())
}

pub async fn apiserver_calls_a_loopback_webhook() -> TestResult {
    use axum::routing::post;
    use stellar_peer_injector::server::{self, tls::CertWatcher};

    let ns = TestNs::new("bed-hook").await?;
    let certs = make_certs("probe")?;
    let watcher_ = CertWatcher::load(&certs.join("tls.crt"), &certs.join("tls.key"))
        .map_err(|e| e.to_string())?;
    let tls = watcher_.server_config().map_err(|e| e.to_string())?;
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let router = axum::Router::new().route(
        "/probe",
        post(move |body: axum::body::Bytes| {
            let calls = calls2.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let uid = v["request"]["uid"].clone();
                use base64::Engine;
                let patch = base64::engine::general_purpose::STANDARD
                    .encode(r#"[{"op":"add","path":"/metadata/labels/probed","value":"yes"}]"#);
                axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(
        server::TlsServer::new(listener, tls, router)
            .drain(Duration::from_secs(1))
            .run(stop_rx),
    );
    let ca = std::fs::read_to_string(certs.join("ca.crt")).map_err(|e| e.to_string())?;
    let hook = register_webhook(
        &ns.client,
        &ns.name,
        &format!("https://127.0.0.1:{port}/probe"),
        &ca,
        "Fail",
        false,
    )
    .await?;

    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p", "labels": {"app": "p"}},
        "spec": {"containers": [{"name": "c", "image": "fake"}]}}))
        .map_err(|e| e.to_string())?;
    let created = ns
        .api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .map_err(|e| format!("create pod: {e}"));
    delete_webhook(&ns.client, &hook).await;
    let _ = stop_tx.send(true);
    let _ = task.await;
    let created = created?;
    let label = created
        .metadata
        .labels
        .unwrap_or_default()
        .get("probed")
        .cloned();
    ensure_eq!(
        label.as_deref(),
        Some("yes"),
        "the pod's label `probed` (the webhook's patch)"
    )?;
    ensure(calls.load(Ordering::SeqCst) >= 1, || {
        "the webhook was never called".to_owned()
    })?;
    Ok(())
}

/// CoreDNS answers `{pod}.{service}.{namespace}.svc.cluster.local` for a StatefulSet Pod behind
/// a headless Service (from the EndpointSlice the endpointslice controller makes, with the
/// Pod's hostname), and NXDOMAIN for a name that does not exist.
pub async fn coredns_resolves_statefulset_pod_names() -> TestResult {
    let ns = TestNs::new("bed-dns").await?;
    ns.create::<Service>(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "val-peers"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                 "selector": {"app": "val"},
                 "ports": [{"name": "peer", "port": 11625, "targetPort": 11625}]}
    }))
    .await?;
    ns.create::<StatefulSet>(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "val"},
        "spec": {"replicas": 1, "serviceName": "val-peers",
                 "selector": {"matchLabels": {"app": "val"}},
                 "template": {"metadata": {"labels": {"app": "val"}},
                              "spec": {"containers": [{"name": "c", "image": "fake",
                                  "ports": [{"name": "peer", "containerPort": 11625}]}]}}}
    }))
    .await?;
    let pods = ns.api::<Pod>();
    let ip: Ipv4Addr = wait_for(Duration::from_secs(90), "pod val-0 with an IP", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("val-0").await.ok()?;
            p.status?.pod_ip?.parse().ok()
        }
    })
    .await?;

    let name = format!("val-0.val-peers.{}.svc.cluster.local", ns.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = resolve_a(&name).await;
        if got.as_deref() == Ok(&[ip][..]) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{name} via CoreDNS {}: {got:?}, want [{ip}] (pod val-0's IP) within 60 s",
                dns_addr()?
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let missing = format!("val-7.val-peers.{}.svc.cluster.local", ns.name);
    match resolve_a(&missing).await {
        Err(e) if e.starts_with("NXDOMAIN") => Ok(()),
        other => Err(format!("{missing}: {other:?}, want NXDOMAIN")),
    }
}

/// `testbed restart` of a component whose port someone else took meanwhile (a crowded
/// machine: another bed came up) moves it to a free port, saves that in ports.env and on its
/// command line, and the component is healthy and working there.
pub async fn restart_moves_a_component_off_a_taken_port() -> TestResult {
    exclusive!(); // runs alone: it stops and restarts parts of the bed
    const KCM: &str = "kube-controller-manager";
    let old = bed_port("KCM_PORT")?;
    tokio::task::spawn_blocking(|| stop_component(KCM))
        .await
        .map_err(|e| e.to_string())??;
    // The port is free now (or within moments: the kernel may still be closing the old
    // process's sockets on a loaded machine); take it, as another bed would.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let bound = loop {
        match std::net::TcpListener::bind(("127.0.0.1", old)) {
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => break r,
        }
    };
    let squatter = match bound {
        Ok(l) => l,
        Err(e) => {
            let healed = tokio::task::spawn_blocking(|| restart_component(KCM)).await;
            return Err(format!(
                "cannot occupy 127.0.0.1:{old} after stopping {KCM}: {e} (restarted it: {healed:?})"
            ));
        }
    };
    let restarted = tokio::task::spawn_blocking(|| restart_component(KCM))
        .await
        .map_err(|e| e.to_string())?;
    drop(squatter);
    if let Err(e) = restarted {
        // Leave a working bed behind for the tests after this one.
        let healed = tokio::task::spawn_blocking(|| restart_component(KCM)).await;
        return Err(format!(
            "restart with 127.0.0.1:{old} taken: {e}\n(second restart, port free again: {healed:?})"
        ));
    }
    let new = bed_port("KCM_PORT")?;
    ensure(new != old, || {
        format!("KCM_PORT still {old} in ports.env although that port was taken")
    })?;
    let cmd = std::fs::read(state_dir().join("pids").join(format!("{KCM}.cmd")))
        .map_err(|e| e.to_string())?;
    let want = format!("--secure-port={new}");
    ensure(
        cmd.split(|b| *b == 0).any(|arg| arg == want.as_bytes()),
        || format!("{KCM}'s saved command line lacks {want}"),
    )?;
    // Healthy, and doing its job: a new namespace gets its default ServiceAccount.
    check_bed(Duration::from_secs(30)).map_err(|(_, details)| details)?;
    TestNs::new("bed-moved").await?;
    Ok(())
}

/// No address the bed hands out can leave this machine: for an address in each of its ranges
/// (the Service range, kwok's fake pod IPs, the real node's pod bridge and the rest of its
/// /16), `ip route get` names neither the default gateway nor its device; the kernel refuses
/// it (`unreachable`) or keeps it on a local device. The bed claims these ranges before any
/// component starts (tests/testbed/claim-ranges).
pub async fn testbed_every_range_stays_on_this_machine() -> TestResult {
    bed()?;
    let Some((gateway, device)) = default_route() else {
        // No default route: nothing can leave through one.
        return Ok(());
    };
    let mut problems = Vec::new();
    for addr in [
        "10.96.0.1",
        "10.96.0.10",
        "10.96.173.41",
        "10.244.0.5",
        "10.244.201.9",
        "10.245.0.200",
        "10.245.77.3",
    ] {
        match route_get(addr) {
            Err(refused) => ensure(
                refused.contains("unreachable") || refused.contains("No route"),
                || format!("{addr}: unexpected refusal {refused:?}"),
            )?,
            Ok(route) => {
                let words: Vec<&str> = route.split_whitespace().collect();
                let via = words.windows(2).any(|w| w[0] == "via" && w[1] == gateway);
                let dev = words.windows(2).any(|w| w[0] == "dev" && w[1] == device);
                if via || dev {
                    problems.push(format!("{addr} -> {route}"));
                }
            }
        }
    }
    ensure(problems.is_empty(), || {
        format!("routed off this machine (default via {gateway} dev {device}): {problems:?}")
    })
}
