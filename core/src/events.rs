//! Pure: what an Event says ([`Notice`]), how its note is cut to the API's limit, and
//! which repeats are dropped ([`Dedup`], the clock passed in). Recording them is the
//! injector's edge.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;

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
}
