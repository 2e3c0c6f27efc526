//! Static extra peers per network, read from the `--extra-peers` YAML file.
//!
//! ```yaml
//! networks:
//!   mainnet:
//!     - address: core-live-a.stellar.org:11625
//!       preferred: true
//!     - address: core-live-b.stellar.org      # port defaults to 11625
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::address;
use crate::nodes::normalize_network;

/// One static peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraPeer {
    pub address: String,
    pub preferred: bool,
}

/// Extra peers by (normalised) network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtraPeers {
    pub networks: BTreeMap<String, Vec<ExtraPeer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    #[serde(default)]
    networks: BTreeMap<String, Vec<EntryForm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryForm {
    address: String,
    #[serde(default)]
    preferred: bool,
}

/// Why the extra-peers file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtraPeersError {
    #[error(
        "extra peers file is not valid YAML of the form `networks: {{NETWORK: [{{address: HOST:PORT, preferred: BOOL}}]}}`: {0}"
    )]
    Yaml(#[from] serde_yaml::Error),
    #[error("extra peers file, network {network:?}: {source}")]
    Address {
        network: String,
        #[source]
        source: address::AddressError,
    },
}

impl ExtraPeers {
    /// Parses and validates the file's text.
    pub fn parse(text: &str) -> Result<Self, ExtraPeersError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let form: FileForm = serde_yaml::from_str(text)?;
        let mut networks: BTreeMap<String, Vec<ExtraPeer>> = BTreeMap::new();
        for (net, entries) in form.networks {
            let net = normalize_network(&net);
            let list = networks.entry(net.clone()).or_default();
            for e in entries {
                let address =
                    address::normalize(&e.address).map_err(|source| ExtraPeersError::Address {
                        network: net.clone(),
                        source,
                    })?;
                list.push(ExtraPeer {
                    address,
                    preferred: e.preferred,
                });
            }
        }
        Ok(Self { networks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file() {
        let x = ExtraPeers::parse(
            "networks:\n  Mainnet:\n    - address: Core-Live-A.stellar.org\n      preferred: true\n    - address: 1.2.3.4:11700\n",
        )
        .expect("parse");
        let m = &x.networks["mainnet"];
        assert_eq!(
            m[0],
            ExtraPeer {
                address: "core-live-a.stellar.org:11625".into(),
                preferred: true
            }
        );
        assert_eq!(
            m[1],
            ExtraPeer {
                address: "1.2.3.4:11700".into(),
                preferred: false
            }
        );
    }

    #[test]
    fn empty_file_is_fine() {
        assert_eq!(ExtraPeers::parse("").expect("empty"), ExtraPeers::default());
    }

    #[test]
    fn refuses_bad_entries() {
        let e =
            ExtraPeers::parse("networks:\n  mainnet:\n    - address: '[::1]'\n").expect_err("ipv6");
        assert!(e.to_string().contains("IPv6"), "{e}");
        let e = ExtraPeers::parse("networks:\n  mainnet:\n    - adress: a\n").expect_err("typo");
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = ExtraPeers::parse("- a\n").expect_err("shape");
        assert!(e.to_string().contains("networks:"), "{e}");
    }
}
