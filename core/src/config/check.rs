//! stellar-core's config rules, checked without stellar-core.
//!
//! Rules from stellar/stellar-core `src/main/Config.cpp` (commit
//! a9b8613218e141ddb89d621e5f04d4c75a149d36): `processConfig` (unknown
//! top-level key is fatal), `loadQset` (a quorum set holds THRESHOLD_PERCENT,
//! VALIDATORS and inner sets, which must be tables), `parseValidators`,
//! `parseDomainsQuality`, the HISTORY block (`get`, `put`, `mkdir`), and
//! `src/overlay/PeerBareAddress.cpp` (peer address syntax). cpptoml refuses
//! duplicate keys; so does the `toml` crate.

use super::keys::{
    HISTORY_KEYS, HOME_DOMAINS_KEYS, QUORUM_SET_KEYS, VALIDATORS_KEYS, is_top_level_key,
};
use super::scan::{Kind, ScanError, scan};
use super::{KNOWN_PEERS, PREFERRED_PEERS, TomlError};

/// One broken rule. `line` is 1-based; 0 when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Not TOML, including a duplicate key.
    #[error("{0}")]
    InvalidToml(TomlError),
    /// A top-level key (or table) stellar-core does not know.
    #[error(
        "line {line}: unknown key {key:?}: stellar-core refuses to start; remove it or fix its spelling"
    )]
    UnknownKey { key: String, line: usize },
    /// A top-level stellar-core key written after a table header, so TOML
    /// puts it in that table (`CATCHUP_COMPLETE` after `[QUORUM_SET]` is
    /// `QUORUM_SET.CATCHUP_COMPLETE`).
    #[error(
        "line {line}: {key} is inside [{table}] (every key after a table header belongs to it); move it above the first table header"
    )]
    MisplacedKey {
        key: String,
        table: String,
        line: usize,
    },
    /// A key that table does not allow.
    #[error("line {line}: [{table}] cannot hold {key:?}; remove it")]
    UnknownTableKey {
        table: String,
        key: String,
        line: usize,
    },
    /// A value of the wrong type.
    #[error("line {line}: {key} must be {expected}, not {found}")]
    WrongType {
        key: String,
        line: usize,
        expected: &'static str,
        found: &'static str,
    },
    /// An entry of `KNOWN_PEERS`/`PREFERRED_PEERS` stellar-core cannot parse.
    #[error(
        "line {line}: {key}: {address:?} is not host[:port] with an IPv4 address or a name of letters, digits, '.' and '-' (and a port from 1 to 65535)"
    )]
    BadAddress {
        key: String,
        line: usize,
        address: String,
    },
    /// A key captive core's strict parser refuses (Horizon, stellar-rpc:
    /// "these fields are not supported by captive core").
    #[error(
        "line {line}: {key}: captive core (Horizon, stellar-rpc) refuses this key; remove it (the in-cluster validators arrive as PREFERRED_PEERS)"
    )]
    CaptiveRefused { key: String, line: usize },
    #[error(transparent)]
    Scan(ScanError),
}

impl Violation {
    /// The 1-based line, when known.
    pub fn line(&self) -> Option<usize> {
        let l = match self {
            Self::InvalidToml(e) => e.line,
            Self::Scan(e) => e.line,
            Self::UnknownKey { line, .. }
            | Self::CaptiveRefused { line, .. }
            | Self::MisplacedKey { line, .. }
            | Self::UnknownTableKey { line, .. }
            | Self::WrongType { line, .. }
            | Self::BadAddress { line, .. } => *line,
        };
        (l > 0).then_some(l)
    }

    /// Whether the rule is one stellar-peer-injector is responsible for: the
    /// file is TOML, and `KNOWN_PEERS`/`PREFERRED_PEERS` are top-level arrays
    /// of valid addresses, once each.
    pub fn is_ours(&self) -> bool {
        let ours = |k: &str| k == KNOWN_PEERS || k == PREFERRED_PEERS;
        match self {
            Self::InvalidToml(_) | Self::Scan(_) => true,
            // Captive core: we never write such a key.
            Self::CaptiveRefused { .. } => false,
            Self::UnknownKey { key, .. }
            | Self::MisplacedKey { key, .. }
            | Self::UnknownTableKey { key, .. }
            | Self::WrongType { key, .. }
            | Self::BadAddress { key, .. } => ours(key),
        }
    }
}

/// Checks `cfg` against stellar-core's rules; every violation, in file order.
///
/// Checked: TOML syntax and duplicate keys; unknown top-level keys; top-level
/// keys that TOML puts inside a table; keys a table does not allow
/// (`[QUORUM_SET]` and inner sets, `[[HOME_DOMAINS]]`, `[[VALIDATORS]]`,
/// `[HISTORY.name]`); table shapes (`[[VALIDATORS]]` not `[VALIDATORS]`);
/// `KNOWN_PEERS`/`PREFERRED_PEERS` as arrays of addresses stellar-core can
/// parse; string/integer types inside those tables. Not checked: the types
/// of other top-level keys, node IDs, qualities, required fields and quorum
/// safety, which stellar-core reports clearly itself.
pub fn check(cfg: &str) -> Result<(), Vec<Violation>> {
    if let Err(e) = toml::from_str::<toml::Table>(cfg) {
        return Err(vec![Violation::InvalidToml(TomlError::new(cfg, &e))]);
    }
    let stmts = scan(cfg).map_err(|e| vec![Violation::Scan(e)])?;
    let mut out = Vec::new();
    let mut ctx: Vec<String> = Vec::new();
    for s in &stmts {
        match &s.kind {
            Kind::Header { path, array } => {
                check_header(path, *array, s.line, &mut out);
                ctx.clone_from(path);
            }
            Kind::KeyValue { key, value } => check_entry(&ctx, key, value, s.line, &mut out),
            Kind::Blank | Kind::Comment => {}
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Only the violations stellar-peer-injector is responsible for
/// ([`Violation::is_ours`]).
pub fn check_ours(cfg: &str) -> Result<(), Vec<Violation>> {
    match check(cfg) {
        Ok(()) => Ok(()),
        Err(v) => {
            let ours: Vec<_> = v.into_iter().filter(Violation::is_ours).collect();
            if ours.is_empty() { Ok(()) } else { Err(ours) }
        }
    }
}

/// Top-level keys captive core's strict parser refuses (`ingest/ledgerbackend/toml.go`
/// of go-stellar-sdk v0.7.3, checked with the real parser: `captive-check`); it accepts
/// `CATCHUP_COMPLETE`. Other keys come and go between versions; the process names them.
const CAPTIVE_REFUSED: [&str; 4] = [
    KNOWN_PEERS,
    "NODE_SEED",
    "TARGET_PEER_CONNECTIONS",
    "CATCHUP_RECENT",
];

/// Checks a captive-core file for what its strict parser refuses and this crate can
/// see without it: not TOML; a top-level `KNOWN_PEERS`, `NODE_SEED`,
/// `TARGET_PEER_CONNECTIONS` or `CATCHUP_RECENT` ([`Violation::CaptiveRefused`]); a
/// `PREFERRED_PEERS` inside a table ([`Violation::MisplacedKey`]); a top-level
/// `PREFERRED_PEERS` that is not an array of addresses. Everything else (the
/// allow-list changes between SDK versions, the passphrase and ports must match the
/// process) is for the process to judge.
pub fn check_captive(cfg: &str) -> Result<(), Vec<Violation>> {
    if let Err(e) = toml::from_str::<toml::Table>(cfg) {
        return Err(vec![Violation::InvalidToml(TomlError::new(cfg, &e))]);
    }
    let stmts = scan(cfg).map_err(|e| vec![Violation::Scan(e)])?;
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    for s in &stmts {
        match &s.kind {
            Kind::Header { path, .. } => table = Some(path.join(".")),
            Kind::KeyValue { key, value } => match &table {
                None if CAPTIVE_REFUSED.contains(&key.as_str()) => {
                    out.push(Violation::CaptiveRefused {
                        key: key.clone(),
                        line: s.line,
                    });
                }
                None if key == PREFERRED_PEERS => check_top_level(key, value, s.line, &mut out),
                Some(t) if key == PREFERRED_PEERS => out.push(Violation::MisplacedKey {
                    key: key.clone(),
                    table: t.clone(),
                    line: s.line,
                }),
                _ => {}
            },
            Kind::Blank | Kind::Comment => {}
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

fn check_header(path: &[String], array: bool, line: usize, out: &mut Vec<Violation>) {
    let Some(first) = path.first() else { return };
    let wrong = |expected, found| Violation::WrongType {
        key: path.join("."),
        line,
        expected,
        found,
    };
    match first.as_str() {
        "QUORUM_SET" => {
            if array {
                out.push(wrong("a table ([QUORUM_SET])", "an array of tables"));
            } else if let Some(k) = path[1..]
                .iter()
                .find(|k| QUORUM_SET_KEYS.contains(&k.as_str()))
            {
                out.push(Violation::WrongType {
                    key: k.clone(),
                    line,
                    expected: if k == "VALIDATORS" {
                        "an array of strings"
                    } else {
                        "an integer"
                    },
                    found: "a table",
                });
            }
        }
        "HISTORY" => match path.len() {
            1 | 2 if !array => {}
            1 | 2 => out.push(wrong("a table ([HISTORY.name])", "an array of tables")),
            _ => out.push(Violation::UnknownTableKey {
                table: path[..2].join("."),
                key: path[2].clone(),
                line,
            }),
        },
        "VALIDATORS" | "HOME_DOMAINS" => {
            if path.len() > 1 {
                out.push(Violation::UnknownTableKey {
                    table: first.clone(),
                    key: path[1].clone(),
                    line,
                });
            } else if !array {
                out.push(wrong("an array of tables (write [[...]])", "a table"));
            }
        }
        k if is_top_level_key(k) => out.push(Violation::WrongType {
            key: k.to_owned(),
            line,
            expected: "a value, not a table",
            found: "a table",
        }),
        k => out.push(Violation::UnknownKey {
            key: k.to_owned(),
            line,
        }),
    }
}

/// Checks `key = value` found in the table at `ctx` (empty: top level).
fn check_entry(
    ctx: &[String],
    key: &str,
    value: &toml::Value,
    line: usize,
    out: &mut Vec<Violation>,
) {
    let table = ctx.join(".");
    let misplaced_or_unknown = |out: &mut Vec<Violation>| {
        out.push(if is_top_level_key(key) {
            Violation::MisplacedKey {
                key: key.to_owned(),
                table: table.clone(),
                line,
            }
        } else {
            Violation::UnknownTableKey {
                table: table.clone(),
                key: key.to_owned(),
                line,
            }
        });
    };
    let first = ctx.first().map(String::as_str);
    match (first, ctx.len()) {
        (None, _) => check_top_level(key, value, line, out),
        (Some("QUORUM_SET"), _) => match key {
            "THRESHOLD_PERCENT" => {
                if !matches!(value, toml::Value::Integer(1..=100)) {
                    out.push(Violation::WrongType {
                        key: key.to_owned(),
                        line,
                        expected: "an integer from 1 to 100",
                        found: type_name_or_range(value),
                    });
                }
            }
            "VALIDATORS" => strings(key, value, line, out),
            _ => match value {
                toml::Value::Table(t) => {
                    let mut inner = ctx.to_vec();
                    inner.push(key.to_owned());
                    for (k, v) in t {
                        check_entry(&inner, k, v, line, out);
                    }
                }
                _ => misplaced_or_unknown(out),
            },
        },
        (Some("HOME_DOMAINS"), 1) | (Some("VALIDATORS"), 1) => {
            let allowed = if first == Some("VALIDATORS") {
                VALIDATORS_KEYS
            } else {
                HOME_DOMAINS_KEYS
            };
            if allowed.contains(&key) {
                string(key, value, line, out);
            } else {
                misplaced_or_unknown(out);
            }
        }
        (Some("HISTORY"), 1) => match value {
            toml::Value::Table(t) => {
                let inner = [ctx[0].clone(), key.to_owned()];
                for (k, v) in t {
                    check_entry(&inner, k, v, line, out);
                }
            }
            _ => misplaced_or_unknown(out),
        },
        (Some("HISTORY"), 2) => {
            if HISTORY_KEYS.contains(&key) {
                string(key, value, line, out);
            } else {
                misplaced_or_unknown(out);
            }
        }
        // Tables whose header was already reported, or deeper than allowed.
        _ => misplaced_or_unknown(out),
    }
}

fn check_top_level(key: &str, value: &toml::Value, line: usize, out: &mut Vec<Violation>) {
    if !is_top_level_key(key) {
        out.push(Violation::UnknownKey {
            key: key.to_owned(),
            line,
        });
        return;
    }
    let wrong = |expected, out: &mut Vec<Violation>| {
        out.push(Violation::WrongType {
            key: key.to_owned(),
            line,
            expected,
            found: super::merge::type_name(value),
        });
    };
    match key {
        KNOWN_PEERS | PREFERRED_PEERS => {
            let toml::Value::Array(items) = value else {
                return wrong("an array of strings", out);
            };
            for v in items {
                match v {
                    toml::Value::String(s) if is_core_address(s) => {}
                    toml::Value::String(s) => out.push(Violation::BadAddress {
                        key: key.to_owned(),
                        line,
                        address: s.clone(),
                    }),
                    _ => return wrong("an array of strings", out),
                }
            }
        }
        "QUORUM_SET" | "HISTORY" => match value {
            toml::Value::Table(t) => {
                let ctx = [key.to_owned()];
                for (k, v) in t {
                    check_entry(&ctx, k, v, line, out);
                }
            }
            _ => wrong("a table", out),
        },
        "VALIDATORS" | "HOME_DOMAINS" => {
            let toml::Value::Array(items) = value else {
                return wrong("an array of tables", out);
            };
            let ctx = [key.to_owned()];
            for item in items {
                let toml::Value::Table(t) = item else {
                    return wrong("an array of tables", out);
                };
                for (k, v) in t {
                    check_entry(&ctx, k, v, line, out);
                }
            }
        }
        _ => {}
    }
}

fn type_name_or_range(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::Integer(_) => "an integer outside 1..=100",
        other => super::merge::type_name(other),
    }
}

fn string(key: &str, value: &toml::Value, line: usize, out: &mut Vec<Violation>) {
    if !value.is_str() {
        out.push(Violation::WrongType {
            key: key.to_owned(),
            line,
            expected: "a string",
            found: super::merge::type_name(value),
        });
    }
}

fn strings(key: &str, value: &toml::Value, line: usize, out: &mut Vec<Violation>) {
    let ok = matches!(value, toml::Value::Array(a) if a.iter().all(toml::Value::is_str));
    if !ok {
        out.push(Violation::WrongType {
            key: key.to_owned(),
            line,
            expected: "an array of strings",
            found: super::merge::type_name(value),
        });
    }
}

/// stellar-core's peer address syntax (`PeerBareAddress::resolve`):
/// `^(?:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})|([[:alnum:].-]+))(?::(\d{1,5}))?$`,
/// then a port from 1 to 65535. Names are only resolved at run time.
pub fn is_core_address(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    // The IPv4 alternative is a subset of the name alternative.
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    host_ok && port_ok
}
