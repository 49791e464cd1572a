//! The wave scheduler driven at random as a fleet and its operators would
//! drive it (hosts ending every way, holds rolled back, pauses, halts and
//! resumes, approvals, retries, skips), under zoned weekly windows that cross
//! the 2026 clock changes and freezes, with every rule checked at every step
//! by oracles that do not reuse the code under test:
//!
//! - safety: parallelism, disruption budgets, stage order, soak, approval, no
//!   start while halted or paused, and no start outside a window or into a
//!   freeze (local clocks worked out from the published daylight-saving
//!   rules, not from the time zone database);
//! - progress: a pending host that `why` says nothing blocks has been
//!   started; a budget, window, soak or parallelism wait that `why` reports
//!   is real; the wave halts exactly when failures pass an error budget;
//! - restarts go through the coordinator's own way back: the wave's parts
//!   written as the inventory writes them and flushed, the data directory
//!   copied as a crash leaves it, read by `Store::waves` and `restored`, and
//!   the result compared with a twin that never restarted.

mod calendar_oracle;
mod clock;
mod stored;

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use calendar_oracle::{Oracle, generate_freeze, generate_window};
use clock::{DAY, MIN, days_from_civil};
use mf_core::wave::calendar::Calendar;
use mf_core::wave::scheduler::{Budget, HostState, Limit, Member, Outcome, Policy, Wait, Wave};
use stored::Stored;

fn limit_of(limit: Limit, population: usize) -> usize {
    match limit {
        Limit::Count(n) => n as usize,
        Limit::Percent(p) => (population * p as usize).div_ceil(100).max(1),
    }
}

fn is_failure(state: HostState) -> bool {
    matches!(
        state,
        HostState::Done(Outcome::Failed) | HostState::Done(Outcome::RolledBack)
    )
}

fn disrupts(state: HostState) -> bool {
    matches!(state, HostState::Running | HostState::Done(Outcome::Failed))
}

/// How often the interesting cases happened, so that the test is not vacuous.
#[derive(Debug, Default)]
struct Seen {
    halts: usize,
    budget_waits: usize,
    restarts: usize,
    never_started: usize,
    window_waits: usize,
    freeze_waits: usize,
    soak_waits: usize,
    approvals: usize,
    held_rolled_back: usize,
    retries: usize,
    reruns: usize,
    skips: usize,
    starts_near_clock_changes: usize,
}

/// One generated wave and what the test knows of it.
struct Run {
    seed: u64,
    wave: Wave,
    twin: Wave,
    oracle: Oracle,
    calendar: Calendar,
    expected: Vec<i64>,
    /// Member -> the stage it was in when it started (this run of it).
    started: BTreeMap<usize, usize>,
    /// Hosts an operator retried from a stage before the current one, or
    /// whose held job was resumed: they may run outside the current stage.
    out_of_stage: BTreeSet<usize>,
    stage_done_at: BTreeMap<usize, i64>,
    /// Hosts whose held job an operator resumed, until they end.
    resumed: BTreeSet<usize>,
    /// The failures accepted by resumes, counted by the test.
    forgiven: usize,
    forgiven_in_stage: BTreeMap<usize, usize>,
    /// Paused by the test's operator, whatever the wave says.
    paused: bool,
    now: i64,
}

fn generate(seed: u64, rng: &mut StdRng) -> Run {
    let hosts = rng.gen_range(1..120);
    let apps = rng.gen_range(1..12);
    let hypervisors = rng.gen_range(1..20);
    let members: Vec<Member> = (0..hosts)
        .map(|i| Member {
            host_id: format!("h{i:03}"),
            labels: [
                ("app", format!("app{}", rng.gen_range(0..apps))),
                ("dc", ["dc1", "dc2"][rng.gen_range(0..2)].to_string()),
                ("hypervisor", format!("hv{}", rng.gen_range(0..hypervisors))),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            concerns: rng.gen_bool(0.2),
            canary: rng.gen_bool(0.03),
        })
        .collect();
    let limit = |rng: &mut StdRng| {
        if rng.gen_bool(0.5) {
            Limit::Count(rng.gen_range(1..5))
        } else {
            Limit::Percent(rng.gen_range(1..60))
        }
    };
    let mut budgets = Vec::new();
    for label in ["app", "dc", "hypervisor"] {
        if rng.gen_bool(0.6) {
            budgets.push(Budget {
                label: label.to_string(),
                limit: limit(rng),
            });
        }
    }
    let policy = Policy {
        canary: rng.gen_range(0..4),
        batches: (0..rng.gen_range(1..5)).map(|_| limit(rng)).collect(),
        max_parallel: rng.gen_range(1..25),
        budgets,
        stage_errors: limit(rng),
        total_errors: limit(rng),
        soak_ms: if rng.gen_bool(0.5) {
            rng.gen_range(0..4 * 60) * MIN
        } else {
            0
        },
        approve_stages: rng.gen_bool(0.3),
    };
    // Most waves start in the days before a 2026 clock change.
    let changes = [
        days_from_civil(2026, 3, 8),
        days_from_civil(2026, 3, 29),
        days_from_civil(2026, 10, 25),
        days_from_civil(2026, 11, 1),
    ];
    let first_day = if rng.gen_bool(0.8) {
        changes[rng.gen_range(0..4)] - rng.gen_range(0..4)
    } else {
        days_from_civil(2026, 1, 1) + rng.gen_range(0..365)
    };
    let now = first_day * DAY + rng.gen_range(0..24 * 60) * MIN;
    let mut oracle = Oracle::default();
    if rng.gen_bool(0.7) {
        oracle.windows = (0..rng.gen_range(1..3))
            .map(|_| generate_window(rng))
            .collect();
    }
    if rng.gen_bool(0.4) {
        oracle.freezes = (0..rng.gen_range(1..3))
            .map(|_| generate_freeze(rng, now))
            .collect();
    }
    let expected = (0..hosts).map(|_| rng.gen_range(5..90) * MIN).collect();
    let wave = Wave::plan(policy, members);
    Run {
        seed,
        twin: wave.clone(),
        wave,
        calendar: oracle.calendar(),
        oracle,
        expected,
        started: BTreeMap::new(),
        out_of_stage: BTreeSet::new(),
        stage_done_at: BTreeMap::new(),
        resumed: BTreeSet::new(),
        forgiven: 0,
        forgiven_in_stage: BTreeMap::new(),
        paused: false,
        now,
    }
}

impl Run {
    fn failures(&self, members: impl Iterator<Item = usize>) -> usize {
        members.filter(|&m| is_failure(self.wave.states[m])).count()
    }

    /// Whether failures (less those accepted by a resume) pass a budget.
    fn over_error_budget(&self, stage: usize) -> bool {
        let wave = &self.wave;
        let in_stage = self
            .failures(wave.stages[stage].iter().copied())
            .saturating_sub(self.forgiven_in_stage.get(&stage).copied().unwrap_or(0));
        let total = self
            .failures(0..wave.members.len())
            .saturating_sub(self.forgiven);
        in_stage > limit_of(wave.policy.stage_errors, wave.stages[stage].len())
            || total > limit_of(wave.policy.total_errors, wave.members.len())
    }

    /// Starts whoever may start, in both waves, and checks each start.
    fn dispatch(&mut self, seen: &mut Seen) {
        let seed = self.seed;
        let now = self.now;
        let gate = |m: usize| self.calendar.closed(now, self.expected[m]);
        let was_stopped = self.wave.progress.halted.is_some() || self.paused;
        let started = self.wave.dispatch(now, &gate);
        let twin_started = self.twin.dispatch(now, &gate);
        assert_eq!(
            started, twin_started,
            "seed {seed}: the twin started others"
        );
        for m in started {
            assert!(!was_stopped, "seed {seed}: started while halted or paused");
            let stage = self.wave.stage_of[m];
            assert!(
                self.started.insert(m, stage).is_none(),
                "seed {seed}: host {m} started twice"
            );
            assert!(
                self.oracle.fits(now, self.expected[m]),
                "seed {seed}: host {m} started at {now} outside its windows or into a freeze: {:?}",
                self.oracle
            );
            if !self.oracle.windows.is_empty()
                && self
                    .oracle
                    .windows
                    .iter()
                    .any(|w| w.zone.changes_near(now, 2 * DAY))
            {
                seen.starts_near_clock_changes += 1;
            }
            if self.out_of_stage.contains(&m) {
                continue;
            }
            for earlier in 0..stage {
                assert!(
                    self.wave.stages[earlier].iter().all(|&e| {
                        self.out_of_stage.contains(&e)
                            || matches!(self.wave.states[e], HostState::Done(_))
                    }),
                    "seed {seed}: host {m} of stage {stage} started before stage {earlier} ended"
                );
            }
            if stage > 0 {
                if let Some(done) = self.stage_done_at.get(&(stage - 1)) {
                    assert!(
                        now >= done + self.wave.policy.soak_ms,
                        "seed {seed}: soak cut short"
                    );
                }
                if self.wave.policy.approve_stages {
                    assert!(
                        self.wave.progress.approved_stage >= stage,
                        "seed {seed}: stage {stage} started without approval"
                    );
                }
            }
        }
    }

    /// The rules that must hold at any moment.
    fn check_safety(&self) {
        let (seed, wave) = (self.seed, &self.wave);
        let running: Vec<usize> = wave.running().collect();
        // A held job an operator resumed runs whatever the parallelism.
        let started_by_the_wave = running.iter().filter(|m| !self.resumed.contains(m)).count();
        assert!(
            started_by_the_wave <= wave.policy.max_parallel.max(1) as usize,
            "seed {seed}: max parallel broken"
        );
        for budget in &wave.policy.budgets {
            let value = |m: usize| wave.members[m].labels.get(&budget.label);
            let values: BTreeSet<&String> = (0..wave.members.len()).filter_map(value).collect();
            for v in values {
                let population = (0..wave.members.len())
                    .filter(|&m| value(m) == Some(v))
                    .count();
                let disrupted = (0..wave.members.len())
                    .filter(|&m| value(m) == Some(v) && disrupts(wave.states[m]))
                    .count();
                assert!(
                    disrupted <= limit_of(budget.limit, population),
                    "seed {seed}: budget {}={} broken for {v}: {disrupted}",
                    budget.label,
                    budget.limit
                );
            }
        }
        for &m in &running {
            assert!(
                wave.stage_of[m] == wave.progress.current_stage || self.out_of_stage.contains(&m),
                "seed {seed}: host {m} runs outside the current stage"
            );
        }
        if wave.progress.halted.is_none() {
            for stage in 0..wave.stages.len() {
                assert!(
                    !self.over_error_budget(stage),
                    "seed {seed}: failures past the budget of stage {stage} and no halt"
                );
            }
        }
    }

    /// What `why` says of each host, checked against the wave itself.
    fn check_progress(&mut self, seen: &mut Seen) {
        let (seed, now) = (self.seed, self.now);
        let calendar = &self.calendar;
        let expected = &self.expected;
        let gate = |m: usize| calendar.closed(now, expected[m]);
        for (m, &expected_ms) in expected.iter().enumerate() {
            let wait = self.wave.why(m, now, &gate);
            let wave = &self.wave;
            match wait {
                None => assert_ne!(
                    wave.states[m],
                    HostState::Pending,
                    "seed {seed}: nothing blocks host {m}, yet it was not started"
                ),
                Some(Wait::Budget {
                    label,
                    value,
                    limit,
                    holders,
                }) => {
                    seen.budget_waits += 1;
                    let budget = wave
                        .policy
                        .budgets
                        .iter()
                        .find(|b| b.label == label)
                        .expect("a budget of the policy");
                    let with_value: Vec<usize> = (0..wave.members.len())
                        .filter(|&h| wave.members[h].labels.get(&label) == Some(&value))
                        .collect();
                    assert_eq!(limit, limit_of(budget.limit, with_value.len()));
                    let disrupting: Vec<String> = with_value
                        .iter()
                        .filter(|&&h| disrupts(wave.states[h]))
                        .map(|&h| wave.members[h].host_id.clone())
                        .collect();
                    assert!(
                        disrupting.len() >= limit,
                        "seed {seed}: host {m} waits for a budget that is not full"
                    );
                    assert_eq!(holders, disrupting, "seed {seed}: wrong holders named");
                }
                Some(Wait::Closed(reason)) => {
                    if reason.contains("freeze") {
                        seen.freeze_waits += 1;
                    } else {
                        seen.window_waits += 1;
                    }
                    assert!(
                        !self.oracle.fits(now, expected_ms),
                        "seed {seed}: host {m} told closed ({reason}) at {now} though it fits"
                    );
                }
                Some(Wait::Soak { until_unix_ms, .. }) => {
                    seen.soak_waits += 1;
                    assert!(now < until_unix_ms, "seed {seed}: a soak that is over");
                }
                Some(Wait::MaxParallel { running, max }) => {
                    assert_eq!(running, wave.running().count());
                    assert!(running >= max, "seed {seed}: parallelism not reached");
                }
                Some(Wait::Halted(_)) => assert!(wave.progress.halted.is_some()),
                Some(Wait::Paused) => assert!(self.paused),
                Some(Wait::Stage { host_stage, .. }) => {
                    assert_ne!(host_stage, wave.progress.current_stage);
                    assert!(!self.out_of_stage.contains(&m));
                }
                Some(Wait::Approval { stage }) => assert!(wave.progress.approved_stage < stage),
            }
        }
    }

    /// Some hosts in flight end, every way a job can end.
    fn finish_some(&mut self, rng: &mut StdRng, seen: &mut Seen) {
        let now = self.now;
        let running: Vec<usize> = self.wave.running().collect();
        for m in running {
            if !rng.gen_bool(0.5) {
                continue;
            }
            let outcome = match rng.gen_range(0..100) {
                0..75 => Outcome::Succeeded,
                75..83 => Outcome::RolledBack,
                83..88 => Outcome::Failed,
                88..92 => Outcome::Blocked,
                92..95 => Outcome::Aborted,
                _ => Outcome::Unreachable,
            };
            let halted_before = self.wave.progress.halted.is_some();
            self.wave.finish(m, outcome, now);
            self.twin.finish(m, outcome, now);
            self.out_of_stage.remove(&m);
            self.resumed.remove(&m);
            let stage = self.wave.stage_of[m];
            self.note_stage_done(stage);
            if !halted_before {
                let halted = self.wave.progress.halted.is_some();
                assert_eq!(
                    halted,
                    self.over_error_budget(stage),
                    "seed {}: halted {halted} after host {m} ended {outcome:?}",
                    self.seed
                );
                seen.halts += usize::from(halted);
            }
        }
    }

    /// What operators do, to both waves alike.
    fn operate(&mut self, rng: &mut StdRng, seen: &mut Seen, retries_left: &mut usize) {
        let now = self.now;
        for m in 0..self.wave.members.len() {
            if self.wave.states[m] == HostState::Done(Outcome::Failed) && rng.gen_bool(0.3) {
                seen.held_rolled_back += 1;
                self.wave.amend(m, Outcome::RolledBack);
                self.twin.amend(m, Outcome::RolledBack);
            }
        }
        if self.wave.policy.approve_stages && rng.gen_bool(0.3) {
            let approved = self.wave.approve();
            assert_eq!(approved, self.twin.approve());
            seen.approvals += usize::from(approved);
        }
        if rng.gen_bool(0.05) {
            self.wave.pause();
            self.twin.pause();
            self.paused = true;
        } else if self.paused && rng.gen_bool(0.5) {
            self.resume();
        }
        let held: Vec<usize> = (0..self.wave.members.len())
            .filter(|&m| self.wave.states[m] == HostState::Done(Outcome::Failed))
            .collect();
        if !held.is_empty() && rng.gen_bool(0.05) {
            // A held job retried: the host is in flight again.
            let m = held[rng.gen_range(0..held.len())];
            self.wave.rerun(m);
            self.twin.rerun(m);
            assert_eq!(self.wave.states[m], HostState::Running);
            self.out_of_stage.insert(m);
            self.resumed.insert(m);
            seen.reruns += 1;
        }
        if *retries_left > 0 && rng.gen_bool(0.03) {
            let ended: Vec<usize> = (0..self.wave.members.len())
                .filter(|&m| {
                    matches!(self.wave.states[m], HostState::Done(o) if o != Outcome::Succeeded)
                })
                .collect();
            if !ended.is_empty() {
                let m = ended[rng.gen_range(0..ended.len())];
                self.wave.retry(m).expect("retry");
                self.twin.retry(m).expect("twin retry");
                *retries_left -= 1;
                seen.retries += 1;
                self.started.remove(&m);
                if self.wave.stage_of[m] < self.wave.progress.current_stage {
                    self.out_of_stage.insert(m);
                }
            }
        }
        if rng.gen_bool(0.03) {
            let pending: Vec<usize> = (0..self.wave.members.len())
                .filter(|&m| self.wave.states[m] == HostState::Pending)
                .collect();
            if !pending.is_empty() {
                let m = pending[rng.gen_range(0..pending.len())];
                self.wave.skip(m, now).expect("skip");
                self.twin.skip(m, now).expect("twin skip");
                self.out_of_stage.remove(&m);
                seen.skips += 1;
                self.note_stage_done(self.wave.stage_of[m]);
            }
        }
    }

    /// The soak counts from when the current stage's last host ended (a
    /// retried host of an earlier stage ending later does not move it).
    fn note_stage_done(&mut self, stage: usize) {
        let done = self.wave.stages[stage]
            .iter()
            .all(|&e| matches!(self.wave.states[e], HostState::Done(_)));
        if done && stage == self.wave.progress.current_stage {
            self.stage_done_at.insert(stage, self.now);
        }
    }

    /// An operator's resume: after a halt, the failures so far are accepted.
    fn resume(&mut self) {
        if self.wave.progress.halted.is_some() {
            self.forgiven = self.failures(0..self.wave.members.len());
            self.forgiven_in_stage = (0..self.wave.stages.len())
                .map(|s| (s, self.failures(self.wave.stages[s].iter().copied())))
                .filter(|&(_, f)| f > 0)
                .collect();
        }
        self.wave.resume();
        self.twin.resume();
        self.paused = false;
    }

    fn settled(&self) -> bool {
        self.wave.running().next().is_none()
            && (self.wave.progress.halted.is_some() || self.wave.is_finished())
    }
}

#[test]
fn waves_keep_every_rule_make_progress_and_come_back_exactly_after_crashes() {
    let mut seen = Seen::default();
    // Fewer seeds for quick runs (mutation testing): MF_WAVE_SEEDS=50.
    let seeds: u64 = std::env::var("MF_WAVE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut run = generate(seed, &mut rng);
        let mut stored = Stored::create(&run.wave, run.calendar.clone());
        let mut retries_left = 4;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 20_000, "seed {seed}: the wave never settles");
            run.dispatch(&mut seen);
            run.check_safety();
            run.check_progress(&mut seen);
            run.finish_some(&mut rng, &mut seen);
            run.check_safety();
            run.operate(&mut rng, &mut seen, &mut retries_left);
            stored.save(&run.wave);
            if rng.gen_bool(0.1) {
                seen.restarts += 1;
                let (back, wave) = stored.crash_and_restart();
                assert_eq!(wave, run.twin, "seed {seed}: a restart changed the wave");
                stored = back;
                run.wave = wave;
            }
            assert_eq!(run.wave, run.twin, "seed {seed}: the twin went elsewhere");
            run.now += rng.gen_range(0..120) * MIN;
            if run.settled() {
                if run.wave.progress.halted.is_some() && rng.gen_bool(0.5) {
                    run.resume();
                    continue;
                }
                break;
            }
            if (run.paused || run.wave.policy.approve_stages) && rng.gen_bool(0.2) {
                // Operators do not stall a wave for ever.
                run.resume();
                run.wave.approve();
                run.twin.approve();
            }
        }
        run.wave.close();
        for (m, state) in run.wave.states.iter().enumerate() {
            match state {
                HostState::Done(Outcome::NotStarted) => {
                    seen.never_started += 1;
                    assert!(!run.started.contains_key(&m), "seed {seed}: {m} started");
                    assert!(
                        run.wave.progress.halted.is_some(),
                        "seed {seed}: host {m} never started, and no halt"
                    );
                }
                HostState::Done(Outcome::Skipped) => {
                    assert!(
                        !run.started.contains_key(&m),
                        "seed {seed}: skipped {m} ran"
                    );
                }
                HostState::Done(_) => assert!(
                    run.started.contains_key(&m),
                    "seed {seed}: host {m} ended without starting"
                ),
                other => panic!("seed {seed}: host {m} ended {other:?}"),
            }
        }
    }
    eprintln!("{seen:?}");
    let least = [
        ("halts", seen.halts, 30),
        ("budget waits", seen.budget_waits, 500),
        ("restarts", seen.restarts, 300),
        ("hosts left by a halt", seen.never_started, 50),
        ("window waits", seen.window_waits, 500),
        ("freeze waits", seen.freeze_waits, 100),
        ("soak waits", seen.soak_waits, 100),
        ("approvals", seen.approvals, 30),
        ("held hosts rolled back", seen.held_rolled_back, 20),
        ("retries", seen.retries, 50),
        ("held jobs resumed", seen.reruns, 20),
        ("skips", seen.skips, 50),
        (
            "starts near a clock change",
            seen.starts_near_clock_changes,
            200,
        ),
    ];
    for (what, count, least) in least {
        let least = least * seeds as usize / 200;
        assert!(count > least, "only {count} {what} in {seeds} waves");
    }
}
