//! A minimal DNS client for the bed's CoreDNS: one UDP query for A records.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::bed::bed_port;
use crate::ns::next_seq;

/// The bed's CoreDNS (UDP and TCP on 127.0.0.1).
pub fn dns_addr() -> Result<SocketAddr, String> {
    Ok(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        bed_port("DNS_PORT")?,
    )))
}

/// Asks the bed's CoreDNS for the A records of `name` (one UDP query, 2 s timeout). An
/// unknown name is `Err("NXDOMAIN: <name>")`; other failures are other errors.
pub async fn resolve_a(name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let addr = dns_addr()?;
    let id = (std::process::id() as u16) ^ (next_seq() as u16);
    let query = dns_a_query(id, name)?;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind a UDP socket: {e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    sock.send(&query)
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer from {addr} within 2 s for {name}"))?
            .map_err(|e| format!("receive from {addr}: {e}"))?;
        // Skip anything that is not the answer to this query.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return dns_parse_a(&buf[..n], name);
        }
    }
}

/// A recursion-desired query for the A records of `name`.
fn dns_a_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // QTYPE A, QCLASS IN
    Ok(q)
}

/// Skips a (possibly compressed) name at `i`; returns the offset after it.
fn dns_skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)?;
        match len {
            0 => return Some(i + 1),
            l if l & 0xC0 == 0xC0 => return Some(i + 2),
            l => i += 1 + l as usize,
        }
    }
}

/// The A records of an answer to `dns_a_query`.
fn dns_parse_a(msg: &[u8], name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = || format!("malformed DNS answer for {name}");
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?])) };
    let flags = u16_at(2).ok_or_else(bad)?;
    if flags & 0x8000 == 0 {
        return Err(bad());
    }
    if flags & 0x0200 != 0 {
        return Err(format!("truncated DNS answer for {name}"));
    }
    match flags & 0x000F {
        0 => {}
        3 => return Err(format!("NXDOMAIN: {name}")),
        rcode => return Err(format!("DNS rcode {rcode} for {name}")),
    }
    let qd = u16_at(4).ok_or_else(bad)?;
    let an = u16_at(6).ok_or_else(bad)?;
    let mut i = 12;
    for _ in 0..qd {
        i = dns_skip_name(msg, i).ok_or_else(bad)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..an {
        i = dns_skip_name(msg, i).ok_or_else(bad)?;
        let rtype = u16_at(i).ok_or_else(bad)?;
        let rdlen = usize::from(u16_at(i + 8).ok_or_else(bad)?);
        let rdata = msg.get(i + 10..i + 10 + rdlen).ok_or_else(bad)?;
        if rtype == 1 && rdlen == 4 {
            ips.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        i += 10 + rdlen;
    }
    Ok(ips)
}
