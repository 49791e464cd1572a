//! What the coordinator asks of an agent (a phase from a closed set with typed
//! parameters) and what the agent answers: one set of types for both ends.

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, InvalidFinding, MAX_FINDINGS};
use crate::path::Step;

/// What an agent says about a command; the final one is journaled by the
/// agent and validated by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandUpdate {
    pub command_id: String,
    pub sequence: u64,
    pub state: UpdateState,
    pub detail: String,
    pub findings: Vec<Finding>,
    /// When the command ended on the agent's clock; 0 while it runs.
    pub finished_unix_ms: i64,
}

impl CommandUpdate {
    /// An update for `command`; `finished_unix_ms` is the caller's clock
    /// reading for a final state (0 for `Started`).
    pub fn new(
        command: &AgentCommand,
        state: UpdateState,
        detail: impl Into<String>,
        finished_unix_ms: i64,
    ) -> Self {
        Self {
            command_id: command.id.clone(),
            sequence: command.sequence,
            state,
            detail: detail.into(),
            findings: Vec::new(),
            finished_unix_ms: if state == UpdateState::Started {
                0
            } else {
                finished_unix_ms
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateState {
    Started,
    Succeeded,
    Failed,
    Refused,
    Interrupted,
}

closed_set!(UpdateState, "a command state", {
    UpdateState::Started => "started",
    UpdateState::Succeeded => "succeeded",
    UpdateState::Failed => "failed",
    UpdateState::Refused => "refused",
    UpdateState::Interrupted => "interrupted",
});

/// What a command asks of an agent: a phase from a closed set with typed
/// parameters. There is no phase that runs an arbitrary command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum CommandPhase {
    Precheck(Step),
    Snapshot { job_id: String },
    Execute(Step),
    Reboot,
    Verify(Step),
    Commit,
    Rollback,
}

impl CommandPhase {
    pub fn name(&self) -> &'static str {
        match self {
            CommandPhase::Precheck(_) => "precheck",
            CommandPhase::Snapshot { .. } => "snapshot",
            CommandPhase::Execute(_) => "execute",
            CommandPhase::Reboot => "reboot",
            CommandPhase::Verify(_) => "verify",
            CommandPhase::Commit => "commit",
            CommandPhase::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for CommandPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandPhase::Precheck(step)
            | CommandPhase::Execute(step)
            | CommandPhase::Verify(step) => {
                write!(f, "{} ({step})", self.name())
            }
            CommandPhase::Snapshot { job_id } => write!(f, "snapshot (job {job_id})"),
            CommandPhase::Reboot | CommandPhase::Commit | CommandPhase::Rollback => {
                f.write_str(self.name())
            }
        }
    }
}

/// A command for an agent: the same type on both ends of the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// The update within the limits `validate` checks, as an agent sends it:
    /// one over them is refused whole, and an agent repeats its last update
    /// at every hello (a journal written by an older agent included).
    pub fn fitted(&self) -> CommandUpdate {
        let mut update = self.clone();
        crate::finding::cut(&mut update.detail, MAX_DETAIL);
        update.findings = crate::finding::fitted(update.findings);
        update
    }
}

#[cfg(test)]
mod fitting_tests {
    use super::*;
    use crate::finding::{Severity, Source};

    #[test]
    fn an_update_over_the_limits_is_fitted_to_pass_them() {
        let finding = Finding {
            source: Source::Leapp,
            key: "k".into(),
            severity: Severity::High,
            blocking: true,
            title: "t".into(),
            summary: "s".repeat(40_000),
            remediations: Vec::new(),
        };
        let update = CommandUpdate {
            command_id: "c".into(),
            sequence: 1,
            state: UpdateState::Succeeded,
            detail: "leapp preupgrade exited 1: ".repeat(1000),
            findings: vec![finding; 700],
            finished_unix_ms: 1,
        };
        assert!(update.validate().is_err());
        let fitted = update.fitted();
        assert_eq!(fitted.validate(), Ok(()));
        assert!(fitted.detail.starts_with("leapp preupgrade exited 1: "));
        assert_eq!(fitted.findings.len(), MAX_FINDINGS);
        let small = CommandUpdate {
            detail: "fine".into(),
            findings: Vec::new(),
            ..update
        };
        assert_eq!(small.fitted(), small);
    }
}
