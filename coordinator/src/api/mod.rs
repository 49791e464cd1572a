//! The REST/JSON face for portals (`--api-listen`, off by default): HTTPS on
//! the coordinator's server certificate, `/v1/...`, described by the OpenAPI
//! document generated from this code (`openapi.rs`).
//!
//! Every handler is an adapter over the admin API (`service::admin`): the
//! caller's identity (a bearer token mapped by `oidc.rs`, or an operator
//! certificate) travels to it in the request's extensions, so both faces
//! share one role and scope check, one audit, one validation and the same
//! reasons.

pub mod budget;
pub mod hosts;
pub mod migrations;
pub mod oidc;
pub mod openapi;
pub mod policy;
pub mod problem;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::{header, request::Parts};
use axum::routing::{get, post};
use rustls::pki_types::CertificateDer;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::inventory::Caller;
use crate::metrics::Metrics;
use crate::service::admin::AdminApi;
use crate::service::auth::ApiIdentity;
use crate::service::parts::PartStream;
use crate::tls::Connection;
use mf_pki::{PeerIdentity, PeerRole};
use oidc::Oidc;
use policy::SelfServicePolicy;
use problem::Problem;

/// A request body larger than this is refused (413) unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub admin: AdminApi,
    pub oidc: Option<Arc<Oidc>>,
    pub policy: Arc<SelfServicePolicy>,
    pub metrics: Metrics,
    /// Host records the API may read a second (`api_reads_per_second`).
    pub budget: Arc<budget::ReadBudget>,
}

/// The routes of `/v1`, with the body limit.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/hosts", get(hosts::list))
        .route("/v1/hosts/{id}", get(hosts::get))
        .route("/v1/hosts/{id}/precheck", post(hosts::precheck))
        .route("/v1/migrations", post(migrations::request))
        .route(
            "/v1/migrations/{id}",
            get(migrations::follow).delete(migrations::cancel),
        )
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::add))
        .route("/v1/webhooks/{id}", axum::routing::delete(webhooks::remove))
        .fallback(|| async {
            Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "not-found",
                "no such resource: see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The peer of a connection: its address and the client certificate it
/// presented, if any (verified by the TLS layer against our CA and the
/// deny-list).
#[derive(Debug, Clone)]
pub struct Peer {
    pub address: Option<SocketAddr>,
    pub certificate: Option<CertificateDer<'static>>,
}

/// The connections that completed a TLS handshake on the API listener.
pub struct TlsListener {
    incoming: tokio_stream::wrappers::ReceiverStream<Result<Connection, std::io::Error>>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(connection)) => {
                    let address = connection.get_ref().get_ref().0.peer_addr();
                    return (connection, address.unwrap_or(self.local));
                }
                Some(Err(_)) => continue,
                // Shutdown: the server stops through its graceful signal.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        let tls = stream.io().get_ref().get_ref().1;
        Peer {
            address: Some(*stream.remote_addr()),
            certificate: tls
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.clone().into_owned()),
        }
    }
}

/// Serves the API on connections from `incoming` until `shutdown`.
pub async fn serve(
    incoming: tokio_stream::wrappers::ReceiverStream<Result<Connection, std::io::Error>>,
    local: SocketAddr,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<Peer>();
    axum::serve(TlsListener { incoming, local }, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Who is calling: a bearer token if there is one, else the client
/// certificate of the connection.
#[derive(Debug, Clone)]
pub struct Identity(pub ApiIdentity);

impl FromRequestParts<ApiState> for Identity {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let refuse = |reason: &str, problem: Problem| {
            state.metrics.refused("api", reason);
            Err(problem)
        };
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let Some(token) = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
            else {
                return refuse(
                    "bad_token",
                    Problem::unauthenticated("write the header as Authorization: Bearer <token>"),
                );
            };
            let Some(oidc) = &state.oidc else {
                return refuse(
                    "bad_token",
                    Problem::unauthenticated(
                        "this coordinator accepts no bearer tokens ([oidc] is not configured): \
                         use an operator certificate",
                    ),
                );
            };
            return match oidc.verify(token).await {
                Ok(access) => Ok(Identity(ApiIdentity::Token(access))),
                Err(refused) => refuse("bad_token", Problem::unauthenticated(refused.to_string())),
            };
        }
        let certificate = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .and_then(|peer| peer.0.certificate.clone());
        match certificate.map(|c| mf_pki::peer_identity(&c)) {
            None => refuse(
                "no_credentials",
                Problem::unauthenticated(
                    "a bearer token (Authorization: Bearer <token>) or an operator certificate \
                     is required",
                ),
            ),
            Some(Err(e)) => refuse("bad_certificate", Problem::unauthenticated(e.to_string())),
            Some(Ok(PeerIdentity {
                role: PeerRole::Operator { name },
                serial_hex,
                ..
            })) => Ok(Identity(ApiIdentity::Certificate(Caller {
                name,
                serial: serial_hex,
            }))),
            Some(Ok(PeerIdentity { role, .. })) => refuse(
                "wrong_role",
                Problem::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("{role} cannot use the API"),
                ),
            ),
        }
    }
}

impl Identity {
    /// `message` as a call of the admin API by this caller.
    pub fn call<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.0.clone());
        request
    }
}

/// Every part of an answer the admin API streams.
pub async fn collect<T>(stream: tonic::Response<PartStream<T>>) -> Result<Vec<T>, Problem> {
    let mut stream = stream.into_inner();
    let mut parts = Vec::new();
    while let Some(part) = stream.next().await {
        parts.push(part?);
    }
    Ok(parts)
}
