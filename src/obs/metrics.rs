//! One Prometheus registry for the process; names carry the `stellar_peer_injector_` prefix.

//!
//! Labels are typed: every label value is an enum (or a network or task name), written
//! by its `as_str`. prometheus-client's `EncodeLabelValue` derive writes a variant's
//! Rust name (`DryRun`), so the values the README documents (`dry_run`, `not-create`)
//! are written by [`label_values!`] instead; the label sets are derived.

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::inject::{DenyReason, SkipReason};
use crate::peers::PeerSnapshot;

/// `EncodeLabelValue` through each type's `as_str`.
macro_rules! label_values {
    ($($ty:ty),+ $(,)?) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    )+};
}

label_values!(
    RequestFailure,
    RolloutOutcome,
    CacheResult,
    ReloadResult,
    ErrorKind,
);

/// How an admission request was answered: the labels `outcome` and `reason` of
/// `admission_requests_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Admission {
    /// `injected`, with an empty reason.
    Injected,
    /// `skipped`: allowed without a patch.
    Skipped(SkipReason),
    /// `denied`: a Stellar pod refused.
    Denied(DenyReason),
    /// `not_ready`, reason `cache-not-synced`: answered 503.
    NotReady,
    /// `error`: the request could not be answered.
    Error(RequestFailure),
}

impl Admission {
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::Skipped(_) => "skipped",
            Self::Denied(_) => "denied",
            Self::NotReady => "not_ready",
            Self::Error(_) => "error",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Injected => "",
            Self::Skipped(r) => r.as_str(),
            Self::Denied(r) => r.as_str(),
            Self::NotReady => "cache-not-synced",
            Self::Error(r) => r.as_str(),
        }
    }
}

/// Not derived: the two labels come from one enum, so that an outcome never carries
/// another outcome's reason.
impl EncodeLabelSet for Admission {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        let labels: &[(&str, &str)] = &[("outcome", self.outcome()), ("reason", self.reason())];
        labels.encode(encoder)
    }
}

/// What became of one rollout action (label `outcome` of `rollouts_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// The template was annotated or the stale pod deleted.
    Started,
    /// `--rollout=dry-run`: logged only.
    DryRun,
    /// OnDelete policy `event`: only an Event was recorded.
    EventOnly,
    /// A running pod's peers were updated in place (live policy): nothing restarted.
    Live,
    /// The write failed; retried on the next pass.
    Failed,
}

impl RolloutOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::DryRun => "dry_run",
            Self::EventOnly => "event_only",
            Self::Live => "live",
            Self::Failed => "failed",
        }
    }
}

/// Why an admission request got an error answer (reason of `outcome="error"`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestFailure {
    ContentType,
    TooLarge,
    BodyTimeout,
    BodyRead,
    BadReview,
    PatchEncode,
    ResponseEncode,
}

impl RequestFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentType => "content-type",
            Self::TooLarge => "too-large",
            Self::BodyTimeout => "body-timeout",
            Self::BodyRead => "body-read",
            Self::BadReview => "bad-review",
            Self::PatchEncode => "patch-encode",
            Self::ResponseEncode => "response-encode",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabels {
    pub network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub network: String,
    pub outcome: RolloutOutcome,
}

/// Labels of `patch_cache_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub result: CacheResult,
}

/// Whether an injection's patch was already encoded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

/// Labels of `tls_certificate_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

/// How a certificate reload went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Error,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// Labels of `errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: ErrorKind,
}

/// Labels of `task_restarts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: &'static str,
}

/// Failures of background work that is retried (each shows in the log too).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    /// Creating or reading a governing Service failed.
    ServiceCreate,
    /// Recording an Event failed.
    EventPublish,
    /// A peer-resolution round could not ask the DNS server (no answer, or an error
    /// answer such as SERVFAIL): those addresses were not judged.
    Dns,
    /// A link Secret (or `--remote-kubeconfig` file) could not be read or used.
    RemoteLink,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceCreate => "service_create",
            Self::EventPublish => "event_publish",
            Self::Dns => "dns",
            Self::RemoteLink => "remote_link",
        }
    }
}

/// Labels of the per-linked-cluster metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
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
    families: Vec<(String, MetricType)>,
    pub admission_requests: Family<Admission, Counter>,
    pub admission_duration: Histogram,
    pub peers: Family<NetworkLabels, Gauge>,
    pub cache_synced: Gauge,
    pub cache_nodes: Gauge,
    pub cache_invalid_nodes: Gauge,
    pub snapshot_version: Gauge,
    pub tls_reloads: Family<ReloadLabels, Counter>,
    pub tls_expiry: Gauge,
    pub patch_cache: Family<CacheLabels, Counter>,
    pub rollouts: Family<RolloutLabels, Counter>,
    pub rollouts_pending: Family<NetworkLabels, Gauge>,
    pub rollouts_waiting: Family<WaitLabels, Gauge>,
    pub rollouts_stuck: Family<NetworkLabels, Gauge>,
    pub init_failures: Family<NetworkLabels, Gauge>,
    pub rollout_leader: Gauge,
    pub services_created: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub task_restarts: Family<TaskLabels, Counter>,
    pub peers_unresolvable: Family<NetworkLabels, Gauge>,
    pub remote_synced: Family<ClusterLabels, Gauge>,
    pub remote_nodes: Family<ClusterLabels, Gauge>,
    pub remote_last_sync: Family<ClusterLabels, Gauge>,
    pub remote_errors: Family<ClusterLabels, Counter>,
    pub remote_excluded: Family<ClusterLabels, Gauge>,
    pub events_dropped: Counter,
}

const PREFIX: &str = "stellar_peer_injector";

/// The registry being filled, and the names and types of what was registered in it.
struct Families {
    registry: Registry,
    names: Vec<(String, MetricType)>,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            registry: Registry::with_prefix(PREFIX),
            names: Vec::new(),
        }
    }
}

impl Families {
    fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.names
            .push((format!("{PREFIX}_{name}"), metric.metric_type()));
        self.registry.register(name, help, metric);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut reg = Families::default();
        let admission_requests = Family::<Admission, Counter>::default();
        reg.register(
            "admission_requests",
            "Admission requests answered, by outcome (injected, skipped, denied, not_ready, error) and reason",
            admission_requests.clone(),
        );
        let admission_duration = Histogram::new([
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]);
        reg.register(
            "admission_duration_seconds",
            "Time from a complete request body to the response, in seconds",
            admission_duration.clone(),
        );
        let peers = Family::<NetworkLabels, Gauge>::default();
        reg.register(
            "peers",
            "Peers per network (validators that are not suspended, plus extra peers)",
            peers.clone(),
        );
        let cache_synced = Gauge::default();
        reg.register(
            "cache_synced",
            "1 once the StellarNode cache has listed every watched namespace",
            cache_synced.clone(),
        );
        let cache_nodes = Gauge::default();
        reg.register(
            "cache_nodes",
            "StellarNodes in the cache",
            cache_nodes.clone(),
        );
        let cache_invalid_nodes = Gauge::default();
        reg.register(
            "cache_invalid_nodes",
            "StellarNodes skipped because their spec is malformed",
            cache_invalid_nodes.clone(),
        );
        let snapshot_version = Gauge::default();
        reg.register(
            "snapshot_version",
            "Version of the current peer snapshot (increments on every change)",
            snapshot_version.clone(),
        );
        let tls_reloads = Family::<ReloadLabels, Counter>::default();
        reg.register(
            "tls_certificate_reloads",
            "TLS certificate reloads from disk, by result",
            tls_reloads.clone(),
        );
        let tls_expiry = Gauge::default();
        reg.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate (the leaf served now) expires: its notAfter",
            tls_expiry.clone(),
        );
        let patch_cache = Family::<CacheLabels, Counter>::default();
        reg.register(
            "patch_cache",
            "Injections answered with a patch already encoded for this snapshot, StellarNode and pod shape (hit) or encoded for it (miss)",
            patch_cache.clone(),
        );
        let rollouts = Family::<RolloutLabels, Counter>::default();
        reg.register(
            "rollouts",
            "Rollout actions (template annotation or stale pod replaced), by network and outcome",
            rollouts.clone(),
        );
        let rollouts_pending = Family::<NetworkLabels, Gauge>::default();
        reg.register(
            "rollouts_pending",
            "Workloads whose peers are stale and wait for their turn, by network",
            rollouts_pending.clone(),
        );
        let rollouts_waiting = Family::<WaitLabels, Gauge>::default();
        reg.register(
            "rollouts_waiting",
            "Stale workloads not acted on now, by network and reason (paused, window, settling, slot, validators_first)",
            rollouts_waiting.clone(),
        );
        let rollouts_stuck = Family::<NetworkLabels, Gauge>::default();
        reg.register(
            "rollouts_stuck",
            "Workloads unavailable for longer than --stuck-after (holding their network's rollout slot unless marked skip-wait), by network",
            rollouts_stuck.clone(),
        );
        let init_failures = Family::<NetworkLabels, Gauge>::default();
        reg.register(
            "init_failures",
            "Pods whose merge-mode init step (stellar-peers-config) failed and that cannot start, by network (leader only)",
            init_failures.clone(),
        );
        let rollout_leader = Gauge::default();
        reg.register(
            "rollout_leader",
            "1 while this replica holds the leader Lease and runs the rollout loop",
            rollout_leader.clone(),
        );
        let services_created = Counter::default();
        reg.register(
            "governing_services_created",
            "Headless governing Services created for validators whose StatefulSet names one that did not exist",
            services_created.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        reg.register(
            "errors",
            "Failed background operations that are retried, by kind",
            errors.clone(),
        );
        let task_restarts = Family::<TaskLabels, Counter>::default();
        reg.register(
            "task_restarts",
            "Background tasks that ended unexpectedly and were restarted, by task",
            task_restarts.clone(),
        );
        let peers_unresolvable = Family::<NetworkLabels, Gauge>::default();
        reg.register(
            "peers_unresolvable",
            "Peer addresses pods are given that do not resolve in DNS (NXDOMAIN or no A record), by network",
            peers_unresolvable.clone(),
        );
        let remote_synced = Family::<ClusterLabels, Gauge>::default();
        reg.register(
            "remote_cluster_synced",
            "1 while the linked cluster's StellarNodes are listed and its watch is healthy; 0 while it fails (its last known peers are kept)",
            remote_synced.clone(),
        );
        let remote_nodes = Family::<ClusterLabels, Gauge>::default();
        reg.register(
            "remote_cluster_nodes",
            "StellarNodes of every type last seen in the linked cluster",
            remote_nodes.clone(),
        );
        let remote_last_sync = Family::<ClusterLabels, Gauge>::default();
        reg.register(
            "remote_cluster_last_sync_timestamp_seconds",
            "Unix time of the last complete list or change seen from the linked cluster",
            remote_last_sync.clone(),
        );
        let remote_errors = Family::<ClusterLabels, Counter>::default();
        reg.register(
            "remote_cluster_errors",
            "Failed list or watch requests to the linked cluster (retried with backoff)",
            remote_errors.clone(),
        );
        let remote_excluded = Family::<ClusterLabels, Gauge>::default();
        reg.register(
            "remote_peers_excluded",
            "Validators of the linked cluster left out of the peers: no usable external address",
            remote_excluded.clone(),
        );
        let events_dropped = Counter::default();
        reg.register(
            "events_dropped",
            "Events not recorded because the event queue was full",
            events_dropped.clone(),
        );
        Self {
            registry: reg.registry,
            families: reg.names,
            peers_unresolvable,
            remote_synced,
            remote_nodes,
            remote_last_sync,
            remote_errors,
            remote_excluded,
            events_dropped,
            task_restarts,
            services_created,
            errors,
            patch_cache,
            rollouts,
            rollouts_pending,
            rollouts_waiting,
            rollouts_stuck,
            init_failures,
            rollout_leader,
            admission_requests,
            admission_duration,
            peers,
            cache_synced,
            cache_nodes,
            cache_invalid_nodes,
            snapshot_version,
            tls_reloads,
            tls_expiry,
        }
    }

    /// Every registered family, as `# TYPE` lines name it (a counter without `_total`),
    /// and its type (`counter`, `gauge`, `histogram`). /metrics leaves out a labelled
    /// family until it has a sample; this lists them all.
    pub fn families(&self) -> impl Iterator<Item = (&str, &str)> {
        self.families.iter().map(|(n, t)| (n.as_str(), t.as_str()))
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Counts one admission answer.
    pub fn admission(&self, how: Admission) {
        self.admission_requests.get_or_create(&how).inc();
    }

    /// Counts one injection by whether its patch came from the cache.
    pub fn patch_cache(&self, hit: bool) {
        let result = if hit {
            CacheResult::Hit
        } else {
            CacheResult::Miss
        };
        self.patch_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// Counts one certificate reload.
    pub fn tls_reload(&self, result: ReloadResult) {
        self.tls_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// The served certificate's notAfter (unix seconds); 0 when it could not be read.
    pub fn tls_expiry(&self, not_after: Option<i64>) {
        self.tls_expiry.set(not_after.unwrap_or(0));
    }

    /// Counts one restart of a background task.
    pub fn task_restart(&self, task: &'static str) {
        self.task_restarts.get_or_create(&TaskLabels { task }).inc();
    }

    /// Counts one failed background operation.
    pub fn errors(&self, kind: ErrorKind) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// Counts one rollout action.
    pub fn rollout(&self, network: &str, outcome: RolloutOutcome) {
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
        for (cluster, r) in &snap.remotes {
            self.remote_excluded
                .get_or_create(&ClusterLabels {
                    cluster: cluster.clone(),
                })
                .set(r.excluded as i64);
        }
    }

    /// One linked cluster's state, after every change of it.
    pub fn observe_remote(
        &self,
        cluster: &str,
        synced: bool,
        nodes: usize,
        last_sync: Option<i64>,
    ) {
        let l = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        self.remote_synced.get_or_create(&l).set(i64::from(synced));
        self.remote_nodes.get_or_create(&l).set(nodes as i64);
        let _ = self.remote_errors.get_or_create(&l);
        if let Some(t) = last_sync {
            self.remote_last_sync.get_or_create(&l).set(t);
        }
        if nodes == 0 {
            self.remote_excluded.get_or_create(&l).set(0);
        }
    }

    /// Counts one failed request to a linked cluster.
    pub fn remote_error(&self, cluster: &str) {
        self.remote_errors
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
            .inc();
    }

    /// Drops an unlinked cluster's series.
    pub fn forget_remote(&self, cluster: &str) {
        let l = ClusterLabels {
            cluster: cluster.to_owned(),
        };
        for f in [
            &self.remote_synced,
            &self.remote_nodes,
            &self.remote_last_sync,
            &self.remote_excluded,
        ] {
            f.remove(&l);
        }
        self.remote_errors.remove(&l);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_labels_write_the_documented_values() {
        let m = Metrics::new();
        m.admission(Admission::Injected);
        m.admission(Admission::Skipped(SkipReason::NotCreate));
        m.admission(Admission::Denied(DenyReason::InvalidNode));
        m.admission(Admission::NotReady);
        m.admission(Admission::Error(RequestFailure::TooLarge));
        m.rollout("testnet", RolloutOutcome::DryRun);
        m.rollout("testnet", RolloutOutcome::EventOnly);
        m.patch_cache(false);
        m.tls_reload(ReloadResult::Success);
        m.errors(ErrorKind::ServiceCreate);
        m.tls_expiry(Some(1_800_000_000));
        let text = m.encode();
        // Every family written is listed by families(), with its type.
        let listed: Vec<(&str, &str)> = m.families().collect();
        for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, ty) = l.split_once(' ').expect("name and type");
            assert!(
                listed.contains(&(name, ty)),
                "{name} {ty} not in {listed:?}"
            );
        }
        assert_eq!(listed.len(), 26, "{listed:?}");
        for line in [
            r#"stellar_peer_injector_admission_requests_total{outcome="injected",reason=""} 1"#,
            r#"stellar_peer_injector_admission_requests_total{outcome="skipped",reason="not-create"} 1"#,
            r#"stellar_peer_injector_admission_requests_total{outcome="denied",reason="invalid-node"} 1"#,
            r#"stellar_peer_injector_admission_requests_total{outcome="not_ready",reason="cache-not-synced"} 1"#,
            r#"stellar_peer_injector_admission_requests_total{outcome="error",reason="too-large"} 1"#,
            r#"stellar_peer_injector_rollouts_total{network="testnet",outcome="dry_run"} 1"#,
            r#"stellar_peer_injector_rollouts_total{network="testnet",outcome="event_only"} 1"#,
            r#"stellar_peer_injector_patch_cache_total{result="miss"} 1"#,
            r#"stellar_peer_injector_tls_certificate_reloads_total{result="success"} 1"#,
            r#"stellar_peer_injector_errors_total{kind="service_create"} 1"#,
            "stellar_peer_injector_tls_certificate_expiry_timestamp_seconds 1800000000",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
