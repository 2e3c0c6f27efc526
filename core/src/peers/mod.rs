//! Pure peer logic: StellarNodes in, one immutable [`PeerSnapshot`] out.
//!
//! A snapshot groups the peers (validators that are not suspended) by network and
//! answers, for any StellarNode, the exact peer list its pods must get: its own
//! network's peers and that network's static extras, never itself, a stable
//! rendezvous subset when there are more than `max_peers`, sorted, hashed and
//! rendered once per snapshot.

pub mod address;
pub mod extra;
pub mod resolve;
pub mod service;
mod snippet;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

pub use self::extra::{ExtraPeer, ExtraPeers};
use crate::nodes::{NodeKind, NodeProblem, NodeRecord};
pub use snippet::render_config;

/// Settings that shape every snapshot.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    pub cluster_domain: String,
    pub max_peers: usize,
    pub extra: ExtraPeers,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".to_owned(),
            max_peers: 64,
            extra: ExtraPeers::default(),
        }
    }
}

/// Where a peer of a network comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A validator of this cluster (its in-cluster name or its `stellar.org/peer-address`).
    Local,
    /// A validator of the linked cluster of this name (its external address).
    Remote(Arc<str>),
    /// A static extra peer (`--extra-peers`).
    Extra,
}

impl Origin {
    /// `local`, `extra`, or the linked cluster's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Local => "local",
            Self::Remote(c) => c,
            Self::Extra => "extra",
        }
    }
}

#[derive(Clone, Debug)]
struct Peer {
    address: Arc<str>,
    preferred: bool,
    origin: Origin,
    /// Stable hash of the address, the peer's half of the rendezvous score.
    key: u64,
}

/// The peers of one network, sorted by address, without duplicates.
#[derive(Clone, Debug, Default)]
pub struct NetworkPeers {
    peers: Vec<Peer>,
    /// How many of them are StellarNode validators, of this cluster and of linked ones
    /// (the rest are static extras).
    pub validators: usize,
    /// How many of the validators are in linked clusters.
    pub remote_validators: usize,
}

impl NetworkPeers {
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| &*p.address)
    }

    /// `(address, preferred)` pairs, sorted by address.
    pub fn entries(&self) -> impl Iterator<Item = (&str, bool)> {
        self.peers.iter().map(|p| (&*p.address, p.preferred))
    }

    /// `(address, preferred, origin)`, sorted by address.
    pub fn origins(&self) -> impl Iterator<Item = (&str, bool, &Origin)> {
        self.peers
            .iter()
            .map(|p| (&*p.address, p.preferred, &p.origin))
    }
}

/// The peer list one StellarNode's pods get, rendered in every form the patch needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerList {
    pub network: String,
    /// All peers, sorted: `KNOWN_PEERS`.
    pub known: Vec<Arc<str>>,
    /// The preferred ones among them, sorted: `PREFERRED_PEERS`.
    pub preferred: Vec<Arc<str>>,
    /// Content hash over network, known and preferred peers (16 hex digits).
    pub hash: String,
    /// `known` joined with commas, the `STELLAR_PEERS` value.
    pub csv: String,
    /// `known.len()` as text.
    pub count: String,
    /// The stellar-core TOML snippet.
    pub config: String,
}

/// One StellarNode as the snapshot holds it.
#[derive(Debug)]
pub struct NodeEntry {
    pub record: NodeRecord,
    /// The address this node is known by to others; excluded from its own list.
    self_address: Option<Arc<str>>,
    /// The address linked clusters know it by, when it has one: excluded too.
    external_address: Option<Arc<str>>,
    list: OnceLock<Arc<PeerList>>,
}

impl NodeEntry {
    /// The address this node is known by to its peers (validators only).
    pub fn self_address(&self) -> Option<&str> {
        self.self_address.as_deref()
    }
}

/// The outcome of looking a node's peer list up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Arc<PeerList>),
    /// The node is in the cache, but its object is malformed.
    Invalid(NodeProblem),
    /// No such StellarNode.
    Unknown,
}

/// What kind of trouble a StellarNode has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// The object is malformed: it is no peer, and its pods are refused.
    Invalid,
    /// Its `stellar.org/peer-address` annotation is unusable: the in-cluster address is used.
    PeerAddress,
    /// Its `validatorConfig.knownPeers` is unusable: its own extra peers are left out.
    UserPeers,
}

impl ProblemKind {
    /// The reason of the Warning Event recorded on the StellarNode.
    pub fn event_reason(self) -> &'static str {
        match self {
            Self::Invalid => "InvalidStellarNode",
            Self::PeerAddress => "InvalidPeerAddress",
            Self::UserPeers => "InvalidKnownPeers",
        }
    }
}

/// One StellarNode's trouble, for logs, `peers`, metrics and Events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    /// `namespace/name`.
    pub node: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    /// `(namespace, name)` of the StellarNode.
    pub fn node_key(&self) -> (&str, &str) {
        self.node.split_once('/').unwrap_or(("", &self.node))
    }

    /// The note of its Event: what is wrong and what happens meanwhile.
    pub fn note(&self) -> String {
        match self.kind {
            ProblemKind::Invalid => format!(
                "{}; this StellarNode is no peer and its pods are refused until its spec is fixed",
                self.message
            ),
            ProblemKind::PeerAddress | ProblemKind::UserPeers => self.message.clone(),
        }
    }
}

/// The problems of `current` that are not in `told`: each distinct problem is told
/// once, for as long as it lasts (a problem that goes away and comes back is new).
pub fn untold_problems<'a>(
    told: &std::collections::BTreeSet<Problem>,
    current: &'a [Problem],
) -> Vec<&'a Problem> {
    current.iter().filter(|p| !told.contains(*p)).collect()
}

/// A validator of a linked cluster that is no peer here, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemoteProblem {
    pub cluster: String,
    /// `namespace/name` in that cluster.
    pub node: String,
    pub message: String,
}

/// What the snapshot counted of one linked cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteSummary {
    /// Its StellarNodes, of every type.
    pub nodes: usize,
    /// Its validators that are peers here.
    pub peers: usize,
    /// Its validators left out (no usable external address).
    pub excluded: usize,
    /// The networks its validators (peers here or not) belong to, each with those
    /// validators (`namespace`, `name` there): it rolls them too, and a roll here waits
    /// while one of them is not ready.
    pub networks: BTreeMap<String, std::collections::BTreeSet<(String, String)>>,
}

/// An immutable, versioned view of every StellarNode's peers.
#[derive(Debug, Default)]
pub struct PeerSnapshot {
    pub version: u64,
    settings: PeerSettings,
    networks: BTreeMap<String, NetworkPeers>,
    nodes: HashMap<String, HashMap<String, NodeEntry>>,
    node_count: usize,
    /// Nodes that were skipped or corrected, with the reason, sorted.
    pub problems: Vec<Problem>,
    /// Validators of linked clusters left out, with the reason, sorted.
    pub remote_problems: Vec<RemoteProblem>,
    /// Per linked cluster (sorted by name), what it contributed.
    pub remotes: BTreeMap<String, RemoteSummary>,
}

impl PeerSnapshot {
    /// Builds a snapshot of this cluster's StellarNodes. Pure: the same inputs give the
    /// same snapshot.
    pub fn build<'a>(
        version: u64,
        records: impl IntoIterator<Item = &'a NodeRecord>,
        settings: &PeerSettings,
    ) -> Self {
        Self::build_linked(version, records, std::iter::empty(), settings)
    }

    /// Builds a snapshot of this cluster's StellarNodes (`local`) and those of linked
    /// clusters (`remote`: the cluster's name and the node). A remote validator is a peer
    /// of its network by its external address ([`address::external_address`]), or left
    /// out with a [`RemoteProblem`]; it gets no list here (its own cluster serves its
    /// pods). Pure: the same inputs give the same snapshot.
    pub fn build_linked<'a, 'c>(
        version: u64,
        local: impl IntoIterator<Item = &'a NodeRecord>,
        remote: impl IntoIterator<Item = (&'c str, &'a NodeRecord)>,
        settings: &PeerSettings,
    ) -> Self {
        let mut networks: BTreeMap<String, Vec<Peer>> = BTreeMap::new();
        let mut validators: BTreeMap<String, usize> = BTreeMap::new();
        let mut remote_validators: BTreeMap<String, usize> = BTreeMap::new();
        let mut remotes: BTreeMap<String, RemoteSummary> = BTreeMap::new();
        let mut remote_problems = Vec::new();
        let local: Vec<&NodeRecord> = local.into_iter().collect();
        // A remote validator left out matters (and is told) only where this cluster has
        // nodes of its network.
        let local_networks: std::collections::BTreeSet<&str> = local
            .iter()
            .filter(|r| r.problem.is_none())
            .map(|r| r.network.as_str())
            .collect();
        for (cluster, rec) in remote {
            let summary = remotes.entry(cluster.to_owned()).or_default();
            summary.nodes += 1;
            if !rec.is_peer() {
                continue;
            }
            summary
                .networks
                .entry(rec.network.clone())
                .or_default()
                .insert((rec.namespace.clone(), rec.name.clone()));
            match address::external_address(
                rec.peer_address.as_deref(),
                rec.external_hostname.as_deref(),
                &settings.cluster_domain,
            ) {
                Ok(a) => {
                    summary.peers += 1;
                    let address: Arc<str> = Arc::from(a);
                    networks.entry(rec.network.clone()).or_default().push(Peer {
                        key: key_of(&address),
                        address,
                        preferred: true,
                        origin: Origin::Remote(Arc::from(cluster)),
                    });
                    *validators.entry(rec.network.clone()).or_default() += 1;
                    *remote_validators.entry(rec.network.clone()).or_default() += 1;
                }
                Err(_) if !local_networks.contains(rec.network.as_str()) => {}
                Err(e) => {
                    summary.excluded += 1;
                    remote_problems.push(RemoteProblem {
                        cluster: cluster.to_owned(),
                        node: format!("{}/{}", rec.namespace, rec.name),
                        message: format!("left out of {}'s peers: {e}", rec.network),
                    });
                }
            }
        }
        let mut nodes: HashMap<String, HashMap<String, NodeEntry>> = HashMap::new();
        let mut problems = Vec::new();
        let mut node_count = 0;
        for rec in local {
            node_count += 1;
            let mut self_address = None;
            let mut external_address = None;
            let mut rec = rec.clone();
            if rec.problem.is_none() && rec.kind == NodeKind::Validator {
                let addr = node_address(&rec, &settings.cluster_domain, &mut problems);
                external_address = address::external_address(
                    rec.peer_address.as_deref(),
                    rec.external_hostname.as_deref(),
                    &settings.cluster_domain,
                )
                .ok()
                .filter(|a| **a != *addr)
                .map(Arc::from);
                if rec.is_peer() {
                    networks.entry(rec.network.clone()).or_default().push(Peer {
                        key: key_of(&addr),
                        address: addr.clone(),
                        preferred: true,
                        origin: Origin::Local,
                    });
                    *validators.entry(rec.network.clone()).or_default() += 1;
                }
                self_address = Some(addr);
            }
            let node = || format!("{}/{}", rec.namespace, rec.name);
            if let Some(p) = &rec.problem {
                problems.push(Problem {
                    node: node(),
                    kind: ProblemKind::Invalid,
                    message: p.to_string(),
                });
            }
            if let Some(p) = &rec.user_peers_problem {
                problems.push(Problem {
                    node: node(),
                    kind: ProblemKind::UserPeers,
                    message: format!("{p}; its own extra peers are left out until it is fixed"),
                });
            }
            rec.peer_address = None;
            nodes.entry(rec.namespace.clone()).or_default().insert(
                rec.name.clone(),
                NodeEntry {
                    record: rec,
                    self_address,
                    external_address,
                    list: OnceLock::new(),
                },
            );
        }
        for (net, extras) in &settings.extra.networks {
            let list = networks.entry(net.clone()).or_default();
            for e in extras {
                let address: Arc<str> = Arc::from(e.address.as_str());
                list.push(Peer {
                    key: key_of(&address),
                    address,
                    preferred: e.preferred,
                    origin: Origin::Extra,
                });
            }
        }
        let networks = networks
            .into_iter()
            .map(|(net, mut peers)| {
                peers.sort_by(|a, b| {
                    a.address
                        .cmp(&b.address)
                        .then(b.preferred.cmp(&a.preferred))
                });
                // Keep one entry per address; preferred wins (sorted first).
                peers.dedup_by(|later, first| later.address == first.address);
                let v = validators.get(&net).copied().unwrap_or(0);
                let r = remote_validators.get(&net).copied().unwrap_or(0);
                (
                    net,
                    NetworkPeers {
                        peers,
                        validators: v,
                        remote_validators: r,
                    },
                )
            })
            .collect();
        problems.sort();
        remote_problems.sort();
        Self {
            version,
            settings: settings.clone(),
            networks,
            nodes,
            node_count,
            problems,
            remote_problems,
            remotes,
        }
    }

    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// The linked clusters that have validators of `network`, sorted.
    pub fn clusters_sharing(&self, network: &str) -> Vec<&str> {
        self.remotes
            .iter()
            .filter(|(_, r)| r.networks.contains_key(network))
            .map(|(c, _)| c.as_str())
            .collect()
    }

    /// The validators (`namespace`, `name`) of `network` in linked cluster `cluster`.
    pub fn remote_validators(&self, cluster: &str, network: &str) -> Vec<(String, String)> {
        self.remotes
            .get(cluster)
            .and_then(|r| r.networks.get(network))
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of StellarNodes in the snapshot.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// Networks with their peers, sorted by name.
    pub fn networks(&self) -> impl Iterator<Item = (&str, &NetworkPeers)> {
        self.networks.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn network(&self, name: &str) -> Option<&NetworkPeers> {
        self.networks.get(name)
    }

    pub fn node(&self, namespace: &str, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(namespace)?.get(name)
    }

    /// Every StellarNode, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.values().flat_map(HashMap::values)
    }

    /// The peer list for the pods of StellarNode `namespace/name`.
    pub fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        match self.node(namespace, name) {
            None => Lookup::Unknown,
            Some(entry) => match &entry.record.problem {
                Some(p) => Lookup::Invalid(p.clone()),
                None => Lookup::Found(self.list_for(entry)),
            },
        }
    }

    /// The peer list of one node, computed on first use and kept for this snapshot.
    pub fn list_for(&self, entry: &NodeEntry) -> Arc<PeerList> {
        entry
            .list
            .get_or_init(|| {
                Arc::new(compute_list(
                    &entry.record,
                    [
                        entry.self_address.as_deref(),
                        entry.external_address.as_deref(),
                    ],
                    self.networks.get(&entry.record.network),
                    self.settings.max_peers,
                ))
            })
            .clone()
    }
}

fn node_address(rec: &NodeRecord, domain: &str, problems: &mut Vec<Problem>) -> Arc<str> {
    let fallback = || address::pod_address(&rec.name, &rec.namespace, domain);
    let addr = match &rec.peer_address {
        None => fallback(),
        Some(raw) => match address::normalize(raw) {
            Ok(a) => a,
            Err(e) => {
                problems.push(Problem {
                    node: format!("{}/{}", rec.namespace, rec.name),
                    kind: ProblemKind::PeerAddress,
                    message: format!(
                        "annotation {}: {e}; using the in-cluster pod address instead",
                        crate::nodes::PEER_ADDRESS_ANNOTATION
                    ),
                });
                fallback()
            }
        },
    };
    Arc::from(addr)
}

fn key_of(address: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(address.as_bytes())
}

/// splitmix64's finaliser: spreads a combined key over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `own`: the addresses the node is known by (in this cluster, and to linked ones).
fn compute_list(
    rec: &NodeRecord,
    own: [Option<&str>; 2],
    net: Option<&NetworkPeers>,
    max_peers: usize,
) -> PeerList {
    let empty = Vec::new();
    let peers = net.map_or(&empty, |n| &n.peers);
    let is_self = |a: &str| own.contains(&Some(a));
    let mut chosen: Vec<&Peer> = peers.iter().filter(|p| !is_self(&p.address)).collect();
    if max_peers == 0 {
        chosen.clear();
    } else if chosen.len() > max_peers {
        // Rendezvous (highest random weight) hashing on the node's identity: every
        // node keeps a stable subset, and one peer more or less moves few entries.
        let node_key = key_of(&format!("{}/{}", rec.namespace, rec.name));
        let mut scored: Vec<(u64, usize)> = chosen
            .iter()
            .enumerate()
            .map(|(i, p)| (mix(node_key ^ p.key), i))
            .collect();
        scored.select_nth_unstable_by(max_peers - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut keep: Vec<usize> = scored[..max_peers].iter().map(|&(_, i)| i).collect();
        keep.sort_unstable();
        chosen = keep.into_iter().map(|i| chosen[i]).collect();
    }
    let mut known: Vec<Arc<str>> = chosen.iter().map(|p| p.address.clone()).collect();
    let mut preferred: Vec<Arc<str>> = chosen
        .iter()
        .filter(|p| p.preferred)
        .map(|p| p.address.clone())
        .collect();
    // The user's own peers (validatorConfig.knownPeers) always join, outside the bound.
    let user = &rec.user_peers;
    if !user.known.is_empty() || !user.preferred.is_empty() {
        known.extend(
            user.known
                .iter()
                .chain(&user.preferred)
                .map(|a| Arc::from(a.as_str())),
        );
        preferred.extend(user.preferred.iter().map(|a| Arc::from(a.as_str())));
        for list in [&mut known, &mut preferred] {
            list.retain(|a| !is_self(a));
            list.sort();
            list.dedup();
        }
    }
    let hash = content_hash(&rec.network, &known, &preferred);
    let csv = known.join(",");
    let config = render_config(&rec.network, &hash, &known, &preferred);
    PeerList {
        network: rec.network.clone(),
        count: known.len().to_string(),
        known,
        preferred,
        hash,
        csv,
        config,
    }
}

/// The hash of what a node gets. Equal lists give equal hashes across processes and versions.
pub fn content_hash(network: &str, known: &[Arc<str>], preferred: &[Arc<str>]) -> String {
    let mut h = Sha256::new();
    h.update(b"network\0");
    h.update(network.as_bytes());
    for k in known {
        h.update(b"\0known\0");
        h.update(k.as_bytes());
    }
    for p in preferred {
        h.update(b"\0preferred\0");
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
