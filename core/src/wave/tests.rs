//! The scheduler's rules as properties over random fleets, policies, outcomes
//! and restarts (the wave serialised and read back, as the coordinator would
//! after a crash), plus a few exact cases.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scheduler::*;

fn member(id: &str, app: &str, dc: &str, hv: &str, concerns: bool) -> Member {
    Member {
        host_id: id.into(),
        labels: BTreeMap::from([
            ("app".to_string(), app.to_string()),
            ("dc".to_string(), dc.to_string()),
            ("hypervisor".to_string(), hv.to_string()),
        ]),
        concerns,
        canary: false,
    }
}

fn policy(canary: u32, max_parallel: u32, budgets: Vec<Budget>) -> Policy {
    Policy {
        canary,
        batches: vec![
            Limit::Count(1),
            Limit::Percent(5),
            Limit::Percent(25),
            Limit::Percent(100),
        ],
        max_parallel,
        budgets,
        stage_errors: Limit::Percent(100),
        total_errors: Limit::Percent(100),
        soak_ms: 0,
        approve_stages: false,
    }
}

const OPEN: &dyn Fn(usize) -> Option<String> = &|_| None;

#[test]
fn stages_are_a_canary_then_batches_whose_last_repeats() {
    let members = (0..100)
        .map(|i| member(&format!("h{i:03}"), "a", "dc1", "hv", false))
        .collect();
    let wave = Wave::plan(policy(2, 10, vec![]), members);
    let sizes: Vec<usize> = wave.stages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 1, 5, 25, 67]);
    let mut members: Vec<Member> = (0..10)
        .map(|i| member(&format!("h{i}"), "a", "dc1", "hv", false))
        .collect();
    members.push(member("z", "a", "dc1", "hv", false));
    let wave = Wave::plan(
        Policy {
            batches: vec![Limit::Count(3)],
            ..policy(1, 10, vec![])
        },
        members,
    );
    let sizes: Vec<usize> = wave.stages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 3, 3, 3, 1]);
}

#[test]
fn hosts_with_concerns_go_after_the_clean_hosts_of_their_application() {
    let members = vec![
        member("b-worry", "b", "dc1", "hv", true),
        member("a-worry", "a", "dc1", "hv", true),
        member("a-clean", "a", "dc1", "hv", false),
        member("b-clean", "b", "dc1", "hv", false),
    ];
    let wave = Wave::plan(policy(4, 10, vec![]), members);
    let order: Vec<&str> = wave.stages[0]
        .iter()
        .map(|&m| wave.members[m].host_id.as_str())
        .collect();
    assert_eq!(order, ["a-clean", "a-worry", "b-clean", "b-worry"]);
}

#[test]
fn why_names_the_budget_and_who_holds_it() {
    let members = vec![
        member("a1", "billing", "dc1", "hv1", false),
        member("a2", "billing", "dc1", "hv2", false),
    ];
    let budgets = vec![Budget {
        label: "app".into(),
        limit: Limit::Count(1),
    }];
    let mut wave = Wave::plan(policy(2, 10, budgets), members);
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    let wait = wave.why(1, 0, OPEN).expect("waits");
    assert_eq!(
        wait.to_string(),
        "the budget app=1 is full for app billing, held by a1"
    );
    // A failed host that is held (not rolled back) keeps its slot...
    wave.finish(0, Outcome::Failed, 0);
    assert!(wave.dispatch(0, OPEN).is_empty());
    assert!(matches!(wave.why(1, 0, OPEN), Some(Wait::Budget { .. })));
    // ...until an operator rolls it back.
    wave.amend(0, Outcome::RolledBack);
    assert_eq!(wave.dispatch(0, OPEN), vec![1]);
}

#[test]
fn crossing_an_error_budget_halts_and_a_resume_goes_on() {
    let members = (0..10)
        .map(|i| member(&format!("h{i}"), "a", "dc1", "hv", false))
        .collect();
    let mut wave = Wave::plan(
        Policy {
            stage_errors: Limit::Count(0),
            ..policy(2, 10, vec![])
        },
        members,
    );
    assert_eq!(wave.dispatch(0, OPEN), vec![0, 1]);
    wave.finish(0, Outcome::Blocked, 0);
    wave.finish(1, Outcome::Unreachable, 0);
    assert!(
        wave.progress.halted.is_none(),
        "blocked and unreachable hosts are not failures"
    );
    let next = wave.dispatch(0, OPEN);
    assert_eq!(next.len(), 1);
    wave.finish(next[0], Outcome::RolledBack, 0);
    assert!(
        wave.progress
            .halted
            .as_deref()
            .is_some_and(|r| r.contains("over its error budget of 0"))
    );
    assert!(wave.dispatch(0, OPEN).is_empty());
    assert!(matches!(wave.why(5, 0, OPEN), Some(Wait::Halted(_))));
    wave.resume();
    assert!(!wave.dispatch(0, OPEN).is_empty());
}

#[test]
fn a_resume_accepts_the_failures_so_far_and_the_budget_counts_anew() {
    let members = (0..10)
        .map(|i| member(&format!("h{i}"), &format!("a{i}"), "dc1", "hv", false))
        .collect();
    let mut wave = Wave::plan(
        Policy {
            stage_errors: Limit::Count(1),
            total_errors: Limit::Count(1),
            batches: vec![Limit::Percent(100)],
            ..policy(3, 3, vec![])
        },
        members,
    );
    let started = wave.dispatch(0, OPEN);
    wave.finish(started[0], Outcome::Failed, 0);
    wave.finish(started[1], Outcome::RolledBack, 0);
    assert!(wave.progress.halted.is_some());
    wave.resume();
    // The held host is rolled back by an operator: the same failure, no new halt.
    wave.rerun(started[0]);
    wave.finish(started[0], Outcome::RolledBack, 0);
    assert!(wave.progress.halted.is_none(), "{:?}", wave.progress.halted);
    wave.finish(started[2], Outcome::Succeeded, 0);
    // One new failure is within the budget again; a second one halts.
    let next = wave.dispatch(0, OPEN);
    assert_eq!(next.len(), 3);
    wave.finish(next[0], Outcome::RolledBack, 0);
    assert!(wave.progress.halted.is_none());
    wave.finish(next[1], Outcome::RolledBack, 0);
    assert!(wave.progress.halted.is_some());
}

#[test]
fn soak_and_approval_hold_the_next_stage_and_why_says_so() {
    let members = (0..4)
        .map(|i| member(&format!("h{i}"), "a", "dc1", "hv", false))
        .collect();
    let mut wave = Wave::plan(
        Policy {
            soak_ms: 600_000,
            approve_stages: true,
            batches: vec![Limit::Percent(100)],
            ..policy(1, 10, vec![])
        },
        members,
    );
    assert_eq!(wave.dispatch(1_000, OPEN), vec![0]);
    wave.finish(0, Outcome::Succeeded, 2_000);
    assert!(wave.dispatch(2_000, OPEN).is_empty());
    let soak = wave.why(1, 2_000, OPEN).expect("soaking");
    assert!(
        matches!(
            soak,
            Wait::Soak {
                until_unix_ms: 602_000,
                ..
            }
        ),
        "{soak:?}"
    );
    let approval = wave.why(1, 602_000, OPEN).expect("approval");
    assert_eq!(approval, Wait::Approval { stage: 1 });
    assert!(wave.dispatch(602_000, OPEN).is_empty());
    assert!(wave.approve());
    assert_eq!(wave.dispatch(602_000, OPEN), vec![1, 2, 3]);
}

#[test]
fn a_closed_gate_is_the_last_reason_and_canaries_marked_by_selector_come_first() {
    let mut members: Vec<Member> = (0..4)
        .map(|i| member(&format!("h{i}"), "a", "dc1", "hv", false))
        .collect();
    members[3].canary = true;
    members[2].canary = true;
    let mut wave = Wave::plan(policy(1, 10, vec![]), members);
    assert_eq!(wave.stages[0], vec![2, 3]);
    let closed: &dyn Fn(usize) -> Option<String> = &|_| Some("outside its windows".into());
    assert!(wave.dispatch(0, closed).is_empty());
    assert_eq!(
        wave.why(2, 0, closed),
        Some(Wait::Closed("outside its windows".into()))
    );
    assert_eq!(wave.dispatch(0, OPEN), vec![2, 3]);
}

#[test]
fn retry_and_skip_follow_the_rules() {
    let members = (0..3)
        .map(|i| member(&format!("h{i}"), "a", "dc1", "hv", false))
        .collect();
    let mut wave = Wave::plan(policy(3, 10, vec![]), members);
    assert!(wave.skip(2, 0).is_ok());
    assert_eq!(wave.dispatch(0, OPEN), vec![0, 1]);
    assert!(wave.skip(0, 0).is_err(), "a running host cannot be skipped");
    assert!(wave.retry(0).is_err(), "a running host cannot be retried");
    wave.finish(0, Outcome::Succeeded, 0);
    wave.finish(1, Outcome::RolledBack, 0);
    assert!(wave.retry(0).is_err(), "a succeeded host is not retried");
    assert!(wave.retry(1).is_ok());
    assert_eq!(wave.dispatch(0, OPEN), vec![1]);
}

/// A daily window in UTC, checked here by plain arithmetic, independently
/// of the calendar's time zone code.
struct Daily {
    start_min: i64,
    end_min: i64,
}

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;

impl Daily {
    /// Whether [at, at + len) lies inside one opening.
    fn fits(&self, at: i64, len: i64) -> bool {
        let day = at.div_euclid(DAY) * DAY;
        let length = (self.end_min - self.start_min).rem_euclid(24 * 60) * MIN;
        [day - DAY, day].iter().any(|d| {
            let open = d + self.start_min * MIN;
            open <= at && at + len <= open + length
        })
    }
}

/// Nothing more will start or finish without an operator: every host done,
/// or halted with nothing in flight.
fn is_settled(wave: &Wave) -> bool {
    wave.running().next().is_none() && (wave.progress.halted.is_some() || wave.is_finished())
}

/// Checks every rule against the wave as it is now.
fn check(wave: &Wave, started_at_stage: &BTreeMap<usize, usize>) {
    let running: Vec<usize> = (0..wave.members.len())
        .filter(|&m| wave.states[m] == HostState::Running)
        .collect();
    assert!(
        running.len() <= wave.policy.max_parallel.max(1) as usize,
        "max parallel broken"
    );
    let disrupting: Vec<usize> = (0..wave.members.len())
        .filter(|&m| {
            matches!(
                wave.states[m],
                HostState::Running | HostState::Done(Outcome::Failed)
            )
        })
        .collect();
    for budget in &wave.policy.budgets {
        let mut in_flight: BTreeMap<&str, usize> = BTreeMap::new();
        for &m in &disrupting {
            if let Some(v) = wave.members[m].labels.get(&budget.label) {
                *in_flight.entry(v).or_default() += 1;
            }
        }
        for (value, count) in in_flight {
            let population = wave
                .members
                .iter()
                .filter(|x| x.labels.get(&budget.label).map(String::as_str) == Some(value))
                .count();
            assert!(
                count <= budget.limit.of(population),
                "budget {}={:?} broken for {value}: {count}",
                budget.label,
                budget.limit
            );
        }
    }
    for &m in &running {
        assert_eq!(
            wave.stage_of[m], wave.progress.current_stage,
            "a host runs outside the current stage"
        );
    }
    for (&m, &stage) in started_at_stage {
        assert_eq!(wave.stage_of[m], stage);
    }
}

#[test]
fn no_rule_is_ever_broken_and_every_host_ends_in_one_final_state() {
    use super::calendar::{Calendar, Window};
    // How often the interesting cases happened, so the test is not vacuous.
    let (mut halts, mut budget_waits, mut restarts, mut never_started) = (0, 0, 0, 0);
    let (mut window_waits, mut soak_waits, mut approvals, mut held) = (0, 0, 0, 0);
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let hosts = rng.gen_range(1..150);
        let apps = rng.gen_range(1..12);
        let hypervisors = rng.gen_range(1..20);
        let members: Vec<Member> = (0..hosts)
            .map(|i| Member {
                canary: rng.gen_bool(0.03),
                ..member(
                    &format!("h{i:03}"),
                    &format!("app{}", rng.gen_range(0..apps)),
                    ["dc1", "dc2"][rng.gen_range(0..2)],
                    &format!("hv{}", rng.gen_range(0..hypervisors)),
                    rng.gen_bool(0.2),
                )
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
                    limit: limit(&mut rng),
                });
            }
        }
        let policy = Policy {
            canary: rng.gen_range(0..4),
            batches: (0..rng.gen_range(1..5)).map(|_| limit(&mut rng)).collect(),
            max_parallel: rng.gen_range(1..25),
            budgets,
            stage_errors: limit(&mut rng),
            total_errors: limit(&mut rng),
            soak_ms: if rng.gen_bool(0.5) {
                rng.gen_range(0..4 * 60) * MIN
            } else {
                0
            },
            approve_stages: rng.gen_bool(0.3),
        };
        // A daily window in half of the waves; each host's expected duration.
        let daily = rng.gen_bool(0.5).then(|| {
            let start_min = rng.gen_range(0..24) * 60;
            let end_min = (start_min + rng.gen_range(2..12) * 60) % (24 * 60);
            Daily { start_min, end_min }
        });
        let calendar = Calendar {
            windows: daily
                .iter()
                .map(|d| {
                    format!(
                        "{:02}:{:02}-{:02}:{:02} UTC",
                        d.start_min / 60,
                        d.start_min % 60,
                        d.end_min / 60,
                        d.end_min % 60
                    )
                    .parse::<Window>()
                    .expect("window")
                })
                .collect(),
            freezes: vec![],
        };
        let expected: Vec<i64> = (0..hosts).map(|_| rng.gen_range(5..90) * MIN).collect();
        let mut wave = Wave::plan(policy, members);
        let mut started: BTreeMap<usize, usize> = BTreeMap::new();
        let mut stage_done_at: BTreeMap<usize, i64> = BTreeMap::new();
        let mut now: i64 = 1_795_000_000_000 + rng.gen_range(0..DAY);
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 20_000, "seed {seed}: the wave never settles");
            let gate = |m: usize| calendar.closed(now, expected[m]);
            let was_halted = wave.progress.halted.is_some() || wave.progress.paused;
            for m in wave.dispatch(now, &gate) {
                assert!(
                    !was_halted,
                    "seed {seed}: a host started while halted or paused"
                );
                assert!(
                    started.insert(m, wave.stage_of[m]).is_none(),
                    "seed {seed}: host {m} started twice"
                );
                if let Some(d) = &daily {
                    assert!(
                        d.fits(now, expected[m]),
                        "seed {seed}: started outside its window"
                    );
                }
                // Every earlier stage is finished, soaked and approved.
                let stage = wave.stage_of[m];
                for earlier in 0..stage {
                    assert!(
                        wave.stages[earlier]
                            .iter()
                            .all(|&e| matches!(wave.states[e], HostState::Done(_))),
                        "seed {seed}: stage order broken"
                    );
                }
                if stage > 0 {
                    if let Some(done) = stage_done_at.get(&(stage - 1)) {
                        assert!(
                            now >= done + wave.policy.soak_ms,
                            "seed {seed}: soak cut short"
                        );
                    }
                    if wave.policy.approve_stages {
                        assert!(
                            wave.progress.approved_stage >= stage,
                            "seed {seed}: not approved"
                        );
                    }
                }
            }
            check(&wave, &started);
            for m in 0..wave.members.len() {
                match wave.why(m, now, &gate) {
                    Some(Wait::Budget { .. }) => budget_waits += 1,
                    Some(Wait::Closed(_)) => window_waits += 1,
                    Some(Wait::Soak { .. }) => soak_waits += 1,
                    _ => {}
                }
            }
            // Finish some of those in flight.
            let running: Vec<usize> = wave.running().collect();
            for m in running {
                if rng.gen_bool(0.5) {
                    let outcome = match rng.gen_range(0..100) {
                        0..75 => Outcome::Succeeded,
                        75..83 => Outcome::RolledBack,
                        83..88 => Outcome::Failed,
                        88..92 => Outcome::Blocked,
                        92..95 => Outcome::Aborted,
                        _ => Outcome::Unreachable,
                    };
                    wave.finish(m, outcome, now);
                    let stage = wave.stage_of[m];
                    if wave.stages[stage]
                        .iter()
                        .all(|&e| matches!(wave.states[e], HostState::Done(_)))
                    {
                        stage_done_at.insert(stage, now);
                    }
                }
            }
            check(&wave, &started);
            // An operator rolls back some held hosts; approves; pauses.
            for m in 0..wave.members.len() {
                if wave.states[m] == HostState::Done(Outcome::Failed) && rng.gen_bool(0.3) {
                    held += 1;
                    wave.amend(m, Outcome::RolledBack);
                }
            }
            if wave.policy.approve_stages && rng.gen_bool(0.3) && wave.approve() {
                approvals += 1;
            }
            if rng.gen_bool(0.05) {
                wave.pause();
            } else if wave.progress.paused && rng.gen_bool(0.5) {
                wave.resume();
            }
            // A coordinator restart: the persisted wave read back.
            if rng.gen_bool(0.1) {
                restarts += 1;
                let saved = serde_json::to_string(&wave).expect("serialises");
                let back: Wave = serde_json::from_str(&saved).expect("reads back");
                assert_eq!(back, wave);
                wave = back;
            }
            now += rng.gen_range(0..120) * MIN;
            if is_settled(&wave) {
                if wave.progress.halted.is_some() {
                    halts += 1;
                }
                if wave.progress.halted.is_some() && rng.gen_bool(0.5) {
                    wave.resume();
                    continue;
                }
                if wave.progress.halted.is_some() {
                    break;
                }
            }
            if wave.is_finished() {
                break;
            }
            if wave.progress.paused || wave.policy.approve_stages {
                // Keep operators from stalling a wave for ever.
                if rng.gen_bool(0.2) {
                    wave.resume();
                    wave.approve();
                }
            }
        }
        wave.close();
        for (m, state) in wave.states.iter().enumerate() {
            match state {
                HostState::Done(Outcome::NotStarted) => {
                    never_started += 1;
                    assert!(
                        !started.contains_key(&m),
                        "seed {seed}: started but marked not started"
                    );
                    assert!(
                        wave.progress.halted.is_some(),
                        "seed {seed}: a host never started without a halt"
                    );
                }
                HostState::Done(_) => assert!(
                    started.contains_key(&m),
                    "seed {seed}: finished without starting"
                ),
                other => panic!("seed {seed}: host {m} ended {other:?}"),
            }
        }
        let distinct: BTreeSet<usize> = started.keys().copied().collect();
        assert_eq!(distinct.len(), started.len());
    }
    for (what, count, least) in [
        ("halts", halts, 50),
        ("rounds with a budget wait", budget_waits, 500),
        ("restarts", restarts, 500),
        ("hosts left by a halt", never_started, 100),
        ("window waits", window_waits, 500),
        ("soak waits", soak_waits, 100),
        ("approvals", approvals, 50),
        ("held hosts rolled back", held, 20),
    ] {
        assert!(count > least, "only {count} {what}");
    }
}
