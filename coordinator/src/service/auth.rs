//! Who is calling: the verified client certificate, read from the TLS session
//! of the request. Refusals are counted with the listener's name.

use crate::inventory::Caller;
use mf_core::access::Access;
use tonic::{Request, Status};

use crate::metrics::Metrics;
use mf_pki::{PeerIdentity, PeerRole, peer_identity};

/// The certificate the client presented, if any, verified by the TLS layer.
fn identity<T>(request: &Request<T>) -> Option<Result<PeerIdentity, Status>> {
    let certs = request.peer_certs()?;
    let leaf = certs.first()?;
    Some(peer_identity(leaf).map_err(|e| Status::unauthenticated(e.to_string())))
}

/// Which agent certificate made the call.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub host_id: String,
    pub serial: String,
    pub issued_unix_ms: i64,
}

/// An enrolled agent's host id and certificate.
pub fn agent<T>(request: &Request<T>, metrics: &Metrics) -> Result<AgentCaller, Status> {
    let refuse = |reason: &str, status: Status| {
        metrics.refused("agent", reason);
        Err(status)
    };
    match identity(request) {
        None => refuse(
            "no_certificate",
            Status::unauthenticated("a client certificate is required: enroll this agent first"),
        ),
        Some(Err(status)) => refuse("bad_certificate", status),
        Some(Ok(PeerIdentity {
            role: PeerRole::Agent { host_id },
            serial_hex,
            issued_unix_ms,
        })) => Ok(AgentCaller {
            host_id,
            serial: serial_hex,
            issued_unix_ms,
        }),
        Some(Ok(PeerIdentity { role, .. })) => refuse(
            "wrong_role",
            Status::permission_denied(format!("{role} cannot open an agent session")),
        ),
    }
}

/// The operator's name; anything else is refused.
pub fn operator<T>(request: &Request<T>, metrics: &Metrics) -> Result<String, Status> {
    caller(request, metrics).map(|c| c.name)
}

/// Who called through the REST face, authenticated there: a bearer token
/// already mapped to a role and scope, or an operator certificate. It travels
/// in the request's extensions, which no gRPC peer can set.
#[derive(Debug, Clone)]
pub enum ApiIdentity {
    Token(Access),
    Certificate(Caller),
}

/// Which operator certificate made the call: name and serial.
pub fn caller<T>(request: &Request<T>, metrics: &Metrics) -> Result<Caller, Status> {
    if let Some(ApiIdentity::Certificate(caller)) = request.extensions().get::<ApiIdentity>() {
        return Ok(caller.clone());
    }
    let refuse = |reason: &str, status: Status| {
        metrics.refused("admin", reason);
        Err(status)
    };
    match identity(request) {
        None => refuse(
            "no_certificate",
            Status::unauthenticated("an operator certificate is required"),
        ),
        Some(Err(status)) => refuse("bad_certificate", status),
        Some(Ok(PeerIdentity {
            role: PeerRole::Operator { name },
            serial_hex,
            ..
        })) => Ok(Caller {
            name,
            serial: serial_hex,
        }),
        Some(Ok(PeerIdentity { role, .. })) => refuse(
            "wrong_role",
            Status::permission_denied(format!("{role} cannot use the admin API")),
        ),
    }
}
