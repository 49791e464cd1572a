//! A wave as stored, in three parts so that each decision rewrites little:
//! the head (spec, lifecycle, progress: rewritten at every decision), the
//! plan (members, stages, exclusions: written once at creation) and one
//! record per member (rewritten when that host starts or ends).

use serde::{Deserialize, Serialize};

use mf_core::wave::scheduler::{HostState, Member, Progress};
use mf_core::wave::spec::WaveSpec;

/// The lifecycle is the core's (its rules live there); stored as its word.
pub use mf_core::wave::lifecycle::Lifecycle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveHead {
    pub spec: WaveSpec,
    pub lifecycle: Lifecycle,
    pub created_unix_ms: i64,
    pub started_unix_ms: Option<i64>,
    pub finished_unix_ms: Option<i64>,
    /// Cancelled with --rollback: held hosts are rolled back, and so are
    /// hosts in flight that end held.
    pub rollback_on_cancel: bool,
    pub progress: Progress,
    /// A wave past the blast radius: the operator whose start waits for a
    /// second admin's.
    #[serde(default)]
    pub start_requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WavePlan {
    pub members: Vec<Member>,
    pub stages: Vec<Vec<usize>>,
    /// Each member's migration path, e.g. "leapp to 8.10".
    pub paths: Vec<String>,
    /// Selected hosts left out, with the reason.
    pub excluded: Vec<(String, String)>,
    pub outside_selector: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub state: HostState,
    pub job_id: Option<String>,
    pub started_unix_ms: Option<i64>,
    pub finished_unix_ms: Option<i64>,
    pub detail: String,
}

impl MemberRecord {
    pub fn pending() -> Self {
        Self {
            state: HostState::Pending,
            job_id: None,
            started_unix_ms: None,
            finished_unix_ms: None,
            detail: String::new(),
        }
    }
}
