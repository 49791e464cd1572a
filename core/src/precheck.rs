//! Pre-checks as the coordinator records them: the latest one per host, with
//! the command that carries it, its state and the findings the agent reported.

use serde::{Deserialize, Serialize};

use crate::finding::Finding;
use crate::path::{Step, Target};

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
