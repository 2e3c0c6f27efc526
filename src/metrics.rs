//! One Prometheus registry for the process; names carry the `stellar_peer_injector_` prefix.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::peers::PeerSnapshot;

/// Labels of `admission_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `injected`, `skipped`, `denied`, `not_ready` or `error`.
    pub outcome: &'static str,
    /// Why, for skips, denials and errors; empty for injections.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabels {
    pub network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub network: String,
    /// `started`, `dry_run`, `event_only` or `failed`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Labels of `errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

/// Labels of `task_restarts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: &'static str,
}

/// Failures of background work that is retried (each shows in the log too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Creating or reading a governing Service failed.
    ServiceCreate,
    /// Recording an Event failed.
    EventPublish,
    /// A peer-resolution round could not ask the DNS server (no answer, or an error
    /// answer such as SERVFAIL): those addresses were not judged.
    Dns,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceCreate => "service_create",
            Self::EventPublish => "event_publish",
            Self::Dns => "dns",
        }
    }
}

/// Labels of `rollouts_waiting`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    pub network: String,
    pub reason: &'static str,
}

/// Every metric the injector exports.
pub struct Metrics {
    registry: Registry,
    pub admission_requests: Family<OutcomeLabels, Counter>,
    pub admission_duration: Histogram,
    pub peers: Family<NetworkLabels, Gauge>,
    pub cache_synced: Gauge,
    pub cache_nodes: Gauge,
    pub cache_invalid_nodes: Gauge,
    pub snapshot_version: Gauge,
    pub tls_reloads: Family<ResultLabels, Counter>,
    pub patch_cache: Family<ResultLabels, Counter>,
    pub rollouts: Family<RolloutLabels, Counter>,
    pub rollouts_pending: Family<NetworkLabels, Gauge>,
    pub rollouts_waiting: Family<WaitLabels, Gauge>,
    pub rollouts_stuck: Family<NetworkLabels, Gauge>,
    pub rollout_leader: Gauge,
    pub services_created: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub task_restarts: Family<TaskLabels, Counter>,
    pub peers_unresolvable: Family<NetworkLabels, Gauge>,
    pub events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stellar_peer_injector");
        let admission_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests answered, by outcome (injected, skipped, denied, not_ready, error) and reason",
            admission_requests.clone(),
        );
        let admission_duration = Histogram::new([
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]);
        registry.register(
            "admission_duration_seconds",
            "Time from a complete request body to the response, in seconds",
            admission_duration.clone(),
        );
        let peers = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "peers",
            "Peers per network (validators that are not suspended, plus extra peers)",
            peers.clone(),
        );
        let cache_synced = Gauge::default();
        registry.register(
            "cache_synced",
            "1 once the StellarNode cache has listed every watched namespace",
            cache_synced.clone(),
        );
        let cache_nodes = Gauge::default();
        registry.register(
            "cache_nodes",
            "StellarNodes in the cache",
            cache_nodes.clone(),
        );
        let cache_invalid_nodes = Gauge::default();
        registry.register(
            "cache_invalid_nodes",
            "StellarNodes skipped because their spec is malformed",
            cache_invalid_nodes.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Version of the current peer snapshot (increments on every change)",
            snapshot_version.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_certificate_reloads",
            "TLS certificate reloads from disk, by result",
            tls_reloads.clone(),
        );
        let patch_cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "patch_cache",
            "Injections answered with a patch already encoded for this snapshot, StellarNode and pod shape (hit) or encoded for it (miss)",
            patch_cache.clone(),
        );
        let rollouts = Family::<RolloutLabels, Counter>::default();
        registry.register(
            "rollouts",
            "Rollout actions (template annotation or stale pod replaced), by network and outcome",
            rollouts.clone(),
        );
        let rollouts_pending = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "rollouts_pending",
            "Workloads whose peers are stale and wait for their turn, by network",
            rollouts_pending.clone(),
        );
        let rollouts_waiting = Family::<WaitLabels, Gauge>::default();
        registry.register(
            "rollouts_waiting",
            "Stale workloads not acted on now, by network and reason (paused, window, settling, slot, validators_first)",
            rollouts_waiting.clone(),
        );
        let rollouts_stuck = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "rollouts_stuck",
            "Workloads unavailable for longer than --stuck-after (holding their network's rollout slot unless marked skip-wait), by network",
            rollouts_stuck.clone(),
        );
        let rollout_leader = Gauge::default();
        registry.register(
            "rollout_leader",
            "1 while this replica holds the leader Lease and runs the rollout loop",
            rollout_leader.clone(),
        );
        let services_created = Counter::default();
        registry.register(
            "governing_services_created",
            "Headless governing Services created for validators whose StatefulSet names one that did not exist",
            services_created.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Failed background operations that are retried, by kind",
            errors.clone(),
        );
        let task_restarts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_restarts",
            "Background tasks that ended unexpectedly and were restarted, by task",
            task_restarts.clone(),
        );
        let peers_unresolvable = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "peers_unresolvable",
            "Peer addresses pods are given that do not resolve in DNS (NXDOMAIN or no A record), by network",
            peers_unresolvable.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events not recorded because the event queue was full",
            events_dropped.clone(),
        );
        Self {
            registry,
            peers_unresolvable,
            events_dropped,
            task_restarts,
            services_created,
            errors,
            patch_cache,
            rollouts,
            rollouts_pending,
            rollouts_waiting,
            rollouts_stuck,
            rollout_leader,
            admission_requests,
            admission_duration,
            peers,
            cache_synced,
            cache_nodes,
            cache_invalid_nodes,
            snapshot_version,
            tls_reloads,
        }
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one admission answer.
    pub fn admission(&self, outcome: &'static str, reason: &'static str) {
        self.admission_requests
            .get_or_create(&OutcomeLabels { outcome, reason })
            .inc();
    }

    /// Counts one injection by whether its patch came from the cache.
    pub fn patch_cache(&self, hit: bool) {
        self.patch_cache
            .get_or_create(&ResultLabels {
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// Counts one restart of a background task.
    pub fn task_restart(&self, task: &'static str) {
        self.task_restarts.get_or_create(&TaskLabels { task }).inc();
    }

    /// Counts one failed background operation.
    pub fn errors(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Counts one rollout action.
    pub fn rollout(&self, network: &str, outcome: &'static str) {
        self.rollouts
            .get_or_create(&RolloutLabels {
                network: network.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Mirrors a new snapshot into the gauges.
    pub fn observe_snapshot(&self, snap: &PeerSnapshot) {
        self.peers.clear();
        for (net, peers) in snap.networks() {
            self.peers
                .get_or_create(&NetworkLabels {
                    network: net.to_owned(),
                })
                .set(peers.len() as i64);
        }
        self.cache_nodes.set(snap.node_count() as i64);
        self.cache_invalid_nodes.set(
            snap.problems
                .iter()
                .filter(|p| p.kind == crate::peers::ProblemKind::Invalid)
                .count() as i64,
        );
        self.snapshot_version.set(snap.version as i64);
        self.cache_synced.set(1);
    }

    /// Mirrors a peer-resolution round into `peers_unresolvable`.
    pub fn observe_resolution(&self, report: &crate::peers::resolve::Report) {
        self.peers_unresolvable.clear();
        for (net, n) in &report.unresolvable {
            self.peers_unresolvable
                .get_or_create(&NetworkLabels {
                    network: net.clone(),
                })
                .set(*n as i64);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
