//! The user's own peers: StellarNode `spec.validatorConfig.knownPeers`.

use std::collections::BTreeSet;

use crate::peers::address::AddressError;

use super::merge::{MergeError, addresses, type_name};
use super::{KNOWN_PEERS, PREFERRED_PEERS, TomlError};

/// Peers a user listed, normalised, sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPeers {
    /// Every peer, preferred ones included.
    pub known: Vec<String>,
    pub preferred: Vec<String>,
}

/// Why `knownPeers` could not be read. The message is about the field; the
/// caller names the StellarNode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserPeersError {
    #[error(
        "spec.validatorConfig.knownPeers is {0}; write it as TOML: KNOWN_PEERS = [\"host:port\", ...] (optionally PREFERRED_PEERS = [...])"
    )]
    Toml(TomlError),
    #[error(
        "spec.validatorConfig.knownPeers: unexpected key {key:?}; only KNOWN_PEERS and PREFERRED_PEERS may be set there (put other stellar-core settings in the base config)"
    )]
    UnknownKey { key: String },
    #[error(
        "spec.validatorConfig.knownPeers: {key} must be an array of strings like [\"core.example.org:11625\"], not {found}"
    )]
    WrongType {
        key: &'static str,
        found: &'static str,
    },
    #[error("spec.validatorConfig.knownPeers: {key}: {source}")]
    BadAddress {
        key: &'static str,
        #[source]
        source: AddressError,
    },
    #[error("spec.validatorConfig.knownPeers must be a string of TOML, found {found}")]
    NotAString { found: &'static str },
}

/// Reads `spec.validatorConfig.knownPeers`.
///
/// Accepted:
/// * a TOML document whose only keys are `KNOWN_PEERS` and/or
///   `PREFERRED_PEERS`, each an array of `host[:port]` strings (the form the
///   StellarNode CRD documents: `KNOWN_PEERS = ["core-live-a.stellar.org:11625"]`);
/// * a bare TOML array of strings, `["a.example.org", "b.example.org:11625"]`,
///   read as `KNOWN_PEERS` (the operator's own reader accepts it too);
/// * empty text, or only comments: no peers.
///
/// Not accepted: a plain list of addresses (one per line or separated by
/// commas, without brackets and quotes). It is reported as invalid TOML, so a
/// typo never silently turns into a peer.
///
/// Addresses are normalised ([`crate::peers::address::normalize`]); every
/// preferred peer is also in `known`.
pub fn parse_user_peers(raw: &str) -> Result<UserPeers, UserPeersError> {
    // `["a.example.org"]` is also a valid table header, so a bare array is
    // tried first.
    let bare = raw
        .trim_start()
        .starts_with('[')
        .then(|| toml::from_str::<toml::Table>(&format!("{KNOWN_PEERS} = {raw}")).ok())
        .flatten();
    let table = match bare {
        Some(t) => t,
        None => toml::from_str::<toml::Table>(raw)
            .map_err(|e| UserPeersError::Toml(TomlError::new(raw, &e)))?,
    };
    let mut known = BTreeSet::new();
    let mut preferred = BTreeSet::new();
    for (key, value) in &table {
        let (key, set) = match key.as_str() {
            KNOWN_PEERS => (KNOWN_PEERS, &mut known),
            PREFERRED_PEERS => (PREFERRED_PEERS, &mut preferred),
            _ => return Err(UserPeersError::UnknownKey { key: key.clone() }),
        };
        let list = addresses(key, 0, value).map_err(|e| match e {
            MergeError::BadAddress { source, .. } => UserPeersError::BadAddress { key, source },
            _ => UserPeersError::WrongType {
                key,
                found: match value {
                    toml::Value::Array(_) => "an array holding non-strings",
                    v => type_name(v),
                },
            },
        })?;
        set.extend(list);
    }
    known.extend(preferred.iter().cloned());
    Ok(UserPeers {
        known: known.into_iter().collect(),
        preferred: preferred.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> UserPeers {
        parse_user_peers(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn reads_the_crd_form() {
        let p =
            ok("KNOWN_PEERS = [\"core-live-a.stellar.org:11625\", \"Core-Live-B.stellar.org\"]\n");
        assert_eq!(
            p.known,
            [
                "core-live-a.stellar.org:11625",
                "core-live-b.stellar.org:11625"
            ]
        );
        assert!(p.preferred.is_empty());
    }

    #[test]
    fn preferred_are_also_known_sorted_and_deduplicated() {
        let p = ok(
            "# mine\nPREFERRED_PEERS = [\"b\", \"b:11625\"]\nKNOWN_PEERS = [\n  \"c\", # comment\n  \"a:11700\",\n  \"c:11625\",\n]\n",
        );
        assert_eq!(p.known, ["a:11700", "b:11625", "c:11625"]);
        assert_eq!(p.preferred, ["b:11625"]);
    }

    #[test]
    fn bare_array_and_empty() {
        assert_eq!(
            ok("[\"x.example.org\", \"1.2.3.4:1\"]").known,
            ["1.2.3.4:1", "x.example.org:11625"]
        );
        // Also a valid table header on its own: read as the array.
        assert_eq!(ok("[\"x.example.org\"]\n").known, ["x.example.org:11625"]);
        assert_eq!(ok(""), UserPeers::default());
        assert_eq!(ok("  \n# nothing yet\n"), UserPeers::default());
        assert_eq!(ok("KNOWN_PEERS = []"), UserPeers::default());
    }

    #[test]
    fn refuses_plain_lists_and_broken_toml() {
        for raw in [
            "core-a.example.org:11625\ncore-b.example.org:11625",
            "core-a.example.org, core-b.example.org",
            "KNOWN_PEERS = [\"a\"",
            "[\"a\", ]]",
            "KNOWN_PEERS = [\"a\"]\nKNOWN_PEERS = [\"b\"]",
        ] {
            let e = parse_user_peers(raw).expect_err(raw);
            assert!(matches!(e, UserPeersError::Toml(_)), "{raw:?}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains("not valid TOML at line") && msg.contains("KNOWN_PEERS = ["),
                "{msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn refuses_other_keys_wrong_types_and_bad_addresses() {
        assert_eq!(
            parse_user_peers("KNOWN_PEERS = []\nNODE_SEED = \"S...\""),
            Err(UserPeersError::UnknownKey {
                key: "NODE_SEED".into()
            })
        );
        assert!(matches!(
            parse_user_peers("[QUORUM_SET]\nTHRESHOLD_PERCENT = 67"),
            Err(UserPeersError::UnknownKey { key }) if key == "QUORUM_SET"
        ));
        assert_eq!(
            parse_user_peers("KNOWN_PEERS = \"a:11625\""),
            Err(UserPeersError::WrongType {
                key: KNOWN_PEERS,
                found: "a string"
            })
        );
        assert_eq!(
            parse_user_peers("PREFERRED_PEERS = [1, 2]"),
            Err(UserPeersError::WrongType {
                key: PREFERRED_PEERS,
                found: "an array holding non-strings"
            })
        );
        let e = parse_user_peers("KNOWN_PEERS = [\"[::1]:11625\"]").expect_err("ipv6");
        assert!(matches!(
            &e,
            UserPeersError::BadAddress {
                key: KNOWN_PEERS,
                source: AddressError::Ipv6(_)
            }
        ));
        assert!(e.to_string().contains("IPv6"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
