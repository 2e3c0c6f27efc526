//! What the `peers` command shows: a snapshot (and, with `--resolve`, a DNS round)
//! rendered as a table or JSON. Pure: the command gathers, this formats, the command
//! prints.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::peers::PeerSnapshot;
use crate::peers::resolve::Round;
use crate::peers::resolve::{ClusterDns, Status, Target, Why};

/// How `peers` (and `explain`) print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    /// Every value [`Self::parse`] accepts.
    pub const NAMES: [&'static str; 2] = ["table", "json"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "table" => Some(Self::Table),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Everything the `peers` output is made of.
pub struct PeersView<'a> {
    pub snap: &'a PeerSnapshot,
    /// Only this network, when set.
    pub network: Option<&'a str>,
    pub round: Option<&'a Round>,
    /// The DNS servers the round asked.
    pub dns_servers: &'a [String],
    /// Links that could not be read or listed.
    pub link_errors: &'a [String],
}

/// The rendered output: `stdout`, and the lines for stderr (warnings and notes).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: String,
    pub notes: Vec<String>,
}

impl PeersView<'_> {
    fn wanted(&self, n: &str) -> bool {
        self.network.is_none_or(|w| w == n)
    }

    fn statuses(&self) -> HashMap<&str, &Status> {
        self.round
            .iter()
            .flat_map(|r| r.statuses.iter())
            .map(|(t, s)| (&*t.address, s))
            .collect()
    }

    /// Every address that does not resolve, with who gives it out (knownPeers included).
    fn unresolvable(&self) -> Vec<(&Target, Why)> {
        self.round
            .iter()
            .flat_map(|r| r.statuses.iter())
            .filter(|(t, _)| t.networks.iter().any(|n| self.wanted(n)))
            .filter_map(|(t, s)| match s {
                Status::Unresolvable(why) => Some((t, *why)),
                _ => None,
            })
            .collect()
    }

    pub fn render(&self, output: Output) -> Rendered {
        let mut notes = Vec::new();
        for p in &self.snap.problems {
            notes.push(format!("warning: {}: {}", p.node, p.message));
        }
        for p in &self.snap.remote_problems {
            notes.push(format!(
                "warning: cluster {}: {}: {}",
                p.cluster, p.node, p.message
            ));
        }
        for e in self.link_errors {
            notes.push(format!("warning: {e}"));
        }
        for n in self.snap.nodes().filter(|n| self.wanted(&n.record.network)) {
            if let Some(p) = n.record.peer_updates.filter(|p| p.is_live()) {
                notes.push(format!(
                    "note: {}/{} takes peer changes {} ({}): its running pods with the {} sidecar learn added peers through connect, without a restart",
                    n.record.namespace,
                    n.record.name,
                    p.as_str(),
                    crate::live::ANNOTATION_PEER_UPDATES,
                    crate::live::LIVE_CONTAINER_NAME
                ));
            }
        }
        let unresolvable = self.unresolvable();
        if let Some(r) = self.round {
            match &r.cluster {
                ClusterDns::Serves => {}
                ClusterDns::NotServed(why) => notes.push(format!(
                    "note: in-cluster peer addresses were not checked: {why} (asked {}); pass --dns-server with the cluster DNS",
                    self.dns_servers.join(", ")
                )),
                ClusterDns::Unreachable(why) => notes.push(format!(
                    "note: no peer address was checked: cannot reach the DNS server ({why}); pass --dns-server IP[:PORT] of one this machine can reach"
                )),
            }
            for (t, why) in &unresolvable {
                let owners: Vec<String> = t.owners.iter().map(ToString::to_string).collect();
                notes.push(format!(
                    "warning: {} does not resolve ({}); given out by {}",
                    t.address,
                    why.as_str(),
                    owners.join(", ")
                ));
            }
        }
        let stdout = match output {
            Output::Json => self.json(&unresolvable),
            Output::Table => self.table(),
        };
        Rendered { stdout, notes }
    }

    fn resolves(&self, statuses: &HashMap<&str, &Status>, a: &str) -> (String, Value) {
        match statuses.get(a) {
            Some(Status::Resolves) => ("yes".to_owned(), Value::Bool(true)),
            Some(Status::Unresolvable(why)) => {
                (format!("no ({})", why.as_str()), Value::Bool(false))
            }
            _ => ("unknown".to_owned(), Value::Null),
        }
    }

    fn json(&self, unresolvable: &[(&Target, Why)]) -> String {
        let statuses = self.statuses();
        let nets: serde_json::Map<String, Value> = self
            .snap
            .networks()
            .filter(|(n, _)| self.wanted(n))
            .map(|(n, p)| {
                let peers: Vec<Value> = p
                    .origins()
                    .map(|(a, pref, from)| {
                        let mut v = json!({"address": a, "preferred": pref, "from": from.as_str()});
                        if self.round.is_some() {
                            v["resolves"] = self.resolves(&statuses, a).1;
                        }
                        v
                    })
                    .collect();
                (
                    n.to_owned(),
                    json!({"validators": p.validators, "remote_validators": p.remote_validators, "peers": peers}),
                )
            })
            .collect();
        let mut out = json!({ "networks": nets });
        if !self.snap.remotes.is_empty() || !self.link_errors.is_empty() {
            out["clusters"] = self
                .snap
                .remotes
                .iter()
                .map(|(c, r)| {
                    (
                        c.clone(),
                        json!({"nodes": r.nodes, "peers": r.peers, "excluded": r.excluded}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
            out["excluded"] = self
                .snap
                .remote_problems
                .iter()
                .map(|p| json!({"cluster": p.cluster, "node": p.node, "why": p.message}))
                .collect();
            out["link_errors"] = json!(self.link_errors);
        }
        if let Some(r) = self.round {
            out["unresolvable"] = unresolvable
                .iter()
                .map(|(t, why)| {
                    json!({
                        "address": &*t.address,
                        "why": why.as_str(),
                        "networks": t.networks,
                        "owners": t.owners.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect();
            out["dns"] = match &r.cluster {
                ClusterDns::Serves => json!({"checked": true}),
                ClusterDns::NotServed(why) => {
                    json!({"checked": "outside the cluster domain only", "why": why})
                }
                ClusterDns::Unreachable(why) => json!({"checked": false, "why": why}),
            };
        }
        let mut s = serde_json::to_string_pretty(&out).unwrap_or_default();
        s.push('\n');
        s
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let statuses = self.statuses();
        let nets: Vec<_> = self
            .snap
            .networks()
            .filter(|(n, _)| self.wanted(n))
            .collect();
        let w = nets.iter().map(|(n, _)| n.len()).max().unwrap_or(7).max(7);
        let fw = nets
            .iter()
            .flat_map(|(_, p)| p.origins().map(|(_, _, o)| o.as_str().len()))
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let resolving = self.round.is_some();
        let _ = if resolving {
            writeln!(
                out,
                "{:<w$}  {:<9}  {:<fw$}  {:<16}  PEER",
                "NETWORK", "PREFERRED", "FROM", "RESOLVES"
            )
        } else {
            writeln!(
                out,
                "{:<w$}  {:<9}  {:<fw$}  PEER",
                "NETWORK", "PREFERRED", "FROM"
            )
        };
        for (n, p) in &nets {
            for (a, pref, from) in p.origins() {
                let pref = if pref { "yes" } else { "no" };
                let from = from.as_str();
                let _ = if resolving {
                    writeln!(
                        out,
                        "{n:<w$}  {pref:<9}  {from:<fw$}  {:<16}  {a}",
                        self.resolves(&statuses, a).0
                    )
                } else {
                    writeln!(out, "{n:<w$}  {pref:<9}  {from:<fw$}  {a}")
                };
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{NodeKind, NodeRecord};
    use crate::peers::PeerSettings;

    fn snap() -> PeerSnapshot {
        let a = NodeRecord::new("stellar", "a1", NodeKind::Validator, "testnet");
        let mut b = NodeRecord::new("stellar", "b1", NodeKind::Validator, "testnet");
        b.external_hostname = Some("b1.b.example.org".into());
        let lost = NodeRecord::new("stellar", "b2", NodeKind::Validator, "testnet");
        let m = NodeRecord::new("stellar", "m1", NodeKind::Validator, "mainnet");
        PeerSnapshot::build_linked(
            1,
            [&a, &m],
            [("b", &b), ("b", &lost)],
            &PeerSettings::default(),
        )
    }

    fn view<'a>(s: &'a PeerSnapshot, errors: &'a [String]) -> PeersView<'a> {
        PeersView {
            snap: s,
            network: None,
            round: None,
            dns_servers: &[],
            link_errors: errors,
        }
    }

    #[test]
    fn the_table_says_where_each_peer_comes_from() {
        let s = snap();
        let out = view(&s, &[]).render(Output::Table);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NETWORK", "PREFERRED", "FROM", "PEER"]
        );
        let rows: Vec<Vec<&str>> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            rows.contains(&vec!["testnet", "yes", "b", "b1.b.example.org:11625"]),
            "{rows:?}"
        );
        assert!(rows.contains(&vec![
            "testnet",
            "yes",
            "local",
            "a1-0.a1-headless.stellar.svc.cluster.local:11625"
        ]));
        assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
        assert!(
            out.notes[0].starts_with("warning: cluster b: stellar/b2: left out"),
            "{:?}",
            out.notes
        );
    }

    #[test]
    fn json_has_the_clusters_the_excluded_and_link_errors() {
        let s = snap();
        let errors = ["cluster c (Secret c): unreachable".to_owned()];
        let mut v = view(&s, &errors);
        v.network = Some("testnet");
        let out = v.render(Output::Json);
        let j: Value = serde_json::from_str(&out.stdout).expect("json");
        assert!(j["networks"].get("mainnet").is_none(), "filtered");
        assert_eq!(j["networks"]["testnet"]["remote_validators"], 1);
        assert_eq!(
            j["clusters"]["b"],
            json!({"nodes": 2, "peers": 1, "excluded": 1})
        );
        assert_eq!(j["excluded"][0]["node"], "stellar/b2");
        assert_eq!(j["link_errors"][0], errors[0]);
        let froms: Vec<&str> = j["networks"]["testnet"]["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .filter_map(|p| p["from"].as_str())
            .collect();
        assert_eq!(froms, ["local", "b"]);
        assert!(out.notes.iter().any(|n| n.contains("unreachable")));
    }

    #[test]
    fn without_links_json_is_as_before() {
        let a = NodeRecord::new("stellar", "a1", NodeKind::Validator, "testnet");
        let s = PeerSnapshot::build(1, [&a], &PeerSettings::default());
        let j: Value =
            serde_json::from_str(&view(&s, &[]).render(Output::Json).stdout).expect("json");
        assert!(j.get("clusters").is_none() && j.get("unresolvable").is_none());
        assert_eq!(j["networks"]["testnet"]["validators"], 1);
    }
}
