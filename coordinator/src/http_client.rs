//! The coordinator's own outbound HTTP: a POST to a webhook, a GET of the
//! OIDC provider's keys. HTTP/1.1 over TCP, or over TLS verified against the
//! system's CA bundle (the receivers and the SSO are the site's own services,
//! whose certificates the hosts' trust store already carries).

use std::sync::Arc;
use std::time::Duration;

use axum::http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// Where EL and Debian keep the system's trusted CAs.
const CA_BUNDLES: [&str; 2] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];
/// Nothing back after this: the attempt failed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The system's CAs, read once per delivery worker.
pub fn system_roots() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for bundle in CA_BUNDLES {
        if let Ok(pem) = std::fs::read(bundle) {
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    Arc::new(config)
}

/// An answer: its status and at most `MAX_BODY` bytes of its body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The most of an answer's body we read.
const MAX_BODY: usize = 1024 * 1024;

async fn exchange<T>(io: T, request: hyper::Request<Full<Bytes>>) -> Result<Answer, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(Answer { status, body })
}

/// POSTs `body` to `url` with `headers`; the answer's status, or why there
/// was none.
pub async fn post(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<u16, String> {
    send(tls, "POST", url, headers, body)
        .await
        .map(|a| a.status)
}

/// GETs `url`: the answer, or why there was none.
pub async fn get(tls: &Arc<rustls::ClientConfig>, url: &str) -> Result<Answer, String> {
    send(tls, "GET", url, &[], Vec::new()).await
}

async fn send(
    tls: &Arc<rustls::ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or("no host")?.to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), ToString::to_string);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(
            "host",
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(
            "user-agent",
            concat!("mf-coordinator/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if https {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| format!("{host}: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            exchange(stream, request).await
        } else {
            exchange(tcp, request).await
        }
    };
    tokio::time::timeout(TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
}
