//! The command line: one clap struct, every flag also an environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::duration::{DurationError, parse_duration};
use crate::error::{Error, InputError, KubeConfigError};
use crate::inject::{ConfigMode, InjectSettings};
use crate::live::PeerUpdates;
use crate::peers::{ExtraPeers, PeerSettings};

/// `--shutdown-delay`'s default (the chart's too): /readyz fails this long before the
/// listener stops accepting, so that the apiserver stops sending first.
pub const DEFAULT_SHUTDOWN_DELAY: &str = "5s";

#[derive(Parser, Debug)]
#[command(
    name = "stellar-peer-injector",
    version,
    about = "Gives Stellar pods their current peers at creation"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the admission webhook and the rollout loop.
    Serve(Box<ServeArgs>),
    /// Inject peers into manifests offline, exactly as the webhook would.
    Inject(InjectArgs),
    /// Print the peer sets as the cluster has them now.
    Peers(PeersArgs),
    /// Why a pod is (or is not) injected, which peers it gets, whether its running pods
    /// carry them, and what the rollout loop will do next; `--all` lists every workload
    /// the loop would restart (what a first install would restart).
    Explain(Box<ExplainArgs>),
    /// Print the StellarNode CRD as YAML.
    Crd,
    /// Write a development CA and serving certificate (ECDSA P-256).
    Certs(CertsArgs),
    /// Config mode (init container): merge the injected peers into the base
    /// stellar-core config and write the result for `stellar-core --conf`.
    RenderConfig(crate::cmd::render_config::RenderArgs),
    /// Live peer updates (a native sidecar next to stellar-core): whenever the injected
    /// peers change, rewrite the merged config as `render-config` does and call
    /// `connect` on stellar-core's admin port for every added peer.
    LivePeers(crate::cmd::live_peers::LiveArgs),
    /// Make the cluster of a kubeconfig context readable by another cluster's injector
    /// (a reader ServiceAccount with least-privilege RBAC and a token), and print the
    /// link Secret to apply in that other cluster.
    RemoteSecret(crate::cmd::remote_secret::RemoteSecretArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// How peers are computed: shared by `serve`, `inject` and `peers`.
#[derive(Args, Debug, Clone)]
pub struct PeerArgs {
    /// Cluster DNS domain used in peer addresses ({name}.{namespace}.svc.{domain}:11625).
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
    /// Most peers one pod gets; larger networks give each node a stable rendezvous subset.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_MAX_PEERS", default_value_t = 64)]
    pub max_peers: usize,
    /// YAML file of static extra peers per network (see README).
    #[arg(long, env = "STELLAR_PEER_INJECTOR_EXTRA_PEERS", value_name = "FILE")]
    pub extra_peers: Option<PathBuf>,
}

impl PeerArgs {
    pub fn settings(&self) -> Result<PeerSettings, Error> {
        let extra = match &self.extra_peers {
            None => ExtraPeers::default(),
            Some(p) => {
                let input = |source: InputError| Error::Input {
                    path: p.display().to_string(),
                    source,
                };
                let text = std::fs::read_to_string(p).map_err(|e| input(e.into()))?;
                ExtraPeers::parse(&text).map_err(|e| input(e.into()))?
            }
        };
        if self.cluster_domain.is_empty() || self.cluster_domain.contains(['/', ':', ' ']) {
            return Err(Error::Config(format!(
                "--cluster-domain {:?} is not a DNS domain",
                self.cluster_domain
            )));
        }
        Ok(PeerSettings {
            cluster_domain: self.cluster_domain.trim_end_matches('.').to_owned(),
            max_peers: self.max_peers,
            extra,
        })
    }
}

/// How the patch is shaped: shared by `serve` and `inject`.
#[derive(Args, Debug, Clone)]
pub struct PatchArgs {
    /// Container that gets the env vars and the mount (the first container when none has this name).
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_CONTAINER",
        default_value = "stellar-node"
    )]
    pub container: String,
    /// Path of the stellar-core snippet file inside the container.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_MOUNT_PATH",
        default_value = "/etc/stellar/peers/peers.cfg"
    )]
    pub mount_path: String,
    /// How peers reach stellar-core: `merge` (an init container writes the config
    /// stellar-core reads, with the peers in it), `env` (env vars and the snippet only),
    /// or `auto` (merge for validators when --init-image is set). Pods and StellarNodes
    /// override it with the annotation stellar.org/peers-config-mode.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_CONFIG_MODE",
        default_value = "auto",
        value_parser = one_of(&ConfigMode::NAMES, ConfigMode::parse)
    )]
    pub config_mode: ConfigMode,
    /// Image of the merge init container: this injector's own image (it runs
    /// `stellar-peer-injector render-config`). Empty: no merge mode.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_INIT_IMAGE", default_value = "")]
    pub init_image: String,
    /// The config file merged for a container that has no command and no args (the
    /// Stellar-K8s operator's: its ConfigMap key stellar-core.cfg at /config).
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_BASE_CONFIG",
        default_value = "/config/stellar-core.cfg"
    )]
    pub base_config: String,
    /// Where the merged config is written, in an emptyDir on its directory.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_MERGED_CONFIG_PATH",
        default_value = "/etc/stellar/merged/stellar-core.cfg"
    )]
    pub merged_config_path: String,
    /// What a peer change does to running pods: `restart` (roll them, one per network
    /// at a time), `live` (running pods learn added peers through `connect` on their
    /// admin port, from a sidecar merge mode adds; pods without it restart), or
    /// `live+restart` (live now, and a restart at the next rollout window).
    /// StellarNodes override it with the annotation stellar.org/peer-updates.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_PEER_UPDATES",
        default_value = "restart",
        value_parser = one_of(&PeerUpdates::NAMES, PeerUpdates::parse)
    )]
    pub peer_updates: PeerUpdates,
}

impl PatchArgs {
    pub fn settings(&self) -> Result<InjectSettings, Error> {
        let s = InjectSettings {
            container: self.container.clone(),
            mount_path: self.mount_path.clone(),
            config_mode: self.config_mode,
            init_image: self.init_image.trim().to_owned(),
            base_config: self.base_config.clone(),
            merged_path: self.merged_config_path.clone(),
            peer_updates: self.peer_updates,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Which DNS server peer-resolution checks ask: shared by `serve` and `peers`.
#[derive(Args, Debug, Clone)]
pub struct DnsArgs {
    /// DNS server that peer addresses are looked up with, `IP` or `IP:PORT` (default:
    /// the nameservers of /etc/resolv.conf, which in a pod is the cluster DNS). Names are
    /// looked up as absolute names, without the search list.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_DNS_SERVER", value_name = "IP[:PORT]",
          value_parser = crate::watch::dns::parse_server)]
    pub dns_server: Option<SocketAddr>,
}

impl DnsArgs {
    pub fn resolver(&self) -> Result<crate::watch::dns::Resolver, Error> {
        let timeout = crate::obs::reports::DNS_TIMEOUT;
        Ok(match self.dns_server {
            Some(s) => crate::watch::dns::Resolver::new(vec![s], timeout),
            None => crate::watch::dns::Resolver::system(timeout)?,
        })
    }
}

/// Where the Kubernetes API is.
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Kubeconfig file (else KUBECONFIG, else the in-cluster ServiceAccount).
    #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces (comma-separated); all namespaces when empty.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
}

impl KubeArgs {
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| Error::KubeConfig(e.into()))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| Error::KubeConfig(e.into()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| Error::KubeConfig(KubeConfigError::from(e)))?,
        };
        kube::Client::try_from(config).map_err(Error::Kube)
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Links to other clusters whose validators join the peers: shared by `serve` and `peers`.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Link the clusters of the Secrets labelled `stellar.org/remote-cluster=true` in this
    /// namespace (the injector's own), watched: adding, changing or deleting one links,
    /// relinks or unlinks its cluster. Off when empty.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_REMOTE_SECRET_NAMESPACE",
        value_name = "NAMESPACE"
    )]
    pub remote_secret_namespace: Option<String>,
    /// Link a cluster by kubeconfig file, `NAME=PATH` (repeatable, or comma-separated);
    /// for running outside a cluster.
    #[arg(long = "remote-kubeconfig", env = "STELLAR_PEER_INJECTOR_REMOTE_KUBECONFIGS",
          value_name = "NAME=PATH", value_delimiter = ',', value_parser = parse_remote_kubeconfig)]
    pub remote_kubeconfigs: Vec<(String, PathBuf)>,
}

/// Why a `--remote-kubeconfig` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteKubeconfigArgError {
    #[error("{0:?}: expected NAME=PATH, e.g. eu-west=/etc/links/eu-west.kubeconfig")]
    NoEquals(String),
    #[error("{0:?}: a cluster name is 1-63 lower-case letters, digits or '-'")]
    BadName(String),
    #[error("{0:?}: the PATH is empty")]
    EmptyPath(String),
}

fn parse_remote_kubeconfig(s: &str) -> Result<(String, PathBuf), RemoteKubeconfigArgError> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| RemoteKubeconfigArgError::NoEquals(s.to_owned()))?;
    let name = name.trim();
    if !crate::watch::remote::valid_cluster_name(name) {
        return Err(RemoteKubeconfigArgError::BadName(name.to_owned()));
    }
    if path.trim().is_empty() {
        return Err(RemoteKubeconfigArgError::EmptyPath(s.to_owned()));
    }
    Ok((name.to_owned(), PathBuf::from(path.trim())))
}

impl RemoteArgs {
    /// The file links, read now (a file that cannot be read stops the command).
    pub fn file_links(&self) -> Result<Vec<crate::watch::remote::Link>, Error> {
        self.remote_kubeconfigs
            .iter()
            .map(|(n, p)| crate::watch::remote::Link::from_file(n, p).map_err(Error::Link))
            .collect()
    }

    /// The links of a one-shot command (`peers`, `explain`): the files and the Secrets.
    pub fn sources(&self) -> Result<crate::watch::cache::Sources, Error> {
        Ok(crate::watch::cache::Sources {
            link_namespace: self.secret_namespace(),
            link_files: self.file_links()?,
            ..crate::watch::cache::Sources::default()
        })
    }

    pub fn secret_namespace(&self) -> Option<String> {
        self.remote_secret_namespace
            .as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTPS address of the admission endpoint (POST /mutate).
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub admin_listen: SocketAddr,
    /// PEM certificate chain; re-read when the file changes.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_TLS_CERT",
        default_value = "/tls/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// PEM private key; re-read when the file changes.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_TLS_KEY",
        default_value = "/tls/tls.key"
    )]
    pub tls_key: PathBuf,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub peers: PeerArgs,
    #[command(flatten)]
    pub patch: PatchArgs,
    /// Log format.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    pub log_format: LogFormat,
    /// How often the TLS files are checked for changes.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// On SIGTERM: how long /readyz fails before the listener stops accepting. The leader
    /// Lease is released at once, not after this delay.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Rollout loop: `on`, `dry-run` (log what it would do) or `off`.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_ROLLOUT",
        value_enum,
        default_value = "on"
    )]
    pub rollout: crate::rollout::controller::Mode,
    /// Peer changes within this window produce one rollout.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_DEBOUNCE", default_value = "5s", value_parser = parse_duration)]
    pub debounce: Duration,
    #[command(flatten)]
    pub policy: RolloutPolicyArgs,
    /// A workload unavailable this long is reported stuck (Event, metric). It keeps
    /// holding its network's slot unless annotated `stellar.org/rollout: skip-wait`.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_STUCK_AFTER", default_value = "15m", value_parser = parse_duration)]
    pub stuck_after: Duration,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_LEASE_NAME",
        default_value = "stellar-peer-injector"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, the injector's own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// On SIGTERM: how long in-flight requests may take to finish.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Create a validator's headless governing Service `{name}-headless` when it does not
    /// exist, so that its in-cluster peer address resolves (`false` to leave Services alone).
    #[arg(long, env = "STELLAR_PEER_INJECTOR_CREATE_GOVERNING_SERVICES", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub create_governing_services: bool,
    /// How often every peer address is looked up in DNS (also soon after each peer
    /// change); `0s` turns the checks off.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_RESOLVE_CHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub resolve_check_interval: Duration,
    /// How long a peer address may not resolve (a pod starting) before its StellarNode
    /// gets a PeerUnresolvable Event; the metric counts it at once.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_RESOLVE_GRACE", default_value = "2m", value_parser = parse_duration)]
    pub resolve_grace: Duration,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// This cluster's name among linked clusters: the identity of its cross-cluster
    /// rollout flags. Needed with links (and must differ from every linked cluster's).
    #[arg(long, env = "STELLAR_PEER_INJECTOR_CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,
    /// At start, how long the first snapshot (and so readiness) waits for the linked
    /// clusters' first list, so that a restart does not inject short lists and roll.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_REMOTE_SYNC_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub remote_sync_timeout: Duration,
}

/// What the rollout loop may do and when: shared by `serve` and `explain` (which
/// predicts the loop's next step, so it must be given the same values).
#[derive(Args, Debug, Clone)]
pub struct RolloutPolicyArgs {
    /// Most workloads of one network rolling at the same time.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_MAX_CONCURRENT_ROLLOUTS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_rollouts: u16,
    /// OnDelete StatefulSets and pods that missed injection: `delete` stale pods one
    /// at a time, or only record an `event`.
    #[arg(
        long,
        env = "STELLAR_PEER_INJECTOR_ON_DELETE_POLICY",
        value_enum,
        default_value = "delete"
    )]
    pub on_delete_policy: OnDeletePolicyArg,
    /// Daily UTC windows in which rollouts may start, e.g. `02:00-04:00` or
    /// `02:00-03:00,14:00-15:00` (`always`: any time). Outside them, changes queue up and
    /// roll when a window opens; injection at pod creation is never delayed. A
    /// StellarNode may override it with the `stellar.org/rollout-window` annotation.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_ROLLOUT_WINDOW", default_value = "always",
          value_parser = |s: &str| crate::rollout::controls::Windows::parse(s).map_err(|e| e.to_string()))]
    pub rollout_window: crate::rollout::controls::Windows,
    /// Restart workloads none of whose pods was ever injected (they predate the
    /// injector), one per network at a time. Off: they keep running without peers, with a
    /// `PeersNotInjected` Event, until restarted. `explain --all` lists them first.
    #[arg(long, env = "STELLAR_PEER_INJECTOR_HEAL_UNINJECTED", default_value_t = false,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub heal_uninjected: bool,
}

impl RolloutPolicyArgs {
    /// The planner's settings, with the patch's peer-updates policy.
    pub fn plan(&self, peer_updates: PeerUpdates) -> crate::rollout::plan::PlanSettings {
        use crate::rollout::plan::{OnDeletePolicy, PlanSettings};
        PlanSettings {
            max_concurrent: usize::from(self.max_concurrent_rollouts),
            on_delete: match self.on_delete_policy {
                OnDeletePolicyArg::Delete => OnDeletePolicy::Delete,
                OnDeletePolicyArg::Event => OnDeletePolicy::Event,
            },
            heal_uninjected: self.heal_uninjected,
            peer_updates,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnDeletePolicyArg {
    Delete,
    Event,
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// Multi-document YAML with the StellarNodes to take peers from ('-' for stdin).
    #[arg(long, value_name = "FILE")]
    pub nodes: String,
    /// Multi-document YAML manifests to inject ('-' for stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: String,
    /// Namespace for manifests and StellarNodes that do not name one.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub peers: PeerArgs,
    #[command(flatten)]
    pub patch: PatchArgs,
}

pub use crate::inspect::Output;

/// clap's parser for one of the core's enums (which know no clap): its names are the
/// possible values (shown in `--help`, refused otherwise), then its own `parse`.
fn one_of<T: Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
    parse: fn(&str) -> Option<T>,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names)
        .try_map(move |s: String| parse(&s).ok_or_else(|| format!("{s:?} is not one of {names:?}")))
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// Only this network.
    #[arg(long)]
    pub network: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, default_value = "table", value_parser = one_of(&Output::NAMES, Output::parse))]
    pub output: Output,
    /// Also look every peer address up in DNS and show which do not resolve.
    #[arg(long)]
    pub resolve: bool,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub peers: PeerArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("subject").required(true).multiple(true)
    .args(["pod", "stellarnode", "file", "all"])))]
pub struct ExplainArgs {
    /// A pod in the cluster.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with_all = ["stellarnode", "file"])]
    pub pod: Option<String>,
    /// A StellarNode in the cluster: its pods (or, with none, a pod as the operator makes it).
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "file")]
    pub stellarnode: Option<String>,
    /// Offline: multi-document YAML with the pods, StatefulSets or Deployments to explain,
    /// and any StellarNodes, Namespaces and MutatingWebhookConfigurations they meet
    /// ('-' for stdin). Nothing is read from a cluster.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: Option<String>,
    /// Offline: StellarNodes from this file instead of from -f.
    #[arg(long, value_name = "FILE", requires = "file")]
    pub nodes: Option<String>,
    /// Also list every stale workload and what the rollout loop does next about it, as a
    /// freshly started loop with these rollout flags would decide now.
    #[arg(long)]
    pub all: bool,
    /// Namespace for manifests that do not name one (with -f).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Name of the webhook whose configurations are checked.
    #[arg(long, default_value = crate::explain::WEBHOOK_NAME)]
    pub webhook_name: String,
    /// Output format.
    #[arg(short = 'o', long, default_value = "table", value_parser = one_of(&Output::NAMES, Output::parse))]
    pub output: Output,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub peers: PeerArgs,
    #[command(flatten)]
    pub patch: PatchArgs,
    #[command(flatten)]
    pub policy: RolloutPolicyArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// DNS names of the serving certificate.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// IP addresses of the serving certificate.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
