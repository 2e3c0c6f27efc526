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
use super::{ConfigMode, InjectSettings};
use crate::nodes::{CONFIG_MODE_ANNOTATION, NodeKind, NodeRecord};

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
    pub args: Vec<String>,
}

/// Why a pod that merge mode was wanted for (explicitly, or `auto` for a validator)
/// gets env vars and the snippet only. The message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoMerge {
    #[error("merge mode applies to validators only; this pod gets env vars and the snippet")]
    NotAValidator,
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
    match mode {
        ConfigMode::Env => return Ok(None),
        ConfigMode::Auto if !validator => return Ok(None),
        ConfigMode::Merge if !validator => return Err(NoMerge::NotAValidator),
        _ => {}
    }
    if settings.init_image.is_empty() {
        if mode == ConfigMode::Auto {
            return Ok(None); // auto: merge only where it can be done
        }
        return Err(NoMerge::NoInitImage);
    }
    rewrite(container, pod.config_base_annotation(), settings).map(Some)
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
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let merged_dir = settings.merged_dir();
    if let Some(m) = mounts.iter().find(|m| {
        m.mount_path.trim_end_matches('/') == merged_dir && m.name != super::MERGED_VOLUME_NAME
    }) {
        return leave(NotUnderstood::MergedDirTaken {
            volume: m.name.to_string(),
            dir: merged_dir.to_owned(),
        });
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
        return leave(NotUnderstood::BaseNotMounted { base });
    };
    Ok(MergePlan {
        base,
        base_mount: BaseMount {
            name: m.name.to_string(),
            mount_path: m.mount_path.to_string(),
            sub_path: m.sub_path.as_deref().map(str::to_owned),
        },
        args: new_args,
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
    fn auto_merges_validators_only_and_needs_an_image() {
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
        assert_eq!(plan(ConfigMode::Auto, Some(&h), &pod, &c, &s), Ok(None));
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
}
