//! Development certificates: a CA and a serving certificate (rcgen, ECDSA P-256).

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::Error;

/// Files written by [`generate`].
pub const CA_CERT: &str = "ca.crt";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `out` for the given DNS names and IPs.
pub fn generate(out: &Path, hosts: &[String], ips: &[IpAddr]) -> Result<(), Error> {
    if hosts.is_empty() && ips.is_empty() {
        return Err(Error::Config(
            "certs: give at least one --host or --ip".to_owned(),
        ));
    }
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::Certs)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "stellar-peer-injector development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(Error::Certs)?;
    let issuer = Issuer::new(ca, &ca_key);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(Error::Certs)?;
    let mut leaf = CertificateParams::new(hosts.to_vec()).map_err(Error::Certs)?;
    leaf.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.distinguished_name.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_else(|| ips[0].to_string()),
    );
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = leaf.signed_by(&key, &issuer).map_err(Error::Certs)?;

    std::fs::create_dir_all(out)?;
    write(out, CA_CERT, ca_cert.pem().as_bytes())?;
    write(out, TLS_CERT, cert.pem().as_bytes())?;
    write(out, TLS_KEY, key.serialize_pem().as_bytes())?;
    Ok(())
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Result<(), Error> {
    // Write then rename, so a server polling the files never reads half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_into_rustls() {
        let dir = std::env::temp_dir().join(format!("spi-certs-{}", std::process::id()));
        generate(
            &dir,
            &["localhost".into()],
            &["127.0.0.1".parse().expect("ip")],
        )
        .expect("generate");
        let c = std::fs::read(dir.join(TLS_CERT)).expect("cert");
        let k = std::fs::read(dir.join(TLS_KEY)).expect("key");
        crate::server::tls::load_certified_key(&c, &k, &dir.join(TLS_CERT), &dir.join(TLS_KEY))
            .expect("loads");
        // A key that does not match is refused with a clear message.
        generate(&dir.join("other"), &["x".into()], &[]).expect("other");
        let k2 = std::fs::read(dir.join("other").join(TLS_KEY)).expect("key2");
        let e = crate::server::tls::load_certified_key(
            &c,
            &k2,
            &dir.join(TLS_CERT),
            &dir.join(TLS_KEY),
        )
        .expect_err("mismatch");
        assert!(e.to_string().contains("do not belong together"), "{e}");
        let e = crate::server::tls::load_certified_key(
            b"junk",
            &k,
            &dir.join(TLS_CERT),
            &dir.join(TLS_KEY),
        )
        .expect_err("junk");
        assert!(e.to_string().contains("no certificate found"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
