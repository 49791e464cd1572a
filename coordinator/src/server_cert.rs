//! The coordinator renews its own server certificate, from its CA, for the
//! same names: at start and every hour it looks, and once less than
//! `renew_before` is left it writes a new key and certificate beside the old
//! (then moves them into place) and hands both listeners a new TLS
//! configuration; connections already open keep theirs.

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::tls::{self, ClientAuth};
use mf_pki::{CertificateAuthority, Pem, PkiPaths};

const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Both listeners' TLS configurations, replaced on renewal.
pub struct Listeners {
    pub agent: watch::Receiver<Arc<ServerConfig>>,
    pub admin: watch::Receiver<Arc<ServerConfig>>,
    /// The REST API's: client certificates optional, HTTP/1.1.
    pub api: watch::Receiver<Arc<ServerConfig>>,
}

pub struct ServerCertificate {
    pub paths: PkiPaths,
    pub ca: Arc<CertificateAuthority>,
    pub ca_pem: String,
    pub revocations: Revocations,
    pub renew_before: Duration,
    pub metrics: Metrics,
}

/// The agent listener's, the admin listener's and the REST API's.
type Configs = (Arc<ServerConfig>, Arc<ServerConfig>, Arc<ServerConfig>);

fn configs(me: &ServerCertificate, server: &Pem) -> Result<Configs, tls::TlsSetupError> {
    let agent = tls::server_config(
        &me.ca_pem,
        server,
        ClientAuth::Optional,
        me.revocations.clone(),
    )?;
    let admin = tls::server_config(
        &me.ca_pem,
        server,
        ClientAuth::Required,
        me.revocations.clone(),
    )?;
    // Portals and curl speak HTTP/1.1; a token stands in for a certificate.
    let mut api = (*agent).clone();
    api.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((agent, admin, Arc::new(api)))
}

impl ServerCertificate {
    fn not_after_unix_s(pem: &str) -> Option<i64> {
        mf_pki::not_after_unix_ms(pem).ok().map(|ms| ms / 1000)
    }

    /// Renews the certificate on disk if it is due; the one to serve.
    fn renewed_if_due(&self, current: Pem) -> Result<Pem, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let left = Self::not_after_unix_s(&current.cert).unwrap_or(0) - now;
        if left > i64::try_from(self.renew_before.as_secs()).unwrap_or(i64::MAX) {
            return Ok(current);
        }
        let new = self
            .ca
            .renew_server(&current.cert)
            .map_err(|e| format!("cannot issue a new server certificate: {e}"))?;
        mf_pki::replace_key_and_cert(
            &self.paths.server_key(),
            &new.key,
            &self.paths.server_cert(),
            &new.cert,
        )
        .map_err(|e| format!("cannot write the new server certificate: {e}"))?;
        info!(
            not_after = Self::not_after_unix_s(&new.cert).unwrap_or_default(),
            "the coordinator's server certificate was renewed"
        );
        Ok(new)
    }

    fn export(&self, pem: &Pem) {
        if let Some(at) = Self::not_after_unix_s(&pem.cert) {
            self.metrics
                .certificate_expiry
                .with_label_values(&["coordinator"])
                .set(at as f64);
        }
    }

    /// Renews now if due, and the listeners' configurations for what to serve.
    pub fn start(self, current: Pem, shutdown: CancellationToken) -> Result<Listeners, String> {
        let current = self.renewed_if_due(current)?;
        self.export(&current);
        let (agent, admin, api) = configs(&self, &current).map_err(|e| e.to_string())?;
        let (agent_tx, agent_rx) = watch::channel(agent);
        let (admin_tx, admin_rx) = watch::channel(admin);
        let (api_tx, api_rx) = watch::channel(api);
        tokio::spawn(async move {
            let mut serving = current;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(CHECK_EVERY) => {}
                }
                let before = serving.cert.clone();
                match self.renewed_if_due(serving.clone()) {
                    Ok(next) if next.cert != before => match configs(&self, &next) {
                        Ok((agent, admin, api)) => {
                            let _ = agent_tx.send(agent);
                            let _ = admin_tx.send(admin);
                            let _ = api_tx.send(api);
                            self.export(&next);
                            serving = next;
                        }
                        Err(e) => error!(error = %e, "cannot serve the renewed certificate"),
                    },
                    Ok(_) => {}
                    Err(e) => error!(error = %e, "cannot renew the server certificate"),
                }
            }
        });
        Ok(Listeners {
            agent: agent_rx,
            admin: admin_rx,
            api: api_rx,
        })
    }
}
