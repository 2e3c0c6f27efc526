//! Merging peer lists into a stellar-core config, keeping everything else.

use std::collections::BTreeSet;

use crate::peers::address::{AddressError, normalize};

use super::scan::{Kind, ScanError, Stmt, scan};
use super::{KNOWN_PEERS, PREFERRED_PEERS, TomlError};

/// First words of the comment written above the merged keys. A comment line
/// starting with them is dropped on the next merge, so merging twice gives the
/// same file.
pub const MARKER: &str = "# KNOWN_PEERS and PREFERRED_PEERS merged by stellar-peer-injector";

/// First words of the comment written above `PREFERRED_PEERS` in a captive-core
/// file ([`merge_captive`]); dropped on the next merge like [`MARKER`].
pub const CAPTIVE_MARKER: &str = "# PREFERRED_PEERS merged by stellar-peer-injector";

/// Which kind of file a merge writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Flavour {
    /// stellar-core's own config (a validator): `KNOWN_PEERS` and `PREFERRED_PEERS`.
    #[default]
    Core,
    /// A captive-core TOML read by Horizon or stellar-rpc: `PREFERRED_PEERS` only,
    /// since their strict parser refuses `KNOWN_PEERS`.
    CaptiveCore,
}

impl Flavour {
    /// The value of `render-config --flavour`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::CaptiveCore => "captive-core",
        }
    }
}

/// Why a base config could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("{0}")]
    Toml(#[from] TomlError),
    #[error(
        "line {line}: {key} must be an array of strings like [\"core.example.org:11625\"], not {found}"
    )]
    WrongType {
        key: &'static str,
        line: usize,
        found: &'static str,
    },
    #[error("line {line}: {key}: {source}")]
    BadAddress {
        key: &'static str,
        line: usize,
        #[source]
        source: AddressError,
    },
    /// A peer given to [`merge`] (not from the base) is not an address.
    #[error("given {key}: {source}")]
    BadPeer {
        key: &'static str,
        #[source]
        source: AddressError,
    },
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// The peers found in a base config, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasePeers {
    pub known: BTreeSet<String>,
    pub preferred: BTreeSet<String>,
}

/// Merges `known` and `preferred` into `base`.
///
/// * The result's `KNOWN_PEERS` is the base's own `KNOWN_PEERS` ∪ `known`, its
///   `PREFERRED_PEERS` the base's own ∪ `preferred`; each normalised
///   ([`normalize`]: `a` and `a:11625` are one peer), sorted and deduplicated.
/// * Both keys are always written (possibly as `[]`), with [`MARKER`] above
///   them, as top-level keys: right after the last other top-level key/value,
///   or, when the base has none, just above the first table header and the
///   comment lines directly above it, or at the end when there is no table.
/// * The base's own `KNOWN_PEERS`/`PREFERRED_PEERS` statements are removed
///   wherever they are (a multi-line array goes with the comments inside it
///   and on its last line). This includes ones that TOML places inside a table
///   (`KNOWN_PEERS` written after `[QUORUM_SET]` is `QUORUM_SET.KNOWN_PEERS`,
///   which stellar-core rejects): their values are merged and the keys moved
///   to the top level, which is what such a file meant. `[QUORUM_SET.KNOWN_PEERS]`
///   (an inner quorum set that happens to have that name) is left alone.
/// * Every other byte is kept: comments, blank lines, tables, other keys, line
///   endings. Keys of others that are misplaced (the operator's
///   `CATCHUP_COMPLETE` after `[QUORUM_SET]`) stay where they are: they are
///   not ours to move; [`super::check`] reports them.
/// * Idempotent: `merge(&merge(b, k, p)?, k, p) == merge(b, k, p)`.
///
/// Errors: the base is not TOML (line and column), a base `KNOWN_PEERS`/
/// `PREFERRED_PEERS` is not an array of strings, or holds an address
/// stellar-core refuses. `known` and `preferred` are normalised too; a bad one
/// is [`MergeError::BadPeer`].
///
/// The base must be the pristine file (the ConfigMap), not a previous result:
/// peers in the base are kept, so merging new peers into an old result would
/// keep the old ones too.
pub fn merge<K: AsRef<str>, P: AsRef<str>>(
    base: &str,
    known: &[K],
    preferred: &[P],
) -> Result<String, MergeError> {
    let parsed = Parsed::new(base, Flavour::Core)?;
    let mut peers = parsed.peers.clone();
    for (key, set, items) in [
        (KNOWN_PEERS, &mut peers.known, to_strs(known)),
        (PREFERRED_PEERS, &mut peers.preferred, to_strs(preferred)),
    ] {
        for raw in items {
            let a = normalize(raw).map_err(|source| MergeError::BadPeer { key, source })?;
            set.insert(a);
        }
    }
    Ok(parsed.render(base, &peers))
}

/// Merges `peers` into a captive-core TOML file (the file Horizon's or stellar-rpc's
/// `--captive-core-config-path` names), for their strict parser
/// (`ingest/ledgerbackend/toml.go` of `github.com/stellar/go-stellar-sdk`).
///
/// * The result's `PREFERRED_PEERS` is the base's own top-level `PREFERRED_PEERS` ∪
///   `peers`, normalised ([`normalize`]), sorted and deduplicated, written with
///   [`CAPTIVE_MARKER`] above it as a top-level key before the first table header (the
///   same place as [`merge`]'s block).
/// * There is never a `KNOWN_PEERS` of ours: captive core refuses the key. A
///   `KNOWN_PEERS` the base already has is kept as it is (the parser will refuse it,
///   with or without us).
/// * Only the top-level `PREFERRED_PEERS` statement is replaced. Every other byte is
///   kept: comments, `[[VALIDATORS]]` (with `ADDRESS`), `[[HOME_DOMAINS]]`,
///   `[QUORUM_SET]`, `[HISTORY.*]`, and keys a table holds because they follow its
///   header (the operator's `PEER_PORT`, `HTTP_PORT`, `LOG_LEVEL` after `[HISTORY.*]`),
///   a `PREFERRED_PEERS` inside a table included: not ours to move.
/// * Idempotent, like [`merge`].
///
/// Errors: as [`merge`], for the top-level `PREFERRED_PEERS` only.
pub fn merge_captive<P: AsRef<str>>(base: &str, peers: &[P]) -> Result<String, MergeError> {
    let parsed = Parsed::new(base, Flavour::CaptiveCore)?;
    let mut all = parsed.peers.clone();
    for raw in to_strs(peers) {
        let a = normalize(raw).map_err(|source| MergeError::BadPeer {
            key: PREFERRED_PEERS,
            source,
        })?;
        all.preferred.insert(a);
    }
    Ok(parsed.render(base, &all))
}

/// The peers a base config already lists (top level or misplaced), normalised.
pub fn base_peers(base: &str) -> Result<BasePeers, MergeError> {
    Ok(Parsed::new(base, Flavour::Core)?.peers)
}

/// The `PREFERRED_PEERS` a captive-core file lists at its top level, normalised.
pub fn captive_base_peers(base: &str) -> Result<BTreeSet<String>, MergeError> {
    Ok(Parsed::new(base, Flavour::CaptiveCore)?.peers.preferred)
}

fn to_strs<S: AsRef<str>>(items: &[S]) -> Vec<&str> {
    items.iter().map(AsRef::as_ref).collect()
}

struct Parsed {
    flavour: Flavour,
    stmts: Vec<Stmt>,
    removed: Vec<bool>,
    peers: BasePeers,
}

impl Parsed {
    fn new(base: &str, flavour: Flavour) -> Result<Self, MergeError> {
        toml::from_str::<toml::Table>(base).map_err(|e| TomlError::new(base, &e))?;
        let stmts = scan(base)?;
        let mut removed = vec![false; stmts.len()];
        let mut peers = BasePeers::default();
        let marker = match flavour {
            Flavour::Core => MARKER,
            Flavour::CaptiveCore => CAPTIVE_MARKER,
        };
        let mut in_table = false;
        for (i, s) in stmts.iter().enumerate() {
            match &s.kind {
                Kind::Comment if base[s.range.clone()].trim_start().starts_with(marker) => {
                    removed[i] = true;
                }
                Kind::KeyValue { key, value } => {
                    let found = match flavour {
                        Flavour::Core => peer_key(key, &mut peers),
                        // Captive: the top-level PREFERRED_PEERS only.
                        Flavour::CaptiveCore if !in_table && key == PREFERRED_PEERS => {
                            Some((PREFERRED_PEERS, &mut peers.preferred))
                        }
                        Flavour::CaptiveCore => None,
                    };
                    let Some((key, set)) = found else {
                        continue;
                    };
                    for a in addresses(key, s.line, value)? {
                        set.insert(a);
                    }
                    removed[i] = true;
                }
                Kind::Header { path, .. } => {
                    in_table = true;
                    let ours = match flavour {
                        Flavour::Core => [KNOWN_PEERS, PREFERRED_PEERS].as_slice(),
                        Flavour::CaptiveCore => [PREFERRED_PEERS].as_slice(),
                    };
                    if let Some(first) = path.first()
                        && ours.contains(&first.as_str())
                    {
                        return Err(MergeError::WrongType {
                            key: if first == KNOWN_PEERS {
                                KNOWN_PEERS
                            } else {
                                PREFERRED_PEERS
                            },
                            line: s.line,
                            found: "a table",
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            flavour,
            stmts,
            removed,
            peers,
        })
    }

    fn render(&self, base: &str, peers: &BasePeers) -> String {
        let kept = |i: usize| !self.removed[i];
        let first_header = self
            .stmts
            .iter()
            .position(|s| matches!(s.kind, Kind::Header { .. }));
        let top = first_header.unwrap_or(self.stmts.len());
        let last_kv = (0..top)
            .rev()
            .find(|&i| kept(i) && matches!(self.stmts[i].kind, Kind::KeyValue { .. }));
        let insert_at = match (last_kv, first_header) {
            (Some(i), _) => i + 1,
            (None, Some(h)) => {
                // Keep a header's own comment lines attached to it.
                let mut at = h;
                while at > 0 && kept(at - 1) && self.stmts[at - 1].kind == Kind::Comment {
                    at -= 1;
                }
                at
            }
            (None, None) => self.stmts.len(),
        };
        let eol = if base.contains("\r\n") { "\r\n" } else { "\n" };
        let mut out = String::with_capacity(base.len() + 64 * (peers.known.len() + 4));
        for (i, s) in self.stmts.iter().enumerate() {
            if i == insert_at {
                write_block(&mut out, self.flavour, peers, eol);
            }
            if kept(i) {
                out.push_str(&base[s.range.clone()]);
            }
        }
        if insert_at == self.stmts.len() {
            write_block(&mut out, self.flavour, peers, eol);
        }
        out
    }
}

fn peer_key<'a>(
    key: &str,
    peers: &'a mut BasePeers,
) -> Option<(&'static str, &'a mut BTreeSet<String>)> {
    match key {
        KNOWN_PEERS => Some((KNOWN_PEERS, &mut peers.known)),
        PREFERRED_PEERS => Some((PREFERRED_PEERS, &mut peers.preferred)),
        _ => None,
    }
}

/// The normalised addresses of a `KNOWN_PEERS`/`PREFERRED_PEERS` value.
pub fn addresses(
    key: &'static str,
    line: usize,
    value: &toml::Value,
) -> Result<Vec<String>, MergeError> {
    let toml::Value::Array(items) = value else {
        return Err(MergeError::WrongType {
            key,
            line,
            found: type_name(value),
        });
    };
    items
        .iter()
        .map(|v| match v {
            toml::Value::String(s) => {
                normalize(s).map_err(|source| MergeError::BadAddress { key, line, source })
            }
            other => Err(MergeError::WrongType {
                key,
                line,
                found: match other {
                    toml::Value::Array(_) => "an array of arrays",
                    toml::Value::Table(_) => "an array of tables",
                    _ => "an array of non-strings",
                },
            }),
        })
        .collect()
}

/// "a string", "an integer", ... for messages.
pub(crate) fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn write_block(out: &mut String, flavour: Flavour, peers: &BasePeers, eol: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    if flavour == Flavour::CaptiveCore {
        out.push_str(CAPTIVE_MARKER);
        out.push_str(
            " (render-config --flavour captive-core); edit the base file or the StellarNodes instead.",
        );
        out.push_str(eol);
        write_array(out, PREFERRED_PEERS, &peers.preferred, eol);
        return;
    }
    out.push_str(MARKER);
    out.push_str(" (render-config); edit the base config or the StellarNodes instead.");
    out.push_str(eol);
    write_array(out, KNOWN_PEERS, &peers.known, eol);
    write_array(out, PREFERRED_PEERS, &peers.preferred, eol);
}

/// `KEY = [\n  "a:1",\n]`. Normalised addresses hold only `[a-z0-9.-]`, digits
/// and one `:`, so they need no escaping.
fn write_array(out: &mut String, key: &str, items: &BTreeSet<String>, eol: &str) {
    out.push_str(key);
    if items.is_empty() {
        out.push_str(" = []");
        out.push_str(eol);
        return;
    }
    out.push_str(" = [");
    out.push_str(eol);
    for a in items {
        out.push_str("  \"");
        out.push_str(a);
        out.push_str("\",");
        out.push_str(eol);
    }
    out.push(']');
    out.push_str(eol);
}
