//! Errors as `application/problem+json` (RFC 9457): the HTTP status, a
//! stable `type` a portal can branch on, and in `detail` the same precise
//! reason `mfctl` prints.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:mf:problem:<kind>`: what went wrong, stable across releases.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong with this request, and what to do about it.
    pub detail: String,
    #[serde(skip)]
    challenge: Option<String>,
    /// Seconds, for a `Retry-After` header.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:mf:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            challenge: None,
            retry_after: None,
        }
    }

    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    /// A 401 with the `WWW-Authenticate` challenge of RFC 6750.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail.clone());
        let quoted = detail.replace(['"', '\\'], "'");
        problem.challenge = Some(format!(
            "Bearer error=\"invalid_token\", error_description=\"{quoted}\""
        ));
        problem
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The admin API's refusals, by their gRPC code: the same cause, the
/// HTTP status that says it.
impl From<tonic::Status> for Problem {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let (http, kind) = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "already-exists"),
            Code::FailedPrecondition | Code::Aborted => (StatusCode::CONFLICT, "conflict"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
            Code::Unauthenticated => return Problem::unauthenticated(status.message()),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "exhausted"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Problem::new(http, kind, status.message())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_keeps_its_reason_under_the_status_that_says_it() {
        let denied: Problem =
            tonic::Status::permission_denied("host b1 is outside the scope of operator x").into();
        assert_eq!(denied.status, 403);
        assert_eq!(denied.kind, "urn:mf:problem:forbidden");
        assert_eq!(denied.detail, "host b1 is outside the scope of operator x");
        let response = Problem::unauthenticated("the token has \"expired\"").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"the token has 'expired'\""
        );
        let unavailable: Problem = tonic::Status::unavailable("the store takes no writes").into();
        assert_eq!(unavailable.status, 503);
    }
}
