//! The inventory task's side of jobs: starting one, feeding it the agent's
//! updates, operators' decisions and the clock, and sending the command of
//! each phase it enters, after the job is written (the batch is flushed
//! before commands leave).

use std::collections::HashMap;

use super::{InventoryError, JobAction, State};
use mf_core::command::{AgentCommand, CommandPhase, CommandUpdate};
use mf_core::job::{self, Decision, Event, Job, JobPhase, JobState, OnFailure};
use mf_core::path::{self, Target};

/// Commands of a job wait this long for their agent.
const COMMAND_TTL_MS: i64 = 24 * 3600 * 1000;

/// The command for the job's current phase.
pub(super) fn command(job: &Job) -> AgentCommand {
    let step = job.step();
    AgentCommand {
        id: job.command_id.clone(),
        host_id: job.host_id.clone(),
        sequence: job.sequence,
        expires_unix_ms: job.command_expires_unix_ms,
        phase: match job.phase {
            JobPhase::Precheck => CommandPhase::Precheck(step),
            JobPhase::Snapshot => CommandPhase::Snapshot {
                job_id: job.id.clone(),
            },
            JobPhase::Execute => CommandPhase::Execute(step),
            JobPhase::Reboot => CommandPhase::Reboot,
            JobPhase::Verify => CommandPhase::Verify(step),
            JobPhase::Commit => CommandPhase::Commit,
            JobPhase::Rollback => CommandPhase::Rollback,
        },
    }
}

/// The latest job of each host: the task's job state.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    by_host: HashMap<String, Job>,
}

impl Jobs {
    pub(super) fn get(&self, host_id: &str) -> Option<&Job> {
        self.by_host.get(host_id)
    }

    /// Records the host's latest job.
    pub(super) fn replace(&mut self, host_id: &str, job: Job) {
        self.by_host.insert(host_id.to_string(), job);
    }

    /// The host's job if it is not over (running or held).
    pub(super) fn remove(&mut self, host_id: &str) -> Option<Job> {
        self.by_host.remove(host_id)
    }

    pub(super) fn in_progress(&self, host_id: &str) -> Option<&Job> {
        self.get(host_id).filter(|j| !j.state.is_final())
    }

    /// The command of a running job that the agent has not accepted yet.
    pub(super) fn undelivered(&self, host_id: &str, last_sequence: u64) -> Option<AgentCommand> {
        self.get(host_id)
            .filter(|j| j.state == JobState::Running && j.sequence > last_sequence)
            .map(command)
    }

    /// Running jobs whose reboot (of a step or a rollback) began over `limit_ms` ago.
    fn overdue(&self, now: i64, limit_ms: i64) -> Vec<Job> {
        self.by_host
            .values()
            .filter(|j| {
                j.state == JobState::Running
                    && matches!(j.phase, JobPhase::Reboot | JobPhase::Rollback)
                    && now - j.phase_started_unix_ms > limit_ms
            })
            .cloned()
            .collect()
    }
}

/// A migration as an operator asks for it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub host_id: String,
    pub target: Target,
    pub on_failure: OnFailure,
    /// Who asked: an operator's name, or the wave that started it.
    pub requested_by: String,
}

impl State {
    /// An operator's migration: refused for a host a wave migrates.
    pub(super) fn migrate(&mut self, new: NewJob) -> Result<Job, InventoryError> {
        if let Some(wave) = self.wave_of(&new.host_id) {
            return Err(InventoryError::Conflict(format!(
                "host {} is in wave {wave}, which migrates it (mfctl wave skip takes it out)",
                new.host_id
            )));
        }
        self.start_job(new)
    }

    pub(super) fn start_job(&mut self, new: NewJob) -> Result<Job, InventoryError> {
        let NewJob {
            host_id,
            target,
            on_failure,
            requested_by,
        } = new;
        let host_id = host_id.as_str();
        if let Some(reason) = self.clock_refusal(host_id) {
            return Err(InventoryError::Conflict(format!(
                "host {host_id}: {reason}"
            )));
        }
        let now = self.now();
        let host = self
            .hosts
            .get(host_id)
            .ok_or_else(|| InventoryError::UnknownHost(host_id.to_string()))?;
        if let Some(job) = self.jobs.in_progress(host_id) {
            return Err(InventoryError::Conflict(format!(
                "host {host_id} has a job in progress ({}, {}): wait for it, or roll back or retry it",
                job.state.label(),
                job.phase.label()
            )));
        }
        let os = host
            .record
            .facts
            .as_ref()
            .and_then(|f| f.os.clone())
            .ok_or_else(|| {
                InventoryError::Conflict(format!(
                    "host {host_id} has not reported its operating system"
                ))
            })?;
        let steps = path::plan(&os.id, &os.version, target)
            .map_err(|e| InventoryError::Invalid(e.to_string()))?;
        let id = format!("job-{}", mf_pki::token::hex_id());
        let mut job = job::start(id, host_id.to_string(), target, steps, on_failure, now);
        job.asked_by(&requested_by);
        job.original_os = format!("{} {}", os.id, os.version);
        // The gauge counts each host's latest job: the one this replaces leaves it.
        if let Some(previous) = self.jobs.get(host_id) {
            self.count_job(Some(previous), None);
        }
        Ok(self.send_phase(job, None, now))
    }

    pub(super) fn job_action(
        &mut self,
        host_id: &str,
        action: JobAction,
    ) -> Result<Job, InventoryError> {
        let now = self.now();
        if !self.hosts.contains_key(host_id) {
            return Err(InventoryError::UnknownHost(host_id.to_string()));
        }
        let job = self
            .jobs
            .get(host_id)
            .cloned()
            .ok_or_else(|| InventoryError::Conflict(format!("host {host_id} has no job")))?;
        if job.state != JobState::Held {
            return Err(InventoryError::Conflict(format!(
                "the job of {host_id} is {}: only a held job takes an operator's decision",
                job.state.label()
            )));
        }
        // Refused here, with the command that works, rather than sent and
        // refused later by the agent.
        if action == JobAction::Retry
            && let Err(refused) = job.can_retry()
        {
            return Err(InventoryError::Conflict(format!(
                "cannot retry the job of {host_id}: {}",
                refused.to_string().replace("HOST", host_id)
            )));
        }
        let old = job.clone();
        let mut job = job;
        let event = match action {
            JobAction::Rollback => Event::RollbackRequested,
            JobAction::Retry => Event::RetryRequested,
        };
        match job.apply(event, now) {
            Decision::Send => Ok(self.send_phase(job, Some(old), now)),
            Decision::Wait => Err(InventoryError::Conflict("nothing to do".into())),
        }
    }

    /// Gives the job's current phase a new command, records the job and host,
    /// and queues the command for after the flush.
    fn send_phase(&mut self, mut job: Job, old: Option<Job>, now: i64) -> Job {
        let Some(host) = self.hosts.get_mut(&job.host_id) else {
            return job;
        };
        host.record.last_sequence += 1;
        job.sequence = host.record.last_sequence;
        job.command_id = format!("{}-{}", job.phase.label(), mf_pki::token::hex_id());
        job.command_expires_unix_ms = now + COMMAND_TTL_MS;
        let record = host.record.clone();
        self.jobs.replace(&job.host_id, job.clone());
        let host_id = job.host_id.clone();
        self.count_job(old.as_ref(), Some(&job));
        self.metrics
            .commands
            .with_label_values(&[job.phase.label(), "requested"])
            .inc();
        if let Err(e) = self
            .store
            .put_host(&record)
            .and_then(|()| self.store.put_job(&host_id, &job))
        {
            tracing::error!(%host_id, error = %e, "cannot record a job");
        }
        self.deliveries.push(command(&job));
        self.wave_job_changed(old.as_ref(), &job);
        self.job_event(old.as_ref(), &job);
        job
    }

    /// A job that changed state or phase is an event.
    fn job_event(&mut self, old: Option<&Job>, job: &Job) {
        if old.is_some_and(|o| (o.state, o.phase) == (job.state, job.phase)) {
            return;
        }
        let data = serde_json::json!({
            "job_id": job.id,
            "host_id": job.host_id,
            "target": job.target.to_string(),
            "state": job.state.label(),
            "phase": job.phase.label(),
            "previous_state": old.map(|o| o.state.label()),
            "detail": job.detail,
        });
        self.emit(super::kinds::JOB_STATE_CHANGED, &job.host_id, data);
    }

    fn save_job(&mut self, job: Job, old: &Job) {
        self.job_event(Some(old), &job);
        self.count_job(Some(old), Some(&job));
        let host_id = job.host_id.clone();
        if let Err(e) = self.store.put_job(&host_id, &job) {
            tracing::error!(%host_id, error = %e, "cannot record a job");
        }
        self.wave_job_changed(Some(old), &job);
        self.jobs.replace(&host_id, job);
    }

    pub(super) fn apply_job_update(&mut self, host_id: &str, update: CommandUpdate, now: i64) {
        let Some(old) = self.jobs.get(host_id).cloned() else {
            return;
        };
        let mut job = old.clone();
        job.acknowledged_sequence = job.acknowledged_sequence.max(update.sequence);
        let phase = job.phase.label();
        self.metrics
            .commands
            .with_label_values(&[phase, update.state.label()])
            .inc();
        if update.state != super::UpdateState::Started && job.state == JobState::Running {
            let seconds = (now - job.phase_started_unix_ms).max(0) as f64 / 1000.0;
            self.metrics
                .phase_duration_seconds
                .with_label_values(&[phase, update.state.label()])
                .observe(seconds);
        }
        let event = Event::Update {
            state: update.state,
            detail: update.detail,
            findings: update.findings,
        };
        match job.apply(event, now) {
            Decision::Send => {
                self.send_phase(job, Some(old), now);
            }
            Decision::Wait => self.save_job(job, &old),
        }
    }

    /// A host whose journal is older than what it acknowledged had its disk
    /// reverted; returns true when that settled its job.
    pub(super) fn journal_rewound(
        &mut self,
        host_id: &str,
        last_sequence: u64,
        os_now: String,
    ) -> bool {
        let now = self.now();
        let Some(old) = self.jobs.get(host_id).cloned() else {
            return false;
        };
        if !old.awaits_host() || last_sequence >= old.acknowledged_sequence {
            return false;
        }
        let mut job = old.clone();
        job.apply(Event::JournalRewound { os_now }, now);
        self.save_job(job, &old);
        true
    }

    /// A host whose journal holds commands after the last one the records
    /// know: its running job is held rather than driven from stale records.
    pub(super) fn journal_ahead(&mut self, host_id: &str, accepted: u64, known: u64) {
        let now = self.now();
        let Some(old) = self.jobs.get(host_id).cloned() else {
            return;
        };
        let mut job = old.clone();
        job.apply(Event::JournalAhead { accepted, known }, now);
        if job != old {
            self.save_job(job, &old);
        }
    }

    /// Holds jobs whose reboot never came back.
    pub(super) fn tick(&mut self) {
        let now = self.now();
        let limit = i64::try_from(self.settings.reboot_timeout.as_millis()).unwrap_or(i64::MAX);
        for old in self.jobs.overdue(now, limit) {
            let mut job = old.clone();
            job.apply(
                Event::TimedOut {
                    after_seconds: self.settings.reboot_timeout.as_secs(),
                },
                now,
            );
            let data = serde_json::json!({
                "host_id": job.host_id,
                "job_id": job.id,
                "reason": job.detail,
            });
            self.emit(super::kinds::HOST_LOST, &old.host_id, data);
            self.save_job(job, &old);
        }
    }

    pub(super) fn count_job(&self, old: Option<&Job>, new: Option<&Job>) {
        for (job, delta) in [(old, -1), (new, 1)] {
            if let Some(job) = job {
                self.metrics
                    .jobs
                    .with_label_values(&[job.state.label()])
                    .add(delta);
            }
        }
    }
}
