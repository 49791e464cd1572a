//! Start-up and shutdown of a coordinator: load the PKI and the store, bind the
//! three listeners, serve until told to stop, then drain with a deadline. Used
//! by the `mf-coordinator` binary and by `mfctl demo`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mf_proto::v1::admin_service_server::AdminServiceServer;
use mf_proto::v1::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::config::CoordinatorConfig;
use crate::inventory::{Inventory, InventoryError};
use crate::metrics::{self, Metrics};
use crate::revocation::Revocations;
use crate::server_cert::ServerCertificate;
use crate::service::admin::AdminApi;
use crate::service::agent::{AgentApi, AgentSettings, Signing};
use crate::service::enroll_limit::EnrollLimiter;
use crate::storage_health::StorageHealth;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsSetupError};
use mf_pki::{CertificateAuthority, PkiError, PkiPaths};

/// Largest message a peer may send us.
pub const MAX_INBOUND_BYTES: usize = 1024 * 1024;
/// Largest message we send (a host with all its facts is far smaller).
pub const MAX_OUTBOUND_BYTES: usize = 4 * 1024 * 1024;
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a REST connection may stay open without a client certificate.
const API_CONNECTION_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load the PKI from {dir}: {source}")]
    Pki {
        dir: String,
        #[source]
        source: PkiError,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("{0}{hint}", hint = restore_hint(.0))]
    Store(#[from] StoreError),
    #[error("{0}{hint}", hint = match .0 { InventoryError::Store(e) => restore_hint(e), _ => "" })]
    Inventory(#[from] InventoryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot set up gRPC reflection: {0}")]
    Reflection(String),
    #[error("the coordinator's server certificate: {0}")]
    ServerCertificate(String),
    #[error("the REST API: {0}")]
    Api(String),
}

/// What to do about a store that cannot be used: anything but a lock
/// (another coordinator) is damage that a restore repairs.
fn restore_hint(error: &StoreError) -> &'static str {
    match error {
        StoreError::Locked(_) => "",
        _ => {
            "; if the data directory is damaged, move it aside and restore the latest backup \
             into a new one (mf-coordinator restore --data-dir DIR FILE; README, \"Backup and \
             restore\")"
        }
    }
}

/// A running coordinator.
#[derive(Debug)]
pub struct Coordinator {
    pub agent_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The REST API's, when it is on.
    pub api_addr: Option<SocketAddr>,
    pub metrics: Metrics,
    shutdown: CancellationToken,
    servers: JoinSet<Result<(), String>>,
    inventory: tokio::task::JoinHandle<()>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

pub async fn start(config: &CoordinatorConfig) -> Result<Coordinator, StartError> {
    let paths = PkiPaths::new(&config.pki_dir);
    let pki_error = |source: PkiError| StartError::Pki {
        dir: config.pki_dir.display().to_string(),
        source,
    };
    let ca_pem = paths.load_ca().map_err(|e| pki_error(e.into()))?;
    let server_pem = paths.load_server().map_err(|e| pki_error(e.into()))?;
    let ca = Arc::new(CertificateAuthority::load(&ca_pem).map_err(pki_error)?);
    let signer = Arc::new(paths.load_or_create_command_key().map_err(pki_error)?);
    // One deny-list for both listeners, filled by the inventory task.
    let revocations = Revocations::default();

    let store = Store::open(&config.data_dir)?;
    let metrics = Metrics::new()?;
    if let Some(not_after) = not_after_unix_seconds(&ca_pem.cert) {
        metrics
            .certificate_expiry
            .with_label_values(&["ca"])
            .set(not_after as f64);
    }
    let shutdown = CancellationToken::new();
    // The server certificate renews itself when due, now and later.
    let listeners = ServerCertificate {
        paths: paths.clone(),
        ca: Arc::clone(&ca),
        ca_pem: ca_pem.cert.clone(),
        revocations: revocations.clone(),
        renew_before: config.server_cert_renew_before,
        metrics: metrics.clone(),
    }
    .start(server_pem, shutdown.clone())
    .map_err(StartError::ServerCertificate)?;
    let clock = crate::clock::system();
    // Whether the store takes writes: the inventory finds out, the health
    // answers and the admin API's refusals say so.
    let storage = StorageHealth::default();
    // What the webhook delivery watches: the newest event and the webhooks.
    let outbox = crate::inventory::OutboxSignals::default();
    let settings = crate::inventory::Settings {
        reboot_timeout: config.reboot_timeout,
        clock: clock.clone(),
        revocations,
        max_clock_skew: config.max_clock_skew,
        blast_radius: config.blast_radius,
        storage: storage.clone(),
        rebuild: config.rebuild.clone(),
        outbox: outbox.clone(),
    };
    let (inventory, inventory_task) = Inventory::start(store, metrics.clone(), settings)?;

    let agent_listener = bind(config.agent_listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let metrics_listener = bind(config.metrics_listen).await?;
    let local = |l: &TcpListener, addr| {
        l.local_addr()
            .map_err(|source| StartError::Bind { addr, source })
    };
    let agent_addr = local(&agent_listener, config.agent_listen)?;
    let admin_addr = local(&admin_listener, config.admin_listen)?;
    let metrics_addr = local(&metrics_listener, config.metrics_listen)?;

    let agent_api = AgentApi::new(
        inventory.clone(),
        Signing {
            ca: Arc::clone(&ca),
            commands: signer,
        },
        metrics.clone(),
        AgentSettings {
            heartbeat_interval: config.heartbeat_interval,
            cert_lifetime: config.agent_cert_lifetime,
            messages_per_minute: config.agent_messages_per_minute,
            stall_timeout: config.agent_stall_timeout,
        },
        EnrollLimiter::new(config.enroll_limits, clock),
        storage.clone(),
        shutdown.clone(),
    );
    let delivery_inventory = inventory.clone();
    let admin_api = AdminApi::new(
        inventory,
        metrics.clone(),
        Arc::clone(&ca),
        config.token_policy,
        config.operator_cert_lifetime,
        storage.clone(),
    );
    // The REST API is an adapter over the same admin API.
    let api_admin = admin_api.clone();

    // The standard gRPC health service on both listeners (a load balancer or
    // a probe asks it; on the agent listener it needs no certificate, like
    // enrollment), and server reflection on the admin listener, for operators'
    // tools (grpcurl).
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServiceServer<AgentApi>>().await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    // A store that takes no writes makes both services, and the server as a
    // whole, NOT_SERVING until it does again.
    let (reporter, mut store_state) = (health.clone(), storage.subscribe());
    tokio::spawn(async move {
        while store_state.changed().await.is_ok() {
            let status = if store_state.borrow_and_update().is_some() {
                tonic_health::ServingStatus::NotServing
            } else {
                tonic_health::ServingStatus::Serving
            };
            reporter
                .set_service_status(
                    <AgentServiceServer<AgentApi> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
            reporter
                .set_service_status(
                    <AdminServiceServer<AdminApi> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
            reporter.set_service_status("", status).await;
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mf_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;

    let mut servers = JoinSet::new();
    let agent_incoming = tls::incoming(
        agent_listener,
        listeners.agent,
        "agent",
        config.listener_limits,
        metrics.clone(),
        shutdown.clone(),
    );
    let stop = shutdown.clone();
    let agent_health = health_service.clone();
    // On the admin listener, every service is the operators' alone.
    let auth_metrics = metrics.clone();
    let operators_only = move |request: tonic::Request<()>| {
        crate::service::auth::operator(&request, &auth_metrics).map(|_| request)
    };
    servers.spawn(async move {
        base_server()
            .max_concurrent_streams(Some(8))
            .add_service(agent_health)
            .add_service(
                AgentServiceServer::new(agent_api)
                    .max_decoding_message_size(MAX_INBOUND_BYTES)
                    .max_encoding_message_size(MAX_OUTBOUND_BYTES),
            )
            .serve_with_incoming_shutdown(agent_incoming, stop.cancelled_owned())
            .await
            .map_err(|e| format!("agent listener: {e}"))
    });
    let admin_incoming = tls::incoming(
        admin_listener,
        listeners.admin,
        "admin",
        config.listener_limits,
        metrics.clone(),
        shutdown.clone(),
    );
    let stop = shutdown.clone();
    servers.spawn(async move {
        base_server()
            .add_service(InterceptedService::new(
                health_service,
                operators_only.clone(),
            ))
            .add_service(InterceptedService::new(reflection, operators_only))
            .add_service(
                AdminServiceServer::new(admin_api)
                    .max_decoding_message_size(MAX_INBOUND_BYTES)
                    .max_encoding_message_size(MAX_OUTBOUND_BYTES),
            )
            .serve_with_incoming_shutdown(admin_incoming, stop.cancelled_owned())
            .await
            .map_err(|e| format!("admin listener: {e}"))
    });
    let api_addr = match config.api_listen {
        None => None,
        Some(addr) => {
            let listener = bind(addr).await?;
            let local = local(&listener, addr)?;
            let oidc = config
                .oidc
                .as_ref()
                .map(crate::api::oidc::Oidc::load)
                .transpose()
                .map_err(|e| StartError::Api(e.to_string()))?;
            // Keys from a URL are fetched now, in the background: the SSO
            // being down delays tokens, not the coordinator.
            if let Some(oidc) = oidc.clone() {
                tokio::spawn(async move {
                    if let Err(e) = oidc.refresh().await {
                        warn!(error = %e, "cannot read the OIDC provider's keys yet");
                    }
                });
            }
            let state = crate::api::ApiState {
                admin: api_admin,
                oidc,
                policy: Arc::new(config.self_service.clone()),
                metrics: metrics.clone(),
                budget: Arc::new(crate::api::budget::ReadBudget::new(
                    config.api_reads_per_second,
                )),
            };
            // Portals keep connections open between calls on a token alone.
            let limits = tls::ListenerLimits {
                deadlines: crate::deadline::ConnectionDeadlines {
                    unauthenticated: API_CONNECTION_LIFETIME,
                    ..config.listener_limits.deadlines
                },
                ..config.listener_limits
            };
            let incoming = tls::incoming(
                listener,
                listeners.api,
                "api",
                limits,
                metrics.clone(),
                shutdown.clone(),
            );
            let stop = shutdown.clone();
            servers.spawn(async move {
                crate::api::serve(incoming, local, state, stop)
                    .await
                    .map_err(|e| format!("api listener: {e}"))
            });
            Some(local)
        }
    };
    // Webhook delivery: it holds an inventory handle until shutdown.
    let delivery = crate::webhooks::delivery::run(
        delivery_inventory,
        outbox,
        metrics.clone(),
        config.webhook_delivery,
        shutdown.clone(),
    );
    servers.spawn(async move {
        delivery.await;
        Ok(())
    });
    let (stop, exported, health_storage) = (shutdown.clone(), metrics.clone(), storage.clone());
    servers.spawn(async move {
        metrics::serve(metrics_listener, exported, health_storage, stop)
            .await
            .map_err(|e| format!("metrics listener: {e}"))
    });
    info!(
        version = env!("CARGO_PKG_VERSION"),
        %agent_addr, %admin_addr, %metrics_addr,
        api_addr = %api_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        data_dir = %config.data_dir.display(),
        "mf-coordinator serving"
    );
    Ok(Coordinator {
        agent_addr,
        admin_addr,
        metrics_addr,
        api_addr,
        metrics,
        shutdown,
        servers,
        inventory: inventory_task,
    })
}

/// When a PEM certificate expires, in unix seconds.
fn not_after_unix_seconds(pem: &str) -> Option<i64> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = parsed.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Keepalives find dead peers; the handshake deadline is in [`tls`].
fn base_server() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .http2_max_header_list_size(Some(16 * 1024))
        .concurrency_limit_per_connection(64)
}

impl Coordinator {
    /// Serves until `signal` resolves or a listener fails, then stops.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let mut inventory_ended = false;
        let failure = tokio::select! {
            () = signal => None,
            stopped = &mut self.inventory => {
                inventory_ended = true;
                Some(match stopped {
                    // It stops by itself only when it cannot open its store again.
                    Ok(()) => "the inventory stopped: its store could not be opened again after a \
                               storage failure (see the log); start the coordinator again"
                        .to_string(),
                    Err(e) => format!("the inventory failed: {e}"),
                })
            }
            Some(joined) = self.servers.join_next() => Some(match joined {
                Ok(Ok(())) => "a listener stopped unexpectedly".to_string(),
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            }),
        };
        self.stop_and_wait(!inventory_ended).await;
        failure.map_or(Ok(()), Err)
    }

    /// Stops accepting, ends sessions, drains within a deadline, and lets the
    /// inventory write what it holds.
    pub async fn stop(self) {
        self.stop_and_wait(true).await;
    }

    async fn stop_and_wait(mut self, inventory_running: bool) {
        info!("mf-coordinator stopping");
        self.shutdown.cancel();
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            while self.servers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("listeners did not drain in time; closing them");
            self.servers.abort_all();
        }
        // The services held the last inventory handles; its task now ends.
        if inventory_running
            && tokio::time::timeout(DRAIN_DEADLINE, &mut self.inventory)
                .await
                .is_err()
        {
            warn!("the inventory did not stop in time");
            self.inventory.abort();
        }
        info!("mf-coordinator stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_store_points_to_the_restore_and_a_locked_one_does_not() {
        let damaged = StartError::Store(StoreError::Schema {
            dir: "/var/lib/mf-coordinator".into(),
            found: "9".into(),
        });
        let text = damaged.to_string();
        assert!(text.contains("schema 9"), "{text}");
        assert!(text.contains("mf-coordinator restore --data-dir"), "{text}");
        let locked = StartError::Store(StoreError::Locked("/var/lib/mf".into()));
        assert!(!locked.to_string().contains("restore"), "{locked}");
    }
}
