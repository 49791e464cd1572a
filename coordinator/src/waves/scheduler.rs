//! The wave scheduler: pure logic, no I/O, no clock. A wave is a list of hosts
//! split into stages (a canary, then batches such as `1,5%,25%,100%` whose
//! last size repeats) and a policy. Inside the current stage hosts start as
//! slots free (a sliding window) while every rule holds: the overall
//! parallelism, each disruption budget (at most N hosts sharing a label value
//! in flight), and the error budgets; past an error budget the wave halts and
//! starts nobody. Hosts with serious but non-blocking findings go after the
//! clean hosts of their application. `why` names what a waiting host waits for.

use std::collections::BTreeMap;

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

impl std::str::FromStr for Limit {
    type Err = String;

    /// `5` or `25%`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a count or a percentage (e.g. 5 or 25%)");
        match text.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p @ 1..=100) => Ok(Limit::Percent(p)),
                _ => Err(bad()),
            },
            None => text.parse::<u32>().map(Limit::Count).map_err(|_| bad()),
        }
    }
}

/// At most `limit` hosts sharing a value of `label` in flight at once; a
/// percentage is of the wave's hosts with that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub label: String,
    pub limit: Limit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Hosts in the canary stage.
    pub canary: u32,
    /// Sizes of the following stages; the last repeats until every host has one.
    pub batches: Vec<Limit>,
    pub max_parallel: u32,
    pub budgets: Vec<Budget>,
    /// Failures allowed within one stage, and in the whole wave.
    pub stage_errors: Limit,
    pub total_errors: Limit,
}

/// A host as the wave sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
    /// Serious but non-blocking findings at its pre-check: it goes after the
    /// clean hosts of its application.
    pub concerns: bool,
}

/// How a host's migration ended, as far as the wave is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    /// Failed after a change started, and was rolled back cleanly.
    RolledBack,
    /// Failed after a change started, and was not rolled back (held).
    Failed,
    /// Stopped at its pre-check: nothing was changed; not a failure.
    Blocked,
    /// Could not be reached: not a failure.
    Unreachable,
    /// Never started: the wave halted or was cancelled first.
    NotStarted,
}

impl Outcome {
    /// Counted against the error budgets: a change started and failed.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::RolledBack)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    Pending,
    Running,
    Done(Outcome),
}

/// Why a pending host has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Its stage comes later.
    Stage {
        host_stage: usize,
        current: usize,
    },
    Halted(String),
    MaxParallel {
        running: usize,
        max: usize,
    },
    /// A disruption budget is full; `holders` are the hosts in flight with that value.
    Budget {
        label: String,
        value: String,
        limit: usize,
        holders: Vec<String>,
    },
    /// Hosts before it in the stage's order start first.
    Queue,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Stage {
                host_stage,
                current,
            } => {
                write!(
                    f,
                    "its stage ({}) comes after the current one ({})",
                    host_stage + 1,
                    current + 1
                )
            }
            Wait::Halted(reason) => write!(f, "the wave is halted: {reason}"),
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
            Wait::Queue => f.write_str("hosts before it in its stage start first"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub policy: Policy,
    pub members: Vec<Member>,
    /// Index of each member's stage.
    pub stage_of: Vec<usize>,
    /// Members of each stage, in start order.
    pub stages: Vec<Vec<usize>>,
    pub states: Vec<HostState>,
    pub current_stage: usize,
    pub halted: Option<String>,
}

/// Start order: by application; within one, clean hosts before those with
/// concerns; then by host id.
fn order(members: &[Member]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        let (ma, mb) = (&members[a], &members[b]);
        let app = |m: &Member| m.labels.get("app").cloned().unwrap_or_default();
        (app(ma), ma.concerns, &ma.host_id).cmp(&(app(mb), mb.concerns, &mb.host_id))
    });
    order
}

impl Wave {
    pub fn plan(policy: Policy, members: Vec<Member>) -> Self {
        let total = members.len();
        let ordered = order(&members);
        let mut sizes = vec![(policy.canary as usize).min(total)];
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
            current_stage: 0,
            halted: None,
        }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&m| self.states[m] == HostState::Running)
    }

    fn failures_in(&self, members: impl Iterator<Item = usize>) -> usize {
        members
            .filter(|&m| matches!(self.states[m], HostState::Done(o) if o.is_failure()))
            .count()
    }

    /// The first rule that keeps member `m` from starting now; None for a
    /// pending host that may start, and for one that is not pending.
    pub fn why(&self, m: usize) -> Option<Wait> {
        if self.states[m] != HostState::Pending {
            return None;
        }
        if let Some(reason) = &self.halted {
            return Some(Wait::Halted(reason.clone()));
        }
        if self.stage_of[m] != self.current_stage {
            return Some(Wait::Stage {
                host_stage: self.stage_of[m],
                current: self.current_stage,
            });
        }
        let running: Vec<usize> = self.running().collect();
        let max = self.policy.max_parallel.max(1) as usize;
        if running.len() >= max {
            return Some(Wait::MaxParallel {
                running: running.len(),
                max,
            });
        }
        for budget in &self.policy.budgets {
            let Some(value) = self.members[m].labels.get(&budget.label) else {
                continue;
            };
            let sharing = |i: &usize| self.members[*i].labels.get(&budget.label) == Some(value);
            let population = (0..self.members.len()).filter(sharing).count();
            let limit = budget.limit.of(population);
            let holders: Vec<String> = running
                .iter()
                .filter(|i| sharing(i))
                .map(|&i| self.members[i].host_id.clone())
                .collect();
            if holders.len() >= limit {
                return Some(Wait::Budget {
                    label: budget.label.clone(),
                    value: value.clone(),
                    limit,
                    holders,
                });
            }
        }
        None
    }

    /// Starts every host that may start now, in order; returns them.
    pub fn dispatch(&mut self) -> Vec<usize> {
        self.advance();
        let mut started = Vec::new();
        let Some(stage) = self.stages.get(self.current_stage).cloned() else {
            return started;
        };
        for m in stage {
            if self.states[m] == HostState::Pending && self.why(m).is_none() {
                self.states[m] = HostState::Running;
                started.push(m);
            }
        }
        started
    }

    /// Records how a running host ended and checks the error budgets.
    pub fn finish(&mut self, m: usize, outcome: Outcome) {
        if self.states[m] != HostState::Running {
            return;
        }
        self.states[m] = HostState::Done(outcome);
        let stage = self.stage_of[m];
        let stage_members = self.stages[stage].len();
        let stage_failures = self.failures_in(self.stages[stage].iter().copied());
        let total_failures = self.failures_in(0..self.members.len());
        let stage_limit = self.policy.stage_errors.of(stage_members);
        let total_limit = self.policy.total_errors.of(self.members.len());
        if self.halted.is_none() {
            if stage_failures > stage_limit {
                self.halted = Some(format!(
                    "{stage_failures} failures in stage {}, over its error budget of {stage_limit}",
                    stage + 1
                ));
            } else if total_failures > total_limit {
                self.halted = Some(format!(
                    "{total_failures} failures, over the wave's error budget of {total_limit}"
                ));
            }
        }
    }

    /// Moves to the next stage once every host of the current one is done.
    fn advance(&mut self) {
        while self.halted.is_none()
            && self.current_stage + 1 < self.stages.len()
            && self.stages[self.current_stage]
                .iter()
                .all(|&m| matches!(self.states[m], HostState::Done(_)))
        {
            self.current_stage += 1;
        }
    }

    /// An operator resumes a halted wave (after looking at its failures).
    pub fn resume(&mut self) {
        self.halted = None;
    }

    /// Whether nothing more will start or finish: every host done, or halted
    /// with nothing in flight.
    pub fn is_settled(&self) -> bool {
        let none_running = self.running().next().is_none();
        none_running
            && (self.halted.is_some()
                || self.states.iter().all(|s| matches!(s, HostState::Done(_))))
    }

    /// Ends the wave: hosts that never started are `NotStarted`.
    pub fn close(&mut self) {
        for state in &mut self.states {
            if *state == HostState::Pending {
                *state = HostState::Done(Outcome::NotStarted);
            }
        }
    }
}
