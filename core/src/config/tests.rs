//! Merge and checker tests over real configs (sources in
//! tests/fixtures/configs/README.md) and hand-written edge cases.

use super::*;
use crate::peers::address::AddressError;

/// What the webhook's snippet gives (two in-cluster validators, one preferred).
const KNOWN: [&str; 2] = [
    "v1.ns.svc.cluster.local:11625",
    "v2.ns.svc.cluster.local:11625",
];
const PREFERRED: [&str; 1] = ["v1.ns.svc.cluster.local:11625"];

// OtowoOrg/Stellar-K8s @ 76a25f39c2e058d9eb0d2d73e3202011ee180903,
// src/controller/resources.rs build_config_map (+ examples/validator-mainnet.yaml).
const OPERATOR_QUORUM_RECENT: &str =
    include_str!("../../../tests/fixtures/configs/operator-quorum-recent.cfg");
// Same commit, with src/controller/vsl.rs QuorumSet::to_stellar_core_toml and mTLS.
const OPERATOR_VSL_MTLS_FULL: &str =
    include_str!("../../../tests/fixtures/configs/operator-vsl-mtls-full.cfg");
// Same commit, no quorumSet.
const OPERATOR_RECENT: &str = include_str!("../../../tests/fixtures/configs/operator-recent.cfg");
const OPERATOR_MTLS_FULL: &str =
    include_str!("../../../tests/fixtures/configs/operator-mtls-full.cfg");
// stellar/helm-charts @ 721a73cf0cc2dec6a55e3b9df3301e1862550035,
// charts/core/templates/core-cm.yaml with charts/core/futurenet-values.yaml.
const CHART_FUTURENET: &str = include_str!("../../../tests/fixtures/configs/chart-futurenet.cfg");
// Same, plus core.config.knownPeers and core.config.preferredPeers.
const CHART_FUTURENET_PEERS: &str =
    include_str!("../../../tests/fixtures/configs/chart-futurenet-peers.cfg");

const ALL_FIXTURES: [&str; 6] = [
    OPERATOR_QUORUM_RECENT,
    OPERATOR_VSL_MTLS_FULL,
    OPERATOR_RECENT,
    OPERATOR_MTLS_FULL,
    CHART_FUTURENET,
    CHART_FUTURENET_PEERS,
];

/// Our block as `merge` must write it (the test's own oracle).
fn block(known: &[&str], preferred: &[&str], eol: &str) -> String {
    let mut s =
        format!("{MARKER} (render-config); edit the base config or the StellarNodes instead.{eol}");
    for (key, items) in [("KNOWN_PEERS", known), ("PREFERRED_PEERS", preferred)] {
        if items.is_empty() {
            s += &format!("{key} = []{eol}");
        } else {
            s += &format!("{key} = [{eol}");
            for i in items {
                s += &format!("  \"{i}\",{eol}");
            }
            s += &format!("]{eol}");
        }
    }
    s
}

fn snippet_block() -> String {
    block(&KNOWN, &PREFERRED, "\n")
}

/// Merges with the snippet's peers, asserting idempotency.
fn merged(base: &str) -> String {
    let once = merge(base, &KNOWN, &PREFERRED).unwrap_or_else(|e| panic!("{e}\n{base}"));
    let twice = merge(&once, &KNOWN, &PREFERRED).expect("merges its own output");
    assert_eq!(twice, once, "idempotent");
    once
}

fn lines_of(s: &str) -> Vec<&str> {
    s.split_inclusive('\n').collect()
}

/// `base` with `insert` placed before its line `at` (0-based).
fn insert_at(base: &str, at: usize, insert: &str) -> String {
    let l = lines_of(base);
    format!("{}{insert}{}", l[..at].concat(), l[at..].concat())
}

fn top(cfg: &str, key: &str) -> Vec<String> {
    let t: toml::Table = toml::from_str(cfg).expect("TOML");
    t.get(key)
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn misplaced(key: &str, table: &str, line: usize) -> Violation {
    Violation::MisplacedKey {
        key: key.into(),
        table: table.into(),
        line,
    }
}

fn unknown_in(table: &str, key: &str, line: usize) -> Violation {
    Violation::UnknownTableKey {
        table: table.into(),
        key: key.into(),
        line,
    }
}

fn unknown(key: &str, line: usize) -> Violation {
    Violation::UnknownKey {
        key: key.into(),
        line,
    }
}

// ---------------------------------------------------------------- operator

#[test]
fn operator_with_quorum_set_gets_top_level_peers_and_keeps_its_own_defect() {
    // The operator writes CATCHUP_* after [QUORUM_SET]: TOML puts them in that
    // table and stellar-core refuses them. The merge does not move keys that
    // are not ours; it puts ours above the table, where they are top-level.
    let base = OPERATOR_QUORUM_RECENT;
    assert_eq!(
        check(base),
        Err(vec![
            misplaced("CATCHUP_COMPLETE", "QUORUM_SET", 9),
            misplaced("CATCHUP_RECENT", "QUORUM_SET", 10),
        ])
    );
    let out = merged(base);
    assert_eq!(out, format!("{}{base}", snippet_block()));
    assert_eq!(top(&out, "KNOWN_PEERS"), KNOWN);
    assert_eq!(top(&out, "PREFERRED_PEERS"), PREFERRED);
    // Exactly the operator's defect, 8 lines further down; nothing of ours.
    assert_eq!(
        check(&out),
        Err(vec![
            misplaced("CATCHUP_COMPLETE", "QUORUM_SET", 17),
            misplaced("CATCHUP_RECENT", "QUORUM_SET", 18),
        ])
    );
    assert_eq!(check_ours(&out), Ok(()));
}

#[test]
fn operator_vsl_quorum_with_mtls_defects_land_in_the_inner_set() {
    let base = OPERATOR_VSL_MTLS_FULL;
    let defects = |shift: usize| {
        vec![
            unknown_in("QUORUM_SET.0", "HTTP_PORT_SECURE", 10 + shift),
            unknown_in("QUORUM_SET.0", "TLS_CERT_FILE", 11 + shift),
            unknown_in("QUORUM_SET.0", "TLS_KEY_FILE", 12 + shift),
            misplaced("CATCHUP_COMPLETE", "QUORUM_SET.0", 15 + shift),
        ]
    };
    assert_eq!(check(base), Err(defects(0)));
    let out = merged(base);
    assert_eq!(out, format!("{}{base}", snippet_block()));
    assert_eq!(check(&out), Err(defects(8)));
    assert_eq!(check_ours(&out), Ok(()));
}

#[test]
fn operator_without_quorum_set_gets_peers_after_its_keys() {
    let base = OPERATOR_RECENT;
    assert_eq!(check(base), Ok(()));
    let out = merged(base);
    assert_eq!(out, format!("{base}{}", snippet_block()));
    assert_eq!(check(&out), Ok(()));
}

#[test]
fn operator_mtls_keys_are_unknown_to_stellar_core() {
    let base = OPERATOR_MTLS_FULL;
    let defects = vec![
        unknown("HTTP_PORT_SECURE", 3),
        unknown("TLS_CERT_FILE", 4),
        unknown("TLS_KEY_FILE", 5),
    ];
    assert_eq!(check(base), Err(defects.clone()));
    let out = merged(base);
    assert_eq!(out, format!("{base}{}", snippet_block()));
    // Our block is at the end: the lines of the defects do not move.
    assert_eq!(check(&out), Err(defects));
    assert_eq!(check_ours(&out), Ok(()));
}

#[test]
fn operator_node_with_known_peers_from_its_spec() {
    // StellarNode spec.validatorConfig.knownPeers, in the form
    // OtowoOrg/Stellar-K8s's own tests use (src/controller/resources_test.rs).
    let user =
        parse_user_peers(r#"KNOWN_PEERS = ["core-live-a.stellar.org:11625", "example.com:11625"]"#)
            .expect("user peers");
    let mut known: Vec<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    known.extend(user.known);
    let mut preferred: Vec<String> = PREFERRED.iter().map(|s| s.to_string()).collect();
    preferred.extend(user.preferred);
    for base in [OPERATOR_QUORUM_RECENT, OPERATOR_RECENT] {
        let out = merge(base, &known, &preferred).expect("merge");
        assert_eq!(merge(&out, &known, &preferred).as_ref(), Ok(&out));
        assert_eq!(
            top(&out, "KNOWN_PEERS"),
            [
                "core-live-a.stellar.org:11625",
                "example.com:11625",
                KNOWN[0],
                KNOWN[1]
            ]
        );
        assert_eq!(top(&out, "PREFERRED_PEERS"), PREFERRED);
        assert_eq!(check_ours(&out), Ok(()));
    }
    assert_eq!(
        check(&merge(OPERATOR_RECENT, &known, &preferred).expect("merge")),
        Ok(())
    );
}

// ------------------------------------------------------------------- chart

#[test]
fn chart_config_without_peers() {
    let base = CHART_FUTURENET;
    assert_eq!(check(base), Ok(()));
    let out = merged(base);
    // After the last top-level key (INVARIANT_CHECKS, line 12), before the
    // blank line and [[HOME_DOMAINS]].
    assert_eq!(out, insert_at(base, 12, &snippet_block()));
    assert_eq!(check(&out), Ok(()));
}

#[test]
fn chart_config_with_its_own_peers_merges_them() {
    let base = CHART_FUTURENET_PEERS;
    assert_eq!(check(base), Ok(()));
    let out = merged(base);
    let known = [
        "core-live-futurenet-a.stellar.org:11625",
        "core-live-futurenet-b.stellar.org:11625",
        KNOWN[0],
        KNOWN[1],
    ];
    let preferred = ["core-live-futurenet-c.stellar.org:11625", PREFERRED[0]];
    // The chart's own lines are gone from where they were; the rest is the
    // chart's file byte for byte.
    assert_eq!(
        out,
        insert_at(CHART_FUTURENET, 12, &block(&known, &preferred, "\n"))
    );
    assert_eq!(out.matches("KNOWN_PEERS").count(), 1 + 1); // + the marker
    assert_eq!(out.matches("PREFERRED_PEERS").count(), 1 + 1); // + the marker
    assert_eq!(check(&out), Ok(()));
    assert_eq!(
        base_peers(base),
        Ok(BasePeers {
            known: known[..2].iter().map(|s| s.to_string()).collect(),
            preferred: preferred[..1].iter().map(|s| s.to_string()).collect(),
        })
    );
}

#[test]
fn every_fixture_merges_idempotently_with_no_violation_of_ours() {
    for base in ALL_FIXTURES {
        for (k, p) in [(&KNOWN[..], &PREFERRED[..]), (&[][..], &[][..])] {
            let out = merge(base, k, p).expect("merge");
            assert_eq!(merge(&out, k, p).as_ref(), Ok(&out));
            assert_eq!(check_ours(&out), Ok(()), "{out}");
            // Whatever the base breaks, the merge breaks nothing more.
            let before = check(base).err().unwrap_or_default().len();
            let after = check(&out).err().unwrap_or_default().len();
            assert_eq!(before, after, "{out}");
        }
    }
}

// ---------------------------------------------------------- hand-written

const COMMENTED: &str = r#"# stellar-core config for validator-0 [not a header]
# KNOWN_PEERS = ["commented.out:11625"]

NETWORK_PASSPHRASE = "Public Global Stellar Network ; September 2015"
KNOWN_PEERS = [
  "core-live-a.stellar.org:11625", # SDF a [brackets] "quotes"
  # "disabled.example.org",
  "CORE-LIVE-B.stellar.org",
]  # end
NODE_HOME_DOMAIN = "example.org" # ends with # and [x]
DATABASE = """
postgresql://dbname=core host=/var/run/postgresql
[QUORUM_SET]
KNOWN_PEERS = ["not.a.peer"]
"""
PREFERRED_PEERS = ['core-live-a.stellar.org:11625']

# Our home domain.
[[HOME_DOMAINS]]
HOME_DOMAIN = "example.org"
QUALITY = "MEDIUM"

[[VALIDATORS]]
NAME = "self"
HOME_DOMAIN = "example.org"
PUBLIC_KEY = "GABC"
ADDRESS = "validator-1.example.org:11625"

[HISTORY.local]
get = "cp /archive/{0} {1}"
put = "cp {0} /archive/{1}"
mkdir = "mkdir -p /archive/{0}"
"#;

#[test]
fn comments_strings_home_domains_and_validators() {
    assert_eq!(check(COMMENTED), Ok(()));
    let out = merged(COMMENTED);
    let expected = format!(
        r#"# stellar-core config for validator-0 [not a header]
# KNOWN_PEERS = ["commented.out:11625"]

NETWORK_PASSPHRASE = "Public Global Stellar Network ; September 2015"
NODE_HOME_DOMAIN = "example.org" # ends with # and [x]
DATABASE = """
postgresql://dbname=core host=/var/run/postgresql
[QUORUM_SET]
KNOWN_PEERS = ["not.a.peer"]
"""
{}
# Our home domain.
[[HOME_DOMAINS]]
HOME_DOMAIN = "example.org"
QUALITY = "MEDIUM"

[[VALIDATORS]]
NAME = "self"
HOME_DOMAIN = "example.org"
PUBLIC_KEY = "GABC"
ADDRESS = "validator-1.example.org:11625"

[HISTORY.local]
get = "cp /archive/{{0}} {{1}}"
put = "cp {{0}} /archive/{{1}}"
mkdir = "mkdir -p /archive/{{0}}"
"#,
        block(
            &[
                "core-live-a.stellar.org:11625",
                "core-live-b.stellar.org:11625",
                KNOWN[0],
                KNOWN[1]
            ],
            &["core-live-a.stellar.org:11625", PREFERRED[0]],
            "\n"
        )
    );
    assert_eq!(out, expected);
    assert_eq!(check(&out), Ok(()));
}

#[test]
fn crlf_and_missing_final_newline() {
    let base = "HTTP_PORT=11626\r\nKNOWN_PEERS=[\"a\"]\r\n[QUORUM_SET]\r\nTHRESHOLD_PERCENT=67\r\nVALIDATORS=[\"GABC\"]";
    let out = merged(base);
    assert_eq!(
        out,
        format!(
            "HTTP_PORT=11626\r\n{}[QUORUM_SET]\r\nTHRESHOLD_PERCENT=67\r\nVALIDATORS=[\"GABC\"]",
            block(&["a:11625", KNOWN[0], KNOWN[1]], &PREFERRED, "\r\n")
        )
    );
    assert_eq!(check(&out), Ok(()));

    let out = merged("HTTP_PORT=11626");
    assert_eq!(out, format!("HTTP_PORT=11626\n{}", snippet_block()));
    let out = merged("HTTP_PORT=11626\r\n# last");
    assert_eq!(
        out,
        format!(
            "HTTP_PORT=11626\r\n{}# last",
            block(&KNOWN, &PREFERRED, "\r\n")
        )
    );
}

#[test]
fn empty_and_comment_only_bases() {
    assert_eq!(merged(""), snippet_block());
    assert_eq!(
        merged("# only a comment"),
        format!("# only a comment\n{}", snippet_block())
    );
    assert_eq!(
        merge("", &[] as &[&str], &[] as &[&str]),
        Ok(block(&[], &[], "\n"))
    );
    assert_eq!(check(&merged("")), Ok(()));
}

#[test]
fn header_comments_stay_with_their_header() {
    let base = "# file header\n\n# the quorum\n[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\n";
    assert_eq!(
        merged(base),
        format!(
            "# file header\n\n{}# the quorum\n[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\n",
            snippet_block()
        )
    );
}

#[test]
fn peers_written_inside_a_table_are_moved_to_the_top_level() {
    let base = "[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\nKNOWN_PEERS=[\"x.example.org\"] # mine\n";
    assert_eq!(
        check(base),
        Err(vec![misplaced("KNOWN_PEERS", "QUORUM_SET", 4)])
    );
    assert_eq!(
        check_ours(base),
        Err(vec![misplaced("KNOWN_PEERS", "QUORUM_SET", 4)])
    );
    let out = merged(base);
    assert_eq!(
        out,
        format!(
            "{}[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\n",
            block(
                &[KNOWN[0], KNOWN[1], "x.example.org:11625"],
                &PREFERRED,
                "\n"
            )
        )
    );
    assert_eq!(check(&out), Ok(()));
}

#[test]
fn an_inner_quorum_set_named_like_our_key_is_left_alone() {
    let base = "[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GABC\"]\n\n[QUORUM_SET.KNOWN_PEERS]\nVALIDATORS=[\"GDEF\"]\n";
    assert_eq!(check(base), Ok(()));
    let out = merged(base);
    assert_eq!(out, format!("{}{base}", snippet_block()));
    assert_eq!(check(&out), Ok(()));
}

#[test]
fn quoted_keys_are_our_keys_too() {
    let base = "\"KNOWN_PEERS\" = [\"q.example.org\"]\n'PREFERRED_PEERS' = []\nHTTP_PORT = 1\n";
    let out = merged(base);
    assert_eq!(
        out,
        format!(
            "HTTP_PORT = 1\n{}",
            block(
                &["q.example.org:11625", KNOWN[0], KNOWN[1]],
                &PREFERRED,
                "\n"
            )
        )
    );
}

#[test]
fn merge_errors_say_what_and_where() {
    let e = merge("HTTP_PORT=11626\nPEER_PORT=\n", &KNOWN, &PREFERRED).expect_err("invalid");
    let MergeError::Toml(t) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(t.line, 2);
    assert!(t.column >= 10, "{t:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("not valid TOML at line 2 column "), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    let e = merge("HTTP_PORT=1\nHTTP_PORT=2\n", &KNOWN, &PREFERRED).expect_err("duplicate");
    assert!(matches!(&e, MergeError::Toml(t) if t.line == 2), "{e:?}");

    let wrong = |base: &str, key, line, found| {
        assert_eq!(
            merge(base, &KNOWN, &PREFERRED),
            Err(MergeError::WrongType { key, line, found }),
            "{base}"
        );
    };
    wrong(
        "HTTP_PORT=1\nKNOWN_PEERS=\"a\"\n",
        "KNOWN_PEERS",
        2,
        "a string",
    );
    wrong(
        "PREFERRED_PEERS=[1]\n",
        "PREFERRED_PEERS",
        1,
        "an array of non-strings",
    );
    wrong(
        "KNOWN_PEERS=[[\"a\"]]\n",
        "KNOWN_PEERS",
        1,
        "an array of arrays",
    );
    wrong("[KNOWN_PEERS]\nx=1\n", "KNOWN_PEERS", 1, "a table");
    wrong("[[PREFERRED_PEERS]]\n", "PREFERRED_PEERS", 1, "a table");
    wrong("KNOWN_PEERS.x = 1\n", "KNOWN_PEERS", 1, "a table");
    wrong("KNOWN_PEERS = {x = 1}\n", "KNOWN_PEERS", 1, "a table");
    assert!(
        merge("KNOWN_PEERS=\"a\"\n", &KNOWN, &PREFERRED)
            .expect_err("wrong type")
            .to_string()
            .contains("must be an array of strings")
    );

    let e = merge(
        "NODE_IS_VALIDATOR=true\nKNOWN_PEERS=[\n\"ok\",\n\"fe80::1\"]\n",
        &KNOWN,
        &PREFERRED,
    )
    .expect_err("bad address");
    assert!(
        matches!(&e, MergeError::BadAddress { key: "KNOWN_PEERS", line: 2, source: AddressError::Ipv6(a) } if a == "fe80::1"),
        "{e:?}"
    );
    assert!(e.to_string().contains("\"fe80::1\""), "{e}");
    assert!(std::error::Error::source(&e).is_some());

    assert!(matches!(
        merge("", &["a b"], &[] as &[&str]),
        Err(MergeError::BadPeer {
            key: "KNOWN_PEERS",
            source: AddressError::Host(_)
        })
    ));
}

// ----------------------------------------------------------------- checker

#[test]
fn checker_accepts_good_configs() {
    for cfg in [
        CHART_FUTURENET,
        CHART_FUTURENET_PEERS,
        OPERATOR_RECENT,
        COMMENTED,
        "",
        "KNOWN_PEERS=[\"1.2.3.4\", \"a-b.c:11625\", \"core-live-a.stellar.org:1\", \"999.1.1.1:65535\"]\n",
        // Dotted keys and inline tables are tables too.
        "QUORUM_SET.THRESHOLD_PERCENT = 67\nQUORUM_SET.VALIDATORS = [\"GA\"]\nQUORUM_SET.inner = { THRESHOLD_PERCENT = 50, VALIDATORS = [\"GB\"] }\n",
        "HISTORY.sdf = { get = \"curl {0} -o {1}\" }\nHOME_DOMAINS = [{ HOME_DOMAIN = \"a.org\", QUALITY = \"LOW\" }]\n",
        "[QUORUM_SET]\nVALIDATORS=[\"GA\"]\n[QUORUM_SET.a]\nVALIDATORS=[\"GB\"]\n[QUORUM_SET.a.b]\nTHRESHOLD_PERCENT=100\nVALIDATORS=[\"GC\"]\n",
    ] {
        assert_eq!(check(cfg), Ok(()), "{cfg}");
    }
}

#[test]
fn checker_rejects_invalid_toml_and_duplicates() {
    for (cfg, line) in [
        ("HTTP_PORT=\n", 1),
        ("A=1\nB = [\n", 2),
        ("KNOWN_PEERS=[]\nKNOWN_PEERS=[]\n", 2),
        ("[QUORUM_SET]\nVALIDATORS=[]\n[QUORUM_SET]\n", 3),
    ] {
        let v = check(cfg).expect_err(cfg);
        assert!(
            matches!(&v[..], [Violation::InvalidToml(t)] if t.line == line),
            "{cfg}: {v:?}"
        );
        assert!(v[0].is_ours());
        assert_eq!(v[0].line(), Some(line));
    }
}

#[test]
fn checker_rejects_top_level_keys_inside_tables() {
    let cfg = "HTTP_PORT=11626\n[QUORUM_SET]\nTHRESHOLD_PERCENT=67\nVALIDATORS=[\"GA\"]\nCATCHUP_COMPLETE=true\nNODE_SEED=\"S\"\n\n[[HOME_DOMAINS]]\nHOME_DOMAIN=\"a.org\"\nQUALITY=\"LOW\"\nPEER_PORT=11625\n[[VALIDATORS]]\nNAME=\"a\"\nDATABASE=\"sqlite3://x\"\n[HISTORY.h]\nget=\"x\"\nPREFERRED_PEERS=[]\n";
    assert_eq!(
        check(cfg),
        Err(vec![
            misplaced("CATCHUP_COMPLETE", "QUORUM_SET", 5),
            misplaced("NODE_SEED", "QUORUM_SET", 6),
            misplaced("PEER_PORT", "HOME_DOMAINS", 11),
            misplaced("DATABASE", "VALIDATORS", 14),
            misplaced("PREFERRED_PEERS", "HISTORY.h", 17),
        ])
    );
    assert_eq!(
        check_ours(cfg),
        Err(vec![misplaced("PREFERRED_PEERS", "HISTORY.h", 17)])
    );
    // A dotted key at the top level is just as inside.
    assert_eq!(
        check("QUORUM_SET.CATCHUP_RECENT = 1\n"),
        Err(vec![misplaced("CATCHUP_RECENT", "QUORUM_SET", 1)])
    );
    let msg = misplaced("CATCHUP_COMPLETE", "QUORUM_SET", 5).to_string();
    assert!(
        msg.contains("line 5") && msg.contains("move it above the first table header"),
        "{msg}"
    );
}

#[test]
fn checker_rejects_keys_the_tables_do_not_allow() {
    let cfg = "[[HOME_DOMAINS]]\nHOME_DOMAIN=\"a.org\"\nQUALITY=\"LOW\"\nNAME=\"x\"\n[[VALIDATORS]]\nNAME=\"a\"\nHOME_DOMAIN=\"a.org\"\nPUBLIC_KEY=\"GA\"\nADDRESS=\"a.org\"\nHISTORY=\"curl\"\nQUALITY=\"LOW\"\nhistory=\"x\"\n[HISTORY.h]\nget=\"g\"\nput=\"p\"\nmkdir=\"m\"\nGET=\"x\"\n[QUORUM_SET]\nVALIDATORS=[\"GA\"]\nthreshold=1\n";
    assert_eq!(
        check(cfg),
        Err(vec![
            unknown_in("HOME_DOMAINS", "NAME", 4),
            unknown_in("VALIDATORS", "history", 12),
            unknown_in("HISTORY.h", "GET", 17),
            unknown_in("QUORUM_SET", "threshold", 20),
        ])
    );
    assert_eq!(
        check("[HISTORY]\nget=\"x\"\n[HISTORY.a.b]\n[VALIDATORS.x]\n"),
        Err(vec![
            unknown_in("HISTORY", "get", 2),
            unknown_in("HISTORY.a", "b", 3),
            unknown_in("VALIDATORS", "x", 4),
        ])
    );
}

#[test]
fn checker_rejects_unknown_top_level_keys() {
    assert_eq!(
        check("HTTP_PORT=1\nKNOWN_CURSORS=[]\n[FOO]\nx=1\nknown_peers=[]\n"),
        Err(vec![
            unknown("KNOWN_CURSORS", 2),
            unknown("FOO", 3),
            unknown_in("FOO", "x", 4),
            unknown_in("FOO", "known_peers", 5)
        ])
    );
    // KNOWN_CURSORS and MINIMUM_IDLE_PERCENT are still in SDF's chart but no
    // longer in stellar-core: a chart user setting them gets this.
    assert_eq!(
        check("MINIMUM_IDLE_PERCENT=1\n"),
        Err(vec![unknown("MINIMUM_IDLE_PERCENT", 1)])
    );
}

#[test]
fn checker_rejects_bad_peer_addresses() {
    for bad in [
        "[::1]:11625",
        "fe80::1",
        "a b",
        "",
        "a:0",
        "a:65536",
        "a:123456",
        "a:",
        "a:x",
        "a_b.org",
        "\"q\"",
        "1.2.3.4:11625:1",
    ] {
        let cfg = format!("HTTP_PORT=1\nPREFERRED_PEERS=['ok.org', '{bad}']\n");
        assert_eq!(
            check(&cfg),
            Err(vec![Violation::BadAddress {
                key: "PREFERRED_PEERS".into(),
                line: 2,
                address: bad.into()
            }]),
            "{bad:?}"
        );
    }
    assert!(check::is_core_address("CORE-live.stellar.org:11625"));
    assert!(check::is_core_address("10.0.0.1"));
}

#[test]
fn checker_rejects_wrong_types() {
    let wrong = |key: &str, line, expected, found| Violation::WrongType {
        key: key.into(),
        line,
        expected,
        found,
    };
    for (cfg, v) in [
        (
            "KNOWN_PEERS=\"a\"\n",
            wrong("KNOWN_PEERS", 1, "an array of strings", "a string"),
        ),
        (
            "KNOWN_PEERS=[1]\n",
            wrong("KNOWN_PEERS", 1, "an array of strings", "an array"),
        ),
        (
            "PREFERRED_PEERS={a=1}\n",
            wrong("PREFERRED_PEERS", 1, "an array of strings", "a table"),
        ),
        (
            "[VALIDATORS]\nNAME=\"a\"\n",
            wrong(
                "VALIDATORS",
                1,
                "an array of tables (write [[...]])",
                "a table",
            ),
        ),
        (
            "[[QUORUM_SET]]\nVALIDATORS=[]\n",
            wrong(
                "QUORUM_SET",
                1,
                "a table ([QUORUM_SET])",
                "an array of tables",
            ),
        ),
        (
            "[QUORUM_SET]\nTHRESHOLD_PERCENT=0\n",
            wrong(
                "THRESHOLD_PERCENT",
                2,
                "an integer from 1 to 100",
                "an integer outside 1..=100",
            ),
        ),
        (
            "[QUORUM_SET]\nVALIDATORS=\"GA\"\n",
            wrong("VALIDATORS", 2, "an array of strings", "a string"),
        ),
        (
            "[[VALIDATORS]]\nNAME=1\n",
            wrong("NAME", 2, "a string", "an integer"),
        ),
        (
            "[CATCHUP_COMPLETE]\n",
            wrong("CATCHUP_COMPLETE", 1, "a value, not a table", "a table"),
        ),
        (
            "QUORUM_SET=1\n",
            wrong("QUORUM_SET", 1, "a table", "an integer"),
        ),
        (
            "HOME_DOMAINS=[1]\n",
            wrong("HOME_DOMAINS", 1, "an array of tables", "an array"),
        ),
    ] {
        assert_eq!(check(cfg), Err(vec![v]), "{cfg}");
    }
}

#[test]
fn violations_know_whose_they_are() {
    assert!(unknown("KNOWN_PEERS", 1).is_ours());
    assert!(!unknown("TLS_CERT_FILE", 1).is_ours());
    assert!(!misplaced("CATCHUP_COMPLETE", "QUORUM_SET", 1).is_ours());
    assert!(misplaced("KNOWN_PEERS", "QUORUM_SET", 1).is_ours());
    assert_eq!(unknown("A", 0).line(), None);
    assert_eq!(unknown("A", 3).line(), Some(3));
}

// ------------------------------------------------------------ generated

/// Statement texts without line endings, minus the ones a merge owns.
fn foreign_statements(cfg: &str) -> Vec<String> {
    let stmts = super::scan::scan(cfg).expect("scans");
    stmts
        .iter()
        .filter(|s| match &s.kind {
            super::scan::Kind::KeyValue { key, .. } => key != KNOWN_PEERS && key != PREFERRED_PEERS,
            super::scan::Kind::Comment => !cfg[s.range.clone()].trim_start().starts_with(MARKER),
            _ => true,
        })
        .map(|s| {
            cfg[s.range.clone()]
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        })
        .collect()
}

#[test]
fn generated_configs_keep_every_other_statement() {
    const PARTS: &[&str] = &[
        "HTTP_PORT = 1\n",
        "PEER_PORT=2 # [QUORUM_SET]\n",
        "KNOWN_PEERS = [\"a.example.org\", \"b:1\"]\n",
        "KNOWN_PEERS = [\n  \"c.example.org\", # ] [\n  'd',\n]\n",
        "PREFERRED_PEERS = ['a.example.org:11625']\n",
        "\"PREFERRED_PEERS\" = []\n",
        "[QUORUM_SET]\n",
        "THRESHOLD_PERCENT = 67\n",
        "VALIDATORS = [\"GA\"]\n",
        "[QUORUM_SET.inner]\n",
        "[[VALIDATORS]]\n",
        "NAME = \"x\"\n",
        "[HISTORY.h]\n",
        "get = \"cp {0} {1}\"\n",
        "# comment with [brackets] and KNOWN_PEERS = []\n",
        "\n",
        "\r\n",
        "DATABASE = \"\"\"\n[NOT]\nKNOWN_PEERS = [\"z\"]\n\"\"\"\n",
        "NODE_HOME_DOMAIN = '''\n# not a comment\n'''\n",
        "COMMANDS = [\n\"ll?level=info\", # x\n]\n",
        "INVARIANT_CHECKS = [] # no newline",
    ];
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let mut tried = 0;
    for _ in 0..3000 {
        let n = next() % 9;
        let mut base = String::new();
        for _ in 0..n {
            base.push_str(PARTS[next() % PARTS.len()]);
        }
        if toml::from_str::<toml::Table>(&base).is_err() {
            continue;
        }
        tried += 1;
        let out = merge(&base, &KNOWN, &PREFERRED)
            .unwrap_or_else(|e| panic!("merge failed on {base:?}: {e}"));
        assert_eq!(
            merge(&out, &KNOWN, &PREFERRED).as_ref(),
            Ok(&out),
            "{base:?}"
        );
        assert_eq!(check_ours(&out), Ok(()), "{base:?}\n{out}");
        assert_eq!(
            foreign_statements(&out),
            foreign_statements(&base),
            "{base:?}"
        );
        let t: toml::Table = toml::from_str(&out).expect("merged is TOML");
        assert!(t.get(KNOWN_PEERS).is_some_and(toml::Value::is_array));
    }
    assert!(tried > 300, "only {tried} generated configs were TOML");
}

// --- captive core (Horizon, stellar-rpc) -------------------------------------------------

/// Captive-core files (sources in tests/fixtures/captive/README.md).
mod captive {
    use super::*;

    const OPERATOR_SOROBANRPC: &str =
        include_str!("../../../tests/fixtures/captive/operator-sorobanrpc-testnet.cfg");
    const SDF_SOROBAN_RPC: &str =
        include_str!("../../../tests/fixtures/captive/sdf-soroban-rpc-testnet.cfg");
    const SDF_HORIZON: &str =
        include_str!("../../../tests/fixtures/captive/sdf-horizon-testnet.cfg");
    const NO_TABLES: &str = include_str!("../../../tests/fixtures/captive/no-tables.cfg");
    const PRIVATE_QUORUM: &str = include_str!("../../../tests/fixtures/captive/private-quorum.cfg");
    const USER_KNOWN_PEERS: &str =
        include_str!("../../../tests/fixtures/captive/user-known-peers.cfg");

    const ALL: [&str; 6] = [
        OPERATOR_SOROBANRPC,
        SDF_SOROBAN_RPC,
        SDF_HORIZON,
        NO_TABLES,
        PRIVATE_QUORUM,
        USER_KNOWN_PEERS,
    ];

    /// Our block as `merge_captive` must write it.
    fn captive_block(peers: &[&str]) -> String {
        let mut s = format!(
            "{CAPTIVE_MARKER} (render-config --flavour captive-core); edit the base file or the StellarNodes instead.\n"
        );
        s += "PREFERRED_PEERS = [\n";
        for p in peers {
            s += &format!("  \"{p}\",\n");
        }
        s += "]\n";
        s
    }

    /// The merged file minus our block is the base minus its top-level PREFERRED_PEERS.
    fn without(text: &str, cut: &str) -> String {
        assert!(text.contains(cut), "{cut:?} not in:\n{text}");
        text.replacen(cut, "", 1)
    }

    fn top_level_preferred(cfg: &str) -> Vec<String> {
        let t: toml::Table = toml::from_str(cfg).expect("TOML");
        t.get(PREFERRED_PEERS)
            .and_then(toml::Value::as_array)
            .expect("top-level PREFERRED_PEERS")
            .iter()
            .map(|v| v.as_str().expect("string").to_owned())
            .collect()
    }

    #[test]
    fn operator_sorobanrpc_shape_gets_the_key_above_its_tables_not_inside_history() {
        let out = merge_captive(OPERATOR_SOROBANRPC, &KNOWN).expect("merge");
        let block = captive_block(&KNOWN);
        // Right after the only top-level key, before [HISTORY.archive1].
        assert_eq!(
            out,
            OPERATOR_SOROBANRPC.replacen(
                "NETWORK_PASSPHRASE=\"Test SDF Network ; September 2015\"\n",
                &format!("NETWORK_PASSPHRASE=\"Test SDF Network ; September 2015\"\n{block}"),
                1
            )
        );
        assert!(out.find("PREFERRED_PEERS").expect("key") < out.find("[HISTORY").expect("table"));
        assert_eq!(top_level_preferred(&out), KNOWN);
        // The operator's PEER_PORT, HTTP_PORT and LOG_LEVEL stay inside its last table.
        let t: toml::Table = toml::from_str(&out).expect("TOML");
        assert!(t["HISTORY"]["archive2"].get("PEER_PORT").is_some());
        assert!(t.get("PEER_PORT").is_none());
        assert!(!out.contains("KNOWN_PEERS"), "{out}");
    }

    #[test]
    fn own_preferred_peers_are_merged_normalised_sorted_and_deduplicated() {
        let peers = [
            "core-testnet2.stellar.org:11625",
            "v1.ns.svc.cluster.local:11625",
        ];
        let out = merge_captive(SDF_SOROBAN_RPC, &peers).expect("merge");
        let want = [
            "core-testnet1.stellar.org:11625",
            "core-testnet2.stellar.org:11625",
            "v1.ns.svc.cluster.local:11625",
        ];
        assert_eq!(top_level_preferred(&out), want);
        // In place of the file's own line (after the last top-level key before it).
        let own =
            "PREFERRED_PEERS=[\"core-testnet1.stellar.org\",\"core-testnet2.stellar.org:11625\"]\n";
        assert_eq!(
            without(&out, &captive_block(&want)),
            without(SDF_SOROBAN_RPC, own)
        );
        // [[VALIDATORS]] with ADDRESS and [[HOME_DOMAINS]] are the base's bytes.
        let tail = &SDF_SOROBAN_RPC[SDF_SOROBAN_RPC.find("[[HOME_DOMAINS]]").expect("hd")..];
        assert!(out.ends_with(tail));
        assert_eq!(captive_base_peers(&out).expect("peers").len(), 3);
    }

    #[test]
    fn validators_and_home_domains_without_own_peers() {
        let out = merge_captive(SDF_HORIZON, &KNOWN).expect("merge");
        // After PEER_PORT .. FAILURE_SAFETY, before the blank line and [[HOME_DOMAINS]].
        let anchor = "FAILURE_SAFETY=1\n";
        assert_eq!(
            out,
            SDF_HORIZON.replacen(anchor, &format!("{anchor}{}", captive_block(&KNOWN)), 1)
        );
        let t: toml::Table = toml::from_str(&out).expect("TOML");
        assert_eq!(t["VALIDATORS"].as_array().expect("validators").len(), 3);
        assert!(t["HOME_DOMAINS"][0].get(PREFERRED_PEERS).is_none());
    }

    #[test]
    fn a_file_with_no_tables_and_comments() {
        let out = merge_captive(NO_TABLES, &KNOWN).expect("merge");
        let mut want = vec!["core-testnet1.stellar.org:11625".to_owned()];
        want.extend(KNOWN.iter().map(|s| (*s).to_owned()));
        want.sort();
        assert_eq!(top_level_preferred(&out), want);
        // Every comment stays, including the one on the removed array's line.
        for line in NO_TABLES.lines().filter(|l| l.starts_with('#')) {
            assert!(out.contains(line), "{line:?} lost:\n{out}");
        }
        // The block follows the last top-level key left.
        let block = captive_block(&want.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            out,
            format!(
                "# A captive-core file without tables: only top-level keys.\nNETWORK_PASSPHRASE=\"Test SDF Network ; September 2015\" # the network\n{block}# The user's own preferred peer stays.\n# trailing comment\n"
            )
        );
    }

    #[test]
    fn comment_only_and_empty_files() {
        assert_eq!(
            merge_captive("", &KNOWN).expect("empty"),
            captive_block(&KNOWN)
        );
        let only = "# nothing\n";
        assert_eq!(
            merge_captive(only, &KNOWN).expect("comment"),
            format!("{only}{}", captive_block(&KNOWN))
        );
        // A header's own comments stay attached to it.
        let q = "# quorum\n[QUORUM_SET]\nTHRESHOLD_PERCENT=100\n";
        assert_eq!(
            merge_captive(q, &KNOWN).expect("quorum"),
            format!("{}{q}", captive_block(&KNOWN))
        );
        // No peers: an empty array, still top level.
        let out = merge_captive(q, &[] as &[&str]).expect("none");
        assert!(out.starts_with(&format!("{CAPTIVE_MARKER} ")), "{out}");
        assert!(out.contains("PREFERRED_PEERS = []\n"), "{out}");
    }

    #[test]
    fn never_adds_known_peers_and_keeps_the_users() {
        for base in ALL {
            let out = merge_captive(base, &KNOWN).expect("merge");
            assert_eq!(
                out.matches("KNOWN_PEERS").count(),
                base.matches("KNOWN_PEERS").count(),
                "{out}"
            );
        }
        let out = merge_captive(USER_KNOWN_PEERS, &KNOWN).expect("merge");
        assert!(out.contains("KNOWN_PEERS=[\"core-testnet1.stellar.org\"]\n"));
        // The checker says what captive core will say.
        let v = check_captive(&out).expect_err("KNOWN_PEERS");
        assert_eq!(
            v,
            [Violation::CaptiveRefused {
                key: KNOWN_PEERS.into(),
                line: 2
            }]
        );
        assert!(!v[0].is_ours());
        assert!(v[0].to_string().contains("captive core"), "{}", v[0]);
    }

    #[test]
    fn preferred_peers_inside_a_table_is_the_users_and_stays() {
        let base = "NETWORK_PASSPHRASE=\"x\"\n[[HOME_DOMAINS]]\nHOME_DOMAIN=\"a.org\"\nQUALITY=\"LOW\"\nPREFERRED_PEERS=[\"b.org\"]\n";
        let out = merge_captive(base, &KNOWN).expect("merge");
        assert_eq!(
            out,
            base.replacen(
                "NETWORK_PASSPHRASE=\"x\"\n",
                &format!("NETWORK_PASSPHRASE=\"x\"\n{}", captive_block(&KNOWN)),
                1
            )
        );
        assert_eq!(
            check_captive(&out),
            Err(vec![Violation::MisplacedKey {
                key: PREFERRED_PEERS.into(),
                table: "HOME_DOMAINS".into(),
                line: 10
            }])
        );
    }

    #[test]
    fn idempotent_and_crlf() {
        for base in ALL {
            let once = merge_captive(base, &KNOWN).expect("once");
            assert_eq!(merge_captive(&once, &KNOWN).as_ref(), Ok(&once));
            let crlf = base.replace('\n', "\r\n");
            let out = merge_captive(&crlf, &KNOWN).expect("crlf");
            assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
            assert_eq!(out.replace("\r\n", "\n"), once);
        }
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let e = merge_captive("PREFERRED_PEERS=\"a\"\n", &KNOWN).expect_err("string");
        assert!(e.to_string().contains("must be an array"), "{e}");
        let e = merge_captive("PREFERRED_PEERS=[\"[::1]\"]\n", &KNOWN).expect_err("ipv6");
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = merge_captive("A=\n", &KNOWN).expect_err("toml");
        assert!(e.to_string().contains("not valid TOML at line 1"), "{e}");
        let e = merge_captive("", &["a b"]).expect_err("peer");
        assert!(matches!(e, MergeError::BadPeer { .. }), "{e:?}");
        // [KNOWN_PEERS] as a table is the user's business in a captive file.
        assert!(merge_captive("[KNOWN_PEERS]\n", &KNOWN).is_ok());
        assert!(merge_captive("[PREFERRED_PEERS]\n", &KNOWN).is_err());
    }

    /// Statement texts without line endings, minus the top-level PREFERRED_PEERS and our
    /// captive marker (what `merge_captive` owns).
    fn captive_foreign(cfg: &str) -> Vec<String> {
        let mut in_table = false;
        super::super::scan::scan(cfg)
            .expect("scans")
            .iter()
            .filter(|s| match &s.kind {
                super::super::scan::Kind::Header { .. } => {
                    in_table = true;
                    true
                }
                super::super::scan::Kind::KeyValue { key, .. } => {
                    in_table || key != PREFERRED_PEERS
                }
                super::super::scan::Kind::Comment => !cfg[s.range.clone()]
                    .trim_start()
                    .starts_with(CAPTIVE_MARKER),
                super::super::scan::Kind::Blank => true,
            })
            .map(|s| {
                cfg[s.range.clone()]
                    .trim_end_matches(['\r', '\n'])
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn generated_captive_files_keep_every_other_statement() {
        const PARTS: &[&str] = &[
            "NETWORK_PASSPHRASE = \"x\"\n",
            "PEER_PORT=2 # [HISTORY.x]\n",
            "KNOWN_PEERS = [\"a.example.org\"]\n",
            "PREFERRED_PEERS = ['a.example.org:11625', \"B.example.org\"]\n",
            "PREFERRED_PEERS = [\n  \"c.example.org\", # ] [\n]\n",
            "[[HOME_DOMAINS]]\n",
            "HOME_DOMAIN = \"h.org\"\n",
            "[[VALIDATORS]]\n",
            "ADDRESS = \"v.example.org\"\n",
            "[QUORUM_SET]\n",
            "THRESHOLD_PERCENT = 67\n",
            "[HISTORY.h]\n",
            "get = \"cp {0} {1}\"\n",
            "LOG_LEVEL = \"info\"\n",
            "# comment with PREFERRED_PEERS = []\n",
            "\n",
            "DATABASE = \"\"\"\n[NOT]\nPREFERRED_PEERS = [\"z\"]\n\"\"\"\n",
            "PREFERRED_PEERS_ONLY = false # no newline",
        ];
        let mut seed: u64 = 0x5eed_cafe_0024_0001;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let mut tried = 0;
        for _ in 0..3000 {
            let n = next() % 9;
            let mut base = String::new();
            for _ in 0..n {
                base.push_str(PARTS[next() % PARTS.len()]);
            }
            if toml::from_str::<toml::Table>(&base).is_err() {
                continue;
            }
            tried += 1;
            let out = merge_captive(&base, &KNOWN)
                .unwrap_or_else(|e| panic!("merge failed on {base:?}: {e}"));
            assert_eq!(merge_captive(&out, &KNOWN).as_ref(), Ok(&out), "{base:?}");
            assert_eq!(
                captive_foreign(&out),
                captive_foreign(&base),
                "{base:?}\n{out}"
            );
            assert_eq!(
                out.matches("KNOWN_PEERS").count(),
                base.matches("KNOWN_PEERS").count(),
                "{base:?}"
            );
            let got = top_level_preferred(&out);
            assert!(KNOWN.iter().all(|k| got.iter().any(|g| g == k)), "{got:?}");
            let t: toml::Table = toml::from_str(&out).expect("TOML");
            assert!(t[PREFERRED_PEERS].is_array());
        }
        assert!(tried > 300, "only {tried} generated files were TOML");
    }

    #[test]
    fn core_flavour_is_unchanged_by_the_captive_one() {
        // A validator's merge still writes both keys, with its own marker.
        let out = merge(OPERATOR_RECENT, &KNOWN, &PREFERRED).expect("merge");
        assert!(out.contains(MARKER) && !out.contains(CAPTIVE_MARKER));
        assert!(out.contains("KNOWN_PEERS = ["));
    }
}
