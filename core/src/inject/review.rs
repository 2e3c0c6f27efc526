//! A small borrowed view of an AdmissionReview: only what the decision needs.
//!
//! Strings borrow from the request body where JSON allows it. The usual request is
//! read in one pass, its object straight into a [`PodView`] (only labels, annotations,
//! container, env, mount and volume names are kept). An object that does not fit the
//! view (not a pod, wrong types) is kept raw instead, so that only a Stellar pod
//! CREATE fails on it. Both readings are the same [`Request`] type, differing only in
//! how the object is read.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{ANNOTATION_CONFIG_BASE, ANNOTATION_OPT_OUT, LABEL_INSTANCE, LABEL_NAME, LABEL_ROLE};
use crate::nodes::{CAPTIVE_CONFIG_ANNOTATION, CONFIG_MODE_ANNOTATION};

/// The only AdmissionReview version the webhook speaks.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not an AdmissionReview the webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(
        "body is not a JSON AdmissionReview (the body is not UTF-8: {0}); the webhook expects admission.k8s.io/v1 AdmissionReview objects from kube-apiserver"
    )]
    Utf8(#[source] std::str::Utf8Error),
    #[error(
        "body is not a JSON AdmissionReview ({0}); the webhook expects admission.k8s.io/v1 AdmissionReview objects from kube-apiserver"
    )]
    Json(#[source] serde_json::Error),
    #[error(
        "apiVersion {0:?} is not supported; set admissionReviewVersions: [v1] in the MutatingWebhookConfiguration"
    )]
    Version(String),
    #[error("kind {0:?} is not AdmissionReview; the webhook only accepts AdmissionReview objects")]
    Kind(String),
    #[error(
        "AdmissionReview has no request; kube-apiserver always sends one, so check what is calling /mutate"
    )]
    NoRequest,
}

/// The AdmissionReview envelope, its object read as `O`.
#[derive(Deserialize)]
#[serde(bound = "O: Deserialize<'de>")]
struct Review<'a, O> {
    #[serde(borrow, default, rename = "apiVersion", deserialize_with = "opt_text")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<Request<'a, O>>,
}

/// The fields of an AdmissionRequest the webhook reads, its object read as `O`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", bound = "O: Deserialize<'de>")]
pub struct Request<'a, O> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: KindView<'a>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub operation: Cow<'a, str>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(default = "Option::default")]
    pub object: Option<O>,
}

/// The request as [`parse_review`] returns it.
pub type RequestView<'a> = Request<'a, Object<'a>>;

/// `request.object`, as far as it was read.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "Pod is the usual request and lives on the stack once per request; boxing it would add an allocation to every admission for the rare Raw case"
)]
pub enum Object<'a> {
    /// Read in the one pass over the body (the usual request).
    Pod(PodView<'a>),
    /// Kept raw: it did not fit [`PodView`]; read again only for a Stellar pod CREATE.
    Raw(&'a RawValue),
}

impl<'a, O> Request<'a, O> {
    fn map_object<P>(self, f: impl FnOnce(O) -> P) -> Request<'a, P> {
        Request {
            uid: self.uid,
            kind: self.kind,
            sub_resource: self.sub_resource,
            namespace: self.namespace,
            operation: self.operation,
            dry_run: self.dry_run,
            object: self.object.map(f),
        }
    }
}

/// `request.kind`.
#[derive(Deserialize, Debug)]
pub struct KindView<'a> {
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

impl<'a, O> Review<'a, O> {
    /// Checks the envelope and returns the request.
    fn into_request(self) -> Result<Request<'a, O>, ReviewError> {
        match self.api_version.as_deref() {
            Some(ADMISSION_API_VERSION) => {}
            other => return Err(ReviewError::Version(other.unwrap_or("").to_owned())),
        }
        match self.kind.as_deref() {
            Some("AdmissionReview") => {}
            other => return Err(ReviewError::Kind(other.unwrap_or("").to_owned())),
        }
        self.request.ok_or(ReviewError::NoRequest)
    }
}

/// Parses an AdmissionReview body and returns its request.
///
/// The usual request (a well-formed object) is read in one pass, pod view included.
/// When the object does not fit the pod view (not a pod, wrong types), the body is read
/// again with the object kept raw, so that only a Stellar pod CREATE fails on it.
pub fn parse_review(body: &[u8]) -> Result<RequestView<'_>, ReviewError> {
    // JSON is UTF-8: checking it once up front (vectorised) lets serde_json read
    // strings without checking each one again.
    let body = std::str::from_utf8(body).map_err(ReviewError::Utf8)?;
    if let Ok(review) = serde_json::from_str::<Review<'_, PodView<'_>>>(body) {
        return Ok(review.into_request()?.map_object(Object::Pod));
    }
    let review: Review<'_, &RawValue> = serde_json::from_str(body).map_err(ReviewError::Json)?;
    Ok(review.into_request()?.map_object(Object::Raw))
}

/// The parts of a Pod (or pod template) the decision and the patch depend on.
#[derive(Deserialize, Debug, Default)]
pub struct PodView<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<MetaView<'a>>,
    #[serde(borrow, default)]
    pub spec: Option<SpecView<'a>>,
}

/// `metadata`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetaView<'a> {
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub labels: Option<Labels<'a>>,
    #[serde(borrow, default)]
    pub annotations: Option<Annotations<'a>>,
}

/// `metadata.labels`: every value must be a string, but only the two labels the
/// decision reads are kept (no map is built).
#[derive(Debug, Default)]
pub struct Labels<'a> {
    /// `app.kubernetes.io/name`.
    pub name: Option<Cow<'a, str>>,
    /// `app.kubernetes.io/instance`.
    pub instance: Option<Cow<'a, str>>,
    /// `stellar.org/role` (`read-replica` on the operator's read replicas).
    pub role: Option<Cow<'a, str>>,
}

/// `metadata.annotations`: every value must be a string; only the keys the decision
/// reads are kept.
#[derive(Debug, Default)]
pub struct Annotations<'a> {
    /// `stellar.org/inject-peers`.
    pub inject: Option<Cow<'a, str>>,
    /// `stellar.org/peers-config-mode`.
    pub config_mode: Option<Cow<'a, str>>,
    /// `stellar.org/peers-config-base`: the base config of a pod already injected in
    /// merge mode (its `--conf` then names the merged file).
    pub config_base: Option<Cow<'a, str>>,
    /// `stellar.org/captive-core-config`: the captive-core file of a Horizon or
    /// stellar-rpc container that names it where admission cannot see (`envFrom`, the
    /// `--config-path` TOML).
    pub captive_config: Option<Cow<'a, str>>,
}

/// `spec`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    #[serde(borrow, default)]
    pub containers: Vec<ContainerView<'a>>,
    #[serde(borrow, default)]
    pub init_containers: Option<Vec<Named<'a>>>,
    #[serde(borrow, default)]
    pub volumes: Option<Vec<Named<'a>>>,
}

/// One container.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub command: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub args: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub working_dir: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub env: Option<Vec<EnvView<'a>>>,
    #[serde(borrow, default)]
    pub volume_mounts: Option<Vec<MountView<'a>>>,
}

/// Any list entry identified by `name`.
#[derive(Deserialize, Debug, Default)]
pub struct Named<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

/// One `env` entry: its name, and its value when literal.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvView<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub value: Option<Cow<'a, str>>,
    /// Whether it has a `valueFrom` (unreadable at admission).
    #[serde(default, deserialize_with = "present")]
    pub value_from: bool,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<de::IgnoredAny>::deserialize(d)?.is_some())
}

/// One `volumeMounts` entry.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct MountView<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub mount_path: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub sub_path: Option<Cow<'a, str>>,
}

/// Entries the patch finds by name.
pub trait HasName {
    fn name(&self) -> &str;
}

impl HasName for Named<'_> {
    fn name(&self) -> &str {
        &self.name
    }
}

impl HasName for EnvView<'_> {
    fn name(&self) -> &str {
        &self.name
    }
}

impl HasName for MountView<'_> {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<'a> PodView<'a> {
    fn labels(&self) -> Option<&Labels<'a>> {
        self.metadata.as_ref()?.labels.as_ref()
    }

    /// The `app.kubernetes.io/name` label.
    pub fn name_label(&self) -> Option<&str> {
        self.labels()?.name.as_deref()
    }

    /// The `app.kubernetes.io/instance` label.
    pub fn instance_label(&self) -> Option<&str> {
        self.labels()?.instance.as_deref()
    }

    fn annotations(&self) -> Option<&Annotations<'a>> {
        self.metadata.as_ref()?.annotations.as_ref()
    }

    /// The `stellar.org/role` label.
    pub fn role_label(&self) -> Option<&str> {
        self.labels()?.role.as_deref()
    }

    /// The `stellar.org/captive-core-config` annotation.
    pub fn captive_config_annotation(&self) -> Option<&str> {
        self.annotations()?.captive_config.as_deref()
    }

    /// The `stellar.org/inject-peers` annotation.
    pub fn inject_annotation(&self) -> Option<&str> {
        self.annotations()?.inject.as_deref()
    }

    /// The `stellar.org/peers-config-mode` annotation.
    pub fn config_mode_annotation(&self) -> Option<&str> {
        self.annotations()?.config_mode.as_deref()
    }

    /// The `stellar.org/peers-config-base` annotation.
    pub fn config_base_annotation(&self) -> Option<&str> {
        self.annotations()?.config_base.as_deref()
    }

    pub fn containers(&self) -> &[ContainerView<'a>] {
        self.spec.as_ref().map_or(&[], |s| &s.containers)
    }
}

/// A JSON string that borrows from the body unless escapes force a copy. (serde's own
/// `Cow<str>` only borrows as a direct struct field, not inside `Option` or a map.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

fn opt_text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(d)?.map(|t| t.0))
}

/// Reads a string-to-string map, keeping the values of `keys` (the last one wins when
/// a key repeats, as with a map).
fn pick<'de: 'a, 'a, A: MapAccess<'de>, const N: usize>(
    mut map: A,
    keys: [&str; N],
) -> Result<[Option<Cow<'a, str>>; N], A::Error> {
    let mut out = [const { None }; N];
    while let Some(Text(k)) = map.next_key::<Text<'a>>()? {
        let Text(v) = map.next_value::<Text<'a>>()?;
        if let Some(i) = keys.iter().position(|key| *key == k) {
            out[i] = Some(v);
        }
    }
    Ok(out)
}

/// Deserializes a string map through `pick`.
macro_rules! picked_map {
    ($ty:ident, $what:literal, [$($field:ident: $key:expr),+]) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $ty<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                        let [$($field),+] = pick(map, [$($key),+])?;
                        Ok($ty { $($field),+ })
                    }
                }
                d.deserialize_map(V(PhantomData))
            }
        }
    };
}

picked_map!(Labels, "a map of string labels",
    [name: LABEL_NAME, instance: LABEL_INSTANCE, role: LABEL_ROLE]);
picked_map!(Annotations, "a map of string annotations",
    [inject: ANNOTATION_OPT_OUT, config_mode: CONFIG_MODE_ANNOTATION, config_base: ANNOTATION_CONFIG_BASE,
     captive_config: CAPTIVE_CONFIG_ANNOTATION]);
