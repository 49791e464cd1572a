//! The agent listener: enrollment (the only call without a client certificate)
//! and the long-lived session of each enrolled agent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mf_proto::v1 as pb;
use mf_proto::v1::agent_service_server::AgentService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use super::enroll_limit::{EnrollLimiter, Source};
use super::message_limit::MessageLimits;
use super::outbound::{Outbound, Trouble};
use super::{auth, valid_host_id};
use crate::audit::NewAuditEntry;
use crate::inventory::{
    EndReason, Inventory, InventoryError, NewEnrollment, NewSession, Renewal, SessionEnd,
};
use crate::metrics::Metrics;
use crate::storage_health::StorageHealth;
use crate::store::EnrollRefusal;
use mf_core::command::AgentCommand;
use mf_core::rate::TokenBucket;
use mf_pki::{CertificateAuthority, CommandSigner, IssuedCert, PkiError, token};

const MAX_CSR_BYTES: usize = 16 * 1024;
const OUTBOUND_QUEUE: usize = 16;
/// A session must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the agent service.
#[derive(Debug, Clone, Copy)]
pub struct AgentSettings {
    pub heartbeat_interval: Duration,
    /// How long the agent certificates issued at enrollment and renewal live.
    pub cert_lifetime: Duration,
    /// Messages one agent may send a minute.
    pub messages_per_minute: mf_core::rate::PerMinute,
    /// An agent that takes nothing off the wire for this long while
    /// something waits for it is disconnected.
    pub stall_timeout: Duration,
}

/// What the agent service signs with: certificates, and commands.
#[derive(Debug, Clone)]
pub struct Signing {
    pub ca: Arc<CertificateAuthority>,
    pub commands: Arc<CommandSigner>,
}

#[derive(Debug, Clone)]
pub struct AgentApi {
    inventory: Inventory,
    ca: Arc<CertificateAuthority>,
    signer: Arc<CommandSigner>,
    metrics: Metrics,
    settings: AgentSettings,
    limiter: EnrollLimiter,
    messages: MessageLimits,
    storage: StorageHealth,
    shutdown: CancellationToken,
}

impl AgentApi {
    pub fn new(
        inventory: Inventory,
        signing: Signing,
        metrics: Metrics,
        settings: AgentSettings,
        limiter: EnrollLimiter,
        storage: StorageHealth,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inventory,
            ca: signing.ca,
            signer: signing.commands,
            metrics,
            messages: MessageLimits::new(settings.messages_per_minute),
            settings,
            limiter,
            storage,
            shutdown,
        }
    }

    fn stalled(&self) {
        self.metrics
            .sessions_closed
            .with_label_values(&["slow_reader"])
            .inc();
        warn!(
            "the agent takes nothing off the wire: closing its session (what it had not \
             accepted is sent again when it reconnects)"
        );
    }

    /// An agent over its messages: counted, and told when it may come back.
    fn flooded(&self, wait_ms: i64) -> Status {
        self.metrics
            .sessions_closed
            .with_label_values(&["rate_limited"])
            .inc();
        let status = Status::resource_exhausted(format!(
            "this agent sent more than {} messages a minute: session closed; reconnect in {} s",
            self.messages.rate().0,
            (wait_ms.max(1) + 999) / 1000
        ));
        warn!(%status, "agent over its message rate");
        status
    }

    fn enrolled(&self, result: &str) {
        self.metrics.enrollments.with_label_values(&[result]).inc();
    }

    /// Records an enrollment attempt with the peer's address in the audit.
    async fn note_enrollment(&self, host_id: &str, peer: &str, outcome: &str) {
        self.inventory
            .note_audit(NewAuditEntry {
                operator: format!("agent at {peer}"),
                role: "-".into(),
                verb: "enroll".into(),
                arguments: format!("host_id={host_id}"),
                outcome: outcome.to_string(),
            })
            .await;
    }

    fn issued(&self, host_id: String, issued: IssuedCert) -> pb::EnrollResponse {
        pb::EnrollResponse {
            host_id,
            certificate_pem: issued.pem,
            not_after_unix_ms: issued.not_after_unix_ms,
            lifetime_seconds: self.settings.cert_lifetime.as_secs(),
            command_public_key: self.signer.public_key(),
        }
    }
}

fn refusal_status(refusal: &EnrollRefusal) -> Status {
    let message = refusal.to_string();
    match refusal {
        EnrollRefusal::UnknownToken
        | EnrollRefusal::ExpiredToken
        | EnrollRefusal::ExhaustedToken => Status::unauthenticated(message),
        EnrollRefusal::WrongHost(_) => Status::permission_denied(message),
        EnrollRefusal::AlreadyEnrolled(_) => Status::already_exists(message),
    }
}

pub(crate) fn inventory_status(error: InventoryError) -> Status {
    match error {
        InventoryError::NotEnrolled(_) | InventoryError::NoRole(_) => {
            Status::permission_denied(error.to_string())
        }
        InventoryError::StaleCertificate(_) | InventoryError::Revoked(_) => {
            Status::unauthenticated(error.to_string())
        }
        InventoryError::Store(_) => Status::internal("the coordinator cannot write its inventory"),
        InventoryError::Stopped => Status::unavailable("the coordinator is shutting down"),
        InventoryError::ReadOnly(_) => Status::unavailable(error.to_string()),
        InventoryError::UnknownHost(_)
        | InventoryError::UnknownWave(_)
        | InventoryError::UnknownWebhook(_)
        | InventoryError::UnknownOperator(_) => Status::not_found(error.to_string()),
        InventoryError::Conflict(_) => Status::failed_precondition(error.to_string()),
        InventoryError::Exists(_) => Status::already_exists(error.to_string()),
        InventoryError::Invalid(_) => Status::invalid_argument(error.to_string()),
    }
}

/// The host's clock minus ours from the time an agent put in a message
/// (the message's transit counts as skew: milliseconds on a LAN); `None`
/// when the agent did not say.
fn skew_of(agent_time_unix_ms: i64) -> Option<i64> {
    (agent_time_unix_ms > 0).then(|| agent_time_unix_ms - now_unix_ms())
}

/// The coordinator's wall clock, for what is sent and measured at the edge.
fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn message_kind(message: &pb::AgentMessage) -> &'static str {
    match message.body {
        Some(pb::agent_message::Body::Hello(_)) => "hello",
        Some(pb::agent_message::Body::Facts(_)) => "facts",
        Some(pb::agent_message::Body::Heartbeat(_)) => "heartbeat",
        Some(pb::agent_message::Body::CommandUpdate(_)) => "command_update",
        None => "empty",
    }
}

impl AgentApi {
    /// An enrollment the rate limit let through: checked, signed, recorded.
    async fn enroll_admitted(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into());
        let request = request.into_inner();
        if let Some(cause) = self.storage.cause() {
            return Err(Status::unavailable(StorageHealth::refusal(&cause)));
        }
        let invalid = |what: &str| {
            self.enrolled("bad_request");
            Err(Status::invalid_argument(what.to_string()))
        };
        if !token::well_formed(&request.token) {
            self.enrolled("unknown_token");
            return Err(Status::unauthenticated("the bootstrap token is malformed"));
        }
        if !valid_host_id(&request.host_id) {
            return invalid(
                "the host id must be 1-253 characters of letters, digits, '-', '_' and '.'",
            );
        }
        if request.csr_der.len() > MAX_CSR_BYTES {
            return invalid("the certificate signing request is too large");
        }
        // The token is checked before anything is signed, so a refusal costs
        // one lookup; the enrollment's transaction checks it again with the
        // write, and the certificate is only sent if that passes too.
        let token_hash = token::hash(&request.token);
        let peer = remote.clone();
        if let Err(refusal) = self
            .inventory
            .check_token(token_hash, request.host_id.clone())
            .await
            .map_err(inventory_status)?
        {
            self.enrolled(refusal.reason());
            self.note_enrollment(&request.host_id, &peer, &format!("refused: {refusal}"))
                .await;
            return Err(refusal_status(&refusal));
        }
        let issued = match self.ca.issue_agent(
            &request.host_id,
            &request.csr_der,
            self.settings.cert_lifetime,
        ) {
            Ok(issued) => issued,
            Err(PkiError::BadCsr(e)) => {
                return invalid(&format!("the certificate signing request is invalid: {e}"));
            }
            Err(e) => {
                warn!(error = %e, "cannot sign an agent certificate");
                return Err(Status::internal("cannot sign the certificate"));
            }
        };
        let outcome = self
            .inventory
            .enroll(NewEnrollment {
                token_hash,
                host_id: request.host_id.clone(),
                cert_serial: issued.serial_hex.clone(),
                cert_not_after_unix_ms: issued.not_after_unix_ms,
            })
            .await
            .map_err(inventory_status)?;
        match outcome {
            Ok(()) => {
                self.enrolled("ok");
                info!(host_id = %request.host_id, %peer, "host enrolled");
                self.note_enrollment(&request.host_id, &peer, "ok").await;
                Ok(Response::new(self.issued(request.host_id, issued)))
            }
            Err(refusal) => {
                self.enrolled(refusal.reason());
                info!(host_id = %request.host_id, reason = %refusal, "enrollment refused");
                self.note_enrollment(&request.host_id, &peer, &format!("refused: {refusal}"))
                    .await;
                Err(refusal_status(&refusal))
            }
        }
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let source = Source::of(request.remote_addr().map(|a| a.ip()));
        if let Err(limited) = self.limiter.admit(source) {
            self.enrolled("rate_limited");
            if limited.first() {
                warn!(%source, reason = %limited, "enrollment refusals rate-limited");
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "?".into(), |a| a.to_string());
                self.note_enrollment("-", &peer, &format!("refused: {limited}"))
                    .await;
            }
            return Err(Status::resource_exhausted(limited.to_string()));
        }
        let answer = self.enroll_admitted(request).await;
        if let Err(status) = &answer
            && !matches!(status.code(), Code::Internal | Code::Unavailable)
        {
            self.limiter.refused(source);
        }
        answer
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let auth::AgentCaller {
            host_id,
            serial: presented_serial,
            ..
        } = auth::agent(&request, &self.metrics)?;
        let csr = request.into_inner().csr_der;
        if csr.len() > MAX_CSR_BYTES {
            return Err(Status::invalid_argument(
                "the certificate signing request is too large",
            ));
        }
        let issued = match self
            .ca
            .issue_agent(&host_id, &csr, self.settings.cert_lifetime)
        {
            Ok(issued) => issued,
            Err(PkiError::BadCsr(e)) => {
                return Err(Status::invalid_argument(format!(
                    "the certificate signing request is invalid: {e}"
                )));
            }
            Err(e) => {
                warn!(error = %e, "cannot sign an agent certificate");
                return Err(Status::internal("cannot sign the certificate"));
            }
        };
        // Recorded (and durable) before the certificate leaves; if the
        // inventory refuses, the certificate is discarded unsent.
        self.inventory
            .renew(Renewal {
                host_id: host_id.clone(),
                presented_serial,
                issued_serial: issued.serial_hex.clone(),
                issued_not_after_unix_ms: issued.not_after_unix_ms,
            })
            .await
            .map_err(inventory_status)?;
        self.metrics
            .enrollments
            .with_label_values(&["renewed"])
            .inc();
        info!(%host_id, not_after_unix_ms = issued.not_after_unix_ms, "agent certificate renewed");
        Ok(Response::new(self.issued(host_id, issued)))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let auth::AgentCaller {
            host_id,
            serial: cert_serial,
            issued_unix_ms: cert_issued_unix_ms,
        } = auth::agent(&request, &self.metrics)?;
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        // The hello counts against the host's messages too: an agent cut
        // off for flooding cannot come straight back.
        let mut bucket = self.messages.open(&host_id, now_unix_ms());
        if let Err(wait_ms) = bucket.take(now_unix_ms()) {
            self.messages.close(&host_id, bucket, now_unix_ms());
            return Err(self.flooded(wait_ms));
        }

        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(Status::deadline_exceeded("no hello within 30 s")),
            Ok(Err(status)) => return Err(status),
            Ok(Ok(None)) => return Err(Status::cancelled("the agent closed the session")),
            Ok(Ok(Some(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(hello)),
            }))) => hello,
            Ok(Ok(Some(_))) => {
                return Err(Status::invalid_argument("the first message must be hello"));
            }
        };
        self.metrics
            .stream_messages
            .with_label_values(&["in", "hello"])
            .inc();
        let facts = crate::wire::facts_from_wire(hello.facts.unwrap_or_default())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;

        let last_update = hello
            .last_update
            .map(crate::wire::update_from_wire)
            .transpose()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;

        let end = SessionEnd::default();
        let (commands_tx, commands) = mpsc::channel(OUTBOUND_QUEUE);
        let session = self
            .inventory
            .connect(NewSession {
                host_id: host_id.clone(),
                cert_serial,
                cert_issued_unix_ms,
                peer: peer.clone(),
                facts,
                end: end.clone(),
                last_sequence: hello.last_sequence,
                last_update,
                clock_skew_ms: skew_of(hello.agent_time_unix_ms),
                commands: commands_tx,
            })
            .await
            .map_err(inventory_status)?;

        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let welcome = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Welcome(pb::Welcome {
                host_id: host_id.clone(),
                heartbeat_interval_seconds: u32::try_from(
                    self.settings.heartbeat_interval.as_secs(),
                )
                .unwrap_or(u32::MAX),
            })),
        };
        let mut outbound = Outbound::new(tx, self.settings.stall_timeout);
        if outbound.send(Box::new(Ok(welcome))).await.is_err() {
            return Err(Status::cancelled("the agent closed the session"));
        }
        self.metrics
            .stream_messages
            .with_label_values(&["out", "welcome"])
            .inc();

        let span = info_span!("session", %host_id, session, %peer);
        let open = OpenSession {
            host_id,
            session,
            end,
            commands,
            inbound,
            outbound,
            bucket,
        };
        tokio::spawn(self.clone().serve(open).instrument(span));
        // Items are boxed in the channel: it allocates 32 slots at once, and
        // there is one per connected agent.
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|item| *item),
        )))
    }
}

/// What an agent is told when the inventory ends its session.
fn ending_status(why: EndReason) -> Status {
    match why {
        _ if why.revokes() => Status::permission_denied(why.message()),
        EndReason::Stopping | EndReason::Reloaded => Status::unavailable(why.message()),
        _ => Status::aborted(why.message()),
    }
}

/// What woke a session's task.
enum Event {
    /// The session ends, with the status the agent is told, if any.
    End(Option<Status>),
    Command(Box<AgentCommand>),
    Message(Box<pb::AgentMessage>),
}

/// What a session task owns once the hello is accepted.
struct OpenSession {
    host_id: String,
    session: u64,
    end: SessionEnd,
    commands: mpsc::Receiver<Box<AgentCommand>>,
    inbound: Streaming<pb::AgentMessage>,
    outbound: Outbound<Box<Result<pb::CoordinatorMessage, Status>>>,
    bucket: TokenBucket,
}

impl AgentApi {
    /// A session's task, until the agent leaves, is replaced or falls
    /// silent, or the coordinator shuts down. One lives per connected agent
    /// for as long as it is connected, so its state is kept small: the
    /// handling of a message and the last steps are boxed (allocated only
    /// while they run) rather than sized into every idle session
    /// (BENCHMARKS.md, session 9).
    async fn serve(self, open: OpenSession) {
        let OpenSession {
            host_id,
            session,
            end,
            mut commands,
            mut inbound,
            mut outbound,
            mut bucket,
        } = open;
        debug!("session open");
        let silence = self.settings.heartbeat_interval * 3;
        let farewell = loop {
            // What woke the session, decided without awaiting, so that the
            // select's outputs (a whole message) are not kept in its state.
            let event = tokio::select! {
                () = self.shutdown.cancelled() => Event::End(Some(ending_status(EndReason::Stopping))),
                why = end.ended() => Event::End(Some(ending_status(why))),
                trouble = outbound.trouble() => {
                    if trouble == Trouble::Stalled {
                        self.stalled();
                    }
                    Event::End(None)
                }
                Some(command) = commands.recv() => Event::Command(command),
                received = tokio::time::timeout(silence, inbound.message()) => match received {
                    Err(_) => Event::End(Some(Status::deadline_exceeded("no heartbeat from the agent"))),
                    Ok(Ok(None)) => Event::End(None),
                    Ok(Err(status)) => {
                        debug!(%status, "session stream failed");
                        Event::End(None)
                    }
                    Ok(Ok(Some(message))) => Event::Message(Box::new(message)),
                },
            };
            match event {
                Event::End(status) => break status,
                Event::Command(command) => {
                    if let Err(trouble) = Box::pin(self.send_command(&mut outbound, &command)).await
                    {
                        if trouble == Trouble::Stalled {
                            self.stalled();
                        }
                        break None;
                    }
                }
                Event::Message(message) => {
                    self.metrics
                        .stream_messages
                        .with_label_values(&["in", message_kind(&message)])
                        .inc();
                    if let Err(wait_ms) = bucket.take(now_unix_ms()) {
                        break Some(self.flooded(wait_ms));
                    }
                    if let Err(status) = Box::pin(self.handle(&host_id, session, *message)).await {
                        warn!(%status, "closing the session");
                        break Some(status);
                    }
                }
            }
        };
        if let Some(status) = farewell {
            outbound.try_send(Box::new(Err(status)));
        }
        self.messages.close(&host_id, bucket, now_unix_ms());
        Box::pin(self.inventory.disconnect(host_id, session)).await;
        debug!("session closed");
    }

    /// Signs a command and queues it on the session's stream.
    async fn send_command(
        &self,
        outbound: &mut Outbound<Box<Result<pb::CoordinatorMessage, Status>>>,
        command: &AgentCommand,
    ) -> Result<(), Trouble> {
        let mut wire = crate::wire::command_to_wire(command, now_unix_ms());
        wire.signature = self.signer.sign(&mf_proto::command_signed_bytes(&wire));
        let message = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Command(wire)),
        };
        outbound.send(Box::new(Ok(message))).await?;
        self.metrics
            .stream_messages
            .with_label_values(&["out", "command"])
            .inc();
        Ok(())
    }
}

impl AgentApi {
    /// One message within a session; an invalid one ends the session.
    async fn handle(
        &self,
        host_id: &str,
        session: u64,
        message: pb::AgentMessage,
    ) -> Result<(), Status> {
        match message.body {
            Some(pb::agent_message::Body::Heartbeat(beat)) => {
                let skew = skew_of(beat.agent_time_unix_ms);
                self.inventory
                    .heartbeat(host_id.to_string(), session, skew)
                    .await;
                Ok(())
            }
            Some(pb::agent_message::Body::Facts(facts)) => {
                let facts = crate::wire::facts_from_wire(facts)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                self.inventory
                    .facts(host_id.to_string(), session, facts)
                    .await;
                Ok(())
            }
            Some(pb::agent_message::Body::CommandUpdate(update)) => {
                let update = crate::wire::update_from_wire(update)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                self.inventory
                    .command_update(host_id.to_string(), update)
                    .await;
                Ok(())
            }
            Some(pb::agent_message::Body::Hello(_)) => {
                Err(Status::invalid_argument("hello sent twice"))
            }
            None => Err(Status::invalid_argument("empty message")),
        }
    }
}
