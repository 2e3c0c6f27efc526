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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::{Mutex, mpsc};

use crate::metrics::{ErrorKind, Metrics};

/// Notices waiting to be recorded, at most.
pub const QUEUE_CAPACITY: usize = 512;
/// The same (object, reason, note) is recorded at most once in this window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// `events.k8s.io/v1` refuses a note longer than this (bytes).
pub const MAX_NOTE_BYTES: usize = 1024;

/// One Event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub regarding: ObjectReference,
    /// Warning, else Normal.
    pub warning: bool,
    /// CamelCase, machine-readable (`PeerUnresolvable`).
    pub reason: &'static str,
    /// What the injector did or was doing (`CheckPeers`).
    pub action: &'static str,
    /// What happened and what to do.
    pub note: String,
    /// Record it once per (object, reason, note) within [`DEDUP_WINDOW`].
    pub dedup: bool,
}

impl Notice {
    /// A deduplicated Warning.
    pub fn warning(
        regarding: ObjectReference,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) -> Self {
        Self {
            regarding,
            warning: true,
            reason,
            action,
            note,
            dedup: true,
        }
    }
}

/// A reference to StellarNode `namespace/name`.
pub fn stellar_node(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("stellar.org/v1alpha1".into()),
        kind: Some("StellarNode".into()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: uid.map(str::to_owned),
        ..Default::default()
    }
}

/// `note` cut to what the API accepts, on a character boundary, marked with `…`.
pub fn fit_note(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_owned();
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

type DedupKey = (
    Option<String>,
    Option<String>,
    Option<String>,
    &'static str,
    String,
);

/// Pure: which deduplicated notices to record.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    seen: HashMap<DedupKey, Instant>,
}

impl Dedup {
    /// Keys remembered at most; past it expired keys are forgotten, then all.
    const MAX_KEYS: usize = 4096;

    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
        }
    }

    /// Whether to record `n` at `now` (always, unless it asks for deduplication).
    pub fn admit(&mut self, n: &Notice, now: Instant) -> bool {
        if !n.dedup {
            return true;
        }
        let r = &n.regarding;
        let key = (
            r.kind.clone(),
            r.namespace.clone(),
            r.name.clone(),
            n.reason,
            n.note.clone(),
        );
        if let Some(at) = self.seen.get(&key)
            && now.saturating_duration_since(*at) < self.window
        {
            return false;
        }
        if self.seen.len() >= Self::MAX_KEYS {
            let window = self.window;
            self.seen
                .retain(|_, at| now.saturating_duration_since(*at) < window);
            if self.seen.len() >= Self::MAX_KEYS {
                self.seen.clear();
            }
        }
        self.seen.insert(key, now);
        true
    }
}

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
            tracing::warn!(error = %crate::causes::Chain(&e), reason = n.reason, kind = ?n.regarding.kind, namespace = ?n.regarding.namespace,
                name = ?n.regarding.name, "cannot record Event; check the injector's RBAC for events.k8s.io events (create)");
        }
    }
    // Every sink is gone: only at shutdown. Wait to be cancelled rather than restart.
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(name: &str, note: &str) -> Notice {
        Notice::warning(
            stellar_node("ns", name, None),
            "InvalidKnownPeers",
            "ReadStellarNode",
            note.into(),
        )
    }

    #[test]
    fn the_same_notice_is_recorded_once_per_window() {
        let mut d = Dedup::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(d.admit(&notice("v1", "bad"), t0));
        assert!(!d.admit(&notice("v1", "bad"), t0 + Duration::from_secs(599)));
        assert!(d.admit(&notice("v1", "other"), t0), "another note");
        assert!(d.admit(&notice("v2", "bad"), t0), "another object");
        let mut other_reason = notice("v1", "bad");
        other_reason.reason = "PeersConfigNotMerged";
        assert!(d.admit(&other_reason, t0));
        assert!(d.admit(&notice("v1", "bad"), t0 + Duration::from_secs(600)));
        let mut action = notice("v1", "bad");
        action.dedup = false;
        assert!(
            d.admit(&action, t0) && d.admit(&action, t0),
            "actions are never dropped"
        );
    }

    #[test]
    fn dedup_memory_is_bounded() {
        let mut d = Dedup::new(Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..Dedup::MAX_KEYS * 2 {
            assert!(d.admit(&notice("v", &i.to_string()), t0));
            assert!(d.seen.len() <= Dedup::MAX_KEYS);
        }
    }

    #[test]
    fn notes_fit_the_api_limit() {
        assert_eq!(fit_note("short"), "short");
        let long = "é".repeat(800);
        let fit = fit_note(&long);
        assert!(fit.len() <= MAX_NOTE_BYTES, "{}", fit.len());
        assert!(fit.ends_with('…'));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
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
