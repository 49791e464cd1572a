//! `/v1/webhooks`: where events go (admins), as `mfctl webhook` does it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_server::AdminService;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::hosts::json_problem;
use super::problem::Problem;
use super::{ApiState, Identity};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// http:// or https:// (verified against the system's CAs).
    pub url: String,
    /// CloudEvents types to deliver (`dev.migration-factory.precheck.finished`,
    /// `.job.state-changed`, `.wave.halted`, `.wave.completed`,
    /// `.host.enrolled`, `.host.lost`); all when absent or empty.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A webhook; `secret` only in the answer that created it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_by: String,
    /// Events recorded after the last one it took.
    pub pending_events: u64,
    /// The HMAC-SHA256 key of its signatures (Standard Webhooks): shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn view(w: pb::Webhook) -> WebhookView {
    WebhookView {
        secret: Some(w.secret).filter(|s| !s.is_empty()),
        id: w.id,
        url: w.url,
        events: w.events,
        created_by: w.created_by,
        pending_events: w.pending_events,
    }
}

/// Registers a webhook: signed CloudEvents from now on.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = WebhookBody),
    responses(
        (status = 201, description = "Registered; the secret is in this answer only", body = WebhookView),
        (status = 400, description = "A malformed body, URL or event type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an unscoped admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A webhook delivers to that URL already", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape: a missing, unknown or mistyped field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add(
    State(api): State<ApiState>,
    identity: Identity,
    body: Result<Json<WebhookBody>, JsonRejection>,
) -> Result<(StatusCode, Json<WebhookView>), Problem> {
    let Json(body) = body.map_err(json_problem)?;
    let added = api
        .admin
        .add_webhook(identity.call(pb::AddWebhookRequest {
            url: body.url,
            events: body.events,
        }))
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(view(added))))
}

/// The webhooks.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Every webhook", body = Vec<WebhookView>),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an unscoped admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(api): State<ApiState>,
    identity: Identity,
) -> Result<Json<Vec<WebhookView>>, Problem> {
    let list = api
        .admin
        .list_webhooks(identity.call(pb::ListWebhooksRequest {}))
        .await?
        .into_inner();
    Ok(Json(list.webhooks.into_iter().map(view).collect()))
}

/// Stops delivering to a webhook.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id (wh-...)")),
    responses(
        (status = 200, description = "Removed", body = WebhookView),
        (status = 401, description = "No credentials, or a token refused", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an unscoped admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(api): State<ApiState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<WebhookView>, Problem> {
    let Path(id) = path.map_err(|e| Problem::bad_request("invalid", e.body_text()))?;
    let removed = api
        .admin
        .remove_webhook(identity.call(pb::WebhookRef { id }))
        .await?
        .into_inner();
    Ok(Json(view(removed)))
}
