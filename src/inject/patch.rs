//! Idempotent JSON patch (RFC 6902) that gives a pod its peers.
//!
//! Every entry the injector owns (env vars, the volume, the mount, the annotations)
//! is replaced where it exists and added where it does not, so a pod that already
//! went through the webhook (reinvocation, re-applied manifests, offline injection
//! followed by admission) ends up with exactly one copy of each, at current values.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Value, json};

use super::review::{Named, PodView};
use super::{ANNOTATION_CONFIG, ANNOTATION_COUNT, ANNOTATION_HASH, InjectSettings, VOLUME_NAME};
use crate::peers::PeerList;

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

fn at_index(base: &PointerBuf, i: usize) -> PointerBuf {
    let mut p = base.clone();
    p.push_back(i);
    p
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn replace(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path, value })
}

/// Upserts `items` (each with a `name`) into the array at `base`, whose current
/// names are `existing`. Removes later duplicates of the names it owns.
fn upsert_named(
    ops: &mut Vec<PatchOperation>,
    base: &PointerBuf,
    existing: Option<&[Named<'_>]>,
    items: Vec<(&str, Value)>,
) {
    let Some(existing) = existing else {
        ops.push(add(
            base.clone(),
            Value::Array(items.into_iter().map(|(_, v)| v).collect()),
        ));
        return;
    };
    let mut removals = Vec::new();
    let mut appends = Vec::new();
    for (name, value) in items {
        let mut found = existing
            .iter()
            .enumerate()
            .filter(|(_, n)| n.name == name)
            .map(|(i, _)| i);
        match found.next() {
            Some(first) => {
                ops.push(replace(at_index(base, first), value));
                removals.extend(found);
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

/// Builds the patch for a pod (or a pod template: paths are relative to it).
pub fn build_patch(
    pod: &PodView<'_>,
    target: &Target,
    list: &PeerList,
    settings: &InjectSettings,
) -> Patch {
    let mut ops = Vec::with_capacity(16);
    let annotations = [
        (ANNOTATION_CONFIG, list.config.as_str()),
        (ANNOTATION_HASH, list.hash.as_str()),
        (ANNOTATION_COUNT, list.count.as_str()),
    ];
    match &pod.metadata {
        None => {
            let map: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            ops.push(add(ptr(&["metadata"]), json!({ "annotations": map })));
        }
        Some(m) if m.annotations.is_none() => {
            let map: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            ops.push(add(ptr(&["metadata", "annotations"]), Value::Object(map)));
        }
        Some(_) => {
            for (k, v) in annotations {
                ops.push(add(ptr(&["metadata", "annotations", k]), Value::from(v)));
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
    let spec = pod.spec.as_ref();
    upsert_named(
        &mut ops,
        &ptr(&["spec", "volumes"]),
        spec.and_then(|s| s.volumes.as_deref()),
        vec![(VOLUME_NAME, volume)],
    );

    let container = &pod.containers()[target.container_index];
    let mut cbase = ptr(&["spec", "containers"]);
    cbase.push_back(target.container_index);
    let mount = json!({ "name": VOLUME_NAME, "mountPath": settings.mount_dir(), "readOnly": true });
    upsert_named(
        &mut ops,
        &at(&cbase, &["volumeMounts"]),
        container.volume_mounts.as_deref(),
        vec![(VOLUME_NAME, mount)],
    );

    let env = |name: &str, value: &str| json!({ "name": name, "value": value });
    upsert_named(
        &mut ops,
        &at(&cbase, &["env"]),
        container.env.as_deref(),
        vec![
            ("STELLAR_PEERS", env("STELLAR_PEERS", &list.csv)),
            ("STELLAR_PEER_COUNT", env("STELLAR_PEER_COUNT", &list.count)),
            ("STELLAR_PEERS_HASH", env("STELLAR_PEERS_HASH", &list.hash)),
            ("STELLAR_NETWORK", env("STELLAR_NETWORK", &list.network)),
            (
                "STELLAR_PEERS_CONFIG",
                env("STELLAR_PEERS_CONFIG", &settings.mount_path),
            ),
        ],
    );
    Patch(ops)
}
