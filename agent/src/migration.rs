//! Where the host stands in a migration step, and which phase may run from
//! there. The journal records every change, so the agent knows after a crash
//! or a reboot; a phase the state does not allow is refused with the reason.
//!
//! ```text
//! Idle --snapshot--> Snapshotted --execute--> Executed --reboot--> Rebooted --verify--> Verified --commit--> Idle
//!                         \---------------\-----------\----------------\--------rollback (reboots)--> Idle
//! a failed execute or verify leaves Failed: rollback, or an operator's decision
//! ```

use serde::{Deserialize, Serialize};

use crate::command::{CommandPhase, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Idle,
    Snapshotted,
    Executed,
    Rebooted,
    Verified,
    Failed,
}

/// What a snapshot phase took, enough to revert or remove it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum SnapshotSet {
    Lvm {
        /// `vg/lv` of each snapshot volume.
        volumes: Vec<String>,
        /// Archive of /boot (not on LVM), restored before a merge.
        boot_backup: String,
    },
    /// A site's hook (a hypervisor snapshot), named for the job.
    AgentCommand { command: String, name: String },
    /// The host's configuration allows migrating without a snapshot.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub stage: Stage,
    pub snapshot: Option<SnapshotSet>,
    /// The step executed since the snapshot, if any.
    pub step: Option<Step>,
    /// Why the last step failed, in `Failed`.
    pub failure: Option<String>,
}

impl Default for Migration {
    fn default() -> Self {
        Self {
            stage: Stage::Idle,
            snapshot: None,
            step: None,
            failure: None,
        }
    }
}

/// Why a phase may not start in the host's present stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("there is nothing to roll back: no migration step is in progress")]
    NothingToRollBack,
    #[error("there is no snapshot to roll back to (this host migrates without snapshots)")]
    NoSnapshot,
    #[error("the step in progress is {in_progress}, not {asked}")]
    OtherStep { in_progress: String, asked: Step },
    #[error("{phase} is not allowed while the host is {stage}")]
    WrongStage {
        phase: &'static str,
        stage: &'static str,
    },
}

impl Migration {
    /// Ok when `phase` may start now; otherwise why not.
    pub fn allows(&self, phase: &CommandPhase) -> Result<(), NotAllowed> {
        let stage = self.stage;
        let ok = match phase {
            CommandPhase::Precheck(_) | CommandPhase::Snapshot { .. } => stage == Stage::Idle,
            CommandPhase::Execute(_) => stage == Stage::Snapshotted,
            CommandPhase::Reboot => stage == Stage::Executed,
            CommandPhase::Verify(step) => {
                stage == Stage::Rebooted && self.step.as_ref() == Some(step)
            }
            CommandPhase::Commit => stage == Stage::Verified,
            CommandPhase::Rollback => {
                stage != Stage::Idle && !matches!(self.snapshot, Some(SnapshotSet::None) | None)
            }
        };
        if ok {
            return Ok(());
        }
        Err(match (phase, stage) {
            (CommandPhase::Rollback, Stage::Idle) => NotAllowed::NothingToRollBack,
            (CommandPhase::Rollback, _) => NotAllowed::NoSnapshot,
            (CommandPhase::Verify(step), Stage::Rebooted) => NotAllowed::OtherStep {
                in_progress: self
                    .step
                    .as_ref()
                    .map_or("none".to_string(), ToString::to_string),
                asked: *step,
            },
            _ => NotAllowed::WrongStage {
                phase: phase.name(),
                stage: stage_text(stage),
            },
        })
    }
}

fn stage_text(stage: Stage) -> &'static str {
    match stage {
        Stage::Idle => "idle (no step in progress)",
        Stage::Snapshotted => "snapshotted and not yet changed",
        Stage::Executed => "changed and waiting for its reboot",
        Stage::Rebooted => "rebooted and not yet verified",
        Stage::Verified => "verified and waiting to be committed or rolled back",
        Stage::Failed => "in a failed step waiting for a rollback",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Tool;

    fn step() -> Step {
        Step {
            tool: Tool::Leapp,
            to: mf_core::path::Target::from_version("8.10").expect("supported"),
        }
    }

    fn at(stage: Stage) -> Migration {
        Migration {
            stage,
            snapshot: Some(SnapshotSet::Lvm {
                volumes: vec!["rhel/root_mf".into()],
                boot_backup: "/var/lib/mf-agent/boot.tar.gz".into(),
            }),
            step: Some(step()),
            failure: None,
        }
    }

    #[test]
    fn each_phase_runs_only_from_its_stages() {
        let phases = [
            CommandPhase::Precheck(step()),
            CommandPhase::Snapshot { job_id: "j".into() },
            CommandPhase::Execute(step()),
            CommandPhase::Reboot,
            CommandPhase::Verify(step()),
            CommandPhase::Commit,
            CommandPhase::Rollback,
        ];
        let allowed = |stage: Stage| -> Vec<&str> {
            phases
                .iter()
                .filter(|p| at(stage).allows(p).is_ok())
                .map(CommandPhase::name)
                .collect()
        };
        assert_eq!(allowed(Stage::Idle), ["precheck", "snapshot"]);
        assert_eq!(allowed(Stage::Snapshotted), ["execute", "rollback"]);
        assert_eq!(allowed(Stage::Executed), ["reboot", "rollback"]);
        assert_eq!(allowed(Stage::Rebooted), ["verify", "rollback"]);
        assert_eq!(allowed(Stage::Verified), ["commit", "rollback"]);
        assert_eq!(allowed(Stage::Failed), ["rollback"]);
    }

    #[test]
    fn refusals_say_why() {
        let idle = Migration::default();
        assert!(
            idle.allows(&CommandPhase::Commit)
                .expect_err("commit")
                .to_string()
                .contains("idle")
        );
        assert!(
            idle.allows(&CommandPhase::Rollback)
                .expect_err("rollback")
                .to_string()
                .contains("nothing to roll back")
        );
        let mut unprotected = at(Stage::Executed);
        unprotected.snapshot = Some(SnapshotSet::None);
        assert!(
            unprotected
                .allows(&CommandPhase::Rollback)
                .expect_err("none")
                .to_string()
                .contains("without snapshots")
        );
        let other = Step {
            tool: Tool::Leapp,
            to: mf_core::path::Target::from_version("9.6").expect("supported"),
        };
        assert!(
            at(Stage::Rebooted)
                .allows(&CommandPhase::Verify(other))
                .expect_err("verify")
                .to_string()
                .contains("leapp to 8.10")
        );
    }
}
