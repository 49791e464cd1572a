//! `/v1/migrations`: an owner asks for the migration of a host or of their
//! application. Each request becomes a wave under the site's self-service
//! rules (`policy.rs`) and its own scope, started at once, so the scheduler,
//! the windows, the budgets and the error budget that halts apply to it as to
//! any wave; operators see it as wave `req-...`.
//!
//! With an `Idempotency-Key`, the wave's name is derived from the caller and
//! the key: a retried request finds the wave its first attempt made (even
//! across a coordinator restart) instead of starting a second migration.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_server::AdminService;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::hosts::{JobSummary, job_summary, json_problem};
use super::problem::Problem;
use super::{ApiState, Identity, collect};
use crate::service::auth::ApiIdentity;
use crate::service::valid_host_id;

/// A request follows its hosts one by one up to this many; past it, counts.
const MAX_FOLLOWED_HOSTS: usize = 200;
const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationBody {
    /// One host to migrate; give this or `selector`.
    pub host_id: Option<String>,
    /// The hosts a label selector picks in the caller's scope, e.g.
    /// "app=billing"; give this or `host_id`.
    pub selector: Option<String>,
    /// The release to reach, e.g. "rhel-8.10".
    pub target: String,
}

/// A host left out of a request, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Excluded {
    pub host_id: String,
    pub reason: String,
}

/// One host of a request as it goes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MigrationHost {
    pub host_id: String,
    pub migration: Option<JobSummary>,
    /// What happened to its migration, oldest first (RFC 3339 times).
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub at: String,
    pub text: String,
}

/// A migration request and where it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MigrationView {
    /// Also the name of its wave.
    pub id: String,
    pub selector: String,
    pub target: String,
    /// created, running, paused, halted, cancelled, completed.
    pub state: String,
    /// Hosts by state (pending, running, succeeded, failed...).
    pub hosts: std::collections::BTreeMap<String, u32>,
    /// When its next host is expected to start (RFC 3339), if that can be told.
    pub expected_start: Option<String>,
    /// Why nothing starts now: a window, a freeze, a budget, a halt.
    pub waiting_because: Option<String>,
    pub halted_because: Option<String>,
    /// When the last host is expected to finish (RFC 3339).
    pub eta: Option<String>,
    /// The site's rules it runs under.
    pub policy: Vec<String>,
    /// Hosts selected but left out at creation (never pre-checked ready,
    /// no path...), with what to change.
    pub excluded: Vec<Excluded>,
    /// Each host with its phase and timeline (the first 200).
    pub followed: Vec<MigrationHost>,
}

fn time(unix_ms: i64) -> Option<String> {
    (unix_ms > 0)
        .then(|| jiff::Timestamp::from_millisecond(unix_ms).ok())
        .flatten()
        .map(|t| t.to_string())
}

fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

fn wave_state(state: i32) -> &'static str {
    match pb::WaveState::try_from(state) {
        Ok(pb::WaveState::Created) => "created",
        Ok(pb::WaveState::Running) => "running",
        Ok(pb::WaveState::Paused) => "paused",
        Ok(pb::WaveState::Halted) => "halted",
        Ok(pb::WaveState::Cancelled) => "cancelled",
        Ok(pb::WaveState::Completed) => "completed",
        _ => "unknown",
    }
}

fn host_state(state: i32) -> &'static str {
    use pb::WaveHostState as S;
    match S::try_from(state) {
        Ok(S::Excluded) => "excluded",
        Ok(S::Pending) => "pending",
        Ok(S::Running) => "running",
        Ok(S::Succeeded) => "succeeded",
        Ok(S::RolledBack) => "rolled-back",
        Ok(S::Failed) => "failed",
        Ok(S::Blocked) => "blocked",
        Ok(S::Aborted) => "aborted",
        Ok(S::Unreachable) => "unreachable",
        Ok(S::Skipped) => "skipped",
        Ok(S::NotStarted) => "not-started",
        _ => "unknown",
    }
}

/// Whether any host of the wave has left `pending`.
fn started(status: &pb::WaveStatus) -> bool {
    status.counts.iter().any(|c| {
        c.hosts > 0
            && !matches!(
                pb::WaveHostState::try_from(c.state),
                Ok(pb::WaveHostState::Pending
                    | pb::WaveHostState::Excluded
                    | pb::WaveHostState::NotStarted)
            )
    })
}

/// The wave's name: from the caller and the key when there is one.
fn request_id(identity: &Identity, key: Option<&str>) -> String {
    use std::fmt::Write;
    let bytes: Vec<u8> = match key {
        Some(key) => {
            let who = match &identity.0 {
                ApiIdentity::Token(access) => access.name.clone(),
                ApiIdentity::Certificate(caller) => caller.name.clone(),
            };
            ring::digest::digest(&ring::digest::SHA256, format!("{who}\n{key}").as_bytes()).as_ref()
                [..10]
                .to_vec()
        }
        None => {
            let mut random = [0u8; 10];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
            random.to_vec()
        }
    };
    bytes.iter().fold(String::from("req-"), |mut id, b| {
        let _ = write!(id, "{b:02x}");
        id
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_string()))
        }
        _ => Err(Problem::bad_request(
            "invalid",
            "Idempotency-Key: 1 to 255 visible ASCII characters",
        )),
    }
}

fn request_path(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(id) = path.map_err(|e| Problem::bad_request("invalid", e.body_text()))?;
    let well_formed = id.len() == 24
        && id.starts_with("req-")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !well_formed {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no migration request {id:?}"),
        ));
    }
    Ok(id)
}

async fn status(api: &ApiState, identity: &Identity, id: &str) -> Result<pb::WaveStatus, Problem> {
    Ok(api
        .admin
        .get_wave(identity.call(pb::WaveRef { name: id.into() }))
        .await?
        .into_inner())
}

/// The request as its caller follows it.
async fn view(
    api: &ApiState,
    identity: &Identity,
    status: pb::WaveStatus,
) -> Result<MigrationView, Problem> {
    let plans = collect(
        api.admin
            .plan_wave(identity.call(pb::WaveRef {
                name: status.name.clone(),
            }))
            .await?,
    )
    .await?;
    let members: Vec<String> = plans
        .iter()
        .flat_map(|p| p.stages.iter().flat_map(|s| s.hosts.iter().cloned()))
        .collect();
    let excluded = plans
        .iter()
        .flat_map(|p| p.excluded.iter())
        .map(|r| Excluded {
            host_id: r.host_id.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    let mut followed = Vec::new();
    for host_id in members.into_iter().take(MAX_FOLLOWED_HOSTS) {
        let host = api
            .admin
            .get_host(identity.call(pb::GetHostRequest {
                host_id: host_id.clone(),
            }))
            .await?
            .into_inner();
        // Only this request's job: an older one of the host is not its story.
        let job = host
            .job
            .filter(|j| j.created_unix_ms >= status.created_unix_ms);
        followed.push(MigrationHost {
            host_id,
            timeline: job
                .iter()
                .flat_map(|j| j.timeline.iter())
                .map(|t| TimelineEntry {
                    at: time(t.at_unix_ms).unwrap_or_default(),
                    text: t.text.clone(),
                })
                .collect(),
            migration: job.as_ref().map(job_summary),
        });
    }
    Ok(MigrationView {
        id: status.name,
        selector: status.selector,
        target: status.target,
        state: wave_state(status.state).into(),
        hosts: status
            .counts
            .iter()
            .map(|c| (host_state(c.state).to_string(), c.hosts))
            .collect(),
        expected_start: time(status.next_start_unix_ms),
        waiting_because: non_empty(status.waiting),
        halted_because: non_empty(status.halted_reason),
        eta: time(status.eta_unix_ms),
        policy: api.policy.describe(),
        excluded,
        followed,
    })
}

fn accepted(view: MigrationView) -> Response {
    let location = HeaderValue::from_str(&format!("/v1/migrations/{}", view.id)).ok();
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Requests the migration of a host, or of the hosts a selector picks in the
/// caller's scope, to a target, under the site's rules.
#[utoipa::path(
    post, path = "/v1/migrations", tag = "migrations",
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key from the same caller answers with the same request, never a second migration")),
    request_body(content = MigrationBody),
    responses(
        (status = 202, description = "Accepted: the request's state, when it is expected to start and why it waits", body = MigrationView, headers(("Location" = String, description = "Where to follow it"))),
        (status = 400, description = "A malformed body, selector or target, or no host selected", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A viewer, or a host outside the caller's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such host", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape (a missing, unknown or mistyped field), or an Idempotency-Key used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn request(
    State(api): State<ApiState>,
    identity: Identity,
    headers: HeaderMap,
    body: Result<Json<MigrationBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let Json(body) = body.map_err(json_problem)?;
    let selector = match (&body.host_id, &body.selector) {
        (Some(host_id), None) => {
            if !valid_host_id(host_id) {
                return Err(Problem::bad_request(
                    "invalid",
                    format!("{host_id:?} is not a host id"),
                ));
            }
            // 404 or 403 for a host the caller cannot see.
            api.admin
                .get_host(identity.call(pb::GetHostRequest {
                    host_id: host_id.clone(),
                }))
                .await?;
            format!("id={host_id}")
        }
        (None, Some(selector)) => selector.clone(),
        _ => {
            return Err(Problem::bad_request(
                "invalid",
                "give host_id or selector, one of them",
            ));
        }
    };
    let id = request_id(&identity, key.as_deref());
    let spec = api.policy.wave(&id, &selector, &body.target);
    match api.admin.create_wave(identity.call(spec)).await {
        Ok(plan) => {
            collect(plan).await?;
        }
        Err(status) if status.code() == tonic::Code::AlreadyExists && key.is_some() => {
            let existing = self::status(&api, &identity, &id).await?;
            if existing.selector != selector || existing.target != body.target {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency-key-reused",
                    format!(
                        "this Idempotency-Key was used for request {id} ({} to {}): use a new \
                         key for a new request",
                        existing.selector, existing.target
                    ),
                ));
            }
            // A retry after a start that never came: start it now.
            if existing.state != i32::from(pb::WaveState::Created) || !existing.waiting.is_empty() {
                return Ok(accepted(view(&api, &identity, existing).await?));
            }
        }
        Err(status) => return Err(status.into()),
    }
    let started = api
        .admin
        .wave_action(identity.call(pb::WaveActionRequest {
            name: id,
            action: pb::WaveAction::Start.into(),
            rollback: false,
        }))
        .await?
        .into_inner();
    Ok(accepted(view(&api, &identity, started).await?))
}

/// A request: its state, hosts, expected start, why it waits, its hosts'
/// phases and timelines.
#[utoipa::path(
    get, path = "/v1/migrations/{id}", tag = "migrations",
    params(("id" = String, Path, description = "The request's id (req-...)")),
    responses(
        (status = 200, description = "The request", body = MigrationView),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another scope's request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The API's read budget is spent: retry after the Retry-After seconds", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn follow(
    State(api): State<ApiState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MigrationView>, Problem> {
    let id = request_path(path)?;
    let status = status(&api, &identity, &id).await?;
    let members: u32 = status.stages.iter().map(|s| s.hosts).sum();
    let followed = members.min(MAX_FOLLOWED_HOSTS as u32);
    api.budget
        .spend(super::budget::ONE_HOST * (1 + followed))
        .await?;
    Ok(Json(view(&api, &identity, status).await?))
}

/// Cancels a request before any of its hosts started; once one has, only
/// an operator can stop it (`mfctl wave cancel --rollback`).
#[utoipa::path(
    delete, path = "/v1/migrations/{id}", tag = "migrations",
    params(("id" = String, Path, description = "The request's id (req-...)")),
    responses(
        (status = 200, description = "Cancelled: no host was started", body = MigrationView),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another scope's request, or a viewer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A host has started, or the request has ended", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(api): State<ApiState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MigrationView>, Problem> {
    let id = request_path(path)?;
    let action = |action: pb::WaveAction| {
        identity.call(pb::WaveActionRequest {
            name: id.clone(),
            action: action.into(),
            rollback: false,
        })
    };
    let mut current = status(&api, &identity, &id).await?;
    // Paused first, so that no host starts between the look and the cancel.
    let was_running = current.state == i32::from(pb::WaveState::Running);
    if was_running {
        current = api
            .admin
            .wave_action(action(pb::WaveAction::Pause))
            .await?
            .into_inner();
    }
    if started(&current) {
        if was_running {
            api.admin
                .wave_action(action(pb::WaveAction::Resume))
                .await?;
        }
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "started",
            format!(
                "request {id} has started migrating hosts: an operator can stop it \
                 (mfctl wave cancel {id} --rollback)"
            ),
        ));
    }
    let cancelled = api
        .admin
        .wave_action(action(pb::WaveAction::Cancel))
        .await?
        .into_inner();
    Ok(Json(view(&api, &identity, cancelled).await?))
}
