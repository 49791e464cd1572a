//! What the coordinator asks of an agent (a phase from a closed set with typed
//! parameters) and what the agent answers, in the coordinator's terms.

use crate::finding::{Finding, InvalidFinding, MAX_FINDINGS};
use crate::path::Step;

/// An agent's report on a command, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandUpdate {
    pub command_id: String,
    pub sequence: u64,
    pub state: UpdateState,
    pub detail: String,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    Started,
    Succeeded,
    Failed,
    Refused,
    Interrupted,
}

impl UpdateState {
    pub fn label(self) -> &'static str {
        match self {
            UpdateState::Started => "started",
            UpdateState::Succeeded => "succeeded",
            UpdateState::Failed => "failed",
            UpdateState::Refused => "refused",
            UpdateState::Interrupted => "interrupted",
        }
    }
}

/// What a command asks of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandPhase {
    Precheck(Step),
    Snapshot { job_id: String },
    Execute(Step),
    Reboot,
    Verify(Step),
    Commit,
    Rollback,
}

/// A command for an agent, in the coordinator's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    pub id: String,
    pub host_id: String,
    pub sequence: u64,
    pub expires_unix_ms: i64,
    pub phase: CommandPhase,
}

const MAX_DETAIL: usize = 16 * 1024;
const MAX_COMMAND_ID: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid command update: {0}")]
pub struct InvalidUpdate(pub String);

impl From<InvalidFinding> for InvalidUpdate {
    fn from(e: InvalidFinding) -> Self {
        InvalidUpdate(e.0)
    }
}

impl CommandUpdate {
    /// Checks every limit of an update an agent sent.
    pub fn validate(&self) -> Result<(), InvalidUpdate> {
        if self.command_id.len() > MAX_COMMAND_ID {
            return Err(InvalidUpdate(format!(
                "the command id is longer than {MAX_COMMAND_ID} bytes"
            )));
        }
        if self.detail.len() > MAX_DETAIL {
            return Err(InvalidUpdate(format!(
                "the detail is longer than {MAX_DETAIL} bytes"
            )));
        }
        if self.findings.len() > MAX_FINDINGS {
            return Err(InvalidUpdate(format!("more than {MAX_FINDINGS} findings")));
        }
        self.findings.iter().try_for_each(Finding::validate)?;
        Ok(())
    }
}
