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
    /// No in-place path for the platform, or a finding the site holds
    /// impossible to fix in place: rebuild on the target instead. A verdict
    /// (`readiness::verdict`), never a pre-check's own outcome.
    Rebuild,
}

impl Readiness {
    pub fn label(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Blocked => "blocked",
            Readiness::Error => "error",
            Readiness::Unknown => "unknown",
            Readiness::Rebuild => "rebuild",
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
    /// While this one is in flight: the host's latest pre-check with an
    /// outcome, which readiness goes on showing until this one has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<PrecheckRecord>>,
}

impl PrecheckRecord {
    pub fn in_flight(&self) -> bool {
        self.state != PrecheckState::Done
    }

    /// The latest pre-check with an outcome: this one once done, before that
    /// the one it follows.
    pub fn latest_done(&self) -> Option<&PrecheckRecord> {
        match self.state {
            PrecheckState::Done => Some(self),
            PrecheckState::Requested | PrecheckState::Running => self.previous.as_deref(),
        }
    }

    /// The record without its findings (nor its previous outcome's), for
    /// lists: readiness, target and state stay.
    pub fn brief(&self) -> PrecheckRecord {
        PrecheckRecord {
            command_id: self.command_id.clone(),
            sequence: self.sequence,
            target: self.target,
            step: self.step,
            state: self.state,
            readiness: self.readiness,
            detail: self.detail.clone(),
            requested_unix_ms: self.requested_unix_ms,
            expires_unix_ms: self.expires_unix_ms,
            started_unix_ms: self.started_unix_ms,
            finished_unix_ms: self.finished_unix_ms,
            findings: Vec::new(),
            previous: self.previous.as_ref().map(|p| Box::new(p.brief())),
        }
    }

    /// What a new pre-check of the host keeps of this one: its latest outcome.
    pub fn carried_outcome(&self) -> Option<Box<PrecheckRecord>> {
        self.latest_done().map(|done| {
            Box::new(PrecheckRecord {
                previous: None,
                ..done.clone()
            })
        })
    }

    /// Readiness as shown: the latest outcome; unknown until there is one.
    pub fn readiness(&self) -> Readiness {
        self.latest_done()
            .map_or(Readiness::Unknown, |done| done.readiness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: PrecheckState, readiness: Readiness) -> PrecheckRecord {
        let target: Target = "rhel-8.10".parse().expect("target");
        PrecheckRecord {
            command_id: "c1".into(),
            sequence: 1,
            target,
            step: crate::path::plan("rhel", "7.9", target).expect("path")[0],
            state,
            readiness,
            detail: String::new(),
            requested_unix_ms: 0,
            expires_unix_ms: 0,
            started_unix_ms: 0,
            finished_unix_ms: 0,
            findings: Vec::new(),
            previous: None,
        }
    }

    #[test]
    fn a_pre_check_in_flight_shows_the_outcome_of_the_one_before() {
        let blocked = record(PrecheckState::Done, Readiness::Blocked);
        let mut next = record(PrecheckState::Requested, Readiness::Unknown);
        next.command_id = "c2".into();
        next.previous = blocked.carried_outcome();
        assert!(next.in_flight());
        assert_eq!(next.readiness(), Readiness::Blocked);
        assert_eq!(
            next.latest_done().map(|d| d.command_id.as_str()),
            Some("c1")
        );
        // A third one carries the latest outcome only, never a chain.
        let mut third = record(PrecheckState::Running, Readiness::Unknown);
        third.previous = next.carried_outcome();
        assert_eq!(
            third.previous.as_ref().map(|p| p.command_id.as_str()),
            Some("c1")
        );
        assert!(
            third
                .previous
                .as_ref()
                .is_some_and(|p| p.previous.is_none())
        );
        // Done: its own outcome.
        let mut done = next.clone();
        done.state = PrecheckState::Done;
        done.readiness = Readiness::Ready;
        assert_eq!(done.readiness(), Readiness::Ready);
        // Never done before: unknown.
        assert_eq!(
            record(PrecheckState::Running, Readiness::Unknown).readiness(),
            Readiness::Unknown
        );
    }

    #[test]
    fn records_stored_before_the_previous_outcome_existed_still_load() {
        let mut json =
            serde_json::to_value(record(PrecheckState::Done, Readiness::Ready)).expect("json");
        assert!(json.get("previous").is_none(), "absent when there is none");
        json.as_object_mut().expect("object").remove("previous");
        let back: PrecheckRecord = serde_json::from_value(json).expect("loads");
        assert!(back.previous.is_none());
    }
}
