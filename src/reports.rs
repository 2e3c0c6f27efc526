//! Edge: tells users about their StellarNodes' trouble, beyond the log.
//!
//! - [`run_problem_events`]: a Warning Event on a StellarNode for each distinct problem
//!   of the snapshot (invalid `validatorConfig.knownPeers`, an unusable
//!   `stellar.org/peer-address`, a malformed spec), once while it lasts.
//! - [`run_resolution_checks`]: every `--resolve-check-interval` (and soon after each
//!   peer change) looks up every address of the snapshot ([`check`]); the count of those
//!   that do not resolve goes to `stellar_peer_injector_peers_unresolvable{network}` at
//!   once, and a `PeerUnresolvable` Warning Event goes to the StellarNode once the address
//!   has not resolved for `--resolve-grace` (see [`crate::peers::resolve`]).
//!
//! Both derive their Events from the snapshot every replica has, so only the replica
//! that leads (`may_report`) records them; with `--rollout=off` every replica does.
//! A replica that becomes the leader records the problems it finds then, so a leader
//! change or a restart can record an ongoing problem again.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use crate::cache::PeerCache;
use crate::dns::Resolver;
use crate::events::{EventSink, Notice, stellar_node};
use crate::metrics::{ErrorKind, Metrics};
use crate::peers::resolve::{self, ClusterDns, Round, Status, Target, Tracker};
use crate::peers::{PeerSnapshot, Problem};

/// Lookups in flight at once in a round.
const CONCURRENCY: usize = 16;
/// Per DNS attempt (UDP, then TCP).
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits for a change of `snaps` or, while it is alive, of `may_report`.
async fn changed(
    snaps: &mut watch::Receiver<Option<Arc<PeerSnapshot>>>,
    may_report: &mut Option<watch::Receiver<bool>>,
) -> bool {
    match may_report {
        Some(m) => tokio::select! {
            r = snaps.changed() => r.is_ok(),
            r = m.changed() => {
                if r.is_err() {
                    *may_report = None; // fixed from now on
                }
                true
            }
        },
        None => snaps.changed().await.is_ok(),
    }
}

/// Records one Warning Event per distinct StellarNode problem while `may_report` is true.
pub async fn run_problem_events(
    cache: Arc<PeerCache>,
    may_report: watch::Receiver<bool>,
    events: EventSink,
) {
    let mut snaps = cache.subscribe();
    let mut leading = *may_report.borrow();
    let mut gate = Some(may_report);
    let mut told: BTreeSet<Problem> = BTreeSet::new();
    loop {
        if leading && let Some(snap) = cache.snapshot() {
            for p in crate::peers::untold_problems(&told, &snap.problems) {
                let (ns, name) = p.node_key();
                let uid = snap.node(ns, name).and_then(|e| e.record.uid.as_deref());
                events.send(Notice::warning(
                    stellar_node(ns, name, uid),
                    p.kind.event_reason(),
                    "ReadStellarNode",
                    p.note(),
                ));
            }
            told = snap.problems.iter().cloned().collect();
        }
        if !changed(&mut snaps, &mut gate).await {
            return;
        }
        if let Some(g) = &gate {
            leading = *g.borrow();
        }
    }
}

/// Settings of the resolution checks.
#[derive(Clone, Debug)]
pub struct ResolveSettings {
    /// Between rounds; never zero here (zero turns the checks off before they start).
    pub interval: Duration,
    /// How long an address may not resolve before its owners get an Event.
    pub grace: Duration,
    pub resolver: Resolver,
}

/// Looks every address of `snap` up (the canary first; see [`crate::peers::resolve`]),
/// but those in `known_good`, which are taken to resolve still.
pub async fn check(
    resolver: &Resolver,
    snap: &PeerSnapshot,
    known_good: &HashSet<Arc<str>>,
) -> Round {
    let domain = snap.settings().cluster_domain.as_str();
    let canary = resolve::canary_name(domain);
    let cluster = ClusterDns::from_canary(&canary, &resolver.lookup_a(&canary).await);
    let cluster = &cluster;
    let statuses: Vec<(Target, Status, bool)> =
        futures::stream::iter(resolve::targets(snap).into_iter().map(|t| async move {
            if known_good.contains(&t.address) {
                return (t, Status::Resolves, false);
            }
            let lookup = if resolve::worth_looking_up(&t.host, cluster, domain) {
                Some(resolver.lookup_a(&t.host).await)
            } else {
                None
            };
            let failed = matches!(lookup, Some(Err(_)));
            let status = resolve::classify(&t.host, lookup.as_ref(), cluster, domain);
            (t, status, failed)
        }))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let failed = statuses.iter().filter(|s| s.2).count();
    Round {
        cluster: cluster.clone(),
        statuses: statuses.into_iter().map(|(t, s, _)| (t, s)).collect(),
        failed,
    }
}

/// Runs rounds forever: a full round every `interval`; after a peer change, sooner (but at
/// least `min(interval, 5 s)` after the last round started), a round that looks up only
/// the addresses not known to resolve (new ones, unresolvable ones), so that churn in a
/// large cluster does not turn into a stream of full rounds.
pub async fn run_resolution_checks(
    cache: Arc<PeerCache>,
    s: ResolveSettings,
    may_report: watch::Receiver<bool>,
    events: EventSink,
    metrics: Arc<Metrics>,
) {
    let mut snaps = cache.subscribe();
    let mut gate = Some(may_report);
    let mut tracker = Tracker::new(s.grace);
    let mut last_cluster: Option<ClusterDns> = None;
    let min_gap = s.interval.min(Duration::from_secs(5));
    let mut good: HashSet<Arc<str>> = HashSet::new();
    let mut full = true;
    tracing::info!(interval = ?s.interval, grace = ?s.grace, servers = ?s.resolver.servers(), "checking that peer addresses resolve");
    loop {
        let started = tokio::time::Instant::now();
        if let Some(snap) = cache.snapshot() {
            if full {
                good.clear();
            }
            let round = check(&s.resolver, &snap, &good).await;
            good = round
                .statuses
                .iter()
                .filter(|(_, st)| *st == Status::Resolves)
                .map(|(t, _)| t.address.clone())
                .collect();
            if last_cluster.as_ref() != Some(&round.cluster) {
                match &round.cluster {
                    ClusterDns::Serves => tracing::info!(
                        "the DNS server answers for the cluster's names; checking every peer address"
                    ),
                    ClusterDns::NotServed(why) => {
                        tracing::warn!(%why, "in-cluster peer addresses are not checked; point --dns-server at the cluster DNS")
                    }
                    ClusterDns::Unreachable(why) => {
                        tracing::warn!(%why, "cannot reach the DNS server; peer addresses are not checked until it answers")
                    }
                }
                last_cluster = Some(round.cluster.clone());
            }
            if round.failed > 0 {
                metrics
                    .errors
                    .get_or_create(&crate::metrics::ErrorLabels {
                        kind: ErrorKind::Dns,
                    })
                    .inc_by(round.failed as u64);
            }
            let leading = gate.as_ref().is_none_or(|g| *g.borrow());
            let report = tracker.observe(&round.statuses, Instant::now(), leading);
            metrics.observe_resolution(&report);
            for o in &report.overdue {
                let owners: Vec<String> = o.owners.iter().map(ToString::to_string).collect();
                tracing::warn!(address = %o.address, why = o.why.as_str(), unresolved_for = ?o.for_, ?owners,
                    "peer address does not resolve; pods are given it but stellar-core cannot reach it");
            }
            for a in &report.recovered {
                tracing::info!(address = %a, "peer address resolves again");
            }
            for d in &report.due {
                if let Some(n) = d.node() {
                    events.send(Notice::warning(
                        stellar_node(&n.namespace, &n.name, n.uid.as_deref()),
                        "PeerUnresolvable",
                        "CheckPeers",
                        d.note(),
                    ));
                }
            }
            tracing::debug!(
                addresses = round.statuses.len(),
                unknown = report.unknown,
                unresolvable = tracker.open(),
                "peer resolution round done"
            );
        }
        tokio::select! {
            () = tokio::time::sleep_until(started + s.interval) => full = true,
            alive = changed(&mut snaps, &mut gate) => {
                if !alive {
                    return;
                }
                tokio::time::sleep_until(started + min_gap).await;
                full = false;
            }
        }
    }
}
