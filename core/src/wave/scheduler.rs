//! The wave scheduler: pure logic, no I/O, no clock (time comes in as
//! arguments). A wave is a list of hosts split into stages (a canary, then
//! batches such as `1,5%,25%,100%` whose last size repeats) and a policy.
//! Inside the current stage hosts start as slots free (a sliding window) while
//! every rule holds: the overall parallelism, each disruption budget (at most
//! N hosts sharing a label value disrupted at once), the error budgets (past
//! one the wave halts and starts nobody), and the caller's gate (maintenance
//! windows). Between stages come the soak time and, if asked, an operator's
//! approval. Hosts with serious but non-blocking findings go after the clean
//! hosts of their application. `why` names what a waiting host waits for.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A count, or a percentage of a population (rounded up, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    Count(u32),
    Percent(u32),
}

impl Limit {
    pub fn of(self, population: usize) -> usize {
        match self {
            Limit::Count(n) => n as usize,
            Limit::Percent(p) => (population * p as usize).div_ceil(100).max(1),
        }
    }
}

/// A limit that is neither a count nor a percentage from 1 to 100.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a count or a percentage (e.g. 5 or 25%)")]
pub struct BadLimit(pub String);

/// What an operator asked of a host that its state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostActionError {
    #[error("it is {0}: only a host that ended without success can be retried")]
    NotRetriable(&'static str),
    #[error("it is {0}: only a host that has not started can be skipped")]
    NotPending(&'static str),
}

impl std::str::FromStr for Limit {
    type Err = BadLimit;

    /// `5` or `25%`.
    fn from_str(text: &str) -> Result<Self, BadLimit> {
        let bad = || BadLimit(text.to_string());
        match text.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p @ 1..=100) => Ok(Limit::Percent(p)),
                _ => Err(bad()),
            },
            None => text.parse::<u32>().map(Limit::Count).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// At most `limit` hosts sharing a value of `label` disrupted at once; a
/// percentage is of the wave's hosts with that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub label: String,
    pub limit: Limit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Hosts in the canary stage, when no member is marked as a canary.
    pub canary: u32,
    /// Sizes of the following stages; the last repeats until every host has one.
    pub batches: Vec<Limit>,
    pub max_parallel: u32,
    pub budgets: Vec<Budget>,
    /// Failures allowed within one stage, and in the whole wave.
    pub stage_errors: Limit,
    pub total_errors: Limit,
    /// Wait after a stage's last host finished before the next stage starts.
    #[serde(default)]
    pub soak_ms: i64,
    /// Each stage after the first waits for an operator's approval.
    #[serde(default)]
    pub approve_stages: bool,
}

/// A host as the wave sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
    /// Serious but non-blocking findings at its pre-check: it goes after the
    /// clean hosts of its application.
    pub concerns: bool,
    /// Chosen as a canary by the wave's canary selector.
    #[serde(default)]
    pub canary: bool,
}

/// How a host's migration ended, as far as the wave is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    /// Failed after a change started, and was rolled back cleanly.
    RolledBack,
    /// Failed after a change started, and was not rolled back (held for an
    /// operator): it still counts against the disruption budgets.
    Failed,
    /// Stopped at its pre-check: nothing was changed; not a failure.
    Blocked,
    /// Failed before anything was changed (e.g. its snapshot): not a failure.
    Aborted,
    /// Could not be reached: not a failure.
    Unreachable,
    /// An operator took it out of the wave before it started.
    Skipped,
    /// Never started: the wave was cancelled first.
    NotStarted,
}

impl Outcome {
    /// Counted against the error budgets: a change started and failed.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::RolledBack)
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled-back",
            Outcome::Failed => "failed",
            Outcome::Blocked => "blocked",
            Outcome::Aborted => "aborted",
            Outcome::Unreachable => "unreachable",
            Outcome::Skipped => "skipped",
            Outcome::NotStarted => "not-started",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    Pending,
    Running,
    Done(Outcome),
}

impl HostState {
    pub fn label(self) -> &'static str {
        match self {
            HostState::Pending => "pending",
            HostState::Running => "running",
            HostState::Done(outcome) => outcome.label(),
        }
    }

    /// Takes a slot of the disruption budgets: in flight, or failed and held.
    fn disrupts(self) -> bool {
        matches!(self, HostState::Running | HostState::Done(Outcome::Failed))
    }
}

/// Why a pending host has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// An operator paused the wave.
    Paused,
    Halted(String),
    /// Its stage comes later.
    Stage {
        host_stage: usize,
        current: usize,
    },
    /// The previous stage is done; the next starts after its soak time.
    Soak {
        stage: usize,
        until_unix_ms: i64,
    },
    /// The previous stage is done; the next waits for an operator.
    Approval {
        stage: usize,
    },
    MaxParallel {
        running: usize,
        max: usize,
    },
    /// A disruption budget is full; `holders` are the hosts disrupted with that value.
    Budget {
        label: String,
        value: String,
        limit: usize,
        holders: Vec<String>,
    },
    /// The caller's gate (a maintenance window or a freeze) is closed to it.
    Closed(String),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Paused => f.write_str("the wave is paused by an operator"),
            Wait::Halted(reason) => write!(f, "the wave is halted: {reason}"),
            Wait::Stage {
                host_stage,
                current,
            } => write!(
                f,
                "its stage ({}) comes after the current one ({})",
                host_stage + 1,
                current + 1
            ),
            Wait::Soak {
                stage,
                until_unix_ms,
            } => write!(
                f,
                "stage {} is soaking until {}",
                stage + 1,
                crate::time::format_unix_ms(*until_unix_ms)
            ),
            Wait::Approval { stage } => write!(
                f,
                "stage {} waits for an operator's approval (mfctl wave approve)",
                stage + 1
            ),
            Wait::MaxParallel { running, max } => {
                write!(f, "{running} hosts are in flight, the most allowed ({max})")
            }
            Wait::Budget {
                label,
                value,
                limit,
                holders,
            } => write!(
                f,
                "the budget {label}={limit} is full for {label} {value}, held by {}",
                holders.join(", ")
            ),
            Wait::Closed(reason) => f.write_str(reason),
        }
    }
}

/// Who disrupts what now, kept up to date as hosts start and end so that a
/// dispatch over a large stage costs a few array reads per host: label values
/// are numbered once. Rebuilt from the states after a restart: it is never
/// persisted.
#[derive(Debug, Clone, Default)]
struct Load {
    running: usize,
    /// Per member, per budget: the number of its label value, if it has the label.
    value_of: Vec<Vec<Option<usize>>>,
    /// Per budget, per value: its name, its limit, and the hosts disrupting.
    names: Vec<Vec<String>>,
    limit: Vec<Vec<usize>>,
    in_use: Vec<Vec<usize>>,
}

impl Load {
    fn build(wave: &Wave) -> Self {
        let budgets = &wave.policy.budgets;
        let mut numbers: Vec<HashMap<&str, usize>> = vec![HashMap::new(); budgets.len()];
        let mut load = Load {
            running: 0,
            value_of: Vec::with_capacity(wave.members.len()),
            names: vec![Vec::new(); budgets.len()],
            limit: vec![Vec::new(); budgets.len()],
            in_use: vec![Vec::new(); budgets.len()],
        };
        let mut population: Vec<Vec<usize>> = vec![Vec::new(); budgets.len()];
        for member in &wave.members {
            let values = budgets
                .iter()
                .enumerate()
                .map(|(b, budget)| {
                    let value = member.labels.get(&budget.label)?;
                    let next = numbers[b].len();
                    let n = *numbers[b].entry(value.as_str()).or_insert(next);
                    if n == next {
                        load.names[b].push(value.clone());
                        population[b].push(0);
                    }
                    population[b][n] += 1;
                    Some(n)
                })
                .collect();
            load.value_of.push(values);
        }
        for (b, budget) in budgets.iter().enumerate() {
            load.limit[b] = population[b].iter().map(|&p| budget.limit.of(p)).collect();
            load.in_use[b] = vec![0; population[b].len()];
        }
        for m in 0..wave.members.len() {
            load.enter(m, wave.states[m]);
        }
        load
    }

    fn enter(&mut self, m: usize, state: HostState) {
        if state == HostState::Running {
            self.running += 1;
        }
        if state.disrupts() {
            for (b, value) in self.value_of[m].iter().enumerate() {
                if let Some(v) = value {
                    self.in_use[b][*v] += 1;
                }
            }
        }
    }

    fn leave(&mut self, m: usize, state: HostState) {
        if state == HostState::Running {
            self.running -= 1;
        }
        if state.disrupts() {
            for (b, value) in self.value_of[m].iter().enumerate() {
                if let Some(v) = value {
                    self.in_use[b][*v] -= 1;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wave {
    pub policy: Policy,
    pub members: Vec<Member>,
    /// Index of each member's stage.
    pub stage_of: Vec<usize>,
    /// Members of each stage, in start order.
    pub stages: Vec<Vec<usize>>,
    pub states: Vec<HostState>,
    pub progress: Progress,
    #[serde(skip)]
    load: Option<Load>,
}

/// Where a wave stands, apart from its hosts' states: small, so it is
/// written again at every decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub current_stage: usize,
    pub halted: Option<String>,
    pub paused: bool,
    /// Stages up to this one may start (starting the wave approves the first).
    pub approved_stage: usize,
    /// When the current stage's last host finished.
    pub stage_done_unix_ms: Option<i64>,
    /// Hosts of earlier stages an operator retried: they start in the current one.
    pub retried: Vec<usize>,
    /// Failures an operator accepted by resuming after a halt, in all and per
    /// stage: the error budgets count from there.
    #[serde(default)]
    pub forgiven: usize,
    #[serde(default)]
    pub forgiven_in_stage: BTreeMap<usize, usize>,
}

impl PartialEq for Wave {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy
            && self.members == other.members
            && self.stage_of == other.stage_of
            && self.stages == other.stages
            && self.states == other.states
            && self.progress == other.progress
    }
}

/// Start order: canaries first; then by application; within one, clean hosts
/// before those with concerns; then by host id.
fn order(members: &[Member]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    let app = |m: &Member| m.labels.get("app").cloned().unwrap_or_default();
    order.sort_by_cached_key(|&i| {
        let m = &members[i];
        (!m.canary, app(m), m.concerns, m.host_id.clone())
    });
    order
}

impl Wave {
    /// Whether the first stage is a canary: members chosen by the canary
    /// selector, or a canary count above 0 (`--canary 0` means none).
    pub fn has_canary(&self) -> bool {
        self.members.iter().any(|m| m.canary) || self.policy.canary > 0
    }

    pub fn plan(policy: Policy, members: Vec<Member>) -> Self {
        let total = members.len();
        let ordered = order(&members);
        let marked = members.iter().filter(|m| m.canary).count();
        let canary = if marked > 0 {
            marked
        } else {
            policy.canary as usize
        };
        let mut sizes = vec![canary.min(total)];
        let mut assigned = sizes[0];
        let mut batch = 0;
        while assigned < total {
            let limit = policy
                .batches
                .get(batch)
                .or(policy.batches.last())
                .copied()
                .unwrap_or(Limit::Percent(100));
            let size = limit.of(total).max(1).min(total - assigned);
            sizes.push(size);
            assigned += size;
            batch += 1;
        }
        let mut stages = Vec::new();
        let mut stage_of = vec![0; total];
        let mut next = ordered.into_iter();
        for size in sizes.into_iter().filter(|s| *s > 0) {
            let stage: Vec<usize> = next.by_ref().take(size).collect();
            for &m in &stage {
                stage_of[m] = stages.len();
            }
            stages.push(stage);
        }
        Self {
            states: vec![HostState::Pending; total],
            policy,
            members,
            stage_of,
            stages,
            progress: Progress::default(),
            load: None,
        }
    }

    /// A wave read back from its stored parts.
    pub fn restore(
        policy: Policy,
        members: Vec<Member>,
        stages: Vec<Vec<usize>>,
        states: Vec<HostState>,
        progress: Progress,
    ) -> Result<Self, String> {
        let mut stage_of = vec![usize::MAX; members.len()];
        for (s, stage) in stages.iter().enumerate() {
            for &m in stage {
                *stage_of
                    .get_mut(m)
                    .ok_or_else(|| format!("stage {s} names host {m} of {}", members.len()))? = s;
            }
        }
        if stage_of.contains(&usize::MAX) || states.len() != members.len() {
            return Err("the stages or states do not cover every host".into());
        }
        if progress.current_stage >= stages.len().max(1) {
            return Err("the current stage is past the last".into());
        }
        Ok(Self {
            policy,
            members,
            stage_of,
            stages,
            states,
            progress,
            load: None,
        })
    }

    /// Runs `f` with the load, built first if this wave was just read back.
    fn with_load<T>(&mut self, f: impl FnOnce(&Self, &Load) -> T) -> T {
        let load = self.load.take().unwrap_or_else(|| Load::build(self));
        let result = f(self, &load);
        self.load = Some(load);
        result
    }

    /// Every state change goes through here (or, in a dispatch pass, through
    /// the load held by the pass), so the load stays true.
    fn set_state(&mut self, m: usize, state: HostState) {
        let old = self.states[m];
        if old == state {
            return;
        }
        let mut load = self.load.take().unwrap_or_else(|| Load::build(self));
        load.leave(m, old);
        self.states[m] = state;
        load.enter(m, state);
        self.load = Some(load);
    }

    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&m| self.states[m] == HostState::Running)
    }

    fn failures_in(&self, members: impl Iterator<Item = usize>) -> usize {
        members
            .filter(|&m| matches!(self.states[m], HostState::Done(o) if o.is_failure()))
            .count()
    }

    fn stage_finished(&self, stage: usize) -> bool {
        self.stages[stage]
            .iter()
            .all(|&m| matches!(self.states[m], HostState::Done(_)))
    }

    /// What holds the next stage back once the current one is finished.
    fn between_stages(&self, now_unix_ms: i64) -> Option<Wait> {
        let next = self.progress.current_stage + 1;
        let done = self.progress.stage_done_unix_ms.unwrap_or(now_unix_ms);
        if now_unix_ms < done + self.policy.soak_ms {
            return Some(Wait::Soak {
                stage: self.progress.current_stage,
                until_unix_ms: done + self.policy.soak_ms,
            });
        }
        if self.policy.approve_stages && self.progress.approved_stage < next {
            return Some(Wait::Approval { stage: next });
        }
        None
    }

    /// The first rule that keeps member `m` from starting now; None for a
    /// pending host that may start, and for one that is not pending. `gate`
    /// is the caller's say for that host now (a window, a freeze).
    pub fn why(
        &mut self,
        m: usize,
        now_unix_ms: i64,
        gate: &dyn Fn(usize) -> Option<String>,
    ) -> Option<Wait> {
        self.wait(m, now_unix_ms, gate, true)
    }

    /// `why`; without `named`, a full budget's holders are left out, so that
    /// a dispatch over a large stage does not list them for every host.
    fn wait(
        &mut self,
        m: usize,
        now_unix_ms: i64,
        gate: &dyn Fn(usize) -> Option<String>,
        named: bool,
    ) -> Option<Wait> {
        self.with_load(|wave, load| wave.wait_with(m, now_unix_ms, gate, named, load))
    }

    fn wait_with(
        &self,
        m: usize,
        now_unix_ms: i64,
        gate: &dyn Fn(usize) -> Option<String>,
        named: bool,
        load: &Load,
    ) -> Option<Wait> {
        if self.states[m] != HostState::Pending {
            return None;
        }
        if self.progress.paused {
            return Some(Wait::Paused);
        }
        if let Some(reason) = &self.progress.halted {
            return Some(Wait::Halted(reason.clone()));
        }
        if self.stage_of[m] != self.progress.current_stage && !self.progress.retried.contains(&m) {
            if self.stage_of[m] == self.progress.current_stage + 1
                && self.stage_finished(self.progress.current_stage)
                && let Some(wait) = self.between_stages(now_unix_ms)
            {
                return Some(wait);
            }
            return Some(Wait::Stage {
                host_stage: self.stage_of[m],
                current: self.progress.current_stage,
            });
        }
        self.wait_in_stage(m, load, named)
            .or_else(|| gate(m).map(Wait::Closed))
    }

    /// The parallelism and disruption budgets, for a host of the current stage.
    fn wait_in_stage(&self, m: usize, load: &Load, named: bool) -> Option<Wait> {
        let max = self.policy.max_parallel.max(1) as usize;
        if load.running >= max {
            return Some(Wait::MaxParallel {
                running: load.running,
                max,
            });
        }
        for (b, budget) in self.policy.budgets.iter().enumerate() {
            let Some(v) = load.value_of[m][b] else {
                continue;
            };
            let limit = load.limit[b][v];
            if load.in_use[b][v] >= limit {
                // Named only when someone asks: a scan, not an index.
                let holders = if named {
                    (0..self.members.len())
                        .filter(|&h| self.states[h].disrupts() && load.value_of[h][b] == Some(v))
                        .map(|h| self.members[h].host_id.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                return Some(Wait::Budget {
                    label: budget.label.clone(),
                    value: load.names[b][v].clone(),
                    limit,
                    holders,
                });
            }
        }
        None
    }

    /// Starts every host that may start now, in order; returns them.
    pub fn dispatch(
        &mut self,
        now_unix_ms: i64,
        gate: &dyn Fn(usize) -> Option<String>,
    ) -> Vec<usize> {
        self.advance(now_unix_ms);
        let mut started = Vec::new();
        if self.progress.paused || self.progress.halted.is_some() {
            return started;
        }
        self.progress
            .retried
            .retain(|&m| self.states[m] == HostState::Pending);
        // One load for the whole pass, and no copy of the stage: a pass over
        // a stage of thousands of hosts runs after every batch of outcomes.
        let mut load = self.load.take().unwrap_or_else(|| Load::build(self));
        let retried = self.progress.retried.clone();
        let stage = self.progress.current_stage;
        let in_stage = self.stages.get(stage).map_or(0, Vec::len);
        let max = self.policy.max_parallel.max(1) as usize;
        for i in 0..retried.len() + in_stage {
            if load.running >= max {
                break;
            }
            let m = match retried.get(i) {
                Some(&m) => m,
                None => self.stages[stage][i - retried.len()],
            };
            if self.states[m] == HostState::Pending
                && self.wait_with(m, now_unix_ms, gate, false, &load).is_none()
            {
                load.leave(m, HostState::Pending);
                self.states[m] = HostState::Running;
                load.enter(m, HostState::Running);
                started.push(m);
            }
        }
        self.load = Some(load);
        started
    }

    /// Records how a running host ended and checks the error budgets.
    pub fn finish(&mut self, m: usize, outcome: Outcome, now_unix_ms: i64) {
        if self.states[m] != HostState::Running {
            return;
        }
        self.set_state(m, HostState::Done(outcome));
        let stage = self.stage_of[m];
        if stage == self.progress.current_stage && self.stage_finished(stage) {
            self.progress.stage_done_unix_ms = Some(now_unix_ms);
        }
        if outcome.is_failure() {
            self.check_error_budgets(stage);
        }
    }

    fn check_error_budgets(&mut self, stage: usize) {
        if self.progress.halted.is_some() {
            return;
        }
        let stage_failures = self
            .failures_in(self.stages[stage].iter().copied())
            .saturating_sub(
                self.progress
                    .forgiven_in_stage
                    .get(&stage)
                    .copied()
                    .unwrap_or(0),
            );
        let total_failures = self
            .failures_in(0..self.members.len())
            .saturating_sub(self.progress.forgiven);
        let stage_limit = self.policy.stage_errors.of(self.stages[stage].len());
        let total_limit = self.policy.total_errors.of(self.members.len());
        if stage_failures > stage_limit {
            self.progress.halted = Some(format!(
                "{stage_failures} failures in stage {}, over its error budget of {stage_limit}",
                stage + 1
            ));
        } else if total_failures > total_limit {
            self.progress.halted = Some(format!(
                "{total_failures} failures, over the wave's error budget of {total_limit}"
            ));
        }
    }

    /// A finished host's outcome changed after the fact (an operator rolled
    /// back a held host): budgets follow, the error count does not move
    /// (both outcomes are failures) unless it stops being one.
    pub fn amend(&mut self, m: usize, outcome: Outcome) {
        if matches!(self.states[m], HostState::Done(_)) {
            self.set_state(m, HostState::Done(outcome));
        }
    }

    /// Moves to the next stage once every host of the current one is done,
    /// the soak time has passed and, if asked, an operator approved it.
    fn advance(&mut self, now_unix_ms: i64) {
        while self.progress.halted.is_none()
            && !self.progress.paused
            && self.progress.current_stage + 1 < self.stages.len()
            && self.stage_finished(self.progress.current_stage)
            && self.between_stages(now_unix_ms).is_none()
        {
            self.progress.current_stage += 1;
            self.progress.stage_done_unix_ms = None;
            if self.stage_finished(self.progress.current_stage) {
                self.progress.stage_done_unix_ms = Some(now_unix_ms);
            }
        }
    }

    /// An operator resumes a halted or paused wave (after looking at its
    /// failures): the failures so far are accepted, the budgets count anew.
    pub fn resume(&mut self) {
        if self.progress.halted.take().is_some() {
            self.progress.forgiven = self.failures_in(0..self.members.len());
            for stage in 0..self.stages.len() {
                let failures = self.failures_in(self.stages[stage].iter().copied());
                if failures > 0 {
                    self.progress.forgiven_in_stage.insert(stage, failures);
                }
            }
        }
        self.progress.paused = false;
    }

    pub fn pause(&mut self) {
        self.progress.paused = true;
    }

    /// Approves the stage after the current one; false when none waits.
    pub fn approve(&mut self) -> bool {
        let next = self.progress.current_stage + 1;
        if next < self.stages.len() && self.progress.approved_stage < next {
            self.progress.approved_stage = next;
            true
        } else {
            false
        }
    }

    /// Puts a host that ended without success back in the queue: of its
    /// stage, or, for a host of an earlier stage, first in the current one.
    pub fn retry(&mut self, m: usize) -> Result<(), HostActionError> {
        match self.states[m] {
            HostState::Done(o) if o != Outcome::Succeeded => {
                self.set_state(m, HostState::Pending);
                if self.stage_of[m] < self.progress.current_stage {
                    self.progress.retried.push(m);
                } else if self.stage_of[m] == self.progress.current_stage {
                    self.progress.stage_done_unix_ms = None;
                }
                Ok(())
            }
            other => Err(HostActionError::NotRetriable(other.label())),
        }
    }

    /// A running host whose job an operator resumed (a held job retried).
    pub fn rerun(&mut self, m: usize) {
        if matches!(self.states[m], HostState::Done(_)) {
            self.set_state(m, HostState::Running);
        }
    }

    /// Takes a pending host out of the wave.
    pub fn skip(&mut self, m: usize, now_unix_ms: i64) -> Result<(), HostActionError> {
        self.end_pending(m, Outcome::Skipped, now_unix_ms)
    }

    /// Ends a host that never started: skipped by an operator, or given up as
    /// unreachable. Not a failure either way.
    pub fn end_pending(
        &mut self,
        m: usize,
        outcome: Outcome,
        now_unix_ms: i64,
    ) -> Result<(), HostActionError> {
        if self.states[m] != HostState::Pending || outcome.is_failure() {
            return Err(HostActionError::NotPending(self.states[m].label()));
        }
        self.set_state(m, HostState::Done(outcome));
        let stage = self.stage_of[m];
        if stage == self.progress.current_stage && self.stage_finished(stage) {
            self.progress.stage_done_unix_ms = Some(now_unix_ms);
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.states.iter().all(|s| matches!(s, HostState::Done(_)))
    }

    /// Ends the wave: hosts that never started are `NotStarted`.
    pub fn close(&mut self) {
        for m in 0..self.members.len() {
            if self.states[m] == HostState::Pending {
                self.set_state(m, HostState::Done(Outcome::NotStarted));
            }
        }
    }

    /// Hosts per state label.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for state in &self.states {
            *counts.entry(state.label()).or_default() += 1;
        }
        counts
    }

    /// Per budget label: disrupting hosts, and values at their limit.
    pub fn budget_use(&mut self) -> Vec<(String, usize, usize)> {
        self.with_load(|wave, load| {
            wave.policy
                .budgets
                .iter()
                .enumerate()
                .map(|(b, budget)| {
                    let in_use = load.in_use[b].iter().sum();
                    let full = load.in_use[b]
                        .iter()
                        .zip(&load.limit[b])
                        .filter(|(used, limit)| **used > 0 && used >= limit)
                        .count();
                    (budget.label.clone(), in_use, full)
                })
                .collect()
        })
    }
}
