//! Edge: the one way the injector records Events (`events.k8s.io/v1`, through
//! kube-runtime's [`Recorder`], reporting controller `stellar-peer-injector`).
//!
//! Producers (the admission route, the rollout loop, the governing-Service task, the
//! StellarNode problem and peer-resolution checks) hand a [`Notice`] to an
//! [`EventSink`], which never blocks: the queue is bounded, and a notice that finds it
//! full is dropped and counted in `stellar_peer_injector_events_dropped_total`. One task
//! owned by the runtime ([`run`]) records them. Notices marked `dedup` are recorded once
//! per (object, reason, note) within [`DEDUP_WINDOW`], so a StatefulSet that recreates
//! the same broken pod does not flood its StellarNode with Events.
//!
//! Each notice is recorded as an Event of its own. A long-lived [`Recorder`] would fold
//! every Event with the same (object, type, reason, action) within 6 minutes into one
//! series and keep the first note: a second, different problem of the same StellarNode
//! (another `knownPeers` mistake, another rollout) would only raise a count on the first
//! one's text. So each notice gets a fresh `Recorder`, and repeats are dropped by the
//! deduplication above instead.
//!
//! What a notice is and which repeats are dropped is the core's
//! ([`stellar_peer_core::events`], re-exported here).

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::{Mutex, mpsc};

use crate::obs::metrics::{ErrorKind, Metrics};
pub use stellar_peer_core::events::*;

/// Hands notices to the events task; cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Notice>,
    metrics: Arc<Metrics>,
}

/// The receiving end, for [`run`]; shared by the task's restarts.
#[derive(Clone)]
pub struct EventQueue {
    rx: Arc<Mutex<mpsc::Receiver<Notice>>>,
}

impl EventSink {
    /// A sink and its queue of `capacity` notices.
    pub fn channel(capacity: usize, metrics: Arc<Metrics>) -> (Self, EventQueue) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self { tx, metrics },
            EventQueue {
                rx: Arc::new(Mutex::new(rx)),
            },
        )
    }

    /// Queues `n`; when the queue is full (or gone) drops it, counts it and returns false.
    pub fn send(&self, n: Notice) -> bool {
        match self.tx.try_send(n) {
            Ok(()) => true,
            Err(e) => {
                self.metrics.events_dropped.inc();
                let n = match e {
                    mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
                };
                tracing::debug!(reason = n.reason, object = ?n.regarding.name, "event queue full; Event dropped");
                false
            }
        }
    }
}

impl EventQueue {
    /// Takes the next notice waiting, if any (for tests).
    pub fn try_recv(&self) -> Option<Notice> {
        self.rx.try_lock().ok()?.try_recv().ok()
    }
}

/// Records queued notices until shutdown cancels it.
pub async fn run(
    queue: EventQueue,
    client: kube::Client,
    reporter: Reporter,
    metrics: Arc<Metrics>,
) {
    let mut dedup = Dedup::new(DEDUP_WINDOW);
    let mut rx = queue.rx.lock().await;
    while let Some(n) = rx.recv().await {
        if !dedup.admit(&n, Instant::now()) {
            tracing::debug!(reason = n.reason, object = ?n.regarding.name, "same Event recorded recently; not again");
            continue;
        }
        let ev = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.into(),
            note: Some(fit_note(&n.note)),
            action: n.action.into(),
            secondary: None,
        };
        // A fresh Recorder: no series folding (see the module docs).
        let recorder = Recorder::new(client.clone(), reporter.clone());
        if let Err(e) = recorder.publish(&ev, &n.regarding).await {
            metrics.errors(ErrorKind::EventPublish);
            let hint = crate::causes::ApiCause::of(&e).hint(
                "the injector's RBAC must allow create on events.k8s.io events",
                "the object's namespace must exist",
            );
            tracing::warn!(error = %crate::causes::Chain(&e), reason = n.reason, kind = ?n.regarding.kind, namespace = ?n.regarding.namespace,
                name = ?n.regarding.name, "cannot record Event. {hint}");
        }
    }
    // Every sink is gone: only at shutdown. Wait to be cancelled rather than restart.
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let notice = |name: &str, note: &str| {
            Notice::warning(stellar_node("ns", name, None), "R", "A", note.into())
        };
        let metrics = Arc::new(Metrics::new());
        let (sink, queue) = EventSink::channel(2, metrics.clone());
        assert!(sink.send(notice("a", "1")));
        assert!(sink.send(notice("b", "2")));
        assert!(!sink.send(notice("c", "3")), "full");
        assert!(
            metrics
                .encode()
                .contains("stellar_peer_injector_events_dropped_total 1"),
            "{}",
            metrics.encode()
        );
        assert_eq!(queue.try_recv().map(|n| n.note), Some("1".to_owned()));
        assert!(sink.send(notice("d", "4")), "room again");
    }
}
