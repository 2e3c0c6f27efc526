//! Integration tests on the real control plane (tests/testbed). One binary, one bed:
//! it is brought up before the first test and torn down after the last.
//!
//! The bed's health is checked before each test and after each exclusive one. Once it is
//! found broken, the test that found it fails with the component and its log, and every
//! later test fails at once with "test bed broken since <test>: <reason>" instead of timing
//! out one by one.
//!
//! The plumbing is the test kit's (testkit/, through `support`), and so is the registry:
//! no list of test names is kept here.

mod captive_tests;
mod chart_tests;
mod config_tests;
mod controls_tests;
mod fault_tests;
mod injection_tests;
mod link_tests;
mod live_tests;
mod multicluster_tests;
mod prometheus_tests;
mod realnode_tests;
mod rollout_tests;
mod support;
mod testbed_tests;

use std::future::Future;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

/// The groups whose trials run pods on the bed's real node.
const REAL_NODE_GROUPS: [&str; 2] = ["realnode::", "live::"];

/// Ordinary tests share the bed; a test that restarts part of the control plane
/// takes it alone.
static BED_LOCK: RwLock<()> = RwLock::new(());

/// Set once the bed is found broken: "<test>: <summary>".
static BROKEN: Mutex<Option<String>> = Mutex::new(None);

/// How long a health check waits for the bed to recover before it calls it broken: a
/// loaded machine can miss a probe, and an exclusive test's restarts may still be settling.
const PATIENCE_BEFORE: Duration = Duration::from_secs(30);
const PATIENCE_AFTER_EXCLUSIVE: Duration = Duration::from_secs(90);

fn broken_since() -> Option<String> {
    BROKEN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Records that `trial` found the bed broken (the first finder wins) and returns its message.
fn mark_broken(trial: &str, when: &str, (summary, details): (String, String)) -> Failed {
    let mut b = BROKEN.lock().unwrap_or_else(|e| e.into_inner());
    if b.is_none() {
        *b = Some(format!("{trial}: {summary}"));
    }
    Failed::from(format!("test bed broken {when}: {details}"))
}

fn run_trial<F, Fut>(name: &'static str, f: F, exclusive: bool) -> Result<(), Failed>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = support::TestResult>,
{
    let _shared;
    let _alone;
    if exclusive {
        _alone = BED_LOCK.write().unwrap_or_else(|e| e.into_inner());
    } else {
        _shared = BED_LOCK.read().unwrap_or_else(|e| e.into_inner());
    }
    if let Some(since) = broken_since() {
        return Err(Failed::from(format!("test bed broken since {since}")));
    }
    support::bed().map_err(|e| Failed::from(format!("test bed unavailable: {e}")))?;
    support::check_bed(PATIENCE_BEFORE)
        .map_err(|p| mark_broken(name, "before this test started", p))?;
    let result = support::rt().block_on(f());
    if exclusive && let Err(p) = support::check_bed(PATIENCE_AFTER_EXCLUSIVE) {
        let failed = mark_broken(name, "after this (exclusive) test", p);
        return Err(match result {
            Ok(()) => failed,
            Err(e) => Failed::from(format!(
                "{e}\n\nand then {}",
                failed.message().unwrap_or_default()
            )),
        });
    }
    result.map_err(Failed::from)
}

fn make_trial<F, Fut>(name: &'static str, f: F, exclusive: bool) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = support::TestResult>,
{
    Trial::test(name, move || run_trial(name, f, exclusive))
}

fn main() {
    testkit::use_injector(env!("CARGO_BIN_EXE_stellar-peer-injector"));
    let args = Arguments::from_args();
    // Every `pub async fn name() -> TestResult` of these modules is a trial `group::name`
    // (build.rs finds them; `exclusive!();` opening the body makes one run alone). The
    // modules are listed once, with their group names; a module left out fails the
    // harness trial below.
    let registry = testkit::trials! { make_trial;
        "testbed" => testbed_tests,
        "injection" => injection_tests,
        "rollout" => rollout_tests,
        "config" => config_tests,
        "captive" => captive_tests,
        "controls" => controls_tests,
        "chart" => chart_tests,
        "faults" => fault_tests,
        "multicluster" => multicluster_tests,
        "link" => link_tests,
        "prometheus" => prometheus_tests,
        "realnode" => realnode_tests,
        "live" => live_tests,
    };
    let listed = registry.check();
    // The real node turned off on purpose (TESTBED_REAL_NODE=0): its trials are reported as
    // ignored, and said so after the summary. Without the opt-out they run, and fail with the
    // bed's reason when it has no real node.
    let opted_out = testkit::real_node_opted_out();
    let mut not_run = Vec::new();
    let mut trials: Vec<Trial> = registry
        .trials
        .into_iter()
        .map(|t| {
            if opted_out && REAL_NODE_GROUPS.iter().any(|g| t.name().starts_with(g)) {
                not_run.push(t.name().to_owned());
                t.with_ignored_flag(true)
            } else {
                t
            }
        })
        .collect();
    trials.push(Trial::test(
        "harness::every_test_module_is_listed",
        move || listed.map_err(Failed::from),
    ));
    let conclusion = libtest_mimic::run(&args, trials);
    if !not_run.is_empty() {
        println!(
            "real-node trials NOT RUN ({} of them, TESTBED_REAL_NODE=0): {}",
            not_run.len(),
            not_run.join(", ")
        );
    }
    support::teardown();
    conclusion.exit();
}
