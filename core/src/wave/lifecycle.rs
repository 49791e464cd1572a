//! A wave's life and what operators may do with it: start, pause, resume,
//! approve, cancel. The rules are decided here, on the wave's stored
//! lifecycle and its progress; the coordinator applies the outcome.

use serde::{Deserialize, Serialize};

use super::scheduler::Wave;
use super::status::WaveState;

/// Where a wave is in its life, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Planned; nothing started.
    Created,
    Running,
    /// No new starts; hosts in flight finish.
    Cancelled,
    /// Every host ended.
    Completed,
}

closed_set!(Lifecycle, "a wave lifecycle", {
    Lifecycle::Created => "created",
    Lifecycle::Running => "running",
    Lifecycle::Cancelled => "cancelled",
    Lifecycle::Completed => "completed",
});

impl Lifecycle {
    /// Its hosts belong to it: they cannot join another wave.
    pub fn holds_hosts(self) -> bool {
        matches!(self, Lifecycle::Created | Lifecycle::Running)
    }

    /// The wave as operators see it: a running wave is shown paused or halted.
    pub fn shown(self, wave: &Wave) -> WaveState {
        match self {
            Lifecycle::Running if wave.progress.halted.is_some() => WaveState::Halted,
            Lifecycle::Running if wave.progress.paused => WaveState::Paused,
            Lifecycle::Running => WaveState::Running,
            Lifecycle::Created => WaveState::Created,
            Lifecycle::Cancelled => WaveState::Cancelled,
            Lifecycle::Completed => WaveState::Completed,
        }
    }
}

/// An operator's action on a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveAction {
    Start,
    Pause,
    Resume,
    Approve,
    Cancel { rollback: bool },
}

/// Why an action does not apply to the wave as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionRefused {
    #[error("it is {state}: it cannot be {verb}")]
    Cannot {
        state: WaveState,
        verb: &'static str,
    },
    #[error("it is {0}: only a paused or halted wave resumes")]
    NotResumable(WaveState),
    #[error("it has no stage waiting for approval")]
    NothingToApprove,
}

/// What an accepted action changed: `Unchanged` when the wave already was
/// what the operator asked for (a second pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
}

/// Applies `action` to a wave whose lifecycle is `*lifecycle`, or says why not.
/// On `Cancel` the caller releases the hosts and rolls back the held ones if asked.
pub fn act(
    lifecycle: &mut Lifecycle,
    wave: &mut Wave,
    action: WaveAction,
) -> Result<Applied, ActionRefused> {
    let state = lifecycle.shown(wave);
    let cannot = |verb| Err(ActionRefused::Cannot { state, verb });
    match action {
        WaveAction::Start if *lifecycle == Lifecycle::Created => {
            *lifecycle = Lifecycle::Running;
        }
        WaveAction::Start => return cannot("started"),
        WaveAction::Pause if *lifecycle != Lifecycle::Running => return cannot("paused"),
        WaveAction::Pause if wave.progress.paused => return Ok(Applied::Unchanged),
        WaveAction::Pause => wave.pause(),
        WaveAction::Resume
            if *lifecycle == Lifecycle::Running
                && (wave.progress.halted.is_some() || wave.progress.paused) =>
        {
            wave.resume();
        }
        WaveAction::Resume => return Err(ActionRefused::NotResumable(state)),
        WaveAction::Approve if *lifecycle == Lifecycle::Running && wave.approve() => {}
        WaveAction::Approve => return Err(ActionRefused::NothingToApprove),
        WaveAction::Cancel { .. } if lifecycle.holds_hosts() => {
            *lifecycle = Lifecycle::Cancelled;
            wave.close();
        }
        WaveAction::Cancel { .. } => return cannot("cancelled"),
    }
    Ok(Applied::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wave::scheduler::{Limit, Member, Policy};

    fn wave() -> Wave {
        let members = (0..3)
            .map(|i| Member {
                host_id: format!("h{i}"),
                labels: Default::default(),
                concerns: false,
                canary: false,
            })
            .collect();
        Wave::plan(
            Policy {
                canary: 1,
                batches: vec![Limit::Percent(100)],
                max_parallel: 10,
                budgets: Vec::new(),
                stage_errors: Limit::Count(1),
                total_errors: Limit::Count(1),
                soak_ms: 0,
                approve_stages: false,
            },
            members,
        )
    }

    #[test]
    fn actions_follow_the_lifecycle_and_say_why_they_do_not_apply() {
        let mut wave = wave();
        let mut lifecycle = Lifecycle::Created;
        let refused = |r: Result<Applied, ActionRefused>| r.expect_err("refused").to_string();
        assert!(refused(act(&mut lifecycle, &mut wave, WaveAction::Pause)).contains("created"));
        assert!(
            refused(act(&mut lifecycle, &mut wave, WaveAction::Resume))
                .contains("only a paused or halted wave resumes")
        );
        assert_eq!(
            act(&mut lifecycle, &mut wave, WaveAction::Start),
            Ok(Applied::Changed)
        );
        assert_eq!(lifecycle, Lifecycle::Running);
        assert!(refused(act(&mut lifecycle, &mut wave, WaveAction::Start)).contains("running"));
        assert_eq!(
            act(&mut lifecycle, &mut wave, WaveAction::Pause),
            Ok(Applied::Changed)
        );
        assert_eq!(lifecycle.shown(&wave), WaveState::Paused);
        assert_eq!(
            act(&mut lifecycle, &mut wave, WaveAction::Pause),
            Ok(Applied::Unchanged),
            "a second pause is no error"
        );
        assert_eq!(
            act(&mut lifecycle, &mut wave, WaveAction::Resume),
            Ok(Applied::Changed)
        );
        assert_eq!(lifecycle.shown(&wave), WaveState::Running);
        // The next stage can be approved once, ahead of its turn.
        assert_eq!(
            act(&mut lifecycle, &mut wave, WaveAction::Approve),
            Ok(Applied::Changed)
        );
        assert_eq!(
            act(&mut lifecycle, &mut wave, WaveAction::Approve),
            Err(ActionRefused::NothingToApprove)
        );
        assert_eq!(
            act(
                &mut lifecycle,
                &mut wave,
                WaveAction::Cancel { rollback: false }
            ),
            Ok(Applied::Changed)
        );
        assert_eq!(lifecycle, Lifecycle::Cancelled);
        assert!(
            refused(act(
                &mut lifecycle,
                &mut wave,
                WaveAction::Cancel { rollback: true }
            ))
            .contains("cancelled: it cannot be cancelled")
        );
    }
}
