//! The agent's one long-lived stream to the coordinator: hello with facts,
//! heartbeats, facts again when they change; and reconnection with jittered
//! exponential backoff that never gives up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use mf_proto::v1 as pb;
use mf_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::{debug, error, info, warn};

use crate::command::CommandUpdate;
use crate::executor::Executor;
use crate::facts::{self, Facts};
use crate::host::Host;
use crate::identity::Identity;
use crate::journal::SharedJournal;
use crate::renew;
use crate::wire;
use mf_proto::transport::{self, MAX_MESSAGE_BYTES};

/// How the session behaves; the coordinator sets the heartbeat interval.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub labels: BTreeMap<String, String>,
    /// How often facts are collected again (and sent if they changed).
    pub facts_interval: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// The host's configuration for phases (snapshots).
    pub phases: crate::phases::Context,
    /// Where a renewed certificate is saved; `None` keeps it in memory only
    /// (the simulated fleet).
    pub state_dir: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            labels: BTreeMap::new(),
            facts_interval: Duration::from_secs(300),
            max_backoff: Duration::from_secs(60),
            phases: crate::phases::Context::default(),
            state_dir: None,
        }
    }
}

/// A session that stayed up this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(60);
const OUTBOUND_QUEUE: usize = 16;
/// Connecting, saying hello and being welcomed must fit in this.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connect(#[from] transport::ConnectError),
    #[error("cannot connect: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the coordinator ended the session: {0}")]
    Status(String),
    #[error("the coordinator broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("the coordinator closed the session")]
    Closed,
}

/// Updates waiting for a session while none is open.
const UPDATE_QUEUE: usize = 64;

/// Runs until `shutdown` is cancelled, reconnecting after every failure. The
/// executor (and the phase it runs) lives across sessions.
pub async fn run(
    identity: Identity,
    host: Arc<dyn Host>,
    journal: SharedJournal,
    config: SessionConfig,
    shutdown: CancellationToken,
) {
    let (updates_tx, mut updates) = mpsc::channel(UPDATE_QUEUE);
    let executor = Executor::spawn(
        identity.host_id.clone(),
        Arc::clone(&host),
        Arc::clone(&journal),
        config.phases.clone(),
        updates_tx,
    )
    .await;
    let mut backoff = ExponentialBackoff {
        initial_interval: Duration::from_millis(500),
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: config.max_backoff,
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    };
    let mut last_facts: Option<Facts> = None;
    let mut failures = 0u32;
    let mut dialer = Dialer::default();
    // The renewal task hands over each renewed identity; the session then
    // reconnects with it.
    let (renewed_tx, mut renewed) = watch::channel(identity);
    let renewal = tokio::spawn(renew_forever(
        renewed_tx,
        config.state_dir.clone(),
        journal,
        shutdown.clone(),
    ));
    loop {
        if failures > 0 {
            let delay = backoff.next_backoff().unwrap_or(config.max_backoff);
            debug!(?delay, failures, "waiting before reconnecting");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        let identity = renewed.borrow_and_update().clone();
        let endpoint = match dialer.endpoint(&identity) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                // The identity on disk cannot make a TLS configuration:
                // nothing changes that but a new enrollment.
                error!(host_id = %identity.host_id, error = %e, "cannot configure the connection");
                failures += 1;
                continue;
            }
        };
        let started = Instant::now();
        // Dropping the session future on shutdown closes the stream wherever it is.
        let outcome = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            _ = renewed.changed() => {
                info!(host_id = %identity.host_id, "certificate renewed: reconnecting with it");
                failures = 0;
                backoff.reset();
                continue;
            }
            outcome = serve(&identity, &endpoint, &host, &config, &mut last_facts, &executor, &mut updates) => outcome,
        };
        match outcome {
            Ok(()) => break,
            Err(e) => {
                if started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                failures += 1;
                warn!(host_id = %identity.host_id, error = %e, failures, "session lost");
                if explain_refusal(&identity, &e) {
                    // Retrying fast changes nothing until an operator acts.
                    let slow = config.max_backoff.max(IDENTITY_RETRY);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(slow) => {}
                    }
                }
            }
        }
    }
    renewal.abort();
}

/// The endpoint of the current identity, kept across reconnections: its
/// TLS configuration (trust root, client certificate and key) is built once
/// per certificate rather than for every attempt, which after a coordinator restart is thousands of attempts
/// across the fleet at once (BENCHMARKS.md, session 9).
#[derive(Default)]
struct Dialer {
    current: Option<(String, Endpoint)>,
}

impl Dialer {
    fn endpoint(&mut self, identity: &Identity) -> Result<Endpoint, transport::ConnectError> {
        if let Some((cert_pem, endpoint)) = &self.current
            && *cert_pem == identity.cert_pem
        {
            return Ok(endpoint.clone());
        }
        let endpoint = transport::endpoint(
            &identity.coordinator,
            &identity.ca_pem,
            Some((&identity.cert_pem, &identity.key_pem)),
        )?;
        self.current = Some((identity.cert_pem.clone(), endpoint.clone()));
        Ok(endpoint)
    }
}

/// How long an agent whose identity is refused waits between attempts.
const IDENTITY_RETRY: Duration = Duration::from_secs(300);

/// Says why in words an operator can act on when the coordinator refuses
/// this agent's certificate, or this agent refuses the coordinator's (the
/// handshake itself only says "closed"); whether it was such a refusal.
fn explain_refusal(identity: &Identity, error: &SessionError) -> bool {
    let now = crate::command::now_unix_ms();
    let text = format!("{error:?}");
    let enroll_again = format!(
        "create a token for this host (mfctl token create --host-id {}), stop the agent and \
         run mf-agent enroll with it, then start the agent",
        identity.host_id
    );
    if renew::expires_at(identity).is_some_and(|at| at <= now) {
        error!(
            host_id = %identity.host_id,
            expired_unix_ms = identity.validity.not_after_unix_ms,
            "this agent's certificate has expired (it could not be renewed in time, e.g. while \
             the coordinator was down): the coordinator refuses it; to enroll again, {enroll_again}"
        );
        true
    } else if text.contains("Revoked") || text.contains("was revoked") {
        error!(
            host_id = %identity.host_id,
            "the coordinator has revoked this agent's certificate (the host was revoked, deleted \
             or enrolled again elsewhere); to bring it back, {enroll_again}"
        );
        true
    } else if text.contains("NotValidForName") {
        error!(
            host_id = %identity.host_id,
            coordinator = %identity.coordinator,
            "the coordinator's certificate is not valid for the name this agent dials: enroll \
             again with --coordinator set to a name in its certificate (mfctl pki init --name), \
             or have its certificate issued for this name"
        );
        true
    } else {
        false
    }
}

/// Renews the certificate at its point in its lifetime, again after each
/// renewal, retrying a failed one; runs beside the sessions. Not while a
/// snapshot is held: the state directory is on /var, which a rollback's
/// merge rewinds, and it would bring back the certificate the renewal
/// replaced, which is revoked by then.
async fn renew_forever(
    renewed: watch::Sender<Identity>,
    state_dir: Option<PathBuf>,
    journal: SharedJournal,
    shutdown: CancellationToken,
) {
    loop {
        let identity = renewed.borrow().clone();
        let wait_ms = renew::renew_at(&identity) - crate::command::now_unix_ms();
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
        debug!(?wait, "next certificate renewal");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let snapshot_held = journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .migration()
            .snapshot
            .is_some();
        if snapshot_held {
            let retry = renew::retry_after(&identity);
            debug!(
                ?retry,
                "renewal waits: a snapshot is held (a rollback would rewind it)"
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            continue;
        }
        match renew::renew(&identity, state_dir.as_deref()).await {
            Ok(next) => {
                info!(
                    host_id = %next.host_id,
                    not_after_unix_ms = next.validity.not_after_unix_ms,
                    "certificate renewed"
                );
                if renewed.send(next).is_err() {
                    return;
                }
            }
            Err(e) => {
                let retry = renew::retry_after(&identity);
                warn!(host_id = %identity.host_id, error = %e, ?retry, "cannot renew the certificate yet");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

async fn collect_facts(host: &Arc<dyn Host>, labels: &BTreeMap<String, String>) -> Facts {
    let host = Arc::clone(host);
    let labels = labels.clone();
    tokio::task::spawn_blocking(move || facts::collect(host.as_ref(), &labels))
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "facts collection panicked");
            Facts::default()
        })
}

/// The coordinator's welcome and the two directions of an established session.
struct Established {
    welcome: pb::Welcome,
    tx: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
}

/// Connects, says hello with fresh facts, and waits for the welcome.
async fn establish(
    endpoint: &Endpoint,
    host: &Arc<dyn Host>,
    config: &SessionConfig,
    last_facts: &mut Option<Facts>,
    executor: &Executor,
) -> Result<Established, SessionError> {
    let channel = endpoint.connect().await?;
    let mut client = AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let facts = collect_facts(host, &config.labels).await;
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let progress = executor.progress();
    let hello = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            facts: Some((&facts).into()),
            last_sequence: progress.last_sequence,
            last_update: progress.last_update.as_ref().map(wire::update_to_wire),
            agent_time_unix_ms: crate::command::now_unix_ms(),
        })),
    };
    tx.send(hello).await.map_err(|_| SessionError::Closed)?;
    *last_facts = Some(facts);

    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| SessionError::Status(transport::describe_status(&s)))?
        .into_inner();
    let welcome = match inbound.message().await {
        Ok(Some(pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Welcome(w)),
        })) => w,
        Ok(_) => {
            return Err(SessionError::Protocol(
                "the first message was not a welcome",
            ));
        }
        Err(s) => return Err(SessionError::Status(transport::describe_status(&s))),
    };
    Ok(Established {
        welcome,
        tx,
        inbound,
    })
}

/// One session, until it fails; the caller ends it on shutdown.
async fn serve(
    identity: &Identity,
    endpoint: &Endpoint,
    host: &Arc<dyn Host>,
    config: &SessionConfig,
    last_facts: &mut Option<Facts>,
    executor: &Executor,
    updates: &mut mpsc::Receiver<CommandUpdate>,
) -> Result<(), SessionError> {
    let Established {
        welcome,
        tx,
        mut inbound,
    } = tokio::time::timeout(
        ESTABLISH_TIMEOUT,
        establish(endpoint, host, config, last_facts, executor),
    )
    .await
    .map_err(|_| SessionError::Protocol("no welcome from the coordinator within 30 s"))??;
    info!(host_id = %welcome.host_id, "session established");

    let heartbeat_every =
        Duration::from_secs(u64::from(welcome.heartbeat_interval_seconds.clamp(1, 3600)));
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut facts_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + config.facts_interval,
        config.facts_interval,
    );
    let mut sequence = 0u64;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                sequence += 1;
                let beat = pb::AgentMessage {
                    body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat {
                        sequence,
                        agent_time_unix_ms: crate::command::now_unix_ms(),
                    })),
                };
                tx.send(beat).await.map_err(|_| SessionError::Closed)?;
            }
            _ = facts_tick.tick() => {
                let fresh = collect_facts(host, &config.labels).await;
                if last_facts.as_ref().is_none_or(|old| old.materially_differs(&fresh)) {
                    debug!("facts changed, sending them");
                    let message = pb::AgentMessage {
                        body: Some(pb::agent_message::Body::Facts((&fresh).into())),
                    };
                    tx.send(message).await.map_err(|_| SessionError::Closed)?;
                    *last_facts = Some(fresh);
                }
            }
            Some(update) = updates.recv() => {
                let finished = update.state != crate::command::UpdateState::Started;
                let message = pb::AgentMessage {
                    body: Some(pb::agent_message::Body::CommandUpdate(wire::update_to_wire(&update))),
                };
                tx.send(message).await.map_err(|_| SessionError::Closed)?;
                // A phase may have changed the host (packages, OS, kernel): look again now.
                if finished {
                    facts_tick.reset_immediately();
                }
            }
            message = inbound.message() => match message {
                Ok(Some(pb::CoordinatorMessage { body: Some(pb::coordinator_message::Body::Command(command)) })) => {
                    let id = command.command_id.clone();
                    let sequence = command.sequence;
                    let checked = wire::check_signature(&command, &identity.command_key)
                        .and_then(|()| wire::command_from_wire(command, crate::command::now_unix_ms()));
                    match checked {
                        Ok(command) => executor.submit(command).await,
                        Err(malformed) => {
                            warn!(command_id = %id, error = %malformed, "command refused");
                            let refusal = pb::AgentMessage {
                                body: Some(pb::agent_message::Body::CommandUpdate(pb::CommandUpdate {
                                    command_id: id,
                                    sequence,
                                    state: pb::CommandState::Refused.into(),
                                    detail: malformed.to_string(),
                                    ..pb::CommandUpdate::default()
                                })),
                            };
                            tx.send(refusal).await.map_err(|_| SessionError::Closed)?;
                        }
                    }
                }
                Ok(Some(message)) => debug!(?message, "message from the coordinator"),
                Ok(None) => return Err(SessionError::Closed),
                Err(s) => return Err(SessionError::Status(transport::describe_status(&s))),
            },
        }
    }
}
