//! Config mode: stellar-core's own config file with our peers merged in.
//!
//! stellar-core reads one TOML file (`--conf FILE`) once, at start. In config
//! mode an init container runs `stellar-peer-injector render-config` (the
//! injector's edge): it reads the base config, takes the peers from the projected
//! snippet ([`crate::peers::snippet`]), [`merge`]s them and writes the result,
//! which stellar-core is then started with. Here: [`merge()`],
//! [`parse_user_peers`], [`check()`].
//!
//! Horizon and stellar-rpc run a *captive* stellar-core whose config they build from
//! a captive-core TOML file, parsed strictly against an allow-list that refuses
//! `KNOWN_PEERS`. For them the same init step runs with `--flavour captive-core`:
//! [`merge_captive`] writes `PREFERRED_PEERS` only, [`check_captive`] reports what
//! their parser would refuse that we can see.

pub mod check;
pub mod keys;
pub mod merge;
mod scan;
pub mod user;

#[cfg(test)]
mod tests;

pub use check::{Violation, check, check_captive, check_ours};
pub use merge::{
    BasePeers, CAPTIVE_MARKER, Flavour, MARKER, MergeError, base_peers, captive_base_peers, merge,
    merge_captive,
};
pub use scan::ScanError;
pub use user::{UserPeers, UserPeersError, parse_user_peers};

/// The key of the peers stellar-core connects to.
pub const KNOWN_PEERS: &str = "KNOWN_PEERS";
/// The key of the peers stellar-core always keeps connected.
pub const PREFERRED_PEERS: &str = "PREFERRED_PEERS";

/// A TOML syntax error (duplicate keys included), with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid TOML at line {line} column {column} ({})", one_line(source.message()))]
pub struct TomlError {
    /// 1-based; 0 when the parser gave no position.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The parser's error (its message is shown on one line).
    #[source]
    pub source: Box<toml::de::Error>,
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl TomlError {
    /// Locates `e` in `src`.
    pub fn new(src: &str, e: &toml::de::Error) -> Self {
        let (line, column) = match e.span() {
            Some(span) => {
                let at = floor_char_boundary(src, span.start.min(src.len()));
                let before = &src[..at];
                let line = before.matches('\n').count() + 1;
                let col_start = before.rfind('\n').map_or(0, |i| i + 1);
                (line, before[col_start..].chars().count() + 1)
            }
            None => (0, 0),
        };
        Self {
            line,
            column,
            source: Box::new(e.clone()),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
