//! TLS with certificates reloaded from disk when the files change.
//!
//! The resolver hands every new handshake the current certificate; a background task
//! re-reads the files every few seconds and swaps in a new one when their content
//! changed and parses. Established connections are not touched. A bad new file
//! keeps the old certificate and is logged (never its content).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::{Metrics, ReloadResult};

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate chain: {source}", path.display())]
    NotPemCertificates {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no certificate found; expected a PEM CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a PEM private key", path.display())]
    NotPemKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no private key found; expected a PEM PRIVATE KEY block", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error(
        "{}: unsupported private key type; use ECDSA P-256/P-384, Ed25519 or RSA",
        path.display()
    )]
    KeyType {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "{} and {} do not belong together: the key does not match the certificate",
        cert.display(),
        key.display()
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{0}")]
    Config(#[source] rustls::Error),
}

/// The current certificate, swapped atomically.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingCert {
    /// Serves the certificate to clients that send no SNI (an IP URL, as the test bed
    /// and URL mode use) or an SNI the certificate is valid for; refuses any other
    /// name, so a misrouted client fails the handshake instead of a name check later.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let ck = self.current.load_full();
        match hello.server_name() {
            None => Some(ck),
            Some(name) if valid_for(&ck, name) => Some(ck),
            Some(name) => {
                tracing::debug!(
                    sni = name,
                    "TLS client asked for a name the certificate does not cover"
                );
                None
            }
        }
    }
}

/// Whether the leaf certificate is valid for DNS name `name`.
pub fn valid_for(ck: &CertifiedKey, name: &str) -> bool {
    let Some(leaf) = ck.cert.first() else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(server_name) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&server_name).is_ok()
}

/// The leaf certificate's notAfter, in unix seconds; `None` when it cannot be parsed
/// (rustls accepted it, so that does not happen for a certificate being served).
pub fn not_after(ck: &CertifiedKey) -> Option<i64> {
    let leaf = ck.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and parses a PEM certificate chain and private key.
pub fn load_certified_key(
    cert: &[u8],
    key: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert[..])
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::NotPemCertificates {
            path: cert_path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = rustls_pemfile::private_key(&mut &key[..])
        .map_err(|source| TlsError::NotPemKey {
            path: key_path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: key_path.to_owned(),
        })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::KeyType {
            path: key_path.to_owned(),
            source,
        })?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|source| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })?;
    Ok(ck)
}

/// Watches the certificate and key files.
pub struct CertWatcher {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<ReloadingCert>,
    last: (Vec<u8>, Vec<u8>),
}

impl CertWatcher {
    /// Loads the files once; fails when they cannot be used.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let (c, k) = read_pair(cert_path, key_path)?;
        let ck = load_certified_key(&c, &k, cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            resolver: Arc::new(ReloadingCert {
                current: ArcSwap::from_pointee(ck),
            }),
            last: (c, k),
        })
    }

    /// Sets the expiry gauge from the certificate served now (after [`Self::load`]).
    pub fn observe(&self, metrics: &Metrics) {
        metrics.tls_expiry(not_after(&self.resolver.current.load()));
    }

    /// A rustls server configuration using the reloading resolver: TLS 1.2 and 1.3,
    /// ring's modern cipher suites (AEAD only), HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Re-reads the files; returns whether a new certificate is now served.
    pub fn poll(&mut self, metrics: &Metrics) -> bool {
        let (c, k) = match read_pair(&self.cert_path, &self.key_path) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %crate::causes::Chain(&e), "cannot read TLS files; still serving the previous certificate");
                metrics.tls_reload(ReloadResult::Error);
                return false;
            }
        };
        if (&c, &k) == (&self.last.0, &self.last.1) {
            return false;
        }
        match load_certified_key(&c, &k, &self.cert_path, &self.key_path) {
            Ok(ck) => {
                metrics.tls_expiry(not_after(&ck));
                self.resolver.current.store(Arc::new(ck));
                self.last = (c, k);
                metrics.tls_reload(ReloadResult::Success);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Mid-rotation the two files may briefly not match; the next poll retries.
                metrics.tls_reload(ReloadResult::Error);
                tracing::warn!(error = %crate::causes::Chain(&e), "new TLS files not usable yet; still serving the previous certificate");
                false
            }
        }
    }

    /// Polls forever.
    pub async fn run(mut self, every: Duration, metrics: Arc<Metrics>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.poll(&metrics);
        }
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |flag, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            flag,
            path: path.to_owned(),
            source,
        })
    };
    Ok((read("--tls-cert", cert)?, read("--tls-key", key)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and key (PEM) valid until `until`.
    fn pem_pair(until: (i32, u8, u8)) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let cert = p.self_signed(&key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn expiry_gauge_follows_the_served_certificate() {
        let dir = std::env::temp_dir().join(format!("spi-tls-expiry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        let write = |(cert, key): (String, String)| {
            std::fs::write(&c, cert).expect("cert");
            std::fs::write(&k, key).expect("key");
        };
        let expiry = |m: &Metrics| m.tls_expiry.get();

        // 2031-05-06T00:00:00Z and 2032-02-29T00:00:00Z (`date -u -d ... +%s`).
        write(pem_pair((2031, 5, 6)));
        let metrics = Metrics::new();
        let mut w = CertWatcher::load(&c, &k).expect("load");
        assert_eq!(expiry(&metrics), 0, "not set before observe");
        w.observe(&metrics);
        assert_eq!(expiry(&metrics), 1_935_792_000);

        write(pem_pair((2032, 2, 29)));
        assert!(w.poll(&metrics), "new pair served");
        assert_eq!(expiry(&metrics), 1_961_625_600);

        // A bad new file keeps the old certificate, and so the old expiry.
        std::fs::write(&c, "junk").expect("junk");
        assert!(!w.poll(&metrics));
        assert_eq!(expiry(&metrics), 1_961_625_600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dev_certificates_report_their_not_after() {
        let dir = std::env::temp_dir().join(format!("spi-tls-dev-{}", std::process::id()));
        crate::certs::generate(&dir, &["localhost".into()], &[]).expect("generate");
        let read = |n| std::fs::read(dir.join(n)).expect("read");
        let ck = load_certified_key(
            &read(crate::certs::TLS_CERT),
            &read(crate::certs::TLS_KEY),
            Path::new("tls.crt"),
            Path::new("tls.key"),
        )
        .expect("loads");
        // rcgen's default validity ends 4096-01-01T00:00:00Z.
        assert_eq!(not_after(&ck), Some(67_090_118_400));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
