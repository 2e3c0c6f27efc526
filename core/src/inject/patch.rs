//! Idempotent JSON patch (RFC 6902) that gives a pod its peers.
//!
//! Every entry the injector owns (env vars, the volume, the mount, the annotations)
//! is replaced where it exists and added where it does not, so a pod that already
//! went through the webhook (reinvocation, re-applied manifests, offline injection
//! followed by admission) ends up with exactly one copy of each, at current values.
//!
//! The patch depends on the pod only through its [`PatchShape`]: which of the
//! containers is the target, which arrays exist, and where the entries the injector
//! owns already are. Two pods with the same shape and the same peer list get the same
//! patch, which lets the server encode it once and reuse it.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Value, json};

use super::config::{CAPTIVE_ENV, CaptiveWiring, MergePlan};
use super::review::{HasName, PodView};
use crate::live::{LIVE_CONTAINER_NAME, LIVE_METRICS_PORT};

use super::{
    ANNOTATION_CONFIG, ANNOTATION_CONFIG_BASE, ANNOTATION_COUNT, ANNOTATION_HASH,
    ANNOTATION_STATUS, INIT_CONTAINER_NAME, INIT_CONTAINER_UID, InjectSettings, MERGED_VOLUME_NAME,
    STATUS_CAPTIVE_MERGE, STATUS_ENV, STATUS_MERGE, VOLUME_NAME,
};
use crate::peers::PeerList;

/// The env vars the injector owns, in the order it appends them.
pub const ENV_NAMES: [&str; 5] = [
    "STELLAR_PEERS",
    "STELLAR_PEER_COUNT",
    "STELLAR_PEERS_HASH",
    "STELLAR_NETWORK",
    "STELLAR_PEERS_CONFIG",
];

/// [`ENV_NAMES`] plus `CAPTIVE_CORE_CONFIG_PATH`, owned when a captive-core plan is
/// wired by env.
const ENV_NAMES_CAPTIVE: [&str; 6] = [
    ENV_NAMES[0],
    ENV_NAMES[1],
    ENV_NAMES[2],
    ENV_NAMES[3],
    ENV_NAMES[4],
    CAPTIVE_ENV,
];

/// Where the patch was applied, for messages.
pub struct Target {
    pub container_index: usize,
    /// True when no container had the configured name and the first one was used.
    pub fell_back: bool,
}

/// Picks the container to inject into: the configured name, else the first one.
pub fn target_container(pod: &PodView<'_>, settings: &InjectSettings) -> Option<Target> {
    let containers = pod.containers();
    if containers.is_empty() {
        return None;
    }
    Some(
        match containers.iter().position(|c| c.name == settings.container) {
            Some(i) => Target {
                container_index: i,
                fell_back: false,
            },
            None => Target {
                container_index: 0,
                fell_back: true,
            },
        },
    )
}

/// What the pod's `metadata` looks like to the patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaShape {
    /// No `metadata` object.
    Missing,
    /// `metadata` without `annotations`.
    NoAnnotations,
    /// `metadata.annotations` exists.
    Annotations,
}

/// One array of named entries (`env`, `volumeMounts`, `volumes`) as the patch sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slots {
    /// The array does not exist: the patch adds it whole.
    Missing,
    /// The array exists; `(owned entry, index)` for every element whose name is one the
    /// injector owns, in array order (empty for a pod that never went through it).
    Present(Vec<(u8, u32)>),
}

impl Slots {
    fn of<N: HasName>(existing: Option<&[N]>, owned: &[&str]) -> Self {
        let Some(existing) = existing else {
            return Self::Missing;
        };
        Self::Present(
            existing
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let k = owned.iter().position(|o| *o == n.name())?;
                    Some((k as u8, i as u32))
                })
                .collect(),
        )
    }
}

/// Merge mode's part of the shape: the plan and where the init container goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MergeShape {
    pub plan: MergePlan,
    pub init: Slots,
    /// Add the live sidecar after the init container (a live peer-updates policy).
    pub live: bool,
}

/// Volumes and mounts the injector owns, in the order it appends them.
const OWNED_VOLUMES: [&str; 2] = [VOLUME_NAME, MERGED_VOLUME_NAME];

/// Everything about a pod that its patch depends on, besides the peer list and the
/// settings. Small, owned and hashable: the key of the server's encoded-patch cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PatchShape {
    pub metadata: MetaShape,
    pub volumes: Slots,
    pub container: usize,
    pub mounts: Slots,
    pub env: Slots,
    /// Merge mode (`None`: env vars and the snippet only). Boxed: most pods' shapes
    /// stay small, and the shape is the patch cache's key.
    pub merge: Option<Box<MergeShape>>,
}

impl PatchShape {
    /// Reads the shape of `pod`, injecting into `target`, with merge mode's plan if any.
    pub fn of(pod: &PodView<'_>, target: &Target, merge: Option<MergePlan>, live: bool) -> Self {
        let metadata = match &pod.metadata {
            None => MetaShape::Missing,
            Some(m) if m.annotations.is_none() => MetaShape::NoAnnotations,
            Some(_) => MetaShape::Annotations,
        };
        let container = pod.containers().get(target.container_index);
        Self {
            metadata,
            volumes: Slots::of(
                pod.spec.as_ref().and_then(|s| s.volumes.as_deref()),
                &OWNED_VOLUMES,
            ),
            container: target.container_index,
            mounts: Slots::of(
                container.and_then(|c| c.volume_mounts.as_deref()),
                &OWNED_VOLUMES,
            ),
            env: Slots::of(
                container.and_then(|c| c.env.as_deref()),
                if merge.as_ref().and_then(|m| m.captive) == Some(CaptiveWiring::Env) {
                    &ENV_NAMES_CAPTIVE
                } else {
                    &ENV_NAMES
                },
            ),
            merge: merge.map(|plan| {
                Box::new(MergeShape {
                    plan,
                    init: Slots::of(
                        pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()),
                        &[INIT_CONTAINER_NAME, LIVE_CONTAINER_NAME],
                    ),
                    live,
                })
            }),
        }
    }
}

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn at(base: &PointerBuf, tail: &[&str]) -> PointerBuf {
    let mut p = base.clone();
    for t in tail {
        p.push_back(*t);
    }
    p
}

fn at_index(base: &PointerBuf, i: u32) -> PointerBuf {
    let mut p = base.clone();
    p.push_back(i as usize);
    p
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn replace(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path, value })
}

/// Upserts `items` (the owned entries, in order) into the array at `base`: the first
/// existing entry of each is replaced, later duplicates removed, missing ones appended.
fn upsert(ops: &mut Vec<PatchOperation>, base: &PointerBuf, slots: &Slots, items: Vec<Value>) {
    let Slots::Present(found) = slots else {
        ops.push(add(base.clone(), Value::Array(items)));
        return;
    };
    let mut removals = Vec::new();
    let mut appends = Vec::new();
    for (k, value) in items.into_iter().enumerate() {
        let mut at_k = found.iter().filter(|(o, _)| usize::from(*o) == k);
        match at_k.next() {
            Some(&(_, first)) => {
                ops.push(replace(at_index(base, first), value));
                removals.extend(at_k.map(|&(_, i)| i));
            }
            None => appends.push(value),
        }
    }
    removals.sort_unstable_by(|a, b| b.cmp(a));
    for i in removals {
        ops.push(PatchOperation::Remove(RemoveOperation {
            path: at_index(base, i),
        }));
    }
    for v in appends {
        ops.push(add(at(base, &["-"]), v));
    }
}

/// Builds the patch for a pod (or a pod template: paths are relative to it) of this
/// shape. Pure: the same shape, list and settings give the same patch.
pub fn build_patch(shape: &PatchShape, list: &PeerList, settings: &InjectSettings) -> Patch {
    let mut ops = Vec::with_capacity(20);
    let merge = shape.merge.as_deref();
    let mut annotations = vec![
        (ANNOTATION_CONFIG, list.config.as_str()),
        (ANNOTATION_HASH, list.hash.as_str()),
        (ANNOTATION_COUNT, list.count.as_str()),
    ];
    if let Some(m) = merge {
        annotations.push((ANNOTATION_CONFIG_BASE, m.plan.base.as_str()));
    }
    annotations.push((
        ANNOTATION_STATUS,
        match merge.map(|m| m.plan.captive.is_some()) {
            None => STATUS_ENV,
            Some(false) => STATUS_MERGE,
            Some(true) => STATUS_CAPTIVE_MERGE,
        },
    ));
    let map = || -> serde_json::Map<String, Value> {
        annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect()
    };
    match shape.metadata {
        MetaShape::Missing => {
            ops.push(add(ptr(&["metadata"]), json!({ "annotations": map() })));
        }
        MetaShape::NoAnnotations => {
            ops.push(add(ptr(&["metadata", "annotations"]), Value::Object(map())));
        }
        MetaShape::Annotations => {
            for (k, v) in &annotations {
                ops.push(add(ptr(&["metadata", "annotations", k]), Value::from(*v)));
            }
        }
    }

    let volume = json!({
        "name": VOLUME_NAME,
        "downwardAPI": {
            "defaultMode": 0o444,
            "items": [{
                "path": settings.file_name(),
                "fieldRef": { "fieldPath": format!("metadata.annotations['{ANNOTATION_CONFIG}']") }
            }]
        }
    });
    let mut volumes = vec![volume];
    if merge.is_some() {
        volumes.push(json!({ "name": MERGED_VOLUME_NAME, "emptyDir": {} }));
    }
    upsert(
        &mut ops,
        &ptr(&["spec", "volumes"]),
        &shape.volumes,
        volumes,
    );

    let mut cbase = ptr(&["spec", "containers"]);
    cbase.push_back(shape.container);
    let peers_mount =
        json!({ "name": VOLUME_NAME, "mountPath": settings.mount_dir(), "readOnly": true });
    let merged_mount = |read_only: bool| json!({ "name": MERGED_VOLUME_NAME, "mountPath": settings.merged_dir(), "readOnly": read_only });
    let mut mounts = vec![peers_mount.clone()];
    if merge.is_some() {
        mounts.push(merged_mount(true));
    }
    upsert(
        &mut ops,
        &at(&cbase, &["volumeMounts"]),
        &shape.mounts,
        mounts,
    );
    if let Some(m) = merge {
        if m.plan.captive != Some(CaptiveWiring::Env) {
            ops.push(add(at(&cbase, &["args"]), json!(m.plan.args)));
        }
        let init = init_container(&m.plan, settings, peers_mount.clone());
        let mut inits = vec![init];
        if m.live {
            inits.push(live_container(&m.plan, settings, peers_mount));
        }
        // After the pod's own init containers: whatever they prepare is in place.
        upsert(&mut ops, &ptr(&["spec", "initContainers"]), &m.init, inits);
    }

    let values = [
        list.csv.as_str(),
        list.count.as_str(),
        list.hash.as_str(),
        list.network.as_str(),
        settings.mount_path.as_str(),
    ];
    let mut env: Vec<Value> = ENV_NAMES
        .iter()
        .zip(values)
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    if let Some(m) = merge
        && m.plan.captive == Some(CaptiveWiring::Env)
    {
        // Container env beats envFrom, and stellar-rpc's --config-path TOML.
        env.push(json!({ "name": CAPTIVE_ENV, "value": m.plan.out(settings) }));
    }
    upsert(&mut ops, &at(&cbase, &["env"]), &shape.env, env);
    Patch(ops)
}

/// The live sidecar: a native sidecar (an init container with `restartPolicy: Always`,
/// Kubernetes 1.29+) after the init container, so it starts before stellar-core and
/// stops after it. It runs `live-peers`: the init step's own merge whenever the snippet
/// changes, then `connect` on the admin port for each added peer. Same image, mounts,
/// securityContext and resources as the init container.
pub fn live_container(plan: &MergePlan, settings: &InjectSettings, peers_mount: Value) -> Value {
    let mut c = init_container(plan, settings, peers_mount);
    c["name"] = json!(LIVE_CONTAINER_NAME);
    c["restartPolicy"] = json!("Always");
    if let Some(args) = c["args"].as_array_mut() {
        args[0] = json!("live-peers");
    }
    c["ports"] =
        json!([{ "name": "peers-metrics", "containerPort": LIVE_METRICS_PORT, "protocol": "TCP" }]);
    c
}

/// The init container that writes the merged file: one builder for validators and
/// captive core, so both get the same image, mounts, securityContext and resources.
pub fn init_container(plan: &MergePlan, settings: &InjectSettings, peers_mount: Value) -> Value {
    let mut base_mount = json!({
        "name": plan.base_mount.name,
        "mountPath": plan.base_mount.mount_path,
        "readOnly": true,
    });
    if let Some(sp) = &plan.base_mount.sub_path {
        base_mount["subPath"] = json!(sp);
    }
    let merged_mount = json!({ "name": MERGED_VOLUME_NAME, "mountPath": settings.merged_dir(), "readOnly": false });
    let mut args = vec![
        "render-config".to_owned(),
        "--base".to_owned(),
        plan.base.clone(),
        "--peers".to_owned(),
        settings.mount_path.clone(),
        "--out".to_owned(),
        plan.out(settings),
    ];
    if plan.captive.is_some() {
        args.push("--flavour".to_owned());
        args.push("captive-core".to_owned());
    }
    json!({
        "name": INIT_CONTAINER_NAME,
        "image": settings.init_image,
        "args": args,
        "volumeMounts": [base_mount, peers_mount, merged_mount],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        // Pod Security `restricted` judges every container by itself: a compliant pod
        // must stay compliant once injected. The uid is the image's own nonroot user,
        // set here too so that a pod-level `runAsUser: 0` cannot make the kubelet refuse
        // to start this container (`runAsNonRoot`).
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": INIT_CONTAINER_UID,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "resources": {
            "requests": { "cpu": "10m", "memory": "16Mi" },
            "limits": { "memory": "64Mi" },
        },
    })
}
