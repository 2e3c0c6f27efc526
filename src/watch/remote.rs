//! Links to other clusters: what a link is, read from a labelled Secret or a file.
//!
//! A link Secret lives in the injector's namespace, carries the label
//! `stellar.org/remote-cluster: "true"`, and holds a kubeconfig for the linked
//! cluster under the data key `kubeconfig`. The linked cluster's name is the
//! annotation `stellar.org/cluster-name`, or else the Secret's name. Parsing is pure;
//! only [`Link::client`] builds a client (no I/O either: the first request connects).
//!
//! A kubeconfig from a Secret must be self-contained. It may not run a command
//! (`exec`, `auth-provider`) or name a file (`tokenFile`, certificate and key paths):
//! whoever may write Secrets in the injector's namespace would otherwise run programs
//! in the injector, or send the injector's own ServiceAccount token to a server of
//! their choice. `--remote-kubeconfig NAME=PATH` files are the administrator's own and
//! may use both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The label that marks a link Secret.
pub const REMOTE_LABEL: &str = "stellar.org/remote-cluster";
/// The annotation naming the linked cluster (else the Secret's name).
pub const CLUSTER_NAME_ANNOTATION: &str = "stellar.org/cluster-name";
/// The data key holding the kubeconfig.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The annotation naming the linked cluster's injector namespace, where its rollout
/// flags are read (else this injector's own namespace name).
pub const LEASE_NAMESPACE_ANNOTATION: &str = "stellar.org/lease-namespace";

/// The clients of the linked clusters, as the StellarNode cache links and unlinks them;
/// the rollout loop reads their rollout flags through them.
#[derive(Default)]
pub struct Linked {
    clusters: std::sync::RwLock<BTreeMap<String, (kube::Client, Option<String>)>>,
}

impl Linked {
    pub fn set(&self, cluster: &str, client: kube::Client, lease_namespace: Option<String>) {
        let mut m = self
            .clusters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.insert(cluster.to_owned(), (client, lease_namespace));
    }

    pub fn remove(&self, cluster: &str) {
        let mut m = self
            .clusters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.remove(cluster);
    }

    /// `(client, flag namespace)` of a linked cluster; `default_namespace` when its link
    /// names none.
    pub fn get(&self, cluster: &str, default_namespace: &str) -> Option<(kube::Client, String)> {
        let m = self
            .clusters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(cluster).map(|(c, ns)| {
            (
                c.clone(),
                ns.clone().unwrap_or_else(|| default_namespace.to_owned()),
            )
        })
    }

    pub fn is_empty(&self) -> bool {
        self.clusters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }
}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self
            .clusters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_list().entries(m.keys()).finish()
    }
}

/// Why a link could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "Secret {secret}: no data key {KUBECONFIG_KEY:?}; put the linked cluster's kubeconfig there (see `stellar-peer-injector remote-secret`)"
    )]
    NoKubeconfig { secret: String },
    #[error("{origin}: cannot read it; check --remote-kubeconfig NAME=PATH")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: the kubeconfig is not UTF-8 text")]
    NotText { origin: String },
    #[error("{origin}: cannot read the kubeconfig")]
    Kubeconfig {
        origin: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("{origin}: the kubeconfig has no context to use; set current-context")]
    NoContext { origin: String },
    #[error(
        "Secret {secret}: the kubeconfig uses {what}, which a link Secret may not; embed a token or client certificate data instead (`stellar-peer-injector remote-secret` writes one)"
    )]
    NotSelfContained { secret: String, what: &'static str },
    #[error(
        "{origin}: cluster name {name:?} must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit; set the annotation {CLUSTER_NAME_ANNOTATION}"
    )]
    BadName { origin: String, name: String },
    #[error(
        "{origin}: it links cluster {name:?}, which is this cluster's own --cluster-name; a cluster is never linked to itself (fix the annotation {CLUSTER_NAME_ANNOTATION}, or delete the Secret)"
    )]
    OwnName { origin: String, name: String },
    #[error("{origin}: cannot make a client from the kubeconfig")]
    Client {
        origin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where a link comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkOrigin {
    /// A link Secret (its name, in the injector's namespace).
    Secret(String),
    /// `--remote-kubeconfig NAME=PATH`.
    File(PathBuf),
}

impl std::fmt::Display for LinkOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(s) => write!(f, "Secret {s}"),
            Self::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// One linked cluster.
#[derive(Clone, Debug)]
pub struct Link {
    pub cluster: String,
    pub origin: LinkOrigin,
    kubeconfig: Kubeconfig,
    /// Hash of the kubeconfig text (and lease namespace): a changed Secret relinks, an
    /// unchanged one does not.
    pub fingerprint: u64,
    /// [`LEASE_NAMESPACE_ANNOTATION`], when the link names it.
    pub lease_namespace: Option<String>,
}

/// Is `name` usable as a cluster name (and metric label)?
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl Link {
    /// Reads a link Secret. Pure.
    pub fn from_secret(secret: &Secret) -> Result<Self, LinkError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let origin = LinkOrigin::Secret(name.clone());
        let cluster = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLUSTER_NAME_ANNOTATION))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| name.clone());
        let raw = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KUBECONFIG_KEY))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(KUBECONFIG_KEY))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| LinkError::NoKubeconfig {
                secret: name.clone(),
            })?;
        let text = String::from_utf8(raw).map_err(|_| LinkError::NotText {
            origin: origin.to_string(),
        })?;
        let mut link = Self::parse(cluster, origin, &text)?;
        link.lease_namespace = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEASE_NAMESPACE_ANNOTATION))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if let Some(ns) = &link.lease_namespace {
            link.fingerprint ^= xxhash_rust::xxh3::xxh3_64(ns.as_bytes()).rotate_left(1);
        }
        if let Some(what) = not_self_contained(&link.kubeconfig) {
            return Err(LinkError::NotSelfContained { secret: name, what });
        }
        Ok(link)
    }

    /// Reads `--remote-kubeconfig NAME=PATH`.
    pub fn from_file(cluster: &str, path: &Path) -> Result<Self, LinkError> {
        let origin = LinkOrigin::File(path.to_owned());
        let text = std::fs::read_to_string(path).map_err(|e| LinkError::Read {
            origin: origin.to_string(),
            source: e,
        })?;
        Self::parse(cluster.to_owned(), origin, &text)
    }

    fn parse(cluster: String, origin: LinkOrigin, text: &str) -> Result<Self, LinkError> {
        if !valid_cluster_name(&cluster) {
            return Err(LinkError::BadName {
                origin: origin.to_string(),
                name: cluster,
            });
        }
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| LinkError::Kubeconfig {
            origin: origin.to_string(),
            source: e,
        })?;
        if kubeconfig.current_context.is_none() && kubeconfig.contexts.len() != 1 {
            return Err(LinkError::NoContext {
                origin: origin.to_string(),
            });
        }
        Ok(Self {
            fingerprint: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
            cluster,
            origin,
            kubeconfig,
            lease_namespace: None,
        })
    }

    /// A client for the linked cluster.
    pub async fn client(&self) -> Result<kube::Client, LinkError> {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| LinkError::Client {
            origin: self.origin.to_string(),
            source,
        };
        let options = KubeConfigOptions {
            context: self
                .kubeconfig
                .current_context
                .clone()
                .or_else(|| self.kubeconfig.contexts.first().map(|c| c.name.clone())),
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &options)
            .await
            .map_err(|e| err(Box::new(e)))?;
        kube::Client::try_from(config).map_err(|e| err(Box::new(e)))
    }
}

/// The first thing that makes a kubeconfig depend on the injector's own files or
/// programs, if any.
fn not_self_contained(kc: &Kubeconfig) -> Option<&'static str> {
    for a in kc.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
        if a.exec.is_some() {
            return Some("an exec credential plugin");
        }
        if a.auth_provider.is_some() {
            return Some("an auth-provider");
        }
        if a.token_file.is_some() {
            return Some("tokenFile");
        }
        if a.client_certificate.is_some() || a.client_key.is_some() {
            return Some("a client certificate or key file path");
        }
    }
    for c in kc.clusters.iter().filter_map(|c| c.cluster.as_ref()) {
        if c.certificate_authority.is_some() {
            return Some("a certificate-authority file path");
        }
    }
    None
}

/// The links the given Secrets ask for, one per cluster: when two Secrets name the same
/// cluster, the first by Secret name wins. A Secret that cannot be read keeps the link
/// it gave before (`previous`: cluster → link), if any, so an edit gone wrong never
/// unlinks a cluster. Returns the links and the errors, in Secret-name order. Pure.
pub fn desired_links<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    previous: &BTreeMap<String, Link>,
    own: Option<&str>,
) -> (BTreeMap<String, Link>, Vec<LinkError>) {
    let mut sorted: Vec<&Secret> = secrets.into_iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut links = BTreeMap::new();
    let mut errors = Vec::new();
    for s in sorted {
        match Link::from_secret(s) {
            Ok(l) if own == Some(l.cluster.as_str()) => errors.push(LinkError::OwnName {
                origin: format!("Secret {}", s.metadata.name.clone().unwrap_or_default()),
                name: l.cluster.clone(),
            }),
            Ok(l) => {
                links.entry(l.cluster.clone()).or_insert(l);
            }
            Err(e) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                if let Some(old) = previous
                    .values()
                    .find(|l| l.origin == LinkOrigin::Secret(name.clone()))
                {
                    links
                        .entry(old.cluster.clone())
                        .or_insert_with(|| old.clone());
                }
                errors.push(e);
            }
        }
    }
    (links, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
current-context: b
clusters:
- name: b
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: Y2E=
users:
- name: reader
  user:
    token: abc
contexts:
- name: b
  context: {cluster: b, user: reader}
";

    fn secret(name: &str, cluster: Option<&str>, kubeconfig: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        if let Some(c) = cluster {
            s.metadata.annotations =
                Some([(CLUSTER_NAME_ANNOTATION.to_owned(), c.to_owned())].into());
        }
        s.data = Some(
            [(
                KUBECONFIG_KEY.to_owned(),
                ByteString(kubeconfig.as_bytes().to_vec()),
            )]
            .into(),
        );
        s
    }

    #[test]
    fn reads_a_link_secret() {
        let l = Link::from_secret(&secret("link-b", Some("cluster-b"), KUBECONFIG)).expect("link");
        assert_eq!(l.cluster, "cluster-b");
        assert_eq!(l.origin, LinkOrigin::Secret("link-b".into()));
        let l = Link::from_secret(&secret("b", None, KUBECONFIG)).expect("link");
        assert_eq!(l.cluster, "b", "the Secret's name by default");
    }

    #[test]
    fn refuses_what_a_secret_may_not_do_and_says_what_to_do() {
        for (kc, what) in [
            (
                KUBECONFIG.replace(
                    "token: abc",
                    "tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
                ),
                "tokenFile",
            ),
            (
                KUBECONFIG.replace(
                    "token: abc",
                    "exec: {apiVersion: client.authentication.k8s.io/v1, command: sh}",
                ),
                "exec",
            ),
            (
                KUBECONFIG.replace("token: abc", "client-certificate: /etc/tls.crt"),
                "file path",
            ),
            (
                KUBECONFIG.replace(
                    "certificate-authority-data: Y2E=",
                    "certificate-authority: /etc/ca.crt",
                ),
                "certificate-authority",
            ),
        ] {
            let e = Link::from_secret(&secret("b", None, &kc)).expect_err("refused");
            let msg = e.to_string();
            assert!(matches!(e, LinkError::NotSelfContained { .. }), "{msg}");
            assert!(msg.contains(what) && msg.contains("remote-secret"), "{msg}");
        }
        let mut s = secret("b", None, KUBECONFIG);
        s.data = None;
        assert!(matches!(
            Link::from_secret(&s),
            Err(LinkError::NoKubeconfig { .. })
        ));
        for bad in ["{", "42", "kind: Config\nclusters: nope"] {
            assert!(
                matches!(
                    Link::from_secret(&secret("b", None, bad)),
                    Err(LinkError::Kubeconfig { .. } | LinkError::NoContext { .. })
                ),
                "{bad}"
            );
        }
        let e = Link::from_secret(&secret("b", Some("Cluster B"), KUBECONFIG)).expect_err("name");
        assert!(e.to_string().contains(CLUSTER_NAME_ANNOTATION), "{e}");
        let mut s = secret("b", None, "");
        s.data = Some([(KUBECONFIG_KEY.to_owned(), ByteString(vec![0xff, 0xfe]))].into());
        assert!(matches!(
            Link::from_secret(&s),
            Err(LinkError::NotText { .. })
        ));
    }

    #[test]
    fn names_are_metric_labels() {
        for ok in ["b", "eu-west-1", "c2"] {
            assert!(valid_cluster_name(ok), "{ok}");
        }
        for bad in ["", "-b", "b-", "B", "a.b", &"x".repeat(64)] {
            assert!(!valid_cluster_name(bad), "{bad}");
        }
    }

    #[test]
    fn one_link_per_cluster_and_a_broken_edit_keeps_the_old_link() {
        let (links, errors) = desired_links(
            &[
                secret("z", Some("b"), KUBECONFIG),
                secret("a", Some("b"), KUBECONFIG),
            ],
            &BTreeMap::new(),
            Some("me"),
        );
        assert!(errors.is_empty());
        assert_eq!(
            links["b"].origin,
            LinkOrigin::Secret("a".into()),
            "first by name wins"
        );
        // Secret "a" is edited into something unreadable: cluster b stays linked.
        let (again, errors) = desired_links(&[secret("a", Some("b"), "{")], &links, None);
        assert_eq!(errors.len(), 1);
        assert_eq!(again["b"].fingerprint, links["b"].fingerprint);
        // Deleted: unlinked.
        let (none, _) = desired_links(&[], &links, None);
        assert!(none.is_empty());
        // A Secret naming this very cluster is refused, saying why.
        let (own, errors) =
            desired_links(&[secret("x", Some("me"), KUBECONFIG)], &links, Some("me"));
        assert!(own.is_empty());
        assert!(
            matches!(&errors[..], [LinkError::OwnName { name, .. }] if name == "me"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_changed_kubeconfig_changes_the_fingerprint() {
        let a = Link::from_secret(&secret("b", None, KUBECONFIG)).expect("a");
        let b =
            Link::from_secret(&secret("b", None, &KUBECONFIG.replace("abc", "def"))).expect("b");
        assert_ne!(a.fingerprint, b.fingerprint);
    }
}
