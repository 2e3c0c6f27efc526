//! Pure admission logic: a request view and a peer snapshot in, a decision out.

pub mod config;
pub mod offline;
pub mod patch;
pub mod review;
pub mod yaml;

use std::sync::Arc;

use crate::peers::{Lookup, PeerList, PeerSnapshot};
use review::{Object, PodView, RequestView};

/// Label every operator-made pod carries.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Its value for Stellar nodes.
pub const LABEL_NAME_VALUE: &str = "stellar-node";
/// Label naming the StellarNode a pod belongs to.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label the operator puts on its read replicas (`{name}-read` StatefulSet pods), with
/// [`ROLE_READ_REPLICA`].
pub const LABEL_ROLE: &str = "stellar.org/role";
/// [`LABEL_ROLE`] of a read replica: a stellar-core watcher started by a shell script
/// that writes its own config. Env vars and the snippet only; never a validator to the
/// rollout loop.
pub const ROLE_READ_REPLICA: &str = "read-replica";
/// `"false"` opts a pod out of injection.
pub const ANNOTATION_OPT_OUT: &str = "stellar.org/inject-peers";
/// The stellar-core snippet, projected into the container by the downwardAPI volume.
pub const ANNOTATION_CONFIG: &str = "stellar.org/peers-config";
/// The content hash of the injected list (also on pod templates, set by the rollout loop).
pub const ANNOTATION_HASH: &str = "stellar.org/peers-hash";
/// The number of injected peers.
pub const ANNOTATION_COUNT: &str = "stellar.org/peer-count";
/// What injected the pod, and how: `{"version":"<injector version>","mode":"merge"|"env"}`
/// (after Istio's `sidecar.istio.io/status` and Vault's `agent-inject-status`).
pub const ANNOTATION_STATUS: &str = "stellar.org/peers-injection-status";
/// [`ANNOTATION_STATUS`] of a pod whose config an init container merges.
pub const STATUS_MERGE: &str = concat!(
    r#"{"version":""#,
    env!("CARGO_PKG_VERSION"),
    r#"","mode":"merge"}"#
);
/// [`ANNOTATION_STATUS`] of a Horizon or stellar-rpc pod whose captive-core file an init
/// container merges.
pub const STATUS_CAPTIVE_MERGE: &str = concat!(
    r#"{"version":""#,
    env!("CARGO_PKG_VERSION"),
    r#"","mode":"captive-merge"}"#
);
/// [`ANNOTATION_STATUS`] of a pod given env vars and the snippet only.
pub const STATUS_ENV: &str = concat!(
    r#"{"version":""#,
    env!("CARGO_PKG_VERSION"),
    r#"","mode":"env"}"#
);
/// Name of the injected downwardAPI volume.
pub const VOLUME_NAME: &str = "stellar-peers";
/// Merge mode: the base config the init container merged (on injected pods).
pub const ANNOTATION_CONFIG_BASE: &str = "stellar.org/peers-config-base";
/// Merge mode: the emptyDir that holds the merged config.
pub const MERGED_VOLUME_NAME: &str = "stellar-peers-merged";
/// Merge mode: the init container that writes the merged config.
pub const INIT_CONTAINER_NAME: &str = "stellar-peers-config";
/// The init container's uid: the image's nonroot user (the Dockerfile's `USER`).
pub const INIT_CONTAINER_UID: u32 = 65532;

/// How the peers reach stellar-core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigMode {
    /// `merge` for validators whose container the injector understands and when an
    /// init image is set; `env` otherwise.
    Auto,
    /// An init container merges the peers into the config stellar-core reads.
    Merge,
    /// Env vars and the snippet file only; the user wires them into stellar-core.
    Env,
}

impl ConfigMode {
    /// Every value [`Self::parse`] accepts, as flags and annotations spell them.
    pub const NAMES: [&'static str; 3] = ["auto", "merge", "env"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "merge" => Some(Self::Merge),
            "env" => Some(Self::Env),
            _ => None,
        }
    }
}

/// How the patch is shaped.
#[derive(Clone, Debug)]
pub struct InjectSettings {
    /// Name of the container to inject into (else the first).
    pub container: String,
    /// Absolute path of the snippet file inside the container.
    pub mount_path: String,
    /// The mode where neither the pod nor its StellarNode chooses one.
    pub config_mode: ConfigMode,
    /// Image of the merge init container (runs `stellar-peer-injector render-config`);
    /// empty: no merge mode.
    pub init_image: String,
    /// The config a container without command and args would be given (the operator's
    /// ConfigMap key, mounted at /config).
    pub base_config: String,
    /// Where the merged config is written (an emptyDir is mounted on its directory).
    pub merged_path: String,
    /// What a peer change does to running pods where their StellarNode does not say
    /// (`stellar.org/peer-updates`); a live policy adds the live sidecar in merge mode.
    pub peer_updates: crate::live::PeerUpdates,
}

impl Default for InjectSettings {
    fn default() -> Self {
        Self {
            container: "stellar-node".to_owned(),
            mount_path: "/etc/stellar/peers/peers.cfg".to_owned(),
            config_mode: ConfigMode::Auto,
            init_image: String::new(),
            base_config: "/config/stellar-core.cfg".to_owned(),
            merged_path: "/etc/stellar/merged/stellar-core.cfg".to_owned(),
            peer_updates: crate::live::PeerUpdates::Restart,
        }
    }
}

/// True for an absolute file path inside a directory other than `/`, without `.`/`..`.
pub(crate) fn is_file_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.ends_with('/')
        && p.rfind('/').is_some_and(|i| i > 0)
        && !p.split('/').any(|s| s == ".." || s == ".")
}

fn dir_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("/", |(d, _)| d)
}

/// Why [`InjectSettings`] cannot be used; each names the flag to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{flag} {path:?} must be an absolute file path inside a directory, like {example}")]
    NotAFilePath {
        flag: &'static str,
        path: String,
        example: &'static str,
    },
    #[error(
        "--mount-path and --merged-config-path must be in different directories (both in {dir})"
    )]
    SameDirectory { dir: String },
    #[error("--container must not be empty")]
    NoContainer,
}

impl InjectSettings {
    /// Checks that `mount_path` is an absolute file path below a directory other than `/`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (flag, p, example) in [
            (
                "--mount-path",
                &self.mount_path,
                "/etc/stellar/peers/peers.cfg",
            ),
            (
                "--merged-config-path",
                &self.merged_path,
                "/etc/stellar/merged/stellar-core.cfg",
            ),
            (
                "--base-config",
                &self.base_config,
                "/config/stellar-core.cfg",
            ),
        ] {
            if !is_file_path(p) {
                return Err(SettingsError::NotAFilePath {
                    flag,
                    path: p.clone(),
                    example,
                });
            }
        }
        if self.mount_dir() == self.merged_dir() {
            return Err(SettingsError::SameDirectory {
                dir: self.mount_dir().to_owned(),
            });
        }
        if self.container.is_empty() {
            return Err(SettingsError::NoContainer);
        }
        Ok(())
    }

    /// The directory the volume is mounted on.
    pub fn mount_dir(&self) -> &str {
        dir_of(&self.mount_path)
    }

    /// The directory of the merged config (the emptyDir's mount).
    pub fn merged_dir(&self) -> &str {
        dir_of(&self.merged_path)
    }

    /// Where the merged captive-core file of a Horizon or stellar-rpc pod is written:
    /// `captive-core.cfg` in the merged config's directory.
    pub fn captive_merged_path(&self) -> String {
        format!("{}/{}", self.merged_dir(), config::CAPTIVE_FILE_NAME)
    }

    /// The file name inside that directory.
    pub fn file_name(&self) -> &str {
        self.mount_path
            .rsplit_once('/')
            .map_or(&*self.mount_path, |(_, f)| f)
    }
}

/// Why a request was allowed without a patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    NotCreate,
    NotPod,
    NotStellar,
    NoInstanceLabel,
    OptedOut,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotCreate => "not-create",
            Self::NotPod => "not-pod",
            Self::NotStellar => "not-stellar",
            Self::NoInstanceLabel => "no-instance-label",
            Self::OptedOut => "opted-out",
        }
    }
}

/// Why a Stellar pod was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    MalformedPod,
    NoNamespace,
    NoContainers,
    UnknownNode,
    InvalidNode,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedPod => "malformed-pod",
            Self::NoNamespace => "no-namespace",
            Self::NoContainers => "no-containers",
            Self::UnknownNode => "unknown-node",
            Self::InvalidNode => "invalid-node",
        }
    }
}

/// What to answer.
#[derive(Debug)]
pub enum Decision {
    /// Allow unchanged.
    Skip(SkipReason),
    /// Allow with the patch [`patch::build_patch`] makes of `shape` and `list`.
    Inject {
        shape: patch::PatchShape,
        list: Arc<PeerList>,
        node: String,
        warnings: Vec<String>,
        /// Merge mode was wanted but cannot be applied to this pod: why (also among
        /// `warnings`). Worth an Event on the StellarNode.
        config_problem: Option<config::NoMerge>,
    },
    /// Refuse, with a message for whoever created the pod.
    Deny { reason: DenyReason, message: String },
    /// The cache has not synced: answer 503 and let failurePolicy decide.
    NotReady,
}

/// Decides an admission request. Pure: no I/O, no clock.
pub fn decide(
    req: &RequestView<'_>,
    snapshot: Option<&PeerSnapshot>,
    settings: &InjectSettings,
) -> Decision {
    if req.operation != "CREATE" {
        return Decision::Skip(SkipReason::NotCreate);
    }
    if req.kind.kind != "Pod"
        || !req.kind.group.is_empty()
        || req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
    {
        return Decision::Skip(SkipReason::NotPod);
    }
    let parsed;
    let pod: &PodView<'_> = match &req.object {
        Some(Object::Pod(p)) => p,
        Some(Object::Raw(raw)) => match serde_json::from_str(raw.get()) {
            Ok(p) => {
                parsed = p;
                &parsed
            }
            Err(e) => {
                return Decision::Deny {
                    reason: DenyReason::MalformedPod,
                    message: format!(
                        "stellar-peer-injector: cannot read the pod ({e}); fix the pod manifest"
                    ),
                };
            }
        },
        None => {
            return Decision::Deny {
                reason: DenyReason::MalformedPod,
                message: "stellar-peer-injector: the Pod CREATE request carries no object"
                    .to_owned(),
            };
        }
    };
    let namespace = req
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            pod.metadata
                .as_ref()
                .and_then(|m| m.namespace.as_deref())
                .filter(|n| !n.is_empty())
        });
    decide_pod(pod, namespace, snapshot, settings)
}

/// The decision for one pod (or pod template) in `namespace`. Shared by the webhook
/// and the offline `inject` command.
pub fn decide_pod(
    pod: &PodView<'_>,
    namespace: Option<&str>,
    snapshot: Option<&PeerSnapshot>,
    settings: &InjectSettings,
) -> Decision {
    if pod.name_label() != Some(LABEL_NAME_VALUE) {
        return Decision::Skip(SkipReason::NotStellar);
    }
    let Some(instance) = pod.instance_label().filter(|s| !s.is_empty()) else {
        return Decision::Skip(SkipReason::NoInstanceLabel);
    };
    if pod
        .inject_annotation()
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    {
        return Decision::Skip(SkipReason::OptedOut);
    }
    let Some(snapshot) = snapshot else {
        return Decision::NotReady;
    };
    let Some(namespace) = namespace else {
        return Decision::Deny {
            reason: DenyReason::NoNamespace,
            message: "stellar-peer-injector: the pod has no namespace".to_owned(),
        };
    };
    let list = match snapshot.lookup(namespace, instance) {
        Lookup::Found(l) => l,
        Lookup::Unknown => {
            return Decision::Deny {
                reason: DenyReason::UnknownNode,
                message: format!(
                    "stellar-peer-injector: no StellarNode {namespace}/{instance} (from label {LABEL_INSTANCE}) is known; \
                     if it was just created the controller retries shortly, otherwise fix the label \
                     or annotate the pod {ANNOTATION_OPT_OUT}=\"false\""
                ),
            };
        }
        Lookup::Invalid(problem) => {
            return Decision::Deny {
                reason: DenyReason::InvalidNode,
                message: format!(
                    "stellar-peer-injector: StellarNode {namespace}/{instance} is malformed ({problem}); fix its spec"
                ),
            };
        }
    };
    let Some(target) = patch::target_container(pod, settings) else {
        return Decision::Deny {
            reason: DenyReason::NoContainers,
            message: "stellar-peer-injector: the pod has no containers to inject peers into"
                .to_owned(),
        };
    };
    let mut warnings = Vec::new();
    if target.fell_back {
        warnings.push(format!(
            "stellar-peer-injector: no container named {:?}; peers injected into the first container {:?}",
            settings.container,
            pod.containers()[0].name
        ));
    }
    if list.known.is_empty() {
        warnings.push(format!(
            "stellar-peer-injector: network {:?} has no other peers; injected an empty peer list",
            list.network
        ));
    }
    let node = snapshot.node(namespace, instance).map(|e| &e.record);
    let mode = config::resolve_mode(pod, node, settings, &mut warnings);
    let mut config_problem = None;
    let merge = match config::plan(
        mode,
        node,
        pod,
        &pod.containers()[target.container_index],
        settings,
    ) {
        Ok(m) => m,
        Err(why) => {
            warnings.push(format!("stellar-peer-injector: {why}"));
            config_problem = Some(why);
            None
        }
    };
    let policy = node
        .and_then(|n| n.peer_updates)
        .unwrap_or(settings.peer_updates);
    let live = policy.is_live() && merge.as_ref().is_some_and(|m| m.captive.is_none());
    if policy.is_live() && !live {
        warnings.push(format!(
            "stellar-peer-injector: peer updates are {:?} but this pod gets no live sidecar (it needs merge mode for a validator's own config); peer changes restart it",
            policy.as_str()
        ));
    }
    Decision::Inject {
        shape: patch::PatchShape::of(pod, &target, merge, live),
        list,
        node: format!("{namespace}/{instance}"),
        warnings,
        config_problem,
    }
}

#[cfg(test)]
mod tests;
