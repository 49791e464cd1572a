//! How the inventory ends a live session, and why: the agent is told the
//! reason in the session's last message, so that a host deleted or revoked
//! while connected says so at once instead of finding out from a refused
//! handshake, whose alert TLS 1.3 delivers to the caller only some of the
//! time (ARCHITECTURE.md).

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// Why the inventory ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A newer session of the same host took its place.
    Replaced,
    /// The host was deleted: its certificates are revoked.
    HostDeleted,
    /// An operator revoked the host's certificate.
    HostRevoked,
    /// The host enrolled again: the certificate of this session is revoked.
    EnrolledAgain,
    /// The coordinator is stopping.
    Stopping,
    /// The coordinator reloaded its state (its data directory came back
    /// after a storage failure): the agent reconnects and says where it is.
    Reloaded,
}

impl EndReason {
    /// Whether the session's certificate is revoked by this ending.
    pub fn revokes(self) -> bool {
        matches!(
            self,
            EndReason::HostDeleted | EndReason::HostRevoked | EndReason::EnrolledAgain
        )
    }

    /// What the agent is told; a revoking one says "was revoked", which the
    /// agent recognizes.
    pub fn message(self) -> &'static str {
        match self {
            EndReason::Replaced => "replaced by a newer session of this host",
            EndReason::HostDeleted => "this agent's certificate was revoked: the host was deleted",
            EndReason::HostRevoked => {
                "this agent's certificate was revoked by an operator (mfctl hosts revoke)"
            }
            EndReason::EnrolledAgain => {
                "this agent's certificate was revoked: the host enrolled again with another one"
            }
            EndReason::Stopping => "the coordinator is shutting down",
            EndReason::Reloaded => "the coordinator reloaded its state: reconnect",
        }
    }
}

/// Shared by a session's task (which waits on it) and the inventory (which
/// ends it); the first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct SessionEnd {
    token: CancellationToken,
    reason: Arc<OnceLock<EndReason>>,
}

impl SessionEnd {
    pub fn end(&self, reason: EndReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub fn is_ended(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn reason(&self) -> Option<EndReason> {
        self.reason.get().copied()
    }

    /// Resolves when the session is ended, with why; cancel-safe.
    pub async fn ended(&self) -> EndReason {
        self.token.cancelled().await;
        self.reason().unwrap_or(EndReason::Replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_given_is_the_one_told() {
        let end = SessionEnd::default();
        let waiting = end.clone();
        assert!(!end.is_ended());
        end.end(EndReason::HostDeleted);
        end.end(EndReason::Replaced);
        assert_eq!(waiting.ended().await, EndReason::HostDeleted);
        assert!(EndReason::HostDeleted.revokes());
        assert!(EndReason::HostDeleted.message().contains("was revoked"));
        assert!(!EndReason::Replaced.revokes());
    }
}
