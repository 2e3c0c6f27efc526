//! The bed's CoreDNS, asked with the injector's own DNS client (`stellar_peer_injector::watch::dns`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::bed::bed_port;

/// The bed's CoreDNS (UDP and TCP on 127.0.0.1).
pub fn dns_addr() -> Result<SocketAddr, String> {
    Ok(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        bed_port("DNS_PORT")?,
    )))
}

/// Asks the bed's CoreDNS for the A records of `name` (2 s per attempt). An unknown name
/// is `Err("NXDOMAIN: <name>")`; other failures are other errors.
pub async fn resolve_a(name: &str) -> Result<Vec<Ipv4Addr>, String> {
    use stellar_peer_injector::watch::dns::{Answer, Resolver};
    let resolver = Resolver::new(vec![dns_addr()?], Duration::from_secs(2));
    match resolver.lookup_a(name).await {
        Ok(Answer::Addresses(ips)) => Ok(ips),
        Ok(Answer::NoRecords) => Ok(Vec::new()),
        Ok(Answer::NoSuchName) => Err(format!("NXDOMAIN: {name}")),
        Err(e) => Err(e.to_string()),
    }
}
