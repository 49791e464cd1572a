//! What operators are shown of a wave and of each host in it: closed sets
//! with one label each, the same words in mfctl, the metrics and the API.

use super::scheduler::{HostState, Outcome};

/// A wave as operators see it: its stored lifecycle, with a running wave
/// shown paused or halted when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaveState {
    Created,
    Running,
    Paused,
    Halted,
    Cancelled,
    Completed,
}

closed_set!(WaveState, "a wave state", {
    WaveState::Created => "created",
    WaveState::Running => "running",
    WaveState::Paused => "paused",
    WaveState::Halted => "halted",
    WaveState::Cancelled => "cancelled",
    WaveState::Completed => "completed",
});

/// A host as a wave shows it: left out at creation, waiting, in flight, or
/// how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostStatus {
    Excluded,
    Pending,
    Running,
    Succeeded,
    RolledBack,
    Failed,
    Blocked,
    Aborted,
    Unreachable,
    Skipped,
    NotStarted,
}

closed_set!(HostStatus, "a wave host state", {
    HostStatus::Excluded => "excluded",
    HostStatus::Pending => "pending",
    HostStatus::Running => "running",
    HostStatus::Succeeded => "succeeded",
    HostStatus::RolledBack => "rolled-back",
    HostStatus::Failed => "failed",
    HostStatus::Blocked => "blocked",
    HostStatus::Aborted => "aborted",
    HostStatus::Unreachable => "unreachable",
    HostStatus::Skipped => "skipped",
    HostStatus::NotStarted => "not-started",
});

impl From<Outcome> for HostStatus {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Succeeded => HostStatus::Succeeded,
            Outcome::RolledBack => HostStatus::RolledBack,
            Outcome::Failed => HostStatus::Failed,
            Outcome::Blocked => HostStatus::Blocked,
            Outcome::Aborted => HostStatus::Aborted,
            Outcome::Unreachable => HostStatus::Unreachable,
            Outcome::Skipped => HostStatus::Skipped,
            Outcome::NotStarted => HostStatus::NotStarted,
        }
    }
}

impl From<HostState> for HostStatus {
    fn from(state: HostState) -> Self {
        match state {
            HostState::Pending => HostStatus::Pending,
            HostState::Running => HostStatus::Running,
            HostState::Done(outcome) => outcome.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_state_shows_with_the_scheduler_s_own_label() {
        let outcomes = [
            Outcome::Succeeded,
            Outcome::RolledBack,
            Outcome::Failed,
            Outcome::Blocked,
            Outcome::Aborted,
            Outcome::Unreachable,
            Outcome::Skipped,
            Outcome::NotStarted,
        ];
        let states = [HostState::Pending, HostState::Running]
            .into_iter()
            .chain(outcomes.into_iter().map(HostState::Done));
        for state in states {
            assert_eq!(HostStatus::from(state).label(), state.label(), "{state:?}");
        }
    }
}
