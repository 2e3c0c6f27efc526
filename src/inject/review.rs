//! A small borrowed view of an AdmissionReview: only what the decision needs.
//!
//! Strings borrow from the request body where JSON allows it; the pod object stays
//! raw until the request turns out to be a Pod CREATE, and then only labels,
//! annotations, container, env, mount and volume names are read from it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The only AdmissionReview version the webhook speaks.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not an AdmissionReview the webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error(
        "body is not a JSON AdmissionReview ({0}); the webhook expects admission.k8s.io/v1 AdmissionReview objects from kube-apiserver"
    )]
    Json(String),
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

#[derive(Deserialize)]
struct ReviewView<'a> {
    #[serde(borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<RequestView<'a>>,
}

/// The fields of an AdmissionRequest the webhook reads.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RequestView<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: KindView<'a>,
    #[serde(borrow, default)]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub operation: Cow<'a, str>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// The object, kept raw (slow path: the pod did not fit [`PodView`] in one pass).
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    /// The object already read as a pod (fast path: one pass over the body).
    #[serde(skip)]
    pub pod: Option<PodView<'a>>,
}

/// One pass: the object is read straight into a [`PodView`].
#[derive(Deserialize)]
struct FastReview<'a> {
    #[serde(borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<FastRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: KindView<'a>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(borrow, default)]
    object: Option<PodView<'a>>,
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

fn check_envelope(api_version: Option<&str>, kind: Option<&str>) -> Result<(), ReviewError> {
    match api_version {
        Some(ADMISSION_API_VERSION) => {}
        other => return Err(ReviewError::Version(other.unwrap_or("").to_owned())),
    }
    match kind {
        Some("AdmissionReview") => Ok(()),
        other => Err(ReviewError::Kind(other.unwrap_or("").to_owned())),
    }
}

/// Parses an AdmissionReview body and returns its request.
///
/// The usual request (a well-formed object) is read in one pass, pod view included.
/// When the object does not fit the pod view (not a pod, wrong types), the body is read
/// again with the object kept raw, so that only a Stellar pod CREATE fails on it.
pub fn parse_review(body: &[u8]) -> Result<RequestView<'_>, ReviewError> {
    if let Ok(fast) = serde_json::from_slice::<FastReview<'_>>(body) {
        check_envelope(fast.api_version.as_deref(), fast.kind.as_deref())?;
        let r = fast.request.ok_or(ReviewError::NoRequest)?;
        return Ok(RequestView {
            uid: r.uid,
            kind: r.kind,
            sub_resource: r.sub_resource,
            namespace: r.namespace,
            operation: r.operation,
            dry_run: r.dry_run,
            object: None,
            pod: r.object,
        });
    }
    let review: ReviewView<'_> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    check_envelope(review.api_version.as_deref(), review.kind.as_deref())?;
    review.request.ok_or(ReviewError::NoRequest)
}

/// The parts of a Pod (or pod template) the patch depends on.
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
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

/// `spec`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    #[serde(borrow, default)]
    pub containers: Vec<ContainerView<'a>>,
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
    pub env: Option<Vec<Named<'a>>>,
    #[serde(borrow, default)]
    pub volume_mounts: Option<Vec<Named<'a>>>,
}

/// Any list entry identified by `name`.
#[derive(Deserialize, Debug, Default)]
pub struct Named<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
}

impl<'a> PodView<'a> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .labels
            .as_ref()?
            .get(key)
            .map(|v| &**v)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .map(|v| &**v)
    }

    pub fn containers(&self) -> &[ContainerView<'a>] {
        self.spec.as_ref().map_or(&[], |s| &s.containers)
    }
}
