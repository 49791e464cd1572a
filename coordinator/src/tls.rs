//! TLS for the two gRPC listeners, driven with tokio-rustls rather than tonic's
//! built-in TLS so that handshakes have a deadline and every refusal is counted
//! by reason. TLS 1.3 only: both ends are ours.

use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::revocation::Revocations;
use mf_pki::Pem;

/// A peer that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener; the rest wait in the backlog.
const CONCURRENT_HANDSHAKES: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot parse {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Whether a listener lets clients without a certificate in (to enroll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// The CA's checks, then the deny-list: a revoked certificate is refused at
/// the handshake (counted as `revoked_certificate`).
#[derive(Debug)]
struct RevocationVerifier {
    ca: Arc<dyn ClientCertVerifier>,
    revoked: Revocations,
}

impl ClientCertVerifier for RevocationVerifier {
    fn offer_client_auth(&self) -> bool {
        self.ca.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.ca.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.ca.verify_client_cert(end_entity, intermediates, now)?;
        let serial = mf_pki::serial_hex(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self.revoked.contains(&serial) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}

pub fn server_config(
    ca_pem: &str,
    server: &Pem,
    auth: ClientAuth,
    revoked: Revocations,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsSetupError::Pem {
            what: "the CA certificate",
            reason: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    let ca = match auth {
        ClientAuth::Required => verifier.build()?,
        ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
    };
    let verifier = Arc::new(RevocationVerifier { ca, revoked });
    let chain = CertificateDer::pem_slice_iter(server.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            what: "the server certificate",
            reason: e.to_string(),
        })?;
    let key =
        PrivateKeyDer::from_pem_slice(server.key.as_bytes()).map_err(|e| TlsSetupError::Pem {
            what: "the server key",
            reason: e.to_string(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections, runs handshakes concurrently (bounded, with a
/// deadline) and yields only the connections that completed one.
pub fn incoming(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<ServerConfig>>,
    name: &'static str,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(CONCURRENT_HANDSHAKES);
    // The configuration of the moment: a renewed certificate serves new
    // connections, open ones keep theirs.
    let permits = Arc::new(Semaphore::new(CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let acceptor = TlsAcceptor::from(Arc::clone(&config.borrow()));
            let (tx, metrics) = (tx.clone(), metrics.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        let reason = refusal_reason(&e);
                        debug!(listener = name, %peer, reason, error = %e, "TLS handshake refused");
                        metrics.refused(name, reason);
                    }
                    Err(_) => {
                        debug!(listener = name, %peer, "TLS handshake timed out");
                        metrics.refused(name, "timeout");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Names why a handshake failed, for the refusal metric.
fn refusal_reason(error: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return "io";
    };
    match tls {
        Error::NoCertificatesPresented => "no_certificate",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_ca",
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired_certificate",
        Error::InvalidCertificate(CertificateError::Revoked) => "revoked_certificate",
        Error::InvalidCertificate(_) => "bad_certificate",
        Error::AlertReceived(_) => "client_alert",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "incompatible",
        _ => "protocol",
    }
}
