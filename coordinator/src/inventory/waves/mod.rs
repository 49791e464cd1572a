//! The inventory task's side of waves: creating one from the inventory (who
//! is in, who is left out and why), the operators' lifecycle actions, and
//! driving running waves: each decision (a host started, a host ended, a
//! stage opened, a halt) is written with this batch, which is flushed before
//! any command it implies leaves (`State::run`). A job that ends tells its
//! wave; the wave then starts whoever may start.

#[cfg(test)]
mod property_tests;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use tracing::{error, info, warn};

use super::{CreateMode, InventoryError, JobAction, State};
use crate::store::wave_record::{Lifecycle, MemberRecord, WaveHead, WavePlan};
use mf_core::finding::Severity;
use mf_core::job::{Job, JobState};
use mf_core::wave::blast;
use mf_core::wave::calendar::Calendar;
use mf_core::wave::durations::{Durations, path_key};
use mf_core::wave::estimate;
use mf_core::wave::joining::{self, Candidate, Exclusion, UNREACHABLE_AFTER_MS};
use mf_core::wave::lifecycle::{self, Applied};
use mf_core::wave::scheduler::{HostState, Member, Outcome, Wait, Wave};
use mf_core::wave::spec::WaveSpec;
use mf_core::wave::status::{HostStatus, WaveState};
use serde_json::json;

use super::kinds;
use views::plan_view;
pub use views::{PlanView, StageView, StatusView, WhyView};

/// At most this many waves are kept (finished ones included).
const MAX_WAVES: usize = 1000;

pub use mf_core::wave::lifecycle::WaveAction;

/// An operator's action on one host of a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    Retry,
    Skip,
}

/// A live wave in the inventory task.
pub(super) struct LiveWave {
    head: WaveHead,
    wave: Wave,
    paths: Vec<String>,
    excluded: Vec<(String, String)>,
    outside_selector: usize,
    members: Vec<MemberRecord>,
    index: HashMap<String, usize>,
    /// Per member: since when its agent has been away (None: connected).
    away: Vec<Option<i64>>,
    dirty_head: bool,
    dirty: BTreeSet<usize>,
    /// The gauges lag at most a second behind: recounting every host of a
    /// large wave after every batch would cost more than the wave itself.
    counted_at: Option<Instant>,
    uncounted: bool,
    /// The ETA is a simulation of the rest of the wave: kept a few seconds.
    eta_cache: Option<(Instant, Option<i64>)>,
}

/// Every state a wave's host can be in, as the gauges label them.
const HOST_STATES: [&str; 10] = [
    "pending",
    "running",
    "succeeded",
    "rolled-back",
    "failed",
    "blocked",
    "aborted",
    "unreachable",
    "skipped",
    "not-started",
];

const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const ETA_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Every wave, which wave holds each host, and what was measured.
#[derive(Default)]
pub(super) struct Waves {
    live: BTreeMap<String, LiveWave>,
    /// Hosts of waves that hold them (created or running).
    member_of: HashMap<String, String>,
    durations: Durations,
    /// Something changed that may let hosts start.
    stirred: bool,
    /// When this coordinator started: disconnection is counted from here at most.
    since_unix_ms: i64,
    /// When each start of this batch was decided, for the dispatch latency.
    pub(super) starts: Vec<Instant>,
}

fn outcome_of(job: &Job) -> Option<Outcome> {
    match job.state {
        JobState::Running => None,
        JobState::Succeeded => Some(Outcome::Succeeded),
        JobState::Blocked => Some(Outcome::Blocked),
        JobState::Failed => Some(Outcome::Aborted),
        JobState::RolledBack => Some(Outcome::RolledBack),
        JobState::Held => Some(Outcome::Failed),
    }
}

/// The wave's gate for member m now: its agent must be connected, and the
/// calendar must let its expected duration run.
fn gate<'a>(
    away: &'a [Option<i64>],
    calendar: &'a Calendar,
    expected: &'a dyn Fn(usize) -> i64,
    now: i64,
) -> impl Fn(usize) -> Option<String> + 'a {
    let timeless = calendar.windows.is_empty() && calendar.freezes.is_empty();
    move |m| match away[m] {
        Some(seen) => Some(format!(
            "its agent is not connected (last seen {}); it is given up as unreachable after {}",
            crate::clock::format_unix_ms(seen),
            crate::clock::format_duration_ms(UNREACHABLE_AFTER_MS)
        )),
        None if timeless => None,
        None => calendar.closed(now, expected(m)),
    }
}

/// The expected duration of a path: measured, else the wave's default.
fn expected_ms(durations: &Durations, path: &str, default: i64) -> i64 {
    durations.estimate(path).map_or(default, |(ms, _)| ms)
}

impl LiveWave {
    /// A wave as the task holds it; `away` says which agents are absent.
    fn new(
        head: WaveHead,
        wave: Wave,
        plan: (Vec<String>, Vec<(String, String)>, usize),
        members: Vec<MemberRecord>,
        away: Vec<Option<i64>>,
    ) -> Self {
        let index = wave
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.host_id.clone(), i))
            .collect();
        let (paths, excluded, outside_selector) = plan;
        Self {
            head,
            wave,
            paths,
            excluded,
            outside_selector,
            members,
            index,
            away,
            dirty_head: false,
            dirty: BTreeSet::new(),
            counted_at: None,
            uncounted: true,
            eta_cache: None,
        }
    }

    fn state(&self) -> WaveState {
        self.head.lifecycle.shown(&self.wave)
    }

    /// Why pending member m does not start now, with the gate the wave runs with.
    fn why_now(&mut self, durations: &Durations, m: usize, now: i64) -> Option<Wait> {
        self.with_gate(durations, now, |wave, gate| wave.why(m, now, gate))
    }

    /// Runs `f` on the wave with the gate it runs under now: agents away, and
    /// the calendar against each host's expected duration.
    fn with_gate<T>(
        &mut self,
        durations: &Durations,
        now: i64,
        f: impl FnOnce(&mut Wave, &dyn Fn(usize) -> Option<String>) -> T,
    ) -> T {
        let LiveWave {
            wave,
            away,
            head,
            paths,
            ..
        } = self;
        let default = head.spec.default_expected_ms;
        let expected = |m: usize| expected_ms(durations, &paths[m], default);
        let gate = gate(away, &head.spec.calendar, &expected, now);
        f(wave, &gate)
    }

    fn expected(&self, durations: &Durations) -> Vec<i64> {
        let mut cache: HashMap<&str, i64> = HashMap::new();
        self.paths
            .iter()
            .map(|p| {
                *cache.entry(p).or_insert_with(|| {
                    expected_ms(durations, p, self.head.spec.default_expected_ms)
                })
            })
            .collect()
    }

    fn eta(&mut self, durations: &Durations, now: i64) -> Option<i64> {
        // Waiting for an operator: no ETA, and none kept from before.
        if !self.head.lifecycle.holds_hosts()
            || self.wave.progress.halted.is_some()
            || self.wave.progress.paused
        {
            self.eta_cache = None;
            return None;
        }
        if let Some((at, eta)) = self.eta_cache
            && at.elapsed() < ETA_EVERY
        {
            return eta;
        }
        let eta = self.simulate_eta(durations, now);
        self.eta_cache = Some((Instant::now(), eta));
        eta
    }

    fn simulate_eta(&self, durations: &Durations, now: i64) -> Option<i64> {
        let expected = self.expected(durations);
        let running: Vec<(usize, i64)> = self
            .wave
            .running()
            .map(|m| {
                let started = self.members[m].started_unix_ms.unwrap_or(now);
                (m, started + expected[m])
            })
            .collect();
        estimate::finish_time(
            &self.wave,
            &self.head.spec.calendar,
            &expected,
            &running,
            now,
        )
    }

    fn set_member(&mut self, m: usize, now: i64) {
        let record = &mut self.members[m];
        let state = self.wave.states[m];
        if record.state != state {
            match state {
                HostState::Running if record.started_unix_ms.is_none() => {
                    record.started_unix_ms = Some(now);
                }
                HostState::Pending => {
                    record.started_unix_ms = None;
                    record.finished_unix_ms = None;
                    record.job_id = None;
                }
                HostState::Done(_) => record.finished_unix_ms = Some(now),
                HostState::Running => {}
            }
            record.state = state;
        }
        self.dirty.insert(m);
    }
}

/// A wave's scheduler as a restart finds it, from its stored parts: the one
/// way back (the property test restarts through it too).
fn restored(
    head: &WaveHead,
    plan: &WavePlan,
    members: &[MemberRecord],
) -> Result<Wave, crate::store::StoreError> {
    Wave::restore(
        head.spec.policy.clone(),
        plan.members.clone(),
        plan.stages.clone(),
        members.iter().map(|m| m.state).collect(),
        head.progress.clone(),
    )
    .map_err(|reason| crate::store::StoreError::Corrupt {
        key: head.spec.name.clone(),
        reason,
    })
}

impl State {
    /// Reads every wave back and settles what happened to their jobs while
    /// the coordinator was away. Called once at start, after jobs are loaded.
    pub(super) fn load_waves(&mut self) -> Result<(), InventoryError> {
        self.waves.since_unix_ms = self.now();
        for host in self.hosts.values() {
            if let Some(job) = self.jobs.get(&host.record.id) {
                self.waves.durations.record(job);
            }
        }
        for (head, plan, members) in self.store.waves()? {
            let name = head.spec.name.clone();
            let wave = restored(&head, &plan, &members)?;
            if head.lifecycle.holds_hosts() {
                for member in &wave.members {
                    self.waves
                        .member_of
                        .insert(member.host_id.clone(), name.clone());
                }
            }
            // No agent has a session yet: each is away since now.
            let away = vec![Some(self.waves.since_unix_ms); wave.members.len()];
            let plan = (plan.paths, plan.excluded, plan.outside_selector);
            let live = LiveWave::new(head, wave, plan, members, away);
            self.waves.live.insert(name.clone(), live);
            // Jobs that moved on after the wave's last write (cannot happen
            // when both are in one batch, but a wave must never wait for ever).
            let live = &self.waves.live[&name];
            let jobs: Vec<(usize, Job)> = live
                .members
                .iter()
                .enumerate()
                .filter_map(|(m, record)| {
                    let job = self.jobs.get(&live.wave.members[m].host_id)?;
                    (record.job_id.as_deref() == Some(job.id.as_str())).then(|| (m, job.clone()))
                })
                .collect();
            let now = self.now();
            for (m, job) in jobs {
                self.follow_job(&name, m, &job, now);
            }
            self.count_wave(&name);
        }
        self.waves.stirred = true;
        Ok(())
    }

    fn wave(&mut self, name: &str) -> Result<&mut LiveWave, InventoryError> {
        self.waves
            .live
            .get_mut(name)
            .ok_or_else(|| InventoryError::UnknownWave(name.to_string()))
    }

    /// Plans a wave over the selected hosts and records it (nothing starts),
    /// or with [`CreateMode::DryRun`] only shows the plan.
    pub(super) fn create_wave(
        &mut self,
        spec: WaveSpec,
        mode: CreateMode,
    ) -> Result<PlanView, InventoryError> {
        let now = self.now();
        if self.waves.live.contains_key(&spec.name) {
            return Err(InventoryError::Exists(format!(
                "a wave named {} exists",
                spec.name
            )));
        }
        if self.waves.live.len() >= MAX_WAVES {
            return Err(InventoryError::Conflict(format!(
                "there are {MAX_WAVES} waves already"
            )));
        }
        let selector = spec.selector.clone();
        let canary = spec.canary_selector.clone();
        let mut members = Vec::new();
        let mut paths = Vec::new();
        let mut excluded = Vec::new();
        let mut ids: Vec<&String> = self.hosts.keys().collect();
        ids.sort();
        let mut selected = 0;
        for id in ids {
            let host = &self.hosts[id];
            let in_scope =
                mf_core::access::in_scope(spec.scope.as_ref(), id, &host.record.pinned_labels);
            if !host.matches(&selector) || !in_scope {
                continue;
            }
            selected += 1;
            match self.wave_candidate(host, &spec) {
                Ok(path) => {
                    let precheck = self.prechecks.get(id);
                    members.push(Member {
                        host_id: id.clone(),
                        labels: host
                            .record
                            .facts
                            .as_ref()
                            .map(|f| f.labels.clone().into_iter().collect())
                            .unwrap_or_default(),
                        concerns: precheck.is_some_and(|p| {
                            p.findings
                                .iter()
                                .any(|f| !f.blocking && f.severity == Severity::High)
                        }),
                        canary: canary.as_ref().is_some_and(|c| host.matches(c)),
                    });
                    paths.push(path);
                }
                Err(reason) => excluded.push((id.clone(), reason.to_string())),
            }
        }
        if members.is_empty() {
            return Err(InventoryError::Conflict(format!(
                "no host can join the wave: {selected} selected, {} left out{}",
                excluded.len(),
                excluded
                    .first()
                    .map(|(h, r)| format!(" (e.g. {h}: {r})"))
                    .unwrap_or_default()
            )));
        }
        if canary.is_some() && !members.iter().any(|m| m.canary) {
            return Err(InventoryError::Conflict(
                "the canary selector matches none of the wave's hosts".into(),
            ));
        }
        let wave = Wave::plan(spec.policy.clone(), members);
        let head = WaveHead {
            spec,
            lifecycle: Lifecycle::Created,
            created_unix_ms: now,
            started_unix_ms: None,
            finished_unix_ms: None,
            rollback_on_cancel: false,
            progress: wave.progress.clone(),
            start_requested_by: None,
        };
        let name = head.spec.name.clone();
        let count = wave.members.len();
        let plan = (paths, excluded, self.hosts.len() - selected);
        let mut live = LiveWave::new(
            head,
            wave,
            plan,
            vec![MemberRecord::pending(); count],
            vec![None; count],
        );
        if mode == CreateMode::DryRun {
            let mut view = plan_view(&mut live, &self.waves.durations, now);
            view.dry_run = true;
            return Ok(view);
        }
        let plan = WavePlan {
            members: live.wave.members.clone(),
            stages: live.wave.stages.clone(),
            paths: live.paths.clone(),
            excluded: live.excluded.clone(),
            outside_selector: live.outside_selector,
        };
        // Members, then plan, then head: a wave exists once its head does.
        live.members
            .iter()
            .enumerate()
            .try_for_each(|(i, r)| self.store.put_wave_member(&name, i, r))
            .and_then(|()| self.store.put_wave_plan(&name, &plan))
            .and_then(|()| self.store.put_wave_head(&live.head))?;
        for member in &live.wave.members {
            self.waves
                .member_of
                .insert(member.host_id.clone(), name.clone());
        }
        self.waves.live.insert(name.clone(), live);
        self.count_wave(&name);
        info!(wave = %name, hosts = count, "wave created");
        self.wave_plan(&name)
    }

    /// The path of a host that may join the wave, or why it may not.
    fn wave_candidate(
        &self,
        host: &super::HostState,
        spec: &WaveSpec,
    ) -> Result<String, Exclusion> {
        let candidate = Candidate {
            os: host.record.facts.as_ref().and_then(|f| f.os.as_ref()),
            job: self.jobs.get(&host.record.id),
            precheck: self.prechecks.get(&host.record.id),
            connected: host.session.is_some(),
            in_wave: self
                .waves
                .member_of
                .get(&host.record.id)
                .map(String::as_str),
        };
        joining::join(candidate, spec.target).map(|steps| path_key(&steps))
    }

    pub(super) fn wave_action(
        &mut self,
        name: &str,
        action: WaveAction,
        by: &mf_core::access::Access,
    ) -> Result<StatusView, InventoryError> {
        let now = self.now();
        let limits = self.settings.blast_radius;
        let live = self.wave(name)?;
        if action == WaveAction::Start && live.head.lifecycle == Lifecycle::Created {
            let over = limits.exceeded(live.members.len(), &live.head.spec.policy);
            let first = live.head.start_requested_by.as_deref();
            match blast::start(&over, first, &by.name, by.role) {
                blast::SecondStart::Start => {}
                blast::SecondStart::Recorded => {
                    live.head.start_requested_by = Some(by.name.clone());
                    let head = live.head.clone();
                    self.store.put_wave_head(&head)?;
                    return self.wave_status(name);
                }
                blast::SecondStart::Refused(why) => {
                    return Err(InventoryError::Conflict(format!("wave {name}: {why}")));
                }
            }
        }
        let applied = lifecycle::act(&mut live.head.lifecycle, &mut live.wave, action)
            .map_err(|why| InventoryError::Conflict(format!("wave {name}: {why}")))?;
        let mut rollbacks = Vec::new();
        match action {
            WaveAction::Start => live.head.started_unix_ms = Some(now),
            WaveAction::Cancel { rollback } => {
                live.head.rollback_on_cancel = rollback;
                for m in 0..live.members.len() {
                    live.set_member(m, now);
                }
                if rollback {
                    rollbacks = live
                        .wave
                        .members
                        .iter()
                        .enumerate()
                        .filter(|(m, _)| live.wave.states[*m] == HostState::Done(Outcome::Failed))
                        .map(|(_, member)| member.host_id.clone())
                        .collect();
                }
                let members: Vec<String> = live
                    .wave
                    .members
                    .iter()
                    .map(|m| m.host_id.clone())
                    .collect();
                for host in members {
                    if self.waves.member_of.get(&host).is_some_and(|w| w == name) {
                        self.waves.member_of.remove(&host);
                    }
                }
            }
            WaveAction::Pause | WaveAction::Resume | WaveAction::Approve => {}
        }
        if applied == Applied::Unchanged {
            return self.wave_status(name);
        }
        let live = self.wave(name)?;
        live.dirty_head = true;
        live.eta_cache = None;
        info!(wave = %name, ?action, "wave action");
        for host in rollbacks {
            if let Err(e) = self.job_action(&host, JobAction::Rollback) {
                warn!(wave = %name, %host, error = %e, "cannot roll back a held host");
            }
        }
        self.waves.stirred = true;
        self.drive_waves();
        self.wave_status(name)
    }

    pub(super) fn wave_host_action(
        &mut self,
        name: &str,
        host_id: &str,
        action: HostAction,
    ) -> Result<StatusView, InventoryError> {
        let now = self.now();
        let live = self.wave(name)?;
        if live.head.lifecycle != Lifecycle::Running {
            return Err(InventoryError::Conflict(format!(
                "wave {name} is {}: only a running wave takes host actions",
                live.head.lifecycle.label()
            )));
        }
        let m = *live.index.get(host_id).ok_or_else(|| {
            InventoryError::Conflict(format!("host {host_id} is not in wave {name}"))
        })?;
        let held = live.wave.states[m] == HostState::Done(Outcome::Failed);
        match action {
            HostAction::Skip => live
                .wave
                .skip(m, now)
                .map_err(|e| InventoryError::Conflict(format!("{host_id}: {e}")))?,
            // A held job is retried where it stopped; any other ending starts afresh.
            HostAction::Retry if held => {}
            HostAction::Retry => live
                .wave
                .retry(m)
                .map_err(|e| InventoryError::Conflict(format!("{host_id}: {e}")))?,
        }
        live.set_member(m, now);
        live.dirty_head = true;
        if held && action == HostAction::Retry {
            // The job goes back to running; the wave follows it.
            self.job_action(host_id, JobAction::Retry)?;
        }
        self.waves.stirred = true;
        self.drive_waves();
        self.wave_status(name)
    }

    /// Removes a wave that is over (completed, or cancelled with nothing in
    /// flight); returns its last status.
    pub(in crate::inventory) fn delete_wave(
        &mut self,
        name: &str,
    ) -> Result<StatusView, InventoryError> {
        let status = self.wave_status(name)?;
        let live = self.wave(name)?;
        if live.head.finished_unix_ms.is_none() {
            return Err(InventoryError::Conflict(format!(
                "wave {name} is {}: only a wave that is over can be deleted (cancel it first)",
                live.state()
            )));
        }
        let budgets: Vec<String> = live
            .head
            .spec
            .policy
            .budgets
            .iter()
            .map(|b| b.label.clone())
            .collect();
        let members = live.members.len();
        self.store.delete_wave(name, members)?;
        self.waves.live.remove(name);
        // Its series go with it.
        for state in HOST_STATES {
            let _ = self.metrics.wave_hosts.remove_label_values(&[name, state]);
        }
        let _ = self.metrics.wave_stage.remove_label_values(&[name]);
        let _ = self.metrics.wave_stages.remove_label_values(&[name]);
        for label in &budgets {
            let _ = self
                .metrics
                .wave_budget_in_use
                .remove_label_values(&[name, label]);
            let _ = self
                .metrics
                .wave_budget_full
                .remove_label_values(&[name, label]);
        }
        for reason in ["stage_errors", "total_errors"] {
            let _ = self.metrics.wave_halts.remove_label_values(&[name, reason]);
        }
        info!(wave = %name, "wave deleted");
        Ok(status)
    }

    /// The unfinished wave the host belongs to, if any.
    pub(super) fn wave_of(&self, host_id: &str) -> Option<&str> {
        self.waves.member_of.get(host_id).map(String::as_str)
    }

    /// A host's agent connected (`away` None) or went away: its wave's gate follows.
    pub(super) fn wave_presence(&mut self, host_id: &str, away: Option<i64>) {
        let Some(name) = self.waves.member_of.get(host_id) else {
            return;
        };
        if let Some(live) = self.waves.live.get_mut(name)
            && let Some(&m) = live.index.get(host_id)
        {
            live.away[m] = away;
            self.waves.stirred = true;
        }
    }

    /// A job changed: if its host is in a wave, the wave follows.
    pub(super) fn wave_job_changed(&mut self, old: Option<&Job>, job: &Job) {
        let now = self.now();
        if old.is_none_or(|o| o.state != job.state) {
            self.waves.durations.record(job);
        }
        let Some((name, m)) = self.waves.live.iter().find_map(|(name, live)| {
            let m = *live.index.get(&job.host_id)?;
            (live.members[m].job_id.as_deref() == Some(job.id.as_str())).then(|| (name.clone(), m))
        }) else {
            return;
        };
        self.follow_job(&name, m, job, now);
    }

    /// Member m of wave `name` follows its job.
    fn follow_job(&mut self, name: &str, m: usize, job: &Job, now: i64) {
        let Some(live) = self.waves.live.get_mut(name) else {
            return;
        };
        let before = live.wave.progress.halted.clone();
        match (live.wave.states[m], outcome_of(job)) {
            (HostState::Running, Some(outcome)) => live.wave.finish(m, outcome, now),
            (HostState::Done(Outcome::Failed), None) => live.wave.rerun(m),
            (HostState::Done(Outcome::Failed), Some(outcome)) => live.wave.amend(m, outcome),
            _ => return,
        }
        live.members[m].detail.clone_from(&job.detail);
        live.set_member(m, now);
        live.dirty_head = true;
        let roll_back =
            live.head.rollback_on_cancel && live.wave.states[m] == HostState::Done(Outcome::Failed);
        if before.is_none()
            && let Some(reason) = &live.wave.progress.halted
        {
            let kind = if reason.contains("in stage") {
                "stage_errors"
            } else {
                "total_errors"
            };
            self.metrics
                .wave_halts
                .with_label_values(&[name, kind])
                .inc();
            warn!(wave = %name, %reason, "wave halted");
            let data = json!({"wave": name, "reason": reason, "host_id": job.host_id});
            self.emit(kinds::WAVE_HALTED, name, data);
        }
        if roll_back && let Err(e) = self.job_action(&job.host_id, JobAction::Rollback) {
            warn!(wave = %name, host = %job.host_id, error = %e, "cannot roll back a held host");
        }
        self.waves.stirred = true;
    }

    /// The clock: windows open, soaks end, gauges catch up.
    pub(super) fn stir_waves(&mut self) {
        self.waves.stirred = true;
        let behind: Vec<String> = self
            .waves
            .live
            .iter()
            .filter(|(_, live)| live.uncounted)
            .map(|(name, _)| name.clone())
            .collect();
        for name in behind {
            self.count_wave(&name);
        }
    }

    /// Starts whoever may start in every running wave, writes what changed.
    /// Called after each batch and on the clock.
    pub(super) fn drive_waves(&mut self) {
        if !self.waves.stirred {
            return;
        }
        self.waves.stirred = false;
        let now = self.now();
        // Waves that are over and have nothing to write are left alone.
        let names: Vec<String> = self
            .waves
            .live
            .iter()
            .filter(|(_, l)| {
                l.head.finished_unix_ms.is_none() || l.dirty_head || !l.dirty.is_empty()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            // Hosts given up, and a halt that giving them up caused: events.
            let mut lost: Vec<String> = Vec::new();
            let mut halted: Option<String> = None;
            let starts = {
                let (durations, since) = (&self.waves.durations, self.waves.since_unix_ms);
                let Some(live) = self.waves.live.get_mut(&name) else {
                    continue;
                };
                if live.head.lifecycle != Lifecycle::Running {
                    Vec::new()
                } else {
                    // Disconnected hosts wait for their agent; long gone ones are given up.
                    let gone: Vec<usize> = live
                        .wave
                        .progress
                        .retried
                        .iter()
                        .chain(
                            live.wave
                                .stages
                                .get(live.wave.progress.current_stage)
                                .into_iter()
                                .flatten(),
                        )
                        .copied()
                        .filter(|&m| {
                            live.away[m].is_some_and(|seen| joining::given_up(seen, since, now))
                        })
                        .collect();
                    let before = live.wave.progress.halted.clone();
                    for m in gone {
                        if live.wave.end_pending(m, Outcome::Unreachable, now).is_ok() {
                            live.members[m].detail = format!(
                                "not connected for {} when its turn came",
                                crate::clock::format_duration_ms(UNREACHABLE_AFTER_MS)
                            );
                            live.set_member(m, now);
                            lost.push(live.wave.members[m].host_id.clone());
                        }
                    }
                    if before.is_none() {
                        halted.clone_from(&live.wave.progress.halted);
                    }
                    let stage = live.wave.progress.current_stage;
                    let started =
                        live.with_gate(durations, now, |wave, gate| wave.dispatch(now, gate));
                    if stage != live.wave.progress.current_stage {
                        live.dirty_head = true;
                    }
                    started
                }
            };
            for host in lost {
                let detail = format!(
                    "not connected for {} when its turn came in wave {name}",
                    crate::clock::format_duration_ms(UNREACHABLE_AFTER_MS)
                );
                self.emit(
                    kinds::HOST_LOST,
                    &host,
                    json!({"host_id": host, "wave": name, "reason": detail}),
                );
            }
            if let Some(reason) = halted {
                self.emit(
                    kinds::WAVE_HALTED,
                    &name,
                    json!({"wave": name, "reason": reason}),
                );
            }
            for m in starts {
                self.start_member(&name, m, now);
            }
            self.finish_wave_if_over(&name, now);
            self.write_wave(&name);
        }
    }

    /// Starts the job of a member the wave just started; a host that cannot
    /// start ends at once with the reason (unreachable, or refused).
    fn start_member(&mut self, name: &str, m: usize, now: i64) {
        let Some(live) = self.waves.live.get(name) else {
            return;
        };
        let host_id = live.wave.members[m].host_id.clone();
        let (target, on_failure) = (live.head.spec.target, live.head.spec.on_failure);
        let connected = self
            .hosts
            .get(&host_id)
            .is_some_and(|h| h.session.is_some());
        let outcome = if connected {
            match self.start_job(super::NewJob {
                host_id: host_id.clone(),
                target,
                on_failure,
                requested_by: format!("wave {name}"),
            }) {
                Ok(job) => Ok(job),
                Err(e) => Err((Outcome::Aborted, format!("could not start: {e}"))),
            }
        } else {
            Err((
                Outcome::Unreachable,
                "not connected when its turn came".to_string(),
            ))
        };
        let Some(live) = self.waves.live.get_mut(name) else {
            return;
        };
        match outcome {
            Ok(job) => {
                live.members[m].job_id = Some(job.id.clone());
                live.members[m].detail = String::new();
                self.waves.starts.push(Instant::now());
            }
            Err((outcome, detail)) => {
                live.wave.finish(m, outcome, now);
                live.members[m].detail = detail;
                self.waves.stirred = true;
            }
        }
        live.set_member(m, now);
        live.dirty_head = true;
    }

    fn finish_wave_if_over(&mut self, name: &str, now: i64) {
        let Some(live) = self.waves.live.get_mut(name) else {
            return;
        };
        let over = live.head.finished_unix_ms.is_none()
            && match live.head.lifecycle {
                Lifecycle::Running => live.wave.is_finished(),
                Lifecycle::Cancelled => live.wave.running().next().is_none(),
                _ => false,
            };
        if !over {
            return;
        }
        if live.head.lifecycle == Lifecycle::Running {
            live.head.lifecycle = Lifecycle::Completed;
        }
        live.head.finished_unix_ms = Some(now);
        live.dirty_head = true;
        let hosts: Vec<String> = live
            .wave
            .members
            .iter()
            .map(|m| m.host_id.clone())
            .collect();
        info!(wave = %name, state = live.head.lifecycle.label(), "wave over");
        let completed = (live.head.lifecycle == Lifecycle::Completed).then(|| {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for state in &live.wave.states {
                *counts
                    .entry(HostStatus::from(*state).label().to_string())
                    .or_default() += 1;
            }
            json!({"wave": name, "target": live.head.spec.target.to_string(), "hosts": counts})
        });
        for host in hosts {
            if self.waves.member_of.get(&host).is_some_and(|w| w == name) {
                self.waves.member_of.remove(&host);
            }
        }
        if let Some(data) = completed {
            self.emit(kinds::WAVE_COMPLETED, name, data);
        }
    }

    /// Writes the wave's changed parts (flushed with the batch).
    fn write_wave(&mut self, name: &str) {
        let Some(live) = self.waves.live.get_mut(name) else {
            return;
        };
        let dirty = std::mem::take(&mut live.dirty);
        let mut result = dirty
            .iter()
            .try_for_each(|&m| self.store.put_wave_member(name, m, &live.members[m]));
        if live.dirty_head || !dirty.is_empty() {
            live.head.progress = live.wave.progress.clone();
            live.dirty_head = false;
            result = result.and_then(|()| self.store.put_wave_head(&live.head));
        }
        if let Err(e) = result {
            error!(wave = %name, error = %e, "cannot record a wave");
        }
        live.uncounted |= !dirty.is_empty();
        let due = live.counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY)
            || live.head.finished_unix_ms.is_some();
        if live.uncounted && due {
            self.count_wave(name);
        }
    }

    /// The wave's gauges: hosts per state, stage progress, budget use.
    fn count_wave(&mut self, name: &str) {
        let Some(live) = self.waves.live.get_mut(name) else {
            return;
        };
        live.counted_at = Some(Instant::now());
        live.uncounted = false;
        let counts = live.wave.counts();
        for label in HOST_STATES {
            self.metrics
                .wave_hosts
                .with_label_values(&[name, label])
                .set(counts.get(label).copied().unwrap_or(0) as i64);
        }
        self.metrics
            .wave_stage
            .with_label_values(&[name])
            .set(live.wave.progress.current_stage as i64 + 1);
        self.metrics
            .wave_stages
            .with_label_values(&[name])
            .set(live.wave.stages.len() as i64);
        for (label, in_use, full) in live.wave.budget_use() {
            self.metrics
                .wave_budget_in_use
                .with_label_values(&[name, &label])
                .set(in_use as i64);
            self.metrics
                .wave_budget_full
                .with_label_values(&[name, &label])
                .set(full as i64);
        }
        // Known series start at 0, so that increase() sees the first halt.
        for reason in ["stage_errors", "total_errors"] {
            self.metrics.wave_halts.with_label_values(&[name, reason]);
        }
    }
}
