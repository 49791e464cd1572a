//! The admin listener, for operators only: tokens and the inventory.

use std::time::Duration;

use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::agent::inventory_status;
use super::parts::{self, PartStream};
use super::{auth, valid_host_id, waves};
use crate::audit::{self, NewAuditEntry};
use crate::inventory::{
    Caller, HostView, Inventory, LabelChange, NewOperator, OperatorUpdate, Page, PlanView,
    Selection,
};
use crate::inventory::{CreateMode, NewJob, NewToken};
use crate::inventory::{JobAction, NewWebhook, kinds};
use crate::metrics::Metrics;
use crate::storage_health::StorageHealth;
use crate::store::OperatorRecord;
use crate::store::outbox::WebhookRecord;
use crate::wire;
use mf_core::access::{Access, Denied, Role, Verb};
use mf_core::job::{Job, OnFailure};
use mf_core::path::{PathError, Target};
use mf_core::readiness::{ReadinessCounts, ReadinessReport};
use mf_core::selector::Selector;
use mf_pki::{CertificateAuthority, PkiError, token};
use std::sync::Arc;

pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The site's caps on bootstrap tokens (`token_max_ttl`, `token_max_uses`).
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    pub max_ttl: Duration,
    pub max_uses: u32,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            max_ttl: Duration::from_secs(30 * 24 * 3600),
            max_uses: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminApi {
    inventory: Inventory,
    metrics: Metrics,
    ca: Arc<CertificateAuthority>,
    tokens: TokenPolicy,
    /// How long operators' certificates live (`operator add`, `operator renew`).
    operator_lifetime: Duration,
    storage: StorageHealth,
}

impl AdminApi {
    pub fn new(
        inventory: Inventory,
        metrics: Metrics,
        ca: Arc<CertificateAuthority>,
        tokens: TokenPolicy,
        operator_lifetime: Duration,
        storage: StorageHealth,
    ) -> Self {
        Self {
            inventory,
            metrics,
            ca,
            tokens,
            operator_lifetime,
            storage,
        }
    }

    /// Who is asking, refused unless their role allows `verb` (and, for a
    /// verb over the whole fleet or identities, unless they are unscoped).
    /// A refusal is audited before it is answered.
    async fn access<T: std::fmt::Debug>(
        &self,
        request: &Request<T>,
        verb: Verb,
    ) -> Result<Access, Status> {
        self.access_of(request, verb)
            .await
            .map(|(access, _)| access)
    }

    /// `access`, with the certificate the caller presented (for the calls
    /// that record a certificate of theirs).
    async fn access_of<T: std::fmt::Debug>(
        &self,
        request: &Request<T>,
        verb: Verb,
    ) -> Result<(Access, Caller), Status> {
        let token = match request.extensions().get::<auth::ApiIdentity>() {
            Some(auth::ApiIdentity::Token(access)) => Some(access.clone()),
            _ => None,
        };
        let caller = match &token {
            // A token's identity has no certificate of its own to record.
            Some(access) => Caller {
                name: access.name.clone(),
                serial: String::new(),
            },
            None => auth::caller(request, &self.metrics)?,
        };
        let name = caller.name.clone();
        let resolved = match token {
            Some(access) => Ok(access),
            None => self.inventory.access(caller.clone()).await,
        };
        let access = match resolved {
            Ok(access) => access,
            Err(e) => {
                self.metrics.refused("admin", "no_role");
                let status = inventory_status(e);
                self.record(
                    &name,
                    "-",
                    verb,
                    audit_arguments(request.get_ref()),
                    &status,
                )
                .await?;
                return Err(status);
            }
        };
        if let Err(denied) = access.check(verb) {
            let status = self.denied(&denied);
            self.record(
                &access.name,
                access.role.label(),
                verb,
                audit_arguments(request.get_ref()),
                &status,
            )
            .await?;
            return Err(status);
        }
        // While the store takes no writes, only reads are served: a change
        // could not be made durable, and a backup would copy what is not.
        if !reads_only(verb)
            && let Some(cause) = self.storage.cause()
        {
            return Err(Status::unavailable(StorageHealth::refusal(&cause)));
        }
        Ok((access, caller))
    }

    /// Appends a refusal to the audit chain (durable before the answer).
    async fn record(
        &self,
        operator: &str,
        role: &str,
        verb: Verb,
        arguments: String,
        status: &Status,
    ) -> Result<(), Status> {
        self.inventory
            .audit(NewAuditEntry {
                operator: operator.to_string(),
                role: role.to_string(),
                verb: verb.label().to_string(),
                arguments,
                outcome: format!("refused: {}", status.message()),
            })
            .await
            .map_err(inventory_status)
    }

    /// Appends a state-changing call and its outcome to the audit chain;
    /// the call is answered only once that is durable.
    async fn audited(
        &self,
        access: &Access,
        verb: Verb,
        arguments: String,
        outcome: String,
    ) -> Result<(), Status> {
        self.inventory
            .audit(NewAuditEntry {
                operator: access.name.clone(),
                role: access.role.label().to_string(),
                verb: verb.label().to_string(),
                arguments,
                outcome,
            })
            .await
            .map_err(inventory_status)
    }

    fn denied(&self, denied: &Denied) -> Status {
        self.metrics.refused("admin", "denied");
        warn!(%denied, "admin call refused");
        Status::permission_denied(denied.to_string())
    }

    /// For a scoped operator: whether `host_id` is in their scope.
    async fn check_host(&self, access: &Access, verb: Verb, host_id: &str) -> Result<(), Status> {
        if access.scope.is_none() {
            return Ok(());
        }
        let view = self
            .inventory
            .get(host_id.to_string())
            .await
            .map_err(inventory_status)?
            .ok_or_else(|| Status::not_found(format!("no host {host_id}")))?;
        access
            .check_host(verb, host_id, &view.record.pinned_labels)
            .map_err(|denied| self.denied(&denied))
    }

    /// For a scoped operator: whether the wave is one of their scope (created
    /// by an operator of the same scope).
    async fn check_wave(&self, access: &Access, name: &str) -> Result<(), Status> {
        let Some(mine) = &access.scope else {
            return Ok(());
        };
        let status = self
            .inventory
            .wave_status(name.to_string())
            .await
            .map_err(inventory_status)?;
        if status.scope.as_ref() == Some(mine) {
            return Ok(());
        }
        Err(self.denied(&Denied::OutOfScope {
            name: access.name.clone(),
            scope: mine.to_string(),
            host: format!("of wave {name}"),
        }))
    }

    /// `ListHosts` answered whole rather than streamed: for the REST face,
    /// which sends a page in one answer anyway.
    pub async fn host_page(
        &self,
        request: Request<pb::ListHostsRequest>,
    ) -> Result<Vec<pb::Host>, Status> {
        let access = self.access(&request, Verb::ReadHosts).await?;
        let request = request.into_inner();
        let selector = Selector::parse(&request.selector)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let page = Page {
            after: Some(request.after).filter(|a| !a.is_empty()),
            limit: match request.limit {
                0 => None,
                n => Some(n as usize),
            },
            brief: request.brief,
        };
        let hosts = self
            .inventory
            .list_page(Self::selection(&access, selector), page)
            .await
            .map_err(inventory_status)?;
        Ok(hosts.into_iter().map(host_to_wire).collect())
    }

    fn selection(access: &Access, selector: Selector) -> Selection {
        Selection {
            selector,
            scope: access.scope.clone(),
        }
    }
}

fn token_to_wire((id, record): (String, crate::store::TokenRecord)) -> pb::TokenInfo {
    pb::TokenInfo {
        id: id.chars().take(16).collect(),
        host_id: record.host_id.unwrap_or_default(),
        created_unix_ms: record.created_unix_ms,
        expires_unix_ms: record.expires_unix_ms,
        uses: record.uses,
        uses_left: record.uses_left,
    }
}

/// How a call ended, for the audit.
fn outcome_of<T>(result: &Result<T, Status>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            format!("refused: {}", status.message())
        }
        Err(status) => format!("failed: {:?}: {}", status.code(), status.message()),
    }
}

/// A call's arguments for the audit: its message, at most 1,000 characters.
fn audit_arguments(request: &impl std::fmt::Debug) -> String {
    let text = format!("{request:?}");
    match text.char_indices().nth(1000) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn role_from_wire(value: i32) -> Result<Option<Role>, Status> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Viewer) => Ok(Some(Role::Viewer)),
        Ok(pb::Role::Operator) => Ok(Some(Role::Operator)),
        Ok(pb::Role::Admin) => Ok(Some(Role::Admin)),
        Err(_) => Err(Status::invalid_argument(format!("unknown role {value}"))),
    }
}

fn role_to_wire(role: Role) -> i32 {
    match role {
        Role::Viewer => pb::Role::Viewer,
        Role::Operator => pb::Role::Operator,
        Role::Admin => pb::Role::Admin,
    }
    .into()
}

fn operator_to_wire(record: OperatorRecord) -> pb::Operator {
    pb::Operator {
        name: record.name,
        role: role_to_wire(record.role),
        scope: record.scope.map(|s| s.to_string()).unwrap_or_default(),
        created_unix_ms: record.created_unix_ms,
        created_by: record.created_by,
        revoked_unix_ms: record.revoked_unix_ms,
        certificate_pem: String::new(),
        certificate_not_after_unix_ms: 0,
    }
}

fn scope_from_wire(text: &str) -> Result<Option<Selector>, Status> {
    match text.trim() {
        "" => Ok(None),
        text => Selector::parse(text)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("scope: {e}"))),
    }
}

pub fn host_to_wire(view: HostView) -> pb::Host {
    pb::Host {
        id: view.record.id,
        connected: view.connected,
        enrolled_unix_ms: view.record.enrolled_unix_ms,
        last_seen_unix_ms: view.record.last_seen_unix_ms,
        peer_address: view.record.last_peer,
        facts: view.record.facts.as_ref().map(wire::facts_to_wire),
        precheck: view.precheck.as_ref().map(wire::latest_precheck_to_wire),
        job: view.job.as_ref().map(job_to_wire),
        cert_not_after_unix_ms: view.record.cert_not_after_unix_ms,
        revoked_unix_ms: view.record.revoked_unix_ms,
        pinned_labels: view.record.pinned_labels.into_iter().collect(),
        clock_skew_ms: view.record.clock_skew_ms,
        readiness: wire::readiness_to_wire(view.verdict.readiness),
        readiness_reason: view.verdict.reason.unwrap_or_default(),
    }
}

pub fn job_to_wire(job: &Job) -> pb::Job {
    pb::Job {
        id: job.id.clone(),
        host_id: job.host_id.clone(),
        target: job.target.to_string(),
        steps: job.steps.iter().map(ToString::to_string).collect(),
        step_index: u32::try_from(job.step_index).unwrap_or(u32::MAX),
        phase: wire::job_phase_to_wire(job.phase),
        state: wire::job_state_to_wire(job.state),
        on_failure: wire::on_failure_to_wire(job.on_failure),
        detail: job.detail.clone(),
        findings: job.findings.iter().map(wire::finding_to_wire).collect(),
        timeline: job
            .timeline
            .iter()
            .map(|t| pb::TimelineEntry {
                at_unix_ms: t.at_unix_ms,
                text: t.text.clone(),
            })
            .collect(),
        created_unix_ms: job.created_unix_ms,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let access = self.access(&request, Verb::CreateToken).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::CreateTokenResponse>, Status> = async {
            let request = request.into_inner();
            let ttl = match request.ttl_seconds {
                0 => DEFAULT_TOKEN_TTL,
                s => Duration::from_secs(s),
            };
            if ttl > self.tokens.max_ttl {
                return Err(Status::invalid_argument(format!(
                    "a token lives at most {} here (token_max_ttl)",
                    humantime::format_duration(self.tokens.max_ttl)
                )));
            }
            let uses = match request.uses {
                0 => {
                    return Err(Status::invalid_argument(
                        "a token needs at least one use (--uses 1 or more)",
                    ));
                }
                n if n > self.tokens.max_uses => {
                    return Err(Status::invalid_argument(format!(
                        "a token has at most {} uses here (token_max_uses)",
                        self.tokens.max_uses
                    )));
                }
                n => n,
            };
            let host_id = match request.host_id.as_str() {
                "" => None,
                id if valid_host_id(id) => Some(id.to_string()),
                _ => return Err(Status::invalid_argument("invalid host id")),
            };
            let secret = token::generate();
            let record = self
                .inventory
                .create_token(
                    token::hash(&secret),
                    NewToken {
                        host_id: host_id.clone(),
                        ttl,
                        uses,
                    },
                )
                .await
                .map_err(inventory_status)?;
            let expires = record.expires_unix_ms;
            info!(%operator, host_id = host_id.as_deref().unwrap_or("*"), uses, ?ttl, "bootstrap token created");
            Ok(Response::new(pb::CreateTokenResponse {
                token: secret,
                host_id: host_id.unwrap_or_default(),
                expires_unix_ms: expires,
                uses,
            }))
        }
        .await;
        self.audited(&access, Verb::CreateToken, arguments, outcome_of(&result))
            .await?;
        result
    }

    type ListHostsStream = PartStream<pb::Host>;

    async fn list_hosts(
        &self,
        request: Request<pb::ListHostsRequest>,
    ) -> Result<Response<Self::ListHostsStream>, Status> {
        let hosts = self.host_page(request).await?;
        Ok(Response::new(parts::stream(hosts)))
    }

    async fn precheck(
        &self,
        request: Request<pb::PrecheckRequest>,
    ) -> Result<Response<pb::PrecheckResponse>, Status> {
        let access = self.access(&request, Verb::Precheck).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::PrecheckResponse>, Status> = async {
            let request = request.into_inner();
            let selector = Selector::parse(&request.selector)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let target: Target = request
                .target
                .parse()
                .map_err(|e: PathError| Status::invalid_argument(e.to_string()))?;
            let summary = self
                .inventory
                .precheck(Self::selection(&access, selector), target)
                .await
                .map_err(inventory_status)?;
            info!(
                %operator, selector = %request.selector, %target,
                dispatched = summary.dispatched, queued = summary.queued, refused = summary.refused.len(),
                "pre-check requested"
            );
            Ok(Response::new(pb::PrecheckResponse {
                dispatched: summary.dispatched,
                queued: summary.queued,
                refused: summary
                    .refused
                    .into_iter()
                    .map(|(host_id, reason)| pb::HostRefusal { host_id, reason })
                    .collect(),
            }))
        }
        .await;
        self.audited(&access, Verb::Precheck, arguments, outcome_of(&result))
            .await?;
        result
    }

    type ReadinessStream = PartStream<pb::ReadinessReport>;

    async fn readiness(
        &self,
        request: Request<pb::ReadinessRequest>,
    ) -> Result<Response<Self::ReadinessStream>, Status> {
        let access = self.access(&request, Verb::ReadHosts).await?;
        let selector = Selector::parse(&request.get_ref().selector)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let report = if request.get_ref().counts_only {
            let counts = self
                .inventory
                .readiness_counts(Self::selection(&access, selector))
                .await
                .map_err(inventory_status)?;
            pb::ReadinessReport {
                counts: Some(counts_to_wire(counts)),
                ..Default::default()
            }
        } else {
            let report = self
                .inventory
                .readiness(Self::selection(&access, selector))
                .await
                .map_err(inventory_status)?;
            readiness_to_wire(report)
        };
        Ok(Response::new(parts::stream(parts::readiness(
            report,
            parts::PART_BYTES,
        ))))
    }

    async fn migrate(
        &self,
        request: Request<pb::MigrateRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let access = self.access(&request, Verb::Migrate).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Job>, Status> = async {
            let request = request.into_inner();
            if !valid_host_id(&request.host_id) {
                return Err(Status::invalid_argument("invalid host id"));
            }
            let target: Target = request
                .target
                .parse()
                .map_err(|e: PathError| Status::invalid_argument(e.to_string()))?;
            let on_failure = wire::on_failure_from_wire(request.on_failure)
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .unwrap_or(OnFailure::Rollback);
            self.check_host(&access, Verb::Migrate, &request.host_id)
                .await?;
            let job = self
                .inventory
                .migrate(NewJob {
                    host_id: request.host_id.clone(),
                    target,
                    on_failure,
                    requested_by: operator.clone(),
                })
                .await
                .map_err(inventory_status)?;
            info!(%operator, host_id = %request.host_id, %target, job = %job.id, "migration started");
            Ok(Response::new(job_to_wire(&job)))
        }
        .await;
        self.audited(&access, Verb::Migrate, arguments, outcome_of(&result))
            .await?;
        result
    }

    async fn job_action(
        &self,
        request: Request<pb::JobActionRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let access = self.access(&request, Verb::DecideJob).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Job>, Status> = async {
            let request = request.into_inner();
            let action = match pb::JobAction::try_from(request.action) {
                Ok(pb::JobAction::Rollback) => JobAction::Rollback,
                Ok(pb::JobAction::Retry) => JobAction::Retry,
                _ => {
                    return Err(Status::invalid_argument(
                        "the job action is rollback or retry",
                    ));
                }
            };
            self.check_host(&access, Verb::DecideJob, &request.host_id)
                .await?;
            let job = self
                .inventory
                .job_action(request.host_id.clone(), action)
                .await
                .map_err(inventory_status)?;
            info!(%operator, host_id = %request.host_id, ?action, job = %job.id, "operator decision on a job");
            Ok(Response::new(job_to_wire(&job)))
        }
        .await;
        self.audited(&access, Verb::DecideJob, arguments, outcome_of(&result))
            .await?;
        result
    }

    type CreateWaveStream = PartStream<pb::WavePlan>;

    async fn create_wave(
        &self,
        request: Request<pb::WaveSpec>,
    ) -> Result<Response<Self::CreateWaveStream>, Status> {
        let verb = if request.get_ref().dry_run {
            Verb::PlanWave
        } else {
            Verb::RunWave
        };
        let access = self.access(&request, verb).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<Self::CreateWaveStream>, Status> = async {
            let (mut spec, mode) = waves::spec_from_wire(request.into_inner())?;
            // A scoped operator's wave takes only hosts of that scope.
            spec.scope.clone_from(&access.scope);
            let name = spec.name.clone();
            let plan = self
                .inventory
                .create_wave(spec, mode)
                .await
                .map_err(inventory_status)?;
            if mode == CreateMode::Record {
                info!(%operator, wave = %name, "wave created");
            }
            Ok(plan_parts(plan))
        }
        .await;
        self.audited(&access, verb, arguments, outcome_of(&result))
            .await?;
        result
    }

    type PlanWaveStream = PartStream<pb::WavePlan>;

    async fn plan_wave(
        &self,
        request: Request<pb::WaveRef>,
    ) -> Result<Response<Self::PlanWaveStream>, Status> {
        let access = self.access(&request, Verb::ReadWaves).await?;
        let name = waves::name(&request.into_inner().name)?;
        self.check_wave(&access, &name).await?;
        let plan = self
            .inventory
            .wave_plan(name)
            .await
            .map_err(inventory_status)?;
        Ok(plan_parts(plan))
    }

    async fn wave_action(
        &self,
        request: Request<pb::WaveActionRequest>,
    ) -> Result<Response<pb::WaveStatus>, Status> {
        let access = self.access(&request, Verb::RunWave).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::WaveStatus>, Status> = async {
            let request = request.into_inner();
            let name = waves::name(&request.name)?;
            self.check_wave(&access, &name).await?;
            let action = waves::action(&request)?;
            let status = self
                .inventory
                .wave_action_by(name.clone(), action, access.clone())
                .await
                .map_err(inventory_status)?;
            info!(%operator, wave = %name, ?action, "wave action");
            Ok(Response::new(waves::status_to_wire(status)))
        }
        .await;
        self.audited(&access, Verb::RunWave, arguments, outcome_of(&result))
            .await?;
        result
    }

    async fn wave_host_action(
        &self,
        request: Request<pb::WaveHostActionRequest>,
    ) -> Result<Response<pb::WaveStatus>, Status> {
        let access = self.access(&request, Verb::RunWave).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::WaveStatus>, Status> = async {
            let request = request.into_inner();
            let name = waves::name(&request.name)?;
            self.check_wave(&access, &name).await?;
            let host_id = waves::host(&request.host_id)?;
            let action = waves::host_action(request.action)?;
            let status = self
                .inventory
                .wave_host_action(name.clone(), host_id.clone(), action)
                .await
                .map_err(inventory_status)?;
            info!(%operator, wave = %name, %host_id, ?action, "wave host action");
            Ok(Response::new(waves::status_to_wire(status)))
        }
        .await;
        self.audited(&access, Verb::RunWave, arguments, outcome_of(&result))
            .await?;
        result
    }

    async fn get_wave(
        &self,
        request: Request<pb::WaveRef>,
    ) -> Result<Response<pb::WaveStatus>, Status> {
        let access = self.access(&request, Verb::ReadWaves).await?;
        let name = waves::name(&request.into_inner().name)?;
        self.check_wave(&access, &name).await?;
        let status = self
            .inventory
            .wave_status(name)
            .await
            .map_err(inventory_status)?;
        Ok(Response::new(waves::status_to_wire(status)))
    }

    async fn delete_wave(
        &self,
        request: Request<pb::WaveRef>,
    ) -> Result<Response<pb::WaveStatus>, Status> {
        let access = self.access(&request, Verb::RunWave).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::WaveStatus>, Status> = async {
            let name = waves::name(&request.into_inner().name)?;
            self.check_wave(&access, &name).await?;
            let status = self
                .inventory
                .delete_wave(name.clone())
                .await
                .map_err(inventory_status)?;
            info!(%operator, wave = %name, "wave deleted");
            Ok(Response::new(waves::status_to_wire(status)))
        }
        .await;
        self.audited(&access, Verb::RunWave, arguments, outcome_of(&result))
            .await?;
        result
    }

    type ListWavesStream = PartStream<pb::WaveStatus>;

    async fn list_waves(
        &self,
        request: Request<pb::ListWavesRequest>,
    ) -> Result<Response<Self::ListWavesStream>, Status> {
        let access = self.access(&request, Verb::ReadWaves).await?;
        let list = self
            .inventory
            .list_waves()
            .await
            .map_err(inventory_status)?;
        Ok(Response::new(parts::stream(
            list.into_iter()
                .filter(|w| access.scope.is_none() || w.scope == access.scope)
                .map(waves::status_to_wire)
                .collect(),
        )))
    }

    async fn why_wave(
        &self,
        request: Request<pb::WhyWaveRequest>,
    ) -> Result<Response<pb::WhyWaveResponse>, Status> {
        let access = self.access(&request, Verb::ReadWaves).await?;
        let request = request.into_inner();
        let name = waves::name(&request.name)?;
        self.check_wave(&access, &name).await?;
        let host_id = waves::host(&request.host_id)?;
        let why = self
            .inventory
            .wave_why(name, host_id)
            .await
            .map_err(inventory_status)?;
        Ok(Response::new(waves::why_to_wire(why)))
    }

    async fn delete_host(
        &self,
        request: Request<pb::GetHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        let access = self.access(&request, Verb::DeleteHost).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Host>, Status> = async {
            let host_id = request.into_inner().host_id;
            let view = self
                .inventory
                .delete_host(host_id.clone())
                .await
                .map_err(inventory_status)?;
            info!(%operator, %host_id, "host deleted");
            Ok(Response::new(host_to_wire(view)))
        }
        .await;
        self.audited(&access, Verb::DeleteHost, arguments, outcome_of(&result))
            .await?;
        result
    }

    async fn revoke_host(
        &self,
        request: Request<pb::GetHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        let access = self.access(&request, Verb::RevokeHost).await?;
        let operator = access.name.clone();
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Host>, Status> = async {
            let host_id = request.into_inner().host_id;
            if !valid_host_id(&host_id) {
                return Err(Status::invalid_argument("invalid host id"));
            }
            let view = self
                .inventory
                .revoke_host(host_id.clone())
                .await
                .map_err(inventory_status)?;
            warn!(%operator, %host_id, "host certificate revoked");
            Ok(Response::new(host_to_wire(view)))
        }
        .await;
        self.audited(&access, Verb::RevokeHost, arguments, outcome_of(&result))
            .await?;
        result
    }

    async fn get_host(
        &self,
        request: Request<pb::GetHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        let access = self.access(&request, Verb::ReadHosts).await?;
        let host_id = request.into_inner().host_id;
        match self
            .inventory
            .get(host_id.clone())
            .await
            .map_err(inventory_status)?
        {
            Some(view) => {
                access
                    .check_host(Verb::ReadHosts, &host_id, &view.record.pinned_labels)
                    .map_err(|denied| self.denied(&denied))?;
                Ok(Response::new(host_to_wire(view)))
            }
            None => Err(Status::not_found(format!("no host {host_id}"))),
        }
    }

    async fn label_host(
        &self,
        request: Request<pb::LabelHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        let access = self.access(&request, Verb::LabelHost).await?;
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Host>, Status> = async {
            let request = request.into_inner();
            if !valid_host_id(&request.host_id) {
                return Err(Status::invalid_argument("invalid host id"));
            }
            if request.set.len() + request.remove.len() > 64 {
                return Err(Status::invalid_argument("at most 64 labels at once"));
            }
            let view = self
                .inventory
                .label_host(LabelChange {
                    host_id: request.host_id.clone(),
                    set: request.set.into_iter().collect(),
                    remove: request.remove,
                })
                .await
                .map_err(inventory_status)?;
            info!(operator = %access.name, host_id = %request.host_id, labels = ?view.record.pinned_labels, "host labels pinned");
            Ok(Response::new(host_to_wire(view)))
        }
        .await;
        self.audited(&access, Verb::LabelHost, arguments, outcome_of(&result))
            .await?;
        result
    }

    async fn add_operator(
        &self,
        request: Request<pb::AddOperatorRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        let (access, caller) = self.access_of(&request, Verb::ManageOperators).await?;
        let arguments = format!(
            "name={} role={} scope={:?}",
            request.get_ref().name,
            request.get_ref().role,
            request.get_ref().scope
        );
        let result: Result<Response<pb::Operator>, Status> = async {
            let request = request.into_inner();
            let role = role_from_wire(request.role)?.ok_or_else(|| {
                Status::invalid_argument("a role is required: viewer, operator or admin")
            })?;
            let scope = scope_from_wire(&request.scope)?;
            if request.csr_der.len() > 16 * 1024 {
                return Err(Status::invalid_argument(
                    "the certificate signing request is too large",
                ));
            }
            let issued = match self.ca.issue_operator_for(
                &request.name,
                &request.csr_der,
                self.operator_lifetime,
            ) {
                Ok(issued) => issued,
                Err(e @ (PkiError::BadCsr(_) | PkiError::BadName(_))) => {
                    return Err(Status::invalid_argument(e.to_string()));
                }
                Err(e) => {
                    warn!(error = %e, "cannot sign an operator certificate");
                    return Err(Status::internal("cannot sign the certificate"));
                }
            };
            let record = self
                .inventory
                .add_operator(
                    caller,
                    NewOperator {
                        name: request.name.clone(),
                        role,
                        scope,
                        serial: issued.serial_hex.clone(),
                    },
                )
                .await
                .map_err(inventory_status)?;
            warn!(operator = %access.name, added = %record.name, role = %record.role, "operator added");
            let mut answer = operator_to_wire(record);
            answer.certificate_pem = issued.pem;
            answer.certificate_not_after_unix_ms = issued.not_after_unix_ms;
            Ok(Response::new(answer))
        }
        .await;
        self.audited(
            &access,
            Verb::ManageOperators,
            arguments,
            outcome_of(&result),
        )
        .await?;
        result
    }

    type ListOperatorsStream = PartStream<pb::Operator>;

    async fn list_operators(
        &self,
        request: Request<pb::ListOperatorsRequest>,
    ) -> Result<Response<Self::ListOperatorsStream>, Status> {
        self.access(&request, Verb::ListOperators).await?;
        let list = self
            .inventory
            .list_operators()
            .await
            .map_err(inventory_status)?;
        Ok(Response::new(parts::stream(
            list.into_iter().map(operator_to_wire).collect(),
        )))
    }

    async fn update_operator(
        &self,
        request: Request<pb::UpdateOperatorRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        let access = self.access(&request, Verb::ManageOperators).await?;
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Operator>, Status> = async {
            let request = request.into_inner();
            let update = OperatorUpdate {
                name: request.name.clone(),
                role: role_from_wire(request.role)?,
                scope: if request.set_scope {
                    Some(scope_from_wire(&request.scope)?)
                } else {
                    None
                },
            };
            let record = self
                .inventory
                .update_operator(update)
                .await
                .map_err(inventory_status)?;
            warn!(operator = %access.name, changed = %record.name, role = %record.role, "operator changed");
            Ok(Response::new(operator_to_wire(record)))
        }
        .await;
        self.audited(
            &access,
            Verb::ManageOperators,
            arguments,
            outcome_of(&result),
        )
        .await?;
        result
    }

    async fn revoke_operator(
        &self,
        request: Request<pb::OperatorRef>,
    ) -> Result<Response<pb::Operator>, Status> {
        let access = self.access(&request, Verb::ManageOperators).await?;
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Operator>, Status> = async {
            let name = request.into_inner().name;
            let record = self
                .inventory
                .revoke_operator(name)
                .await
                .map_err(inventory_status)?;
            warn!(operator = %access.name, revoked = %record.name, "operator revoked");
            Ok(Response::new(operator_to_wire(record)))
        }
        .await;
        self.audited(
            &access,
            Verb::ManageOperators,
            arguments,
            outcome_of(&result),
        )
        .await?;
        result
    }

    async fn renew_operator(
        &self,
        request: Request<pb::RenewOperatorRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        let (access, caller) = self.access_of(&request, Verb::RenewOwnCertificate).await?;
        let csr = request.into_inner().csr_der;
        let result: Result<Response<pb::Operator>, Status> = async {
            if csr.len() > 16 * 1024 {
                return Err(Status::invalid_argument(
                    "the certificate signing request is too large",
                ));
            }
            let issued = self
                .ca
                .issue_operator_for(&access.name, &csr, self.operator_lifetime)
                .map_err(|e| match e {
                    PkiError::BadCsr(_) | PkiError::BadName(_) => {
                        Status::invalid_argument(e.to_string())
                    }
                    _ => Status::internal("cannot sign the certificate"),
                })?;
            self.inventory
                .add_operator_serial(caller, issued.serial_hex.clone())
                .await
                .map_err(inventory_status)?;
            Ok(Response::new(pb::Operator {
                name: access.name.clone(),
                role: role_to_wire(access.role),
                scope: access
                    .scope
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                certificate_pem: issued.pem,
                certificate_not_after_unix_ms: issued.not_after_unix_ms,
                ..Default::default()
            }))
        }
        .await;
        self.audited(
            &access,
            Verb::RenewOwnCertificate,
            "renew my certificate".into(),
            outcome_of(&result),
        )
        .await?;
        result
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Operator>, Status> {
        let access = self.access(&request, Verb::ReadHosts).await?;
        Ok(Response::new(pb::Operator {
            name: access.name,
            role: role_to_wire(access.role),
            scope: access.scope.map(|s| s.to_string()).unwrap_or_default(),
            ..Default::default()
        }))
    }

    type ListTokensStream = PartStream<pb::TokenInfo>;

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<Self::ListTokensStream>, Status> {
        self.access(&request, Verb::ListTokens).await?;
        let tokens = self
            .inventory
            .list_tokens()
            .await
            .map_err(inventory_status)?;
        Ok(Response::new(parts::stream(
            tokens.into_iter().map(token_to_wire).collect(),
        )))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::TokenRef>,
    ) -> Result<Response<pb::TokenInfo>, Status> {
        let access = self.access(&request, Verb::ManageTokens).await?;
        let arguments = audit_arguments(request.get_ref());
        let id = request.into_inner().id;
        let result = self
            .inventory
            .revoke_token(id.clone())
            .await
            .map(|record| Response::new(token_to_wire((id, record))))
            .map_err(inventory_status);
        self.audited(&access, Verb::ManageTokens, arguments, outcome_of(&result))
            .await?;
        result
    }

    type ListAuditStream = PartStream<pb::AuditEntry>;

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<Self::ListAuditStream>, Status> {
        let access = self.access(&request, Verb::ReadAudit).await?;
        let request = request.into_inner();
        let entries = self
            .inventory
            .audit_entries()
            .await
            .map_err(inventory_status)?;
        // A scoped operator sees what they did themselves.
        let scoped = access.scope.is_some();
        Ok(Response::new(parts::stream(
            entries
                .into_iter()
                .filter(|e| e.at_unix_ms >= request.since_unix_ms)
                .filter(|e| request.operator.is_empty() || e.operator == request.operator)
                .filter(|e| !scoped || e.operator == access.name)
                .map(|e| pb::AuditEntry {
                    seq: e.seq,
                    at_unix_ms: e.at_unix_ms,
                    operator: e.operator,
                    role: e.role,
                    verb: e.verb,
                    arguments: e.arguments,
                    outcome: e.outcome,
                    previous_hash: e.previous_hash,
                    hash: e.hash,
                })
                .collect(),
        )))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::AuditVerdict>, Status> {
        self.access(&request, Verb::VerifyAudit).await?;
        let entries = self
            .inventory
            .audit_entries()
            .await
            .map_err(inventory_status)?;
        let head_hash = entries.last().map(|e| e.hash.clone()).unwrap_or_default();
        Ok(Response::new(match audit::verify(&entries) {
            Ok(n) => pb::AuditVerdict {
                entries: n,
                problem: String::new(),
                head_hash,
            },
            Err(chain_break) => pb::AuditVerdict {
                entries: entries.len() as u64,
                problem: chain_break.to_string(),
                head_hash,
            },
        }))
    }

    async fn add_webhook(
        &self,
        request: Request<pb::AddWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let access = self.access(&request, Verb::ManageWebhooks).await?;
        let arguments = audit_arguments(request.get_ref());
        let result: Result<Response<pb::Webhook>, Status> = async {
            let request = request.into_inner();
            crate::webhooks::check_url(&request.url).map_err(Status::invalid_argument)?;
            if request.events.len() > kinds::ALL.len() {
                return Err(Status::invalid_argument("too many event types"));
            }
            if let Some(unknown) = request.events.iter().find(|e| !kinds::ALL.contains(&e.as_str()))
            {
                return Err(Status::invalid_argument(format!(
                    "unknown event type {unknown:?}: one of {}",
                    kinds::ALL.join(", ")
                )));
            }
            let secret = crate::webhooks::new_secret().map_err(Status::internal)?;
            let record = self
                .inventory
                .add_webhook(NewWebhook {
                    url: request.url,
                    events: request.events,
                    secret: secret.clone(),
                    created_by: access.name.clone(),
                })
                .await
                .map_err(inventory_status)?;
            info!(operator = %access.name, webhook = %record.id, url = %record.url, "webhook added");
            let mut wire = webhook_to_wire((record, 0));
            // Shown once: it is how receivers know the events are ours.
            wire.secret = secret;
            Ok(Response::new(wire))
        }
        .await;
        self.audited(
            &access,
            Verb::ManageWebhooks,
            arguments,
            outcome_of(&result),
        )
        .await?;
        result
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        self.access(&request, Verb::ManageWebhooks).await?;
        let webhooks = self
            .inventory
            .list_webhooks()
            .await
            .map_err(inventory_status)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: webhooks.into_iter().map(webhook_to_wire).collect(),
        }))
    }

    async fn remove_webhook(
        &self,
        request: Request<pb::WebhookRef>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let access = self.access(&request, Verb::ManageWebhooks).await?;
        let arguments = audit_arguments(request.get_ref());
        let id = request.into_inner().id;
        let result = self
            .inventory
            .remove_webhook(id)
            .await
            .map(|record| Response::new(webhook_to_wire((record, 0))))
            .map_err(inventory_status);
        self.audited(
            &access,
            Verb::ManageWebhooks,
            arguments,
            outcome_of(&result),
        )
        .await?;
        result
    }

    type BackupStream = PartStream<pb::BackupChunk>;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let access = self.access(&request, Verb::Backup).await?;
        // Audited first, so the backup holds the line that says who took it.
        self.audited(&access, Verb::Backup, String::new(), "ok".into())
            .await?;
        let records = self.inventory.snapshot().await.map_err(inventory_status)?;
        info!(operator = %access.name, records = records.len(), "backup taken");
        let created = crate::clock::system().now_unix_ms();
        let chunks = crate::store::backup::chunks(records, created, parts::PART_BYTES)
            .map(|data| Ok(pb::BackupChunk { data }));
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

fn webhook_to_wire((record, pending): (WebhookRecord, u64)) -> pb::Webhook {
    pb::Webhook {
        id: record.id,
        url: record.url,
        events: record.events,
        created_unix_ms: record.created_unix_ms,
        created_by: record.created_by,
        secret: String::new(),
        pending_events: pending,
    }
}

/// The verbs that neither change anything nor copy the store.
fn reads_only(verb: Verb) -> bool {
    matches!(
        verb,
        Verb::ReadHosts
            | Verb::ReadWaves
            | Verb::ReadAudit
            | Verb::VerifyAudit
            | Verb::ListTokens
            | Verb::ListOperators
    )
}

fn plan_parts(plan: PlanView) -> Response<PartStream<pb::WavePlan>> {
    Response::new(parts::stream(parts::plan(
        waves::plan_to_wire(plan),
        parts::PART_BYTES,
    )))
}

fn counts_to_wire(counts: ReadinessCounts) -> pb::ReadinessCounts {
    pb::ReadinessCounts {
        hosts: counts.hosts,
        ready: counts.ready,
        blocked: counts.blocked,
        error: counts.error,
        unknown: counts.unknown,
        rebuild: counts.rebuild,
        in_flight: counts.in_flight,
        in_flight_disconnected: counts.in_flight_disconnected,
    }
}

fn readiness_to_wire(report: ReadinessReport) -> pb::ReadinessReport {
    pb::ReadinessReport {
        counts: Some(counts_to_wire(report.counts)),
        hosts: report
            .hosts
            .into_iter()
            .map(|host| pb::HostReadiness {
                precheck: host.precheck.as_ref().map(wire::latest_precheck_to_wire),
                host_id: host.id,
                verdict: wire::readiness_to_wire(host.verdict.readiness),
                verdict_reason: host.verdict.reason.unwrap_or_default(),
            })
            .collect(),
        findings: report
            .findings
            .into_iter()
            .map(|f| pb::FindingSummary {
                severity: wire::severity_to_wire(f.severity),
                remediations: f
                    .remediations
                    .iter()
                    .map(wire::remediation_to_wire)
                    .collect(),
                source: wire::source_to_wire(f.source),
                key: f.key,
                title: f.title,
                blocking: f.blocking,
                host_count: f.host_count,
                example_hosts: f.example_hosts,
            })
            .collect(),
    }
}
