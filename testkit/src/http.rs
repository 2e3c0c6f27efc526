//! Plain HTTP to an injector's admin port, and AdmissionReviews over TLS to its
//! admission port.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::injector::Injector;

/// Status code and body of a raw HTTP/1.x response read to the end.
pub fn split_response(buf: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {text}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Minimal HTTP/1.1 GET over plain TCP (`http://host:port/path`): (status, body).
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    split_response(&buf)
}

/// A TLS connection to an injector's admission port, trusting its CA (no SNI, as for an IP URL).
pub async fn connect_tls(
    inj: &Injector,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let ca = std::fs::read(inj.certs.join("ca.crt")).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", inj.port))
        .await
        .map_err(|e| e.to_string())?;
    let sn = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(sn, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Sends an AdmissionReview straight to an injector over TLS (trusting its CA) and
/// returns the HTTP status and the JSON body (Null when the body is not JSON).
pub async fn admission_request(inj: &Injector, body: &[u8]) -> Result<(u16, Value), String> {
    let mut s = connect_tls(inj).await?;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (code, body) = split_response(&buf)?;
    let body = body.trim().to_owned();
    Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}
