//! Integration tests on the real control plane (tests/testbed). One binary, one bed:
//! it is brought up before the first test and torn down after the last.

mod chart_tests;
mod fault_tests;
mod injection_tests;
mod rollout_tests;
mod support;
mod testbed_tests;

use std::future::Future;
use std::sync::RwLock;

use libtest_mimic::{Arguments, Failed, Trial};

/// Ordinary tests share the bed; a test that restarts part of the control plane
/// takes it alone.
static BED_LOCK: RwLock<()> = RwLock::new(());

fn run_trial<F, Fut>(f: F, exclusive: bool) -> Result<(), Failed>
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
    support::bed().map_err(|e| Failed::from(format!("test bed unavailable: {e}")))?;
    support::rt().block_on(f()).map_err(Failed::from)
}

fn trial<F, Fut>(name: &'static str, f: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = support::TestResult>,
{
    Trial::test(name, move || run_trial(f, false))
}

fn exclusive_trial<F, Fut>(name: &'static str, f: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = support::TestResult>,
{
    Trial::test(name, move || run_trial(f, true))
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        trial(
            "testbed::statefulset_reaches_ready",
            testbed_tests::statefulset_reaches_ready,
        ),
        trial(
            "testbed::rolling_update_replaces_pods_one_at_a_time",
            testbed_tests::rolling_update_replaces_pods_one_at_a_time,
        ),
        trial(
            "testbed::apiserver_calls_a_loopback_webhook",
            testbed_tests::apiserver_calls_a_loopback_webhook,
        ),
        trial(
            "injection::controller_made_pods_get_their_networks_peers",
            injection_tests::controller_made_pods_get_their_networks_peers,
        ),
        trial(
            "injection::unsynced_webhook_follows_failure_policy",
            injection_tests::unsynced_webhook_follows_failure_policy,
        ),
        trial(
            "rollout::peer_changes_roll_one_statefulset_at_a_time",
            rollout_tests::peer_changes_roll_one_statefulset_at_a_time,
        ),
        trial(
            "rollout::a_burst_within_the_debounce_window_rolls_once",
            rollout_tests::a_burst_within_the_debounce_window_rolls_once,
        ),
        trial(
            "rollout::on_delete_statefulsets_and_leader_election",
            rollout_tests::on_delete_statefulsets_and_leader_election,
        ),
        trial(
            "chart::lints_and_renders_in_every_cert_mode",
            chart_tests::chart_lints_and_renders_in_every_cert_mode,
        ),
        trial(
            "chart::rbac_is_enough_for_the_injector",
            chart_tests::chart_rbac_is_enough_for_the_injector,
        ),
        exclusive_trial(
            "faults::apiserver_and_etcd_restarts_keep_the_last_good_peers",
            fault_tests::apiserver_and_etcd_restarts_keep_the_last_good_peers,
        ),
        trial(
            "faults::sigterm_goes_unready_first_then_drains",
            fault_tests::sigterm_goes_unready_first_then_drains,
        ),
        trial(
            "faults::malformed_stellarnodes_are_skipped_alone",
            fault_tests::malformed_stellarnodes_are_skipped_alone,
        ),
        trial(
            "faults::injector_killed_during_a_rollout_resumes_it_safely",
            fault_tests::injector_killed_during_a_rollout_resumes_it_safely,
        ),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    support::teardown();
    conclusion.exit();
}
