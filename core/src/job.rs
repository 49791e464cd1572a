//! The job state machine: pure, no I/O, no clock (time comes in the events).
//!
//! ```text
//! for each step: precheck -> snapshot -> execute -> reboot -> verify -> commit
//!   precheck blocked or failed, snapshot failed    -> Blocked / Failed (nothing changed)
//!   execute, reboot or verify failed               -> rollback (policy) or Held
//!   rollback succeeded                             -> RolledBack; failed -> Held
//! last step committed                              -> Succeeded
//! ```

use serde::{Deserialize, Serialize};

use crate::command::UpdateState;
use crate::finding::Finding;
use crate::path::{Step, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Rollback,
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    Precheck,
    Snapshot,
    Execute,
    Reboot,
    Verify,
    Commit,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// A command is out (or waiting for the host to connect).
    Running,
    Succeeded,
    /// Stopped at a pre-check with blocking findings; nothing was changed.
    Blocked,
    /// Failed before anything was changed.
    Failed,
    /// A change failed and was rolled back: the host runs its original OS.
    RolledBack,
    /// Waiting for an operator: a change failed (policy hold), or a rollback failed.
    Held,
}

closed_set!(JobPhase, "a job phase", {
    JobPhase::Precheck => "precheck",
    JobPhase::Snapshot => "snapshot",
    JobPhase::Execute => "execute",
    JobPhase::Reboot => "reboot",
    JobPhase::Verify => "verify",
    JobPhase::Commit => "commit",
    JobPhase::Rollback => "rollback",
});

closed_set!(JobState, "a job state", {
    JobState::Running => "running",
    JobState::Succeeded => "succeeded",
    JobState::Blocked => "blocked",
    JobState::Failed => "failed",
    JobState::RolledBack => "rolled-back",
    JobState::Held => "held",
});

closed_set!(OnFailure, "on-failure", {
    OnFailure::Rollback => "rollback",
    OnFailure::Hold => "hold",
});

impl JobState {
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Running | JobState::Held)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at_unix_ms: i64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub host_id: String,
    pub target: Target,
    pub steps: Vec<Step>,
    pub step_index: usize,
    pub phase: JobPhase,
    pub state: JobState,
    pub on_failure: OnFailure,
    /// The command of the current phase: its id, sequence and expiry (set by
    /// the inventory when it sends it, so a re-send is the same command).
    pub command_id: String,
    pub sequence: u64,
    pub command_expires_unix_ms: i64,
    pub phase_started_unix_ms: i64,
    /// Findings of the current step's pre-check, and of a failed phase.
    pub findings: Vec<Finding>,
    pub detail: String,
    pub timeline: Vec<TimelineEntry>,
    pub created_unix_ms: i64,
    /// The OS the host ran when the job started, e.g. "rhel 7.9".
    #[serde(default)]
    pub original_os: String,
    /// The highest command sequence the agent has reported on for this job.
    #[serde(default)]
    pub acknowledged_sequence: u64,
    /// Why a held job waits for an operator; `None` unless held.
    #[serde(default)]
    pub held: Option<Hold>,
    /// Timeline entries left out between the first and the latest ones.
    #[serde(default)]
    pub timeline_left_out: u64,
}

/// A timeline keeps how the job began and its latest entries, so that
/// retries cannot grow a job's record (and every answer showing it) without
/// bound.
const TIMELINE_FIRST: usize = 20;
const TIMELINE_MAX: usize = 200;

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The agent's update on the job's current command.
    Update {
        state: UpdateState,
        detail: String,
        findings: Vec<Finding>,
    },
    /// The current phase has had no outcome for too long (the host did not
    /// come back from its reboot).
    TimedOut { after_seconds: u64 },
    /// An operator asks for a rollback of a held job.
    RollbackRequested,
    /// An operator asks to run the current phase of a held job again.
    RetryRequested,
    /// The agent came back with a journal older than what it had already
    /// acknowledged: its disk was reverted (an LVM merge rewinds /var, a
    /// hypervisor revert rewinds everything). `os_now` is what it runs now.
    JournalRewound { os_now: String },
    /// The agent came back having accepted a command after the last one the
    /// coordinator remembers sending: the coordinator's records are older
    /// than the host (restored from a backup taken before).
    JournalAhead { accepted: u64, known: u64 },
}

/// Why a job is held, which decides what an operator may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hold {
    /// A change failed and the job's policy holds: the agent keeps the host
    /// in a failed step that only a rollback leaves.
    ChangeFailed,
    /// A reboot (of a step or a rollback) had no outcome in time.
    TimedOut,
    /// The rollback itself failed.
    RollbackFailed,
    /// The change stands but its snapshots could not be removed.
    CommitFailed,
    /// The host came back from a disk revert outside this job.
    Reverted,
    /// The host moved on after the coordinator's records were saved.
    Diverged,
}

/// Why an operator's retry of a held job is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryRefused {
    #[error("the job is {0}: only a held job can be retried")]
    NotHeld(JobState),
    #[error(
        "{0} failed and changed the host, which waits in a failed step for a rollback: \
         {0} cannot run again (roll it back: mfctl hosts rollback HOST)"
    )]
    FailedStep(JobPhase),
    #[error(
        "the host went on after the coordinator's records were saved (a restored backup): \
         {0} may have run already and is not sent again; check the host, then roll it back \
         (mfctl hosts rollback HOST) or start a new job"
    )]
    Diverged(JobPhase),
}

/// What the inventory must do after persisting the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the current phase as a new command (fresh id and sequence).
    Send,
    /// Nothing to send: wait, or the job is over.
    Wait,
}

/// A new job at its first step's pre-check.
pub fn start(
    id: String,
    host_id: String,
    target: Target,
    steps: Vec<Step>,
    on_failure: OnFailure,
    now: i64,
) -> Job {
    let mut job = Job {
        id,
        host_id,
        target,
        steps,
        step_index: 0,
        phase: JobPhase::Precheck,
        state: JobState::Running,
        on_failure,
        command_id: String::new(),
        sequence: 0,
        command_expires_unix_ms: 0,
        original_os: String::new(),
        acknowledged_sequence: 0,
        held: None,
        timeline_left_out: 0,
        phase_started_unix_ms: now,
        findings: Vec::new(),
        detail: String::new(),
        timeline: Vec::new(),
        created_unix_ms: now,
    };
    let plan: Vec<String> = job.steps.iter().map(ToString::to_string).collect();
    job.note(
        now,
        format!("job created: {} ({})", job.target, plan.join(", then ")),
    );
    job
}

impl Job {
    /// The job without its findings and timeline, for lists.
    pub fn brief(&self) -> Job {
        Job {
            id: self.id.clone(),
            host_id: self.host_id.clone(),
            target: self.target,
            steps: self.steps.clone(),
            step_index: self.step_index,
            phase: self.phase,
            state: self.state,
            on_failure: self.on_failure,
            command_id: self.command_id.clone(),
            sequence: self.sequence,
            command_expires_unix_ms: self.command_expires_unix_ms,
            phase_started_unix_ms: self.phase_started_unix_ms,
            findings: Vec::new(),
            detail: self.detail.clone(),
            timeline: Vec::new(),
            created_unix_ms: self.created_unix_ms,
            original_os: self.original_os.clone(),
            acknowledged_sequence: self.acknowledged_sequence,
            held: self.held,
            timeline_left_out: self.timeline_left_out + self.timeline.len() as u64,
        }
    }

    /// Names who asked for the job in its first timeline entry.
    pub fn asked_by(&mut self, who: &str) {
        if let Some(created) = self.timeline.first_mut()
            && let Some(rest) = created.text.strip_prefix("job created: ")
        {
            created.text = format!("job created by {who}: {rest}");
        }
    }

    pub fn step(&self) -> Step {
        self.steps[self.step_index.min(self.steps.len().saturating_sub(1))]
    }

    fn note(&mut self, now: i64, text: String) {
        self.detail.clone_from(&text);
        self.timeline.push(TimelineEntry {
            at_unix_ms: now,
            text,
        });
        if self.timeline.len() <= TIMELINE_MAX {
            return;
        }
        // After the first entries stands a marker of what is left out; the
        // oldest entry after it goes (the first time, two make room for it).
        let (start, count) = if self.timeline_left_out == 0 {
            (TIMELINE_FIRST, 2)
        } else {
            (TIMELINE_FIRST + 1, 1)
        };
        let at_unix_ms = self
            .timeline
            .drain(start..start + count)
            .next_back()
            .map_or(now, |e| e.at_unix_ms);
        self.timeline_left_out += count as u64;
        let marker = TimelineEntry {
            at_unix_ms,
            text: format!("... {} entries left out ...", self.timeline_left_out),
        };
        if count == 2 {
            self.timeline.insert(TIMELINE_FIRST, marker);
        } else {
            self.timeline[TIMELINE_FIRST] = marker;
        }
    }

    /// Whether an operator's retry would run the held phase again: not after
    /// a failed change, which the agent only leaves by a rollback.
    pub fn can_retry(&self) -> Result<(), RetryRefused> {
        match (self.state, self.held) {
            (JobState::Held, Some(Hold::ChangeFailed)) => Err(RetryRefused::FailedStep(self.phase)),
            (JobState::Held, Some(Hold::Diverged)) => Err(RetryRefused::Diverged(self.phase)),
            (JobState::Held, _) => Ok(()),
            (state, _) => Err(RetryRefused::NotHeld(state)),
        }
    }

    /// Running, or held only because its host said nothing in time: what
    /// the host says when it is back still counts.
    pub fn awaits_host(&self) -> bool {
        self.state == JobState::Running
            || (self.state == JobState::Held && self.held == Some(Hold::TimedOut))
    }

    fn enter(&mut self, phase: JobPhase, now: i64) -> Decision {
        self.phase = phase;
        self.phase_started_unix_ms = now;
        self.state = JobState::Running;
        self.held = None;
        Decision::Send
    }

    fn end(&mut self, state: JobState, now: i64, text: String) -> Decision {
        self.state = state;
        self.note(now, text);
        Decision::Wait
    }

    fn hold(&mut self, why: Hold, now: i64, text: String) -> Decision {
        self.held = Some(why);
        self.end(JobState::Held, now, text)
    }

    /// A change failed: roll back or hold, as the policy says.
    fn changed_and_failed(&mut self, now: i64) -> Decision {
        match self.on_failure {
            OnFailure::Rollback => {
                self.note(now, "rolling back (the job's policy)".into());
                self.enter(JobPhase::Rollback, now)
            }
            OnFailure::Hold => self.hold(
                Hold::ChangeFailed,
                now,
                "held for an operator (the job's policy): only a rollback leaves the failed step \
                 (mfctl hosts rollback)"
                    .into(),
            ),
        }
    }

    /// Applies an event; the caller persists the job, then acts on the decision.
    pub fn apply(&mut self, event: Event, now: i64) -> Decision {
        if self.state.is_final() {
            return Decision::Wait;
        }
        match event {
            Event::RollbackRequested if self.state == JobState::Held => {
                self.note(now, "rollback requested by an operator".into());
                self.enter(JobPhase::Rollback, now)
            }
            Event::RetryRequested if self.can_retry().is_ok() => {
                self.note(
                    now,
                    format!("{} retried by an operator", self.phase.label()),
                );
                self.enter(self.phase, now)
            }
            Event::RollbackRequested | Event::RetryRequested => Decision::Wait,
            Event::JournalRewound { os_now } if self.awaits_host() => {
                if self.phase == JobPhase::Rollback && os_now == self.original_os {
                    self.end(
                        JobState::RolledBack,
                        now,
                        format!(
                            "rolled back: the host came back from its snapshot running {os_now}"
                        ),
                    )
                } else {
                    self.note(
                        now,
                        format!("the host came back with an older journal, running {os_now}"),
                    );
                    self.hold(
                        Hold::Reverted,
                        now,
                        "held: the host's disk was reverted outside this job; an operator decides"
                            .into(),
                    )
                }
            }
            Event::JournalRewound { .. } => Decision::Wait,
            Event::JournalAhead { accepted, known } if self.awaits_host() => {
                self.note(
                    now,
                    format!(
                        "the host has accepted command {accepted}, after {known}, the last this \
                         coordinator remembers sending: its records are older than the host"
                    ),
                );
                self.hold(
                    Hold::Diverged,
                    now,
                    format!(
                        "held: the host went on after the coordinator's records were saved (a \
                         restored backup?), so {} is not sent again; check the host, then mfctl \
                         hosts rollback, or start a new job",
                        self.phase.label()
                    ),
                )
            }
            Event::JournalAhead { .. } => Decision::Wait,
            Event::TimedOut { after_seconds } if self.state == JobState::Running => {
                self.note(
                    now,
                    format!(
                        "{} had no outcome within {}",
                        self.phase.label(),
                        crate::time::format_duration_ms(
                            i64::try_from(after_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
                        )
                    ),
                );
                let text = if self.phase == JobPhase::Reboot {
                    "held: the host has not come back from its reboot. It may be stopped in the \
                     upgrade initramfs's emergency shell, which needs someone at its console (or \
                     the site's console hook) to boot the previous entry; it never comes back by \
                     itself. When it does come back, the job goes on from what it reports; \
                     mfctl hosts rollback returns to the snapshot"
                } else {
                    "held: the host may be down; an operator decides (mfctl hosts retry sends it \
                     again, mfctl hosts rollback returns to the snapshot). If the host reports \
                     later, the job goes on from what it reports"
                };
                self.hold(Hold::TimedOut, now, text.into())
            }
            Event::TimedOut { .. } => Decision::Wait,
            Event::Update {
                state,
                detail,
                findings,
            } => self.update(state, detail, findings, now),
        }
    }

    fn update(
        &mut self,
        state: UpdateState,
        detail: String,
        findings: Vec<Finding>,
        now: i64,
    ) -> Decision {
        // A host that reports on its command after the timeout held the job
        // is back: what it reports decides, as if it had been on time.
        let late = self.state == JobState::Held && self.held == Some(Hold::TimedOut);
        if !self.awaits_host() {
            return Decision::Wait;
        }
        if late {
            if state == UpdateState::Started {
                return Decision::Wait;
            }
            self.state = JobState::Running;
            self.held = None;
            self.note(
                now,
                format!("the host reported after the timeout: {}", state.label()),
            );
        }
        let phase = self.phase.label();
        let step = self.step();
        match state {
            UpdateState::Started => {
                self.note(now, format!("{phase} started ({step})"));
                Decision::Wait
            }
            UpdateState::Succeeded => {
                // A pre-check that ran and found blockers did not "succeed" for the operator.
                let blocked =
                    self.phase == JobPhase::Precheck && findings.iter().any(|f| f.blocking);
                let verb = if blocked {
                    "found blockers"
                } else {
                    "succeeded"
                };
                self.note(now, format!("{phase} {verb}: {detail}"));
                match self.phase {
                    JobPhase::Precheck => {
                        let blocking = findings.iter().any(|f| f.blocking);
                        self.findings = findings;
                        if blocking {
                            let done = if self.step_index == 0 {
                                "nothing was changed".to_string()
                            } else {
                                format!(
                                    "the {} earlier step(s) stay done; this one changed nothing",
                                    self.step_index
                                )
                            };
                            self.end(
                                JobState::Blocked,
                                now,
                                format!(
                                    "blocked at the pre-check of {step} (step {} of {}): {done}",
                                    self.step_index + 1,
                                    self.steps.len()
                                ),
                            )
                        } else {
                            self.enter(JobPhase::Snapshot, now)
                        }
                    }
                    JobPhase::Snapshot => self.enter(JobPhase::Execute, now),
                    JobPhase::Execute => self.enter(JobPhase::Reboot, now),
                    JobPhase::Reboot => self.enter(JobPhase::Verify, now),
                    JobPhase::Verify => self.enter(JobPhase::Commit, now),
                    JobPhase::Commit => {
                        if self.step_index + 1 < self.steps.len() {
                            self.step_index += 1;
                            self.findings.clear();
                            self.enter(JobPhase::Precheck, now)
                        } else {
                            self.end(
                                JobState::Succeeded,
                                now,
                                format!("migrated to {}", self.target),
                            )
                        }
                    }
                    JobPhase::Rollback => self.end(
                        JobState::RolledBack,
                        now,
                        "rolled back to the original system".into(),
                    ),
                }
            }
            UpdateState::Failed | UpdateState::Refused | UpdateState::Interrupted => {
                self.note(now, format!("{phase} {}: {detail}", state.label()));
                if !findings.is_empty() {
                    self.findings = findings;
                }
                match self.phase {
                    // Nothing has been changed yet.
                    JobPhase::Precheck | JobPhase::Snapshot => self.end(
                        JobState::Failed,
                        now,
                        format!("failed at {phase}: nothing was changed"),
                    ),
                    JobPhase::Execute | JobPhase::Reboot | JobPhase::Verify => {
                        self.changed_and_failed(now)
                    }
                    // Removing the snapshots failed: the change stands; an operator tidies up.
                    JobPhase::Commit => self.hold(
                        Hold::CommitFailed,
                        now,
                        "held: the snapshots could not be removed (mfctl hosts retry tries again)"
                            .into(),
                    ),
                    JobPhase::Rollback => self.hold(
                        Hold::RollbackFailed,
                        now,
                        "held: the rollback failed (mfctl hosts retry tries it again)".into(),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::path::Tool;

    const T: Target = Target {
        major: 8,
        minor: 10,
    };

    fn steps() -> Vec<Step> {
        vec![
            Step {
                tool: Tool::Convert2rhel,
                to: Target { major: 7, minor: 9 },
            },
            Step {
                tool: Tool::Leapp,
                to: T,
            },
        ]
    }

    #[test]
    fn a_timeline_keeps_its_beginning_and_latest_entries_within_a_bound() {
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        for i in 1..=1000 {
            job.note(i, format!("entry {i}"));
        }
        assert_eq!(job.timeline.len(), TIMELINE_MAX);
        assert!(job.timeline[0].text.starts_with("job created"));
        assert_eq!(job.timeline[1].text, "entry 1");
        assert_eq!(job.timeline[TIMELINE_FIRST - 1].text, "entry 19");
        // 1001 entries, 199 of them kept beside the marker.
        assert_eq!(job.timeline_left_out, 1001 - 199);
        assert_eq!(
            job.timeline[TIMELINE_FIRST].text,
            format!("... {} entries left out ...", 1001 - 199)
        );
        assert_eq!(
            job.timeline[TIMELINE_FIRST + 1].text,
            format!("entry {}", 1000 - (TIMELINE_MAX - TIMELINE_FIRST - 2))
        );
        assert_eq!(
            job.timeline.last().map(|e| e.text.as_str()),
            Some("entry 1000")
        );
        assert_eq!(job.detail, "entry 1000");
    }

    fn ok(detail: &str) -> Event {
        Event::Update {
            state: UpdateState::Succeeded,
            detail: detail.into(),
            findings: Vec::new(),
        }
    }

    fn failed() -> Event {
        Event::Update {
            state: UpdateState::Failed,
            detail: "boom".into(),
            findings: Vec::new(),
        }
    }

    fn blocker() -> Finding {
        Finding {
            source: crate::finding::Source::Leapp,
            key: "k".into(),
            severity: Severity::High,
            blocking: true,
            title: "t".into(),
            summary: String::new(),
            remediations: Vec::new(),
        }
    }

    /// Feeds events and returns the phases the job asked to send, in order.
    fn run(job: &mut Job, events: Vec<Event>) -> Vec<(usize, JobPhase)> {
        let mut sent = vec![(job.step_index, job.phase)];
        for event in events {
            if job.apply(event, 1) == Decision::Send {
                sent.push((job.step_index, job.phase));
            }
        }
        sent
    }

    #[test]
    fn two_steps_go_through_every_phase_then_succeed() {
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        let sent = run(&mut job, (0..12).map(|_| ok("fine")).collect());
        use JobPhase::*;
        let expected: Vec<(usize, JobPhase)> = [0, 1]
            .into_iter()
            .flat_map(|s| [Precheck, Snapshot, Execute, Reboot, Verify, Commit].map(|p| (s, p)))
            .collect();
        assert_eq!(sent, expected);
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.detail, "migrated to rhel-8.10");
    }

    #[test]
    fn a_blocked_precheck_stops_before_any_change() {
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        let decision = job.apply(
            Event::Update {
                state: UpdateState::Succeeded,
                detail: "1 blocking".into(),
                findings: vec![blocker()],
            },
            1,
        );
        assert_eq!(decision, Decision::Wait);
        assert_eq!(job.state, JobState::Blocked);
        assert_eq!(job.findings, vec![blocker()]);
    }

    #[test]
    fn a_failed_change_rolls_back_or_holds_by_policy() {
        for (policy, expected) in [
            (OnFailure::Rollback, JobState::RolledBack),
            (OnFailure::Hold, JobState::Held),
        ] {
            let mut job = start("j".into(), "h".into(), T, steps(), policy, 0);
            let sent = run(
                &mut job,
                vec![ok(""), ok(""), ok(""), ok(""), failed(), ok("rolled back")],
            );
            if policy == OnFailure::Rollback {
                assert_eq!(sent.last(), Some(&(0, JobPhase::Rollback)));
            } else {
                assert!(!sent.iter().any(|(_, p)| *p == JobPhase::Rollback));
            }
            assert_eq!(job.state, expected, "{policy:?}");
        }
    }

    #[test]
    fn failures_before_any_change_fail_the_job_without_rollback() {
        for failing_at in 0..2 {
            let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
            let mut events: Vec<Event> = (0..failing_at).map(|_| ok("")).collect();
            events.push(failed());
            let sent = run(&mut job, events);
            assert_eq!(job.state, JobState::Failed);
            assert!(!sent.iter().any(|(_, p)| *p == JobPhase::Rollback));
        }
    }

    #[test]
    fn a_journal_ahead_of_the_records_holds_the_job_and_refuses_a_retry() {
        let ahead = Event::JournalAhead {
            accepted: 9,
            known: 5,
        };
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        run(&mut job, vec![ok(""), ok("")]);
        let phase = job.phase;
        assert_eq!(job.apply(ahead.clone(), 5), Decision::Wait);
        assert_eq!(
            (job.state, job.held),
            (JobState::Held, Some(Hold::Diverged))
        );
        assert!(job.detail.contains("is not sent again"), "{}", job.detail);
        assert_eq!(job.can_retry(), Err(RetryRefused::Diverged(phase)));
        assert_eq!(job.apply(Event::RetryRequested, 6), Decision::Wait);
        assert_eq!(job.state, JobState::Held);
        // A rollback stays possible.
        assert_eq!(job.apply(Event::RollbackRequested, 7), Decision::Send);
        assert_eq!(job.phase, JobPhase::Rollback);

        // A finished job is history: nothing to hold.
        let mut done = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        done.state = JobState::Succeeded;
        assert_eq!(done.apply(ahead, 8), Decision::Wait);
        assert_eq!(done.state, JobState::Succeeded);
    }

    #[test]
    fn a_rewound_journal_ends_a_rollback_or_holds_anything_else() {
        let rewound = |os: &str| Event::JournalRewound { os_now: os.into() };
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        job.original_os = "centos 7.9".into();
        run(&mut job, vec![ok(""), ok(""), ok(""), ok(""), failed()]);
        assert_eq!(job.phase, JobPhase::Rollback);
        assert_eq!(job.apply(rewound("centos 7.9"), 5), Decision::Wait);
        assert_eq!(job.state, JobState::RolledBack);
        assert!(
            job.detail
                .contains("came back from its snapshot running centos 7.9")
        );

        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        job.original_os = "centos 7.9".into();
        run(&mut job, vec![ok(""), ok(""), ok(""), ok(""), failed()]);
        job.apply(rewound("rhel 7.9"), 5);
        assert_eq!(
            job.state,
            JobState::Held,
            "the revert did not bring the original OS back"
        );

        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        run(&mut job, vec![ok(""), ok("")]);
        job.apply(rewound("centos 7.9"), 5);
        assert_eq!(job.state, JobState::Held, "reverted outside the job");
    }

    #[test]
    fn a_held_job_waits_for_an_operator_and_a_timeout_holds() {
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        run(&mut job, vec![ok(""), ok(""), ok("")]); // now rebooting
        assert_eq!(job.phase, JobPhase::Reboot);
        assert_eq!(
            job.apply(
                Event::TimedOut {
                    after_seconds: 14400
                },
                5
            ),
            Decision::Wait
        );
        assert_eq!(job.state, JobState::Held);
        assert!(job.detail.contains("emergency shell"), "{}", job.detail);
        assert_eq!(
            job.apply(ok("rebooted late"), 6),
            Decision::Send,
            "a host that reports after the timeout is back: its report decides"
        );
        assert_eq!(
            (job.phase, job.state, job.held),
            (JobPhase::Verify, JobState::Running, None)
        );
        assert!(
            job.timeline
                .iter()
                .any(|e| e.text == "the host reported after the timeout: succeeded"),
            "{:?}",
            job.timeline
        );
        job.apply(failed(), 8);
        assert_eq!(
            (job.state, job.held),
            (JobState::Held, Some(Hold::ChangeFailed))
        );
        assert_eq!(
            job.apply(ok("stray"), 8),
            Decision::Wait,
            "a job held for an operator ignores stray updates"
        );
        assert_eq!(job.apply(Event::RollbackRequested, 9), Decision::Send);
        assert_eq!(job.phase, JobPhase::Rollback);
        job.apply(ok(""), 10);
        assert_eq!(job.state, JobState::RolledBack);
        assert_eq!(
            job.apply(Event::RollbackRequested, 11),
            Decision::Wait,
            "a final job stays final"
        );
    }

    #[test]
    fn a_retry_is_refused_up_front_where_the_agent_would_refuse_it() {
        // Held after its verify failed: the agent waits for a rollback.
        let mut verify = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        run(&mut verify, vec![ok(""), ok(""), ok(""), ok(""), failed()]);
        assert_eq!(
            (verify.phase, verify.state),
            (JobPhase::Verify, JobState::Held)
        );
        assert_eq!(
            verify.can_retry(),
            Err(RetryRefused::FailedStep(JobPhase::Verify))
        );
        assert!(
            verify.detail.contains("mfctl hosts rollback"),
            "{}",
            verify.detail
        );
        assert_eq!(verify.apply(Event::RetryRequested, 2), Decision::Wait);
        assert_eq!(verify.state, JobState::Held, "nothing was sent");
        assert_eq!(verify.apply(Event::RollbackRequested, 3), Decision::Send);
        assert_eq!(verify.held, None, "running again");

        // A reboot that timed out can be sent again.
        let mut reboot = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        run(&mut reboot, vec![ok(""), ok(""), ok("")]);
        reboot.apply(Event::TimedOut { after_seconds: 60 }, 2);
        assert_eq!(reboot.held, Some(Hold::TimedOut));
        assert_eq!(reboot.can_retry(), Ok(()));
        assert_eq!(reboot.apply(Event::RetryRequested, 3), Decision::Send);
        assert_eq!(
            (reboot.phase, reboot.state),
            (JobPhase::Reboot, JobState::Running)
        );

        // A failed rollback can be tried again; a running job cannot be retried.
        let mut rollback = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        run(&mut rollback, vec![ok(""), ok(""), failed(), failed()]);
        assert_eq!(rollback.held, Some(Hold::RollbackFailed));
        assert_eq!(rollback.can_retry(), Ok(()));
        let running = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        assert_eq!(
            running.can_retry(),
            Err(RetryRefused::NotHeld(JobState::Running))
        );
    }

    #[test]
    fn only_running_and_held_jobs_are_not_final() {
        use JobState::*;
        for (state, is_final) in [
            (Running, false),
            (Held, false),
            (Succeeded, true),
            (Blocked, true),
            (Failed, true),
            (RolledBack, true),
        ] {
            assert_eq!(state.is_final(), is_final, "{state:?}");
        }
    }

    #[test]
    fn the_operator_who_asked_is_named_in_the_first_entry() {
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        job.asked_by("alice");
        assert!(
            job.timeline[0]
                .text
                .starts_with("job created by alice: rhel-8.10 ("),
            "{:?}",
            job.timeline[0]
        );
    }

    #[test]
    fn the_left_out_marker_carries_the_time_of_the_last_entry_left_out() {
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        for i in 1..=500 {
            job.note(i * 10, format!("entry {i}"));
            if job.timeline_left_out > 0 {
                let marker = &job.timeline[TIMELINE_FIRST];
                let next = &job.timeline[TIMELINE_FIRST + 1];
                assert_eq!(marker.at_unix_ms, next.at_unix_ms - 10, "after entry {i}");
            }
        }
    }

    /// Events that do not apply to a job in its state change nothing at all.
    #[test]
    fn events_that_do_not_apply_leave_the_job_untouched() {
        let running = start("j".into(), "h".into(), T, steps(), OnFailure::Hold, 0);
        let mut held = running.clone();
        run(&mut held, vec![ok(""), ok(""), failed()]);
        assert_eq!(held.held, Some(Hold::ChangeFailed));
        let mut done = running.clone();
        run(&mut done, (0..12).map(|_| ok("")).collect());
        assert_eq!(done.state, JobState::Succeeded);
        let every = || {
            vec![
                Event::RollbackRequested,
                Event::RetryRequested,
                Event::JournalRewound {
                    os_now: "rhel 8.10".into(),
                },
                Event::JournalAhead {
                    accepted: 9,
                    known: 5,
                },
                Event::TimedOut { after_seconds: 60 },
                ok("late"),
                failed(),
            ]
        };
        let cases = [
            (
                &running,
                vec![Event::RollbackRequested, Event::RetryRequested],
            ),
            (
                &held,
                vec![
                    Event::RetryRequested,
                    Event::JournalRewound {
                        os_now: "centos 7.9".into(),
                    },
                    Event::JournalAhead {
                        accepted: 9,
                        known: 5,
                    },
                    Event::TimedOut { after_seconds: 60 },
                    ok("stray"),
                    failed(),
                ],
            ),
            (&done, every()),
        ];
        for (job, events) in cases {
            for event in events {
                let mut after = job.clone();
                let shown = format!("{event:?}");
                assert_eq!(after.apply(event, 99), Decision::Wait, "{shown}");
                assert_eq!(&after, job, "{shown} changed a {:?} job", job.state);
            }
        }
    }

    #[test]
    fn the_timeline_says_what_a_precheck_found_and_what_a_block_leaves() {
        let mut clean = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        clean.apply(ok("no blockers"), 1);
        assert!(
            clean
                .timeline
                .iter()
                .any(|e| e.text == "precheck succeeded: no blockers"),
            "{:?}",
            clean.timeline
        );
        let blocked_update = || Event::Update {
            state: UpdateState::Succeeded,
            detail: "1 blocking".into(),
            findings: vec![blocker()],
        };
        let mut first = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        first.apply(blocked_update(), 1);
        assert!(
            first
                .timeline
                .iter()
                .any(|e| e.text == "precheck found blockers: 1 blocking"),
            "{:?}",
            first.timeline
        );
        assert!(
            first.detail.ends_with("nothing was changed"),
            "{}",
            first.detail
        );
        let mut second = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        run(&mut second, (0..6).map(|_| ok("")).collect());
        assert_eq!((second.step_index, second.phase), (1, JobPhase::Precheck));
        second.apply(blocked_update(), 2);
        assert!(
            second
                .detail
                .ends_with("the 1 earlier step(s) stay done; this one changed nothing"),
            "{}",
            second.detail
        );
        // A snapshot that reports a blocking finding did not "find blockers".
        let mut snapshot = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        snapshot.apply(ok(""), 1);
        snapshot.apply(blocked_update(), 2);
        assert!(
            snapshot
                .timeline
                .iter()
                .any(|e| e.text == "snapshot succeeded: 1 blocking"),
            "{:?}",
            snapshot.timeline
        );
    }

    #[test]
    fn a_failure_keeps_the_findings_it_reports_and_those_before() {
        let failed_with = |findings: Vec<Finding>| Event::Update {
            state: UpdateState::Failed,
            detail: "the tool failed".into(),
            findings,
        };
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        job.apply(failed_with(vec![blocker()]), 1);
        assert_eq!(job.findings, vec![blocker()]);
        let mut job = start("j".into(), "h".into(), T, steps(), OnFailure::Rollback, 0);
        job.findings = vec![blocker()];
        job.apply(failed_with(Vec::new()), 1);
        assert_eq!(
            job.findings,
            vec![blocker()],
            "an empty report keeps what was known"
        );
    }
}
