//! The control plane (tests/testbed/testbed): a handle on one bed, the repository's shared
//! bed the integration tests use (brought up once per run), its state dir, ports, health
//! and components.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, CustomResourceExt};

use crate::wait::wait_for;

/// The repository this kit belongs to (the kit lives in its `testkit/`).
pub fn repo_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent().unwrap_or(kit).to_path_buf()
}

/// A control plane run by a copy of tests/testbed/testbed.
pub struct Bed {
    /// The testbed script.
    pub script: PathBuf,
    /// Its state dir (PKI, ports.env, logs, kubeconfig), passed to it as `TESTBED_STATE_DIR`.
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    /// True when this process started the bed (and so stops it at the end).
    pub started_here: bool,
    /// `TESTBED_TIMEOUT` for the script (how long `up` waits), when set.
    timeout_secs: Option<u64>,
    /// False for a bed that must run without the machine's one real node
    /// (`TESTBED_REAL_NODE=0`); true leaves the choice to the environment.
    real_node: bool,
}

impl Bed {
    /// The bed of `tests/testbed/testbed` under `root` with state dir `state`; not started.
    pub fn new(root: &Path, state: PathBuf) -> Self {
        Self {
            script: root.join("tests/testbed/testbed"),
            kubeconfig: state.join("kubeconfig"),
            state,
            started_here: false,
            timeout_secs: None,
            real_node: true,
        }
    }

    /// This bed runs without a real node (`TESTBED_REAL_NODE=0`): there is one per machine,
    /// and it belongs to the shared bed.
    pub fn without_real_node(mut self) -> Self {
        self.real_node = false;
        self
    }

    /// The repository's bed, as the tests and `make bed-up` use it ([`state_dir`]).
    pub fn shared() -> Self {
        Self::new(&repo_root(), state_dir())
    }

    /// How long the script's `up` waits for the bed (`TESTBED_TIMEOUT`).
    pub fn with_timeout(mut self, secs: u64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// Runs the script with `args`; its stdout, or an error with both outputs.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "`{} {}` failed ({}):\n{stdout}\n{}",
                self.script.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.script);
        cmd.args(args).env("TESTBED_STATE_DIR", &self.state);
        if let Some(t) = self.timeout_secs {
            cmd.env("TESTBED_TIMEOUT", t.to_string());
        }
        if !self.real_node {
            cmd.env("TESTBED_REAL_NODE", "0");
        }
        cmd
    }

    /// Brings the bed up unless it is already up; remembers whether it started it.
    pub fn up(&mut self) -> Result<(), String> {
        let already = self.run(&["status"]).is_ok();
        if !already {
            self.run(&["up"])?;
        }
        self.started_here = !already;
        Ok(())
    }

    /// Stops the bed if this process started it, unless `keep_var` is set in the
    /// environment; true when it stopped it.
    pub fn down_if_started(&self, keep_var: &str) -> bool {
        if !self.started_here || std::env::var_os(keep_var).is_some() {
            return false;
        }
        if let Err(e) = self.run(&["down"]) {
            eprintln!("warning: {e}");
        }
        true
    }

    /// A client with the bed's admin kubeconfig.
    pub async fn client(&self) -> Result<Client, String> {
        client_from(&self.kubeconfig).await
    }

    /// ports.env (`KCM_PORT`, `DNS_PORT`, ...), as the bed saved it last.
    pub fn ports(&self) -> Result<BTreeMap<String, u16>, String> {
        let path = self.state.join("ports.env");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| Some((k.trim().to_owned(), v.trim().parse().ok()?)))
            .collect())
    }

    /// One port of ports.env.
    pub fn port(&self, var: &str) -> Result<u16, String> {
        self.ports()?
            .get(var)
            .copied()
            .ok_or_else(|| format!("{var} is not in {}", self.state.join("ports.env").display()))
    }

    /// The log of a component (`etcd`, `kube-apiserver`, ...).
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.state.join("logs").join(format!("{component}.log"))
    }

    /// The last `n` lines of a component's log.
    pub fn log_tail(&self, component: &str, n: usize) -> String {
        let path = self.log_path(component);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("({}: {e})", path.display()),
        }
    }

    /// What is wrong with the bed, as `testbed status` sees it: `None` when it is healthy,
    /// otherwise a one-line summary and the details (each broken component with its log's
    /// tail).
    pub fn problems(&self) -> Option<(String, String)> {
        let out = match self.command(&["status"]).output() {
            Ok(out) => out,
            Err(e) => {
                let msg = format!("cannot run {}: {e}", self.script.display());
                return Some((msg.clone(), msg));
            }
        };
        if out.status.success() {
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let broken: Vec<(&str, String)> = stdout
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next()?;
                let state: Vec<&str> = words.take(2).collect();
                match state.as_slice() {
                    ["stopped", ..] => Some((name, "stopped".to_owned())),
                    ["running", "unhealthy"] => Some((name, "running but unhealthy".to_owned())),
                    ["down", ..] => Some((name, "down".to_owned())),
                    _ => None,
                }
            })
            .collect();
        let summary = if broken.is_empty() {
            format!("`testbed status` failed ({})", out.status)
        } else {
            broken
                .iter()
                .map(|(n, s)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut details = format!("{summary}\n`testbed status`:\n{stdout}");
        for (name, _) in broken.iter().filter(|(n, _)| *n != "api") {
            details.push_str(&format!(
                "\nlast lines of {}:\n{}\n",
                self.log_path(name).display(),
                self.log_tail(name, 15)
            ));
        }
        Some((summary, details))
    }

    /// Waits up to `patience` for the bed to be healthy (a loaded machine can miss one
    /// health probe); fails with [`Bed::problems`]' summary and details.
    pub fn check(&self, patience: Duration) -> Result<(), (String, String)> {
        let deadline = Instant::now() + patience;
        loop {
            match self.problems() {
                None => return Ok(()),
                Some(p) if Instant::now() >= deadline => return Err(p),
                Some(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

/// A client for `kubeconfig`.
pub async fn client_from(kubeconfig: &Path) -> Result<Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(cfg).map_err(|e| e.to_string())
}

/// Installs the StellarNode CRD (server-side apply as `field_manager`) and waits until
/// it is established.
pub async fn install_crd(client: &Client, field_manager: &str) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = stellar_peer_injector::crd::StellarNode::crd();
    let pp = PatchParams::apply(field_manager).force();
    api.patch("stellarnodes.stellar.org", &pp, &Patch::Apply(&crd))
        .await
        .map_err(|e| format!("install CRD: {e}"))?;
    wait_for(Duration::from_secs(30), "CRD established", || {
        let api = api.clone();
        async move {
            let crd = api.get("stellarnodes.stellar.org").await.ok()?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            let established = |c: &CustomResourceDefinitionCondition| {
                c.type_ == "Established" && c.status == "True"
            };
            conditions.iter().any(established).then_some(())
        }
    })
    .await
}

// ---------------------------------------------------------------- the shared bed

static BED: OnceLock<Result<Bed, String>> = OnceLock::new();
static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The runtime the integration tests run on (and namespaces are deleted on).
pub fn rt() -> &'static tokio::runtime::Runtime {
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Brings the repository's bed up once for the whole run, with the StellarNode CRD. A
/// failure fails every test with the reason.
pub fn bed() -> Result<&'static Bed, String> {
    BED.get_or_init(|| {
        let mut bed = Bed::shared();
        bed.up()?;
        rt().block_on(async {
            install_crd(&bed.client().await?, "stellar-peer-injector-tests").await
        })?;
        Ok(bed)
    })
    .as_ref()
    .map_err(Clone::clone)
}

static BED_B: OnceLock<Result<Bed, String>> = OnceLock::new();

/// The state dir of the second bed, a sibling of the shared one's: `<state>-b`.
pub fn second_state_dir() -> PathBuf {
    let mut s = state_dir().into_os_string();
    s.push("-b");
    PathBuf::from(s)
}

/// A second control plane beside the shared one, for tests of linked clusters: brought
/// up on first use, with the StellarNode CRD, and stopped by [`teardown`] if this run
/// started it.
pub fn second_bed() -> Result<&'static Bed, String> {
    BED_B
        .get_or_init(|| {
            // Called from a test's async body: bring it up on a thread of its own (the
            // runtime cannot block on itself), and let the worker go meanwhile.
            let work = || {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        let mut bed = Bed::new(&repo_root(), second_state_dir())
                            .with_timeout(180)
                            .without_real_node();
                        bed.up()?;
                        rt().block_on(async {
                            install_crd(&bed.client().await?, "stellar-peer-injector-tests").await
                        })?;
                        Ok(bed)
                    })
                    .join()
                    .unwrap_or_else(|_| Err("bringing the second bed up panicked".to_owned()))
                })
            };
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::task::block_in_place(work)
            } else {
                work()
            }
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Stops the beds if this test run started them (set STELLAR_TESTBED_KEEP=1 to keep them).
pub fn teardown() {
    for b in [&BED, &BED_B] {
        if let Some(Ok(bed)) = b.get() {
            bed.down_if_started("STELLAR_TESTBED_KEEP");
        }
    }
}

/// A client of the shared bed (brought up first).
pub async fn client() -> Result<Client, String> {
    bed()?.client().await
}

/// The shared bed's state dir: `TESTBED_STATE_DIR` (as tests/testbed/testbed reads it),
/// by default target/testbed.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("TESTBED_STATE_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                std::env::current_dir().unwrap_or_default().join(d)
            }
        }
        _ => repo_root().join("target/testbed"),
    }
}

/// The shared bed's ports.env (`KCM_PORT`, `DNS_PORT`, ...), as the bed saved it last.
pub fn bed_ports() -> Result<BTreeMap<String, u16>, String> {
    Bed::shared().ports()
}

/// One port of the shared bed's ports.env.
pub fn bed_port(var: &str) -> Result<u16, String> {
    Bed::shared().port(var)
}

/// Restarts one component of the shared bed (`etcd`, `kube-apiserver`, ...) and waits
/// until it is healthy.
pub fn restart_component(name: &str) -> Result<(), String> {
    Bed::shared().run(&["restart", name]).map(|_| ())
}

/// Stops one component of the shared bed and leaves it stopped (`testbed stop`).
pub fn stop_component(name: &str) -> Result<(), String> {
    Bed::shared().run(&["stop", name]).map(|_| ())
}

/// The last `n` lines of a shared bed component's log.
pub fn component_log_tail(component: &str, n: usize) -> String {
    Bed::shared().log_tail(component, n)
}

/// What is wrong with the shared bed ([`Bed::problems`]).
pub fn bed_problems() -> Option<(String, String)> {
    Bed::shared().problems()
}

/// Waits up to `patience` for the shared bed to be healthy ([`Bed::check`]).
pub fn check_bed(patience: Duration) -> Result<(), (String, String)> {
    Bed::shared().check(patience)
}
