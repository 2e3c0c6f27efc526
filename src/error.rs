//! The one error type of the edges.

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot bind {addr}: {source}; pick another address with the flag or free the port")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "cannot build a Kubernetes client: {0}; pass --kubeconfig, set KUBECONFIG, or run in a pod with a ServiceAccount"
    )]
    KubeConfig(String),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(
        "task {0} ended unexpectedly (see the log above); the injector stopped so that it can be restarted"
    )]
    TaskEnded(&'static str),
    #[error(transparent)]
    RenderConfig(#[from] crate::config::render::RenderError),
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Tls(_) => "tls",
            Self::Bind { .. } => "bind",
            Self::Kube(_) => "kube",
            Self::KubeConfig(_) => "kubeconfig",
            Self::Config(_) => "config",
            Self::Input { .. } => "input",
            Self::Io(_) => "io",
            Self::TaskEnded(_) => "task_ended",
            Self::RenderConfig(_) => "render_config",
            Self::Dns(_) => "dns",
        }
    }
}
