//! Pure: what the rollout loop sees of StatefulSets, Deployments and Pods.
//!
//! One rule decides whether a workload is available, and the integration tests use
//! this module instead of a copy of it: a workload is *settled* when its controller has
//! observed its latest generation, every replica is ready (and, for RollingUpdate,
//! updated to the current revision), and every one of its pods that the loop sees is
//! present, ready and not terminating. A workload that is not settled is unavailable
//! and holds its network's rollout slot, whoever caused it.
//!
//! Stale or partial observations always err towards "unavailable": a workload seen
//! before its status, a status that lags its spec, a status that says ready while the
//! pods seen are fewer or not ready, or pods seen ready while the status lags.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::controls::{ANNOTATION_ROLLOUT, Control};
use super::plan::{self, Kind, PodState, WorkloadKey, WorkloadState};
use crate::inject::{LABEL_INSTANCE, LABEL_NAME, LABEL_NAME_VALUE, LABEL_ROLE, ROLE_READ_REPLICA};

/// Everything the planner needs from one observation of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Sorted by key.
    pub workloads: Vec<WorkloadState>,
    pub pods: Vec<PodState>,
    /// Namespaces annotated `stellar.org/rollout: paused`.
    pub paused_namespaces: std::collections::BTreeSet<String>,
}

/// The workload's own `stellar.org/rollout` control (an unknown value is logged by
/// the loop, see [`Control::parse`]).
pub fn control_of(meta: &ObjectMeta) -> Control {
    Control::parse(
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_ROLLOUT))
            .map(String::as_str),
    )
    .0
}

/// Whether a namespace is paused.
pub fn namespace_paused(meta: &ObjectMeta) -> bool {
    control_of(meta) == Control::Paused
}

fn instance_label(meta: &ObjectMeta) -> Option<String> {
    meta.labels.as_ref()?.get(LABEL_INSTANCE).cloned()
}

/// The StellarNode a workload runs, from the labels its pods get (what the webhook
/// matches): its pod template's, else its own. SDF's charts put the webhook's labels on
/// the pod template only (`core.labels`), the operator on both.
fn workload_instance(meta: &ObjectMeta, template: &PodTemplateSpec) -> Option<String> {
    let stellar = |m: &ObjectMeta| {
        m.labels
            .as_ref()
            .and_then(|l| l.get(LABEL_NAME))
            .is_some_and(|v| v == LABEL_NAME_VALUE)
    };
    match template.metadata.as_ref() {
        Some(t) if stellar(t) => instance_label(t),
        _ if stellar(meta) => instance_label(meta),
        _ => None,
    }
}

/// Whether a workload's pods are Stellar pods (its pod template, or else its own labels,
/// say `app.kubernetes.io/name=stellar-node`): what the loop keeps of a watch of every
/// StatefulSet and Deployment.
pub fn is_stellar_workload(meta: &ObjectMeta, template: Option<&PodTemplateSpec>) -> bool {
    template.map_or_else(
        || workload_instance(meta, &PodTemplateSpec::default()).is_some(),
        |t| workload_instance(meta, t).is_some(),
    )
}

/// The operator's read replicas (`{name}-read`) carry their validator's instance label
/// plus `stellar.org/role=read-replica`. They are no StellarNode's workload: counted as
/// the validator's pods they would keep its StatefulSet from ever settling (holding the
/// network's slot), and their StatefulSet would be rolled as a validator. The loop
/// leaves them out; their pods get env vars and the snippet at creation only.
fn is_read_replica(meta: Option<&ObjectMeta>) -> bool {
    meta.and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(LABEL_ROLE))
        .is_some_and(|r| r == ROLE_READ_REPLICA)
}

/// The peers hash and opt-out of a workload's pod template.
fn template_hash_and_opt_out(t: &PodTemplateSpec) -> (Option<String>, bool) {
    plan::hash_and_opt_out(t.metadata.as_ref().and_then(|m| m.annotations.as_ref()))
}

fn observed_generation(meta: &ObjectMeta, status_generation: Option<i64>) -> bool {
    // No status yet means the controller has not looked at it: not observed.
    status_generation.is_some_and(|g| g >= meta.generation.unwrap_or(0))
}

/// A StatefulSet as the planner sees it, from its own status alone (see [`observe`] for
/// the cross-check with its pods). `None` for objects without the instance label,
/// namespace or spec, and for read replicas.
pub fn sts_state(s: &StatefulSet) -> Option<WorkloadState> {
    let namespace = s.metadata.namespace.clone()?;
    let spec = s.spec.as_ref()?;
    let instance = workload_instance(&s.metadata, &spec.template)?;
    if is_read_replica(Some(&s.metadata)) || is_read_replica(spec.template.metadata.as_ref()) {
        return None;
    }
    let (template_hash, opted_out) = template_hash_and_opt_out(&spec.template);
    let replicas = spec.replicas.unwrap_or(1);
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    let settled = s.status.as_ref().is_some_and(|st| {
        let observed = observed_generation(&s.metadata, st.observed_generation);
        let ready = st.ready_replicas.unwrap_or(0) == replicas && st.replicas == replicas;
        // An OnDelete StatefulSet whose template changed keeps its old pods running and
        // ready: nothing is unavailable until a pod is deleted.
        let rolled = on_delete
            || (st.updated_replicas.unwrap_or(0) == replicas
                && st.current_revision.is_some()
                && st.current_revision == st.update_revision);
        observed && ready && rolled
    });
    Some(WorkloadState {
        key: WorkloadKey {
            kind: Kind::StatefulSet,
            namespace,
            name: s.metadata.name.clone().unwrap_or_default(),
        },
        instance,
        template_hash,
        opted_out,
        on_delete,
        replicas,
        generation: s.metadata.generation.unwrap_or(0),
        settled,
        control: control_of(&s.metadata),
    })
}

/// A Deployment as the planner sees it, from its own status alone.
pub fn deploy_state(d: &Deployment) -> Option<WorkloadState> {
    let namespace = d.metadata.namespace.clone()?;
    let spec = d.spec.as_ref()?;
    let instance = workload_instance(&d.metadata, &spec.template)?;
    let (template_hash, opted_out) = template_hash_and_opt_out(&spec.template);
    let replicas = spec.replicas.unwrap_or(1);
    let settled = d.status.as_ref().is_some_and(|st| {
        observed_generation(&d.metadata, st.observed_generation)
            && st.updated_replicas.unwrap_or(0) == replicas
            && st.ready_replicas.unwrap_or(0) == replicas
            && st.replicas.unwrap_or(0) == replicas
    });
    Some(WorkloadState {
        key: WorkloadKey {
            kind: Kind::Deployment,
            namespace,
            name: d.metadata.name.clone().unwrap_or_default(),
        },
        instance,
        template_hash,
        opted_out,
        on_delete: false,
        replicas,
        generation: d.metadata.generation.unwrap_or(0),
        settled,
        control: control_of(&d.metadata),
    })
}

/// A pod as the planner sees it. `None` without namespace, uid or instance label, and
/// for read replicas.
pub fn pod_state(p: &Pod) -> Option<PodState> {
    if is_read_replica(Some(&p.metadata)) {
        return None;
    }
    let (hash, opted_out) = plan::hash_and_opt_out(p.metadata.annotations.as_ref());
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodState {
        namespace: p.metadata.namespace.clone()?,
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone()?,
        instance: instance_label(&p.metadata)?,
        hash,
        ready,
        terminating: p.metadata.deletion_timestamp.is_some(),
        opted_out,
        live: has_live_sidecar(p),
    })
}

/// The pod carries the live sidecar as a native sidecar: its peers can change in place.
pub fn has_live_sidecar(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|ics| {
            ics.iter().any(|c| {
                c.name == crate::live::LIVE_CONTAINER_NAME
                    && c.restart_policy.as_deref() == Some("Always")
            })
        })
}

/// Combines workload and pod states: a workload is settled only when its own status
/// says so *and* the pods seen for it are exactly `replicas`, all ready, none terminating.
pub fn combine(mut workloads: Vec<WorkloadState>, pods: Vec<PodState>) -> Observed {
    let mut per: HashMap<(&str, &str), (usize, bool)> = HashMap::new();
    for p in &pods {
        let e = per.entry((&p.namespace, &p.instance)).or_insert((0, true));
        e.0 += 1;
        e.1 &= p.ready && !p.terminating;
    }
    for wl in &mut workloads {
        let (count, all_ready) = per
            .get(&(wl.key.namespace.as_str(), wl.instance.as_str()))
            .copied()
            .unwrap_or((0, true));
        wl.settled &= all_ready && count == wl.replicas.max(0) as usize;
    }
    workloads.sort_by(|a, b| a.key.cmp(&b.key));
    Observed {
        workloads,
        pods,
        paused_namespaces: Default::default(),
    }
}

/// Reads every object the loop's stores hold into one [`Observed`].
pub fn observe<'a>(
    statefulsets: impl IntoIterator<Item = &'a StatefulSet>,
    deployments: impl IntoIterator<Item = &'a Deployment>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Observed {
    let workloads = statefulsets
        .into_iter()
        .filter_map(sts_state)
        .chain(deployments.into_iter().filter_map(deploy_state))
        .collect();
    combine(workloads, pods.into_iter().filter_map(pod_state).collect())
}

/// A pod whose merge-mode init step (`stellar-peers-config`) failed: the reason is only in
/// the pod's status, so the loop reports it on the pod's StellarNode.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InitFailure {
    pub namespace: String,
    /// The StellarNode (the pod's instance label).
    pub instance: String,
    pub pod: String,
    /// The pod's uid, so that a new pod of the same name is a new failure.
    pub uid: String,
    /// How many times the step ran and failed so far (the kubelet's restart count + 1).
    pub failures: i32,
    /// The step's own one-line reason (its termination message), else the kubelet's.
    pub message: String,
}

/// The failed init step of `pod`, if its `stellar-peers-config` container last ended
/// with a non-zero exit code (now, or before the kubelet's back-off restart). `None` for
/// pods without the instance label, or whose step has not failed.
pub fn init_failure(pod: &Pod) -> Option<InitFailure> {
    let meta = &pod.metadata;
    let instance = instance_label(meta)?;
    let status = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == crate::inject::INIT_CONTAINER_NAME)?;
    if status.ready {
        return None;
    }
    let now = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let ended = now.or(last).filter(|t| t.exit_code != 0)?;
    let text = ended
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| m.lines().last().unwrap_or(m).to_owned())
        .unwrap_or_else(|| {
            format!(
                "exit code {}{}",
                ended.exit_code,
                ended
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        });
    Some(InitFailure {
        namespace: meta.namespace.clone()?,
        instance,
        pod: meta.name.clone()?,
        uid: meta.uid.clone().unwrap_or_default(),
        failures: status.restart_count + i32::from(now.is_some()),
        message: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(v: serde_json::Value) -> StatefulSet {
        serde_json::from_value(v).expect("statefulset")
    }

    fn base_sts(strategy: &str, generation: i64, status: Option<serde_json::Value>) -> StatefulSet {
        let mut v = json!({
            "metadata": {"name": "v1", "namespace": "ns", "generation": generation,
                         "labels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": "v1"}},
            "spec": {"replicas": 1, "serviceName": "v1-headless",
                     "selector": {"matchLabels": {"app.kubernetes.io/instance": "v1"}},
                     "updateStrategy": {"type": strategy},
                     "template": {"metadata": {"annotations": {"stellar.org/peers-hash": "h1"}},
                                  "spec": {"containers": [{"name": "stellar-node"}]}}}
        });
        if let Some(s) = status {
            v["status"] = s;
        }
        sts(v)
    }

    /// SDF's chart labels only the pod template (`core.labels`): the StatefulSet is the
    /// template's StellarNode's workload all the same. Without the webhook's name label on
    /// either, it is nobody's.
    #[test]
    fn a_workload_is_known_by_its_pod_templates_labels() {
        let mut s = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        s.metadata.labels = Some([("app".to_owned(), "sdf1-core".to_owned())].into());
        let t = &mut s.spec.as_mut().expect("spec").template;
        t.metadata.get_or_insert_default().labels = Some(
            [
                (
                    "app.kubernetes.io/name".to_owned(),
                    "stellar-node".to_owned(),
                ),
                (
                    "app.kubernetes.io/instance".to_owned(),
                    "sdf1-core".to_owned(),
                ),
            ]
            .into(),
        );
        assert_eq!(sts_state(&s).expect("state").instance, "sdf1-core");
        assert!(is_stellar_workload(
            &s.metadata,
            s.spec.as_ref().map(|x| &x.template)
        ));
        // Only an instance label, on the template or the object: not a Stellar workload.
        let t = &mut s.spec.as_mut().expect("spec").template;
        t.metadata.get_or_insert_default().labels =
            Some([("app.kubernetes.io/instance".to_owned(), "x".to_owned())].into());
        assert!(sts_state(&s).is_none());
        assert!(!is_stellar_workload(
            &s.metadata,
            s.spec.as_ref().map(|x| &x.template)
        ));
    }

    fn ready_status(generation: i64) -> serde_json::Value {
        json!({"observedGeneration": generation, "replicas": 1, "readyReplicas": 1,
               "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": "r1"})
    }

    #[test]
    fn statefulset_settled_only_with_a_current_ready_rolled_status() {
        let s = sts_state(&base_sts("RollingUpdate", 2, Some(ready_status(2)))).expect("state");
        assert!(s.settled);
        assert_eq!(s.template_hash.as_deref(), Some("h1"));
        assert_eq!(s.key.namespace, "ns");
        assert!(!s.on_delete);
        // Seen before its status: not settled.
        assert!(
            !sts_state(&base_sts("RollingUpdate", 1, None))
                .expect("state")
                .settled
        );
        // Status lags the spec.
        assert!(
            !sts_state(&base_sts("RollingUpdate", 3, Some(ready_status(2))))
                .expect("state")
                .settled
        );
        // Rolling: revisions differ.
        let mut st = ready_status(2);
        st["updateRevision"] = json!("r2");
        assert!(
            !sts_state(&base_sts("RollingUpdate", 2, Some(st)))
                .expect("state")
                .settled
        );
        // Not ready.
        let mut st = ready_status(2);
        st["readyReplicas"] = json!(0);
        assert!(
            !sts_state(&base_sts("RollingUpdate", 2, Some(st)))
                .expect("state")
                .settled
        );
    }

    #[test]
    fn on_delete_template_change_with_old_ready_pod_is_available() {
        let mut st = ready_status(2);
        st["updateRevision"] = json!("r2");
        st["updatedReplicas"] = json!(0);
        let s = sts_state(&base_sts("OnDelete", 2, Some(st))).expect("state");
        assert!(s.on_delete);
        assert!(s.settled, "old pod still ready: not a disruption");
        let mut st = ready_status(2);
        st["readyReplicas"] = json!(0);
        assert!(
            !sts_state(&base_sts("OnDelete", 2, Some(st)))
                .expect("state")
                .settled
        );
    }

    #[test]
    fn objects_without_the_instance_label_or_namespace_are_ignored() {
        let mut s = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        s.metadata.labels = None;
        assert!(sts_state(&s).is_none());
        let mut s = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        s.metadata.namespace = None;
        assert!(sts_state(&s).is_none());
    }

    fn deploy(generation: i64, status: Option<serde_json::Value>) -> Deployment {
        let mut v = json!({
            "metadata": {"name": "h", "namespace": "ns", "generation": generation,
                         "labels": {"app.kubernetes.io/name": "stellar-node", "app.kubernetes.io/instance": "h"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"annotations": {"stellar.org/inject-peers": "false"}},
                                  "spec": {"containers": [{"name": "horizon"}]}}}
        });
        if let Some(s) = status {
            v["status"] = s;
        }
        serde_json::from_value(v).expect("deployment")
    }

    #[test]
    fn deployment_states() {
        let ok = json!({"observedGeneration": 4, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2});
        let d = deploy_state(&deploy(4, Some(ok.clone()))).expect("state");
        assert!(d.settled);
        assert!(d.opted_out);
        assert_eq!(d.key.kind, Kind::Deployment);
        assert_eq!(d.replicas, 2);
        assert!(!deploy_state(&deploy(4, None)).expect("state").settled);
        assert!(
            !deploy_state(&deploy(5, Some(ok.clone())))
                .expect("state")
                .settled
        );
        let mut surge = ok.clone();
        surge["replicas"] = json!(3);
        assert!(
            !deploy_state(&deploy(4, Some(surge)))
                .expect("state")
                .settled
        );
        let mut old = ok;
        old["updatedReplicas"] = json!(1);
        assert!(!deploy_state(&deploy(4, Some(old))).expect("state").settled);
    }

    fn pod_json(ready: &str, terminating: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": "v1-0", "namespace": "ns", "uid": "u1",
                         "labels": {"app.kubernetes.io/instance": "v1"},
                         "annotations": {"stellar.org/peers-hash": "h1"}},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        });
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn pod_states() {
        let p = pod_state(&pod_json("True", false)).expect("pod");
        assert!(p.ready && !p.terminating && !p.opted_out);
        assert_eq!(p.hash.as_deref(), Some("h1"));
        assert_eq!(p.uid, "u1");
        assert!(!pod_state(&pod_json("False", false)).expect("pod").ready);
        assert!(pod_state(&pod_json("True", true)).expect("pod").terminating);
        let mut no_uid = pod_json("True", false);
        no_uid.metadata.uid = None;
        assert!(pod_state(&no_uid).is_none());
        let mut no_status = pod_json("True", false);
        no_status.status = None;
        assert!(!pod_state(&no_status).expect("pod").ready);
    }

    #[test]
    fn read_replicas_are_neither_workloads_nor_the_validators_pods() {
        // The operator's {name}-read StatefulSet: the validator's labels plus the role.
        let mut read = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        read.metadata.name = Some("v1-read".into());
        let role = || {
            std::collections::BTreeMap::from([
                ("app.kubernetes.io/instance".to_owned(), "v1".to_owned()),
                ("stellar.org/role".to_owned(), "read-replica".to_owned()),
            ])
        };
        read.metadata.labels = Some(role());
        assert!(sts_state(&read).is_none());
        // Also when only its pod template says so.
        let mut read_tpl = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        read_tpl
            .spec
            .as_mut()
            .expect("spec")
            .template
            .metadata
            .get_or_insert_default()
            .labels = Some(role());
        assert!(sts_state(&read_tpl).is_none());
        let mut replica_pod = pod_json("False", false);
        replica_pod.metadata.name = Some("v1-read-0".into());
        replica_pod.metadata.uid = Some("u2".into());
        replica_pod.metadata.labels = Some(role());
        assert!(pod_state(&replica_pod).is_none());
        // The validator settles with its own pod, whatever its read replicas do.
        let v = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        let o = observe([&v, &read], [], [&pod_json("True", false), &replica_pod]);
        assert_eq!(o.workloads.len(), 1);
        assert!(o.workloads[0].settled);
        assert_eq!(o.pods.len(), 1);
    }

    #[test]
    fn status_and_pods_must_agree() {
        let s = base_sts("RollingUpdate", 1, Some(ready_status(1)));
        // Status says ready, but the pod seen is not ready (status lags the pod).
        let o = observe([&s], [], [&pod_json("False", false)]);
        assert!(!o.workloads[0].settled);
        // Status says ready, no pod seen yet (pod watch lags, or the pod was just deleted).
        let o = observe([&s], [], []);
        assert!(!o.workloads[0].settled);
        // The pod is terminating (we deleted it; the status has not caught up).
        let o = observe([&s], [], [&pod_json("True", true)]);
        assert!(!o.workloads[0].settled);
        // Both agree.
        let o = observe([&s], [], [&pod_json("True", false)]);
        assert!(o.workloads[0].settled);
        // Pod ready, status not there yet.
        let fresh = base_sts("RollingUpdate", 1, None);
        let o = observe([&fresh], [], [&pod_json("True", false)]);
        assert!(!o.workloads[0].settled);
    }

    fn pod_with_init_status(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "v1-0", "namespace": "ns", "uid": "u1",
                         "labels": {"app.kubernetes.io/instance": "v1"}},
            "status": {"initContainerStatuses": [status]}
        }))
        .expect("pod")
    }

    #[test]
    fn a_failed_init_step_is_found_with_its_one_line_reason() {
        let p = pod_with_init_status(serde_json::json!({
            "name": "stellar-peers-config", "ready": false, "restartCount": 2, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error",
                "message": "reading the base config\nrender-config: /config/stellar-core.cfg: No such file or directory (os error 2)"}}
        }));
        let f = init_failure(&p).expect("a failure");
        assert_eq!(f.instance, "v1");
        assert_eq!(
            (f.namespace.as_str(), f.pod.as_str(), f.uid.as_str()),
            ("ns", "v1-0", "u1")
        );
        assert_eq!(f.failures, 3);
        assert_eq!(
            f.message,
            "render-config: /config/stellar-core.cfg: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_step_waiting_in_back_off_is_found_from_its_last_state_without_a_message() {
        let p = pod_with_init_status(serde_json::json!({
            "name": "stellar-peers-config", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}
        }));
        let f = init_failure(&p).expect("a failure");
        assert_eq!(f.failures, 4);
        assert_eq!(f.message, "exit code 2 (Error)");
    }

    #[test]
    fn a_step_that_succeeded_or_runs_or_is_not_ours_is_no_failure() {
        for status in [
            serde_json::json!({"name": "stellar-peers-config", "ready": true, "restartCount": 1, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 0}}, "lastState": {"terminated": {"exitCode": 1}}}),
            serde_json::json!({"name": "stellar-peers-config", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"running": {}}}),
            serde_json::json!({"name": "core-init", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 1}}}),
        ] {
            assert_eq!(
                init_failure(&pod_with_init_status(status.clone())),
                None,
                "{status}"
            );
        }
    }
}
