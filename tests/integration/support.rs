//! Test bed plumbing: the control plane (tests/testbed/testbed), a namespace per test,
//! injector processes, webhook configurations, polling helpers and `ensure_eq!`. It all
//! lives in the test kit (testkit/), shared with the cluster benchmark; the test modules
//! reach it through `use crate::support::*`.

pub use testkit::*;

use std::time::Duration;

use kube::Api;
use kube::api::ListParams;

/// The value of the metric sample `series` (name and labels exactly as exported, e.g.
/// `stellar_peer_injector_peers_unresolvable{network="testnet"}`) in a /metrics text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The `events.k8s.io` Events in `ns` about the object `kind`/`name` with `reason`.
pub async fn events_about(
    ns: &TestNs,
    kind: &str,
    name: &str,
    reason: &str,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list Events: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
        })
        .collect())
}

/// Waits until the object `kind`/`name` has at least one Event with `reason`; returns them.
pub async fn wait_event_about(
    ns: &TestNs,
    kind: &str,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    wait_for(
        timeout,
        &format!("a {reason} Event on {kind} {name}"),
        || async {
            events_about(ns, kind, name, reason)
                .await
                .ok()
                .filter(|e| !e.is_empty())
        },
    )
    .await
}

/// The Events in `ns` about StellarNode `node` with `reason`.
pub async fn node_events(
    ns: &TestNs,
    node: &str,
    reason: &str,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    events_about(ns, "StellarNode", node, reason).await
}

/// Waits until StellarNode `node` has at least one Event with `reason`; returns them.
pub async fn wait_node_event(
    ns: &TestNs,
    node: &str,
    reason: &str,
    timeout: Duration,
) -> Result<Vec<k8s_openapi::api::events::v1::Event>, String> {
    wait_event_about(ns, "StellarNode", node, reason, timeout).await
}

/// How many times an Event was recorded (1 plus its series' repeats).
pub fn event_count(e: &k8s_openapi::api::events::v1::Event) -> i32 {
    e.series.as_ref().map_or(1, |s| s.count)
}
