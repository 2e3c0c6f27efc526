//! A minimal DNS stub resolver for A records: does a peer's name resolve?
//!
//! Pure: [`encode_query`], [`parse_reply`] and [`parse_resolv_conf`]. Edge (thin):
//! [`Resolver::lookup_a`], one UDP query per server (TCP when the answer is truncated
//! or UDP gets no answer, so a `kubectl port-forward` to the cluster DNS works too).
//!
//! Names are queried as absolute names, without the search list: every peer address
//! the injector hands out is fully qualified (`{pod}.{svc}.{ns}.svc.{domain}`), and
//! stellar-core's resolver would not find a shorter one through a search list either
//! way. Only A records are asked for: stellar-core connects to IPv4 peers only.

//!
//! The codec is the core's ([`stellar_peer_core::dns`], re-exported here); this module
//! is the edge: [`Resolver`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub use stellar_peer_core::dns::*;

/// Asks nameservers for A records.
#[derive(Clone, Debug)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    /// Per attempt (UDP, then TCP).
    timeout: Duration,
}

impl Resolver {
    /// Asks `servers`, in order, until one gives a definite answer.
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// The system's nameservers (from /etc/resolv.conf).
    pub fn system(timeout: Duration) -> Result<Self, DnsError> {
        let text = std::fs::read_to_string(RESOLV_CONF).map_err(|source| DnsError::ResolvConf {
            path: RESOLV_CONF.to_owned(),
            source,
        })?;
        let servers = parse_resolv_conf(&text);
        if servers.is_empty() {
            return Err(DnsError::NoServers(format!(
                "{RESOLV_CONF} lists no nameserver; pass --dns-server"
            )));
        }
        Ok(Self::new(servers, timeout))
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The A records of `host`. An IPv4 literal is its own answer. The first server
    /// that answers definitely (addresses, NXDOMAIN or no records) decides; a server
    /// that fails (no answer, SERVFAIL, ...) passes the question to the next one.
    pub async fn lookup_a(&self, host: &str) -> Result<Answer, DnsError> {
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Answer::Addresses(vec![ip]));
        }
        let mut last = DnsError::NoServers("no --dns-server and no system nameserver".into());
        for &server in &self.servers {
            match self.ask(server, host).await {
                Ok(a) => return Ok(a),
                Err(e @ DnsError::BadName { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn ask(&self, server: SocketAddr, host: &str) -> Result<Answer, DnsError> {
        let id = query_id(host);
        let query = encode_query(id, host)?;
        let reply_err = |source| DnsError::Reply { server, source };
        match self.udp(server, &query, id, host).await {
            Ok(Reply::Answer(a)) => Ok(a),
            // Too big for UDP, or no UDP answer at all (a TCP-only port-forward): TCP.
            Ok(Reply::Truncated) => match self.tcp(server, &query, id, host).await {
                Ok(Reply::Answer(a)) => Ok(a),
                Ok(Reply::Truncated) => Err(reply_err(ParseError::Malformed("truncated over TCP"))),
                Err(e) => Err(e),
            },
            Err(UdpFailure::NoAnswer(udp)) => match self.tcp(server, &query, id, host).await {
                Ok(Reply::Answer(a)) => Ok(a),
                Ok(Reply::Truncated) => Err(reply_err(ParseError::Malformed("truncated over TCP"))),
                // Neither answers: say what the first try met.
                Err(tcp) if tcp.is_unreachable() => Err(udp),
                Err(tcp) => Err(tcp),
            },
            Err(UdpFailure::Error(e)) => Err(e),
        }
    }

    async fn udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        host: &str,
    ) -> Result<Reply, UdpFailure> {
        let io = |source| UdpFailure::NoAnswer(DnsError::Io { server, source });
        let local: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(io)?;
        sock.connect(server).await.map_err(io)?;
        sock.send(query).await.map_err(io)?;
        let mut buf = [0u8; 1232];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => {
                    return Err(UdpFailure::NoAnswer(DnsError::Timeout {
                        server,
                        timeout: self.timeout,
                    }));
                }
                Ok(r) => r.map_err(io)?,
            };
            match parse_reply(&buf[..n], id, host) {
                Err(ParseError::NotOurs) => continue, // a stray datagram: keep waiting
                Err(source) => return Err(UdpFailure::Error(DnsError::Reply { server, source })),
                Ok(r) => return Ok(r),
            }
        }
    }

    async fn tcp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        host: &str,
    ) -> Result<Reply, DnsError> {
        let io = |source| DnsError::Io { server, source };
        let exchange = async {
            let mut s = TcpStream::connect(server).await.map_err(io)?;
            let len = u16::try_from(query.len()).unwrap_or(u16::MAX);
            let mut framed = Vec::with_capacity(query.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(query);
            s.write_all(&framed).await.map_err(io)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.map_err(io)?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut msg).await.map_err(io)?;
            parse_reply(&msg, id, host).map_err(|source| DnsError::Reply { server, source })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DnsError::Timeout {
                server,
                timeout: self.timeout,
            })?
    }
}

enum UdpFailure {
    /// Nothing usable came back over UDP: worth trying TCP.
    NoAnswer(DnsError),
    /// The server answered, with an error.
    Error(DnsError),
}

/// A query id that differs between queries (replies are matched on it and on the question).
fn query_id(host: &str) -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = format!("{host}/{nanos}/{}", SEQ.fetch_add(1, Ordering::Relaxed));
    xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u16 = 0x8180; // reply, RD, RA, NOERROR

    fn reply(id: u16, name: &str, flags: u16, records: &[(u16, &[u8])]) -> Vec<u8> {
        encode_reply(id, name, flags, records).expect("reply")
    }

    #[tokio::test]
    async fn ip_literals_resolve_without_a_server() {
        let r = Resolver::new(vec![], Duration::from_millis(10));
        assert_eq!(
            r.lookup_a("10.1.2.3").await.expect("literal"),
            Answer::Addresses(vec![Ipv4Addr::new(10, 1, 2, 3)])
        );
        let e = r.lookup_a("a.example.org").await.expect_err("no server");
        assert!(e.is_unreachable(), "{e}");
    }

    #[tokio::test]
    async fn asks_over_udp_and_falls_back_to_tcp_when_truncated() {
        let name = "v1-0.v1-headless.ns.svc.cluster.local";
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let port = udp.local_addr().expect("addr").port();
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("tcp on the same port");
        let server = tokio::spawn(async move {
            // UDP: say it is truncated.
            let mut buf = [0u8; 512];
            let (_, from) = udp.recv_from(&mut buf).await.expect("recv");
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            udp.send_to(&reply(id, name, OK | 0x0200, &[]), from)
                .await
                .expect("send");
            // TCP: the full answer.
            answer_one_tcp(&tcp, name, [10, 0, 0, 9]).await;
        });
        let r = Resolver::new(
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
            Duration::from_secs(5),
        );
        assert_eq!(
            r.lookup_a(name).await.expect("answer"),
            Answer::Addresses(vec![Ipv4Addr::new(10, 0, 0, 9)])
        );
        server.await.expect("server");
    }

    /// Accepts one TCP query on `tcp` and answers it with one A record.
    async fn answer_one_tcp(tcp: &tokio::net::TcpListener, name: &str, ip: [u8; 4]) {
        let (mut s, _) = tcp.accept().await.expect("accept");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.expect("len");
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut q).await.expect("query");
        let id = u16::from_be_bytes([q[0], q[1]]);
        let m = reply(id, name, OK, &[(1, &ip)]);
        s.write_all(&(m.len() as u16).to_be_bytes())
            .await
            .expect("w");
        s.write_all(&m).await.expect("w");
    }

    /// A TCP-only server (a `kubectl port-forward`): UDP gets no answer, TCP does.
    #[tokio::test]
    async fn a_tcp_only_server_is_asked_over_tcp() {
        let name = "kubernetes.default.svc.cluster.local";
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("tcp");
        let port = tcp.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            answer_one_tcp(&tcp, name, [10, 96, 0, 1]).await;
        });
        let r = Resolver::new(
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
            Duration::from_millis(500),
        );
        assert_eq!(
            r.lookup_a(name).await.expect("answer"),
            Answer::Addresses(vec![Ipv4Addr::new(10, 96, 0, 1)])
        );
        server.await.expect("server");
    }
}
