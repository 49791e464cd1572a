//! A real HTTPS client for the REST API (hyper over rustls, trusting only
//! the deployment's CA), as a portal would call it: a bearer token or an
//! operator certificate, JSON in, status, headers and JSON out.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    Bearer(String),
    /// The operator certificate and key files of a PKI directory.
    Certificate {
        cert: String,
        key: String,
    },
}

/// An answer: status, headers (lower-case names), the body as JSON (or
/// `Value::String` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    port: u16,
    ca: String,
}

impl ApiClient {
    /// A client of the API on `port`, trusting the CA of `pki`.
    pub fn new(port: u16, pki: &Path) -> Result<Self> {
        Ok(Self {
            port,
            ca: std::fs::read_to_string(pki.join("ca.pem")).context("ca.pem")?,
        })
    }

    fn tls(&self, credentials: &Credentials) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(cert?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match credentials {
            Credentials::Certificate { cert, key } => builder.with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_slice(key.as_bytes())?,
            )?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// One request on a new connection (blocking; a runtime of its own).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        credentials: &Credentials,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.send(method, path, credentials, headers, body))
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        credentials: &Credentials,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Answer> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.tls(credentials)?));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let tls = connector
            .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
            .await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Credentials::Bearer(token) = credentials {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default().to_vec())))?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            sender.send_request(request),
        )
        .await
        .context("no answer within 30 s")??;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let bytes = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub fn get(&self, path: &str, credentials: &Credentials) -> Result<Answer> {
        self.call("GET", path, credentials, &[], None)
    }

    pub fn post(&self, path: &str, credentials: &Credentials, body: &Value) -> Result<Answer> {
        self.call(
            "POST",
            path,
            credentials,
            &[],
            Some(body.to_string().as_bytes()),
        )
    }
}
