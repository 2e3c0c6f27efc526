//! A minimal DNS codec for A records: does a peer's name resolve?
//!
//! Pure: [`encode_query`], [`encode_reply`], [`parse_reply`], [`parse_resolv_conf`] and
//! [`parse_server`]. The lookups themselves (UDP, then TCP) are the injector's edge.
//!
//! Names are queried as absolute names, without the search list: every peer address
//! the injector hands out is fully qualified (`{pod}.{svc}.{ns}.svc.{domain}`), and
//! stellar-core's resolver would not find a shorter one through a search list either
//! way. Only A records are asked for: stellar-core connects to IPv4 peers only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The DNS port.
pub const DEFAULT_PORT: u16 = 53;
/// Where the system's nameservers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// A server's definite answer about a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name has these IPv4 addresses (never empty).
    Addresses(Vec<Ipv4Addr>),
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// The name exists but has no A record (NODATA).
    NoRecords,
}

/// What a reply to [`encode_query`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Answer(Answer),
    /// The answer did not fit in a UDP message: ask again over TCP.
    Truncated,
}

/// Why a reply could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed DNS message: {0}")]
    Malformed(&'static str),
    /// Another query's reply (wrong id, or not a reply to this question).
    #[error("not the reply to this query")]
    NotOurs,
    /// SERVFAIL, REFUSED, ...: the server has no answer, which says nothing about the name.
    #[error("server answered {}", rcode_name(*.0))]
    Server(u8),
}

/// Why a lookup gave no definite answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{name:?} is not a DNS name that can be looked up")]
    BadName { name: String },
    #[error("no nameserver to ask: {0}")]
    NoServers(String),
    #[error("cannot read {path}: {source}")]
    ResolvConf {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS server {server}: {source}")]
    Reply {
        server: SocketAddr,
        #[source]
        source: ParseError,
    },
    #[error("no answer from DNS server {server} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("cannot query DNS server {server}: {source}")]
    Io {
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl DnsError {
    /// True when the server could not be reached or did not answer at all (as opposed
    /// to answering that it has no answer, like SERVFAIL).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Io { .. } | Self::NoServers(_)
        )
    }
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        r => format!("rcode {r}"),
    }
}

/// The name as it goes on the wire: lower-case labels, no trailing dot. `None` when it
/// cannot be a DNS name.
fn labels(name: &str) -> Option<Vec<&str>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 || !name.is_ascii() {
        return None;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels
        .iter()
        .all(|l| !l.is_empty() && l.len() <= 63)
        .then_some(labels)
}

/// A recursion-desired query for the A records of `name`.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let labels = labels(name).ok_or_else(|| DnsError::BadName {
        name: name.to_owned(),
    })?;
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. One question, no answers, authority or additional records.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in labels {
        q.push(l.len() as u8);
        q.extend(l.bytes().map(|b| b.to_ascii_lowercase()));
    }
    q.push(0);
    q.extend_from_slice(&TYPE_A.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn u16_at(msg: &[u8], i: usize) -> Result<u16, ParseError> {
    match (msg.get(i), msg.get(i + 1)) {
        (Some(a), Some(b)) => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(ParseError::Malformed("message ends early")),
    }
}

/// Reads the (possibly compressed) name at `i`: its lower-case dotted form and the
/// offset after it in the message.
fn read_name(msg: &[u8], mut i: usize) -> Result<(String, usize), ParseError> {
    let mut name = String::new();
    let mut after = None;
    // Each pointer must go backwards, so a loop of pointers cannot run forever.
    let mut limit = i;
    loop {
        let len = *msg
            .get(i)
            .ok_or(ParseError::Malformed("name runs past the end"))?;
        match len {
            0 => return Ok((name, after.unwrap_or(i + 1))),
            l if l & 0xC0 == 0xC0 => {
                let target = usize::from(u16_at(msg, i)? & 0x3FFF);
                if target >= limit {
                    return Err(ParseError::Malformed("compression pointer goes forward"));
                }
                after.get_or_insert(i + 2);
                limit = target;
                i = target;
            }
            l if l & 0xC0 != 0 => return Err(ParseError::Malformed("unknown label type")),
            l => {
                let label = msg
                    .get(i + 1..i + 1 + usize::from(l))
                    .ok_or(ParseError::Malformed("label runs past the end"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                if name.len() > 255 {
                    return Err(ParseError::Malformed("name too long"));
                }
                i += 1 + usize::from(l);
            }
        }
    }
}

/// Reads the reply to `encode_query(id, name)`.
pub fn parse_reply(msg: &[u8], id: u16, name: &str) -> Result<Reply, ParseError> {
    if u16_at(msg, 0)? != id {
        return Err(ParseError::NotOurs);
    }
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err(ParseError::NotOurs); // a query, not a reply
    }
    if flags & 0x0200 != 0 {
        return Ok(Reply::Truncated);
    }
    let rcode = (flags & 0x000F) as u8;
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut i = 12;
    if questions != 1 {
        // Some servers leave the question out of error replies.
        return match rcode {
            0 | 3 => Err(ParseError::Malformed(
                "the reply does not repeat the question",
            )),
            r => Err(ParseError::Server(r)),
        };
    }
    let (qname, next) = read_name(msg, i)?;
    let want = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if qname != want || u16_at(msg, next)? != TYPE_A || u16_at(msg, next + 2)? != CLASS_IN {
        return Err(ParseError::NotOurs);
    }
    i = next + 4;
    match rcode {
        0 => {}
        3 => return Ok(Reply::Answer(Answer::NoSuchName)),
        r => return Err(ParseError::Server(r)),
    }
    let mut ips = Vec::new();
    for _ in 0..answers {
        let (_, next) = read_name(msg, i)?;
        let rtype = u16_at(msg, next)?;
        let class = u16_at(msg, next + 2)?;
        let rdlen = usize::from(u16_at(msg, next + 8)?);
        let rdata = msg
            .get(next + 10..next + 10 + rdlen)
            .ok_or(ParseError::Malformed("record data runs past the end"))?;
        // CNAMEs on the way are skipped; the A records at their end count.
        if rtype == TYPE_A && class == CLASS_IN {
            let octets: [u8; 4] = rdata
                .try_into()
                .map_err(|_| ParseError::Malformed("an A record is not 4 bytes"))?;
            ips.push(Ipv4Addr::from(octets));
        }
        i = next + 10 + rdlen;
    }
    Ok(Reply::Answer(if ips.is_empty() {
        Answer::NoRecords
    } else {
        Answer::Addresses(ips)
    }))
}

/// The `nameserver` entries of a resolv.conf, on port 53, in order.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let l = l.split(['#', ';']).next()?.trim();
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // An IPv6 address may carry a zone (`fe80::1%eth0`), which std cannot parse.
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, DEFAULT_PORT))
        })
        .collect()
}

/// A `--dns-server` value that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not IP or IP:PORT of a DNS server (like 10.96.0.10 or 127.0.0.1:5353)")]
pub struct BadDnsServer(pub String);

/// Parses a `--dns-server` value: `IP` or `IP:PORT` (`[IPv6]:PORT` for IPv6).
pub fn parse_server(s: &str) -> Result<SocketAddr, BadDnsServer> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| BadDnsServer(s.to_owned()))
}

/// A reply to `encode_query(id, name)` with `flags` and the given answer records
/// (`(type, rdata)`, each owned by a pointer to the question's name): what a server
/// answers, for tests and stand-in servers.
pub fn encode_reply(
    id: u16,
    name: &str,
    flags: u16,
    records: &[(u16, &[u8])],
) -> Result<Vec<u8>, DnsError> {
    let mut m = encode_query(id, name)?;
    m[2..4].copy_from_slice(&flags.to_be_bytes());
    m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for (t, data) in records {
        m.extend_from_slice(&[0xC0, 12]);
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&30u32.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: u16, name: &str, flags: u16, records: &[(u16, &[u8])]) -> Vec<u8> {
        encode_reply(id, name, flags, records).expect("reply")
    }

    const OK: u16 = 0x8180; // reply, RD, RA, NOERROR

    #[test]
    fn encodes_a_query() {
        let q = encode_query(0x1234, "V1-0.v1-headless.NS.svc.cluster.local.").expect("query");
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let (name, next) = read_name(&q, 12).expect("name");
        assert_eq!(name, "v1-0.v1-headless.ns.svc.cluster.local");
        assert_eq!(&q[next..], &[0, 1, 0, 1]);
        for bad in ["", ".", "a..b", &"x".repeat(64), "ünï.example"] {
            assert!(
                matches!(encode_query(1, bad), Err(DnsError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reads_addresses_and_skips_cnames() {
        let name = "v1-0.v1-headless.ns.svc.cluster.local";
        let m = reply(7, name, OK, &[(1, &[10, 0, 0, 5]), (1, &[10, 0, 0, 6])]);
        assert_eq!(
            parse_reply(&m, 7, name),
            Ok(Reply::Answer(Answer::Addresses(vec![
                Ipv4Addr::new(10, 0, 0, 5),
                Ipv4Addr::new(10, 0, 0, 6)
            ])))
        );
        // A CNAME (type 5, its target as a pointer back to the question name) then the A.
        let m = reply(7, name, OK, &[(5, &[0xC0, 12]), (1, &[192, 0, 2, 1])]);
        assert_eq!(
            parse_reply(&m, 7, &name.to_ascii_uppercase()),
            Ok(Reply::Answer(Answer::Addresses(vec![Ipv4Addr::new(
                192, 0, 2, 1
            )])))
        );
    }

    #[test]
    fn nxdomain_nodata_truncation_and_server_errors() {
        let n = "gone.ns.svc.cluster.local";
        assert_eq!(
            parse_reply(&reply(1, n, 0x8183, &[]), 1, n),
            Ok(Reply::Answer(Answer::NoSuchName))
        );
        assert_eq!(
            parse_reply(&reply(1, n, OK, &[]), 1, n),
            Ok(Reply::Answer(Answer::NoRecords))
        );
        // Only an AAAA record: no A record for stellar-core.
        assert_eq!(
            parse_reply(&reply(1, n, OK, &[(28, &[0; 16])]), 1, n),
            Ok(Reply::Answer(Answer::NoRecords))
        );
        assert_eq!(
            parse_reply(&reply(1, n, OK | 0x0200, &[]), 1, n),
            Ok(Reply::Truncated)
        );
        assert_eq!(
            parse_reply(&reply(1, n, 0x8182, &[]), 1, n),
            Err(ParseError::Server(2))
        );
        assert_eq!(
            ParseError::Server(2).to_string(),
            "server answered SERVFAIL"
        );
        let mut no_question = reply(1, n, 0x8185, &[]);
        no_question[4..6].copy_from_slice(&[0, 0]);
        no_question.truncate(12);
        assert_eq!(parse_reply(&no_question, 1, n), Err(ParseError::Server(5)));
    }

    #[test]
    fn replies_to_other_queries_are_not_ours() {
        let n = "a.example.org";
        assert_eq!(
            parse_reply(&reply(1, n, OK, &[]), 2, n),
            Err(ParseError::NotOurs)
        );
        assert_eq!(
            parse_reply(&reply(1, n, OK, &[]), 1, "b.example.org"),
            Err(ParseError::NotOurs)
        );
        let query = encode_query(1, n).expect("query");
        assert_eq!(parse_reply(&query, 1, n), Err(ParseError::NotOurs));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let n = "a.example.org";
        let good = reply(9, n, OK, &[(1, &[1, 2, 3, 4])]);
        for len in 0..good.len() {
            let r = parse_reply(&good[..len], 9, n);
            assert!(matches!(r, Err(ParseError::Malformed(_))), "{len}: {r:?}");
        }
        // A pointer loop in an answer's name.
        let mut looped = reply(9, n, OK, &[(1, &[1, 2, 3, 4])]);
        let at = encode_query(9, n).expect("q").len();
        looped[at..at + 2].copy_from_slice(&[0xC0, at as u8]);
        assert!(matches!(
            parse_reply(&looped, 9, n),
            Err(ParseError::Malformed(_))
        ));
        // An A record of 5 bytes.
        let bad = reply(9, n, OK, &[(1, &[1, 2, 3, 4, 5])]);
        assert!(matches!(
            parse_reply(&bad, 9, n),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n\
                    nameserver  fe80::1%eth0 # link-local\noptions ndots:5\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.96.0.10:53".parse::<SocketAddr>().expect("addr"),
                "[fe80::1]:53".parse().expect("addr"),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn server_flag_values() {
        assert_eq!(
            parse_server("10.96.0.10"),
            Ok("10.96.0.10:53".parse().expect("a"))
        );
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().expect("a"))
        );
        assert_eq!(parse_server("::1"), Ok("[::1]:53".parse().expect("a")));
        assert!(parse_server("kube-dns.kube-system").is_err());
    }
}
