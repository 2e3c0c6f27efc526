//! Pure: how merge mode rewires one stellar-core container.
//!
//! stellar-core reads one config file, named by `--conf` (or `stellar-core.cfg` in its
//! working directory), once, at start. In merge mode an init container writes a copy of
//! that file with the peers merged in (`stellar-peer-injector render-config`), and the
//! container's `--conf` is pointed at the copy:
//!
//! | container                                 | base config read by the init container | new args                        |
//! |-------------------------------------------|-----------------------------------------|---------------------------------|
//! | no command, no args (Stellar-K8s operator) | `--base-config` (`/config/stellar-core.cfg`) | `run --conf <merged>`      |
//! | args `run --conf X ...` (SDF's chart)      | `X`                                     | `run --conf <merged> ...`       |
//! | args `run ...` without `--conf`            | `<workingDir or /etc/stellar>/stellar-core.cfg` | `run --conf <merged> ...` |
//! | args already `--conf <merged>` (re-injection) | the `stellar.org/peers-config-base` annotation | unchanged             |
//! | a command other than `stellar-core`, a shell, several `--conf` | not understood: left alone, with a warning | |
//!
//! The base must lie on a volume the container mounts, so that the init container can
//! mount the same volume and read it.

use super::review::{ContainerView, PodView};
use super::{ConfigMode, InjectSettings, ROLE_READ_REPLICA};
use crate::config::Flavour;
use crate::nodes::{CAPTIVE_CONFIG_ANNOTATION, CONFIG_MODE_ANNOTATION, NodeKind, NodeRecord};

/// Horizon's and stellar-rpc's flag naming their captive-core file (strict parsing).
pub const CAPTIVE_FLAG: &str = "--captive-core-config-path";
/// Horizon's deprecated, non-strict alternative, which this crate does not rewrite.
pub const CAPTIVE_APPEND_FLAG: &str = "--captive-core-config-append-path";
/// The env var both read when the flag is absent (container env beats `envFrom`, and
/// for stellar-rpc also its `--config-path` TOML).
pub const CAPTIVE_ENV: &str = "CAPTIVE_CORE_CONFIG_PATH";
/// File name of the merged captive-core file, in the merged config's directory.
pub const CAPTIVE_FILE_NAME: &str = "captive-core.cfg";

/// The stellar/stellar-core image's working directory.
pub const DEFAULT_WORKDIR: &str = "/etc/stellar";

/// A volume mount copied from the main container into the init container.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseMount {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
}

/// What merge mode changes in one pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MergePlan {
    /// The config the main container would have read.
    pub base: String,
    /// The mount through which the init container reads it.
    pub base_mount: BaseMount,
    /// The main container's args after the rewrite (its command is never changed).
    /// For a captive-core plan wired by env, its args as they are (not patched).
    pub args: Vec<String>,
    /// `None`: a validator's own config. `Some`: a Horizon or stellar-rpc captive-core
    /// file, and how the container is pointed at the merged copy.
    pub captive: Option<CaptiveWiring>,
}

/// How a Horizon or stellar-rpc container is pointed at the merged captive-core file:
/// by the way of highest precedence it already uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptiveWiring {
    /// Its `--captive-core-config-path` flag is rewritten.
    Flag,
    /// Container env `CAPTIVE_CORE_CONFIG_PATH` is set (replaced if it had one).
    Env,
}

impl MergePlan {
    /// Which kind of file the init container writes.
    pub fn flavour(&self) -> Flavour {
        match self.captive {
            None => Flavour::Core,
            Some(_) => Flavour::CaptiveCore,
        }
    }

    /// Where the init container writes the merged file.
    pub fn out(&self, settings: &InjectSettings) -> String {
        match self.captive {
            None => settings.merged_path.clone(),
            Some(_) => settings.captive_merged_path(),
        }
    }
}

/// Why a pod that merge mode was wanted for (explicitly, or `auto` for a validator)
/// gets env vars and the snippet only. The message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoMerge {
    #[error(
        "merge mode applies to validators, Horizon and Soroban RPC only; this pod gets env vars and the snippet"
    )]
    NotAValidator,
    #[error(
        "container {container:?} names no captive-core file ({CAPTIVE_FLAG}, env {CAPTIVE_ENV}) that admission can read, so its captive core cannot get the in-cluster validators (with only --network it uses a built-in preset); env vars and the snippet injected only. Name the file with {CAPTIVE_FLAG}, a literal env {CAPTIVE_ENV}, or the annotation {CAPTIVE_CONFIG_ANNOTATION} on the pod or its StellarNode; or set {CONFIG_MODE_ANNOTATION}=env"
    )]
    NoCaptiveFile { container: String },
    #[error(
        "merge mode needs the init container image (--init-image, Helm value config.initImage); env vars and the snippet injected only"
    )]
    NoInitImage,
    #[error(
        "container {container:?}: {why}; left alone (peers only as env vars and the snippet). Use `--conf` with stellar-core directly, or set {CONFIG_MODE_ANNOTATION}=env"
    )]
    LeftAlone {
        container: String,
        #[source]
        why: NotUnderstood,
    },
}

/// What about a container merge mode does not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotUnderstood {
    #[error("its command {0:?} is not stellar-core")]
    Command(Vec<String>),
    #[error("its args {0:?} do not start with a stellar-core subcommand")]
    NoSubcommand(Vec<String>),
    #[error("its --conf has no value")]
    ConfWithoutValue,
    #[error("it passes --conf more than once")]
    ConfTwice,
    #[error("it reads its config from stdin (--conf -)")]
    ConfFromStdin,
    #[error("its --conf already names {merged} but the base config is unknown")]
    BaseUnknown { merged: String },
    #[error(
        "volume {volume:?} is already mounted at {dir}, where the merged config goes; change --merged-config-path"
    )]
    MergedDirTaken { volume: String, dir: String },
    #[error(
        "no volume is mounted at its config {base}, so an init container cannot read it; mount the config from a ConfigMap or Secret (or set --base-config)"
    )]
    BaseNotMounted { base: String },
    #[error("its {CAPTIVE_FLAG} has no value")]
    CaptiveFlagWithoutValue,
    #[error("it passes {CAPTIVE_FLAG} more than once")]
    CaptiveFlagTwice,
    #[error("its command {0:?} passes {CAPTIVE_FLAG}, which only args are rewritten for")]
    CaptiveFlagInCommand(Vec<String>),
    #[error(
        "it uses the deprecated {CAPTIVE_APPEND_FLAG} (not strict); use {CAPTIVE_FLAG} instead"
    )]
    CaptiveAppend,
    #[error("its captive-core path {0:?} is not an absolute file path")]
    CaptivePath(String),
    #[error(
        "its env {CAPTIVE_ENV} comes from valueFrom, which admission cannot read; name the file with the annotation {CAPTIVE_CONFIG_ANNOTATION}"
    )]
    CaptiveEnvFrom,
}

/// The mode that applies: the pod's annotation, else its StellarNode's, else the flag.
/// An unknown annotation value is ignored with a warning.
pub fn resolve_mode(
    pod: &PodView<'_>,
    node: Option<&NodeRecord>,
    settings: &InjectSettings,
    warnings: &mut Vec<String>,
) -> ConfigMode {
    let pick = |raw: Option<&str>, whose: &str, warnings: &mut Vec<String>| {
        let raw = raw?;
        let m = ConfigMode::parse(raw);
        if m.is_none() {
            warnings.push(format!(
                "stellar-peer-injector: {whose} annotation {CONFIG_MODE_ANNOTATION}={raw:?} is not auto, merge or env; ignored"
            ));
        }
        m
    };
    pick(pod.config_mode_annotation(), "pod", warnings)
        .or_else(|| {
            pick(
                node.and_then(|n| n.config_mode.as_deref()),
                "StellarNode",
                warnings,
            )
        })
        .unwrap_or(settings.config_mode)
}

/// Decides whether and how this pod's target container gets the merged config.
/// `Ok(None)`: env mode. `Err`: merge mode was wanted (explicitly, or `auto` for a
/// validator) but cannot be applied; the message says why and what to do.
pub fn plan(
    mode: ConfigMode,
    node: Option<&NodeRecord>,
    pod: &PodView<'_>,
    container: &ContainerView<'_>,
    settings: &InjectSettings,
) -> Result<Option<MergePlan>, NoMerge> {
    let validator = node.is_some_and(|n| n.kind == NodeKind::Validator);
    let captive = node.is_some_and(|n| matches!(n.kind, NodeKind::Horizon | NodeKind::SorobanRpc));
    // The operator's read replicas run a shell script that writes its own config: there
    // is nothing to rewrite, whatever their StellarNode's mode.
    let read_replica = pod.role_label() == Some(ROLE_READ_REPLICA);
    match mode {
        ConfigMode::Env => return Ok(None),
        _ if read_replica => return Ok(None),
        ConfigMode::Auto if !validator && !captive => return Ok(None),
        ConfigMode::Merge if !validator && !captive => return Err(NoMerge::NotAValidator),
        _ => {}
    }
    if settings.init_image.is_empty() {
        if mode == ConfigMode::Auto {
            return Ok(None); // auto: merge only where it can be done
        }
        return Err(NoMerge::NoInitImage);
    }
    if captive {
        let annotation = pod
            .captive_config_annotation()
            .or_else(|| node.and_then(|n| n.captive_config.as_deref()));
        return rewrite_captive(
            container,
            annotation,
            pod.config_base_annotation(),
            settings,
        )
        .map(Some);
    }
    rewrite(container, pod.config_base_annotation(), settings).map(Some)
}

/// Points a Horizon or stellar-rpc container at the merged captive-core file; finds
/// the base: its `--captive-core-config-path` (rewritten), else a literal container env
/// `CAPTIVE_CORE_CONFIG_PATH` (replaced), else the `stellar.org/captive-core-config`
/// annotation (env set). A path that already names the merged file (re-injection) takes
/// its base from the `stellar.org/peers-config-base` annotation.
fn rewrite_captive(
    container: &ContainerView<'_>,
    annotation: Option<&str>,
    base_annotation: Option<&str>,
    settings: &InjectSettings,
) -> Result<MergePlan, NoMerge> {
    let merged = settings.captive_merged_path();
    let leave = |why: NotUnderstood| NoMerge::LeftAlone {
        container: container.name.to_string(),
        why,
    };
    let command: Vec<&str> = container.command.iter().flatten().map(|s| &**s).collect();
    let args: Vec<&str> = container.args.iter().flatten().map(|s| &**s).collect();
    let is_flag = |a: &str| a == CAPTIVE_FLAG || a.starts_with(&format!("{CAPTIVE_FLAG}="));
    let is_append =
        |a: &str| a == CAPTIVE_APPEND_FLAG || a.starts_with(&format!("{CAPTIVE_APPEND_FLAG}="));
    if command.iter().any(|a| is_flag(a)) {
        return Err(leave(NotUnderstood::CaptiveFlagInCommand(
            command.iter().map(|s| (*s).to_owned()).collect(),
        )));
    }
    if command.iter().chain(&args).any(|a| is_append(a)) {
        return Err(leave(NotUnderstood::CaptiveAppend));
    }
    // The flag, rewritten in place.
    let mut found = None;
    let mut out: Vec<String> = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        let value = if a == CAPTIVE_FLAG {
            i += 1;
            Some(
                *args
                    .get(i)
                    .ok_or_else(|| leave(NotUnderstood::CaptiveFlagWithoutValue))?,
            )
        } else {
            a.strip_prefix(CAPTIVE_FLAG)
                .and_then(|rest| rest.strip_prefix('='))
        };
        match value {
            Some(v) => {
                if found.replace(v).is_some() {
                    return Err(leave(NotUnderstood::CaptiveFlagTwice));
                }
                out.push(CAPTIVE_FLAG.to_owned());
                out.push(merged.clone());
            }
            None => out.push(a.to_owned()),
        }
        i += 1;
    }
    let env = container
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|e| e.name == CAPTIVE_ENV);
    let (named, wiring) = match (found, env) {
        (Some(v), _) => (v, CaptiveWiring::Flag),
        (None, Some(e)) if e.value_from => {
            // Re-injection replaced it with a literal; a valueFrom is the user's.
            return Err(leave(NotUnderstood::CaptiveEnvFrom));
        }
        (None, Some(e)) => match e.value.as_deref() {
            Some(v) if !v.is_empty() => (v, CaptiveWiring::Env),
            // `value: ""` reads as unset: fall back to the annotation.
            _ => match annotation {
                Some(a) => (a, CaptiveWiring::Env),
                None => {
                    return Err(NoMerge::NoCaptiveFile {
                        container: container.name.to_string(),
                    });
                }
            },
        },
        (None, None) => match annotation {
            Some(a) => (a, CaptiveWiring::Env),
            None => {
                return Err(NoMerge::NoCaptiveFile {
                    container: container.name.to_string(),
                });
            }
        },
    };
    let named = named.trim();
    let base = if named == merged {
        match base_annotation {
            Some(b) => b.to_owned(),
            None => return Err(leave(NotUnderstood::BaseUnknown { merged })),
        }
    } else {
        named.to_owned()
    };
    if !super::is_file_path(&base) {
        return Err(leave(NotUnderstood::CaptivePath(base)));
    }
    let base_mount = covering_mount(container, &base, settings)?;
    Ok(MergePlan {
        base,
        base_mount,
        args: match wiring {
            CaptiveWiring::Flag => out,
            CaptiveWiring::Env => args.iter().map(|s| (*s).to_owned()).collect(),
        },
        captive: Some(wiring),
    })
}

/// The volume mount through which an init container can read `base`, checking that the
/// merged directory is free for the injector's emptyDir.
fn covering_mount(
    container: &ContainerView<'_>,
    base: &str,
    settings: &InjectSettings,
) -> Result<BaseMount, NoMerge> {
    let leave = |why: NotUnderstood| NoMerge::LeftAlone {
        container: container.name.to_string(),
        why,
    };
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let merged_dir = settings.merged_dir();
    if let Some(m) = mounts.iter().find(|m| {
        m.mount_path.trim_end_matches('/') == merged_dir && m.name != super::MERGED_VOLUME_NAME
    }) {
        return Err(leave(NotUnderstood::MergedDirTaken {
            volume: m.name.to_string(),
            dir: merged_dir.to_owned(),
        }));
    }
    let covering = mounts
        .iter()
        .filter(|m| m.name != super::MERGED_VOLUME_NAME && m.name != super::VOLUME_NAME)
        .filter(|m| {
            let mp = m.mount_path.trim_end_matches('/');
            base == mp
                || base
                    .strip_prefix(mp)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|m| m.mount_path.len());
    let Some(m) = covering else {
        return Err(leave(NotUnderstood::BaseNotMounted {
            base: base.to_owned(),
        }));
    };
    Ok(BaseMount {
        name: m.name.to_string(),
        mount_path: m.mount_path.to_string(),
        sub_path: m.sub_path.as_deref().map(str::to_owned),
    })
}

fn is_stellar_core(cmd: &str) -> bool {
    cmd.rsplit('/').next() == Some("stellar-core")
}

fn is_subcommand(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Rewrites the container's args to read the merged file; finds the base config.
fn rewrite(
    container: &ContainerView<'_>,
    base_annotation: Option<&str>,
    settings: &InjectSettings,
) -> Result<MergePlan, NoMerge> {
    let merged = settings.merged_path.as_str();
    let command: Vec<&str> = container.command.iter().flatten().map(|s| &**s).collect();
    let args: Vec<&str> = container.args.iter().flatten().map(|s| &**s).collect();
    let leave = |why: NotUnderstood| {
        Err(NoMerge::LeftAlone {
            container: container.name.to_string(),
            why,
        })
    };
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    match command.as_slice() {
        [] => {}
        [one] if is_stellar_core(one) => {}
        _ => return leave(NotUnderstood::Command(owned(&command))),
    }
    let workdir = container
        .working_dir
        .as_deref()
        .filter(|w| w.starts_with('/'))
        .unwrap_or(DEFAULT_WORKDIR);
    let absolute = |p: &str| {
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("{}/{p}", workdir.trim_end_matches('/'))
        }
    };
    let (base, new_args) = if args.is_empty() {
        // The operator's container: the image's entrypoint with no subcommand only
        // prints help. Give it `run` with the merged file.
        (
            settings.base_config.clone(),
            vec!["run".to_owned(), "--conf".to_owned(), merged.to_owned()],
        )
    } else {
        if !is_subcommand(args[0]) {
            return leave(NotUnderstood::NoSubcommand(owned(&args)));
        }
        let mut out: Vec<String> = Vec::with_capacity(args.len() + 2);
        let mut base = None;
        let mut i = 0;
        while i < args.len() {
            let a = args[i];
            let value = if a == "--conf" {
                i += 1;
                match args.get(i) {
                    Some(v) => Some(*v),
                    None => return leave(NotUnderstood::ConfWithoutValue),
                }
            } else {
                a.strip_prefix("--conf=")
            };
            match value {
                Some(v) => {
                    if base.is_some() {
                        return leave(NotUnderstood::ConfTwice);
                    }
                    if v == "-" {
                        return leave(NotUnderstood::ConfFromStdin);
                    }
                    base = Some(if absolute(v) == merged {
                        match base_annotation {
                            Some(b) => b.to_owned(),
                            None => {
                                return leave(NotUnderstood::BaseUnknown {
                                    merged: merged.to_owned(),
                                });
                            }
                        }
                    } else {
                        absolute(v)
                    });
                    out.push("--conf".to_owned());
                    out.push(merged.to_owned());
                }
                None => out.push(a.to_owned()),
            }
            i += 1;
        }
        let base = match base {
            Some(b) => b,
            None => {
                // No --conf: stellar-core reads stellar-core.cfg in its working directory.
                out.insert(1, "--conf".to_owned());
                out.insert(2, merged.to_owned());
                absolute("stellar-core.cfg")
            }
        };
        (base, out)
    };
    let base_mount = covering_mount(container, &base, settings)?;
    Ok(MergePlan {
        base,
        base_mount,
        args: new_args,
        captive: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> InjectSettings {
        InjectSettings {
            init_image: "injector:1".into(),
            ..InjectSettings::default()
        }
    }

    fn container(v: serde_json::Value) -> ContainerView<'static> {
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        serde_json::from_str(text).expect("container")
    }

    fn rw(v: serde_json::Value, base_ann: Option<&str>) -> Result<MergePlan, NoMerge> {
        rewrite(&container(v), base_ann, &settings())
    }

    #[test]
    fn operator_container_without_command_or_args_gets_run_conf() {
        let p = rw(
            json!({"name": "stellar-node", "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": true},
                                                             {"name": "data", "mountPath": "/opt/stellar/data"}]}),
            None,
        )
        .expect("plan");
        assert_eq!(p.base, "/config/stellar-core.cfg");
        assert_eq!(
            p.args,
            ["run", "--conf", "/etc/stellar/merged/stellar-core.cfg"]
        );
        assert_eq!(p.base_mount.name, "config");
        assert_eq!(p.base_mount.mount_path, "/config");
    }

    #[test]
    fn sdf_chart_args_get_their_conf_replaced() {
        let p = rw(
            json!({"name": "core", "args": ["run", "--conf", "/config/stellar-core.cfg", "--console"],
                   "volumeMounts": [{"name": "config", "mountPath": "/config"}]}),
            None,
        )
        .expect("plan");
        assert_eq!(p.base, "/config/stellar-core.cfg");
        assert_eq!(
            p.args,
            [
                "run",
                "--conf",
                "/etc/stellar/merged/stellar-core.cfg",
                "--console"
            ]
        );
        let p = rw(
            json!({"name": "core", "command": ["/usr/bin/stellar-core"], "args": ["run", "--conf=/config/x.cfg"],
                   "volumeMounts": [{"name": "config", "mountPath": "/config/"}]}),
            None,
        )
        .expect("plan");
        assert_eq!(p.base, "/config/x.cfg");
        assert_eq!(
            p.args,
            ["run", "--conf", "/etc/stellar/merged/stellar-core.cfg"]
        );
    }

    #[test]
    fn args_without_conf_read_the_working_directory_file() {
        let p = rw(
            json!({"name": "c", "args": ["run", "--console"],
                   "volumeMounts": [{"name": "cfg", "mountPath": "/etc/stellar/stellar-core.cfg", "subPath": "stellar-core.cfg"}]}),
            None,
        )
        .expect("plan");
        assert_eq!(p.base, "/etc/stellar/stellar-core.cfg");
        assert_eq!(p.base_mount.sub_path.as_deref(), Some("stellar-core.cfg"));
        assert_eq!(
            p.args,
            [
                "run",
                "--conf",
                "/etc/stellar/merged/stellar-core.cfg",
                "--console"
            ]
        );
        let p = rw(
            json!({"name": "c", "args": ["run"], "workingDir": "/work",
                   "volumeMounts": [{"name": "w", "mountPath": "/work"}]}),
            None,
        )
        .expect("plan");
        assert_eq!(p.base, "/work/stellar-core.cfg");
    }

    #[test]
    fn a_second_pass_is_a_fixpoint() {
        let first = rw(
            json!({"name": "c", "volumeMounts": [{"name": "config", "mountPath": "/config"}]}),
            None,
        )
        .expect("plan");
        let again = rw(
            json!({"name": "c", "args": first.args,
                   "volumeMounts": [{"name": "config", "mountPath": "/config"},
                                    {"name": "stellar-peers-merged", "mountPath": "/etc/stellar/merged"},
                                    {"name": "stellar-peers", "mountPath": "/etc/stellar/peers"}]}),
            Some(&first.base),
        )
        .expect("plan");
        assert_eq!(again, first);
        // Without the annotation the base is unknown: left alone.
        assert!(rw(json!({"name": "c", "args": again.args}), None).is_err());
    }

    #[test]
    fn what_is_not_understood_is_left_alone_with_a_reason() {
        for (c, why) in [
            (
                json!({"name": "c", "command": ["/bin/sh", "-c", "stellar-core run"]}),
                "is not stellar-core",
            ),
            (
                json!({"name": "c", "command": ["stellar-core", "run"]}),
                "is not stellar-core",
            ),
            (json!({"name": "c", "args": ["/start.sh"]}), "subcommand"),
            (json!({"name": "c", "args": ["run", "--conf"]}), "no value"),
            (
                json!({"name": "c", "args": ["run", "--conf", "a", "--conf=b"], "volumeMounts": [{"name": "x", "mountPath": "/etc/stellar"}]}),
                "more than once",
            ),
            (
                json!({"name": "c", "args": ["run", "--conf", "-"]}),
                "stdin",
            ),
            (
                json!({"name": "c", "args": ["run", "--conf", "/baked/in.cfg"], "volumeMounts": [{"name": "x", "mountPath": "/bake"}]}),
                "no volume is mounted",
            ),
            (
                json!({"name": "c", "volumeMounts": [{"name": "config", "mountPath": "/config"}, {"name": "mine", "mountPath": "/etc/stellar/merged"}]}),
                "already mounted",
            ),
        ] {
            let e = rw(c.clone(), None).expect_err("left alone").to_string();
            assert!(e.contains(why), "{c}: {e}");
            assert!(e.contains("left alone"), "{e}");
        }
    }

    #[test]
    fn modes_resolve_pod_then_node_then_flag() {
        let pod: PodView<'static> = serde_json::from_str(
            r#"{"metadata": {"annotations": {"stellar.org/peers-config-mode": "env"}}}"#,
        )
        .expect("pod");
        let bare = PodView::default();
        let mut node = NodeRecord::new("ns", "v", NodeKind::Validator, "testnet");
        node.config_mode = Some("merge".into());
        let s = settings();
        let mut w = Vec::new();
        assert_eq!(resolve_mode(&pod, Some(&node), &s, &mut w), ConfigMode::Env);
        assert_eq!(
            resolve_mode(&bare, Some(&node), &s, &mut w),
            ConfigMode::Merge
        );
        assert_eq!(resolve_mode(&bare, None, &s, &mut w), ConfigMode::Auto);
        assert!(w.is_empty());
        node.config_mode = Some("sideways".into());
        assert_eq!(
            resolve_mode(&bare, Some(&node), &s, &mut w),
            ConfigMode::Auto
        );
        assert!(w[0].contains("sideways"), "{w:?}");
    }

    #[test]
    fn auto_merges_validators_and_captive_core_only_and_needs_an_image() {
        let c = container(
            json!({"name": "c", "volumeMounts": [{"name": "config", "mountPath": "/config"}]}),
        );
        let pod = PodView::default();
        let v = NodeRecord::new("ns", "v", NodeKind::Validator, "testnet");
        let h = NodeRecord::new("ns", "h", NodeKind::Horizon, "testnet");
        let s = settings();
        assert!(
            plan(ConfigMode::Auto, Some(&v), &pod, &c, &s)
                .expect("ok")
                .is_some()
        );
        // Horizon is merged when it names a captive-core file; this container names
        // none, so env mode, with the reason (issue 24).
        assert_eq!(
            plan(ConfigMode::Auto, Some(&h), &pod, &c, &s),
            Err(NoMerge::NoCaptiveFile {
                container: "c".into()
            })
        );
        assert_eq!(plan(ConfigMode::Env, Some(&v), &pod, &c, &s), Ok(None));
        assert!(plan(ConfigMode::Merge, Some(&h), &pod, &c, &s).is_err());
        let no_image = InjectSettings::default();
        assert_eq!(
            plan(ConfigMode::Auto, Some(&v), &pod, &c, &no_image),
            Ok(None)
        );
        let e = plan(ConfigMode::Merge, Some(&v), &pod, &c, &no_image).expect_err("no image");
        assert_eq!(e, NoMerge::NoInitImage);
        assert!(e.to_string().contains("--init-image"), "{e}");
    }

    fn captive_plan(
        kind: NodeKind,
        pod: serde_json::Value,
        node_annotation: Option<&str>,
    ) -> Result<Option<MergePlan>, NoMerge> {
        let text: &'static str = Box::leak(pod.to_string().into_boxed_str());
        let pod: PodView<'static> = serde_json::from_str(text).expect("pod");
        let mut node = NodeRecord::new("ns", "h", kind, "testnet");
        node.captive_config = node_annotation.map(str::to_owned);
        let c = &pod.containers()[0];
        plan(ConfigMode::Auto, Some(&node), &pod, c, &settings())
    }

    fn with_container(c: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {}, "spec": {"containers": [c]}})
    }

    const MERGED: &str = "/etc/stellar/merged/captive-core.cfg";

    #[test]
    fn captive_flag_is_rewritten_in_both_spellings() {
        for args in [
            json!(["--captive-core-config-path", "/cfg/captive.cfg", "--ingest"]),
            json!(["--captive-core-config-path=/cfg/captive.cfg", "--ingest"]),
        ] {
            let p = captive_plan(
                NodeKind::Horizon,
                with_container(json!({"name": "horizon", "args": args,
                    "env": [{"name": "CAPTIVE_CORE_CONFIG_PATH", "value": "/ignored.cfg"}],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]})),
                None,
            )
            .expect("ok")
            .expect("plan");
            assert_eq!(p.base, "/cfg/captive.cfg");
            assert_eq!(p.captive, Some(CaptiveWiring::Flag));
            assert_eq!(p.flavour(), Flavour::CaptiveCore);
            assert_eq!(
                p.args,
                ["--captive-core-config-path", MERGED, "--ingest"],
                "the flag beats the env: only the flag changes"
            );
            assert_eq!(p.out(&settings()), MERGED);
        }
    }

    #[test]
    fn captive_env_then_annotation_then_nothing() {
        // A literal env: replaced by the patch.
        let p = captive_plan(
            NodeKind::SorobanRpc,
            with_container(
                json!({"name": "rpc", "args": ["--config-path", "/config/rpc.toml"],
                "env": [{"name": "CAPTIVE_CORE_CONFIG_PATH", "value": "/config/core.cfg"}],
                "volumeMounts": [{"name": "config", "mountPath": "/config"}]}),
            ),
            None,
        )
        .expect("ok")
        .expect("plan");
        assert_eq!(
            (p.base.as_str(), p.captive),
            ("/config/core.cfg", Some(CaptiveWiring::Env))
        );
        assert_eq!(
            p.args,
            ["--config-path", "/config/rpc.toml"],
            "args untouched"
        );
        // The pod's annotation beats its StellarNode's; env is set.
        let mut pod = with_container(json!({"name": "horizon",
            "envFrom": [{"configMapRef": {"name": "h-ingest-env"}}],
            "volumeMounts": [{"name": "core-config", "mountPath": "/config"}]}));
        pod["metadata"]["annotations"] =
            json!({"stellar.org/captive-core-config": "/config/stellar-core.cfg"});
        let p = captive_plan(NodeKind::Horizon, pod, Some("/config/other.cfg"))
            .expect("ok")
            .expect("plan");
        assert_eq!(p.base, "/config/stellar-core.cfg");
        assert_eq!(p.captive, Some(CaptiveWiring::Env));
        let p = captive_plan(
            NodeKind::SorobanRpc,
            with_container(json!({"name": "stellar-node",
                "volumeMounts": [{"name": "config", "mountPath": "/config"}]})),
            Some("/config/captive-core.cfg"),
        )
        .expect("ok")
        .expect("plan");
        assert_eq!(p.base, "/config/captive-core.cfg");
        assert_eq!(p.base_mount.name, "config");
        // Only --network: env mode, and a message saying what to do.
        let e = captive_plan(
            NodeKind::Horizon,
            with_container(json!({"name": "horizon", "args": ["--network", "testnet"]})),
            None,
        )
        .expect_err("no file");
        assert!(matches!(e, NoMerge::NoCaptiveFile { .. }));
        let m = e.to_string();
        assert!(
            m.contains("--captive-core-config-path")
                && m.contains("stellar.org/captive-core-config"),
            "{m}"
        );
    }

    #[test]
    fn captive_containers_not_understood_are_left_alone() {
        let mounts = json!([{"name": "cfg", "mountPath": "/cfg"}]);
        for (c, why) in [
            (
                json!({"name": "h", "args": ["--captive-core-config-path"]}),
                "no value",
            ),
            (
                json!({"name": "h", "args": ["--captive-core-config-path", "/cfg/a", "--captive-core-config-path=/cfg/b"], "volumeMounts": mounts}),
                "more than once",
            ),
            (
                json!({"name": "h", "command": ["stellar-horizon", "--captive-core-config-path", "/cfg/a"], "volumeMounts": mounts}),
                "only args",
            ),
            (
                json!({"name": "h", "args": ["--captive-core-config-append-path", "/cfg/a"], "volumeMounts": mounts}),
                "deprecated",
            ),
            (
                json!({"name": "h", "env": [{"name": "CAPTIVE_CORE_CONFIG_PATH", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}]}),
                "valueFrom",
            ),
            (
                json!({"name": "h", "args": ["--captive-core-config-path", "/baked/in.cfg"], "volumeMounts": mounts}),
                "no volume is mounted",
            ),
            (
                json!({"name": "h", "args": ["--captive-core-config-path", "relative.cfg"], "volumeMounts": mounts}),
                "not an absolute file path",
            ),
            (
                json!({"name": "h", "args": ["--captive-core-config-path", MERGED], "volumeMounts": mounts}),
                "base config is unknown",
            ),
        ] {
            let e = captive_plan(NodeKind::Horizon, with_container(c.clone()), None)
                .expect_err("left alone")
                .to_string();
            assert!(e.contains(why) && e.contains("left alone"), "{c}: {e}");
        }
    }

    #[test]
    fn captive_second_pass_is_a_fixpoint() {
        for c in [
            json!({"name": "h", "args": ["--captive-core-config-path", "/cfg/c.cfg"],
                   "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}),
            json!({"name": "h", "env": [{"name": "CAPTIVE_CORE_CONFIG_PATH", "value": "/cfg/c.cfg"}],
                   "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}),
        ] {
            let first = captive_plan(NodeKind::Horizon, with_container(c.clone()), None)
                .expect("ok")
                .expect("plan");
            let mut again = c.clone();
            if first.captive == Some(CaptiveWiring::Flag) {
                again["args"] = json!(first.args);
            } else {
                again["env"][0]["value"] = json!(MERGED);
            }
            again["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"},
                {"name": "stellar-peers-merged", "mountPath": "/etc/stellar/merged"}]);
            let mut pod = with_container(again);
            pod["metadata"]["annotations"] = json!({"stellar.org/peers-config-base": "/cfg/c.cfg"});
            let second = captive_plan(NodeKind::Horizon, pod, None)
                .expect("ok")
                .expect("plan");
            assert_eq!(second, first);
        }
    }

    #[test]
    fn read_replicas_and_env_mode_are_never_merged() {
        let text = r#"{"metadata": {"labels": {"stellar.org/role": "read-replica"}},
            "spec": {"containers": [{"name": "stellar-core", "command": ["/bin/bash", "/config/startup.sh"]}]}}"#;
        let pod: PodView<'static> = serde_json::from_str(text).expect("pod");
        let v = NodeRecord::new("ns", "v", NodeKind::Validator, "testnet");
        let c = &pod.containers()[0];
        for mode in [ConfigMode::Auto, ConfigMode::Merge, ConfigMode::Env] {
            assert_eq!(
                plan(mode, Some(&v), &pod, c, &settings()),
                Ok(None),
                "{mode:?}"
            );
        }
        // Env mode for Horizon: no plan, no warning.
        let h = NodeRecord::new("ns", "h", NodeKind::Horizon, "testnet");
        assert_eq!(
            plan(ConfigMode::Env, Some(&h), &pod, c, &settings()),
            Ok(None)
        );
    }
}
