//! What the coordinator can ask of an agent, as the agent's own types: a phase
//! from a closed set with typed parameters, and the updates it answers with.
//! Converted from and to the wire in `wire.rs`.

use serde::{Deserialize, Serialize};

pub use mf_core::finding::Finding;
/// One run of one tool and the RHEL release it lands on: the core's type, the
/// same one the coordinator plans with.
pub use mf_core::path::{Step, Tool};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    Precheck(Step),
    Snapshot { job_id: String },
    Execute(Step),
    Reboot,
    Verify(Step),
    Commit,
    Rollback,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Precheck(_) => "precheck",
            Phase::Snapshot { .. } => "snapshot",
            Phase::Execute(_) => "execute",
            Phase::Reboot => "reboot",
            Phase::Verify(_) => "verify",
            Phase::Commit => "commit",
            Phase::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Precheck(step) | Phase::Execute(step) | Phase::Verify(step) => {
                write!(f, "{} ({step})", self.name())
            }
            Phase::Snapshot { job_id } => write!(f, "snapshot (job {job_id})"),
            Phase::Reboot | Phase::Commit | Phase::Rollback => f.write_str(self.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: String,
    pub host_id: String,
    pub sequence: u64,
    pub expires_unix_ms: i64,
    pub phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Started,
    Succeeded,
    Failed,
    Refused,
    Interrupted,
}

/// What the agent says about a command; the final one is journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub command_id: String,
    pub sequence: u64,
    pub state: State,
    pub detail: String,
    pub findings: Vec<Finding>,
    pub finished_unix_ms: i64,
}

impl Update {
    pub fn new(command: &Command, state: State, detail: impl Into<String>) -> Self {
        Self {
            command_id: command.id.clone(),
            sequence: command.sequence,
            state,
            detail: detail.into(),
            findings: Vec::new(),
            finished_unix_ms: if state == State::Started {
                0
            } else {
                now_unix_ms()
            },
        }
    }
}

pub fn now_unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
