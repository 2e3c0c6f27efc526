//! Pure: this cluster's side of the cross-cluster protocol ([`super::coordination`]):
//! which networks it holds and since when, which intents it left standing, who it last
//! waited for, and when it may ask again. The clock is passed in; the injector's loop
//! does the reads and writes this asks for, and tells it what they gave.
//!
//! One validator roll in a network shared with linked clusters goes:
//! 1. [`Linking::start`]: already holding (renew the flag when due), backed off (wait), or ask;
//! 2. asking: read our own flag (a restarted leader may hold it: [`Linking::holding`]),
//!    write `intent`, read the others, [`super::coordination::decide`];
//! 3. [`Decision::Hold`]: write `holding`, then [`Linking::won`]; any other decision: clear
//!    our flag unless it keeps the intent ([`keeps_intent`]), then [`Linking::waits`].
//!
//! After each pass, [`Linking::idle`] names the flags to clear (networks whose validators
//! all settled, and intents not asked for again), and [`Linking::cleared`] forgets them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::coordination::{Decision, FLAG_RENEW, next_retry};

/// Where a network stands before a validator roll in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// We hold its slot and the flag is fresh: roll.
    Holding,
    /// We hold its slot, and the flag is due for renewal: write `holding`, then
    /// [`Linking::holding`], then roll.
    Renew,
    /// We backed off a moment ago: no API calls before the retry is due. The wait.
    BackedOff(String),
    /// Run the protocol.
    Ask,
}

/// Whether a losing decision leaves our `intent` standing (about to win: look again next
/// pass), rather than clearing our flag.
pub fn keeps_intent(decision: &Decision) -> bool {
    matches!(decision, Decision::KeepIntent { .. })
}

/// This cluster's protocol state; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Linking {
    /// Networks whose slot we hold, and when our flag was last written.
    held: BTreeMap<String, Instant>,
    /// Networks whose intent we left standing this pass (cleared when not asked again).
    intents: BTreeSet<String>,
    /// Who we last waited for, per network, so that each change is told once.
    waited: BTreeMap<String, String>,
    /// Networks we backed off from: not asked again before this instant, and the wait
    /// that led to it (it doubles while the slot stays taken).
    retry: BTreeMap<String, (Instant, Duration)>,
}

impl Linking {
    /// Where `network` stands at `now`.
    pub fn start(&self, network: &str, now: Instant) -> Start {
        if let Some(renewed) = self.held.get(network) {
            return if now.saturating_duration_since(*renewed) >= FLAG_RENEW {
                Start::Renew
            } else {
                Start::Holding
            };
        }
        match self.retry.get(network) {
            Some((at, _)) if now < *at => {
                Start::BackedOff(self.waited.get(network).cloned().unwrap_or_default())
            }
            _ => Start::Ask,
        }
    }

    /// Our `holding` flag for `network` was written (renewed), or found still ours.
    pub fn holding(&mut self, network: &str, now: Instant) {
        self.held.insert(network.to_owned(), now);
    }

    /// We won `network`'s slot and wrote `holding`.
    pub fn won(&mut self, network: &str, now: Instant) {
        self.holding(network, now);
        self.intents.remove(network);
        self.waited.remove(network);
        self.retry.remove(network);
    }

    /// We lost (`decision`, waiting for `why`) and, unless it keeps the intent, cleared
    /// our flag. Schedules the next ask (backing off further each time, unless the
    /// intent stands). `true` when `why` is new, to be told.
    pub fn waits(&mut self, network: &str, decision: &Decision, why: &str, now: Instant) -> bool {
        if keeps_intent(decision) {
            self.retry.remove(network);
            self.intents.insert(network.to_owned());
        } else {
            self.intents.remove(network);
        }
        if !self.intents.contains(network) {
            let wait = next_retry(self.retry.get(network).map(|r| r.1));
            self.retry.insert(network.to_owned(), (now + wait, wait));
        }
        if self.waited.get(network).map(String::as_str) == Some(why) {
            return false;
        }
        self.waited.insert(network.to_owned(), why.to_owned());
        true
    }

    /// After a pass: forgets the back-off of networks not asked for in it (they start
    /// afresh), and names the flags to clear: networks held but none of whose validators
    /// is `busy`, and intents not asked for again.
    pub fn idle(&mut self, busy: &BTreeSet<String>, asked: &BTreeSet<String>) -> Vec<String> {
        self.retry.retain(|n, _| asked.contains(n));
        let mut out: Vec<String> = self
            .held
            .keys()
            .filter(|n| !busy.contains(*n))
            .chain(self.intents.iter().filter(|n| !asked.contains(*n)))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Our flag for `network` was cleared. `true` when we held its slot (a release).
    pub fn cleared(&mut self, network: &str) -> bool {
        self.intents.remove(network);
        self.held.remove(network).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::coordination::{RETRY_FIRST, RETRY_MAX};

    fn back_off() -> Decision {
        Decision::BackOff {
            held_by: "b".into(),
        }
    }

    #[test]
    fn a_network_never_asked_for_is_asked_and_a_win_holds_it_until_renewal_is_due() {
        let t0 = Instant::now();
        let mut l = Linking::default();
        assert_eq!(l.start("testnet", t0), Start::Ask);
        l.won("testnet", t0);
        assert_eq!(l.start("testnet", t0 + FLAG_RENEW / 2), Start::Holding);
        assert_eq!(l.start("testnet", t0 + FLAG_RENEW), Start::Renew);
        l.holding("testnet", t0 + FLAG_RENEW);
        assert_eq!(l.start("testnet", t0 + FLAG_RENEW * 3 / 2), Start::Holding);
        assert_eq!(l.start("mainnet", t0), Start::Ask, "per network");
    }

    #[test]
    fn losing_backs_off_doubling_to_the_cap_and_asks_again_when_due() {
        let t0 = Instant::now();
        let mut l = Linking::default();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert_eq!(l.start("testnet", now), Start::Ask);
            l.waits("testnet", &back_off(), "cluster b rolls", now);
            let Some((at, wait)) = l.retry.get("testnet").copied() else {
                panic!("no retry scheduled")
            };
            waits.push(wait);
            assert_eq!(
                l.start("testnet", at - Duration::from_millis(1)),
                Start::BackedOff("cluster b rolls".into()),
                "no API calls before the retry is due"
            );
            now = at;
        }
        assert_eq!(waits[0], RETRY_FIRST);
        assert_eq!(waits[1], RETRY_FIRST * 2);
        assert_eq!(*waits.last().expect("waits"), RETRY_MAX);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn each_wait_is_told_once_while_it_stays_the_same() {
        let t0 = Instant::now();
        let mut l = Linking::default();
        assert!(l.waits("testnet", &back_off(), "cluster b rolls", t0));
        assert!(!l.waits("testnet", &back_off(), "cluster b rolls", t0));
        assert!(l.waits("testnet", &back_off(), "cluster c rolls", t0));
        l.won("testnet", t0);
        assert!(
            l.waits("testnet", &back_off(), "cluster c rolls", t0),
            "a win forgets the last wait"
        );
    }

    #[test]
    fn a_kept_intent_asks_again_next_pass_without_backing_off() {
        let t0 = Instant::now();
        let mut l = Linking::default();
        l.waits("testnet", &back_off(), "b", t0);
        let keep = Decision::KeepIntent {
            waiting_for: vec!["z".into()],
        };
        assert!(keeps_intent(&keep) && !keeps_intent(&back_off()));
        l.waits("testnet", &keep, "z", t0);
        assert_eq!(l.start("testnet", t0), Start::Ask, "no back-off");
        // Asked for this pass: the intent stays; not asked for the next: it is cleared.
        let asked = BTreeSet::from(["testnet".to_owned()]);
        assert!(l.idle(&BTreeSet::new(), &asked).is_empty());
        assert_eq!(l.idle(&BTreeSet::new(), &BTreeSet::new()), ["testnet"]);
        assert!(!l.cleared("testnet"), "an intent is not a held slot");
        assert!(l.idle(&BTreeSet::new(), &BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_held_slot_is_released_once_no_validator_of_the_network_is_busy() {
        let t0 = Instant::now();
        let mut l = Linking::default();
        l.won("testnet", t0);
        let busy = BTreeSet::from(["testnet".to_owned()]);
        assert!(l.idle(&busy, &BTreeSet::new()).is_empty(), "still rolling");
        assert_eq!(l.idle(&BTreeSet::new(), &BTreeSet::new()), ["testnet"]);
        assert!(l.cleared("testnet"));
        assert_eq!(l.start("testnet", t0), Start::Ask);
        // A clear that failed leaves it held: named again next pass.
        l.won("testnet", t0);
        assert_eq!(l.idle(&BTreeSet::new(), &BTreeSet::new()), ["testnet"]);
        assert_eq!(l.idle(&BTreeSet::new(), &BTreeSet::new()), ["testnet"]);
    }

    #[test]
    fn a_network_not_asked_for_in_a_pass_starts_its_back_off_afresh() {
        let t0 = Instant::now();
        let mut l = Linking::default();
        l.waits("testnet", &back_off(), "b", t0);
        l.waits("testnet", &back_off(), "b", t0);
        assert_eq!(l.retry["testnet"].1, RETRY_FIRST * 2);
        l.idle(&BTreeSet::new(), &BTreeSet::new());
        assert_eq!(l.start("testnet", t0), Start::Ask);
        l.waits("testnet", &back_off(), "b", t0);
        assert_eq!(l.retry["testnet"].1, RETRY_FIRST);
    }
}
