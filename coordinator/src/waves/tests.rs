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
    }
}

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
    assert_eq!(wave.dispatch(), vec![0]);
    let wait = wave.why(1).expect("waits");
    assert_eq!(
        wait.to_string(),
        "the budget app=1 is full for app billing, held by a1"
    );
    wave.finish(0, Outcome::Failed);
    assert_eq!(wave.dispatch(), vec![1]);
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
    assert_eq!(wave.dispatch(), vec![0, 1]);
    wave.finish(0, Outcome::Blocked);
    wave.finish(1, Outcome::Unreachable);
    assert!(
        wave.halted.is_none(),
        "blocked and unreachable hosts are not failures"
    );
    let next = wave.dispatch();
    assert_eq!(next.len(), 1);
    wave.finish(next[0], Outcome::RolledBack);
    assert!(
        wave.halted
            .as_deref()
            .is_some_and(|r| r.contains("over its error budget of 0"))
    );
    assert!(wave.dispatch().is_empty());
    assert!(matches!(wave.why(5), Some(Wait::Halted(_))));
    wave.resume();
    assert!(!wave.dispatch().is_empty());
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
    for budget in &wave.policy.budgets {
        let mut in_flight: BTreeMap<&str, usize> = BTreeMap::new();
        for &m in &running {
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
            wave.stage_of[m], wave.current_stage,
            "a host runs outside the current stage"
        );
    }
    for (&m, &stage) in started_at_stage {
        assert_eq!(wave.stage_of[m], stage);
    }
}

#[test]
fn no_rule_is_ever_broken_and_every_host_ends_in_one_final_state() {
    // How often the interesting cases happened, so the test is not vacuous.
    let (mut halts, mut budget_waits, mut restarts, mut never_started) = (0, 0, 0, 0);
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let hosts = rng.gen_range(1..150);
        let apps = rng.gen_range(1..12);
        let hypervisors = rng.gen_range(1..20);
        let members: Vec<Member> = (0..hosts)
            .map(|i| {
                member(
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
        };
        let mut wave = Wave::plan(policy, members);
        let mut started: BTreeMap<usize, usize> = BTreeMap::new();
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 10_000, "seed {seed}: the wave never settles");
            let was_halted = wave.halted.is_some();
            for m in wave.dispatch() {
                assert!(!was_halted, "seed {seed}: a host started while halted");
                assert!(
                    started.insert(m, wave.stage_of[m]).is_none(),
                    "seed {seed}: host {m} started twice"
                );
                // Every earlier stage is finished when a host starts.
                for earlier in 0..wave.stage_of[m] {
                    assert!(
                        wave.stages[earlier]
                            .iter()
                            .all(|&e| matches!(wave.states[e], HostState::Done(_))),
                        "seed {seed}: stage order broken"
                    );
                }
            }
            check(&wave, &started);
            if (0..wave.members.len()).any(|m| matches!(wave.why(m), Some(Wait::Budget { .. }))) {
                budget_waits += 1;
            }
            // Finish some of those in flight.
            let running: Vec<usize> = (0..wave.members.len())
                .filter(|&m| wave.states[m] == HostState::Running)
                .collect();
            for m in running {
                if rng.gen_bool(0.5) {
                    let outcome = match rng.gen_range(0..100) {
                        0..75 => Outcome::Succeeded,
                        75..83 => Outcome::RolledBack,
                        83..88 => Outcome::Failed,
                        88..94 => Outcome::Blocked,
                        _ => Outcome::Unreachable,
                    };
                    wave.finish(m, outcome);
                }
            }
            check(&wave, &started);
            // A coordinator restart: the persisted wave read back.
            if rng.gen_bool(0.1) {
                restarts += 1;
                let saved = serde_json::to_string(&wave).expect("serialises");
                wave = serde_json::from_str(&saved).expect("reads back");
            }
            if wave.is_settled() {
                if wave.halted.is_some() {
                    halts += 1;
                }
                if wave.halted.is_some() && rng.gen_bool(0.5) {
                    wave.resume();
                    continue;
                }
                break;
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
                        wave.halted.is_some(),
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
    assert!(halts > 50, "only {halts} halts");
    assert!(
        budget_waits > 500,
        "only {budget_waits} rounds with a budget wait"
    );
    assert!(restarts > 500, "only {restarts} restarts");
    assert!(
        never_started > 100,
        "only {never_started} hosts left by a halt"
    );
}
