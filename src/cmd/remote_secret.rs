//! `stellar-peer-injector remote-secret`: makes a cluster readable by another cluster's
//! injector, and prints the link Secret for that other cluster.
//!
//! In the cluster to be linked ("remote") it applies, server-side and idempotently, a
//! reader ServiceAccount with exactly what a linking injector reads there (see
//! [`cluster_rules`] and [`namespace_rules`]) and a long-lived token for it; then it
//! prints a Secret ([`link_secret_yaml`]) whose kubeconfig holds that token, in the form
//! [`crate::watch::remote::Link::from_secret`] reads. Building the objects and the text is pure;
//! only [`run`] talks to the cluster.
//!
//! The objects are the ones the Helm chart creates with `multicluster.remoteReader.create`
//! (the chart tests compare them): namespaced ones are named [`READER_NAME`], the
//! cluster-scoped ClusterRole and ClusterRoleBinding `READER_NAME-<namespace>`, so that
//! two reader namespaces (or Helm releases) on one cluster never share or fight over one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::watch::remote::{CLUSTER_NAME_ANNOTATION, KUBECONFIG_KEY, REMOTE_LABEL};

pub use crate::watch::remote::LEASE_NAMESPACE_ANNOTATION;
/// Field manager of the server-side applies.
pub const FIELD_MANAGER: &str = "stellar-peer-injector";
/// The reader ServiceAccount, Role, RoleBinding (in the remote namespace), and the prefix
/// of the ClusterRole and ClusterRoleBinding.
pub const READER_NAME: &str = "stellar-peer-injector-remote-reader";
/// The reader's `kubernetes.io/service-account-token` Secret.
pub const TOKEN_SECRET_NAME: &str = "stellar-peer-injector-remote-reader-token";
/// Default of `--remote-namespace` and `--secret-namespace`.
pub const DEFAULT_NAMESPACE: &str = "stellar-peer-injector";
/// The label on every object applied here (the chart sets it too).
pub const COMPONENT_LABEL: (&str, &str) = ("app.kubernetes.io/component", "remote-reader");

/// `stellar-peer-injector remote-secret`.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteSecretArgs {
    /// The kubeconfig context of the cluster to be linked (the one other injectors will read).
    #[arg(long)]
    pub context: String,
    /// The name the other cluster gives this one (its metric label, the link Secret's
    /// annotation stellar.org/cluster-name): 1-63 lower-case letters, digits or '-'.
    #[arg(long)]
    pub name: String,
    /// Kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the reader ServiceAccount in the linked cluster: that cluster's
    /// injector namespace, whose Leases the reader may get. Created when missing.
    #[arg(long, value_name = "NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub remote_namespace: String,
    /// Namespace of the printed link Secret: the OTHER cluster's injector namespace
    /// (its --remote-secret-namespace).
    #[arg(long, value_name = "NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub secret_namespace: String,
    /// API server URL written into the link's kubeconfig, as the other cluster's injector
    /// reaches it (default: the context's cluster server).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// How long to wait for the token controller to fill the reader's
    /// kubernetes.io/service-account-token Secret (a token that does not expire). When it
    /// does not (the controller is off), or with 0s, a TokenRequest token of
    /// --token-duration is used instead.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse_duration)]
    pub token_wait: Duration,
    /// Lifetime of the TokenRequest token used when the Secret's token is not filled (the
    /// API server may shorten it); run the command again before it expires. E.g. 720h, 365d.
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_long_duration)]
    pub token_duration: Duration,
}

/// Why `remote-secret` failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSecretError {
    #[error(
        "--name {0:?}: a cluster name is 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
    )]
    BadName(String),
    #[error(
        "{flag} {value:?} is not a namespace name (lower-case letters, digits, '-', at most 63)"
    )]
    BadNamespace { flag: &'static str, value: String },
    #[error("cannot read the kubeconfig ({origin}); pass --kubeconfig FILE or set KUBECONFIG")]
    ReadKubeconfig {
        origin: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no context {context:?} in the kubeconfig ({origin}); contexts there: {known}; pass one of them with --context (`kubectl config get-contexts`)"
    )]
    UnknownContext {
        context: String,
        origin: String,
        known: String,
    },
    #[error(
        "context {context:?}: its cluster {cluster:?} is not in the kubeconfig or has no server; fix the kubeconfig or pass --server"
    )]
    NoServer { context: String, cluster: String },
    #[error("context {context:?}: cannot read the CA file {path}; fix the kubeconfig")]
    CaFile {
        context: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("context {context:?}: cannot make a client from the kubeconfig; fix the context")]
    Client {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "cannot reach the API server of context {context:?}; check that it is up and the context right (`kubectl --context {context} get ns`)"
    )]
    Unreachable {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the API server of context {context:?} refused its credentials; renew them (log in again) and retry"
    )]
    Unauthorized {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "forbidden to {what} in the cluster of context {context:?}; run this with a context that may create namespaces, ServiceAccounts, Secrets, Roles, ClusterRoles and their bindings (e.g. cluster-admin)"
    )]
    Forbidden {
        what: String,
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {what} in the cluster of context {context:?}; see the API server's answer")]
    Api {
        what: String,
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the TokenRequest for ServiceAccount {namespace}/{READER_NAME} returned no token; retry, or check the API server's --service-account-signing-key-file"
    )]
    NoToken { namespace: String },
    #[error("cannot write the link Secret as YAML")]
    Yaml(#[source] serde_yaml::Error),
}

/// Why a `--token-duration` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenDurationError {
    #[error("{0:?} is not a duration like 720h or 365d")]
    NotANumber(String),
    #[error("{value:?}")]
    Range {
        value: String,
        #[source]
        source: std::time::TryFromFloatSecsError,
    },
    #[error(transparent)]
    Short(#[from] crate::duration::DurationError),
    #[error("{0:?}: a token must live at least 10m (the API server's minimum)")]
    TooShort(String),
}

/// Parses `--token-duration`: `h` (hours) and `d` (days) besides `ms`, `s` and `m`.
pub fn parse_long_duration(s: &str) -> Result<Duration, TokenDurationError> {
    let t = s.trim();
    let hours = |n: &str, per: f64| -> Result<Duration, TokenDurationError> {
        let n: f64 = n
            .parse()
            .map_err(|_| TokenDurationError::NotANumber(t.to_owned()))?;
        Duration::try_from_secs_f64(n * per).map_err(|source| TokenDurationError::Range {
            value: t.to_owned(),
            source,
        })
    };
    let d = if let Some(n) = t.strip_suffix('h') {
        hours(n, 3600.0)?
    } else if let Some(n) = t.strip_suffix('d') {
        hours(n, 86400.0)?
    } else {
        crate::duration::parse_duration(t)?
    };
    if d < Duration::from_secs(600) {
        return Err(TokenDurationError::TooShort(t.to_owned()));
    }
    Ok(d)
}

fn is_namespace_name(s: &str) -> bool {
    crate::watch::remote::valid_cluster_name(s)
}

/// Objects are named after the namespace they serve: `READER_NAME-<namespace>`.
pub fn cluster_object_name(namespace: &str) -> String {
    format!("{READER_NAME}-{namespace}")
}

/// The link Secret's name for cluster `cluster`.
pub fn link_secret_name(cluster: &str) -> String {
    format!("stellar-peer-injector-remote-{cluster}")
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// Cluster-wide: what a linking injector lists and watches (StellarNodes of every
/// namespace), and the validator StatefulSets it lists before taking a network's
/// rollout slot (are they ready?). Nothing else.
pub fn cluster_rules() -> Vec<PolicyRule> {
    vec![
        rule("stellar.org", "stellarnodes", &["get", "list", "watch"]),
        rule("apps", "statefulsets", &["list"]),
    ]
}

/// In the remote (injector) namespace only: the rollout slot Leases, read one by one.
pub fn namespace_rules() -> Vec<PolicyRule> {
    vec![rule("coordination.k8s.io", "leases", &["get"])]
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([(
            COMPONENT_LABEL.0.to_owned(),
            COMPONENT_LABEL.1.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

/// Everything applied in the remote cluster for a reader in `namespace`.
#[derive(Clone, Debug)]
pub struct ReaderObjects {
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role: Role,
    pub role_binding: RoleBinding,
    /// Type `kubernetes.io/service-account-token`; the token controller fills it.
    pub token_secret: Secret,
}

/// The reader's objects for `namespace`. Pure.
pub fn reader_objects(namespace: &str) -> ReaderObjects {
    let ns = Some(namespace);
    let subject = || Subject {
        kind: "ServiceAccount".into(),
        name: READER_NAME.into(),
        namespace: Some(namespace.to_owned()),
        ..Subject::default()
    };
    let cluster_name = cluster_object_name(namespace);
    let mut token_meta = meta(TOKEN_SECRET_NAME, ns);
    token_meta.annotations = Some(BTreeMap::from([(
        "kubernetes.io/service-account.name".to_owned(),
        READER_NAME.to_owned(),
    )]));
    ReaderObjects {
        service_account: ServiceAccount {
            metadata: meta(READER_NAME, ns),
            // The token is only ever used from outside, through the link Secret.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        cluster_role: ClusterRole {
            metadata: meta(&cluster_name, None),
            rules: Some(cluster_rules()),
            ..ClusterRole::default()
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: meta(&cluster_name, None),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: cluster_name.clone(),
            },
            subjects: Some(vec![subject()]),
        },
        role: Role {
            metadata: meta(READER_NAME, ns),
            rules: Some(namespace_rules()),
        },
        role_binding: RoleBinding {
            metadata: meta(READER_NAME, ns),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: READER_NAME.into(),
            },
            subjects: Some(vec![subject()]),
        },
        token_secret: Secret {
            metadata: token_meta,
            type_: Some("kubernetes.io/service-account-token".into()),
            ..Secret::default()
        },
    }
}

/// What the link's kubeconfig holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCredentials {
    /// The linked cluster's name (also the kubeconfig's cluster and context name).
    pub cluster: String,
    pub server: String,
    /// PEM of the CA that verifies the server, if known (else the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    pub token: String,
    /// The reader's namespace (the context's default namespace).
    pub namespace: String,
}

/// A self-contained kubeconfig (no file, no command) for `c`. Pure.
pub fn kubeconfig_yaml(c: &LinkCredentials) -> Result<String, RemoteSecretError> {
    let mut cluster = json!({ "server": c.server });
    if let Some(ca) = &c.ca_pem {
        cluster["certificate-authority-data"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c.cluster, "cluster": cluster}],
        "users": [{"name": READER_NAME, "user": {"token": c.token}}],
        "contexts": [{"name": c.cluster, "context": {
            "cluster": c.cluster, "user": READER_NAME, "namespace": c.namespace}}],
        "current-context": c.cluster,
    });
    serde_yaml::to_string(&kc).map_err(RemoteSecretError::Yaml)
}

/// The link Secret for the other cluster: `secret_namespace` is that cluster's injector
/// namespace. Pure.
pub fn link_secret(
    c: &LinkCredentials,
    secret_namespace: &str,
) -> Result<Secret, RemoteSecretError> {
    let mut m = meta(&link_secret_name(&c.cluster), Some(secret_namespace));
    m.labels = Some(BTreeMap::from([(
        REMOTE_LABEL.to_owned(),
        "true".to_owned(),
    )]));
    m.annotations = Some(BTreeMap::from([
        (CLUSTER_NAME_ANNOTATION.to_owned(), c.cluster.clone()),
        (LEASE_NAMESPACE_ANNOTATION.to_owned(), c.namespace.clone()),
    ]));
    Ok(Secret {
        metadata: m,
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            KUBECONFIG_KEY.to_owned(),
            kubeconfig_yaml(c)?,
        )])),
        ..Secret::default()
    })
}

/// The link Secret as YAML, for `kubectl apply -f -`. Pure.
pub fn link_secret_yaml(
    c: &LinkCredentials,
    secret_namespace: &str,
) -> Result<String, RemoteSecretError> {
    serde_yaml::to_string(&link_secret(c, secret_namespace)?).map_err(RemoteSecretError::Yaml)
}

/// The context's cluster: its server and its CA (data, or the file's contents).
struct ContextCluster {
    server: String,
    ca_pem: Option<Vec<u8>>,
}

fn context_cluster(kc: &Kubeconfig, context: &str) -> Result<ContextCluster, RemoteSecretError> {
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let no_server = || RemoteSecretError::NoServer {
        context: context.to_owned(),
        cluster: cluster_name.clone(),
    };
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(no_server)?;
    let server = cluster.server.clone().ok_or_else(no_server)?;
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok(),
        (None, Some(path)) => {
            Some(
                std::fs::read(path).map_err(|source| RemoteSecretError::CaFile {
                    context: context.to_owned(),
                    path: path.clone(),
                    source,
                })?,
            )
        }
        (None, None) => None,
    };
    Ok(ContextCluster { server, ca_pem })
}

/// Sorts a failed request into what the user should do.
fn classify(what: &str, context: &str, e: kube::Error) -> RemoteSecretError {
    let (what, context) = (what.to_owned(), context.to_owned());
    match &e {
        kube::Error::Api(s) if s.code == 403 => RemoteSecretError::Forbidden {
            what,
            context,
            source: e,
        },
        kube::Error::Api(s) if s.code == 401 => {
            RemoteSecretError::Unauthorized { context, source: e }
        }
        kube::Error::Api(_) => RemoteSecretError::Api {
            what,
            context,
            source: e,
        },
        _ => RemoteSecretError::Unreachable { context, source: e },
    }
}

/// Connects to context `args.context`, applies the reader's objects, gets its token, and
/// returns the link Secret's YAML. Progress goes to stderr.
pub async fn run(args: &RemoteSecretArgs) -> Result<String, RemoteSecretError> {
    if !crate::watch::remote::valid_cluster_name(&args.name) {
        return Err(RemoteSecretError::BadName(args.name.clone()));
    }
    for (flag, value) in [
        ("--remote-namespace", &args.remote_namespace),
        ("--secret-namespace", &args.secret_namespace),
    ] {
        if !is_namespace_name(value) {
            return Err(RemoteSecretError::BadNamespace {
                flag,
                value: value.clone(),
            });
        }
    }
    let origin = args.kubeconfig.as_ref().map_or_else(
        || "KUBECONFIG or ~/.kube/config".to_owned(),
        |p| p.display().to_string(),
    );
    let kc = match &args.kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(|source| RemoteSecretError::ReadKubeconfig {
        origin: origin.clone(),
        source,
    })?;
    let context = args.context.as_str();
    if !kc.contexts.iter().any(|c| c.name == context) {
        let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
        return Err(RemoteSecretError::UnknownContext {
            context: context.to_owned(),
            origin,
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    }
    let here = context_cluster(&kc, context)?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let client_err = |source: Box<dyn std::error::Error + Send + Sync>| RemoteSecretError::Client {
        context: context.to_owned(),
        source,
    };
    let config = kube::Config::from_custom_kubeconfig(kc.clone(), &options)
        .await
        .map_err(|e| client_err(Box::new(e)))?;
    let client = Client::try_from(config).map_err(|e| client_err(Box::new(e)))?;
    client
        .apiserver_version()
        .await
        .map_err(|e| classify("ask the API server its version", context, e))?;

    let ns = args.remote_namespace.as_str();
    ensure_namespace(&client, ns, context).await?;
    let objects = reader_objects(ns);
    apply_all(&client, &objects, context).await?;
    let (token, secret_ca) = token(&client, ns, args, context).await?;
    let creds = LinkCredentials {
        cluster: args.name.clone(),
        server: args.server.clone().unwrap_or(here.server),
        ca_pem: secret_ca.or(here.ca_pem),
        token,
        namespace: ns.to_owned(),
    };
    if creds.ca_pem.is_none() {
        eprintln!(
            "warning: no CA for {}: the link will trust the system's CAs only",
            creds.server
        );
    }
    let yaml = link_secret_yaml(&creds, &args.secret_namespace)?;
    eprintln!(
        "apply the Secret below in the other cluster: `kubectl --context OTHER apply -f -`; its injector needs --remote-secret-namespace={}",
        args.secret_namespace
    );
    Ok(yaml)
}

async fn ensure_namespace(
    client: &Client,
    ns: &str,
    context: &str,
) -> Result<(), RemoteSecretError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let found = api
        .get_opt(ns)
        .await
        .map_err(|e| classify(&format!("get namespace {ns}"), context, e))?;
    if found.is_none() {
        let n = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&PostParams::default(), &n).await {
            Ok(_) => eprintln!("created namespace {ns}"),
            // Made meanwhile by someone else: fine.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(classify(&format!("create namespace {ns}"), context, e)),
        }
    }
    Ok(())
}

async fn apply<K>(api: Api<K>, obj: &K, kind: &str, context: &str) -> Result<(), RemoteSecretError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(obj))
        .await
        .map_err(|e| classify(&format!("apply {kind} {name}"), context, e))?;
    eprintln!("applied {kind} {name}");
    Ok(())
}

async fn apply_all(
    client: &Client,
    o: &ReaderObjects,
    context: &str,
) -> Result<(), RemoteSecretError> {
    let ns = o
        .service_account
        .metadata
        .namespace
        .clone()
        .unwrap_or_default();
    let c = client.clone();
    apply(
        Api::namespaced(c.clone(), &ns),
        &o.service_account,
        "ServiceAccount",
        context,
    )
    .await?;
    apply(Api::all(c.clone()), &o.cluster_role, "ClusterRole", context).await?;
    apply(
        Api::all(c.clone()),
        &o.cluster_role_binding,
        "ClusterRoleBinding",
        context,
    )
    .await?;
    apply(Api::namespaced(c.clone(), &ns), &o.role, "Role", context).await?;
    apply(
        Api::namespaced(c.clone(), &ns),
        &o.role_binding,
        "RoleBinding",
        context,
    )
    .await?;
    apply(Api::namespaced(c, &ns), &o.token_secret, "Secret", context).await
}

/// The reader's token and, from its Secret, the CA: the Secret's long-lived token once
/// the token controller fills it, else a TokenRequest token of `--token-duration`.
async fn token(
    client: &Client,
    ns: &str,
    args: &RemoteSecretArgs,
    context: &str,
) -> Result<(String, Option<Vec<u8>>), RemoteSecretError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + args.token_wait;
    // `--token-wait 0s`: straight to the TokenRequest.
    if !args.token_wait.is_zero() {
        loop {
            let s = secrets.get(TOKEN_SECRET_NAME).await.map_err(|e| {
                classify(&format!("get Secret {ns}/{TOKEN_SECRET_NAME}"), context, e)
            })?;
            let data = s.data.unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|ByteString(b)| b.clone())
                    .filter(|b| !b.is_empty())
            };
            if let Some(t) = text("token").and_then(|t| String::from_utf8(t).ok()) {
                eprintln!(
                    "using the token of Secret {ns}/{TOKEN_SECRET_NAME} (it does not expire)"
                );
                return Ok((t, text("ca.crt")));
            }
            if tokio::time::Instant::now() >= deadline {
                eprintln!(
                    "Secret {ns}/{TOKEN_SECRET_NAME} got no token within --token-wait {:?} (is the token controller of kube-controller-manager off?)",
                    args.token_wait
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "using a TokenRequest token of --token-duration {:?}",
        args.token_duration
    );
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: i64::try_from(args.token_duration.as_secs()).ok(),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let tr = sas
        .create_subresource::<_, TokenRequest>("token", READER_NAME, &PostParams::default(), &req)
        .await
        .map_err(|e| {
            classify(
                &format!("request a token for ServiceAccount {ns}/{READER_NAME}"),
                context,
                e,
            )
        })?;
    let status =
        tr.status
            .filter(|s| !s.token.is_empty())
            .ok_or_else(|| RemoteSecretError::NoToken {
                namespace: ns.to_owned(),
            })?;
    eprintln!(
        "the token expires at {}: run remote-secret again before then and apply its output",
        status.expiration_timestamp.0
    );
    Ok((status.token, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::remote::Link;

    fn creds() -> LinkCredentials {
        LinkCredentials {
            cluster: "eu-west".into(),
            server: "https://127.0.0.1:6443".into(),
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            token: "reader-token".into(),
            namespace: "stellar-system".into(),
        }
    }

    #[test]
    fn the_printed_secret_is_a_link_the_injector_reads() {
        let yaml = link_secret_yaml(&creds(), "injector-ns").expect("yaml");
        let s: Secret = serde_yaml::from_str(&yaml).expect("a Secret");
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("stellar-peer-injector-remote-eu-west")
        );
        assert_eq!(s.metadata.namespace.as_deref(), Some("injector-ns"));
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(REMOTE_LABEL).map(String::as_str), Some("true"));
        let ann = s.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(CLUSTER_NAME_ANNOTATION).map(String::as_str),
            Some("eu-west")
        );
        assert_eq!(
            ann.get(LEASE_NAMESPACE_ANNOTATION).map(String::as_str),
            Some("stellar-system")
        );
        let link = Link::from_secret(&s).expect("accepted by remote::Link::from_secret");
        assert_eq!(link.cluster, "eu-west");
        // `kubectl apply` needs these.
        let v: Value = serde_yaml::from_str(&yaml).expect("yaml");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
    }

    #[test]
    fn the_kubeconfig_is_self_contained() {
        let kc =
            Kubeconfig::from_yaml(&kubeconfig_yaml(&creds()).expect("yaml")).expect("kubeconfig");
        assert_eq!(kc.current_context.as_deref(), Some("eu-west"));
        let cluster = kc.clusters[0].cluster.clone().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster.certificate_authority_data.expect("ca data"))
            .expect("base64");
        assert_eq!(Some(ca), creds().ca_pem);
        assert!(cluster.certificate_authority.is_none());
        let user = kc.auth_infos[0].auth_info.clone().expect("user");
        assert!(
            user.token_file.is_none() && user.exec.is_none() && user.client_certificate.is_none()
        );
        assert!(user.token.is_some());
        let ctx = kc.contexts[0].context.clone().expect("context");
        assert_eq!(ctx.namespace.as_deref(), Some("stellar-system"));
        // No CA: still a link (the system's roots).
        let mut c = creds();
        c.ca_pem = None;
        let yaml = link_secret_yaml(&c, "x").expect("yaml");
        assert!(!yaml.contains("certificate-authority"));
        Link::from_secret(&serde_yaml::from_str(&yaml).expect("secret")).expect("link");
    }

    #[test]
    fn the_reader_may_read_stellarnodes_list_statefulsets_and_get_leases_and_nothing_else() {
        let o = reader_objects("stellar-system");
        type Rule = (Vec<String>, Vec<String>, Vec<String>, bool);
        let rules = |r: &[PolicyRule]| -> Vec<Rule> {
            r.iter()
                .map(|r| {
                    (
                        r.api_groups.clone().unwrap_or_default(),
                        r.resources.clone().unwrap_or_default(),
                        r.verbs.clone(),
                        r.resource_names.is_none() && r.non_resource_urls.is_none(),
                    )
                })
                .collect()
        };
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            rules(o.cluster_role.rules.as_deref().unwrap_or_default()),
            vec![
                (
                    s(&["stellar.org"]),
                    s(&["stellarnodes"]),
                    s(&["get", "list", "watch"]),
                    true
                ),
                (s(&["apps"]), s(&["statefulsets"]), s(&["list"]), true)
            ]
        );
        assert_eq!(
            rules(o.role.rules.as_deref().unwrap_or_default()),
            vec![(
                s(&["coordination.k8s.io"]),
                s(&["leases"]),
                s(&["get"]),
                true
            )]
        );
        assert_eq!(
            o.cluster_role.metadata.name.as_deref(),
            Some("stellar-peer-injector-remote-reader-stellar-system")
        );
        assert_eq!(
            o.cluster_role_binding.role_ref.name,
            "stellar-peer-injector-remote-reader-stellar-system"
        );
        assert_eq!(o.role_binding.role_ref.kind, "Role");
        for subjects in [&o.cluster_role_binding.subjects, &o.role_binding.subjects] {
            let sub = subjects.as_deref().unwrap_or_default();
            assert_eq!(sub.len(), 1);
            assert_eq!(
                (sub[0].kind.as_str(), sub[0].name.as_str()),
                ("ServiceAccount", READER_NAME)
            );
            assert_eq!(sub[0].namespace.as_deref(), Some("stellar-system"));
        }
        for m in [
            &o.service_account.metadata,
            &o.role.metadata,
            &o.role_binding.metadata,
            &o.token_secret.metadata,
        ] {
            assert_eq!(m.namespace.as_deref(), Some("stellar-system"));
        }
        assert_eq!(
            o.token_secret.type_.as_deref(),
            Some("kubernetes.io/service-account-token")
        );
        assert_eq!(
            o.token_secret
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .get("kubernetes.io/service-account.name")
                .map(String::as_str),
            Some(READER_NAME)
        );
        // Server-side apply needs apiVersion and kind in the body.
        let v = serde_json::to_value(&o.cluster_role_binding).expect("json");
        assert_eq!(v["apiVersion"], "rbac.authorization.k8s.io/v1");
        assert_eq!(v["kind"], "ClusterRoleBinding");
    }

    #[test]
    fn the_context_gives_server_and_ca() {
        let kc = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://10.0.0.1', certificate-authority-data: Y2E=}\n\
             contexts:\n- name: ctx\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
        )
        .expect("kubeconfig");
        let c = context_cluster(&kc, "ctx").expect("cluster");
        assert_eq!(c.server, "https://10.0.0.1");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"ca"[..]));
        let e = context_cluster(&kc, "other")
            .err()
            .expect("no such context");
        assert!(e.to_string().contains("--server"), "{e}");
    }

    #[test]
    fn token_durations() {
        assert_eq!(
            parse_long_duration("720h"),
            Ok(Duration::from_secs(720 * 3600))
        );
        assert_eq!(
            parse_long_duration("365d"),
            Ok(Duration::from_secs(365 * 86400))
        );
        assert_eq!(parse_long_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(
            parse_long_duration("5m").is_err(),
            "below the API server's 10 minutes"
        );
        assert!(parse_long_duration("forever").is_err());
    }

    #[test]
    fn bad_inputs_say_what_to_do() {
        let args = RemoteSecretArgs {
            context: "c".into(),
            name: "Cluster B".into(),
            kubeconfig: None,
            remote_namespace: DEFAULT_NAMESPACE.into(),
            secret_namespace: DEFAULT_NAMESPACE.into(),
            server: None,
            token_wait: Duration::ZERO,
            token_duration: Duration::from_secs(3600),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let e = rt.block_on(run(&args)).expect_err("bad name");
        assert!(matches!(e, RemoteSecretError::BadName(_)), "{e}");
        let dir = std::env::temp_dir().join(format!("spi-remote-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("kubeconfig");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\nclusters: []\ncontexts:\n- name: a\n  context: {cluster: x}\nusers: []\n",
        )
        .expect("write");
        let args = RemoteSecretArgs {
            name: "b".into(),
            kubeconfig: Some(file),
            ..args
        };
        let e = rt.block_on(run(&args)).expect_err("unknown context");
        let msg = e.to_string();
        assert!(
            msg.contains("\"c\"") && msg.contains("contexts there: a") && msg.contains("--context"),
            "{msg}"
        );
        let args = RemoteSecretArgs {
            context: "a".into(),
            ..args
        };
        let e = rt.block_on(run(&args)).expect_err("no server");
        assert!(matches!(e, RemoteSecretError::NoServer { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
