//! Pure: which peer addresses of a snapshot to look up, what a lookup means, and when
//! an address that does not resolve is reported.
//!
//! Every address a pod can be given is checked: the validators' own addresses, the
//! `--extra-peers` of each network, and the `validatorConfig.knownPeers` entries of every
//! usable StellarNode. An address that does not resolve opens an *episode*; the metric
//! counts open episodes at once, but the owners are told (an Event) only once the episode
//! has lasted the grace period, so that a validator whose pod is just starting pages no
//! one. Each owner is told once per episode; the episode ends when the address resolves.
//!
//! A lookup that gives no definite answer (a timeout, SERVFAIL) says nothing about the
//! name: it neither opens nor ends an episode. Cluster names are only judged when the
//! DNS server answers for the cluster's domain at all (the canary
//! `kubernetes.default.svc.<domain>`, which every cluster has, resolves): a resolver
//! outside the cluster answers NXDOMAIN for every one of them, which proves nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PeerSnapshot;
use crate::dns::{Answer, DnsError};
use crate::nodes::PEER_ADDRESS_ANNOTATION;

/// A StellarNode an Event can be recorded on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why an address is checked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// The validator known by this address; `annotated` when the address comes from its
    /// `stellar.org/peer-address` annotation (else it is its pod's address).
    Node { node: NodeRef, annotated: bool },
    /// A StellarNode that lists the address in its `validatorConfig.knownPeers`.
    KnownPeer(NodeRef),
    /// A static extra peer of this network (`--extra-peers`).
    Extra(String),
    /// The external address of a validator of this linked cluster.
    Remote(String),
}

impl Owner {
    /// The StellarNode to record an Event on (extra peers have none).
    pub fn node(&self) -> Option<&NodeRef> {
        match self {
            Self::Node { node, .. } | Self::KnownPeer(node) => Some(node),
            Self::Extra(_) | Self::Remote(_) => None,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node { node, .. } => write!(f, "{node} (its own address)"),
            Self::KnownPeer(node) => write!(f, "{node} (validatorConfig.knownPeers)"),
            Self::Extra(net) => write!(f, "extra peers of {net}"),
            Self::Remote(cluster) => write!(f, "a validator of linked cluster {cluster}"),
        }
    }
}

/// One address to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, as pods get it.
    pub address: Arc<str>,
    pub host: String,
    /// The networks whose pods get it.
    pub networks: BTreeSet<String>,
    pub owners: BTreeSet<Owner>,
}

fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// Every address pods of `snap` can be given, with why, sorted by address.
pub fn targets(snap: &PeerSnapshot) -> Vec<Target> {
    let domain = &snap.settings().cluster_domain;
    let mut by_address: BTreeMap<Arc<str>, Target> = BTreeMap::new();
    let mut add = |address: Arc<str>, network: &str, owner: Owner| {
        let t = by_address.entry(address.clone()).or_insert_with(|| Target {
            host: host_of(&address).to_owned(),
            address,
            networks: BTreeSet::new(),
            owners: BTreeSet::new(),
        });
        t.networks.insert(network.to_owned());
        t.owners.insert(owner);
    };
    for entry in snap.nodes() {
        let r = &entry.record;
        if r.problem.is_some() {
            continue; // its pods are refused; it is no peer
        }
        let node = || NodeRef {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        };
        if r.is_peer()
            && let Some(own) = entry.self_address()
        {
            let pod = super::address::pod_address(&r.name, &r.namespace, domain);
            add(
                Arc::from(own),
                &r.network,
                Owner::Node {
                    node: node(),
                    annotated: own != pod,
                },
            );
        }
        // `known` holds the preferred ones too.
        for a in &r.user_peers.known {
            add(Arc::from(a.as_str()), &r.network, Owner::KnownPeer(node()));
        }
    }
    for (net, extras) in &snap.settings().extra.networks {
        for e in extras {
            add(
                Arc::from(e.address.as_str()),
                net,
                Owner::Extra(net.clone()),
            );
        }
    }
    for (net, peers) in snap.networks() {
        for (a, _, from) in peers.origins() {
            if let super::Origin::Remote(cluster) = from {
                add(Arc::from(a), net, Owner::Remote(cluster.to_string()));
            }
        }
    }
    by_address.into_values().collect()
}

/// The name every cluster's DNS answers: the API server's Service.
pub fn canary_name(cluster_domain: &str) -> String {
    format!("kubernetes.default.svc.{cluster_domain}")
}

/// Whether the DNS server answers for the cluster's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterDns {
    /// The canary resolved.
    Serves,
    /// The server answers, but not for the cluster's domain (a resolver outside the
    /// cluster): cluster names are not judged.
    NotServed(String),
    /// The server could not be asked at all: nothing is judged.
    Unreachable(String),
}

impl ClusterDns {
    /// Reads the canary's lookup.
    pub fn from_canary(name: &str, lookup: &Result<Answer, DnsError>) -> Self {
        match lookup {
            Ok(Answer::Addresses(_)) => Self::Serves,
            Ok(Answer::NoSuchName | Answer::NoRecords) => Self::NotServed(format!(
                "the DNS server does not know {name}, so it does not serve this cluster's names"
            )),
            Err(e) if e.is_unreachable() => Self::Unreachable(e.to_string()),
            Err(e) => Self::NotServed(format!("{name}: {e}")),
        }
    }
}

/// True for a name in the cluster's DNS domain.
pub fn is_cluster_name(host: &str, cluster_domain: &str) -> bool {
    host == cluster_domain
        || host
            .strip_suffix(cluster_domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Whether looking `host` up can tell anything, given the canary.
pub fn worth_looking_up(host: &str, cluster: &ClusterDns, cluster_domain: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true; // resolves without asking anyone
    }
    match cluster {
        ClusterDns::Serves => true,
        ClusterDns::NotServed(_) => !is_cluster_name(host, cluster_domain),
        ClusterDns::Unreachable(_) => false,
    }
}

/// Why an address does not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// NXDOMAIN.
    NoSuchName,
    /// The name exists without an A record.
    NoRecords,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSuchName => "NXDOMAIN",
            Self::NoRecords => "no A record",
        }
    }
}

/// What one lookup says about an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Resolves,
    Unresolvable(Why),
    /// Not known: the lookup failed, or was not worth doing (the message says why).
    Unknown(String),
}

/// The status of `host`: `lookup` is `None` when [`worth_looking_up`] said no.
pub fn classify(
    host: &str,
    lookup: Option<&Result<Answer, DnsError>>,
    cluster: &ClusterDns,
    cluster_domain: &str,
) -> Status {
    match lookup {
        None => Status::Unknown(match cluster {
            ClusterDns::Unreachable(e) => e.clone(),
            ClusterDns::NotServed(e) if is_cluster_name(host, cluster_domain) => e.clone(),
            _ => "not looked up".to_owned(),
        }),
        Some(Ok(Answer::Addresses(_))) => Status::Resolves,
        Some(Ok(Answer::NoSuchName)) => Status::Unresolvable(Why::NoSuchName),
        Some(Ok(Answer::NoRecords)) => Status::Unresolvable(Why::NoRecords),
        Some(Err(e)) => Status::Unknown(e.to_string()),
    }
}

/// One open episode.
#[derive(Clone, Debug)]
struct Episode {
    since: Instant,
    why: Why,
    /// Logged as overdue already.
    logged: bool,
    /// Nodes told with an Event already.
    told: BTreeSet<NodeRef>,
}

/// An address past its grace period whose owner is to be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub address: Arc<str>,
    pub why: Why,
    /// How long it has not resolved.
    pub for_: Duration,
    pub owner: Owner,
}

impl Due {
    /// The StellarNode the Event goes on.
    pub fn node(&self) -> Option<&NodeRef> {
        self.owner.node()
    }

    /// The Event's note: what is wrong and what to do.
    pub fn note(&self) -> String {
        let (a, why, secs) = (&self.address, self.why.as_str(), self.for_.as_secs());
        match &self.owner {
            Owner::Node {
                annotated: true, ..
            } => format!(
                "Peer address {a} (annotation {PEER_ADDRESS_ANNOTATION}) has not resolved for {secs} s ({why}), so its peers cannot reach this validator. \
                 Fix the annotation to a name that resolves (or an IPv4 address), or remove it to use the pod's in-cluster address."
            ),
            Owner::Node { node, .. } => format!(
                "Peer address {a} has not resolved for {secs} s ({why}), so its peers cannot reach this validator. \
                 Check that pod {name}-0 exists, and that Service {name}-headless exists and selects it \
                 (the injector creates it unless --create-governing-services=false), or set the annotation {PEER_ADDRESS_ANNOTATION}.",
                name = node.name
            ),
            Owner::KnownPeer(_) => format!(
                "spec.validatorConfig.knownPeers lists {a}, which has not resolved for {secs} s ({why}); stellar-core keeps retrying it \
                 but cannot connect. Fix or remove that entry."
            ),
            Owner::Extra(_) => format!("Extra peer {a} has not resolved for {secs} s ({why})."),
            Owner::Remote(cluster) => format!(
                "Peer address {a} of a validator in linked cluster {cluster} has not resolved for {secs} s ({why}). \
                 Fix its {PEER_ADDRESS_ANNOTATION} annotation or spec.validatorConfig.externalDns.hostname in that cluster."
            ),
        }
    }
}

/// An address that newly passed its grace period (logged once per episode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overdue {
    pub address: Arc<str>,
    pub why: Why,
    pub for_: Duration,
    pub owners: Vec<Owner>,
}

/// What one round of lookups found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Addresses that do not resolve (by their last definite answer), per network; every
    /// network of the round is present, with 0 when all of its addresses resolve.
    pub unresolvable: BTreeMap<String, usize>,
    /// Addresses whose lookup told nothing this round.
    pub unknown: usize,
    /// Newly past the grace period: to log.
    pub overdue: Vec<Overdue>,
    /// Events due (only when the round may report).
    pub due: Vec<Due>,
    /// Addresses whose episode ended: they resolve now.
    pub recovered: Vec<Arc<str>>,
}

/// The open episodes, from round to round.
#[derive(Debug)]
pub struct Tracker {
    grace: Duration,
    open: HashMap<Arc<str>, Episode>,
}

impl Tracker {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            open: HashMap::new(),
        }
    }

    /// Takes one round's statuses (for every current target) at `now`. With
    /// `may_report` (this replica records the Events: the leader) owners past the grace
    /// period and not yet told are returned as due, and count as told; without it they
    /// stay untold, so that whoever reports later still tells them.
    pub fn observe(
        &mut self,
        round: &[(Target, Status)],
        now: Instant,
        may_report: bool,
    ) -> Report {
        let mut report = Report::default();
        let current: BTreeSet<&Arc<str>> = round.iter().map(|(t, _)| &t.address).collect();
        self.open.retain(|a, _| current.contains(a));
        for (t, status) in round {
            for n in &t.networks {
                report.unresolvable.entry(n.clone()).or_insert(0);
            }
            match status {
                Status::Resolves => {
                    if self.open.remove(&t.address).is_some() {
                        report.recovered.push(t.address.clone());
                    }
                }
                Status::Unresolvable(why) => {
                    let e = self.open.entry(t.address.clone()).or_insert(Episode {
                        since: now,
                        why: *why,
                        logged: false,
                        told: BTreeSet::new(),
                    });
                    e.why = *why;
                }
                Status::Unknown(_) => report.unknown += 1,
            }
            let Some(e) = self.open.get_mut(&t.address) else {
                continue;
            };
            for n in &t.networks {
                *report.unresolvable.entry(n.clone()).or_insert(0) += 1;
            }
            let for_ = now.saturating_duration_since(e.since);
            if for_ < self.grace {
                continue;
            }
            if !e.logged {
                e.logged = true;
                report.overdue.push(Overdue {
                    address: t.address.clone(),
                    why: e.why,
                    for_,
                    owners: t.owners.iter().cloned().collect(),
                });
            }
            if !may_report {
                continue;
            }
            for owner in &t.owners {
                if let Some(node) = owner.node()
                    && e.told.insert(node.clone())
                {
                    report.due.push(Due {
                        address: t.address.clone(),
                        why: e.why,
                        for_,
                        owner: owner.clone(),
                    });
                }
            }
        }
        report
    }

    /// Addresses in an open episode now.
    pub fn open(&self) -> usize {
        self.open.len()
    }
}

/// One round of lookups.
#[derive(Debug)]
pub struct Round {
    pub cluster: ClusterDns,
    pub statuses: Vec<(Target, Status)>,
    /// Lookups that failed (no answer, SERVFAIL, ...).
    pub failed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{NodeKind, NodeRecord};
    use crate::peers::{ExtraPeers, PeerSettings};

    fn settings() -> PeerSettings {
        PeerSettings {
            extra: ExtraPeers::parse(
                "networks:\n  testnet:\n    - address: core-live-a.stellar.org\n      preferred: true\n",
            )
            .expect("extra"),
            ..PeerSettings::default()
        }
    }

    fn snapshot() -> PeerSnapshot {
        let mut v1 = NodeRecord::new("ns", "v1", NodeKind::Validator, "testnet");
        v1.uid = Some("u1".into());
        let mut v2 = NodeRecord::new("ns", "v2", NodeKind::Validator, "testnet");
        v2.peer_address = Some("v2.example.org".into());
        let mut h = NodeRecord::new("ns", "h", NodeKind::Horizon, "testnet");
        h.user_peers.known = vec![
            "core-live-a.stellar.org:11625".into(),
            "x.example.org:11625".into(),
        ];
        let mut off = NodeRecord::new("ns", "off", NodeKind::Validator, "testnet");
        off.suspended = true;
        let mut bad = NodeRecord::new("ns", "bad", NodeKind::Validator, "testnet");
        bad.problem = Some(crate::nodes::Defect::Missing { field: "network" }.into());
        bad.user_peers.known = vec!["never.example.org:11625".into()];
        let m = NodeRecord::new("main", "m1", NodeKind::Validator, "mainnet");
        PeerSnapshot::build(1, &[v1, v2, h, off, bad, m], &settings())
    }

    fn node(ns: &str, name: &str, uid: Option<&str>) -> NodeRef {
        NodeRef {
            namespace: ns.into(),
            name: name.into(),
            uid: uid.map(Into::into),
        }
    }

    #[test]
    fn remote_peers_are_checked_and_their_events_go_nowhere_local() {
        let mut b1 = NodeRecord::new("ns", "v1", NodeKind::Validator, "testnet");
        b1.external_hostname = Some("v1.b.example.org".into());
        let local = NodeRecord::new("ns", "v1", NodeKind::Validator, "testnet");
        let snap = PeerSnapshot::build_linked(1, [&local], [("b", &b1)], &settings());
        let t = targets(&snap);
        let remote = t
            .iter()
            .find(|t| &*t.address == "v1.b.example.org:11625")
            .expect("remote target");
        assert_eq!(remote.owners, BTreeSet::from([Owner::Remote("b".into())]));
        let owner = remote.owners.first().expect("owner");
        assert_eq!(
            owner.node(),
            None,
            "no Event on the local StellarNode of the same name"
        );
        let due = Due {
            address: remote.address.clone(),
            why: Why::NoSuchName,
            for_: Duration::from_secs(120),
            owner: owner.clone(),
        };
        assert!(due.note().contains("linked cluster b"), "{}", due.note());
    }

    #[test]
    fn targets_cover_own_addresses_extras_and_known_peers() {
        let t = targets(&snapshot());
        let addrs: Vec<&str> = t.iter().map(|t| &*t.address).collect();
        assert_eq!(
            addrs,
            [
                "core-live-a.stellar.org:11625",
                "m1-0.m1-headless.main.svc.cluster.local:11625",
                "v1-0.v1-headless.ns.svc.cluster.local:11625",
                "v2.example.org:11625",
                "x.example.org:11625",
            ],
            "no suspended validator, nothing of a malformed node"
        );
        assert_eq!(t[0].host, "core-live-a.stellar.org");
        assert_eq!(
            t[0].owners,
            BTreeSet::from([
                Owner::KnownPeer(node("ns", "h", None)),
                Owner::Extra("testnet".into())
            ])
        );
        assert_eq!(
            t[2].owners,
            BTreeSet::from([Owner::Node {
                node: node("ns", "v1", Some("u1")),
                annotated: false
            }])
        );
        assert!(matches!(
            t[3].owners.first(),
            Some(Owner::Node {
                annotated: true,
                ..
            })
        ));
        assert_eq!(t[1].networks, BTreeSet::from(["mainnet".to_owned()]));
    }

    #[test]
    fn cluster_names_are_judged_only_when_the_server_serves_the_cluster() {
        let d = "cluster.local";
        assert!(is_cluster_name("v1-0.v1-headless.ns.svc.cluster.local", d));
        assert!(!is_cluster_name("notcluster.local", d));
        assert!(!is_cluster_name("core-live-a.stellar.org", d));
        let canary = canary_name(d);
        assert_eq!(canary, "kubernetes.default.svc.cluster.local");
        let serves = ClusterDns::from_canary(
            &canary,
            &Ok(Answer::Addresses(vec![std::net::Ipv4Addr::new(
                10, 96, 0, 1,
            )])),
        );
        assert_eq!(serves, ClusterDns::Serves);
        let outside = ClusterDns::from_canary(&canary, &Ok(Answer::NoSuchName));
        assert!(matches!(outside, ClusterDns::NotServed(_)));
        let down = ClusterDns::from_canary(&canary, &Err(DnsError::NoServers("none".into())));
        assert!(matches!(down, ClusterDns::Unreachable(_)));
        let host = "v1-0.v1-headless.ns.svc.cluster.local";
        assert!(worth_looking_up(host, &serves, d));
        assert!(!worth_looking_up(host, &outside, d));
        assert!(worth_looking_up("core-live-a.stellar.org", &outside, d));
        assert!(!worth_looking_up("core-live-a.stellar.org", &down, d));
        assert!(
            worth_looking_up("10.0.0.7", &down, d),
            "IP literals resolve trivially"
        );
        // An NXDOMAIN is believed only where the server serves the name.
        let nx = Ok(Answer::NoSuchName);
        assert_eq!(
            classify(host, Some(&nx), &serves, d),
            Status::Unresolvable(Why::NoSuchName)
        );
        assert!(
            matches!(classify(host, None, &outside, d), Status::Unknown(m) if m.contains("does not serve"))
        );
        assert!(matches!(classify(host, None, &down, d), Status::Unknown(_)));
        assert_eq!(
            classify(host, Some(&Ok(Answer::NoRecords)), &serves, d),
            Status::Unresolvable(Why::NoRecords)
        );
        let servfail = Err(DnsError::NoServers("x".into()));
        assert!(matches!(
            classify(host, Some(&servfail), &serves, d),
            Status::Unknown(_)
        ));
    }

    fn target(address: &str, owners: &[Owner]) -> Target {
        Target {
            address: Arc::from(address),
            host: host_of(address).to_owned(),
            networks: BTreeSet::from(["testnet".to_owned()]),
            owners: owners.iter().cloned().collect(),
        }
    }

    #[test]
    fn events_only_after_the_grace_period_once_per_episode() {
        let grace = Duration::from_secs(120);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let v1 = Owner::Node {
            node: node("ns", "v1", None),
            annotated: false,
        };
        let a = target(
            "v1-0.v1-headless.ns.svc.cluster.local:11625",
            std::slice::from_ref(&v1),
        );
        let b = target("ok.example.org:11625", &[Owner::Extra("testnet".into())]);
        let nx = Status::Unresolvable(Why::NoSuchName);
        let mut tr = Tracker::new(grace);
        // The pod is starting: counted at once, nobody paged.
        let r = tr.observe(
            &[(a.clone(), nx.clone()), (b.clone(), Status::Resolves)],
            at(0),
            true,
        );
        assert_eq!(r.unresolvable, BTreeMap::from([("testnet".to_owned(), 1)]));
        assert!(r.due.is_empty() && r.overdue.is_empty());
        // It resolves within the grace period: the episode ends without an Event.
        let r = tr.observe(
            &[(a.clone(), Status::Resolves), (b.clone(), Status::Resolves)],
            at(60),
            true,
        );
        assert_eq!(r.recovered, vec![a.address.clone()]);
        assert_eq!(r.unresolvable["testnet"], 0);
        // A new episode that lasts: one Event when the grace period is over, then none.
        tr.observe(&[(a.clone(), nx.clone())], at(100), true);
        let r = tr.observe(&[(a.clone(), nx.clone())], at(219), true);
        assert!(r.due.is_empty());
        let r = tr.observe(&[(a.clone(), nx.clone())], at(220), true);
        assert_eq!(r.due.len(), 1);
        assert_eq!(r.due[0].owner, v1);
        assert_eq!(r.due[0].for_, Duration::from_secs(120));
        assert_eq!(r.overdue.len(), 1);
        let note = r.due[0].note();
        assert!(
            note.contains("pod v1-0")
                && note.contains("v1-headless")
                && note.contains(PEER_ADDRESS_ANNOTATION),
            "{note}"
        );
        let r = tr.observe(&[(a.clone(), nx.clone())], at(400), true);
        assert!(r.due.is_empty() && r.overdue.is_empty(), "once per episode");
        assert_eq!(r.unresolvable["testnet"], 1);
        // Fixed: the count drops; broken again: a new episode, a new Event after the grace.
        let r = tr.observe(&[(a.clone(), Status::Resolves)], at(410), true);
        assert_eq!(r.unresolvable["testnet"], 0);
        tr.observe(&[(a.clone(), nx.clone())], at(420), true);
        assert_eq!(
            tr.observe(&[(a.clone(), nx.clone())], at(540), true)
                .due
                .len(),
            1
        );
    }

    #[test]
    fn unknown_answers_neither_open_nor_end_an_episode() {
        let mut tr = Tracker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let a = target(
            "a.example.org:11625",
            &[Owner::KnownPeer(node("ns", "h", None))],
        );
        let unknown = Status::Unknown("timeout".into());
        let r = tr.observe(&[(a.clone(), unknown.clone())], t0, true);
        assert_eq!((r.unknown, r.unresolvable["testnet"]), (1, 0));
        tr.observe(
            &[(a.clone(), Status::Unresolvable(Why::NoRecords))],
            t0,
            true,
        );
        let r = tr.observe(&[(a.clone(), unknown)], t0 + Duration::from_secs(10), true);
        assert_eq!(
            r.unresolvable["testnet"], 1,
            "still counted by its last answer"
        );
        assert_eq!(r.due.len(), 1, "and its grace period ran on");
        assert!(
            r.due[0].note().contains("knownPeers"),
            "{}",
            r.due[0].note()
        );
    }

    #[test]
    fn a_standby_tells_nobody_and_the_leader_tells_everyone_once() {
        let mut tr = Tracker::new(Duration::ZERO);
        let t0 = Instant::now();
        let owners = [
            Owner::Node {
                node: node("ns", "v2", None),
                annotated: true,
            },
            Owner::KnownPeer(node("ns", "h", None)),
            Owner::Extra("testnet".into()),
        ];
        let a = target("v2.example.org:11625", &owners);
        let nx = Status::Unresolvable(Why::NoSuchName);
        let r = tr.observe(&[(a.clone(), nx.clone())], t0, false);
        assert!(r.due.is_empty());
        assert_eq!(r.overdue.len(), 1, "logged all the same");
        let r = tr.observe(&[(a.clone(), nx.clone())], t0, true);
        let told: Vec<_> = r
            .due
            .iter()
            .filter_map(|d| d.node())
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(
            told,
            ["v2", "h"],
            "every StellarNode, no Event for extra peers"
        );
        assert!(
            r.due[0].note().contains("annotation"),
            "{}",
            r.due[0].note()
        );
        assert!(r.overdue.is_empty());
        assert!(tr.observe(&[(a.clone(), nx)], t0, true).due.is_empty());
    }

    #[test]
    fn addresses_that_leave_the_snapshot_close_their_episode() {
        let mut tr = Tracker::new(Duration::ZERO);
        let t0 = Instant::now();
        let a = target(
            "a.example.org:11625",
            &[Owner::KnownPeer(node("ns", "h", None))],
        );
        tr.observe(
            &[(a.clone(), Status::Unresolvable(Why::NoSuchName))],
            t0,
            true,
        );
        assert_eq!(tr.open(), 1);
        let r = tr.observe(&[], t0, true);
        assert_eq!(tr.open(), 0);
        assert!(r.unresolvable.is_empty() && r.recovered.is_empty());
    }
}
