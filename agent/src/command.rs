//! What the coordinator can ask of an agent and what the agent answers: the
//! core's types, the same on both ends of the wire (converted in `wire.rs`).

pub use mf_core::command::{AgentCommand, CommandPhase, CommandUpdate, UpdateState};
pub use mf_core::finding::Finding;
/// One run of one tool and the RHEL release it lands on: the core's type, the
/// same one the coordinator plans with.
pub use mf_core::path::{Step, Tool};

/// The agent's wall clock, for expiries and the times it reports.
pub fn now_unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
