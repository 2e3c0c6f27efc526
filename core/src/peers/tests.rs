use super::*;
use crate::config::UserPeersError;
use crate::nodes::{Defect, NodeKind};

fn node(ns: &str, name: &str, kind: NodeKind, net: &str) -> NodeRecord {
    NodeRecord::new(ns, name, kind, net)
}

fn v(ns: &str, name: &str, net: &str) -> NodeRecord {
    node(ns, name, NodeKind::Validator, net)
}

fn snap(nodes: &[NodeRecord]) -> PeerSnapshot {
    PeerSnapshot::build(1, nodes, &PeerSettings::default())
}

fn known(s: &PeerSnapshot, ns: &str, name: &str) -> Vec<String> {
    match s.lookup(ns, name) {
        Lookup::Found(l) => l.known.iter().map(|a| a.to_string()).collect(),
        other => panic!("lookup {ns}/{name}: {other:?}"),
    }
}

#[test]
fn a_node_gets_its_network_peers_but_never_itself() {
    let s = snap(&[
        v("a", "v1", "testnet"),
        v("a", "v2", "testnet"),
        v("b", "v3", "testnet"),
        v("a", "m1", "mainnet"),
    ]);
    assert_eq!(
        known(&s, "a", "v1"),
        [
            "v2-0.v2-headless.a.svc.cluster.local:11625",
            "v3-0.v3-headless.b.svc.cluster.local:11625"
        ]
    );
    assert_eq!(
        known(&s, "b", "v3"),
        [
            "v1-0.v1-headless.a.svc.cluster.local:11625",
            "v2-0.v2-headless.a.svc.cluster.local:11625"
        ]
    );
    assert!(
        known(&s, "a", "m1").is_empty(),
        "mainnet's only validator has no peers"
    );
}

#[test]
fn networks_never_mix() {
    let s = snap(&[
        v("a", "t1", "testnet"),
        v("a", "t2", "testnet"),
        v("a", "m1", "mainnet"),
        v("a", "m2", "mainnet"),
    ]);
    for p in known(&s, "a", "t1") {
        assert!(p.starts_with('t'), "testnet node got {p}");
    }
    assert_eq!(
        known(&s, "a", "m1"),
        ["m2-0.m2-headless.a.svc.cluster.local:11625"]
    );
}

#[test]
fn horizon_and_soroban_get_all_validators_and_are_not_peers() {
    let s = snap(&[
        v("a", "v1", "testnet"),
        v("a", "v2", "testnet"),
        node("a", "h", NodeKind::Horizon, "testnet"),
        node("a", "r", NodeKind::SorobanRpc, "testnet"),
        node("a", "x", NodeKind::Other("Archiver".into()), "testnet"),
    ]);
    let all = [
        "v1-0.v1-headless.a.svc.cluster.local:11625",
        "v2-0.v2-headless.a.svc.cluster.local:11625",
    ];
    assert_eq!(known(&s, "a", "h"), all);
    assert_eq!(known(&s, "a", "r"), all);
    assert_eq!(known(&s, "a", "x"), all);
    assert_eq!(known(&s, "a", "v1"), all[1..]);
    assert_eq!(s.network("testnet").map(NetworkPeers::len), Some(2));
}

#[test]
fn suspended_and_invalid_validators_are_excluded() {
    let mut sus = v("a", "v3", "testnet");
    sus.suspended = true;
    let mut bad = v("a", "v4", "testnet");
    bad.problem = Some(Defect::NetworkObject.into());
    let s = snap(&[v("a", "v1", "testnet"), v("a", "v2", "testnet"), sus, bad]);
    assert_eq!(
        known(&s, "a", "v1"),
        ["v2-0.v2-headless.a.svc.cluster.local:11625"]
    );
    // A suspended validator's own pods (when resumed) still never list itself.
    assert_eq!(
        known(&s, "a", "v3"),
        [
            "v1-0.v1-headless.a.svc.cluster.local:11625",
            "v2-0.v2-headless.a.svc.cluster.local:11625"
        ]
    );
    assert_eq!(
        s.lookup("a", "v4"),
        Lookup::Invalid(Defect::NetworkObject.into())
    );
    assert_eq!(s.lookup("a", "nope"), Lookup::Unknown);
    assert_eq!(s.lookup("zz", "v1"), Lookup::Unknown);
    assert_eq!(s.problems.len(), 1);
}

#[test]
fn annotation_overrides_address_and_bad_annotation_falls_back() {
    let mut a = v("a", "v1", "testnet");
    a.peer_address = Some("V1.Example.org".into());
    let mut b = v("a", "v2", "testnet");
    b.peer_address = Some("[::1]:11625".into());
    let s = snap(&[a, b, v("a", "v3", "testnet")]);
    assert_eq!(
        known(&s, "a", "v3"),
        [
            "v1.example.org:11625",
            "v2-0.v2-headless.a.svc.cluster.local:11625"
        ]
    );
    // The overridden address is this node's own: it is excluded from its own list.
    assert_eq!(
        known(&s, "a", "v1"),
        [
            "v2-0.v2-headless.a.svc.cluster.local:11625",
            "v3-0.v3-headless.a.svc.cluster.local:11625"
        ]
    );
    assert!(s.problems.iter().any(|p| p.node == "a/v2"
        && p.kind == ProblemKind::PeerAddress
        && p.message.contains("IPv6")));
}

#[test]
fn extras_join_their_network_only_and_keep_preference() {
    let settings = PeerSettings {
        extra: ExtraPeers::parse(
        "networks:\n  mainnet:\n    - address: tier1-a.example.org\n      preferred: true\n    - address: tier1-b.example.org\n",
    )
    .expect("extras"),
        ..PeerSettings::default()
    };
    let s = PeerSnapshot::build(
        1,
        &[
            v("a", "m1", "mainnet"),
            v("a", "m2", "mainnet"),
            v("a", "t1", "testnet"),
        ],
        &settings,
    );
    let Lookup::Found(l) = s.lookup("a", "m1") else {
        panic!("m1")
    };
    let k: Vec<&str> = l.known.iter().map(|a| &**a).collect();
    assert_eq!(
        k,
        [
            "m2-0.m2-headless.a.svc.cluster.local:11625",
            "tier1-a.example.org:11625",
            "tier1-b.example.org:11625"
        ]
    );
    let p: Vec<&str> = l.preferred.iter().map(|a| &**a).collect();
    assert_eq!(
        p,
        [
            "m2-0.m2-headless.a.svc.cluster.local:11625",
            "tier1-a.example.org:11625"
        ]
    );
    assert!(known(&s, "a", "t1").is_empty());
    assert_eq!(s.network("mainnet").map(|n| n.validators), Some(2));
}

#[test]
fn duplicate_addresses_collapse() {
    let mut a = v("a", "v1", "testnet");
    a.peer_address = Some("shared.example.org".into());
    let mut b = v("b", "v1", "testnet");
    b.peer_address = Some("shared.example.org:11625".into());
    let s = snap(&[a, b, v("a", "h", "testnet")]);
    assert_eq!(known(&s, "a", "h"), ["shared.example.org:11625"]);
}

#[test]
fn lists_are_sorted_deterministic_and_hashed() {
    let nodes = [
        v("a", "c", "testnet"),
        v("a", "a", "testnet"),
        v("a", "b", "testnet"),
        v("a", "z", "testnet"),
    ];
    let mut rev = nodes.clone();
    rev.reverse();
    let s1 = snap(&nodes);
    let s2 = snap(&rev);
    let (Lookup::Found(l1), Lookup::Found(l2)) = (s1.lookup("a", "z"), s2.lookup("a", "z")) else {
        panic!()
    };
    assert_eq!(l1, l2);
    let mut sorted = l1.known.clone();
    sorted.sort();
    assert_eq!(l1.known, sorted);
    assert_eq!(l1.hash.len(), 16);
    assert_eq!(l1.count, "3");
    assert_eq!(
        l1.csv,
        "a-0.a-headless.a.svc.cluster.local:11625,b-0.b-headless.a.svc.cluster.local:11625,c-0.c-headless.a.svc.cluster.local:11625"
    );
    // A different list has a different hash; the same list in another network too.
    let (Lookup::Found(la), Lookup::Found(lb)) = (s1.lookup("a", "a"), s1.lookup("a", "b")) else {
        panic!()
    };
    assert_ne!(la.hash, lb.hash);
    assert_ne!(
        content_hash("testnet", &la.known, &la.preferred),
        content_hash("mainnet", &la.known, &la.preferred)
    );
}

#[test]
fn list_is_memoised_per_snapshot() {
    let s = snap(&[v("a", "v1", "testnet"), v("a", "v2", "testnet")]);
    let (Lookup::Found(a), Lookup::Found(b)) = (s.lookup("a", "v1"), s.lookup("a", "v1")) else {
        panic!()
    };
    assert!(Arc::ptr_eq(&a, &b));
}

fn many(n: usize) -> Vec<NodeRecord> {
    (0..n)
        .map(|i| v("ns", &format!("v{i:04}"), "testnet"))
        .collect()
}

#[test]
fn subset_is_bounded_stable_and_spread() {
    let settings = PeerSettings {
        max_peers: 8,
        ..PeerSettings::default()
    };
    let nodes = many(100);
    let s = PeerSnapshot::build(1, &nodes, &settings);
    let again = PeerSnapshot::build(2, &nodes, &settings);
    let mut seen = std::collections::HashSet::new();
    for n in &nodes {
        let (Lookup::Found(l), Lookup::Found(l2)) =
            (s.lookup("ns", &n.name), again.lookup("ns", &n.name))
        else {
            panic!()
        };
        assert_eq!(l.known.len(), 8);
        assert_eq!(l.known, l2.known, "stable across rebuilds");
        assert!(
            !l.known
                .iter()
                .any(|a| a.starts_with(&format!("{}.", n.name))),
            "never itself"
        );
        let mut sorted = l.known.clone();
        sorted.sort();
        assert_eq!(l.known, sorted);
        seen.extend(l.known.iter().cloned());
    }
    // Different nodes choose different subsets, so connections spread over most peers.
    assert!(seen.len() > 90, "only {} distinct peers used", seen.len());
}

#[test]
fn one_peer_more_moves_few_entries() {
    let settings = PeerSettings {
        max_peers: 16,
        ..PeerSettings::default()
    };
    let nodes = many(200);
    let mut more = nodes.clone();
    more.push(v("ns", "new", "testnet"));
    let s1 = PeerSnapshot::build(1, &nodes, &settings);
    let s2 = PeerSnapshot::build(2, &more, &settings);
    let mut changed_nodes = 0;
    for n in &nodes {
        let (Lookup::Found(a), Lookup::Found(b)) =
            (s1.lookup("ns", &n.name), s2.lookup("ns", &n.name))
        else {
            panic!()
        };
        let diff = b.known.iter().filter(|x| !a.known.contains(x)).count();
        assert!(diff <= 1, "{} changed {diff} entries", n.name);
        changed_nodes += usize::from(diff > 0);
    }
    // Expected share is 16/200 = 8 %; allow generous slack.
    assert!(changed_nodes < 40, "{changed_nodes} of 200 nodes changed");
}

#[test]
fn max_peers_zero_gives_empty_lists() {
    let settings = PeerSettings {
        max_peers: 0,
        ..PeerSettings::default()
    };
    let s = PeerSnapshot::build(1, &many(3), &settings);
    assert!(known(&s, "ns", "v0000").is_empty());
}

#[test]
fn snippet_is_valid_toml_stellar_core_accepts() {
    let settings = PeerSettings {
        extra: ExtraPeers::parse("networks:\n  testnet:\n    - address: 1.2.3.4\n")
            .expect("extras"),
        ..PeerSettings::default()
    };
    let s = PeerSnapshot::build(
        1,
        &[v("a", "v1", "testnet"), v("a", "v2", "testnet")],
        &settings,
    );
    let Lookup::Found(l) = s.lookup("a", "v1") else {
        panic!()
    };
    let parsed: toml::Table = toml::from_str(&l.config).expect("valid TOML");
    assert_eq!(
        parsed.len(),
        2,
        "only KNOWN_PEERS and PREFERRED_PEERS: {parsed:?}"
    );
    let arr = |k: &str| -> Vec<String> {
        parsed[k]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_str().expect("str").to_owned())
            .collect()
    };
    // Each address once: the preferred validator only in PREFERRED_PEERS (stellar-core
    // dials those whether or not KNOWN_PEERS lists them), the extra in KNOWN_PEERS.
    assert_eq!(arr("KNOWN_PEERS"), ["1.2.3.4:11625"]);
    assert_eq!(
        arr("PREFERRED_PEERS"),
        ["v2-0.v2-headless.a.svc.cluster.local:11625"]
    );
    assert_eq!(
        l.known.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        [
            "1.2.3.4:11625",
            "v2-0.v2-headless.a.svc.cluster.local:11625"
        ],
        "the list itself (STELLAR_PEERS, the hash) still holds every peer"
    );
    assert!(l.config.contains(&l.hash));
}

#[test]
fn snippet_writes_each_address_once_and_keeps_the_whole_list() {
    // Validators are preferred; the user's own known and preferred peers join.
    let mut a = v("a", "v1", "testnet");
    a.user_peers.known = vec!["k.example.org:11625".to_owned()];
    a.user_peers.preferred = vec!["p.example.org:11625".to_owned()];
    let s = PeerSnapshot::build(
        1,
        &[a, v("a", "v2", "testnet"), v("a", "v3", "testnet")],
        &PeerSettings::default(),
    );
    let Lookup::Found(l) = s.lookup("a", "v1") else {
        panic!()
    };
    let parsed: toml::Table = toml::from_str(&l.config).expect("valid TOML");
    let arr = |k: &str| -> Vec<String> {
        parsed[k]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_str().expect("str").to_owned())
            .collect()
    };
    let (known, preferred) = (arr("KNOWN_PEERS"), arr("PREFERRED_PEERS"));
    assert_eq!(known, ["k.example.org:11625"]);
    assert_eq!(
        preferred,
        l.preferred
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    );
    // Together they are the whole list, with no address twice.
    let mut all: Vec<String> = known.iter().chain(&preferred).cloned().collect();
    all.sort();
    assert_eq!(
        all,
        l.known.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(l.known.len(), 4);
    // The hash is over the list, not the snippet: how the snippet is written must not
    // roll any pod. Pinned from the code before KNOWN_PEERS stopped repeating them.
    assert_eq!(l.hash, "2bf385d839b2c42a");
}

#[test]
fn snippet_of_empty_list_and_hostile_network_name() {
    let cfg = render_config("evil\"]\nKNOWN_PEERS=[\"x\"", "h", &[], &[]);
    let parsed: toml::Table = toml::from_str(&cfg).expect("valid TOML");
    assert_eq!(parsed["KNOWN_PEERS"].as_array().map(Vec::len), Some(0));
    assert_eq!(parsed.len(), 2);
    let cfg = render_config("n", "h", &[Arc::from("a\"b\\c")], &[]);
    let parsed: toml::Table = toml::from_str(&cfg).expect("escaped");
    assert_eq!(parsed["KNOWN_PEERS"][0].as_str(), Some("a\"b\\c"));
}

#[test]
fn user_known_peers_join_their_node_only_and_escape_the_bound() {
    let mut a = v("a", "v1", "testnet");
    a.user_peers = crate::nodes::UserPeers {
        known: vec!["core-live-a.stellar.org:11625".into()],
        preferred: vec!["core-live-b.stellar.org:11625".into()],
    };
    let nodes = [a, v("a", "v2", "testnet"), v("a", "v3", "testnet")];
    let s = snap(&nodes);
    assert_eq!(
        known(&s, "a", "v1"),
        [
            "core-live-a.stellar.org:11625",
            "core-live-b.stellar.org:11625",
            "v2-0.v2-headless.a.svc.cluster.local:11625",
            "v3-0.v3-headless.a.svc.cluster.local:11625"
        ]
    );
    let Lookup::Found(l) = s.lookup("a", "v1") else {
        panic!("v1")
    };
    assert!(
        l.preferred
            .iter()
            .any(|p| &**p == "core-live-b.stellar.org:11625")
    );
    assert!(
        !l.preferred
            .iter()
            .any(|p| &**p == "core-live-a.stellar.org:11625")
    );
    // Others do not get v1's own peers, and their hash does not change because of them.
    let plain = snap(&[
        v("a", "v1", "testnet"),
        v("a", "v2", "testnet"),
        v("a", "v3", "testnet"),
    ]);
    let hash = |s: &PeerSnapshot, n: &str| match s.lookup("a", n) {
        Lookup::Found(l) => l.hash.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hash(&s, "v2"), hash(&plain, "v2"));
    assert_ne!(hash(&s, "v1"), hash(&plain, "v1"));
    // --max-peers bounds the in-cluster peers only.
    let bounded = PeerSnapshot::build(
        1,
        &nodes,
        &PeerSettings {
            max_peers: 1,
            ..PeerSettings::default()
        },
    );
    let k = known(&bounded, "a", "v1");
    assert_eq!(k.len(), 3, "{k:?}");
    assert!(k.contains(&"core-live-a.stellar.org:11625".to_owned()));
    assert!(k.contains(&"core-live-b.stellar.org:11625".to_owned()));
}

#[test]
fn a_bad_known_peers_field_is_a_problem_of_that_node_alone() {
    let mut a = v("a", "v1", "testnet");
    a.user_peers_problem = Some(UserPeersError::NotAString { found: "a number" });
    let s = snap(&[a, v("a", "v2", "testnet")]);
    assert!(matches!(s.lookup("a", "v1"), Lookup::Found(_)));
    assert_eq!(
        known(&s, "a", "v2"),
        ["v1-0.v1-headless.a.svc.cluster.local:11625"]
    );
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].kind, ProblemKind::UserPeers);
}

#[test]
fn each_distinct_problem_is_told_once_while_it_lasts() {
    let mut a = v("a", "v1", "testnet");
    a.user_peers_problem = Some(crate::config::UserPeersError::NotAString { found: "a number" });
    let s = snap(&[a.clone(), v("a", "v2", "testnet")]);
    let p = &s.problems[0];
    assert_eq!(p.node_key(), ("a", "v1"));
    assert_eq!(p.kind.event_reason(), "InvalidKnownPeers");
    assert!(p.note().contains("a number"), "{}", p.note());
    let mut told = std::collections::BTreeSet::new();
    assert_eq!(untold_problems(&told, &s.problems), [p]);
    told.extend(s.problems.iter().cloned());
    assert!(untold_problems(&told, &s.problems).is_empty());
    // Another mistake in the same field is another problem.
    a.user_peers_problem = Some(crate::config::UserPeersError::UnknownKey {
        key: "OTHER".into(),
    });
    let s2 = snap(&[a, v("a", "v2", "testnet")]);
    assert_eq!(untold_problems(&told, &s2.problems).len(), 1);
}

// --- linked clusters -----------------------------------------------------------------

fn ext(mut r: NodeRecord, host: &str) -> NodeRecord {
    r.external_hostname = Some(host.to_owned());
    r
}

fn linked(local: &[NodeRecord], remote: &[(&str, NodeRecord)]) -> PeerSnapshot {
    PeerSnapshot::build_linked(
        1,
        local,
        remote.iter().map(|(c, r)| (*c, r)),
        &PeerSettings::default(),
    )
}

#[test]
fn remote_validators_join_by_their_external_address_and_locals_keep_in_cluster_names() {
    let s = linked(
        &[
            ext(v("stellar", "a1", "testnet"), "a1.a.example.org"),
            v("stellar", "a2", "testnet"),
        ],
        &[
            ("b", ext(v("stellar", "b1", "testnet"), "b1.b.example.org")),
            ("b", {
                let mut r = v("stellar", "b2", "testnet");
                r.peer_address = Some("203.0.113.9:11700".into());
                r
            }),
        ],
    );
    assert_eq!(
        known(&s, "stellar", "a1"),
        [
            "203.0.113.9:11700",
            "a2-0.a2-headless.stellar.svc.cluster.local:11625",
            "b1.b.example.org:11625",
        ]
    );
    assert_eq!(
        known(&s, "stellar", "a2"),
        [
            "203.0.113.9:11700",
            "a1-0.a1-headless.stellar.svc.cluster.local:11625",
            "b1.b.example.org:11625",
        ],
        "a local node gets the in-cluster name, never the external one, of a local peer"
    );
    let net = s.network("testnet").expect("testnet");
    assert_eq!((net.validators, net.remote_validators), (4, 2));
    let origins: Vec<_> = net.origins().map(|(a, _, o)| (a, o.as_str())).collect();
    assert!(
        origins.contains(&("b1.b.example.org:11625", "b")),
        "{origins:?}"
    );
    assert!(origins.contains(&("a2-0.a2-headless.stellar.svc.cluster.local:11625", "local")));
    assert_eq!(
        s.remotes["b"],
        RemoteSummary {
            nodes: 2,
            peers: 2,
            excluded: 0,
            networks: [(
                "testnet".to_owned(),
                [
                    ("stellar".to_owned(), "b1".to_owned()),
                    ("stellar".to_owned(), "b2".to_owned())
                ]
                .into()
            )]
            .into(),
        }
    );
    assert_eq!(s.remote_validators("b", "testnet").len(), 2);
    assert!(s.remote_validators("b", "mainnet").is_empty());
    assert!(s.remote_validators("c", "testnet").is_empty());
    assert!(
        s.node("stellar", "b1").is_none(),
        "remote nodes get no list here"
    );
}

#[test]
fn a_remote_validator_without_an_external_address_is_left_out_and_told() {
    let mut in_cluster = v("stellar", "b3", "testnet");
    in_cluster.peer_address = Some("b3-0.b3-headless.stellar.svc.cluster.local".into());
    let s = linked(
        &[v("stellar", "a1", "testnet")],
        &[
            ("b", v("stellar", "b1", "testnet")),
            ("b", in_cluster),
            ("b", ext(v("stellar", "b2", "testnet"), "b2.b.example.org")),
        ],
    );
    assert_eq!(known(&s, "stellar", "a1"), ["b2.b.example.org:11625"]);
    assert_eq!(s.remotes["b"].excluded, 2);
    assert_eq!(
        s.clusters_sharing("testnet"),
        ["b"],
        "excluded validators still roll with the network"
    );
    assert!(s.clusters_sharing("mainnet").is_empty());
    let told: Vec<_> = s
        .remote_problems
        .iter()
        .map(|p| (p.cluster.as_str(), p.node.as_str()))
        .collect();
    assert_eq!(told, [("b", "stellar/b1"), ("b", "stellar/b3")]);
    assert!(
        s.remote_problems[0]
            .message
            .contains("externalDns.hostname")
    );
    assert!(
        s.problems.is_empty(),
        "remote trouble is never a local StellarNode's problem (no Event on a local object)"
    );
    // Left out of a network this cluster has no node of: nothing to tell.
    let s = linked(
        &[v("stellar", "a1", "testnet")],
        &[("b", v("stellar", "x1", "othernet"))],
    );
    assert!(s.remote_problems.is_empty());
    assert_eq!(s.remotes["b"].excluded, 0);
    assert_eq!(s.clusters_sharing("othernet"), ["b"]);
}

#[test]
fn same_names_in_two_clusters_are_two_peers_each_excluding_only_itself() {
    let s = linked(
        &[ext(v("stellar", "v1", "testnet"), "v1.a.example.org")],
        &[
            ("b", ext(v("stellar", "v1", "testnet"), "v1.b.example.org")),
            ("c", ext(v("stellar", "v1", "testnet"), "v1.c.example.org")),
            // A linked cluster that gives out this node's own external name: never itself.
            ("d", ext(v("other", "x", "testnet"), "v1.a.example.org")),
        ],
    );
    assert_eq!(
        known(&s, "stellar", "v1"),
        ["v1.b.example.org:11625", "v1.c.example.org:11625"]
    );
}

#[test]
fn remote_nodes_that_are_not_peers_count_but_do_not_join() {
    let mut suspended = ext(v("stellar", "b1", "testnet"), "b1.b.example.org");
    suspended.suspended = true;
    let horizon = node("stellar", "h", NodeKind::Horizon, "testnet");
    let mut broken = ext(v("stellar", "b2", "testnet"), "b2.b.example.org");
    broken.problem = Some(Defect::NoSpec.into());
    let s = linked(
        &[v("stellar", "a1", "testnet")],
        &[("b", suspended), ("b", horizon), ("b", broken)],
    );
    assert!(known(&s, "stellar", "a1").is_empty());
    assert_eq!(
        s.remotes["b"],
        RemoteSummary {
            nodes: 3,
            peers: 0,
            excluded: 0,
            networks: Default::default(),
        }
    );
    assert!(s.remote_problems.is_empty());
}

#[test]
fn a_remote_peer_changes_the_hash_and_networks_never_mix_across_clusters() {
    let local = [v("stellar", "a1", "testnet"), v("stellar", "m1", "mainnet")];
    let before = linked(&local, &[]);
    let after = linked(
        &local,
        &[("b", ext(v("stellar", "b1", "testnet"), "b1.b.example.org"))],
    );
    let hash = |s: &PeerSnapshot, n: &str| match s.lookup("stellar", n) {
        Lookup::Found(l) => l.hash.clone(),
        other => panic!("{other:?}"),
    };
    assert_ne!(hash(&before, "a1"), hash(&after, "a1"));
    assert_eq!(
        hash(&before, "m1"),
        hash(&after, "m1"),
        "mainnet is untouched"
    );
    assert!(known(&after, "stellar", "m1").is_empty());
}

#[test]
fn remote_peers_are_peers_for_the_max_peers_subset() {
    let remote: Vec<(&str, NodeRecord)> = (0..40)
        .map(|i| {
            (
                "b",
                ext(
                    v("stellar", &format!("b{i}"), "testnet"),
                    &format!("b{i}.b.example.org"),
                ),
            )
        })
        .collect();
    let settings = PeerSettings {
        max_peers: 8,
        ..PeerSettings::default()
    };
    let s = PeerSnapshot::build_linked(
        1,
        &[v("stellar", "a1", "testnet"), v("stellar", "a2", "testnet")],
        remote.iter().map(|(c, r)| (*c, r)),
        &settings,
    );
    let a1 = known(&s, "stellar", "a1");
    assert_eq!(a1.len(), 8);
    assert_ne!(
        a1,
        known(&s, "stellar", "a2"),
        "each node its own stable subset"
    );
}
