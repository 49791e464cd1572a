//! `/v1/hosts`: an owner's hosts with their readiness, one host's findings
//! written as what to change before relaunching, and a new pre-check.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_server::AdminService;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::Problem;
use super::{ApiState, Identity};
use crate::service::valid_host_id;

/// A page holds at most this many hosts.
pub const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;

/// Where a host stands for its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Its latest pre-check found nothing blocking.
    Ready,
    /// Something blocks it that the owner can change (see its findings).
    Blocked,
    /// No in-place path: rebuild it on the target release instead.
    Rebuild,
    /// The pre-check itself failed (the tool did not run or report).
    Error,
    /// Never pre-checked, or the pre-check is not finished.
    Unknown,
}

/// A migration of the host, as the latest job shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobSummary {
    pub id: String,
    pub target: String,
    /// running, succeeded, blocked, failed, rolled-back, held.
    pub state: String,
    /// precheck, snapshot, execute, reboot, verify, commit, rollback.
    pub phase: String,
    pub detail: String,
}

/// One host in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostSummary {
    pub id: String,
    pub connected: bool,
    /// os-release ID, e.g. "centos".
    pub os: Option<String>,
    pub version: Option<String>,
    pub arch: Option<String>,
    /// The labels an admin pinned on it (what scopes are evaluated over).
    pub labels: BTreeMap<String, String>,
    pub readiness: Verdict,
    /// Why it is blocked, needs a rebuild or failed its check, in one line.
    pub readiness_reason: Option<String>,
    /// The target of its latest pre-check, e.g. "rhel-8.10".
    pub precheck_target: Option<String>,
    /// A pre-check is requested or running.
    pub precheck_in_flight: bool,
    pub migration: Option<JobSummary>,
}

/// A page of hosts, sorted by id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostPage {
    pub items: Vec<HostSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A finding, with what to do about it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FindingView {
    /// Stable across hosts and runs.
    pub key: String,
    /// convert2rhel, leapp or agent.
    pub source: String,
    /// info, low, medium, high.
    pub severity: String,
    /// The migration cannot go on while it stands.
    pub blocking: bool,
    pub title: String,
    pub summary: String,
    /// What to change, in the tool's words.
    pub what_to_change: Vec<String>,
    /// Commands the tool suggests, one argv each.
    pub commands: Vec<Vec<String>>,
}

/// One host, with its findings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostDetail {
    #[serde(flatten)]
    pub host: HostSummary,
    /// The blocking findings first.
    pub findings: Vec<FindingView>,
    /// What to change before relaunching: one line per blocking finding.
    pub before_relaunching: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A Kubernetes label selector over labels and facts, as `mfctl hosts
    /// list -l` takes it, e.g. `app=billing,os=centos`.
    pub selector: Option<String>,
    /// At most this many hosts (1 to 500; 100 by default).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrecheckBody {
    /// The release to check the host against, e.g. "rhel-8.10".
    pub target: String,
}

/// What a pre-check request did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrecheckAccepted {
    pub host_id: String,
    pub target: String,
    /// sent (the agent is connected) or queued (sent when it connects).
    pub state: String,
    /// Follow the host here.
    pub host: String,
}

fn readiness_of(host: &pb::Host) -> (Verdict, Option<String>) {
    let verdict = match pb::Readiness::try_from(host.readiness) {
        Ok(pb::Readiness::Ready) => Verdict::Ready,
        Ok(pb::Readiness::Blocked) => Verdict::Blocked,
        Ok(pb::Readiness::Rebuild) => Verdict::Rebuild,
        Ok(pb::Readiness::Error) => Verdict::Error,
        _ => Verdict::Unknown,
    };
    let reason = Some(host.readiness_reason.clone()).filter(|r| !r.is_empty());
    (verdict, reason)
}

fn label<E: Copy>(
    value: i32,
    decode: impl Fn(i32) -> Option<E>,
    name: impl Fn(E) -> &'static str,
) -> String {
    decode(value).map_or("unknown", name).to_string()
}

pub fn job_summary(job: &pb::Job) -> JobSummary {
    JobSummary {
        id: job.id.clone(),
        target: job.target.clone(),
        state: label(
            job.state,
            |v| pb::JobState::try_from(v).ok(),
            |s| match s {
                pb::JobState::Running => "running",
                pb::JobState::Succeeded => "succeeded",
                pb::JobState::Blocked => "blocked",
                pb::JobState::Failed => "failed",
                pb::JobState::RolledBack => "rolled-back",
                pb::JobState::Held => "held",
                pb::JobState::Unspecified => "unknown",
            },
        ),
        phase: label(
            job.phase,
            |v| pb::JobPhase::try_from(v).ok(),
            |p| match p {
                pb::JobPhase::Precheck => "precheck",
                pb::JobPhase::Snapshot => "snapshot",
                pb::JobPhase::Execute => "execute",
                pb::JobPhase::Reboot => "reboot",
                pb::JobPhase::Verify => "verify",
                pb::JobPhase::Commit => "commit",
                pb::JobPhase::Rollback => "rollback",
                pb::JobPhase::Unspecified => "unknown",
            },
        ),
        detail: job.detail.clone(),
    }
}

fn summary(host: &pb::Host) -> HostSummary {
    let facts = host.facts.as_ref();
    let os = facts.and_then(|f| f.os.as_ref());
    let non_empty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    let (readiness, readiness_reason) = readiness_of(host);
    HostSummary {
        id: host.id.clone(),
        connected: host.connected,
        os: os.and_then(|o| non_empty(&o.id)),
        version: os.and_then(|o| non_empty(&o.version)),
        arch: facts.and_then(|f| non_empty(&f.arch)),
        labels: host.pinned_labels.clone().into_iter().collect(),
        readiness,
        readiness_reason,
        precheck_target: host.precheck.as_ref().and_then(|p| non_empty(&p.target)),
        precheck_in_flight: host
            .precheck
            .as_ref()
            .is_some_and(|p| !p.in_flight_target.is_empty()),
        migration: host.job.as_ref().map(job_summary),
    }
}

fn finding_view(finding: &pb::Finding) -> FindingView {
    let mut what_to_change = Vec::new();
    let mut commands = Vec::new();
    for remediation in &finding.remediations {
        match &remediation.kind {
            Some(pb::remediation::Kind::Hint(hint)) => what_to_change.push(hint.clone()),
            Some(pb::remediation::Kind::Command(command)) => commands.push(command.argv.clone()),
            Some(pb::remediation::Kind::Playbook(playbook)) => {
                what_to_change.push(format!("run the playbook {playbook}"));
            }
            None => {}
        }
    }
    FindingView {
        key: finding.key.clone(),
        source: label(
            finding.source,
            |v| pb::FindingSource::try_from(v).ok(),
            |s| match s {
                pb::FindingSource::Convert2rhel => "convert2rhel",
                pb::FindingSource::Leapp => "leapp",
                pb::FindingSource::Agent => "agent",
                pb::FindingSource::Unspecified => "unknown",
            },
        ),
        severity: label(
            finding.severity,
            |v| pb::Severity::try_from(v).ok(),
            |s| match s {
                pb::Severity::Info => "info",
                pb::Severity::Low => "low",
                pb::Severity::Medium => "medium",
                pb::Severity::High => "high",
                pb::Severity::Unspecified => "unknown",
            },
        ),
        blocking: finding.blocking,
        title: finding.title.clone(),
        summary: finding.summary.clone(),
        what_to_change,
        commands,
    }
}

fn host_id(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    let Path(id) = path.map_err(|e| Problem::bad_request("invalid", e.body_text()))?;
    if !valid_host_id(&id) {
        return Err(Problem::bad_request(
            "invalid",
            format!("{id:?} is not a host id"),
        ));
    }
    Ok(id)
}

/// An owner's hosts (those of their scope), with readiness.
#[utoipa::path(
    get, path = "/v1/hosts", tag = "hosts", params(ListQuery),
    responses(
        (status = 200, description = "A page of hosts", body = HostPage),
        (status = 400, description = "A selector, limit or cursor that does not parse", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not read hosts", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The API's read budget is spent: retry after the Retry-After seconds", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(api): State<ApiState>,
    identity: Identity,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<HostPage>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request("invalid", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid",
            format!("limit {limit}: give 1 to {MAX_PAGE}"),
        ));
    }
    let after = query.cursor.unwrap_or_default();
    if !after.is_empty() && !valid_host_id(&after) {
        return Err(Problem::bad_request(
            "invalid",
            "cursor: pass the next_cursor of the page before",
        ));
    }
    api.budget.spend(limit + 1).await?;
    // One more than asked tells whether a next page exists.
    let request = identity.call(pb::ListHostsRequest {
        selector: query.selector.unwrap_or_default(),
        after,
        limit: limit + 1,
        brief: true,
    });
    let mut hosts = api.admin.host_page(request).await?;
    let next_cursor = if hosts.len() > limit as usize {
        hosts.truncate(limit as usize);
        hosts.last().map(|h| h.id.clone())
    } else {
        None
    };
    Ok(Json(HostPage {
        items: hosts.iter().map(summary).collect(),
        next_cursor,
    }))
}

/// One host: readiness, and each finding with what to change.
#[utoipa::path(
    get, path = "/v1/hosts/{id}", tag = "hosts",
    params(("id" = String, Path, description = "The host's id")),
    responses(
        (status = 200, description = "The host", body = HostDetail),
        (status = 400, description = "Not a host id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the caller's scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such host", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The API's read budget is spent: retry after the Retry-After seconds", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(api): State<ApiState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<HostDetail>, Problem> {
    let id = host_id(path)?;
    api.budget.spend(super::budget::ONE_HOST).await?;
    let host = api
        .admin
        .get_host(identity.call(pb::GetHostRequest { host_id: id }))
        .await?
        .into_inner();
    let mut findings: Vec<FindingView> = host
        .precheck
        .iter()
        .flat_map(|p| p.findings.iter().map(finding_view))
        .collect();
    findings.sort_by_key(|f| !f.blocking);
    let before_relaunching = findings
        .iter()
        .filter(|f| f.blocking)
        .map(|f| match f.what_to_change.first() {
            Some(change) => format!("{}: {change}", f.title),
            None => format!("{}: {}", f.title, f.summary),
        })
        .collect();
    Ok(Json(HostDetail {
        host: summary(&host),
        findings,
        before_relaunching,
    }))
}

/// Asks for a pre-check of one host against a target.
#[utoipa::path(
    post, path = "/v1/hosts/{id}/precheck", tag = "hosts",
    params(("id" = String, Path, description = "The host's id")),
    request_body(content = PrecheckBody),
    responses(
        (status = 202, description = "Recorded, and sent to the agent now or when it connects", body = PrecheckAccepted),
        (status = 400, description = "A malformed body or target, or no path to it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the caller's scope, or a viewer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such host", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A pre-check or migration is already under way", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape: a missing, unknown or mistyped field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn precheck(
    State(api): State<ApiState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PrecheckBody>, JsonRejection>,
) -> Result<(StatusCode, Json<PrecheckAccepted>), Problem> {
    let id = host_id(path)?;
    let Json(body) = body.map_err(json_problem)?;
    // Reading the host first answers 404 or 403 for a host the caller
    // cannot see, where a selector would just select nothing.
    api.admin
        .get_host(identity.call(pb::GetHostRequest {
            host_id: id.clone(),
        }))
        .await?;
    let answer = api
        .admin
        .precheck(identity.call(pb::PrecheckRequest {
            selector: format!("id={id}"),
            target: body.target.clone(),
        }))
        .await?
        .into_inner();
    if let Some(refused) = answer.refused.first() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "refused",
            refused.reason.clone(),
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(PrecheckAccepted {
            state: if answer.dispatched > 0 {
                "sent"
            } else {
                "queued"
            }
            .into(),
            host: format!("/v1/hosts/{id}"),
            host_id: id,
            target: body.target,
        }),
    ))
}

/// A body that is not the JSON asked for: the parser's own words.
pub fn json_problem(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too-large"
    } else {
        "invalid"
    };
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is over {} bytes", super::MAX_BODY_BYTES)
        }
        _ => rejection.body_text(),
    };
    Problem::new(status, kind, detail)
}
