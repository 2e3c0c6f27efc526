//! Peer addresses as stellar-core accepts them: `host:port`, host a DNS name or IPv4.

use std::net::Ipv4Addr;

/// stellar-core's default `PEER_PORT`.
pub const DEFAULT_PEER_PORT: u16 = 11625;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("peer address is empty")]
    Empty,
    #[error("peer address {0:?}: IPv6 literals are not accepted by stellar-core; use a DNS name")]
    Ipv6(String),
    #[error("peer address {0:?}: port must be a number from 1 to 65535")]
    Port(String),
    #[error(
        "peer address {0:?}: host must be a DNS name (letters, digits, '-', '.') or an IPv4 address"
    )]
    Host(String),
}

/// Normalises `host[:port]` into `host:port` (lower-case host, default port 11625).
pub fn normalize(raw: &str) -> Result<String, AddressError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.starts_with('[') || s.matches(':').count() > 1 {
        return Err(AddressError::Ipv6(s.to_owned()));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => {
            let port: u16 = p.parse().map_err(|_| AddressError::Port(s.to_owned()))?;
            if port == 0 {
                return Err(AddressError::Port(s.to_owned()));
            }
            (h, port)
        }
        None => (s, DEFAULT_PEER_PORT),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if !(host.parse::<Ipv4Addr>().is_ok() || is_dns_name(&host)) {
        return Err(AddressError::Host(s.to_owned()));
    }
    Ok(format!("{host}:{port}"))
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why a StellarNode of a linked cluster is no peer here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteAddressError {
    #[error(
        "no address reachable from other clusters: set the annotation stellar.org/peer-address \
         or spec.validatorConfig.externalDns.hostname on it"
    )]
    None,
    #[error(
        "{0:?} is a name inside its own cluster, which other clusters cannot resolve: set the \
         annotation stellar.org/peer-address or spec.validatorConfig.externalDns.hostname to an \
         external name"
    )]
    InCluster(String),
    #[error("{0}; set an external host[:port]")]
    Invalid(AddressError),
}

/// The address other clusters reach a validator by: `stellar.org/peer-address`, else
/// `externalDns.hostname` on port 11625. A name under `svc.<domain>` (of this cluster's
/// domain or the default `cluster.local`) is refused: it would resolve, if at all, to a
/// Service of the wrong cluster. An unusable annotation falls back to the hostname.
pub fn external_address(
    peer_address: Option<&str>,
    external_hostname: Option<&str>,
    local_domain: &str,
) -> Result<String, RemoteAddressError> {
    let check = |raw: &str| -> Result<String, RemoteAddressError> {
        let a = normalize(raw).map_err(RemoteAddressError::Invalid)?;
        let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
        let in_cluster = ["cluster.local", local_domain].iter().any(|d| {
            let d = d.trim_matches('.').to_ascii_lowercase();
            host.ends_with(&format!(".svc.{d}"))
        });
        if in_cluster || (!host.contains('.') && host.parse::<Ipv4Addr>().is_err()) {
            return Err(RemoteAddressError::InCluster(a));
        }
        Ok(a)
    };
    match (peer_address, external_hostname) {
        (Some(p), None) => check(p),
        (Some(p), Some(h)) => check(p).or_else(|_| check(h)),
        (None, Some(h)) => check(h),
        (None, None) => Err(RemoteAddressError::None),
    }
}

/// The governing (headless) Service of a validator's StatefulSet, as the Stellar-K8s
/// operator names it in `serviceName`.
pub fn governing_service(name: &str) -> String {
    format!("{name}-headless")
}

/// The in-cluster address of a validator: the stable DNS name of its StatefulSet's
/// only pod, `{name}-0`, through the governing Service. It resolves as soon as that
/// pod exists (the Service publishes not-ready addresses), whether or not any other
/// Service exists, and it does not change when Services come and go.
pub fn pod_address(name: &str, namespace: &str, cluster_domain: &str) -> String {
    let service = governing_service(name);
    format!("{name}-0.{service}.{namespace}.svc.{cluster_domain}:{DEFAULT_PEER_PORT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize("Core-A.Example.org").as_deref(),
            Ok("core-a.example.org:11625")
        );
        assert_eq!(normalize(" 1.2.3.4:11700 ").as_deref(), Ok("1.2.3.4:11700"));
        assert_eq!(normalize("a.b.:11625").as_deref(), Ok("a.b:11625"));
    }

    #[test]
    fn refuses_bad_addresses() {
        assert_eq!(normalize(""), Err(AddressError::Empty));
        assert!(matches!(
            normalize("[::1]:11625"),
            Err(AddressError::Ipv6(_))
        ));
        assert!(matches!(normalize("fe80::1"), Err(AddressError::Ipv6(_))));
        assert!(matches!(normalize("a:0"), Err(AddressError::Port(_))));
        assert!(matches!(normalize("a:70000"), Err(AddressError::Port(_))));
        assert!(matches!(normalize("a:x"), Err(AddressError::Port(_))));
        assert!(matches!(normalize("a b"), Err(AddressError::Host(_))));
        assert!(matches!(normalize("\"evil\""), Err(AddressError::Host(_))));
        assert!(matches!(normalize("-a.b"), Err(AddressError::Host(_))));
        assert!(matches!(normalize("a..b"), Err(AddressError::Host(_))));
    }

    #[test]
    fn external_address_rule() {
        let ext = |p: Option<&str>, h: Option<&str>| external_address(p, h, "corp.example");
        assert_eq!(
            ext(Some("V1.B.example.org:11700"), Some("x.org")).as_deref(),
            Ok("v1.b.example.org:11700")
        );
        assert_eq!(
            ext(None, Some("v1.b.example.org")).as_deref(),
            Ok("v1.b.example.org:11625")
        );
        assert_eq!(
            ext(None, Some("203.0.113.7")).as_deref(),
            Ok("203.0.113.7:11625")
        );
        assert_eq!(ext(None, None), Err(RemoteAddressError::None));
        // An unusable annotation falls back to the hostname, and fails only without one.
        assert_eq!(
            ext(Some("a b"), Some("v1.b.example.org")).as_deref(),
            Ok("v1.b.example.org:11625")
        );
        assert!(matches!(
            ext(Some("a b"), None),
            Err(RemoteAddressError::Invalid(_))
        ));
        for in_cluster in [
            "v1-0.v1-headless.ns.svc.cluster.local",
            "v1.ns.svc.cluster.local.:11625",
            "v1.ns.svc.corp.example",
            "v1-headless",
        ] {
            assert!(
                matches!(
                    ext(Some(in_cluster), None),
                    Err(RemoteAddressError::InCluster(_))
                ),
                "{in_cluster}"
            );
            assert!(matches!(
                ext(None, Some(in_cluster)),
                Err(RemoteAddressError::InCluster(_))
            ));
        }
        // Every refusal says what to set.
        for e in [
            ext(None, None),
            ext(Some("v1-headless"), None),
            ext(Some(":x"), None),
        ] {
            let msg = e.expect_err("refused").to_string();
            assert!(msg.contains("set"), "{msg}");
        }
    }

    #[test]
    fn pod_address_shape() {
        assert_eq!(
            pod_address("v1", "ns", "cluster.local"),
            "v1-0.v1-headless.ns.svc.cluster.local:11625"
        );
        assert_eq!(
            normalize(&pod_address(
                "validator-a",
                "stellar-testnet",
                "corp.example"
            ))
            .as_deref(),
            Ok("validator-a-0.validator-a-headless.stellar-testnet.svc.corp.example:11625")
        );
    }
}
