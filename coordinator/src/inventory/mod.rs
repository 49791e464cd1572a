//! The inventory: every enrolled host, its facts and its session, its latest
//! pre-check and job, and the waves. One task owns this state, split by
//! concern (`hosts.rs`, `prechecks.rs`, `jobs.rs`, `waves/`); gRPC handlers
//! talk to it through [`Inventory`] over a bounded channel. Requests are taken
//! in batches and every batch that changed something an agent or operator
//! will be told about is flushed once before anyone hears back (group commit).

mod ending;
mod hosts;
mod jobs;
mod operators;
mod outbox;
mod prechecks;
mod waves;

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

pub use ending::{EndReason, SessionEnd};
use tracing::{debug, error, info};

use hosts::HostState;
use std::collections::BTreeMap;

use crate::audit::{AuditEntry, NewAuditEntry};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::store::{EnrollRefusal, HostRecord, OperatorRecord, Store, StoreError, TokenRecord};
pub use hosts::{Page, Selection};
pub use jobs::NewJob;
use mf_core::access::Access;
use mf_core::command::{AgentCommand, CommandUpdate, UpdateState};
use mf_core::facts::Facts;
use mf_core::job::Job;
use mf_core::path::Target;
use mf_core::precheck::PrecheckRecord;
use mf_core::readiness::{self, ReadinessCounts, ReadinessReport, SelectedHost};
pub use operators::{Caller, LabelChange, NewOperator, OperatorUpdate};
pub use outbox::{NewWebhook, OutboxSignals, PendingEvents, kinds};

use mf_core::wave::spec::WaveSpec;
pub use waves::{HostAction, PlanView, StageView, StatusView, WaveAction, WhyView};

/// Identifies one session of a host, so that a stale session's late messages
/// cannot touch the state of the session that replaced it.
pub type SessionId = u64;

const COMMAND_QUEUE: usize = 8192;
const TICK: std::time::Duration = std::time::Duration::from_secs(5);
/// A pre-check not delivered within this time is dropped by the agent.
const PRECHECK_TTL_MS: i64 = 3600 * 1000;
const MAX_BATCH: usize = 1024;

/// A host as shown to operators.
#[derive(Debug, Clone)]
pub struct HostView {
    pub record: HostRecord,
    pub connected: bool,
    pub precheck: Option<PrecheckRecord>,
    pub job: Option<Job>,
    pub verdict: readiness::Verdict,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("host {0} is not enrolled")]
    NotEnrolled(String),
    #[error("the certificate presented for host {0} has been replaced by a newer one")]
    StaleCertificate(String),
    #[error(
        "the certificate of host {0} was revoked by an operator: enroll it again with a token \
         created for it (mfctl token create --host-id {0})"
    )]
    Revoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the inventory is shutting down")]
    Stopped,
    #[error("no host {0}")]
    UnknownHost(String),
    #[error("no operator {0}")]
    UnknownOperator(String),
    /// The presented operator certificate carries no role.
    #[error("{0}")]
    NoRole(String),
    #[error("no wave {0}")]
    UnknownWave(String),
    #[error("no webhook {0}")]
    UnknownWebhook(String),
    /// The request cannot be done in the host's present state.
    #[error("{0}")]
    Conflict(String),
    /// Something of that name exists already.
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    /// The store cannot be written: nothing that needs it is done.
    #[error("{}", crate::storage_health::StorageHealth::refusal(.0))]
    ReadOnly(String),
}

/// What an operator decides for a held job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Rollback,
    Retry,
}

/// How the inventory runs jobs, and the clock it runs them by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A reboot (of a step or a rollback) with no outcome after this holds the job.
    pub reboot_timeout: std::time::Duration,
    /// Every rule that depends on time reads this clock, never the system's.
    pub clock: SharedClock,
    /// The deny-list the TLS verifiers read; the task fills it from the store
    /// at start and adds every revocation.
    pub revocations: Revocations,
    /// A host whose clock is further off than this gets no pre-check, job
    /// or wave step (its certificates and timings cannot be trusted).
    pub max_clock_skew: std::time::Duration,
    /// Waves past these limits start only with a second admin's start.
    pub blast_radius: mf_core::wave::blast::BlastRadius,
    /// Whether the store can be written, as the task last found.
    pub storage: crate::storage_health::StorageHealth,
    /// Findings that make a host `rebuild` rather than `blocked`.
    pub rebuild: mf_core::readiness::RebuildRules,
    /// What the webhook delivery watches.
    pub outbox: OutboxSignals,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reboot_timeout: std::time::Duration::from_secs(4 * 3600),
            clock: crate::clock::system(),
            revocations: Revocations::default(),
            max_clock_skew: std::time::Duration::from_secs(300),
            blast_radius: Default::default(),
            storage: Default::default(),
            rebuild: Default::default(),
            outbox: Default::default(),
        }
    }
}

/// A bootstrap token as an operator asks for it.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Only this host may enroll with it.
    pub host_id: Option<String>,
    pub ttl: std::time::Duration,
    pub uses: u32,
}

impl NewToken {
    fn record(self, now_unix_ms: i64) -> TokenRecord {
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        TokenRecord {
            host_id: self.host_id,
            created_unix_ms: now_unix_ms,
            expires_unix_ms: now_unix_ms.saturating_add(ttl),
            uses: self.uses,
            uses_left: self.uses,
        }
    }
}

/// Whether creating a wave records it or only plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    Record,
    /// Plans and shows the wave; records nothing, takes no host.
    DryRun,
}

/// What an enrollment writes.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub token_hash: [u8; 32],
    pub host_id: String,
    pub cert_serial: String,
    pub cert_not_after_unix_ms: i64,
}

/// A certificate issued to an enrolled agent that asked for one with its
/// current certificate.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub host_id: String,
    pub presented_serial: String,
    pub issued_serial: String,
    pub issued_not_after_unix_ms: i64,
}

/// A session that has said hello.
#[derive(Debug)]
pub struct NewSession {
    pub host_id: String,
    pub cert_serial: String,
    /// When the CA issued that certificate.
    pub cert_issued_unix_ms: i64,
    pub peer: String,
    pub facts: Facts,
    /// Ended by the inventory (a newer session of the host, its deletion or
    /// revocation), with the reason the agent is told.
    pub end: SessionEnd,
    /// From the hello: the highest sequence the agent has accepted.
    pub last_sequence: u64,
    /// From the hello: the journaled outcome of the agent's latest command.
    pub last_update: Option<CommandUpdate>,
    /// From the hello: the host's clock minus ours, if the agent said its time.
    pub clock_skew_ms: Option<i64>,
    /// Where commands for this session go (boxed: a channel allocates 32
    /// slots at once, and there is one per connected agent).
    pub commands: mpsc::Sender<Box<AgentCommand>>,
}

/// What a pre-check request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrecheckSummary {
    pub dispatched: u32,
    pub queued: u32,
    /// (host, reason) of hosts not sent a pre-check.
    pub refused: Vec<(String, String)>,
}

type Reply<T> = oneshot::Sender<Result<T, InventoryError>>;

enum Request {
    Enroll(NewEnrollment, Reply<Result<(), EnrollRefusal>>),
    CreateToken([u8; 32], NewToken, Reply<TokenRecord>),
    CheckToken(
        [u8; 32],
        String,
        oneshot::Sender<Result<Result<(), EnrollRefusal>, InventoryError>>,
    ),
    ListTokens(oneshot::Sender<Result<Vec<(String, TokenRecord)>, InventoryError>>),
    RevokeToken(String, Reply<TokenRecord>),
    Connect(NewSession, Reply<SessionId>),
    Facts(String, SessionId, Facts),
    Heartbeat(String, SessionId, Option<i64>),
    Disconnect(String, SessionId),
    List(Selection, Page, oneshot::Sender<Vec<HostView>>),
    Get(String, oneshot::Sender<Option<HostView>>),
    DeleteHost(String, Reply<HostView>),
    RevokeHost(String, Reply<HostView>),
    Access(Caller, oneshot::Sender<Result<Access, InventoryError>>),
    AddOperator(Caller, NewOperator, Reply<OperatorRecord>),
    ListOperators(oneshot::Sender<Vec<OperatorRecord>>),
    UpdateOperator(OperatorUpdate, Reply<OperatorRecord>),
    RevokeOperator(String, Reply<OperatorRecord>),
    AddOperatorSerial(Caller, String, Reply<()>),
    LabelHost(LabelChange, Reply<HostView>),
    Audit(NewAuditEntry, Reply<()>),
    NoteAudit(NewAuditEntry),
    AuditEntries(oneshot::Sender<Result<Vec<AuditEntry>, InventoryError>>),
    Snapshot(oneshot::Sender<Result<Vec<crate::store::backup::Record>, InventoryError>>),
    Renew(Renewal, Reply<()>),
    Precheck(Selection, Target, Reply<PrecheckSummary>),
    Update(String, CommandUpdate),
    Readiness(Selection, oneshot::Sender<ReadinessReport>),
    ReadinessCounts(Selection, oneshot::Sender<ReadinessCounts>),
    Migrate(NewJob, Reply<Job>),
    JobAction(String, JobAction, Reply<Job>),
    CreateWave(Box<WaveSpec>, CreateMode, Reply<PlanView>),
    WavePlan(String, Reply<PlanView>),
    WaveAction(String, WaveAction, Access, Reply<StatusView>),
    WaveHostAction(String, String, HostAction, Reply<StatusView>),
    WaveStatus(String, Reply<StatusView>),
    DeleteWave(String, Reply<StatusView>),
    ListWaves(oneshot::Sender<Vec<StatusView>>),
    WaveWhy(String, String, Reply<WhyView>),
    /// The clock, for timeouts and maintenance windows; the reply, if any,
    /// once the tick's decisions are durable.
    Tick(Option<Reply<()>>),
    AddWebhook(NewWebhook, Reply<crate::store::outbox::WebhookRecord>),
    RemoveWebhook(String, Reply<crate::store::outbox::WebhookRecord>),
    ListWebhooks(Reply<Vec<(crate::store::outbox::WebhookRecord, u64)>>),
    PendingEvents(String, usize, Reply<PendingEvents>),
    Delivered(String, u64),
}

impl Request {
    /// Whether it only reads the state (answered after the batch's changes).
    fn only_reads(&self) -> bool {
        matches!(
            self,
            Request::List(..)
                | Request::Get(..)
                | Request::ListTokens(..)
                | Request::ListOperators(..)
                | Request::AuditEntries(..)
                | Request::Readiness(..)
                | Request::ReadinessCounts(..)
                | Request::WavePlan(..)
                | Request::WaveStatus(..)
                | Request::ListWaves(..)
                | Request::WaveWhy(..)
                | Request::ListWebhooks(..)
        )
    }
}

/// The handle the services use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Inventory {
    tx: mpsc::Sender<Request>,
}

impl Inventory {
    /// Loads every host from the store and starts the owning task.
    pub fn start(
        store: Store,
        metrics: Metrics,
        settings: Settings,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), InventoryError> {
        let state = State::load(store, metrics, settings)?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(state.run(rx));
        // The clock holds only a weak handle, so that it never keeps the task alive.
        let clock = tx.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let Some(tx) = clock.upgrade() else { break };
                if tx.send(Request::Tick(None)).await.is_err() {
                    break;
                }
            }
        });
        Ok((Self { tx }, task))
    }

    /// Applies the rules that depend on time now, as the periodic tick does
    /// (reboot timeouts, unreachable hosts, windows and soak), and returns once
    /// what they decided is durable. For tests that move a manual clock.
    pub async fn tick(&self) -> Result<(), InventoryError> {
        self.ask(|reply| Request::Tick(Some(reply))).await
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)?
    }

    async fn tell(&self, request: Request) {
        // The task only stops at shutdown, when nobody needs the update any more.
        let _ = self.tx.send(request).await;
    }

    pub async fn enroll(
        &self,
        enrollment: NewEnrollment,
    ) -> Result<Result<(), EnrollRefusal>, InventoryError> {
        self.ask(|reply| Request::Enroll(enrollment, reply)).await
    }

    /// Records a bootstrap token by the hash of its secret, its times taken
    /// from the inventory's clock; durable before it returns.
    /// Whether an enrollment with this token would pass (read only): the
    /// agent service asks before it signs anything.
    pub async fn check_token(
        &self,
        token_hash: [u8; 32],
        host_id: String,
    ) -> Result<Result<(), EnrollRefusal>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::CheckToken(token_hash, host_id, reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)?
    }

    /// Every token, by id (the hex of its hash).
    pub async fn list_tokens(&self) -> Result<Vec<(String, TokenRecord)>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::ListTokens(reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)?
    }

    /// Deletes the token whose id starts with `prefix` (unique); durable
    /// before it returns.
    pub async fn revoke_token(&self, prefix: String) -> Result<TokenRecord, InventoryError> {
        self.ask(|reply| Request::RevokeToken(prefix, reply)).await
    }

    pub async fn create_token(
        &self,
        hash: [u8; 32],
        token: NewToken,
    ) -> Result<TokenRecord, InventoryError> {
        self.ask(|reply| Request::CreateToken(hash, token, reply))
            .await
    }

    pub async fn connect(&self, session: NewSession) -> Result<SessionId, InventoryError> {
        self.ask(|reply| Request::Connect(session, reply)).await
    }

    pub async fn facts(&self, host_id: String, session: SessionId, facts: Facts) {
        self.tell(Request::Facts(host_id, session, facts)).await;
    }

    /// A heartbeat, with the host's clock skew as measured at the edge.
    pub async fn heartbeat(&self, host_id: String, session: SessionId, clock_skew_ms: Option<i64>) {
        self.tell(Request::Heartbeat(host_id, session, clock_skew_ms))
            .await;
    }

    pub async fn disconnect(&self, host_id: String, session: SessionId) {
        self.tell(Request::Disconnect(host_id, session)).await;
    }

    pub async fn list(
        &self,
        selection: impl Into<Selection>,
    ) -> Result<Vec<HostView>, InventoryError> {
        self.list_page(selection, Page::default()).await
    }

    /// The selected hosts after `page.after`, at most `page.limit` of them,
    /// sorted by id: only those are copied out of the task.
    pub async fn list_page(
        &self,
        selection: impl Into<Selection>,
        page: Page,
    ) -> Result<Vec<HostView>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::List(selection.into(), page, reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)
    }

    /// Records a pre-check of `target` for every selected host and sends it to
    /// those connected once it is durable.
    pub async fn precheck(
        &self,
        selection: impl Into<Selection>,
        target: Target,
    ) -> Result<PrecheckSummary, InventoryError> {
        let selection = selection.into();
        self.ask(|reply| Request::Precheck(selection, target, reply))
            .await
    }

    pub async fn command_update(&self, host_id: String, update: CommandUpdate) {
        self.tell(Request::Update(host_id, update)).await;
    }

    pub async fn readiness(
        &self,
        selection: impl Into<Selection>,
    ) -> Result<ReadinessReport, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Readiness(selection.into(), reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)
    }

    /// Only the counts: cheap enough to poll (nothing is cloned).
    pub async fn readiness_counts(
        &self,
        selection: impl Into<Selection>,
    ) -> Result<ReadinessCounts, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::ReadinessCounts(selection.into(), reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)
    }

    /// Starts a job; durable before it returns.
    pub async fn migrate(&self, new: NewJob) -> Result<Job, InventoryError> {
        self.ask(|reply| Request::Migrate(new, reply)).await
    }

    pub async fn job_action(
        &self,
        host_id: String,
        action: JobAction,
    ) -> Result<Job, InventoryError> {
        self.ask(|reply| Request::JobAction(host_id, action, reply))
            .await
    }

    /// Plans and records a wave (nothing starts until `wave_action(Start)`),
    /// or with [`CreateMode::DryRun`] only plans it.
    pub async fn create_wave(
        &self,
        spec: WaveSpec,
        mode: CreateMode,
    ) -> Result<PlanView, InventoryError> {
        self.ask(|reply| Request::CreateWave(Box::new(spec), mode, reply))
            .await
    }

    pub async fn wave_plan(&self, name: String) -> Result<PlanView, InventoryError> {
        self.ask(|reply| Request::WavePlan(name, reply)).await
    }

    pub async fn wave_action(
        &self,
        name: String,
        action: WaveAction,
    ) -> Result<StatusView, InventoryError> {
        self.wave_action_by(name, action, Access::unscoped_admin("coordinator"))
            .await
    }

    /// An operator's action on a wave; a start past the blast radius needs
    /// two different admins.
    pub async fn wave_action_by(
        &self,
        name: String,
        action: WaveAction,
        by: Access,
    ) -> Result<StatusView, InventoryError> {
        self.ask(|reply| Request::WaveAction(name, action, by, reply))
            .await
    }

    pub async fn wave_host_action(
        &self,
        name: String,
        host_id: String,
        action: HostAction,
    ) -> Result<StatusView, InventoryError> {
        self.ask(|reply| Request::WaveHostAction(name, host_id, action, reply))
            .await
    }

    pub async fn wave_status(&self, name: String) -> Result<StatusView, InventoryError> {
        self.ask(|reply| Request::WaveStatus(name, reply)).await
    }

    /// Forgets a decommissioned host; durable before it returns.
    pub async fn delete_host(&self, host_id: String) -> Result<HostView, InventoryError> {
        self.ask(|reply| Request::DeleteHost(host_id, reply)).await
    }

    /// The role and scope of the operator who presented this certificate.
    pub async fn access(&self, caller: Caller) -> Result<Access, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Access(caller, reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)?
    }

    pub async fn add_operator(
        &self,
        caller: Caller,
        new: NewOperator,
    ) -> Result<OperatorRecord, InventoryError> {
        self.ask(|reply| Request::AddOperator(caller, new, reply))
            .await
    }

    pub async fn list_operators(&self) -> Result<Vec<OperatorRecord>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::ListOperators(reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)
    }

    pub async fn update_operator(
        &self,
        update: OperatorUpdate,
    ) -> Result<OperatorRecord, InventoryError> {
        self.ask(|reply| Request::UpdateOperator(update, reply))
            .await
    }

    /// Records a renewed certificate of the caller; durable before it returns.
    pub async fn add_operator_serial(
        &self,
        caller: Caller,
        serial: String,
    ) -> Result<(), InventoryError> {
        self.ask(|reply| Request::AddOperatorSerial(caller, serial, reply))
            .await
    }

    pub async fn revoke_operator(&self, name: String) -> Result<OperatorRecord, InventoryError> {
        self.ask(|reply| Request::RevokeOperator(name, reply)).await
    }

    pub async fn label_host(&self, change: LabelChange) -> Result<HostView, InventoryError> {
        self.ask(|reply| Request::LabelHost(change, reply)).await
    }

    /// Appends to the audit chain without waiting for it to be durable (sled
    /// writes it within 500 ms): for enrollment attempts, which must stay
    /// cheap to refuse.
    pub async fn note_audit(&self, entry: NewAuditEntry) {
        self.tell(Request::NoteAudit(entry)).await;
    }

    /// Appends to the audit chain; durable before it returns.
    pub async fn audit(&self, entry: NewAuditEntry) -> Result<(), InventoryError> {
        self.ask(|reply| Request::Audit(entry, reply)).await
    }

    /// The whole audit chain, as stored.
    pub async fn audit_entries(&self) -> Result<Vec<AuditEntry>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::AuditEntries(reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)?
    }

    /// Every record of the store, read between two batches of changes: a
    /// consistent copy for a backup.
    pub async fn snapshot(&self) -> Result<Vec<crate::store::backup::Record>, InventoryError> {
        self.ask(Request::Snapshot).await
    }

    /// Revokes the host's certificate; durable before it returns.
    pub async fn revoke_host(&self, host_id: String) -> Result<HostView, InventoryError> {
        self.ask(|reply| Request::RevokeHost(host_id, reply)).await
    }

    /// Records a renewed agent certificate; durable before it returns, so
    /// that the certificate is never handed out unrecorded.
    pub async fn renew(&self, renewal: Renewal) -> Result<(), InventoryError> {
        self.ask(|reply| Request::Renew(renewal, reply)).await
    }

    /// Removes a wave that is over; durable before it returns.
    pub async fn delete_wave(&self, name: String) -> Result<StatusView, InventoryError> {
        self.ask(|reply| Request::DeleteWave(name, reply)).await
    }

    pub async fn list_waves(&self) -> Result<Vec<StatusView>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::ListWaves(reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)
    }

    /// Registers a webhook; durable before it returns.
    pub async fn add_webhook(
        &self,
        new: NewWebhook,
    ) -> Result<crate::store::outbox::WebhookRecord, InventoryError> {
        self.ask(|reply| Request::AddWebhook(new, reply)).await
    }

    /// Removes a webhook; durable before it returns.
    pub async fn remove_webhook(
        &self,
        id: String,
    ) -> Result<crate::store::outbox::WebhookRecord, InventoryError> {
        self.ask(|reply| Request::RemoveWebhook(id, reply)).await
    }

    /// Every webhook, with how many events it is behind.
    pub async fn list_webhooks(
        &self,
    ) -> Result<Vec<(crate::store::outbox::WebhookRecord, u64)>, InventoryError> {
        self.ask(Request::ListWebhooks).await
    }

    /// What a webhook has not taken yet, at most `limit` events read.
    pub async fn pending_events(
        &self,
        id: String,
        limit: usize,
    ) -> Result<PendingEvents, InventoryError> {
        self.ask(|reply| Request::PendingEvents(id, limit, reply))
            .await
    }

    /// A webhook took every event up to `seq`.
    pub async fn delivered(&self, id: String, seq: u64) {
        self.tell(Request::Delivered(id, seq)).await;
    }

    pub async fn wave_why(&self, name: String, host_id: String) -> Result<WhyView, InventoryError> {
        self.ask(|reply| Request::WaveWhy(name, host_id, reply))
            .await
    }

    pub async fn get(&self, host_id: String) -> Result<Option<HostView>, InventoryError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Get(host_id, reply))
            .await
            .map_err(|_| InventoryError::Stopped)?;
        answer.await.map_err(|_| InventoryError::Stopped)
    }
}

/// A reply held back until the batch is durable.
type Pending = Box<dyn FnOnce(Result<(), InventoryError>) + Send>;

/// Answers once the batch is durable, so that nobody is told of a change a
/// crash could still lose; a refusal changed nothing and is answered at once.
fn reply_when_durable<T: Send + 'static>(
    pending: &mut Vec<Pending>,
    reply: Reply<T>,
    result: Result<T, InventoryError>,
) {
    match result {
        Ok(value) => pending.push(Box::new(move |flushed| {
            let _ = reply.send(flushed.map(|()| value));
        })),
        // A write the store refused (a full disk can fail the write itself,
        // not only the flush): answered after the batch's flush, which finds
        // the failure and puts the coordinator in read-only with its cause.
        Err(InventoryError::Store(e)) => pending.push(Box::new(move |flushed| {
            let _ = reply.send(Err(match flushed {
                Err(read_only) => read_only,
                Ok(()) => InventoryError::Store(e),
            }));
        })),
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

/// The task's state, by concern: hosts and their sessions (here), the latest
/// pre-check of each host (`prechecks.rs`), the latest job of each host
/// (`jobs.rs`), the waves (`waves/`); and what the batch will send.
struct State {
    /// By id, in order: a page of a list is a range, not a sort.
    hosts: BTreeMap<String, HostState>,
    next_session: SessionId,
    prechecks: prechecks::Prechecks,
    jobs: jobs::Jobs,
    /// Commands to send once the batch that recorded them is durable.
    deliveries: Vec<AgentCommand>,
    waves: waves::Waves,
    /// The earliest agent certificate expiry (unix ms), kept so that an
    /// enrollment storm does not scan every host per enrollment.
    earliest_agent_cert: Option<i64>,
    /// Shared with the TLS verifiers; only this task adds to it.
    revocations: Revocations,
    operators: operators::Operators,
    /// The last audit entry, which the next one chains to.
    audit_head: Option<AuditEntry>,
    /// When the backup this store was restored from was taken, if it was.
    restored_from_unix_ms: Option<i64>,
    outbox: outbox::Outbox,
    /// A periodic tick came in this batch: the store is flushed even if
    /// nothing else asked, so that a failing disk is found within a tick.
    ticked: bool,
    settings: Settings,
    store: Store,
    metrics: Metrics,
}

impl State {
    /// Everything the store holds, with the gauges counted from it.
    fn load(store: Store, metrics: Metrics, settings: Settings) -> Result<Self, InventoryError> {
        let mut state = State {
            hosts: BTreeMap::new(),
            next_session: 1,
            prechecks: prechecks::Prechecks::default(),
            jobs: jobs::Jobs::default(),
            deliveries: Vec::new(),
            waves: waves::Waves::default(),
            earliest_agent_cert: None,
            revocations: settings.revocations.clone(),
            operators: operators::Operators::default(),
            audit_head: None,
            restored_from_unix_ms: None,
            outbox: outbox::Outbox::default(),
            ticked: false,
            settings,
            store,
            metrics,
        };
        state.operators = operators::Operators::load(state.store.operators()?);
        state.audit_head = state.store.last_audit_entry()?;
        state.restored_from_unix_ms = state.store.restored_from()?;
        if let Some(head) = &state.audit_head {
            state.metrics.audit_entries.set(head.seq as i64);
        }
        for revoked in state.store.revoked()? {
            state.revocations.insert(revoked.serial);
        }
        state
            .metrics
            .revoked_certificates
            .set(state.revocations.len() as i64);
        for record in state.store.hosts()? {
            state.count_os(record.facts.as_ref(), 1);
            state.hosts.insert(
                record.id.clone(),
                HostState {
                    record,
                    session: None,
                },
            );
        }
        for (host_id, job) in state.store.jobs()? {
            if state.hosts.contains_key(&host_id) {
                state.count_job(None, Some(&job));
                state.jobs.replace(&host_id, job);
            }
        }
        for (host_id, precheck) in state.store.prechecks()? {
            if state.hosts.contains_key(&host_id) {
                state.count_precheck(None, Some(&precheck));
                state.prechecks.replace(&host_id, precheck);
            }
        }
        state.load_waves()?;
        state.outbox = outbox::Outbox::load(&state.store)?;
        state.publish_webhooks();
        state.export_agent_expiry();
        info!(hosts = state.hosts.len(), "inventory loaded");
        Ok(state)
    }
}

impl State {
    fn now(&self) -> i64 {
        self.settings.clock.now_unix_ms()
    }

    /// What operators see of a host: its record, session, pre-check and job.
    fn view(&self, host: &HostState) -> HostView {
        let id = &host.record.id;
        HostView {
            record: host.record.clone(),
            connected: host.session.is_some(),
            precheck: self.prechecks.get(id).cloned(),
            job: self.jobs.get(id).cloned(),
            verdict: self.verdict_of(&host.record),
        }
    }

    /// `view` without findings and job timelines: what a list shows, for a
    /// fraction of the copying (the verdict still reads the findings).
    fn brief_view(&self, host: &HostState) -> HostView {
        let id = &host.record.id;
        HostView {
            record: host.record.clone(),
            connected: host.session.is_some(),
            precheck: self.prechecks.get(id).map(PrecheckRecord::brief),
            job: self.jobs.get(id).map(Job::brief),
            verdict: self.verdict_of(&host.record),
        }
    }

    /// Ends when every handle is dropped.
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let mut pending: Vec<Pending> = Vec::new();
            let (reads, changes): (Vec<Request>, Vec<Request>) =
                batch.drain(..).partition(Request::only_reads);
            for command in changes {
                self.handle(command, &mut pending);
            }
            // Waves start hosts once per batch, after every job update in it.
            self.drive_waves();
            // A batch that queued commands is flushed before they leave.
            let ticked = std::mem::take(&mut self.ticked);
            if !pending.is_empty() || !self.deliveries.is_empty() || ticked {
                let started = Instant::now();
                let flushed = self.store.flush().await;
                self.metrics
                    .store_flush_seconds
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = &flushed {
                    self.storage_failed(e);
                }
                let durable = flushed.is_ok();
                let failure = self.settings.storage.cause();
                for reply in pending {
                    reply(match &failure {
                        None if durable => Ok(()),
                        Some(cause) => Err(InventoryError::ReadOnly(cause.clone())),
                        None => Err(InventoryError::Stopped),
                    });
                }
                // Write intent before acting: nothing is sent that is not on disk.
                for command in std::mem::take(&mut self.deliveries) {
                    if durable
                        && !self
                            .hosts
                            .get(&command.host_id)
                            .is_some_and(|h| h.deliver(command.clone()))
                    {
                        debug!(host_id = %command.host_id, "command kept for the next session");
                    }
                }
                for decided in self.waves.starts.drain(..) {
                    self.metrics
                        .wave_dispatch_latency_seconds
                        .observe(decided.elapsed().as_secs_f64());
                }
            }
            // Reads last, once the batch's changes are decided, durable and
            // sent: portals listing the fleet never delay a wave's next start
            // (and read what the batch changed).
            let mut none: Vec<Pending> = Vec::new();
            for command in reads {
                self.handle(command, &mut none);
            }
            debug_assert!(none.is_empty(), "a read asked for a flush");
            // Between batches, with nothing owed to anyone: the moment to
            // try the store again, once its directory takes writes.
            if ticked && self.settings.storage.cause().is_some() {
                match self.store.probe() {
                    Err(e) => debug!(cause = %e, "the data directory still takes no writes"),
                    Ok(()) => match self.reopened() {
                        Ok(state) => self = state,
                        Err(e) => {
                            error!(error = %e, "cannot open the store again after a storage failure: stopping");
                            return;
                        }
                    },
                }
            }
        }
        for host in self.hosts.values_mut() {
            if let Some(session) = host.session.take() {
                session.end.end(EndReason::Stopping);
            }
        }
        if let Err(e) = self.store.flush().await {
            error!(error = %e, "cannot flush the inventory at shutdown");
        }
        debug!("inventory stopped");
    }

    fn handle(&mut self, request: Request, pending: &mut Vec<Pending>) {
        match request {
            Request::Enroll(enrollment, reply) => {
                let result = self.enroll(enrollment);
                reply_when_durable(pending, reply, result);
            }
            Request::CheckToken(hash, host_id, reply) => {
                let now = self.now();
                let _ = reply.send(
                    self.store
                        .check_token(&hash, &host_id, now)
                        .map_err(InventoryError::from),
                );
            }
            Request::ListTokens(reply) => {
                let _ = reply.send(self.store.tokens().map_err(InventoryError::from));
            }
            Request::RevokeToken(prefix, reply) => {
                let result = self.revoke_token(&prefix);
                reply_when_durable(pending, reply, result);
            }
            Request::CreateToken(hash, token, reply) => {
                let record = token.record(self.now());
                let result = self
                    .store
                    .put_token(&hash, &record)
                    .map(|()| record)
                    .map_err(InventoryError::from);
                reply_when_durable(pending, reply, result);
            }
            Request::Connect(session, reply) => {
                let _ = reply.send(self.connect(session));
            }
            Request::Facts(host_id, session, facts) => self.update_facts(&host_id, session, facts),
            Request::Heartbeat(host_id, session, skew) => {
                let now = self.now();
                if let Some(host) = self.live(&host_id, session) {
                    host.record.last_seen_unix_ms = now;
                    if let Some(skew) = skew {
                        host.record.clock_skew_ms = skew;
                    }
                }
            }
            Request::Disconnect(host_id, session) => self.disconnect(&host_id, session),
            Request::List(selector, page, reply) => {
                use std::ops::Bound;
                let from = page
                    .after
                    .as_ref()
                    .map_or(Bound::Unbounded, |after| Bound::Excluded(after.clone()));
                let views = self
                    .hosts
                    .range((from, Bound::Unbounded))
                    .map(|(_, h)| h)
                    .filter(|h| h.picked_by(&selector))
                    .take(page.limit.unwrap_or(usize::MAX))
                    .map(|h| {
                        if page.brief {
                            self.brief_view(h)
                        } else {
                            self.view(h)
                        }
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Request::Get(host_id, reply) => {
                let _ = reply.send(self.hosts.get(&host_id).map(|h| self.view(h)));
            }
            Request::Precheck(selector, target, reply) => {
                let summary = self.precheck(&selector, target);
                reply_when_durable(pending, reply, Ok(summary));
            }
            Request::Update(host_id, update) => self.apply_update(&host_id, update),
            Request::Migrate(new, reply) => {
                let result = self.migrate(new);
                reply_when_durable(pending, reply, result);
            }
            Request::JobAction(host_id, action, reply) => {
                let result = self.job_action(&host_id, action);
                reply_when_durable(pending, reply, result);
            }
            Request::Tick(reply) => {
                self.ticked = true;
                self.tick();
                self.export_clock_skew();
                self.export_readiness();
                self.trim_outbox();
                self.stir_waves();
                if let Some(reply) = reply {
                    reply_when_durable(pending, reply, Ok(()));
                }
            }
            Request::AddWebhook(new, reply) => {
                let result = self.add_webhook(new);
                reply_when_durable(pending, reply, result);
            }
            Request::RemoveWebhook(id, reply) => {
                let result = self.remove_webhook(&id);
                reply_when_durable(pending, reply, result);
            }
            Request::ListWebhooks(reply) => {
                let _ = reply.send(Ok(self.list_webhooks()));
            }
            Request::PendingEvents(id, limit, reply) => {
                let _ = reply.send(self.pending_events(&id, limit));
            }
            Request::Delivered(id, seq) => self.delivered(&id, seq),
            Request::CreateWave(spec, CreateMode::DryRun, reply) => {
                // Nothing was recorded: there is nothing to make durable.
                let _ = reply.send(self.create_wave(*spec, CreateMode::DryRun));
            }
            Request::CreateWave(spec, CreateMode::Record, reply) => {
                let result = self.create_wave(*spec, CreateMode::Record);
                reply_when_durable(pending, reply, result);
            }
            Request::WavePlan(name, reply) => {
                let _ = reply.send(self.wave_plan(&name));
            }
            Request::WaveAction(name, action, by, reply) => {
                let result = self.wave_action(&name, action, &by);
                reply_when_durable(pending, reply, result);
            }
            Request::WaveHostAction(name, host, action, reply) => {
                let result = self.wave_host_action(&name, &host, action);
                reply_when_durable(pending, reply, result);
            }
            Request::WaveStatus(name, reply) => {
                let _ = reply.send(self.wave_status(&name));
            }
            Request::DeleteWave(name, reply) => {
                let result = self.delete_wave(&name);
                reply_when_durable(pending, reply, result);
            }
            Request::DeleteHost(host_id, reply) => {
                let result = self.delete_host(&host_id);
                reply_when_durable(pending, reply, result);
            }
            Request::RevokeHost(host_id, reply) => {
                let result = self.revoke_host(&host_id);
                reply_when_durable(pending, reply, result);
            }
            Request::Access(caller, reply) => {
                let _ = reply.send(self.operators.access(&caller));
            }
            Request::AddOperator(caller, new, reply) => {
                let result = self.add_operator(&caller, new);
                reply_when_durable(pending, reply, result);
            }
            Request::ListOperators(reply) => {
                let _ = reply.send(self.operators.list());
            }
            Request::UpdateOperator(update, reply) => {
                let result = self.update_operator(update);
                reply_when_durable(pending, reply, result);
            }
            Request::AddOperatorSerial(caller, serial, reply) => {
                let result = self.add_operator_serial(&caller, serial);
                reply_when_durable(pending, reply, result);
            }
            Request::RevokeOperator(name, reply) => {
                let result = self.revoke_operator(&name);
                reply_when_durable(pending, reply, result);
            }
            Request::LabelHost(change, reply) => {
                let result = self.label_host(change);
                reply_when_durable(pending, reply, result);
            }
            Request::Audit(entry, reply) => {
                let result = self.append_audit(entry);
                reply_when_durable(pending, reply, result);
            }
            Request::NoteAudit(entry) => {
                if let Err(e) = self.append_audit(entry) {
                    error!(error = %e, "cannot append to the audit chain");
                }
            }
            Request::AuditEntries(reply) => {
                let _ = reply.send(self.store.audit_entries().map_err(InventoryError::from));
            }
            Request::Snapshot(reply) => {
                let _ = reply.send(self.store.snapshot().map_err(InventoryError::from));
            }
            Request::Renew(renewal, reply) => {
                let result = self.renew(renewal);
                reply_when_durable(pending, reply, result);
            }
            Request::ListWaves(reply) => {
                let _ = reply.send(self.list_waves());
            }
            Request::WaveWhy(name, host, reply) => {
                let _ = reply.send(self.wave_why(&name, &host));
            }
            Request::Readiness(selector, reply) => {
                let _ = reply.send(readiness::report(
                    self.selected(&selector),
                    &self.settings.rebuild,
                ));
            }
            Request::ReadinessCounts(selector, reply) => {
                let _ = reply.send(ReadinessCounts::of(
                    self.selected(&selector),
                    &self.settings.rebuild,
                ));
            }
        }
    }
}

impl State {
    /// Why a host's clock keeps it from being sent work, if it does.
    pub(super) fn clock_refusal(&self, host_id: &str) -> Option<String> {
        let skew = self.hosts.get(host_id)?.record.clock_skew_ms;
        let limit = i64::try_from(self.settings.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
        (skew.abs() > limit).then(|| {
            format!(
                "its clock is {} {} ours, more than the {} allowed (max_clock_skew): set its time \
                 (chronyd or NTP) and it is sent work again",
                // To the second: the message's transit is not the skew.
                crate::clock::format_duration_ms((skew.abs() + 500) / 1000 * 1000),
                if skew > 0 { "ahead of" } else { "behind" },
                crate::clock::format_duration_ms(limit)
            )
        })
    }

    fn export_clock_skew(&self) {
        let limit = i64::try_from(self.settings.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
        let connected = self.hosts.values().filter(|h| h.session.is_some());
        let (skewed, worst) = connected.fold((0i64, 0i64), |(n, worst), h| {
            let skew = h.record.clock_skew_ms.abs();
            (n + i64::from(skew > limit), worst.max(skew))
        });
        self.metrics.hosts_clock_skewed.set(skewed);
        self.metrics
            .clock_skew_max_seconds
            .set(worst as f64 / 1000.0);
    }
}

impl State {
    fn append_audit(&mut self, entry: NewAuditEntry) -> Result<(), InventoryError> {
        let entry = AuditEntry::append(self.audit_head.as_ref(), entry, self.now());
        self.store.put_audit(&entry)?;
        self.metrics.audit_entries.set(entry.seq as i64);
        self.audit_head = Some(entry);
        Ok(())
    }

    fn revoke_token(&mut self, prefix: &str) -> Result<TokenRecord, InventoryError> {
        if prefix.len() < 8 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InventoryError::Invalid(
                "a token id is at least 8 hex digits (mfctl token list shows them)".into(),
            ));
        }
        match self.store.delete_token(prefix)? {
            Ok(record) => Ok(record),
            Err(0) => Err(InventoryError::Invalid(format!("no token {prefix}"))),
            Err(n) => Err(InventoryError::Invalid(format!(
                "{prefix} names {n} tokens: give more of the id"
            ))),
        }
    }
}

impl State {
    /// A write did not reach the disk: from now on changes are refused and
    /// nothing is sent, until [`State::recover`] finds the store writable.
    fn storage_failed(&mut self, error: &StoreError) {
        let cause = error.cause();
        if self.settings.storage.cause().is_none() {
            error!(cause = %cause, "cannot write the store: refusing changes until it can");
            self.metrics.store_failures.inc();
        }
        self.metrics.store_writable.set(0);
        self.settings.storage.failed(cause);
    }

    /// Once the data directory takes writes again: the store opened again
    /// and the state reloaded from it, as a restart would: what was not
    /// durable is gone (those who asked were told so), and the agents'
    /// sessions end so that each reconnects and says where it is.
    fn reopened(mut self) -> Result<State, InventoryError> {
        for host in self.hosts.values_mut() {
            if let Some(session) = host.session.take() {
                session.end.end(EndReason::Reloaded);
            }
        }
        let State {
            store,
            metrics,
            settings,
            next_session,
            ..
        } = self;
        // sled refuses every write after an I/O error until opened again;
        // only this task holds the store, so its lock goes with it here (a
        // moment later: the open waits for it).
        let dir = store.dir().to_path_buf();
        drop(store);
        metrics.reset_inventory_gauges();
        let mut fresh = State::load(Store::open(&dir)?, metrics, settings)?;
        fresh.next_session = next_session;
        fresh.metrics.store_writable.set(1);
        fresh.settings.storage.recovered();
        info!("the store takes writes again: state reloaded from it; agents reconnect");
        Ok(fresh)
    }
}

impl State {
    /// The hosts a selector picks, as the readiness report reads them.
    fn selected<'a>(
        &'a self,
        selection: &'a Selection,
    ) -> impl Iterator<Item = SelectedHost<'a>> + Clone + 'a {
        self.hosts
            .values()
            .filter(move |h| h.picked_by(selection))
            .map(|h| SelectedHost {
                id: &h.record.id,
                connected: h.session.is_some(),
                precheck: self.prechecks.get(&h.record.id),
                platform: platform(&h.record),
            })
    }

    /// Every host by verdict into the readiness gauge (each tick: a verdict
    /// moves with pre-checks, facts and the site's rules alike).
    fn export_readiness(&self) {
        let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        for h in self.hosts.values() {
            let verdict = readiness::verdict(
                platform(&h.record),
                self.prechecks.get(&h.record.id),
                &self.settings.rebuild,
            );
            *counts.entry(verdict.readiness.label()).or_default() += 1;
        }
        for label in ["ready", "blocked", "error", "unknown", "rebuild"] {
            self.metrics
                .hosts_by_readiness
                .with_label_values(&[label])
                .set(counts.get(label).copied().unwrap_or_default());
        }
    }

    /// A host's verdict, for its view.
    pub(super) fn verdict_of(&self, record: &HostRecord) -> readiness::Verdict {
        readiness::verdict(
            platform(record),
            self.prechecks.get(&record.id),
            &self.settings.rebuild,
        )
    }
}

/// A host's platform from its facts, once it reported an OS.
fn platform(record: &HostRecord) -> Option<readiness::Platform<'_>> {
    let facts = record.facts.as_ref()?;
    let os = facts.os.as_ref()?;
    Some(readiness::Platform {
        os: &os.id,
        version: &os.version,
        arch: &facts.arch,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod timing_tests;
