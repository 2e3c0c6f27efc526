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

use crate::error::Error;
use crate::metrics::{Metrics, ResultLabels};

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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and parses a PEM certificate chain and private key.
pub fn load_certified_key(
    cert: &[u8],
    key: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, Error> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert[..])
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Error::Tls(format!(
                "{}: not a PEM certificate chain: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate found; expected a PEM CERTIFICATE block",
            cert_path.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut &key[..])
        .map_err(|_| Error::Tls(format!("{}: not a PEM private key", key_path.display())))?
        .ok_or_else(|| {
            Error::Tls(format!(
                "{}: no private key found; expected a PEM PRIVATE KEY block",
                key_path.display()
            ))
        })?;
    let signing = provider().key_provider.load_private_key(key).map_err(|_| {
        Error::Tls(format!(
            "{}: unsupported private key type; use ECDSA P-256/P-384, Ed25519 or RSA",
            key_path.display()
        ))
    })?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|_| {
        Error::Tls(format!(
            "{} and {} do not belong together: the key does not match the certificate",
            cert_path.display(),
            key_path.display()
        ))
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
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, Error> {
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

    /// A rustls server configuration using the reloading resolver: TLS 1.2 and 1.3,
    /// ring's modern cipher suites (AEAD only), HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls(e.to_string()))?
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
                tracing::warn!(error = %e, "cannot read TLS files; still serving the previous certificate");
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                return false;
            }
        };
        if (&c, &k) == (&self.last.0, &self.last.1) {
            return false;
        }
        match load_certified_key(&c, &k, &self.cert_path, &self.key_path) {
            Ok(ck) => {
                self.resolver.current.store(Arc::new(ck));
                self.last = (c, k);
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Mid-rotation the two files may briefly not match; the next poll retries.
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                tracing::warn!(error = %e, "new TLS files not usable yet; still serving the previous certificate");
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

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let c = std::fs::read(cert)
        .map_err(|e| Error::Tls(format!("cannot read --tls-cert {}: {e}", cert.display())))?;
    let k = std::fs::read(key)
        .map_err(|e| Error::Tls(format!("cannot read --tls-key {}: {e}", key.display())))?;
    Ok((c, k))
}
