//! Integration tests on the real control plane (tests/testbed). One binary, one bed:
//! it is brought up before the first test and torn down after the last.
//!
//! The bed's health is checked before each test and after each exclusive one. Once it is
//! found broken, the test that found it fails with the component and its log, and every
//! later test fails at once with "test bed broken since <test>: <reason>" instead of timing
//! out one by one.

mod chart_tests;
mod config_tests;
mod fault_tests;
mod injection_tests;
mod rollout_tests;
mod support;
mod testbed_tests;

use std::future::Future;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

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

macro_rules! exclusive {
    (shared) => {
        false
    };
    (exclusive) => {
        true
    };
}

macro_rules! trial_name {
    ($test:ident) => {
        stringify!($test)
    };
    ($test:ident $alias:ident) => {
        stringify!($alias)
    };
}

/// The trials, one group per module: `"prefix" => module { shared|exclusive test [as name], ... }`.
/// A trial is named `prefix::name`, where the name is the test function's unless `as` gives one.
macro_rules! trials {
    ($($prefix:literal => $module:ident {
        $($kind:ident $test:ident $(as $alias:ident)?),* $(,)?
    })*) => {
        vec![$($(
            make_trial(
                concat!($prefix, "::", trial_name!($test $($alias)?)),
                $module::$test,
                exclusive!($kind),
            ),
        )*)*]
    };
}

fn main() {
    testkit::use_injector(env!("CARGO_BIN_EXE_stellar-peer-injector"));
    let args = Arguments::from_args();
    let trials = trials! {
        "testbed" => testbed_tests {
            shared statefulset_reaches_ready,
            shared rolling_update_replaces_pods_one_at_a_time,
            shared apiserver_calls_a_loopback_webhook,
            shared coredns_resolves_statefulset_pod_names,
            exclusive restart_moves_a_component_off_a_taken_port,
        }
        "injection" => injection_tests {
            shared controller_made_pods_get_their_networks_peers,
            shared unsynced_webhook_follows_failure_policy,
            shared inject_output_round_trips_through_kubectl,
        }
        "rollout" => rollout_tests {
            shared peer_changes_roll_one_statefulset_at_a_time,
            shared a_burst_within_the_debounce_window_rolls_once,
            shared on_delete_statefulsets_and_leader_election,
        }
        "config" => config_tests {
            shared operator_and_sdf_pods_read_a_merged_config,
            shared injected_addresses_resolve_to_their_pods,
            shared editing_known_peers_rolls_that_node_alone,
        }
        "chart" => chart_tests {
            shared chart_lints_and_renders_in_every_cert_mode as lints_and_renders_in_every_cert_mode,
            shared chart_rbac_is_enough_for_the_injector as rbac_is_enough_for_the_injector,
        }
        "faults" => fault_tests {
            exclusive apiserver_and_etcd_restarts_keep_the_last_good_peers,
            shared sigterm_goes_unready_first_then_drains,
            shared malformed_stellarnodes_are_skipped_alone,
            shared injector_killed_during_a_rollout_resumes_it_safely,
            shared sigterm_hands_the_lease_over_quickly,
            shared a_leader_that_lost_the_lease_during_the_debounce_never_patches,
        }
    };
    let conclusion = libtest_mimic::run(&args, trials);
    support::teardown();
    conclusion.exit();
}
