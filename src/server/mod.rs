//! Edge: the HTTPS admission listener and the plain-HTTP admin listener.

pub mod admission;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::obs::metrics::Metrics;
use crate::watch::cache::PeerCache;
pub use admission::AdmissionState;

/// Timeouts that protect the listener from slow or silent clients.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header: Duration,
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            body: Duration::from_secs(10),
        }
    }
}

/// The admission router.
pub fn admission_router(state: Arc<AdmissionState>) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(admission::mutate).fallback(|| async {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed: send an AdmissionReview with POST /mutate\n",
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the admission endpoint is POST /mutate\n",
            )
        })
        .with_state(state)
}

/// Readiness inputs of the admin listener.
pub struct AdminState {
    pub cache: Arc<PeerCache>,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: readiness fails first so endpoints drop the pod before it exits.
    pub draining: Arc<AtomicBool>,
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn admin_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !s.cache.is_synced() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "StellarNode cache not synced yet\n",
        )
            .into_response();
    }
    "ok\n".into_response()
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// Resolves once the stop flag is set (or its sender is gone).
pub use crate::runtime::stopped;

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {addr}: {source}; pick another address with the flag or free the port")]
pub struct BindError {
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        addr: addr.to_string(),
        source,
    })
}

/// The HTTPS server that `serve`, the tests and the benchmarks start:
/// `TlsServer::new(listener, tls, router).drain(d).run(stop)`.
pub struct TlsServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    timeouts: Timeouts,
    drain: Duration,
}

impl TlsServer {
    /// Default handshake and header timeouts, and 10 s of drain (`--drain-timeout`).
    pub fn new(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) -> Self {
        Self {
            listener,
            tls,
            router,
            timeouts: Timeouts::default(),
            drain: Duration::from_secs(10),
        }
    }

    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How long connections may finish their requests once stopped.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Serves until `stop` turns true, then drains connections (keep-alive connections
    /// are closed after their current request) for up to the drain time.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        serve_tls(self, stop).await;
    }
}

async fn serve_tls(server: TlsServer, mut stop: watch::Receiver<bool>) {
    let TlsServer {
        listener,
        tls,
        router,
        timeouts,
        drain,
    } = server;
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %crate::causes::Chain(&e), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        // Without this the first response on a connection can wait for a delayed ACK.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let svc = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %crate::causes::Chain(&e), "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %crate::causes::Chain(&e), "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

/// Serves plain HTTP (admin) until `stop` turns true.
pub async fn serve_plain(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let r = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopped(&mut stop).await })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %crate::causes::Chain(&e), "admin listener failed");
    }
}
