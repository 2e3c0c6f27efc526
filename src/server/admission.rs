//! The `/mutate` route: body limits, decoding, the decision, the AdmissionReview answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_body_util::{BodyExt, Limited};
use serde::Serialize;

use crate::cache::PeerCache;
use crate::inject::review::parse_review;
use crate::inject::{Decision, InjectSettings, decide};
use crate::metrics::Metrics;

/// Largest accepted request body (kube-apiserver sends well under 1 MiB for pods).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of the admission route.
pub struct AdmissionState {
    pub cache: Arc<PeerCache>,
    pub settings: InjectSettings,
    pub metrics: Arc<Metrics>,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
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
        m.admission("error", "content-type");
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json: send an admission.k8s.io/v1 AdmissionReview",
        );
    }
    let too_big = || {
        m.admission("error", "too-large");
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
            m.admission("error", "body-timeout");
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
            m.admission("error", "body-read");
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
            m.admission("error", "bad-review");
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let snapshot = state.cache.load();
    let decision = decide(&req, snapshot.as_deref(), &state.settings);
    let uid: &str = &req.uid;
    let resp = match decision {
        Decision::Skip(reason) => {
            m.admission("skipped", reason.as_str());
            tracing::debug!(%uid, reason = reason.as_str(), "allowed without patch");
            Answer::allow(uid)
        }
        Decision::NotReady => {
            m.admission("not_ready", "cache-not-synced");
            tracing::warn!(%uid, "StellarNode cache not synced yet: answering 503 so failurePolicy decides");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "stellar-peer-injector has not synced its StellarNode cache yet; retry shortly",
            );
        }
        Decision::Deny { reason, message } => {
            m.admission("denied", reason.as_str());
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
            patch,
            list,
            node,
            warnings,
        } => {
            let bytes = match serde_json::to_vec(&patch) {
                Ok(b) => b,
                Err(e) => {
                    m.admission("error", "patch-encode");
                    tracing::error!(%uid, error = %e, "cannot encode patch");
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode patch: {e}"),
                    );
                }
            };
            m.admission("injected", "");
            tracing::info!(%uid, %node, network = %list.network, peers = list.known.len(), hash = %list.hash,
                dry_run = req.dry_run.unwrap_or(false), "peers injected");
            return encode_patched(uid, &bytes, &warnings, m);
        }
    };
    encode(&resp, m)
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

/// The injected answer, written directly: the base64 patch goes straight into the
/// output buffer (it needs no JSON escaping), instead of being built as a string and
/// then copied and scanned again by the serialiser.
fn encode_patched(uid: &str, patch: &[u8], warnings: &[String], m: &Metrics) -> Response {
    let b64_len = patch.len().div_ceil(3) * 4;
    let mut out = Vec::with_capacity(160 + uid.len() + b64_len);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    let written = serde_json::to_writer(&mut out, uid).and_then(|()| {
        out.extend_from_slice(br#","allowed":true,"patchType":"JSONPatch","patch":""#);
        let start = out.len();
        out.resize(start + b64_len, 0);
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(patch, &mut out[start..])
            .map_err(|e| serde_json::Error::io(std::io::Error::other(e)))?;
        out.truncate(start + n);
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
            m.admission("error", "response-encode");
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
            m.admission("error", "response-encode");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode response: {e}"),
            )
        }
    }
}
