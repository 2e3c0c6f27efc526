//! Live peer updates: a running stellar-core learns added peers through `connect` on its
//! admin port, without a restart. Pure: the policy, what changed between two peer lists,
//! the admin request and how to read its answer, the retry schedule. The sidecar
//! (`stellar-peer-injector live-peers`) and the rollout loop are the edges.
//!
//! stellar-core's admin port (`src/main/CommandHandler.cpp`, read at `a9b861321`):
//! - `GET /connect?peer=HOST&port=PORT` answers `Connect to: HOST:PORT` and dials the peer.
//!   It resolves HOST synchronously; a name that does not resolve makes it answer
//!   `{"exception": "..."}` instead (its `safeRouter` catches what the route throws).
//! - before the node is ready every route answers
//!   `{"error": "Core is booting, try again later"}`;
//! - without both parameters it answers `Must specify a peer and port: ...`;
//! - the overlay routes (`connect`, `peers`, `droppeer`) exist only when `RUN_STANDALONE`
//!   is false; the port is `HTTP_PORT` (default 11626, 0 turns it off) on 127.0.0.1 unless
//!   `PUBLIC_HTTP_PORT` is true.

use std::collections::BTreeSet;
use std::time::Duration;

/// Per StellarNode: `restart`, `live` or `live+restart` (see [`PeerUpdates`]).
pub const ANNOTATION_PEER_UPDATES: &str = "stellar.org/peer-updates";
/// The native sidecar (an init container with `restartPolicy: Always`) that follows the
/// snippet: it rewrites the merged file and calls `connect` for added peers.
pub const LIVE_CONTAINER_NAME: &str = "stellar-peers-live";
/// Port of the sidecar's `/metrics` inside the pod.
pub const LIVE_METRICS_PORT: u16 = 11680;
/// stellar-core's default `HTTP_PORT`.
pub const DEFAULT_HTTP_PORT: u16 = 11626;
/// stellar-core's default `PEER_PORT`, for an address without a port.
pub const DEFAULT_PEER_PORT: u16 = 11625;

/// What a change of a network's peers does to its running nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PeerUpdates {
    /// Roll the workloads, quorum-safely (one at a time per network).
    #[default]
    Restart,
    /// Running pods learn added peers through `connect`; nothing restarts. Pods that
    /// cannot (no sidecar: created before, captive core, not understood) are restarted.
    Live,
    /// Live now, and a restart at the next rollout window so that the process's own
    /// config matches again (removed peers are forgotten).
    LiveThenRestart,
}

impl PeerUpdates {
    pub const NAMES: [&'static str; 3] = ["restart", "live", "live+restart"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "restart" => Some(Self::Restart),
            "live" => Some(Self::Live),
            "live+restart" => Some(Self::LiveThenRestart),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Live => "live",
            Self::LiveThenRestart => "live+restart",
        }
    }

    /// Running pods are updated in place.
    pub fn is_live(self) -> bool {
        self != Self::Restart
    }
}

/// What changed between the peers a process has and the peers it should have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// To `connect` to, sorted.
    pub added: Vec<String>,
    /// No longer listed, sorted. stellar-core has no command that forgets an address
    /// (`droppeer` takes a node ID and drops one connection): they stay until the next
    /// start, and their failed dials are harmless.
    pub removed: Vec<String>,
}

/// Compares two peer sets (addresses as the snippet writes them).
pub fn diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Diff {
    Diff {
        added: after.difference(before).cloned().collect(),
        removed: before.difference(after).cloned().collect(),
    }
}

/// `host[:port]` → host and port (stellar-core's default peer port when absent).
pub fn host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = match address.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok().filter(|&p: &u16| p != 0)?),
        None => (address, DEFAULT_PEER_PORT),
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then_some((host, port))
}

/// The request target of a `connect` for `address`; `None` when the address is not a
/// `host[:port]` stellar-core would take (the snippet's rules make that impossible).
pub fn connect_target(address: &str) -> Option<String> {
    let (host, port) = host_port(address)?;
    Some(format!("/connect?peer={host}&port={port}"))
}

/// The whole HTTP/1.1 request for `target` on the admin port.
pub fn request(target: &str, port: u16) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: stellar-peers-live\r\nConnection: close\r\n\r\n"
    )
}

/// What stellar-core said to a `connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Connect to: HOST:PORT`: it dials the peer and keeps it in its peers table.
    Connected,
    /// `Core is booting, try again later`.
    Booting,
    /// It threw (for a peer, mostly a name that does not resolve yet): try again later,
    /// and report it when it lasts.
    Refused(String),
    /// Anything else: the process is not the stellar-core this was written for.
    Unexpected(String),
}

impl Answer {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Booting => "booting",
            Self::Refused(_) => "refused",
            Self::Unexpected(_) => "unexpected",
        }
    }
}

/// Reads an answer of the admin port (status code and body).
pub fn classify(status: u16, body: &str) -> Answer {
    let body = body.trim();
    let short = || body.chars().take(200).collect::<String>();
    if status != 200 {
        return Answer::Unexpected(format!("HTTP {status}: {}", short()));
    }
    if body.starts_with("Connect to: ") {
        return Answer::Connected;
    }
    #[derive(serde::Deserialize)]
    struct Json {
        error: Option<String>,
        exception: Option<String>,
    }
    match serde_json::from_str::<Json>(body) {
        Ok(Json { error: Some(e), .. }) if e.contains("booting") => Answer::Booting,
        Ok(Json {
            exception: Some(e), ..
        }) => Answer::Refused(e),
        Ok(Json { error: Some(e), .. }) => Answer::Refused(e),
        _ => Answer::Unexpected(short()),
    }
}

/// Splits a raw HTTP/1.x response into status code and body (`Connection: close`, so
/// the body is everything after the head).
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// How long to wait before attempt `attempt` (0-based) of a call that did not succeed:
/// 250 ms doubling to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.min(7));
    Duration::from_millis(ms.min(30_000))
}

/// Where the admin port of a merged config is, or why `connect` cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admin {
    Port(u16),
    /// `RUN_STANDALONE = true`: the overlay commands do not exist.
    Standalone,
    /// `HTTP_PORT = 0`: no admin port.
    Off,
}

impl std::fmt::Display for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Port(p) => write!(f, "admin port 127.0.0.1:{p}"),
            Self::Standalone => f.write_str(
                "RUN_STANDALONE is true, so stellar-core has no connect command; added peers reach it at its next start",
            ),
            Self::Off => f.write_str(
                "HTTP_PORT is 0, so stellar-core has no admin port; added peers reach it at its next start",
            ),
        }
    }
}

/// Reads `HTTP_PORT` and `RUN_STANDALONE` from a stellar-core config.
pub fn admin(config: &str) -> Result<Admin, toml::de::Error> {
    let table: toml::Table = toml::from_str(config)?;
    if table.get("RUN_STANDALONE").and_then(toml::Value::as_bool) == Some(true) {
        return Ok(Admin::Standalone);
    }
    match table.get("HTTP_PORT").and_then(toml::Value::as_integer) {
        None => Ok(Admin::Port(DEFAULT_HTTP_PORT)),
        Some(0) => Ok(Admin::Off),
        Some(p) => Ok(u16::try_from(p).map_or(Admin::Off, Admin::Port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policies_parse_and_print_back() {
        for name in PeerUpdates::NAMES {
            assert_eq!(
                PeerUpdates::parse(name).map(PeerUpdates::as_str),
                Some(name)
            );
        }
        assert_eq!(PeerUpdates::parse(" LIVE "), Some(PeerUpdates::Live));
        assert_eq!(PeerUpdates::parse("reload"), None);
        assert!(!PeerUpdates::Restart.is_live());
        assert!(PeerUpdates::LiveThenRestart.is_live());
        assert_eq!(PeerUpdates::default(), PeerUpdates::Restart);
    }

    #[test]
    fn diff_names_exactly_the_added_and_the_removed() {
        let d = diff(&set(&["a:11625", "b:11625"]), &set(&["b:11625", "c:11625"]));
        assert_eq!(d.added, vec!["c:11625"]);
        assert_eq!(d.removed, vec!["a:11625"]);
        assert_eq!(diff(&set(&["a"]), &set(&["a"])), Diff::default());
    }

    #[test]
    fn connect_targets_follow_stellar_core_parameters() {
        assert_eq!(
            connect_target("v-0.v-headless.ns.svc.cluster.local:11625").as_deref(),
            Some("/connect?peer=v-0.v-headless.ns.svc.cluster.local&port=11625")
        );
        assert_eq!(
            connect_target("1.2.3.4").as_deref(),
            Some("/connect?peer=1.2.3.4&port=11625")
        );
        for bad in ["", "a:0", "a:x", "a b:1", "a&port=1:2", ":11625", "[::1]:1"] {
            assert_eq!(connect_target(bad), None, "{bad}");
        }
        assert!(request("/peers", 11626).starts_with("GET /peers HTTP/1.1\r\n"));
    }

    #[test]
    fn answers_are_read_as_stellar_core_writes_them() {
        assert_eq!(classify(200, "Connect to: a:11625"), Answer::Connected);
        assert_eq!(
            classify(200, r#"{"error": "Core is booting, try again later"}"#),
            Answer::Booting
        );
        assert_eq!(
            classify(200, r#"{"exception": "Could not resolve x"}"#),
            Answer::Refused("Could not resolve x".to_owned())
        );
        assert!(matches!(
            classify(
                200,
                "Must specify a peer and port: connect&peer=PEER&port=PORT"
            ),
            Answer::Unexpected(_)
        ));
        assert!(matches!(classify(404, "no"), Answer::Unexpected(m) if m.contains("404")));
        assert_eq!(classify(200, "Connect to: a:1").label(), "connected");
    }

    #[test]
    fn responses_split_into_status_and_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(raw), Some((200, "hello".to_owned())));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(parse_response(b"SSH-2.0\r\n\r\n"), None);
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(6), Duration::from_millis(16_000));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn the_admin_port_comes_from_the_config() {
        assert_eq!(admin("").unwrap(), Admin::Port(11626));
        assert_eq!(admin("HTTP_PORT = 11700").unwrap(), Admin::Port(11700));
        assert_eq!(admin("HTTP_PORT = 0").unwrap(), Admin::Off);
        assert_eq!(
            admin("RUN_STANDALONE = true\nHTTP_PORT = 1").unwrap(),
            Admin::Standalone
        );
        assert!(admin("HTTP_PORT = [").is_err());
    }
}
