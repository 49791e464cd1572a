//! The scheduler's rules on exact cases. The property test that drives it at
//! random, with restarts through the store, is the coordinator's
//! (`inventory/waves/property_tests.rs`).

use std::collections::BTreeMap;

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
