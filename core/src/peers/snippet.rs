//! The stellar-core TOML snippet: `KNOWN_PEERS` and `PREFERRED_PEERS`.
//!
//! Each address is written once. stellar-core stores and dials every `PREFERRED_PEERS`
//! entry whether or not `KNOWN_PEERS` lists it too, so `KNOWN_PEERS` carries only the
//! peers that are not preferred (static extras without `preferred`, the user's own
//! known peers). The list a node gets, and its hash, are the same either way.

use std::fmt::Write;
use std::sync::Arc;

/// Renders the snippet. Valid TOML; only keys stellar-core knows; no duplicates.
/// `known` is the whole list (preferred peers included) and `preferred` a sorted
/// subset; `KNOWN_PEERS` gets the entries of `known` that are not in `preferred`.
pub fn render_config(
    network: &str,
    hash: &str,
    known: &[Arc<str>],
    preferred: &[Arc<str>],
) -> String {
    let mut out = String::with_capacity(160 + 48 * (known.len() + preferred.len()));
    let safe_net: String = network
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "# Peers of network {safe_net:?}, written by stellar-peer-injector at pod creation."
    );
    let _ = writeln!(
        out,
        "# peers-hash: {hash}. Edits are lost: change StellarNodes or the extra-peers file instead."
    );
    let only_known = known.iter().filter(|k| preferred.binary_search(k).is_err());
    array(&mut out, "KNOWN_PEERS", only_known);
    array(&mut out, "PREFERRED_PEERS", preferred.iter());
    out
}

fn array<'a>(out: &mut String, key: &str, items: impl Iterator<Item = &'a Arc<str>>) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        let _ = writeln!(out, "{key} = []");
        return;
    }
    let _ = writeln!(out, "{key} = [");
    for i in items {
        out.push_str("  \"");
        for c in i.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04X}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push_str("\",\n");
    }
    out.push_str("]\n");
}
