//! Quorum safety across linked clusters: one cluster at a time rolls the validators of
//! a network that has validators in several clusters.
//!
//! Each cluster keeps, per such network, a *flag* in its own namespace (a Lease named
//! [`flag_name`]), written only by its own rollout leader: absent, `intent`, or
//! `holding`. Linked clusters only read it (a `get`, so the remote reader needs no
//! write access anywhere). Before its first validator roll in the network, a cluster:
//! 1. writes `intent`;
//! 2. then reads every linked cluster's flag with a fresh `get` (a quorum read);
//! 3. decides with [`decide`]: another `holding`, or an `intent` of a cluster whose
//!    name sorts first, makes it back off (clear its flag) and wait; an `intent` of a
//!    cluster whose name sorts later makes it keep its intent and ask again (that one
//!    backs off); nobody else makes it write `holding` and roll.
//!
//! It keeps `holding` while any of its validators of the network is rolling, not
//! ready, or just acted on, renewing it, and clears it when they are all settled.
//!
//! Why this is safe: a cluster writes its flag before it reads the others'. Of two
//! clusters that both end up holding, take the one whose last read came later: that
//! read came after the other's flag was written and before it was cleared, so it saw
//! the flag and could not have decided to hold. Within a cluster, the usual
//! `--max-concurrent-rollouts` applies, so together never more than that roll.
//!
//! Chosen over a Lease in one designated cluster because every cluster only writes
//! in its own API server (the link stays read-only), no cluster is special, and a
//! linked cluster that cannot be read stops only the networks it has validators in
//! (they wait: [`Decision::Unknown`]), never the others.
//!
//! Flags expire: one not renewed for [`FLAG_TTL`] counts as absent, so a cluster whose
//! injector is gone for good does not block the others forever. A holder that comes
//! back takes its own fresh `holding` flag up again.
//!
//! A flag that expired says nothing of the roll it covered: an injector that died in
//! the middle of one leaves a validator starting. So the read also looks at the
//! linked cluster's validator StatefulSets of the network (fresh `list`s, by their
//! instance label), and one that is not settled by the loop's own rule
//! ([`super::observe::sts_state`]) makes this cluster back off as a holder would
//! ([`Seen::NotReady`]). That is the local rule across the link: a validator of the
//! network that is unavailable, whoever caused it, holds the network's slot (unless
//! its operator marked it `stellar.org/rollout: skip-wait`). The flags stay, because
//! readiness alone races: two clusters that both see everything settled would both
//! start.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

/// How long a flag counts without renewal.
pub const FLAG_TTL: Duration = Duration::from_secs(90);
/// How often a held flag is renewed.
pub const FLAG_RENEW: Duration = Duration::from_secs(20);
/// After backing off, the first wait before asking again; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between two tries of a network whose slot another cluster holds
/// (well under [`FLAG_TTL`], so a released slot is taken soon).
pub const RETRY_MAX: Duration = Duration::from_secs(16);

/// The wait before the next try, after a back-off that followed a wait of `previous`.
pub fn next_retry(previous: Option<Duration>) -> Duration {
    previous.map_or(RETRY_FIRST, |p| (p * 2).min(RETRY_MAX))
}

/// The annotation naming a flag's network (its name is a hash).
pub const FLAG_NETWORK_ANNOTATION: &str = "stellar.org/network";

/// Where a cluster is in the protocol for one network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Intent,
    Holding,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Holding => "holding",
        }
    }
}

/// A linked cluster's flag for the network, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No flag, or an expired one.
    Clear,
    Flag(Phase),
    /// No `holding` flag, but this validator workload of the network there
    /// (`namespace/name`) is not settled: it may be the end of a roll whose flag
    /// expired.
    NotReady(String),
    /// It could not be read: the reason.
    Unknown(String),
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write `holding` and roll.
    Hold,
    /// Keep the intent and ask again: these clusters (sorting later) back off.
    KeepIntent { waiting_for: Vec<String> },
    /// Clear the flag and wait: this cluster rolls, or goes first.
    BackOff { held_by: String },
    /// Clear the flag and wait: a validator of the network there is not ready.
    NotReady { cluster: String, workload: String },
    /// A linked cluster with validators of the network cannot be read: clear the flag
    /// and wait, since it may be rolling.
    Unknown { cluster: String, why: String },
}

impl Decision {
    /// What a cluster that did not win waits for, as its log line says it (`None`:
    /// it holds). Pure.
    pub fn waits_for(&self) -> Option<String> {
        match self {
            Self::Hold => None,
            Self::KeepIntent { waiting_for } => Some(format!(
                "linked clusters {} to back off",
                waiting_for.join(", ")
            )),
            Self::BackOff { held_by } => Some(format!(
                "linked cluster {held_by}, which rolls this network's validators or goes first"
            )),
            Self::NotReady { cluster, workload } => Some(format!(
                "validator {workload} of linked cluster {cluster} to be ready"
            )),
            Self::Unknown { cluster, why } => Some(format!(
                "linked cluster {cluster}, whose rollout state cannot be read ({why})"
            )),
        }
    }
}

/// The protocol's decision for cluster `me`, after writing its intent, from the
/// linked clusters' flags. Pure.
pub fn decide(me: &str, others: &[(String, Seen)]) -> Decision {
    if let Some((c, Seen::Unknown(why))) =
        others.iter().find(|(_, s)| matches!(s, Seen::Unknown(_)))
    {
        return Decision::Unknown {
            cluster: c.clone(),
            why: why.clone(),
        };
    }
    if let Some((c, _)) = others
        .iter()
        .find(|(_, s)| *s == Seen::Flag(Phase::Holding))
    {
        return Decision::BackOff { held_by: c.clone() };
    }
    if let Some((c, Seen::NotReady(w))) =
        others.iter().find(|(_, s)| matches!(s, Seen::NotReady(_)))
    {
        return Decision::NotReady {
            cluster: c.clone(),
            workload: w.clone(),
        };
    }
    let mut first: Vec<&String> = others
        .iter()
        .filter(|(c, s)| *s == Seen::Flag(Phase::Intent) && c.as_str() < me)
        .map(|(c, _)| c)
        .collect();
    first.sort();
    if let Some(c) = first.first() {
        return Decision::BackOff {
            held_by: (*c).clone(),
        };
    }
    let later: Vec<String> = others
        .iter()
        .filter(|(_, s)| *s == Seen::Flag(Phase::Intent))
        .map(|(c, _)| c.clone())
        .collect();
    if later.is_empty() {
        Decision::Hold
    } else {
        Decision::KeepIntent { waiting_for: later }
    }
}

/// The first of a linked cluster's validator StatefulSets that is not settled by the
/// rollout loop's rule and not released by `stellar.org/rollout: skip-wait`, as
/// `namespace/name`. Pure.
pub fn unsettled_validator(sets: &[StatefulSet]) -> Option<String> {
    sets.iter()
        .filter_map(super::observe::sts_state)
        .find(|w| !w.settled && w.control != super::controls::Control::SkipWait)
        .map(|w| format!("{}/{}", w.key.namespace, w.key.name))
}

/// The flag Lease's name for `network` (network names need not be valid object names).
pub fn flag_name(network: &str) -> String {
    let d = Sha256::digest(network.as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("stellar-peer-injector-net-{hex}")
}

/// `cluster/phase` in `holderIdentity`.
fn holder(cluster: &str, phase: Phase) -> String {
    format!("{cluster}/{}", phase.as_str())
}

/// Reads a flag Lease: its cluster and phase, if it is set and fresh at `now`. Pure.
pub fn read_flag(lease: &Lease, now: Timestamp) -> Option<(String, Phase)> {
    let spec = lease.spec.as_ref()?;
    let (cluster, phase) = spec.holder_identity.as_deref()?.rsplit_once('/')?;
    let phase = match phase {
        "intent" => Phase::Intent,
        "holding" => Phase::Holding,
        _ => return None,
    };
    let MicroTime(renewed) = spec.renew_time.as_ref()?;
    let ttl = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    (now.duration_since(*renewed).as_secs() < ttl).then(|| (cluster.to_owned(), phase))
}

/// Our flag for `network` in `phase`, as written at `now`. Pure.
pub fn flag_lease(cluster: &str, network: &str, phase: Phase, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(flag_name(network)),
            annotations: Some([(FLAG_NETWORK_ANNOTATION.to_owned(), network.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder(cluster, phase)),
            lease_duration_seconds: Some(FLAG_TTL.as_secs() as i32),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(v: &[(&str, Seen)]) -> Vec<(String, Seen)> {
        v.iter()
            .map(|(c, s)| ((*c).to_owned(), s.clone()))
            .collect()
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        let mut d = None;
        let waits: Vec<u64> = (0..6)
            .map(|_| {
                let w = next_retry(d);
                d = Some(w);
                w.as_secs()
            })
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 16, 16]);
        assert!(RETRY_MAX < FLAG_TTL);
    }

    #[test]
    fn alone_it_holds() {
        assert_eq!(decide("b", &[]), Decision::Hold);
        assert_eq!(
            decide("b", &seen(&[("a", Seen::Clear), ("c", Seen::Clear)])),
            Decision::Hold
        );
    }

    #[test]
    fn a_holder_anywhere_makes_it_back_off() {
        for other in ["a", "c"] {
            assert_eq!(
                decide("b", &seen(&[(other, Seen::Flag(Phase::Holding))])),
                Decision::BackOff {
                    held_by: other.into()
                }
            );
        }
    }

    #[test]
    fn between_intents_the_first_name_goes_first() {
        assert_eq!(
            decide("b", &seen(&[("a", Seen::Flag(Phase::Intent))])),
            Decision::BackOff {
                held_by: "a".into()
            }
        );
        assert_eq!(
            decide("a", &seen(&[("b", Seen::Flag(Phase::Intent))])),
            Decision::KeepIntent {
                waiting_for: vec!["b".into()]
            }
        );
        assert_eq!(
            decide(
                "b",
                &seen(&[
                    ("c", Seen::Flag(Phase::Intent)),
                    ("a", Seen::Flag(Phase::Intent))
                ])
            ),
            Decision::BackOff {
                held_by: "a".into()
            }
        );
    }

    #[test]
    fn a_remote_validator_not_ready_makes_it_back_off_unless_another_holds() {
        let not_ready = Seen::NotReady("stellar/b1".into());
        assert_eq!(
            decide("a", &seen(&[("b", not_ready.clone())])),
            Decision::NotReady {
                cluster: "b".into(),
                workload: "stellar/b1".into()
            },
            "an expired flag's roll may still be starting"
        );
        assert_eq!(
            decide(
                "b",
                &seen(&[("c", not_ready), ("a", Seen::Flag(Phase::Holding))])
            ),
            Decision::BackOff {
                held_by: "a".into()
            }
        );
    }

    #[test]
    fn each_wait_names_what_it_waits_for() {
        assert_eq!(Decision::Hold.waits_for(), None);
        let d = Decision::NotReady {
            cluster: "b".into(),
            workload: "stellar/b1".into(),
        };
        assert_eq!(
            d.waits_for().as_deref(),
            Some("validator stellar/b1 of linked cluster b to be ready")
        );
        let d = Decision::KeepIntent {
            waiting_for: vec!["b".into(), "c".into()],
        };
        assert_eq!(
            d.waits_for().as_deref(),
            Some("linked clusters b, c to back off")
        );
    }

    fn sts(name: &str, ready: i32, annotations: &[(&str, &str)]) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "stellar", "generation": 2,
                "labels": {crate::inject::LABEL_NAME: crate::inject::LABEL_NAME_VALUE, crate::inject::LABEL_INSTANCE: name},
                "annotations": annotations.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            },
            "spec": {"replicas": 1, "selector": {}, "serviceName": name, "template": {}},
            "status": {
                "observedGeneration": 2, "replicas": 1, "readyReplicas": ready,
                "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": "r1",
            },
        }))
        .expect("a StatefulSet")
    }

    #[test]
    fn the_first_unsettled_remote_validator_is_named_and_skip_wait_releases_it() {
        assert_eq!(unsettled_validator(&[]), None);
        assert_eq!(unsettled_validator(&[sts("b1", 1, &[])]), None);
        assert_eq!(
            unsettled_validator(&[sts("b1", 1, &[]), sts("b2", 0, &[])]),
            Some("stellar/b2".into())
        );
        assert_eq!(
            unsettled_validator(&[sts(
                "b2",
                0,
                &[(super::super::controls::ANNOTATION_ROLLOUT, "skip-wait")]
            )]),
            None,
            "released by its operator"
        );
        let mut lagging = sts("b1", 1, &[]);
        lagging.metadata.generation = Some(3);
        assert_eq!(
            unsettled_validator(&[lagging]),
            Some("stellar/b1".into()),
            "a status older than its spec is not settled"
        );
    }

    #[test]
    fn an_unreadable_cluster_makes_it_wait() {
        let d = decide(
            "a",
            &seen(&[("b", Seen::Clear), ("c", Seen::Unknown("403".into()))]),
        );
        assert_eq!(
            d,
            Decision::Unknown {
                cluster: "c".into(),
                why: "403".into()
            }
        );
    }

    /// Every interleaving of two clusters running the protocol once (write intent,
    /// read, then hold or back off) ends with at most one holder: the claim of the
    /// module's proof, checked exhaustively on the model.
    #[test]
    fn no_interleaving_of_two_clusters_has_two_holders() {
        #[derive(Clone, Copy, PartialEq)]
        enum Step {
            Write,
            Read,
            Act,
            Done,
        }
        // Steps of a cluster: write intent, read the other, act on what it read.
        fn run(order: &[usize]) -> usize {
            let names = ["a", "b"];
            let mut flag = [Seen::Clear, Seen::Clear];
            let mut read: [Option<Seen>; 2] = [None, None];
            let mut step = [Step::Write; 2];
            for &i in order {
                let o = 1 - i;
                match step[i] {
                    Step::Write => {
                        flag[i] = Seen::Flag(Phase::Intent);
                        step[i] = Step::Read;
                    }
                    Step::Read => {
                        read[i] = Some(flag[o].clone());
                        step[i] = Step::Act;
                    }
                    Step::Act => {
                        let others =
                            [(names[o].to_owned(), read[i].clone().unwrap_or(Seen::Clear))];
                        flag[i] = match decide(names[i], &others) {
                            Decision::Hold => Seen::Flag(Phase::Holding),
                            Decision::KeepIntent { .. } => Seen::Flag(Phase::Intent),
                            _ => Seen::Clear,
                        };
                        step[i] = Step::Done;
                    }
                    Step::Done => {}
                }
            }
            flag.iter()
                .filter(|f| **f == Seen::Flag(Phase::Holding))
                .count()
        }
        // All orders of three steps each.
        let mut orders = vec![vec![]];
        for _ in 0..6 {
            orders = orders
                .into_iter()
                .flat_map(|o: Vec<usize>| {
                    let counts = [0, 1].map(|i| o.iter().filter(|&&x| x == i).count());
                    [0, 1]
                        .into_iter()
                        .filter(move |&i| counts[i] < 3)
                        .map(move |i| {
                            let mut n = o.clone();
                            n.push(i);
                            n
                        })
                })
                .collect();
        }
        assert_eq!(orders.len(), 20);
        for o in &orders {
            assert!(run(o) <= 1, "two holders with order {o:?}");
        }
        assert!(orders.iter().any(|o| run(o) == 1), "somebody can hold");
    }

    #[test]
    fn flags_expire_and_carry_their_cluster() {
        let now = Timestamp::from_second(1_800_000_000).expect("a time");
        let l = flag_lease("eu-1", "my net", Phase::Holding, now);
        assert_eq!(read_flag(&l, now), Some(("eu-1".into(), Phase::Holding)));
        let later = now + std::time::Duration::from_secs(FLAG_TTL.as_secs() + 1);
        assert_eq!(read_flag(&l, later), None, "expired");
        assert!(flag_name("my net").starts_with("stellar-peer-injector-net-"));
        assert_ne!(flag_name("testnet"), flag_name("mainnet"));
        assert_eq!(
            l.metadata.annotations.expect("a")[FLAG_NETWORK_ANNOTATION],
            "my net"
        );
    }
}
