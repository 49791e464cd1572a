//! What operators see of a wave: its plan (stages, hosts left out and why,
//! expected durations, ETA), its status (counts, stages, budgets, problems,
//! what holds it), and why one host is where it is. Read-only: nothing here
//! changes a wave.

use mf_core::selector::Selector;
use std::collections::BTreeMap;

use super::{LiveWave, State};

/// A status lists at most this many problem hosts: `wave list` sends the
/// status of every wave in one message.
const MAX_PROBLEMS: usize = 100;
use crate::inventory::InventoryError;
use crate::store::wave_record::Lifecycle;
use mf_core::wave::durations::Durations;
use mf_core::wave::scheduler::{HostState, Outcome, Wait};
use mf_core::wave::status::{HostStatus, WaveState};

/// What `plan` shows.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub name: String,
    pub target: String,
    pub state: WaveState,
    /// Only planned: nothing was recorded.
    pub dry_run: bool,
    /// The first stage is a canary.
    pub has_canary: bool,
    pub stages: Vec<Vec<String>>,
    pub excluded: Vec<(String, String)>,
    pub outside_selector: usize,
    pub eta_unix_ms: Option<i64>,
    /// (path, hosts, expected ms, samples it rests on; 0 = the default).
    pub paths: Vec<(String, usize, i64, usize)>,
    pub policy: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StageView {
    pub hosts: usize,
    pub done: usize,
    pub running: usize,
    pub failures: usize,
}

/// What `status` and `list` show.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub name: String,
    pub selector: String,
    pub target: String,
    pub state: WaveState,
    pub halted: Option<String>,
    /// Why nothing starts right now, when a stage boundary or window holds it.
    pub waiting: Option<String>,
    /// When the next host is expected to start, if that can be told: now,
    /// the end of a soak, the next opening of a window.
    pub next_start_unix_ms: Option<i64>,
    pub current_stage: usize,
    pub stages: Vec<StageView>,
    pub counts: BTreeMap<HostStatus, usize>,
    pub eta_unix_ms: Option<i64>,
    pub created_unix_ms: i64,
    pub started_unix_ms: Option<i64>,
    pub finished_unix_ms: Option<i64>,
    /// (label, hosts holding it, values at their limit).
    pub budgets: Vec<(String, usize, usize)>,
    /// Hosts that ended without success, the first [`MAX_PROBLEMS`] in the
    /// wave's order: (host, outcome, detail). `counts` has them all.
    pub problems: Vec<(String, HostStatus, String)>,
    /// The first stage is a canary.
    pub has_canary: bool,
    /// The scope of the operator who created it.
    pub scope: Option<Selector>,
}

/// What `why` shows.
#[derive(Debug, Clone)]
pub struct WhyView {
    pub host_id: String,
    pub state: HostStatus,
    pub stage: usize,
    pub job_id: String,
    pub reason: String,
}

impl State {
    /// A wave and what was measured, to build a view.
    fn view_of(&mut self, name: &str) -> Result<(&mut LiveWave, &Durations), InventoryError> {
        let durations = &self.waves.durations;
        let live = self
            .waves
            .live
            .get_mut(name)
            .ok_or_else(|| InventoryError::UnknownWave(name.to_string()))?;
        Ok((live, durations))
    }

    pub(in crate::inventory) fn wave_plan(
        &mut self,
        name: &str,
    ) -> Result<PlanView, InventoryError> {
        let now = self.now();
        let (live, durations) = self.view_of(name)?;
        Ok(plan_view(live, durations, now))
    }

    pub(in crate::inventory) fn wave_status(
        &mut self,
        name: &str,
    ) -> Result<StatusView, InventoryError> {
        let now = self.now();
        let (live, durations) = self.view_of(name)?;
        Ok(status_of(live, durations, now))
    }

    pub(in crate::inventory) fn list_waves(&mut self) -> Vec<StatusView> {
        let now = self.now();
        let durations = &self.waves.durations;
        self.waves
            .live
            .values_mut()
            .map(|live| status_of(live, durations, now))
            .collect()
    }

    pub(in crate::inventory) fn wave_why(
        &mut self,
        name: &str,
        host_id: &str,
    ) -> Result<WhyView, InventoryError> {
        let now = self.now();
        if !self.hosts.contains_key(host_id) {
            // Checked after the wave, so that an unknown wave is named first.
            self.view_of(name)?;
            return Err(InventoryError::UnknownHost(host_id.to_string()));
        }
        let (live, durations) = self.view_of(name)?;
        let Some(&m) = live.index.get(host_id) else {
            let reason = live
                .excluded
                .iter()
                .find(|(h, _)| h == host_id)
                .map(|(_, r)| format!("left out of the wave: {r}"))
                .unwrap_or_else(|| "not in the wave: outside its selector".to_string());
            return Ok(WhyView {
                host_id: host_id.to_string(),
                state: HostStatus::Excluded,
                stage: 0,
                job_id: String::new(),
                reason,
            });
        };
        let state = live.wave.states[m];
        let reason = match (live.head.lifecycle, state) {
            (_, HostState::Running) => format!(
                "in flight: {}",
                if live.members[m].detail.is_empty() {
                    "its job is running"
                } else {
                    &live.members[m].detail
                }
            ),
            (_, HostState::Done(outcome)) => format!(
                "ended {}{}",
                outcome.label(),
                if live.members[m].detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", live.members[m].detail)
                }
            ),
            (Lifecycle::Created, _) => "the wave has not been started (mfctl wave start)".into(),
            (lifecycle, HostState::Pending) if lifecycle != Lifecycle::Running => {
                format!("the wave is {}", lifecycle.label())
            }
            (_, HostState::Pending) => match live.why_now(durations, m, now) {
                Some(wait) => format!("waiting: {wait}"),
                None => "about to start".into(),
            },
        };
        Ok(WhyView {
            host_id: host_id.to_string(),
            state: state.into(),
            stage: live.wave.stage_of[m] + 1,
            job_id: live.members[m].job_id.clone().unwrap_or_default(),
            reason,
        })
    }
}

/// What `plan` shows of a wave.
pub(super) fn plan_view(live: &mut LiveWave, durations: &Durations, now: i64) -> PlanView {
    let eta = live.eta(durations, now);
    let live = &*live;
    let mut paths: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &live.paths {
        *paths.entry(p).or_default() += 1;
    }
    let spec = &live.head.spec;
    let policy = &spec.policy;
    let mut rules = vec![
        format!(
            "canary {}",
            spec.canary_selector
                .as_ref()
                .map_or_else(|| policy.canary.to_string(), ToString::to_string)
        ),
        format!(
            "batches {}",
            policy
                .batches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("max-parallel {}", policy.max_parallel),
        format!(
            "errors {} per stage, {} in all",
            policy.stage_errors, policy.total_errors
        ),
        format!("on failure {:?}", spec.on_failure).to_lowercase(),
    ];
    rules.extend(
        policy
            .budgets
            .iter()
            .map(|b| format!("budget {}={}", b.label, b.limit)),
    );
    rules.extend(spec.calendar.windows.iter().map(|w| format!("window {w}")));
    rules.extend(spec.calendar.freezes.iter().map(|f| format!("freeze {f}")));
    if policy.soak_ms > 0 {
        rules.push(format!(
            "soak {}",
            crate::clock::format_duration_ms(policy.soak_ms)
        ));
    }
    if policy.approve_stages {
        rules.push("approval before each stage".into());
    }
    PlanView {
        name: live.head.spec.name.clone(),
        target: spec.target.to_string(),
        state: live.state(),
        dry_run: false,
        has_canary: live.wave.has_canary(),
        stages: live
            .wave
            .stages
            .iter()
            .map(|s| {
                s.iter()
                    .map(|&m| live.wave.members[m].host_id.clone())
                    .collect()
            })
            .collect(),
        excluded: live.excluded.clone(),
        outside_selector: live.outside_selector,
        eta_unix_ms: eta,
        paths: paths
            .into_iter()
            .map(|(p, n)| {
                let (ms, samples) = durations
                    .estimate(p)
                    .unwrap_or((spec.default_expected_ms, 0));
                (p.to_string(), n, ms, samples)
            })
            .collect(),
        policy: rules,
    }
}

fn status_of(live: &mut LiveWave, durations: &Durations, now: i64) -> StatusView {
    let mut next_start = None;
    let waiting = if live.head.lifecycle == Lifecycle::Running
        && live.wave.progress.halted.is_none()
        && live.wave.running().next().is_none()
        && !live.wave.is_finished()
    {
        // The first pending host in line says why nothing moves.
        let next = live
            .wave
            .progress
            .retried
            .iter()
            .copied()
            .chain(live.wave.stages.iter().flatten().copied())
            .find(|&m| live.wave.states[m] == HostState::Pending);
        let wait = next.and_then(|m| live.why_now(durations, m, now));
        next_start = match &wait {
            None => next.map(|_| now),
            Some(Wait::Soak { until_unix_ms, .. }) => Some(*until_unix_ms),
            Some(Wait::Closed(_)) => live.head.spec.calendar.next_opening(now),
            // An operator, a budget or hosts in flight decide: no time to tell.
            Some(_) => None,
        };
        wait.map(|w| w.to_string())
    } else {
        live.head
            .start_requested_by
            .as_ref()
            .filter(|_| live.head.lifecycle == Lifecycle::Created)
            .map(|first| {
                format!(
                    "past the blast radius: {first} asked to start it; it starts when a \
                     second, different admin starts it too"
                )
            })
    };
    let stages = live
        .wave
        .stages
        .iter()
        .map(|s| {
            StageView {
            hosts: s.len(),
            // Ended after starting, or skipped: a host a cancel left unstarted is not done.
            done: s
                .iter()
                .filter(|&&m| {
                    matches!(live.wave.states[m], HostState::Done(o) if o != Outcome::NotStarted)
                })
                .count(),
            running: s
                .iter()
                .filter(|&&m| live.wave.states[m] == HostState::Running)
                .count(),
            failures: s
                .iter()
                .filter(|&&m| matches!(live.wave.states[m], HostState::Done(o) if o.is_failure()))
                .count(),
        }
        })
        .collect();
    let problems = live
        .wave
        .states
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            matches!(s, HostState::Done(o) if !matches!(o, Outcome::Succeeded | Outcome::NotStarted | Outcome::Skipped))
        })
        .map(|(m, s)| {
            (
                live.wave.members[m].host_id.clone(),
                HostStatus::from(*s),
                live.members[m].detail.clone(),
            )
        })
        .take(MAX_PROBLEMS)
        .collect();
    StatusView {
        scope: live.head.spec.scope.clone(),
        name: live.head.spec.name.clone(),
        selector: live.head.spec.selector.to_string(),
        target: live.head.spec.target.to_string(),
        state: live.state(),
        halted: live.wave.progress.halted.clone(),
        waiting,
        next_start_unix_ms: next_start,
        current_stage: live.wave.progress.current_stage + 1,
        stages,
        counts: live
            .wave
            .states
            .iter()
            .fold(BTreeMap::new(), |mut counts, s| {
                *counts.entry(HostStatus::from(*s)).or_default() += 1;
                counts
            }),
        eta_unix_ms: live.eta(durations, now),
        created_unix_ms: live.head.created_unix_ms,
        started_unix_ms: live.head.started_unix_ms,
        finished_unix_ms: live.head.finished_unix_ms,
        budgets: live.wave.budget_use(),
        problems,
        has_canary: live.wave.has_canary(),
    }
}
