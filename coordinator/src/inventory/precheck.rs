//! Pre-checks as the coordinator records them: the latest one per host, with
//! the command that carries it, its state and the findings the agent reported.
//! Findings are checked whole at the wire edge, like facts.

use mf_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::migration::{Step, Target, Tool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Remediation {
    Hint(String),
    Command(Vec<String>),
    Playbook(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub source: String,
    pub key: String,
    pub severity: Severity,
    pub blocking: bool,
    pub title: String,
    pub summary: String,
    pub remediations: Vec<Remediation>,
}

/// Where a host stands for the target of its latest pre-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    Ready,
    Blocked,
    Error,
    Unknown,
}

impl Readiness {
    pub fn label(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Blocked => "blocked",
            Readiness::Error => "error",
            Readiness::Unknown => "unknown",
        }
    }
}

/// Where the command of a pre-check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecheckState {
    /// Recorded; sent (again) whenever the agent connects, until it expires.
    Requested,
    Running,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecheckRecord {
    pub command_id: String,
    pub sequence: u64,
    pub target: Target,
    pub step: Step,
    pub state: PrecheckState,
    /// Meaningful once done; unknown before.
    pub readiness: Readiness,
    pub detail: String,
    pub requested_unix_ms: i64,
    pub expires_unix_ms: i64,
    pub started_unix_ms: i64,
    pub finished_unix_ms: i64,
    pub findings: Vec<Finding>,
}

impl PrecheckRecord {
    /// Readiness as shown: a pre-check that has not finished says nothing yet.
    pub fn readiness(&self) -> Readiness {
        match self.state {
            PrecheckState::Done => self.readiness,
            PrecheckState::Requested | PrecheckState::Running => Readiness::Unknown,
        }
    }
}

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

const MAX_FINDINGS: usize = 512;
const MAX_TEXT: usize = 16 * 1024;
const MAX_SHORT: usize = 1024;
const MAX_ARGV: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid command update: {0}")]
pub struct InvalidUpdate(pub String);

fn bounded(field: &str, text: String, max: usize) -> Result<String, InvalidUpdate> {
    if text.len() > max {
        return Err(InvalidUpdate(format!("{field} is longer than {max} bytes")));
    }
    Ok(text)
}

impl TryFrom<pb::Finding> for Finding {
    type Error = InvalidUpdate;

    fn try_from(f: pb::Finding) -> Result<Self, InvalidUpdate> {
        if !matches!(f.source.as_str(), "convert2rhel" | "leapp" | "agent") {
            return Err(InvalidUpdate(format!(
                "unknown finding source {:?}",
                f.source
            )));
        }
        if f.key.is_empty() {
            return Err(InvalidUpdate("a finding has no key".into()));
        }
        let severity = match pb::Severity::try_from(f.severity) {
            Ok(pb::Severity::Info) => Severity::Info,
            Ok(pb::Severity::Low) => Severity::Low,
            Ok(pb::Severity::Medium) => Severity::Medium,
            Ok(pb::Severity::High) => Severity::High,
            _ => {
                return Err(InvalidUpdate(format!(
                    "finding {} has no valid severity",
                    f.key
                )));
            }
        };
        if f.remediations.len() > MAX_ARGV {
            return Err(InvalidUpdate("too many remediations".into()));
        }
        let remediations = f
            .remediations
            .into_iter()
            .filter_map(|r| r.kind)
            .map(|kind| {
                Ok(match kind {
                    pb::remediation::Kind::Hint(h) => {
                        Remediation::Hint(bounded("a hint", h, MAX_TEXT)?)
                    }
                    pb::remediation::Kind::Playbook(p) => {
                        Remediation::Playbook(bounded("a playbook", p, MAX_TEXT)?)
                    }
                    pb::remediation::Kind::Command(c) => {
                        if c.argv.len() > MAX_ARGV {
                            return Err(InvalidUpdate("a remediation command is too long".into()));
                        }
                        Remediation::Command(
                            c.argv
                                .into_iter()
                                .map(|a| bounded("a command argument", a, MAX_SHORT))
                                .collect::<Result<_, _>>()?,
                        )
                    }
                })
            })
            .collect::<Result<_, InvalidUpdate>>()?;
        Ok(Finding {
            source: f.source,
            key: bounded("a finding key", f.key, 256)?,
            severity,
            blocking: f.blocking,
            title: bounded("a finding title", f.title, MAX_SHORT)?,
            summary: bounded("a finding summary", f.summary, MAX_TEXT)?,
            remediations,
        })
    }
}

impl TryFrom<pb::CommandUpdate> for CommandUpdate {
    type Error = InvalidUpdate;

    fn try_from(u: pb::CommandUpdate) -> Result<Self, InvalidUpdate> {
        let state = match pb::CommandState::try_from(u.state) {
            Ok(pb::CommandState::Started) => UpdateState::Started,
            Ok(pb::CommandState::Succeeded) => UpdateState::Succeeded,
            Ok(pb::CommandState::Failed) => UpdateState::Failed,
            Ok(pb::CommandState::Refused) => UpdateState::Refused,
            Ok(pb::CommandState::Interrupted) => UpdateState::Interrupted,
            _ => return Err(InvalidUpdate("no valid state".into())),
        };
        if u.findings.len() > MAX_FINDINGS {
            return Err(InvalidUpdate(format!("more than {MAX_FINDINGS} findings")));
        }
        Ok(CommandUpdate {
            command_id: bounded("the command id", u.command_id, 128)?,
            sequence: u.sequence,
            state,
            detail: bounded("the detail", u.detail, MAX_TEXT)?,
            findings: u
                .findings
                .into_iter()
                .map(Finding::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Severity {
    pub fn to_wire(self) -> i32 {
        match self {
            Severity::Info => pb::Severity::Info,
            Severity::Low => pb::Severity::Low,
            Severity::Medium => pb::Severity::Medium,
            Severity::High => pb::Severity::High,
        }
        .into()
    }
}

impl From<&Remediation> for pb::Remediation {
    fn from(r: &Remediation) -> Self {
        pb::Remediation {
            kind: Some(match r {
                Remediation::Hint(h) => pb::remediation::Kind::Hint(h.clone()),
                Remediation::Command(a) => {
                    pb::remediation::Kind::Command(pb::CommandLine { argv: a.clone() })
                }
                Remediation::Playbook(p) => pb::remediation::Kind::Playbook(p.clone()),
            }),
        }
    }
}

impl From<&Finding> for pb::Finding {
    fn from(f: &Finding) -> Self {
        pb::Finding {
            source: f.source.clone(),
            key: f.key.clone(),
            severity: f.severity.to_wire(),
            blocking: f.blocking,
            title: f.title.clone(),
            summary: f.summary.clone(),
            remediations: f.remediations.iter().map(Into::into).collect(),
        }
    }
}

fn tool_to_wire(tool: Tool) -> i32 {
    match tool {
        Tool::Convert2rhel => pb::MigrationTool::Convert2rhel,
        Tool::Leapp => pb::MigrationTool::Leapp,
    }
    .into()
}

impl From<&AgentCommand> for pb::Command {
    fn from(c: &AgentCommand) -> Self {
        use pb::command::Phase;
        let phase = match &c.phase {
            CommandPhase::Precheck(step) => Phase::Precheck(pb::Precheck {
                tool: tool_to_wire(step.tool),
                target_version: step.to.version(),
            }),
            CommandPhase::Snapshot { job_id } => Phase::Snapshot(pb::Snapshot {
                job_id: job_id.clone(),
            }),
            CommandPhase::Execute(step) => Phase::Execute(pb::Execute {
                tool: tool_to_wire(step.tool),
                target_version: step.to.version(),
            }),
            CommandPhase::Reboot => Phase::Reboot(pb::Reboot {}),
            CommandPhase::Verify(step) => Phase::Verify(pb::Verify {
                tool: tool_to_wire(step.tool),
                target_version: step.to.version(),
            }),
            CommandPhase::Commit => Phase::Commit(pb::Commit {}),
            CommandPhase::Rollback => Phase::Rollback(pb::Rollback {}),
        };
        pb::Command {
            command_id: c.id.clone(),
            host_id: c.host_id.clone(),
            sequence: c.sequence,
            expires_unix_ms: c.expires_unix_ms,
            phase: Some(phase),
        }
    }
}

impl PrecheckRecord {
    pub fn to_wire(&self) -> pb::LatestPrecheck {
        pb::LatestPrecheck {
            target: self.target.to_string(),
            readiness: match self.readiness() {
                Readiness::Ready => pb::Readiness::Ready,
                Readiness::Blocked => pb::Readiness::Blocked,
                Readiness::Error => pb::Readiness::Error,
                Readiness::Unknown => pb::Readiness::Unknown,
            }
            .into(),
            detail: self.detail.clone(),
            requested_unix_ms: self.requested_unix_ms,
            finished_unix_ms: self.finished_unix_ms,
            findings: self.findings.iter().map(Into::into).collect(),
            step: self.step.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> pb::Finding {
        pb::Finding {
            source: "leapp".into(),
            key: "k".into(),
            severity: pb::Severity::High.into(),
            blocking: true,
            title: "t".into(),
            summary: "s".into(),
            remediations: vec![pb::Remediation {
                kind: Some(pb::remediation::Kind::Command(pb::CommandLine {
                    argv: vec!["leapp".into(), "answer".into()],
                })),
            }],
        }
    }

    #[test]
    fn findings_round_trip_and_bad_ones_are_refused() {
        let domain = Finding::try_from(finding()).expect("valid");
        assert_eq!(pb::Finding::from(&domain), finding());
        let mut bad = finding();
        bad.source = "shell".into();
        assert!(Finding::try_from(bad).is_err());
        let mut bad = finding();
        bad.severity = 0;
        assert!(Finding::try_from(bad).is_err());
        let mut bad = finding();
        bad.summary = "x".repeat(MAX_TEXT + 1);
        assert!(
            Finding::try_from(bad)
                .expect_err("long")
                .0
                .contains("summary")
        );
    }
}
