//! TLS for the two gRPC listeners, driven with tokio-rustls rather than tonic's
//! built-in TLS so that handshakes have a deadline and every refusal is counted
//! by reason. TLS 1.3 only: both ends are ours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::deadline::{ConnectionDeadlines, Deadlined};
use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::source::Source;
use mf_pki::Pem;

/// A peer that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection waiting longer than this for a handshake slot is dropped.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let provider = Arc::new(preferring_sha256(rustls::crypto::ring::default_provider()));
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
    // Our order, not the client's: see `preferring_sha256`.
    config.ignore_client_order = true;
    // No resumption: a resumed session skips the client verifier, and with
    // it the deny-list; every connection shows its certificate again.
    // (rustls keeps 256 sessions to resume by default.)
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The provider with TLS_AES_128_GCM_SHA256 first. The certificates and
/// key exchange (P-256, X25519) are at the 128-bit level, so AES-256 and
/// SHA-384 (rustls's first choice) add no strength, while SHA-384 has no
/// hardware instructions on x86 and was the largest cost of a handshake
/// after the curve arithmetic when the whole fleet reconnects at once.
fn preferring_sha256(
    mut provider: rustls::crypto::CryptoProvider,
) -> rustls::crypto::CryptoProvider {
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// What one listener lets a peer hold before its connection is useful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Handshakes in progress at once on the listener.
    pub handshakes: usize,
    /// Of those, from one source (an address; an IPv6 /64).
    pub handshakes_per_source: usize,
    pub deadlines: ConnectionDeadlines,
}

impl Default for ListenerLimits {
    /// 512 handshakes keep both cores busy; 128 from one source leave the
    /// other 384 to everyone else when one address floods, and are plenty
    /// for a fleet behind one NAT address (a handshake takes about a
    /// millisecond of CPU).
    fn default() -> Self {
        Self {
            handshakes: 512,
            handshakes_per_source: 128,
            deadlines: ConnectionDeadlines::default(),
        }
    }
}

/// A connection that completed its handshake, with its deadlines.
pub type Connection = Deadlined<TlsStream<TcpStream>>;

/// Accepts TCP connections and runs their handshakes concurrently, within
/// the listener's limits and deadlines, yielding only the connections that
/// completed one. A connection first waits for a handshake slot of its
/// source, then for one of the listener (at most [`QUEUE_TIMEOUT`] in all),
/// then has [`HANDSHAKE_TIMEOUT`] to finish.
pub fn incoming(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<ServerConfig>>,
    name: &'static str,
    limits: ListenerLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Connection, std::io::Error>> {
    let (tx, rx) = mpsc::channel(limits.handshakes);
    let permits = Arc::new(Semaphore::new(limits.handshakes));
    let sources = SourcePermits::new(limits.handshakes_per_source);
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
            // The configuration of the moment: a renewed certificate serves
            // new connections, open ones keep theirs.
            let acceptor = TlsAcceptor::from(Arc::clone(&config.borrow()));
            let (tx, metrics) = (tx.clone(), metrics.clone());
            let (permits, sources) = (Arc::clone(&permits), sources.clone());
            tokio::spawn(async move {
                let queued = async {
                    let mine = sources.acquire(Source::of(Some(peer.ip()))).await;
                    let listener_slot = permits.acquire_owned().await.ok()?;
                    Some((mine, listener_slot))
                };
                let Ok(Some(_slots)) = tokio::time::timeout(QUEUE_TIMEOUT, queued).await else {
                    debug!(listener = name, %peer, "no handshake slot in time");
                    metrics.refused(name, "busy");
                    return;
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let authenticated = stream.get_ref().1.peer_certificates().is_some();
                        let stream = Deadlined::new(stream, authenticated, limits.deadlines);
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

/// Handshake slots per source, each source's semaphore kept only while
/// someone holds or waits for one of its slots.
#[derive(Debug, Clone)]
struct SourcePermits {
    per_source: usize,
    sources: Arc<Mutex<HashMap<Source, Arc<Semaphore>>>>,
}

/// A source's handshake slot; the last one out forgets the source.
struct SourcePermit {
    permit: Option<OwnedSemaphorePermit>,
    source: Source,
    owner: SourcePermits,
}

impl SourcePermits {
    fn new(per_source: usize) -> Self {
        Self {
            per_source,
            sources: Arc::default(),
        }
    }

    async fn acquire(&self, source: Source) -> SourcePermit {
        let semaphore = {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                sources
                    .entry(source)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_source))),
            )
        };
        // The semaphore is never closed.
        let permit = semaphore.acquire_owned().await.ok();
        SourcePermit {
            permit,
            source,
            owner: self.clone(),
        }
    }
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut sources = self.owner.sources.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map holds it: nobody waits for or holds one of its slots.
        if sources
            .get(&self.source)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            sources.remove(&self.source);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mf_pki::CertificateAuthority;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConnection};

    /// A server configuration for the agent listener and a client holding
    /// an operator's certificate, with rustls's own cipher suite order (as
    /// tonic's client uses it: AES-256 first).
    fn pair() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let (ca, _) = CertificateAuthority::generate().expect("a CA");
        let server = ca
            .issue_server(&["localhost".into()])
            .expect("a server certificate");
        let operator = ca.issue_operator("alice").expect("an operator certificate");
        let config = server_config(
            ca.cert_pem(),
            &server,
            ClientAuth::Required,
            Revocations::default(),
        )
        .expect("the server configuration");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
            roots.add(cert.expect("the CA in PEM")).expect("a root");
        }
        let client_chain = CertificateDer::pem_slice_iter(operator.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the operator certificate in PEM");
        let client_key =
            PrivateKeyDer::from_pem_slice(operator.key.as_bytes()).expect("the operator key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        assert_eq!(
            provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(client_chain, client_key)
            .expect("the client configuration");
        (config, Arc::new(client))
    }

    /// One handshake in memory, and a little data each way after it (a
    /// TLS 1.3 server sends its session tickets then).
    fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> ServerConnection {
        let mut client = ClientConnection::new(
            Arc::clone(client),
            ServerName::try_from("localhost").expect("a name"),
        )
        .expect("a client connection");
        let mut server = ServerConnection::new(Arc::clone(server)).expect("a server connection");
        std::io::Write::write_all(&mut client.writer(), b"ping").expect("buffered");
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("to memory");
            }
            server.read_tls(&mut wire.as_slice()).expect("from memory");
            server.process_new_packets().expect("the client's messages");
            if !server.is_handshaking() {
                std::io::Write::write_all(&mut server.writer(), b"pong").expect("buffered");
            }
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).expect("to memory");
            }
            client.read_tls(&mut wire.as_slice()).expect("from memory");
            client.process_new_packets().expect("the server's messages");
        }
        assert!(!server.is_handshaking(), "the handshake did not finish");
        server
    }

    #[test]
    fn a_client_preferring_aes_256_gets_aes_128_with_sha256() {
        let (server, client) = pair();
        let connection = handshake(&server, &client);
        assert_eq!(
            connection.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }

    #[test]
    fn every_connection_is_a_full_handshake_with_its_certificate_checked() {
        let (server, client) = pair();
        let first = handshake(&server, &client);
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
        // The same client again, with whatever the first connection left
        // it: no resumption, which would skip the revocation check.
        let second = handshake(&server, &client);
        assert_eq!(second.handshake_kind(), Some(HandshakeKind::Full));
    }
}
