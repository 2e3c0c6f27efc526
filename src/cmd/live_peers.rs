//! `live-peers`: the native sidecar that lets a running stellar-core learn added peers.
//!
//! It runs next to stellar-core in a pod injected with a live peer-updates policy (an
//! init container with `restartPolicy: Always`, after `stellar-peers-config`). When the
//! rollout loop patches the pod's peers annotation, the kubelet rewrites the snippet
//! file; this command then
//! - merges it again, by `render-config`'s rules, into the merged file (atomically), so
//!   that a restart of the stellar-core container reads the current peers;
//! - calls `GET /connect?peer=HOST&port=PORT` on 127.0.0.1:`HTTP_PORT` for every added
//!   peer, retrying with back-off while the port does not answer or core is booting;
//! - leaves removed peers alone: stellar-core has no command that forgets an address
//!   (`droppeer` takes a node ID), their dials fail harmlessly, and the file no longer
//!   lists them, so the next start forgets them.
//!
//! It never restarts anything. What it does is in its log and on `/metrics`.
//! The decisions are the core's ([`crate::live`]); this is the file, clock and socket edge.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use tokio::time::{Instant, timeout};

use crate::cmd::render_config::{RenderArgs, parse_snippet, render};
use crate::duration::parse_duration;
use crate::error::Error;
use crate::live::{self, Admin, Answer};

/// Flags of `live-peers`: `render-config`'s, plus how to follow and where to report.
#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    #[command(flatten)]
    pub render: RenderArgs,
    /// How often the snippet file is read for a change.
    #[arg(long, env = "STELLAR_PEERS_LIVE_POLL", default_value = "250ms", value_parser = parse_duration)]
    pub poll: Duration,
    /// Where `/metrics` is served (the pod's port `peers-metrics`); empty: nowhere.
    #[arg(
        long,
        env = "STELLAR_PEERS_LIVE_METRICS_ADDR",
        default_value = "0.0.0.0:11680"
    )]
    pub metrics_addr: String,
    /// How long an added peer that stellar-core refuses (mostly a name that does not
    /// resolve yet: the new pod is still starting) is retried before it is reported and
    /// left to the next start.
    #[arg(long, env = "STELLAR_PEERS_LIVE_GIVE_UP_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub give_up_after: Duration,
}

/// The sidecar's counters.
struct Metrics {
    registry: Registry,
    /// `connect` calls by what came back (`unreachable`: the port did not answer).
    connects: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Snippet changes seen, and rewrites of the merged file by result.
    changes: Counter,
    writes: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Added peers not connected yet.
    pending: Gauge,
    /// Added peers given up on (refused for longer than --give-up-after, or an answer
    /// that is not stellar-core's).
    given_up: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("stellar_peers_live");
        let connects = Family::default();
        let changes = Counter::default();
        let writes = Family::default();
        let pending = Gauge::default();
        let given_up = Counter::default();
        registry.register(
            "connects",
            "connect calls on stellar-core's admin port, by answer",
            connects.clone(),
        );
        registry.register(
            "snippet_changes",
            "changes of the injected peers file",
            changes.clone(),
        );
        registry.register(
            "config_writes",
            "rewrites of the merged config, by result",
            writes.clone(),
        );
        registry.register("pending", "added peers not connected yet", pending.clone());
        registry.register(
            "given_up",
            "added peers left to the next start (refused too long, or not stellar-core's answer)",
            given_up.clone(),
        );
        Self {
            registry,
            connects,
            changes,
            writes,
            pending,
            given_up,
        }
    }
}

/// One added peer not connected yet.
struct Pending {
    attempts: u32,
    due: Instant,
    since: Instant,
}

/// Runs until SIGTERM (the kubelet stops a native sidecar after the main containers).
pub async fn main(args: LiveArgs) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let listener = match args.metrics_addr.trim() {
        "" => None,
        a => {
            let addr: SocketAddr = a.parse().map_err(|e| {
                Error::Config(format!("--metrics-addr {a:?} is not an IP:PORT ({e})"))
            })?;
            Some(crate::server::bind(addr).await?)
        }
    };
    let mut state = Follower::start(&args, &metrics);
    let stop = crate::cmd::serve::shutdown_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(args.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = accept(listener.as_ref()) => {
                if let Ok((conn, _)) = accepted {
                    // One short scrape at a time, bounded: the loop is never held long.
                    let _ = timeout(Duration::from_secs(2), serve_metrics(conn, &metrics)).await;
                }
            }
            _ = tick.tick() => state.step(&args, &metrics).await,
        }
    }
    tracing::info!("live-peers: stopping");
    Ok(())
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve_metrics(mut conn: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    while n < buf.len() {
        let m = conn.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let (status, body) = if head.starts_with("GET /metrics ") {
        let mut text = String::new();
        match encode(&mut text, &metrics.registry) {
            Ok(()) => ("200 OK", text),
            Err(e) => ("500 Internal Server Error", format!("{e}\n")),
        }
    } else {
        ("404 Not Found", "only /metrics is served here\n".to_owned())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(reply.as_bytes()).await?;
    conn.shutdown().await
}

/// What the sidecar knows: the peers the process has, the ones it still has to learn.
struct Follower {
    snippet: Option<String>,
    applied: BTreeSet<String>,
    pending: BTreeMap<String, Pending>,
    admin: Option<Admin>,
}

fn peers_of(text: &str) -> Option<BTreeSet<String>> {
    parse_snippet(text)
        .ok()
        .map(|(known, preferred)| known.into_iter().chain(preferred).collect())
}

impl Follower {
    /// At start (before stellar-core: a native sidecar starts first) the file is merged
    /// again from the current snippet, so the process starts with exactly `applied`.
    fn start(args: &LiveArgs, metrics: &Metrics) -> Self {
        let snippet = std::fs::read_to_string(&args.render.peers).ok();
        let applied = snippet.as_deref().and_then(peers_of).unwrap_or_default();
        let mut me = Self {
            snippet,
            applied,
            pending: BTreeMap::new(),
            admin: None,
        };
        me.rewrite(args, metrics);
        tracing::info!(
            peers = me.applied.len(),
            admin = %me.admin.as_ref().map_or("unknown".to_owned(), ToString::to_string),
            "live-peers: following {}",
            args.render.peers.display()
        );
        me
    }

    /// The init step's merge again; the admin port is read from the merged file.
    fn rewrite(&mut self, args: &LiveArgs, metrics: &Metrics) {
        match render(&args.render) {
            Ok(r) => {
                metrics.writes.get_or_create(&vec![("result", "ok")]).inc();
                tracing::info!("live-peers: {r}");
                self.admin = std::fs::read_to_string(&r.out)
                    .ok()
                    .and_then(|t| live::admin(&t).ok());
            }
            Err(e) => {
                metrics
                    .writes
                    .get_or_create(&vec![("result", "error")])
                    .inc();
                tracing::error!(
                    "live-peers: the merged config was not rewritten, a restart would read the previous one: {}",
                    crate::causes::chain(&e)
                );
            }
        }
    }

    async fn step(&mut self, args: &LiveArgs, metrics: &Metrics) {
        self.follow(args, metrics);
        self.connect_due(args, metrics).await;
        metrics
            .pending
            .set(i64::try_from(self.pending.len()).unwrap_or(i64::MAX));
    }

    /// Reads the snippet; on a change, rewrites the file and queues the added peers.
    fn follow(&mut self, args: &LiveArgs, metrics: &Metrics) {
        let Ok(text) = std::fs::read_to_string(&args.render.peers) else {
            return; // the kubelet swaps `..data`; the next tick reads it
        };
        if self.snippet.as_deref() == Some(text.as_str()) {
            return;
        }
        self.snippet = Some(text.clone());
        metrics.changes.inc();
        let Some(now_peers) = peers_of(&text) else {
            tracing::error!(
                "live-peers: {} is not a peers snippet; nothing changes until it is",
                args.render.peers.display()
            );
            return;
        };
        self.rewrite(args, metrics);
        let d = live::diff(&self.applied, &now_peers);
        let now = Instant::now();
        for a in &d.added {
            self.pending.entry(a.clone()).or_insert(Pending {
                attempts: 0,
                due: now,
                since: now,
            });
        }
        for r in &d.removed {
            self.pending.remove(r);
        }
        tracing::info!(
            added = ?d.added,
            removed = ?d.removed,
            "live-peers: peers changed; added ones are connected now, removed ones stay until stellar-core's next start (droppeer takes a node ID, not an address)"
        );
        self.applied = now_peers;
    }

    async fn connect_due(&mut self, args: &LiveArgs, metrics: &Metrics) {
        let port = match &self.admin {
            Some(Admin::Port(p)) => *p,
            Some(other) => {
                if !self.pending.is_empty() {
                    tracing::warn!(peers = ?self.pending.keys().collect::<Vec<_>>(), "live-peers: {other}");
                    self.pending.clear();
                }
                return;
            }
            None => DEFAULT_IF_UNKNOWN,
        };
        let now = Instant::now();
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(a, _)| a.clone())
            .collect();
        for address in due {
            let answer = connect(port, &address).await;
            let label = answer.as_ref().map_or("unreachable", Answer::label);
            metrics
                .connects
                .get_or_create(&vec![("answer", label)])
                .inc();
            let Some(p) = self.pending.get_mut(&address) else {
                continue;
            };
            let give_up = |why: String| {
                metrics.given_up.inc();
                tracing::error!(peer = %address, "live-peers: {why}; the peer is in the merged file, so stellar-core dials it at its next start");
            };
            match answer {
                Ok(Answer::Connected) => {
                    tracing::info!(peer = %address, attempts = p.attempts + 1, "live-peers: connect sent, stellar-core dials the peer");
                    self.pending.remove(&address);
                    continue;
                }
                Ok(Answer::Unexpected(body)) => {
                    give_up(format!("not stellar-core's answer to connect: {body}"));
                    self.pending.remove(&address);
                    continue;
                }
                Ok(Answer::Refused(reason))
                    if now.duration_since(p.since) >= args.give_up_after =>
                {
                    give_up(format!(
                        "stellar-core refused it for {:?}: {reason}",
                        args.give_up_after
                    ));
                    self.pending.remove(&address);
                    continue;
                }
                Ok(Answer::Refused(reason)) => {
                    if p.attempts == 0 {
                        tracing::warn!(peer = %address, "live-peers: stellar-core refused connect ({reason}); retrying");
                    }
                }
                Ok(Answer::Booting) => {
                    if p.attempts == 0 {
                        tracing::info!(peer = %address, "live-peers: stellar-core is booting; retrying");
                    }
                }
                Err(e) => {
                    if p.attempts == 0 || p.attempts % 10 == 0 {
                        tracing::warn!(peer = %address, attempts = p.attempts + 1, "live-peers: admin port 127.0.0.1:{port} does not answer ({e}); retrying");
                    }
                }
            }
            p.due = Instant::now() + live::backoff(p.attempts);
            p.attempts = p.attempts.saturating_add(1);
        }
    }
}

/// The port tried while the merged file cannot be read: stellar-core's default.
const DEFAULT_IF_UNKNOWN: u16 = live::DEFAULT_HTTP_PORT;

/// Why a `connect` got no answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within 5 s")]
    Timeout,
    #[error("not an HTTP answer")]
    NotHttp,
    #[error("the address is not a host[:port]")]
    BadAddress,
}

async fn connect(port: u16, address: &str) -> Result<Answer, CallError> {
    let target = live::connect_target(address).ok_or(CallError::BadAddress)?;
    let call = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(live::request(&target, port).as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(64 * 1024).read_to_end(&mut raw).await?;
        Ok::<_, CallError>(raw)
    };
    let raw = timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| CallError::Timeout)??;
    let (status, body) = live::parse_response(&raw).ok_or(CallError::NotHttp)?;
    Ok(live::classify(status, &body))
}
