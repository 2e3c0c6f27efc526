//! The one error type of the edges.
//!
//! An [`Error`] stops a command (the process exits with its message), so it is never
//! counted in a metric; failures of background work that is retried are counted in
//! `errors_total{kind}` by [`crate::obs::metrics::ErrorKind`] instead.

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS: {0}")]
    Tls(#[from] crate::server::tls::TlsError),
    #[error(transparent)]
    Bind(#[from] crate::server::BindError),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "cannot build a Kubernetes client: {0}; pass --kubeconfig, set KUBECONFIG, or run in a pod with a ServiceAccount"
    )]
    KubeConfig(#[source] KubeConfigError),
    /// A flag (or a combination of flags) that cannot be used, said in one sentence
    /// that names it; there is no underlying error.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Settings(#[from] crate::inject::SettingsError),
    #[error("{}", crate::causes::chain(.0))]
    Link(#[source] crate::watch::remote::LinkError),
    #[error("{}", crate::causes::chain(.0))]
    RemoteSecret(#[source] crate::cmd::remote_secret::RemoteSecretError),
    #[error("certificate generation failed: {0}")]
    Certs(#[source] rcgen::Error),
    #[error("{0}")]
    Crd(#[source] serde_yaml::Error),
    #[error("{path}: {source}")]
    Input {
        path: String,
        #[source]
        source: InputError,
    },
    #[error(transparent)]
    Inject(#[from] crate::inject::offline::InjectErrors),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(
        "task {0} ended unexpectedly (see the log above); the injector stopped so that it can be restarted"
    )]
    TaskEnded(&'static str),
    #[error(transparent)]
    RenderConfig(#[from] crate::cmd::render_config::RenderError),
    #[error("DNS: {0}")]
    Dns(#[from] crate::watch::dns::DnsError),
}

/// Why no Kubernetes client configuration could be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeConfigError {
    /// `--kubeconfig` (or `KUBECONFIG`) could not be read or used.
    #[error(transparent)]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Neither a kubeconfig nor the in-cluster ServiceAccount was found.
    #[error(transparent)]
    Infer(#[from] kube::config::InferConfigError),
}

pub use crate::inject::offline::InputError;
