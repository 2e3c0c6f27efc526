//! `explain`: why a pod is (not) injected, which peers it gets, and what the rollout
//! loop will do about it next. Pure: the objects are read by the caller (from the
//! cluster, or from files offline) and handed in; the webhook's selectors, the
//! injector's own rules and the rollout plan are evaluated here, with the same code the
//! webhook and the loop run.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;
use serde_json::Value;

use crate::inject::review::PodView;
use crate::inject::{
    ANNOTATION_HASH, Decision, InjectSettings, LABEL_INSTANCE, LABEL_NAME, LABEL_NAME_VALUE,
    decide_pod,
};
use crate::peers::{Lookup, PeerSnapshot};
use crate::rollout::plan::{NextStep, Restart, WorkloadKey};

/// The webhook name the chart (and every test) registers.
pub const WEBHOOK_NAME: &str = "peers.stellar.org";

/// Does `sel` select `labels`? An absent selector selects everything; an empty one too.
/// Unknown operators select nothing, as the API server would refuse them.
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else {
        return true;
    };
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

fn any_of(list: Option<&Vec<String>>, want: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

/// Does a rule send Pod CREATE requests (core group, v1) to the webhook?
fn rule_matches_pod_create(r: &RuleWithOperations) -> bool {
    any_of(r.operations.as_ref(), "CREATE")
        && any_of(r.api_groups.as_ref(), "")
        && any_of(r.api_versions.as_ref(), "v1")
        && r.resources
            .iter()
            .flatten()
            .any(|x| x == "*" || x == "pods" || x == "*/*")
        && r.scope
            .as_deref()
            .is_none_or(|s| s == "*" || s == "Namespaced")
}

/// How the cluster's webhook configurations treat the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookVerdict {
    /// `None` when no configuration was given (offline without one).
    pub matched: Option<bool>,
    /// `<configuration>/<webhook>` that sends it to the injector.
    pub matched_by: Vec<String>,
    /// Why each webhook named [`WEBHOOK_NAME`] that does not match leaves it out.
    pub excluded_by: Vec<String>,
}

/// Why webhook `h` of `config` does not send the pod to the injector; `None` when it does.
fn exclusion(
    config: &str,
    h: &MutatingWebhook,
    ns_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> Option<String> {
    let id = format!("{config}/{}", h.name);
    if !h.rules.iter().flatten().any(rule_matches_pod_create) {
        return Some(format!("{id}: its rules do not include Pod CREATE"));
    }
    if !selector_matches(h.namespace_selector.as_ref(), ns_labels) {
        return Some(format!(
            "{id}: its namespaceSelector leaves the namespace out (namespace labels {})",
            labels_text(ns_labels)
        ));
    }
    if !selector_matches(h.object_selector.as_ref(), pod_labels) {
        return Some(format!(
            "{id}: its objectSelector leaves the pod out (pod labels {}; the chart selects {LABEL_NAME}={LABEL_NAME_VALUE})",
            labels_text(pod_labels)
        ));
    }
    None
}

fn labels_text(l: &BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return "none".to_owned();
    }
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Evaluates every webhook named `webhook_name` of `configs` for a pod with these labels
/// in a namespace with these labels.
pub fn webhook_verdict(
    configs: Option<&[MutatingWebhookConfiguration]>,
    webhook_name: &str,
    ns_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> WebhookVerdict {
    let Some(configs) = configs else {
        return WebhookVerdict {
            matched: None,
            matched_by: Vec::new(),
            excluded_by: Vec::new(),
        };
    };
    let mut v = WebhookVerdict {
        matched: Some(false),
        matched_by: Vec::new(),
        excluded_by: Vec::new(),
    };
    for c in configs {
        let name = c.metadata.name.as_deref().unwrap_or_default();
        for h in c
            .webhooks
            .iter()
            .flatten()
            .filter(|h| h.name == webhook_name)
        {
            match exclusion(name, h, ns_labels, pod_labels) {
                None => v.matched_by.push(format!("{name}/{}", h.name)),
                Some(why) => v.excluded_by.push(why),
            }
        }
    }
    v.matched = Some(!v.matched_by.is_empty());
    v
}

/// What the injector answers for the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    Inject {
        /// `merge` (a validator's config), `captive-merge` (a Horizon or stellar-rpc
        /// captive-core file) or `env`.
        mode: &'static str,
        warnings: Vec<String>,
    },
    Skip {
        reason: &'static str,
        why: String,
    },
    Deny {
        reason: &'static str,
        message: String,
    },
    NotReady,
}

/// The peers a pod of the node gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Peers {
    pub network: String,
    pub hash: String,
    pub known: Vec<String>,
    pub preferred: Vec<String>,
}

/// One running pod of the node and whether it carries the current list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunningPod {
    pub name: String,
    /// Its `stellar.org/peers-hash`, `None` when it was never injected.
    pub hash: Option<String>,
    pub current: bool,
    /// Its merge-mode init step failed: the step's one-line reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_failed: Option<String>,
    /// It carries the live sidecar: peer changes reach it in place, without a restart.
    pub live: bool,
}

/// A pod of the subject's StellarNode, as seen in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenPod {
    pub name: String,
    /// Its `stellar.org/peers-hash`, `None` when it was never injected.
    pub hash: Option<String>,
    /// Its merge-mode init step failed: the step's one-line reason
    /// ([`crate::rollout::observe::init_failure`]).
    pub init_failed: Option<String>,
    /// It carries the live sidecar ([`crate::rollout::observe::has_live_sidecar`]).
    pub live: bool,
}

/// Everything `explain` says about one pod (or pod template).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `Pod ns/name`, `StatefulSet ns/name (pod template)`, `StellarNode ns/name`.
    pub subject: String,
    pub webhook: WebhookVerdict,
    pub injector: Verdict,
    /// `ns/name` of its StellarNode, when it names one.
    pub stellarnode: Option<String>,
    pub kind: Option<String>,
    pub peers: Option<Peers>,
    pub running: Vec<RunningPod>,
    /// What the rollout loop does next about its workload (`None`: no rollout view).
    pub next: Option<String>,
    /// What a peer change does to its running pods: the policy and where it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates: Option<String>,
}

/// What is known around the subject.
pub struct Context<'a> {
    pub snapshot: Option<&'a PeerSnapshot>,
    pub settings: &'a InjectSettings,
    /// `None`: no webhook configuration is known (offline without one).
    pub webhooks: Option<&'a [MutatingWebhookConfiguration]>,
    pub webhook_name: &'a str,
    /// Labels of the subject's namespace (`kubernetes.io/metadata.name` is added).
    pub namespace_labels: BTreeMap<String, String>,
    /// Pods of the subject's StellarNode seen running.
    pub running: Vec<SeenPod>,
    /// The rollout plan's listing, when known; `None` with no rollout view.
    pub restarts: Option<&'a [Restart]>,
    /// The StellarNode (instance label) of every workload seen.
    pub instances: &'a BTreeMap<WorkloadKey, String>,
}

fn pod_labels(pod: &Value) -> BTreeMap<String, String> {
    pod.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn skip_why(reason: crate::inject::SkipReason) -> String {
    use crate::inject::SkipReason as S;
    match reason {
        S::NotStellar => format!("not a Stellar pod: label {LABEL_NAME} is not {LABEL_NAME_VALUE}"),
        S::NoInstanceLabel => {
            format!("label {LABEL_INSTANCE} (its StellarNode's name) is missing or empty")
        }
        S::OptedOut => "opted out: annotation stellar.org/inject-peers=\"false\"".to_owned(),
        S::NotCreate | S::NotPod => "not a Pod CREATE".to_owned(),
    }
}

/// Explains one pod (or pod template, given as a pod) in `namespace`.
pub fn explain(subject: String, pod: &Value, namespace: &str, ctx: &Context<'_>) -> Explanation {
    let labels = pod_labels(pod);
    let mut ns_labels = ctx.namespace_labels.clone();
    ns_labels
        .entry("kubernetes.io/metadata.name".to_owned())
        .or_insert_with(|| namespace.to_owned());
    let webhook = webhook_verdict(ctx.webhooks, ctx.webhook_name, &ns_labels, &labels);
    let text = pod.to_string();
    let injector = match serde_json::from_str::<PodView<'_>>(&text) {
        Err(e) => Verdict::Deny {
            reason: "malformed-pod",
            message: format!("cannot read the pod ({e}); fix the pod manifest"),
        },
        Ok(view) => match decide_pod(&view, Some(namespace), ctx.snapshot, ctx.settings) {
            Decision::Inject {
                shape, warnings, ..
            } => Verdict::Inject {
                mode: match shape.merge.as_deref().map(|m| m.plan.captive.is_some()) {
                    None => "env",
                    Some(false) => "merge",
                    Some(true) => "captive-merge",
                },
                warnings,
            },
            Decision::Skip(r) => Verdict::Skip {
                reason: r.as_str(),
                why: skip_why(r),
            },
            Decision::Deny { reason, message } => Verdict::Deny {
                reason: reason.as_str(),
                message,
            },
            Decision::NotReady => Verdict::NotReady,
        },
    };
    let instance = labels.get(LABEL_INSTANCE).filter(|s| !s.is_empty());
    let entry = instance.and_then(|i| ctx.snapshot?.node(namespace, i));
    let list = match (instance, ctx.snapshot) {
        (Some(i), Some(s)) => match s.lookup(namespace, i) {
            Lookup::Found(l) => Some(l),
            _ => None,
        },
        _ => None,
    };
    let peers = list.as_ref().map(|l| Peers {
        network: l.network.clone(),
        hash: l.hash.clone(),
        known: l.known.iter().map(ToString::to_string).collect(),
        preferred: l.preferred.iter().map(ToString::to_string).collect(),
    });
    let updates = entry.map(|e| match e.record.peer_updates {
        Some(p) => format!(
            "{} (annotation {})",
            p.as_str(),
            crate::live::ANNOTATION_PEER_UPDATES
        ),
        None => format!("{} (--peer-updates)", ctx.settings.peer_updates.as_str()),
    });
    let running = ctx
        .running
        .iter()
        .map(|p| RunningPod {
            name: p.name.clone(),
            hash: p.hash.clone(),
            current: list
                .as_ref()
                .is_some_and(|l| p.hash.as_deref() == Some(l.hash.as_str())),
            init_failed: p.init_failed.clone(),
            live: p.live,
        })
        .collect();
    let next = ctx.restarts.map(|restarts| {
        let Some(i) = instance else {
            return "nothing: the pod names no StellarNode".to_owned();
        };
        let of_node = |k: &WorkloadKey| {
            k.namespace == namespace && ctx.instances.get(k).map(String::as_str) == Some(i)
        };
        let mine: Vec<&Restart> = restarts.iter().filter(|r| of_node(&r.key)).collect();
        let has_workload = ctx.instances.keys().any(of_node);
        match mine.as_slice() {
            [] if list.is_none() => "nothing: there is no peer list for it".to_owned(),
            [] if has_workload => "nothing: its workload carries the current peers".to_owned(),
            [] => format!(
                "nothing: the loop rolls StatefulSets and Deployments, and StellarNode {namespace}/{i} has none"
            ),
            rs => rs
                .iter()
                .map(|r| format!("{}: {}", r.key, r.next))
                .collect::<Vec<_>>()
                .join("; "),
        }
    });
    Explanation {
        subject,
        webhook,
        injector,
        stellarnode: instance.map(|i| format!("{namespace}/{i}")),
        kind: entry.map(|e| e.record.kind.as_str().to_owned()),
        peers,
        running,
        next,
        updates,
    }
}

/// The pods of `instance` in `namespace` among `pods`, sorted by name.
pub fn running_of(pods: &[Value], namespace: &str, instance: &str) -> Vec<SeenPod> {
    let mut out: Vec<SeenPod> = pods
        .iter()
        .filter(|p| {
            p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                && pod_labels(p).get(LABEL_INSTANCE).map(String::as_str) == Some(instance)
        })
        .filter_map(|p| {
            let name = p.pointer("/metadata/name")?.as_str()?.to_owned();
            let hash = p
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ANNOTATION_HASH))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let typed = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(p.clone()).ok();
            let init_failed = typed
                .as_ref()
                .and_then(crate::rollout::observe::init_failure)
                .map(|f| f.message);
            let live = typed
                .as_ref()
                .is_some_and(crate::rollout::observe::has_live_sidecar);
            Some(SeenPod {
                name,
                hash,
                init_failed,
                live,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The table form of explanations.
pub fn render_table(items: &[Explanation]) -> String {
    let mut out = String::new();
    for (n, e) in items.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&e.subject);
        out.push('\n');
        let mut row = |k: &str, v: String| {
            out.push_str(&format!("  {k:<13} {v}\n"));
        };
        row(
            "webhook",
            match e.webhook.matched {
                None => "not checked (no MutatingWebhookConfiguration given)".to_owned(),
                Some(true) => format!("matches: {}", e.webhook.matched_by.join(", ")),
                Some(false) if e.webhook.excluded_by.is_empty() => format!(
                    "no webhook named {WEBHOOK_NAME} is configured: the injector is never called"
                ),
                Some(false) => format!(
                    "not sent to the injector: {}",
                    e.webhook.excluded_by.join("; ")
                ),
            },
        );
        row(
            "injector",
            match &e.injector {
                Verdict::Inject { mode, warnings } if warnings.is_empty() => {
                    format!("injects ({mode} mode)")
                }
                Verdict::Inject { mode, warnings } => {
                    format!("injects ({mode} mode), warning: {}", warnings.join("; "))
                }
                Verdict::Skip { why, .. } => format!("leaves it alone: {why}"),
                Verdict::Deny { message, .. } => format!("refuses it: {message}"),
                Verdict::NotReady => "not ready (cache not synced)".to_owned(),
            },
        );
        if let Some(n) = &e.stellarnode {
            let kind = e.kind.as_deref().unwrap_or("unknown: no such StellarNode");
            let net = e
                .peers
                .as_ref()
                .map(|p| format!(", network {}", p.network))
                .unwrap_or_default();
            row("stellarnode", format!("{n} ({kind}{net})"));
        }
        if let Some(p) = &e.peers {
            let list = if p.known.is_empty() {
                "none (no other peers in the network)".to_owned()
            } else {
                p.known.join(", ")
            };
            row(
                "peers",
                format!("{} (hash {}): {list}", p.known.len(), p.hash),
            );
        }
        if !e.running.is_empty() {
            row(
                "running pods",
                e.running
                    .iter()
                    .map(|r| {
                        let state = match (&r.hash, r.current, r.live) {
                            (_, true, true) => format!(
                                "{} current (live: peer changes reach it without a restart)",
                                r.name
                            ),
                            (_, true, false) => format!("{} current", r.name),
                            (None, _, _) => format!("{} never injected", r.name),
                            (Some(h), false, true) => {
                                format!("{} stale (hash {h}), live: updated in place next", r.name)
                            }
                            (Some(h), false, false) => format!("{} stale (hash {h})", r.name),
                        };
                        match &r.init_failed {
                            Some(why) => format!(
                                "{state}, cannot start: init container {} failed: {why}",
                                crate::inject::INIT_CONTAINER_NAME
                            ),
                            None => state,
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if let Some(u) = &e.updates {
            row("peer updates", u.clone());
        }
        if let Some(n) = &e.next {
            row("next", n.clone());
        }
    }
    out
}

/// `explain --all`: every stale workload and what the loop does next, as a table.
pub fn render_restarts(restarts: &[Restart]) -> String {
    if restarts.is_empty() {
        return "Every workload carries its current peers: the rollout loop restarts nothing.\n"
            .to_owned();
    }
    let rows: Vec<[String; 4]> = restarts
        .iter()
        .map(|r| {
            [
                r.network.clone(),
                r.key.to_string(),
                r.hash.clone(),
                r.next.to_string(),
            ]
        })
        .collect();
    let head = ["NETWORK", "WORKLOAD", "WANTS HASH", "NEXT"];
    let mut w = head.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate().take(3) {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: [&str; 4], out: &mut String| {
        out.push_str(&format!(
            "{:<a$}  {:<b$}  {:<c$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            a = w[0],
            b = w[1],
            c = w[2]
        ));
    };
    line(head, &mut out);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]], &mut out);
    }
    let now = restarts
        .iter()
        .filter(|r| !matches!(r.next, NextStep::Wait(_)))
        .count();
    out.push_str(&format!(
        "{} workload(s) stale: {now} acted on now, the others when their turn comes (one network slot at a time).\n",
        restarts.len()
    ));
    out
}

/// The JSON of `explain --all`.
pub fn restarts_json(restarts: &[Restart]) -> Value {
    Value::Array(
        restarts
            .iter()
            .map(|r| {
                serde_json::json!({
                    "network": r.network,
                    "kind": r.key.kind.as_str(),
                    "namespace": r.key.namespace,
                    "name": r.key.name,
                    "hash": r.hash,
                    "next": r.next.to_string(),
                    "now": !matches!(r.next, NextStep::Wait(_)),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
