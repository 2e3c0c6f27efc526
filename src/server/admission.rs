//! The `/mutate` route: body limits, decoding, the decision, the AdmissionReview answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde::Serialize;

use crate::cache::PeerCache;
use crate::events::{EventSink, Notice};
use crate::inject::patch::{PatchShape, build_patch};
use crate::inject::review::parse_review;
use crate::inject::{Decision, InjectSettings, decide};
use crate::metrics::{Admission, Metrics, RequestFailure};
use crate::peers::PeerList;

/// Largest accepted request body (kube-apiserver sends well under 1 MiB for pods).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of the admission route.
pub struct AdmissionState {
    pub cache: Arc<PeerCache>,
    pub settings: InjectSettings,
    pub metrics: Arc<Metrics>,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
    /// Encoded patches of the current snapshot, per peer list and pod shape.
    pub patches: PatchCache,
    /// Where Events about a StellarNode's pods go (never awaited); none in tests.
    pub events: Option<EventSink>,
}

impl AdmissionState {
    /// The state `serve`, tests and benches share: the default body timeout and an
    /// empty patch cache.
    pub fn new(cache: Arc<PeerCache>, settings: InjectSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            cache,
            settings,
            metrics,
            body_timeout: super::Timeouts::default().body,
            patches: PatchCache::default(),
            events: None,
        }
    }

    /// Records Events about StellarNodes' pods through `sink`.
    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }
}

/// Base64-encoded patches, as they go into answers, per peer list and pod shape.
///
/// The patch is a pure function of (shape, list, settings) and a snapshot's lists never
/// change, so an entry stays right while its snapshot is current: the first pod of a
/// StellarNode after each snapshot change pays for building and encoding the patch, the
/// others copy it. A new snapshot version empties the cache; so does reaching
/// [`PatchCache::MAX_ENTRIES`].
#[derive(Default)]
pub struct PatchCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    version: u64,
    entries: HashMap<(usize, PatchShape), CachedPatch>,
}

struct CachedPatch {
    /// Keeps the list alive, so its address (half of the key) cannot be reused by
    /// another list while this entry exists.
    _list: Arc<PeerList>,
    b64: Bytes,
}

impl PatchCache {
    /// Bound on the entries (about 15 KB each with 64 peers).
    pub const MAX_ENTRIES: usize = 1024;

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // The guarded map is always consistent, so a panic elsewhere cannot poison it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The base64 patch for `shape` and `list` of snapshot `version`, and whether it
    /// came from the cache.
    pub fn get_or_encode(
        &self,
        version: u64,
        list: &Arc<PeerList>,
        shape: PatchShape,
        settings: &InjectSettings,
    ) -> Result<(Bytes, bool), serde_json::Error> {
        let key = (Arc::as_ptr(list) as usize, shape);
        {
            let mut inner = self.lock();
            if inner.version != version {
                inner.version = version;
                inner.entries.clear();
            }
            if let Some(hit) = inner.entries.get(&key) {
                return Ok((hit.b64.clone(), true));
            }
        }
        let json = serde_json::to_vec(&build_patch(&key.1, list, settings))?;
        let b64 = Bytes::from(base64::engine::general_purpose::STANDARD.encode(json));
        let mut inner = self.lock();
        if inner.version == version {
            if inner.entries.len() >= Self::MAX_ENTRIES {
                inner.entries.clear();
            }
            inner.entries.insert(
                key,
                CachedPatch {
                    _list: Arc::clone(list),
                    b64: b64.clone(),
                },
            );
        }
        Ok((b64, false))
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into() + "\n",
    )
        .into_response()
}

/// `POST /mutate`.
pub async fn mutate(State(state): State<Arc<AdmissionState>>, request: Request<Body>) -> Response {
    // The whole request, split: the HeaderMap extractor would clone every header.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let m = &state.metrics;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        m.admission(Admission::Error(RequestFailure::ContentType));
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json: send an admission.k8s.io/v1 AdmissionReview",
        );
    }
    let too_big = || {
        m.admission(Admission::Error(RequestFailure::TooLarge));
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return too_big();
    }
    let bytes = match tokio::time::timeout(
        state.body_timeout,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    {
        Err(_) => {
            m.admission(Admission::Error(RequestFailure::BodyTimeout));
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            );
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_big();
        }
        Ok(Err(e)) => {
            m.admission(Admission::Error(RequestFailure::BodyRead));
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            );
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let started = Instant::now();
    let resp = answer(&state, &bytes);
    m.admission_duration
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Decodes, decides and encodes. Synchronous: everything is in memory.
pub fn answer(state: &AdmissionState, body: &[u8]) -> Response {
    let m = &state.metrics;
    let req = match parse_review(body) {
        Ok(r) => r,
        Err(e) => {
            m.admission(Admission::Error(RequestFailure::BadReview));
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let snapshot = state.cache.load();
    let decision = decide(&req, snapshot.as_deref(), &state.settings);
    let uid: &str = &req.uid;
    let resp = match decision {
        Decision::Skip(reason) => {
            m.admission(Admission::Skipped(reason));
            tracing::debug!(%uid, reason = reason.as_str(), "allowed without patch");
            Answer::allow(uid)
        }
        Decision::NotReady => {
            m.admission(Admission::NotReady);
            tracing::warn!(%uid, "StellarNode cache not synced yet: answering 503 so failurePolicy decides");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "stellar-peer-injector has not synced its StellarNode cache yet; retry shortly",
            );
        }
        Decision::Deny { reason, message } => {
            m.admission(Admission::Denied(reason));
            tracing::warn!(%uid, reason = reason.as_str(), %message, "pod refused");
            return encode(
                &Answer {
                    status: Some(Failure {
                        status: "Failure",
                        code: 400,
                        reason: reason.as_str(),
                        message: &message,
                    }),
                    allowed: false,
                    ..Answer::allow(uid)
                },
                m,
            );
        }
        Decision::Inject {
            shape,
            list,
            node,
            warnings,
            config_problem,
        } => {
            let version = snapshot.as_deref().map_or(0, |s| s.version);
            let patch = match state
                .patches
                .get_or_encode(version, &list, shape, &state.settings)
            {
                Ok((b, hit)) => {
                    m.patch_cache(hit);
                    b
                }
                Err(e) => {
                    m.admission(Admission::Error(RequestFailure::PatchEncode));
                    tracing::error!(%uid, error = %crate::causes::Chain(&e), "cannot encode patch");
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode patch: {e}"),
                    );
                }
            };
            m.admission(Admission::Injected);
            let dry_run = req.dry_run.unwrap_or(false);
            tracing::info!(%uid, %node, network = %list.network, peers = list.known.len(), hash = %list.hash,
                dry_run, "peers injected");
            // A dry run must have no side effects (the webhook declares sideEffects: None).
            if let (Some(why), Some(sink), false) = (config_problem, &state.events, dry_run) {
                tracing::warn!(%uid, %node, problem = %why, "merge mode not applied to this pod");
                sink.send(config_notice(&node, snapshot.as_deref(), &why.to_string()));
            }
            return encode_patched(uid, &patch, &warnings, m);
        }
    };
    encode(&resp, m)
}

/// The Warning Event for a pod of StellarNode `node` (`namespace/name`) that merge mode
/// could not rewrite.
fn config_notice(node: &str, snapshot: Option<&crate::peers::PeerSnapshot>, why: &str) -> Notice {
    let (ns, name) = node.split_once('/').unwrap_or(("", node));
    let uid = snapshot
        .and_then(|s| s.node(ns, name))
        .and_then(|e| e.record.uid.as_deref());
    Notice::warning(
        crate::events::stellar_node(ns, name, uid),
        "PeersConfigNotMerged",
        "InjectPeers",
        format!(
            "A pod of this StellarNode did not get the merged config, only env vars and the peers snippet: {why}"
        ),
    )
}

/// `response` of an admission.k8s.io/v1 AdmissionReview without a patch (the injected
/// answer is written by [`encode_patched`]). Written here rather than with kube-core's
/// `AdmissionResponse`, which serialises `patch` as an array of numbers instead of the
/// base64 string the API defines.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Failure<'a>>,
}

impl<'a> Answer<'a> {
    fn allow(uid: &'a str) -> Self {
        Self {
            uid,
            allowed: true,
            status: None,
        }
    }
}

/// `response.status` of a denial (a metav1.Status).
#[derive(Serialize)]
struct Failure<'a> {
    status: &'static str,
    code: u16,
    reason: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct Review<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: &'a Answer<'a>,
}

/// The injected answer, written directly around the cached base64 patch (which needs
/// no JSON escaping).
fn encode_patched(uid: &str, patch_b64: &[u8], warnings: &[String], m: &Metrics) -> Response {
    let mut out = Vec::with_capacity(160 + uid.len() + patch_b64.len());
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    let written = serde_json::to_writer(&mut out, uid).and_then(|()| {
        out.extend_from_slice(br#","allowed":true,"patchType":"JSONPatch","patch":""#);
        out.extend_from_slice(patch_b64);
        out.push(b'"');
        if !warnings.is_empty() {
            out.extend_from_slice(br#","warnings":"#);
            serde_json::to_writer(&mut out, warnings)?;
        }
        out.extend_from_slice(b"}}");
        Ok(())
    });
    match written {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            out,
        )
            .into_response(),
        Err(e) => {
            m.admission(Admission::Error(RequestFailure::ResponseEncode));
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode response: {e}"),
            )
        }
    }
}

fn encode(answer: &Answer<'_>, m: &Metrics) -> Response {
    let review = Review {
        api_version: crate::inject::review::ADMISSION_API_VERSION,
        kind: "AdmissionReview",
        response: answer,
    };
    match serde_json::to_vec(&review) {
        Ok(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            v,
        )
            .into_response(),
        Err(e) => {
            m.admission(Admission::Error(RequestFailure::ResponseEncode));
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode response: {e}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::review::parse_review;
    use crate::nodes::{NodeKind, NodeRecord};
    use crate::peers::{Lookup, PeerSettings, PeerSnapshot};

    const REVIEW: &[u8] = include_bytes!("../../tests/fixtures/validator-pod-review.json");

    /// Testnet validators in namespace `stellar`.
    fn validators(names: &[&str]) -> Vec<NodeRecord> {
        names
            .iter()
            .map(|n| NodeRecord::new("stellar", n, NodeKind::Validator, "testnet"))
            .collect()
    }

    fn snapshot(version: u64, names: &[&str]) -> PeerSnapshot {
        PeerSnapshot::build(version, &validators(names), &PeerSettings::default())
    }

    fn shape_and_list(body: &[u8], snap: &PeerSnapshot) -> (PatchShape, Arc<PeerList>) {
        let req = parse_review(body).expect("review");
        match decide(&req, Some(snap), &InjectSettings::default()) {
            Decision::Inject { shape, list, .. } => (shape, list),
            other => panic!("expected injection, got {other:?}"),
        }
    }

    fn decoded(b64: &Bytes) -> json_patch::Patch {
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        serde_json::from_slice(&json).expect("patch")
    }

    #[test]
    fn cached_patch_is_the_built_patch_and_is_reused() {
        let settings = InjectSettings::default();
        let snap = snapshot(7, &["validator-1", "validator-2", "validator-3"]);
        let (shape, list) = shape_and_list(REVIEW, &snap);
        let cache = PatchCache::default();
        let (first, hit) = cache
            .get_or_encode(7, &list, shape.clone(), &settings)
            .expect("encode");
        assert!(!hit);
        assert_eq!(
            decoded(&first),
            build_patch(&shape, &list, &settings),
            "the cache holds exactly the patch build_patch makes"
        );
        assert_eq!(cache.len(), 1);
        let (again, hit) = cache
            .get_or_encode(7, &list, shape.clone(), &settings)
            .expect("hit");
        assert!(hit);
        assert_eq!(
            again.as_ptr(),
            first.as_ptr(),
            "second request reuses the bytes"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_different_shape_or_list_gets_its_own_patch() {
        let settings = InjectSettings::default();
        let snap = snapshot(1, &["validator-1", "validator-2", "validator-3"]);
        let cache = PatchCache::default();
        let (shape, list) = shape_and_list(REVIEW, &snap);
        let (plain, _) = cache
            .get_or_encode(1, &list, shape, &settings)
            .expect("encode");
        // The same pod after a first injection: its env already holds STELLAR_PEERS.
        let mut v: serde_json::Value = serde_json::from_slice(REVIEW).expect("fixture");
        let mut pod = v["request"]["object"].clone();
        json_patch::patch(&mut pod, &decoded(&plain).0).expect("applies");
        v["request"]["object"] = pod;
        let body = serde_json::to_vec(&v).expect("json");
        let (shape2, list2) = shape_and_list(&body, &snap);
        assert!(Arc::ptr_eq(&list, &list2));
        let (reinjected, hit) = cache
            .get_or_encode(1, &list2, shape2.clone(), &settings)
            .expect("encode");
        assert!(!hit, "another shape is another entry");
        assert_ne!(
            plain, reinjected,
            "replace instead of add for existing entries"
        );
        assert_eq!(
            decoded(&reinjected),
            build_patch(&shape2, &list2, &settings)
        );
        assert_eq!(cache.len(), 2);
        // Another node of the same snapshot: another list, another entry.
        let other = snap.lookup("stellar", "validator-2");
        let Lookup::Found(list3) = other else {
            panic!("{other:?}")
        };
        let (shape3, _) = shape_and_list(REVIEW, &snap);
        let (third, hit) = cache
            .get_or_encode(1, &list3, shape3, &settings)
            .expect("encode");
        assert!(!hit, "another list is another entry");
        assert_ne!(third, plain);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_new_snapshot_empties_the_cache() {
        let settings = InjectSettings::default();
        let old = snapshot(1, &["validator-1", "validator-2"]);
        let new = snapshot(2, &["validator-1", "validator-2", "validator-3"]);
        let cache = PatchCache::default();
        let (shape, list) = shape_and_list(REVIEW, &old);
        let (before, _) = cache
            .get_or_encode(1, &list, shape, &settings)
            .expect("encode");
        let (shape, list) = shape_and_list(REVIEW, &new);
        let (after, hit) = cache
            .get_or_encode(2, &list, shape.clone(), &settings)
            .expect("encode");
        assert!(!hit);
        assert_ne!(before, after, "the new snapshot's list is encoded afresh");
        assert_eq!(decoded(&after), build_patch(&shape, &list, &settings));
        assert_eq!(cache.len(), 1, "the old snapshot's entries are gone");
    }

    #[test]
    fn the_cache_is_bounded() {
        let settings = InjectSettings::default();
        let snap = snapshot(1, &["validator-1", "validator-2"]);
        let (shape, list) = shape_and_list(REVIEW, &snap);
        let cache = PatchCache::default();
        for i in 0..PatchCache::MAX_ENTRIES + 5 {
            let mut s = shape.clone();
            s.container = i;
            cache.get_or_encode(1, &list, s, &settings).expect("encode");
            assert!(cache.len() <= PatchCache::MAX_ENTRIES);
        }
        assert!(!cache.is_empty());
    }

    #[test]
    fn answers_count_cache_hits_and_misses() {
        let cache = Arc::new(PeerCache::new());
        cache.publish(
            &validators(&["validator-1", "validator-2"]),
            &PeerSettings::default(),
        );
        let state = AdmissionState {
            body_timeout: Duration::from_secs(1),
            ..AdmissionState::new(cache, InjectSettings::default(), Arc::new(Metrics::new()))
        };
        for _ in 0..3 {
            assert_eq!(answer(&state, REVIEW).status(), StatusCode::OK);
        }
        let text = state.metrics.encode();
        assert!(
            text.contains(r#"stellar_peer_injector_patch_cache_total{result="miss"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"stellar_peer_injector_patch_cache_total{result="hit"} 2"#),
            "{text}"
        );
    }

    /// A validator pod whose container runs a shell, with merge mode on: the answer
    /// warns, and one Warning Event goes to its StellarNode, never for a dry run.
    #[test]
    fn merge_mode_fallback_queues_an_event_on_the_stellar_node() {
        let cache = Arc::new(PeerCache::new());
        let mut nodes = validators(&["validator-1", "validator-2"]);
        nodes[0].uid = Some("uid-1".into());
        cache.publish(&nodes, &PeerSettings::default());
        let metrics = Arc::new(Metrics::new());
        let (sink, queue) = EventSink::channel(8, metrics.clone());
        let settings = InjectSettings {
            init_image: "injector:1".into(),
            ..InjectSettings::default()
        };
        let state = AdmissionState::new(cache, settings, metrics).with_events(sink);
        let mut v: serde_json::Value = serde_json::from_slice(REVIEW).expect("fixture");
        for c in v["request"]["object"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
        {
            c["command"] = serde_json::json!(["/bin/sh", "-c", "stellar-core run"]);
        }
        let body = serde_json::to_vec(&v).expect("json");
        let resp = answer(&state, &body);
        assert_eq!(resp.status(), StatusCode::OK);
        let n = queue.try_recv().expect("a notice");
        assert_eq!(n.reason, "PeersConfigNotMerged");
        assert!(n.warning && n.dedup);
        assert_eq!(n.regarding.kind.as_deref(), Some("StellarNode"));
        assert_eq!(n.regarding.namespace.as_deref(), Some("stellar"));
        assert_eq!(n.regarding.name.as_deref(), Some("validator-1"));
        assert_eq!(n.regarding.uid.as_deref(), Some("uid-1"));
        assert!(n.note.contains("is not stellar-core"), "{}", n.note);
        assert!(queue.try_recv().is_none());
        v["request"]["dryRun"] = serde_json::json!(true);
        let body = serde_json::to_vec(&v).expect("json");
        assert_eq!(answer(&state, &body).status(), StatusCode::OK);
        assert!(queue.try_recv().is_none(), "no side effect for a dry run");
        // The unchanged pod (no command) is merged: no Event.
        assert_eq!(answer(&state, REVIEW).status(), StatusCode::OK);
        assert!(queue.try_recv().is_none());
    }
}
