//! Integration tests on the real control plane (tests/testbed). One binary, one bed:
//! it is brought up before the first test and torn down after the last.

mod injection_tests;
mod rollout_tests;
mod support;
mod testbed_tests;

use std::future::Future;

use libtest_mimic::{Arguments, Failed, Trial};

fn trial<F, Fut>(name: &'static str, f: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = support::TestResult>,
{
    Trial::test(name, move || {
        support::bed().map_err(|e| Failed::from(format!("test bed unavailable: {e}")))?;
        support::rt().block_on(f()).map_err(Failed::from)
    })
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
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    support::teardown();
    conclusion.exit();
}
