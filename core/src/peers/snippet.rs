//! The stellar-core TOML snippet: `KNOWN_PEERS` and `PREFERRED_PEERS`.

use std::fmt::Write;
use std::sync::Arc;

/// Renders the snippet. Valid TOML; only keys stellar-core knows; no duplicates.
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
    array(&mut out, "KNOWN_PEERS", known);
    array(&mut out, "PREFERRED_PEERS", preferred);
    out
}

fn array(out: &mut String, key: &str, items: &[Arc<str>]) {
    if items.is_empty() {
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
