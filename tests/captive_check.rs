//! Golden tests of captive-core mode, judged by the real parser.
//!
//! For pods shaped like SDF's `charts/horizon` and `charts/soroban-rpc` and the
//! Stellar-K8s operator's Horizon and SorobanRpc Deployments
//! (tests/fixtures/captive/pods), the webhook's decision is applied to the pod; the
//! injected init container's own command line is parsed by the real CLI and run over
//! a kubelet-like layout of the pod's volumes; the file the main container is then
//! pointed at (by its flag or its env) is fed to `captive-check`, the captive-core TOML
//! parser of Horizon and stellar-rpc (`github.com/stellar/go-stellar-sdk`, strict mode),
//! built by `tests/testbed/testbed build`. Every merged captive-core fixture goes to the
//! checker too.
//!
//! The checker is required: this test fails, not skips, when it is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use serde_json::{Value, json};
use stellar_peer_injector::cli::{Cli, Command as CliCommand};
use stellar_peer_injector::cmd::render_config as render;
use stellar_peer_injector::config;
use stellar_peer_injector::inject::patch::build_patch;
use stellar_peer_injector::inject::review::PodView;
use stellar_peer_injector::inject::{Decision, InjectSettings, decide_pod};
use stellar_peer_injector::nodes::{NodeKind, NodeRecord};
use stellar_peer_injector::peers::{PeerSettings, PeerSnapshot};

const TESTNET: &str = "Test SDF Network ; September 2015";
const PRIVATE: &str = "Private Network ; 2026";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(rel: &str) -> String {
    let p = repo().join("tests/fixtures/captive").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The checker built by `tests/testbed/testbed build` (`bin-dir` prints where).
fn checker() -> PathBuf {
    let out = Command::new(repo().join("tests/testbed/testbed"))
        .arg("bin-dir")
        .output()
        .expect("run tests/testbed/testbed bin-dir");
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let bin = Path::new(&dir).join("captive-check");
    assert!(
        bin.is_file(),
        "captive-check not found at {} (the real captive-core parser is this test's judge): run `tests/testbed/testbed build` (or `make deps`)",
        bin.display()
    );
    bin
}

/// Runs the real parser on `file`; `Err` holds its message.
fn judge(bin: &Path, passphrase: &str, file: &Path) -> Result<(), String> {
    let out = Command::new(bin)
        .arg("--passphrase")
        .arg(passphrase)
        .arg(file)
        .output()
        .expect("run captive-check");
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        other => panic!(
            "captive-check exited {other:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A fresh directory under target/, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let p = repo()
            .join("target/captive-check-tests")
            .join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const VALIDATORS: [&str; 2] = [
    "v1-0.v1-headless.stellar.svc.cluster.local:11625",
    "v2-0.v2-headless.stellar.svc.cluster.local:11625",
];

fn snapshot() -> PeerSnapshot {
    let mut sorobanrpc = NodeRecord::new("stellar", "rpc1", NodeKind::SorobanRpc, "testnet");
    sorobanrpc.captive_config = Some("/config/captive-core.cfg".into());
    PeerSnapshot::build(
        1,
        &[
            NodeRecord::new("stellar", "v1", NodeKind::Validator, "testnet"),
            NodeRecord::new("stellar", "v2", NodeKind::Validator, "testnet"),
            NodeRecord::new("stellar", "m1", NodeKind::Validator, "mainnet"),
            NodeRecord::new("stellar", "h1", NodeKind::Horizon, "testnet"),
            NodeRecord::new("stellar", "h2", NodeKind::Horizon, "testnet"),
            sorobanrpc,
            NodeRecord::new("stellar", "horizon", NodeKind::Horizon, "testnet"),
            NodeRecord::new("stellar", "soroban-rpc", NodeKind::SorobanRpc, "testnet"),
            NodeRecord::new("stellar", "horizon-flag", NodeKind::Horizon, "testnet"),
        ],
        &PeerSettings::default(),
    )
}

fn settings() -> InjectSettings {
    InjectSettings {
        init_image: "stellar-peer-injector:test".into(),
        ..InjectSettings::default()
    }
}

/// The webhook's decision and the patched pod.
fn inject(pod: &Value, snap: &PeerSnapshot) -> (Decision, Value) {
    let text = pod.to_string();
    let view: PodView<'_> = serde_json::from_str(&text).expect("pod view");
    let s = settings();
    let d = decide_pod(&view, Some("stellar"), Some(snap), &s);
    let Decision::Inject { shape, list, .. } = &d else {
        panic!("not injected: {d:?}")
    };
    let patch = build_patch(shape, list, &s);
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch.0).expect("patch applies");
    let _: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(out.clone()).expect("still a Pod");
    (d, out)
}

/// A kubelet-like layout of a pod's volumes under `root/volumes/<name>`.
struct Layout<'a> {
    root: &'a Path,
    pod: &'a Value,
}

impl Layout<'_> {
    /// Writes every volume: ConfigMap keys from `config_maps`, the downwardAPI items
    /// from the pod's annotations, emptyDirs empty.
    fn write(&self, config_maps: &BTreeMap<&str, BTreeMap<&str, String>>) {
        for v in self.pod["spec"]["volumes"].as_array().expect("volumes") {
            let dir = self
                .root
                .join("volumes")
                .join(v["name"].as_str().expect("name"));
            std::fs::create_dir_all(&dir).expect("volume dir");
            if let Some(cm) = v["configMap"]["name"].as_str() {
                for (k, text) in config_maps
                    .get(cm)
                    .unwrap_or_else(|| panic!("ConfigMap {cm}"))
                {
                    std::fs::write(dir.join(k), text).expect("key");
                }
            } else if let Some(items) = v["downwardAPI"]["items"].as_array() {
                for item in items {
                    let field = item["fieldRef"]["fieldPath"].as_str().expect("fieldPath");
                    let key = field
                        .strip_prefix("metadata.annotations['")
                        .and_then(|k| k.strip_suffix("']"))
                        .expect("an annotation");
                    let text = self.pod["metadata"]["annotations"][key]
                        .as_str()
                        .expect("annotation");
                    std::fs::write(dir.join(item["path"].as_str().expect("path")), text)
                        .expect("item");
                }
            }
        }
    }

    /// Where `path`, seen by a container with `mounts`, lies on the host.
    fn host(&self, mounts: &Value, path: &str) -> PathBuf {
        let m = mounts
            .as_array()
            .expect("volumeMounts")
            .iter()
            .filter(|m| {
                let mp = m["mountPath"]
                    .as_str()
                    .expect("mountPath")
                    .trim_end_matches('/');
                path == mp || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
            .unwrap_or_else(|| panic!("{path} is on no volume of {mounts}"));
        let mut host = self
            .root
            .join("volumes")
            .join(m["name"].as_str().expect("name"));
        if let Some(sp) = m["subPath"].as_str() {
            host = host.join(sp);
        }
        let mp = m["mountPath"]
            .as_str()
            .expect("mountPath")
            .trim_end_matches('/');
        let rest = path[mp.len()..].trim_start_matches('/');
        if rest.is_empty() {
            host
        } else {
            host.join(rest)
        }
    }
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

/// The captive-core file the (patched) container reads: its flag beats its env.
fn captive_path(c: &Value) -> String {
    let args: Vec<&str> = c["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (i, a) in args.iter().enumerate() {
        if *a == "--captive-core-config-path" {
            return args[i + 1].to_owned();
        }
        if let Some(v) = a.strip_prefix("--captive-core-config-path=") {
            return v.to_owned();
        }
    }
    c["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "CAPTIVE_CORE_CONFIG_PATH"))
        .and_then(|e| e["value"].as_str())
        .expect("neither flag nor env names a captive-core file")
        .to_owned()
}

/// Runs the injected init container's command line (parsed by the real CLI) over the
/// layout; returns the host path of the file the main container will read.
fn run_init(layout: &Layout<'_>, main: &str) -> PathBuf {
    let init = container(layout.pod, "initContainers", "stellar-peers-config");
    let mut argv = vec!["stellar-peer-injector".to_owned()];
    argv.extend(
        init["args"]
            .as_array()
            .expect("init args")
            .iter()
            .map(|a| a.as_str().expect("arg").to_owned()),
    );
    let cli = Cli::try_parse_from(&argv).expect("the init container's command line parses");
    let CliCommand::RenderConfig(mut args) = cli.command else {
        panic!("init container does not run render-config: {argv:?}")
    };
    assert_eq!(args.flavour, config::Flavour::CaptiveCore, "{argv:?}");
    let mounts = &init["volumeMounts"];
    let container_out = args.out.display().to_string();
    args.base = layout.host(mounts, &args.base.display().to_string());
    args.peers = layout.host(mounts, &args.peers.display().to_string());
    args.out = layout.host(mounts, &container_out);
    args.termination_log = layout.root.join("termination-log");
    let r = render::render(&args).unwrap_or_else(|e| panic!("render-config failed: {e}"));
    assert!(r.foreign.is_empty(), "{:?}", r.foreign);
    // The main container is pointed at exactly that file, through the same emptyDir.
    let c = container(layout.pod, "containers", main);
    let read = captive_path(c);
    assert_eq!(read, container_out, "{main} reads another file");
    let host = layout.host(&c["volumeMounts"], &read);
    assert_eq!(host, args.out);
    host
}

fn preferred(cfg: &str) -> BTreeSet<String> {
    let t: toml::Table = cfg.parse().expect("merged file is TOML");
    t.get("PREFERRED_PEERS")
        .and_then(toml::Value::as_array)
        .expect("top-level PREFERRED_PEERS")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

struct Case {
    pod: &'static str,
    main: &'static str,
    config_maps: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
    /// The base's own PREFERRED_PEERS, normalised.
    own: &'static [&'static str],
    /// Which env/flag the container ends up with.
    by_flag: bool,
}

fn cases() -> Vec<Case> {
    let cm = |name: &'static str, kv: &[(&'static str, String)]| {
        (name, kv.iter().cloned().collect::<BTreeMap<_, _>>())
    };
    vec![
        Case {
            pod: "pods/sdf-horizon-ingest.json",
            main: "horizon",
            config_maps: BTreeMap::from([cm(
                "horizon-core",
                &[("stellar-core.cfg", fixture("sdf-horizon-testnet.cfg"))],
            )]),
            own: &[],
            by_flag: false,
        },
        Case {
            pod: "pods/sdf-soroban-rpc.json",
            main: "soroban-rpc",
            config_maps: BTreeMap::from([cm(
                "soroban-rpc",
                &[
                    (
                        "soroban-rpc.cfg",
                        "CAPTIVE_CORE_CONFIG_PATH=\"/config/stellar-captive-core.cfg\"\n".into(),
                    ),
                    (
                        "stellar-captive-core.cfg",
                        fixture("sdf-soroban-rpc-testnet.cfg"),
                    ),
                ],
            )]),
            own: &[
                "core-testnet1.stellar.org:11625",
                "core-testnet2.stellar.org:11625",
            ],
            by_flag: false,
        },
        Case {
            pod: "pods/operator-sorobanrpc.json",
            main: "stellar-node",
            config_maps: BTreeMap::from([cm(
                "rpc1-config",
                &[
                    (
                        "captive-core.cfg",
                        fixture("operator-sorobanrpc-testnet.cfg"),
                    ),
                    ("STELLAR_CORE_URL", "http://v1:11626".into()),
                ],
            )]),
            own: &[],
            by_flag: false,
        },
        Case {
            pod: "pods/horizon-flag.json",
            main: "horizon",
            config_maps: BTreeMap::from([cm(
                "horizon-captive",
                &[("captive-core.cfg", fixture("no-tables.cfg"))],
            )]),
            own: &["core-testnet1.stellar.org:11625"],
            by_flag: true,
        },
    ]
}

#[test]
fn injected_pods_read_a_merged_file_the_real_parser_accepts() {
    let bin = checker();
    let snap = snapshot();
    for case in cases() {
        let pod: Value = serde_json::from_str(&fixture(case.pod)).expect("pod fixture");
        let (d, patched) = inject(&pod, &snap);
        let Decision::Inject { warnings, .. } = &d else {
            unreachable!()
        };
        // Only the fallback to the first container may be mentioned (SDF's containers
        // are not named stellar-node).
        assert!(
            warnings.iter().all(|w| w.contains("no container named")),
            "{}: {warnings:?}",
            case.pod
        );
        let status: Value = serde_json::from_str(
            patched["metadata"]["annotations"]["stellar.org/peers-injection-status"]
                .as_str()
                .expect("status"),
        )
        .expect("status JSON");
        assert_eq!(status["mode"], "captive-merge", "{}", case.pod);
        let main = container(&patched, "containers", case.main);
        let orig = container(&pod, "containers", case.main);
        if case.by_flag {
            assert_ne!(
                main["args"], orig["args"],
                "{}: flag not rewritten",
                case.pod
            );
            // Its own env is left as it was (the flag beats it).
            assert_eq!(
                main["env"]
                    .as_array()
                    .expect("env")
                    .iter()
                    .filter(|e| e["name"] == "CAPTIVE_CORE_CONFIG_PATH")
                    .collect::<Vec<_>>(),
                [&json!({"name": "CAPTIVE_CORE_CONFIG_PATH", "value": "/nowhere/ignored.cfg"})]
            );
        } else {
            assert_eq!(main["args"], orig["args"], "{}: args changed", case.pod);
            assert_eq!(main["envFrom"], orig["envFrom"], "{}", case.pod);
        }
        let scratch = Scratch::new(case.main);
        let layout = Layout {
            root: &scratch.0,
            pod: &patched,
        };
        layout.write(&case.config_maps);
        let file = run_init(&layout, case.main);
        let merged = std::fs::read_to_string(&file).expect("merged file");
        let mut want: BTreeSet<String> = VALIDATORS.iter().map(|s| (*s).to_owned()).collect();
        want.extend(case.own.iter().map(|s| (*s).to_owned()));
        assert_eq!(preferred(&merged), want, "{}:\n{merged}", case.pod);
        assert!(!merged.contains("KNOWN_PEERS"), "{merged}");
        judge(&bin, TESTNET, &file).unwrap_or_else(|e| {
            panic!(
                "{}: the real parser refused the merged file: {e}\n{merged}",
                case.pod
            )
        });
        // A second admission of the injected pod changes nothing.
        let (_, again) = inject(&patched, &snap);
        assert_eq!(again, patched, "{}: not a fixpoint", case.pod);
    }
}

#[test]
fn pods_without_a_file_keep_env_mode_and_say_why() {
    let snap = snapshot();
    for (pod, instance) in [
        ("pods/operator-horizon.json", "h1"),
        ("pods/operator-sorobanrpc.json", "soroban-rpc"),
    ] {
        let mut pod: Value = serde_json::from_str(&fixture(pod)).expect("pod fixture");
        // The operator wires no captive-core path; unlike rpc1, these StellarNodes carry
        // no stellar.org/captive-core-config annotation.
        pod["metadata"]["labels"]["app.kubernetes.io/instance"] = json!(instance);
        let (d, patched) = inject(&pod, &snap);
        let Decision::Inject {
            warnings,
            config_problem,
            ..
        } = &d
        else {
            unreachable!()
        };
        let why = config_problem.as_ref().expect("a reason for the Event");
        assert!(
            why.to_string().contains("stellar.org/captive-core-config"),
            "{why}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("names no captive-core file"))
        );
        assert!(patched["spec"].get("initContainers").is_none());
        let main = container(&patched, "containers", "stellar-node");
        assert!(
            main["env"]
                .as_array()
                .expect("env")
                .iter()
                .all(|e| e["name"] != "CAPTIVE_CORE_CONFIG_PATH")
        );
    }
}

#[test]
fn every_merged_fixture_is_accepted_by_the_real_parser() {
    let bin = checker();
    let scratch = Scratch::new("fixtures");
    let peers = [
        VALIDATORS[0],
        VALIDATORS[1],
        "core-live-a.example.org:11625",
    ];
    for (name, passphrase) in [
        ("operator-sorobanrpc-testnet.cfg", TESTNET),
        ("sdf-soroban-rpc-testnet.cfg", TESTNET),
        ("sdf-horizon-testnet.cfg", TESTNET),
        ("no-tables.cfg", TESTNET),
        ("private-quorum.cfg", PRIVATE),
    ] {
        let base = fixture(name);
        let base_file = scratch.0.join(format!("base-{name}"));
        std::fs::write(&base_file, &base).expect("base");
        judge(&bin, passphrase, &base_file)
            .unwrap_or_else(|e| panic!("{name}: the base itself is refused: {e}"));
        let merged = config::merge_captive(&base, &peers).expect("merge");
        let file = scratch.0.join(name);
        std::fs::write(&file, &merged).expect("merged");
        judge(&bin, passphrase, &file)
            .unwrap_or_else(|e| panic!("{name}: refused after the merge: {e}\n{merged}"));
        assert!(preferred(&merged).is_superset(&peers.iter().map(|s| (*s).to_owned()).collect()));
    }
    // The user's KNOWN_PEERS: refused before and after, for that key alone; we add none.
    let base = fixture("user-known-peers.cfg");
    let merged = config::merge_captive(&base, &peers).expect("merge");
    let file = scratch.0.join("user-known-peers.cfg");
    std::fs::write(&file, &merged).expect("merged");
    let e = judge(&bin, TESTNET, &file).expect_err("KNOWN_PEERS is refused");
    assert!(
        e.contains("not supported by captive core") && e.contains("[\"KNOWN_PEERS\"]"),
        "{e}"
    );
    // Keys of SDF's horizon chart presets that v0.7.3 refuses: the same verdict before
    // and after the merge (the merge is never the cause of a refusal).
    let preset = format!(
        "NETWORK_PASSPHRASE=\"{TESTNET}\"\nENABLE_PULL_MODE=true\nEXPERIMENTAL_BUCKETLIST_DB=true\nINVARIANT_CHECKS=[]\n\n[[HOME_DOMAINS]]\nHOME_DOMAIN=\"testnet.stellar.org\"\nQUALITY=\"MEDIUM\"\n"
    );
    let verdict = |text: &str, name: &str| {
        let f = scratch.0.join(name);
        std::fs::write(&f, text).expect("write");
        judge(&bin, TESTNET, &f)
            .expect_err("preset keys are refused")
            .replacen(&format!("{}: ", f.display()), "", 1)
    };
    let before = verdict(&preset, "preset-base.cfg");
    let after = verdict(
        &config::merge_captive(&preset, &peers).expect("merge"),
        "preset-merged.cfg",
    );
    assert!(before.contains("ENABLE_PULL_MODE"), "{before}");
    assert_eq!(before, after);
    // The checker is a real judge: the shape the merge avoids is refused.
    let wrong = scratch.0.join("under-home-domains.cfg");
    std::fs::write(
        &wrong,
        "NETWORK_PASSPHRASE=\"Test SDF Network ; September 2015\"\n[[HOME_DOMAINS]]\nHOME_DOMAIN=\"testnet.stellar.org\"\nQUALITY=\"MEDIUM\"\nPREFERRED_PEERS=[\"v1:11625\"]\n",
    )
    .expect("write");
    let e = judge(&bin, TESTNET, &wrong).expect_err("misplaced key refused");
    assert!(e.contains("HOME_DOMAINS.0.PREFERRED_PEERS"), "{e}");
}

/// `check_captive` (render-config's warnings) flags exactly the keys the real parser
/// refuses, among these.
#[test]
fn check_captive_agrees_with_the_real_parser() {
    let bin = checker();
    let scratch = Scratch::new("keys");
    for (line, refused) in [
        ("KNOWN_PEERS=[\"a.example.org\"]", true),
        (
            "NODE_SEED=\"SBI3CZU7XZEWVXU7OZLW5MMUQAP334JFOPXSLTPOH43IRTEQ2QYXU5RG\"",
            true,
        ),
        ("TARGET_PEER_CONNECTIONS=8", true),
        ("CATCHUP_RECENT=100", true),
        ("CATCHUP_COMPLETE=true", false),
        ("PREFERRED_PEERS=[\"a.example.org:11625\"]", false),
        (
            "PREFERRED_PEER_KEYS=[\"GDKXE2OZMJIPOSLNA6N6F2BVCI3O777I2OOC4BV7VOYUEHYX7RTRYA7Y\"]",
            false,
        ),
        ("PREFERRED_PEERS_ONLY=true", false),
    ] {
        let cfg = format!("{line}\nNETWORK_PASSPHRASE=\"{TESTNET}\"\n");
        let file = scratch.0.join("k.cfg");
        std::fs::write(&file, &cfg).expect("write");
        let real = judge(&bin, TESTNET, &file);
        assert_eq!(real.is_err(), refused, "{line}: {real:?}");
        let ours = config::check_captive(&cfg);
        assert_eq!(ours.is_err(), refused, "{line}: {ours:?}");
    }
}
