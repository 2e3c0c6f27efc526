//! The `explain` command's edge: reads the pods, workloads, StellarNodes, Namespaces and
//! webhook configurations (from the cluster, or from files offline) and hands them to
//! the pure [`crate::explain`] and the rollout loop's own planner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::cli::{ExplainArgs, Output};
use crate::error::Error;
use crate::explain::{Context, Explanation, explain, render_restarts, render_table, restarts_json};
use crate::inject::{LABEL_INSTANCE, LABEL_NAME, LABEL_NAME_VALUE};
use crate::nodes::NodeRecord;
use crate::peers::PeerSnapshot;
use crate::rollout::observe::{self, Observed};
use crate::rollout::plan::{Restart, WorkloadKey};
use crate::rollout::state::{Next, RolloutState, StateSettings};
use crate::watch::cache;

/// Everything `explain` looks at.
struct World {
    snapshot: PeerSnapshot,
    webhooks: Option<Vec<MutatingWebhookConfiguration>>,
    namespaces: Vec<Namespace>,
    statefulsets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
    pods: Vec<Pod>,
    /// Said on stderr: what could not be read.
    notes: Vec<String>,
    /// The cluster's client (`None` offline).
    client: Option<Client>,
    /// Offline: the documents of `-f`, read once (it may be stdin).
    file_docs: Vec<Value>,
}

fn split_ref(flag: &str, s: &str) -> Result<(String, String), Error> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(Error::Config(format!(
            "{flag} takes NAMESPACE/NAME, like stellar/validator-1 (got {s:?})"
        ))),
    }
}

pub async fn main(args: ExplainArgs) -> Result<(), Error> {
    let settings = args.patch.settings()?;
    // Bad references fail before anything is read.
    let pod_ref = args
        .pod
        .as_deref()
        .map(|p| split_ref("--pod", p))
        .transpose()?;
    let node_ref = args
        .stellarnode
        .as_deref()
        .map(|n| split_ref("--stellarnode", n))
        .transpose()?;
    let world = match &args.file {
        Some(file) => offline(&args, file)?,
        None => from_cluster(&args).await?,
    };
    for n in &world.notes {
        eprintln!("note: {n}");
    }
    let observed = observed(&world);
    let restarts = restarts(&args, &world.snapshot, &observed);
    let instances: BTreeMap<WorkloadKey, String> = observed
        .workloads
        .iter()
        .map(|w| (w.key.clone(), w.instance.clone()))
        .collect();
    let pod_values: Vec<Value> = world
        .pods
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    let ns_labels = |ns: &str| -> BTreeMap<String, String> {
        world
            .namespaces
            .iter()
            .find(|n| n.name_any() == ns)
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    };
    let explain_one = |subject: String, pod: &Value, ns: &str| -> Explanation {
        let instance = pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(LABEL_INSTANCE))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ctx = Context {
            snapshot: Some(&world.snapshot),
            settings: &settings,
            webhooks: world.webhooks.as_deref(),
            webhook_name: &args.webhook_name,
            namespace_labels: ns_labels(ns),
            running: crate::explain::running_of(&pod_values, ns, instance),
            restarts: Some(&restarts),
            instances: &instances,
        };
        explain(subject, pod, ns, &ctx)
    };
    let mut items = Vec::new();
    if let Some((ns, name)) = pod_ref {
        let pod = pod_values
            .iter()
            .find(|v| {
                v.pointer("/metadata/namespace").and_then(Value::as_str) == Some(&ns)
                    && v.pointer("/metadata/name").and_then(Value::as_str) == Some(&name)
            })
            .cloned();
        let pod = match pod {
            Some(p) => p,
            // Not a Stellar pod (the list is by label): read it by name.
            None => get_pod(world.client.as_ref(), &ns, &name).await?,
        };
        items.push(explain_one(format!("Pod {ns}/{name}"), &pod, &ns));
    }
    if let Some((ns, name)) = node_ref {
        if world.snapshot.node(&ns, &name).is_none() {
            return Err(Error::Config(format!(
                "no StellarNode {ns}/{name} is known (check the name, and --namespaces if set)"
            )));
        }
        let mine: Vec<&Value> = pod_values
            .iter()
            .filter(|v| {
                v.pointer("/metadata/namespace").and_then(Value::as_str) == Some(&ns)
                    && v.pointer("/metadata/labels")
                        .and_then(|l| l.get(LABEL_INSTANCE))
                        .and_then(Value::as_str)
                        == Some(&name)
            })
            .collect();
        match mine.first() {
            Some(p) => {
                let pod_name = p
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                items.push(explain_one(
                    format!("StellarNode {ns}/{name} (its pod {pod_name})"),
                    p,
                    &ns,
                ));
            }
            None => {
                // No pod yet: one as the operator makes it.
                let pod = json!({
                    "metadata": {"name": format!("{name}-0"), "namespace": ns,
                        "labels": {LABEL_NAME: LABEL_NAME_VALUE, LABEL_INSTANCE: name}},
                    "spec": {"containers": [{"name": settings.container, "image": "stellar/stellar-core"}]}
                });
                items.push(explain_one(
                    format!("StellarNode {ns}/{name} (no pod yet: a pod as the operator makes it)"),
                    &pod,
                    &ns,
                ));
            }
        }
    }
    for (subject, ns, pod) in file_subjects(&args, &world.file_docs) {
        items.push(explain_one(subject, &pod, &ns));
    }
    match args.output {
        Output::Table => {
            let mut out = render_table(&items);
            if args.all {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&render_restarts(&restarts));
                out.push_str(
                    "(as a freshly started rollout loop with these flags decides now: it does not know how long workloads have been unready, nor actions in flight)\n",
                );
            }
            print!("{out}");
        }
        Output::Json => {
            let mut v = json!({ "explanations": items });
            if args.all {
                v["restarts"] = restarts_json(&restarts);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| Error::Config(e.to_string()))?
            );
        }
    }
    Ok(())
}

/// What the rollout loop would do now, as a fresh loop with these flags decides.
fn restarts(args: &ExplainArgs, snap: &PeerSnapshot, observed: &Observed) -> Vec<Restart> {
    let mut state = RolloutState::new(StateSettings {
        windows: args.policy.rollout_window.clone(),
        // A validator without a workload holds its network's slot only in the loop's
        // first minute after seeing it; explain describes the loop past that.
        arrival_grace: Duration::ZERO,
        ..StateSettings::new(args.policy.plan(args.patch.peer_updates), Duration::ZERO)
    });
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| crate::rollout::controls::minute_of_day(d.as_secs()));
    match state.next_at(Instant::now(), Some(minute), snap, observed) {
        Next::Act { plan, .. } => plan.restarts(),
        // No debounce: never asked to wait.
        Next::Debounce(..) => Vec::new(),
    }
}

fn observed(w: &World) -> Observed {
    let mut o = observe::observe(&w.statefulsets, &w.deployments, &w.pods);
    o.paused_namespaces = w
        .namespaces
        .iter()
        .filter(|n| observe::namespace_paused(&n.metadata))
        .map(|n| n.name_any())
        .collect();
    o
}

async fn list_all<K>(apis: Vec<Api<K>>, lp: &ListParams) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for a in apis {
        out.extend(a.list(lp).await?.items);
    }
    Ok(out)
}

async fn from_cluster(args: &ExplainArgs) -> Result<World, Error> {
    let client = args.kube.client().await?;
    let scope = args.kube.namespaces();
    let peer_settings = args.peers.settings()?;
    let (snapshot, mut notes) =
        cache::snapshot_once(&client, &scope, &args.remote.sources()?, &peer_settings).await?;
    let webhooks = match Api::<MutatingWebhookConfiguration>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => Some(l.items),
        Err(e) => {
            notes.push(format!(
                "cannot list MutatingWebhookConfigurations ({e}), so whether the webhook is called is not checked; it needs list on mutatingwebhookconfigurations.admissionregistration.k8s.io"
            ));
            None
        }
    };
    let namespaces = match Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            notes.push(format!(
                "cannot list Namespaces ({e}): their labels (namespaceSelector) and stellar.org/rollout pauses are not seen"
            ));
            Vec::new()
        }
    };
    let ours = ListParams::default().labels(&format!("{LABEL_NAME}={LABEL_NAME_VALUE}"));
    // Workloads by their pod template's labels too (SDF's charts label only the template),
    // as the rollout loop finds them.
    let every = ListParams::default();
    let statefulsets: Vec<StatefulSet> =
        list_all(cache::scoped_apis::<StatefulSet>(&client, &scope), &every)
            .await?
            .into_iter()
            .filter(|s| {
                crate::rollout::observe::is_stellar_workload(
                    &s.metadata,
                    s.spec.as_ref().map(|x| &x.template),
                )
            })
            .collect();
    let deployments: Vec<Deployment> =
        list_all(cache::scoped_apis::<Deployment>(&client, &scope), &every)
            .await?
            .into_iter()
            .filter(|d| {
                crate::rollout::observe::is_stellar_workload(
                    &d.metadata,
                    d.spec.as_ref().map(|x| &x.template),
                )
            })
            .collect();
    let pods = list_all(cache::scoped_apis::<Pod>(&client, &scope), &ours).await?;
    Ok(World {
        snapshot,
        webhooks,
        namespaces,
        statefulsets,
        deployments,
        pods,
        notes,
        client: Some(client),
        file_docs: Vec::new(),
    })
}

async fn get_pod(client: Option<&Client>, ns: &str, name: &str) -> Result<Value, Error> {
    let Some(client) = client else {
        return Err(Error::Config(format!("no pod {ns}/{name} in the file")));
    };
    match Api::<Pod>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
    {
        Some(p) => serde_json::to_value(p).map_err(|e| Error::Config(e.to_string())),
        None => Err(Error::Config(format!(
            "no pod {ns}/{name} in the cluster (check the name and namespace)"
        ))),
    }
}

fn documents(path: &str) -> Result<Vec<Value>, Error> {
    crate::input::documents(path)
}

fn kind_of(d: &Value) -> &str {
    d.get("kind").and_then(Value::as_str).unwrap_or_default()
}

/// Sets `metadata.namespace` where a document has none.
fn with_namespace(mut d: Value, ns: &str) -> Value {
    if d.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .is_none()
        && let Some(m) = d.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.insert("namespace".into(), json!(ns));
    }
    d
}

fn offline(args: &ExplainArgs, file: &str) -> Result<World, Error> {
    if args.nodes.as_deref() == Some("-") && file == "-" {
        return Err(Error::Config(
            "--nodes and -f cannot both read stdin".into(),
        ));
    }
    let docs = documents(file)?;
    let node_docs = match &args.nodes {
        Some(n) => documents(n)?,
        None => docs.clone(),
    };
    let records: Vec<NodeRecord> = node_docs
        .iter()
        .filter(|d| kind_of(d) == "StellarNode")
        .filter_map(|d| NodeRecord::from_json(d, &args.namespace))
        .collect();
    let snapshot = PeerSnapshot::build(1, &records, &args.peers.settings()?);
    let mut notes: Vec<String> = snapshot
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.node, p.message))
        .collect();
    let typed = |kind: &str| -> Vec<Value> {
        docs.iter()
            .filter(|d| kind_of(d) == kind)
            .map(|d| with_namespace(d.clone(), &args.namespace))
            .collect()
    };
    fn parse<K: serde::de::DeserializeOwned>(vs: Vec<Value>, notes: &mut Vec<String>) -> Vec<K> {
        vs.into_iter()
            .filter_map(|v| match serde_json::from_value(v) {
                Ok(k) => Some(k),
                Err(e) => {
                    notes.push(format!("a document could not be read and is left out: {e}"));
                    None
                }
            })
            .collect()
    }
    let hooks = typed("MutatingWebhookConfiguration");
    let webhooks = if hooks.is_empty() {
        None
    } else {
        Some(parse(hooks, &mut notes))
    };
    let (ns_docs, sts, dep, pods) = (
        typed("Namespace"),
        typed("StatefulSet"),
        typed("Deployment"),
        // The planner tells pods apart by uid, which manifests do not carry.
        typed("Pod")
            .into_iter()
            .map(|mut p| {
                if p.pointer("/metadata/uid").is_none() {
                    let id = format!(
                        "file:{}/{}",
                        p.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        p.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    );
                    if let Some(m) = p.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.insert("uid".into(), json!(id));
                    }
                }
                p
            })
            .collect(),
    );
    Ok(World {
        snapshot,
        webhooks,
        namespaces: parse(ns_docs, &mut notes),
        statefulsets: parse(sts, &mut notes),
        deployments: parse(dep, &mut notes),
        pods: parse(pods, &mut notes),
        notes,
        client: None,
        file_docs: docs,
    })
}

/// The pods and pod templates of the file, each with its subject line and namespace.
fn file_subjects(args: &ExplainArgs, docs: &[Value]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for d in docs {
        let d = with_namespace(d.clone(), &args.namespace);
        let ns = d
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&args.namespace)
            .to_owned();
        let name = d
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("(no name)")
            .to_owned();
        match kind_of(&d) {
            "Pod" => out.push((format!("Pod {ns}/{name}"), ns, d)),
            k @ ("StatefulSet" | "Deployment") => {
                let Some(t) = d.pointer("/spec/template") else {
                    continue;
                };
                out.push((format!("{k} {ns}/{name} (pod template)"), ns, t.clone()));
            }
            _ => {}
        }
    }
    out
}
