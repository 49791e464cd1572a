//! The inventory task's side of pre-checks: planning each selected host's
//! next step and recording the pre-check (durable before it is sent), applying
//! agents' updates (a job's command goes to the job), and the readiness and
//! finding gauges.

use std::collections::HashMap;

use super::hosts::Selection;
use super::{PRECHECK_TTL_MS, PrecheckSummary, State};
use mf_core::command::{AgentCommand, CommandPhase, CommandUpdate, UpdateState};
use mf_core::path::{self, Target};
use mf_core::precheck::{PrecheckRecord, PrecheckState, Readiness};
use tracing::{debug, error};

/// The latest pre-check of each host: the task's pre-check state.
#[derive(Debug, Default)]
pub(super) struct Prechecks {
    by_host: HashMap<String, PrecheckRecord>,
}

impl Prechecks {
    pub(super) fn get(&self, host_id: &str) -> Option<&PrecheckRecord> {
        self.by_host.get(host_id)
    }

    /// Records the host's latest pre-check; returns the one it replaces.
    pub(super) fn replace(
        &mut self,
        host_id: &str,
        record: PrecheckRecord,
    ) -> Option<PrecheckRecord> {
        self.by_host.insert(host_id.to_string(), record)
    }

    pub(super) fn remove(&mut self, host_id: &str) -> Option<PrecheckRecord> {
        self.by_host.remove(host_id)
    }

    /// The pre-check of `host_id` still in flight (requested or running, not expired).
    pub(super) fn in_flight(&self, host_id: &str, now: i64) -> Option<&PrecheckRecord> {
        self.get(host_id)
            .filter(|p| p.state != PrecheckState::Done && p.expires_unix_ms > now)
    }

    /// A pre-check recorded while the agent was away and not yet accepted by it.
    pub(super) fn undelivered(
        &self,
        host_id: &str,
        last_sequence: u64,
        now: i64,
    ) -> Option<&PrecheckRecord> {
        self.get(host_id)
            .filter(|p| p.state == PrecheckState::Requested)
            .filter(|p| p.sequence > last_sequence && p.expires_unix_ms > now)
    }
}

impl State {
    /// Plans the first step of each selected host toward `target`, records the
    /// pre-check (durable with this batch) and queues its delivery.
    pub(super) fn precheck(&mut self, selection: &Selection, target: Target) -> PrecheckSummary {
        let now = self.now();
        let mut summary = PrecheckSummary::default();
        let mut ids: Vec<String> = self
            .hosts
            .values()
            .filter(|h| h.picked_by(selection))
            .map(|h| h.record.id.clone())
            .collect();
        ids.sort();
        for id in ids {
            // A host whose clock is off gets an error outcome with the
            // reason, in readiness, and nothing is sent.
            if let Some(reason) = self.clock_refusal(&id) {
                self.record_clock_refusal(&id, target, &reason, now);
                summary.refused.push((id, reason));
                continue;
            }
            let Some(host) = self.hosts.get_mut(&id) else {
                continue;
            };
            let Some(os) = host.record.facts.as_ref().and_then(|f| f.os.clone()) else {
                summary
                    .refused
                    .push((id, "the host has not reported its operating system".into()));
                continue;
            };
            // One command at a time per agent: a second pre-check would be
            // refused as busy and hide the outcome of the first.
            if let Some(current) = self.prechecks.in_flight(&id, now) {
                summary.refused.push((
                    id,
                    format!(
                        "a pre-check for {} is already in flight ({}); its outcome will show in readiness",
                        current.target, current.command_id
                    ),
                ));
                continue;
            }
            if let Some(job) = self.jobs.in_progress(&id) {
                summary.refused.push((
                    id,
                    format!(
                        "its job {} is {} in {}: a pre-check waits until it ends",
                        job.id, job.state, job.phase
                    ),
                ));
                continue;
            }
            // An impossible path is refused with its reason and records nothing.
            let step = match path::plan(&os.id, &os.version, target) {
                Ok(steps) => steps[0],
                Err(e) => {
                    summary.refused.push((id, e.to_string()));
                    continue;
                }
            };
            host.record.last_sequence += 1;
            let record = PrecheckRecord {
                command_id: format!("pre-{}", mf_pki::token::hex_id()),
                sequence: host.record.last_sequence,
                target,
                step,
                state: PrecheckState::Requested,
                readiness: Readiness::Unknown,
                detail: format!("requested: {step}"),
                requested_unix_ms: now,
                expires_unix_ms: now + PRECHECK_TTL_MS,
                started_unix_ms: 0,
                finished_unix_ms: 0,
                findings: Vec::new(),
                previous: self
                    .prechecks
                    .get(&id)
                    .and_then(PrecheckRecord::carried_outcome),
            };
            let command = precheck_command(&id, &record);
            let old = self.prechecks.replace(&id, record.clone());
            let host_record = host.record.clone();
            let connected = host.session.is_some();
            self.count_precheck(old.as_ref(), Some(&record));
            if let Err(e) = self
                .store
                .put_host(&host_record)
                .and_then(|()| self.store.put_precheck(&id, &record))
            {
                error!(host_id = %id, error = %e, "cannot record a pre-check");
                summary
                    .refused
                    .push((id, "the coordinator could not record the pre-check".into()));
                continue;
            }
            self.metrics
                .commands
                .with_label_values(&["precheck", "requested"])
                .inc();
            if connected {
                summary.dispatched += 1;
            } else {
                summary.queued += 1;
            }
            self.deliveries.push(command);
        }
        summary
    }

    /// Records a pre-check that was not sent because the host's clock is
    /// off: readiness shows the host in error with the reason.
    fn record_clock_refusal(&mut self, host_id: &str, target: Target, reason: &str, now: i64) {
        let Some(host) = self.hosts.get(host_id) else {
            return;
        };
        let Some(step) = host
            .record
            .facts
            .as_ref()
            .and_then(|f| f.os.as_ref())
            .and_then(|os| path::plan(&os.id, &os.version, target).ok())
            .and_then(|steps| steps.first().copied())
        else {
            return;
        };
        let record = PrecheckRecord {
            command_id: String::new(),
            sequence: 0,
            target,
            step,
            state: PrecheckState::Done,
            readiness: Readiness::Error,
            detail: format!("not sent: {reason}"),
            requested_unix_ms: now,
            expires_unix_ms: now,
            started_unix_ms: 0,
            finished_unix_ms: now,
            findings: Vec::new(),
            previous: None,
        };
        let old = self.prechecks.replace(host_id, record.clone());
        self.count_precheck(old.as_ref(), Some(&record));
        if let Err(e) = self.store.put_precheck(host_id, &record) {
            error!(host_id, error = %e, "cannot record a pre-check refusal");
        }
    }

    /// An agent's report on a command; stale or unknown ones change nothing.
    pub(super) fn apply_update(&mut self, host_id: &str, update: CommandUpdate) {
        let now = self.now();
        if self
            .jobs
            .get(host_id)
            .is_some_and(|j| j.command_id == update.command_id)
        {
            self.apply_job_update(host_id, update, now);
            return;
        }
        let Some(old) = self
            .prechecks
            .get(host_id)
            .filter(|p| p.command_id == update.command_id)
            .cloned()
        else {
            debug!(host_id, command_id = %update.command_id, "update for a command that is not current");
            return;
        };
        if old.state == PrecheckState::Done {
            return; // already final: a repeated outcome
        }
        let mut record = old.clone();
        match update.state {
            UpdateState::Started => {
                record.state = PrecheckState::Running;
                record.started_unix_ms = now;
                record.detail = format!("running: {}", record.step);
            }
            UpdateState::Succeeded => {
                record.state = PrecheckState::Done;
                record.readiness = if update.findings.iter().any(|f| f.blocking) {
                    Readiness::Blocked
                } else {
                    Readiness::Ready
                };
                record.detail = update.detail;
                record.findings = update.findings;
                record.finished_unix_ms = now;
            }
            UpdateState::Failed | UpdateState::Refused | UpdateState::Interrupted => {
                record.state = PrecheckState::Done;
                record.readiness = Readiness::Error;
                record.detail = format!("{} by the agent: {}", update.state.label(), update.detail);
                record.findings = update.findings;
                record.finished_unix_ms = now;
            }
        }
        self.metrics
            .commands
            .with_label_values(&["precheck", update.state.label()])
            .inc();
        if record.state == PrecheckState::Done && record.started_unix_ms > 0 {
            let seconds = (record.finished_unix_ms - record.started_unix_ms).max(0) as f64 / 1000.0;
            self.metrics
                .phase_duration_seconds
                .with_label_values(&["precheck", record.readiness.label()])
                .observe(seconds);
        }
        self.count_precheck(Some(&old), Some(&record));
        self.prechecks.replace(host_id, record.clone());
        if record.state == PrecheckState::Done {
            let verdict = self
                .hosts
                .get(host_id)
                .map(|h| self.verdict_of(&h.record).readiness.label());
            let data = serde_json::json!({
                "host_id": host_id,
                "target": record.target.to_string(),
                "step": record.step.to_string(),
                "outcome": record.readiness.label(),
                "readiness": verdict,
                "detail": record.detail,
                "blocking": record
                    .findings
                    .iter()
                    .filter(|f| f.blocking)
                    .map(|f| f.title.as_str())
                    .collect::<Vec<_>>(),
            });
            self.emit(super::kinds::PRECHECK_FINISHED, host_id, data);
        }
        // Not flushed: the agent sends its latest outcome again in every hello.
        if let Err(e) = self.store.put_precheck(host_id, &record) {
            error!(host_id, error = %e, "cannot store a pre-check outcome");
        }
    }

    /// Keeps the finding gauges in step with one host's change (readiness
    /// is exported whole each tick: `export_readiness`).
    pub(super) fn count_precheck(
        &self,
        old: Option<&PrecheckRecord>,
        new: Option<&PrecheckRecord>,
    ) {
        for (record, delta) in [(old, -1), (new, 1)] {
            let Some(record) = record else { continue };
            if let Some(record) = record.latest_done() {
                let mut seen = std::collections::BTreeSet::new();
                for f in record
                    .findings
                    .iter()
                    .filter(|f| seen.insert(f.key.clone()))
                {
                    let blocking = if f.blocking { "true" } else { "false" };
                    self.metrics
                        .finding_hosts
                        .with_label_values(&[f.source.label(), &f.key, &f.title, blocking])
                        .add(delta);
                }
            }
        }
    }
}

pub(super) fn precheck_command(host_id: &str, record: &PrecheckRecord) -> AgentCommand {
    AgentCommand {
        id: record.command_id.clone(),
        host_id: host_id.to_string(),
        sequence: record.sequence,
        expires_unix_ms: record.expires_unix_ms,
        phase: CommandPhase::Precheck(record.step),
    }
}
