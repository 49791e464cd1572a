//! The scheduler's rules on exact cases. The property test that drives it at
//! random, with restarts through the store, is the coordinator's
//! (`inventory/waves/property_tests/`).

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

/// A wave of `n` hosts of one application: a canary of `canary` hosts, then
/// batches of `batch`, at most `max_parallel` at once.
fn wave_of(n: usize, canary: u32, batch: Limit, max_parallel: u32) -> Wave {
    Wave::plan(
        Policy {
            batches: vec![batch],
            ..policy(canary, max_parallel, vec![])
        },
        hosts(n),
    )
}

fn hosts(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| member(&format!("h{i}"), "a", "dc1", "hv", false))
        .collect()
}

#[test]
fn limits_read_and_show_as_written() {
    for text in ["5", "25%", "100%"] {
        let limit: Limit = text.parse().expect(text);
        assert_eq!(limit.to_string(), text);
    }
    for bad in ["0%", "101%", "-1", "five", "5 %"] {
        assert!(bad.parse::<Limit>().is_err(), "{bad}");
    }
    assert_eq!(Limit::Percent(25).of(10), 3, "rounded up");
    assert_eq!(Limit::Percent(1).of(10), 1, "at least one");
}

#[test]
fn a_percentage_budget_is_of_the_hosts_sharing_the_value() {
    // 10 hosts of app a, 2 of app b; 20% of each may be disrupted at once.
    let mut members = hosts(10);
    members.extend((0..2).map(|i| member(&format!("b{i}"), "b", "dc1", "hv", false)));
    let budget = Budget {
        label: "app".into(),
        limit: Limit::Percent(20),
    };
    let mut wave = Wave::plan(
        Policy {
            batches: vec![Limit::Percent(100)],
            ..policy(0, 12, vec![budget])
        },
        members,
    );
    let started = wave.dispatch(0, OPEN);
    let apps: Vec<&str> = started
        .iter()
        .map(|&m| wave.members[m].labels["app"].as_str())
        .collect();
    assert_eq!(
        apps,
        ["a", "a", "b"],
        "2 of 10, and 1 of 2 (20% rounded up)"
    );
    assert_eq!(wave.running().collect::<Vec<_>>(), started);
    assert_eq!(wave.budget_use(), vec![("app".to_string(), 3, 2)]);
}

#[test]
fn a_wave_equals_another_only_if_every_part_does() {
    let wave = Wave::plan(policy(1, 2, vec![]), hosts(4));
    let mut loaded = wave.clone();
    loaded.dispatch(0, &|_| Some("closed".into()));
    assert_eq!(
        loaded, wave,
        "the load built for a dispatch is not part of it"
    );
    type Change = fn(&mut Wave);
    let changes: [(&str, Change); 6] = [
        ("policy", |w| w.policy.max_parallel = 3),
        ("members", |w| w.members[0].concerns = true),
        ("stage_of", |w| w.stage_of[0] = 1),
        ("stages", |w| w.stages[0].push(1)),
        ("states", |w| w.states[0] = HostState::Running),
        ("progress", |w| w.progress.paused = true),
    ];
    for (part, change) in changes {
        let mut other = wave.clone();
        change(&mut other);
        assert_ne!(other, wave, "{part}");
    }
}

#[test]
fn a_canary_is_a_count_or_hosts_marked_and_zero_means_none() {
    let none = Wave::plan(policy(0, 2, vec![]), hosts(4));
    assert!(!none.has_canary());
    assert!(
        none.stages.iter().all(|s| !s.is_empty()),
        "no empty canary stage: {:?}",
        none.stages
    );
    assert_eq!(none.stages[0].len(), 1, "the first batch");
    assert!(Wave::plan(policy(1, 2, vec![]), hosts(4)).has_canary());
    let mut marked = hosts(4);
    marked[2].canary = true;
    let wave = Wave::plan(policy(0, 2, vec![]), marked);
    assert!(wave.has_canary());
    assert_eq!(wave.stages[0], vec![2]);
}

#[test]
fn a_wave_read_back_from_parts_that_do_not_fit_is_refused() {
    let wave = Wave::plan(policy(1, 2, vec![]), hosts(3));
    let restore = |stages: Vec<Vec<usize>>, states: Vec<HostState>, current: usize| {
        Wave::restore(
            wave.policy.clone(),
            wave.members.clone(),
            stages,
            states,
            Progress {
                current_stage: current,
                ..Progress::default()
            },
        )
    };
    let pending = vec![HostState::Pending; 3];
    let back = restore(wave.stages.clone(), pending.clone(), 1).expect("fits");
    assert_eq!(back.stage_of, wave.stage_of);
    for (stages, states, current, why) in [
        (
            vec![vec![0], vec![1]],
            pending.clone(),
            0,
            "cover every host",
        ),
        (
            vec![vec![0], vec![1, 2]],
            vec![HostState::Pending; 2],
            0,
            "cover every host",
        ),
        (
            vec![vec![0], vec![1, 2]],
            pending.clone(),
            2,
            "past the last",
        ),
        (
            vec![vec![0], vec![1, 7]],
            pending.clone(),
            0,
            "names host 7 of 3",
        ),
    ] {
        let error = restore(stages, states, current).expect_err(why);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn a_host_of_an_earlier_stage_retried_starts_first_in_the_current_one() {
    let mut wave = wave_of(5, 1, Limit::Count(2), 1);
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    wave.finish(0, Outcome::RolledBack, 1);
    assert_eq!(wave.dispatch(2, OPEN), vec![1], "stage 2 begins");
    wave.retry(0).expect("retry");
    wave.finish(1, Outcome::Succeeded, 3);
    assert_eq!(wave.dispatch(4, OPEN), vec![0], "the retried host first");
    assert_eq!(wave.progress.current_stage, 1);
    wave.finish(0, Outcome::Succeeded, 5);
    assert_eq!(wave.dispatch(6, OPEN), vec![2]);
}

#[test]
fn operators_actions_on_hosts_follow_their_states() {
    let mut wave = wave_of(5, 1, Limit::Count(2), 5);
    // Stage 0: h0; stage 1: h1, h2; stage 2: h3, h4.
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    assert!(
        wave.end_pending(1, Outcome::Failed, 0).is_err(),
        "a failure is not how a host that never ran ends"
    );
    assert!(
        wave.end_pending(0, Outcome::Unreachable, 0).is_err(),
        "it runs"
    );
    wave.finish(0, Outcome::Failed, 1);
    assert_eq!(wave.states[0], HostState::Done(Outcome::Failed));
    // A held job an operator resumes is in flight again.
    wave.rerun(0);
    assert_eq!(wave.running().collect::<Vec<_>>(), vec![0]);
    wave.finish(0, Outcome::Succeeded, 2);
    assert_eq!(wave.dispatch(3, OPEN), vec![1, 2]);
    wave.finish(1, Outcome::Succeeded, 4);
    wave.finish(2, Outcome::RolledBack, 4);
    assert_eq!(wave.progress.stage_done_unix_ms, Some(4));
    // Retrying a host of the current stage reopens it; the wave waits for it.
    wave.retry(2).expect("retry");
    assert_eq!(wave.progress.stage_done_unix_ms, None);
    assert!(
        wave.progress.retried.is_empty(),
        "it starts in its own stage"
    );
    // A later stage's host skipped, then put back: it keeps its stage.
    wave.skip(4, 5).expect("skip");
    wave.retry(4).expect("put back");
    assert!(wave.progress.retried.is_empty());
    assert_eq!(wave.dispatch(6, OPEN), vec![2]);
    assert_eq!(
        wave.counts(),
        BTreeMap::from([("pending", 2), ("running", 1), ("succeeded", 2)])
    );
    wave.close();
    assert_eq!(
        wave.counts(),
        BTreeMap::from([("not-started", 2), ("running", 1), ("succeeded", 2)])
    );
}

#[test]
fn approval_and_stages_stop_at_the_last_stage() {
    let mut wave = Wave::plan(
        Policy {
            batches: vec![Limit::Percent(100)],
            approve_stages: true,
            ..policy(1, 5, vec![])
        },
        hosts(3),
    );
    assert_eq!(wave.stages.len(), 2);
    assert!(wave.approve(), "stage 2 waits for approval");
    assert!(!wave.approve(), "approved already");
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    wave.finish(0, Outcome::Succeeded, 1);
    assert_eq!(wave.dispatch(2, OPEN), vec![1, 2]);
    assert!(!wave.approve(), "no stage after the last");
    wave.finish(1, Outcome::Succeeded, 3);
    wave.finish(2, Outcome::Succeeded, 3);
    wave.dispatch(4, OPEN);
    assert_eq!(wave.progress.current_stage, 1, "never past the last stage");
    assert!(wave.is_finished());
}

#[test]
fn a_resume_forgives_only_the_stages_that_failed() {
    let mut wave = Wave::plan(
        Policy {
            batches: vec![Limit::Percent(100)],
            stage_errors: Limit::Count(0),
            ..policy(1, 5, vec![])
        },
        hosts(3),
    );
    wave.dispatch(0, OPEN);
    wave.finish(0, Outcome::Succeeded, 1);
    wave.dispatch(2, OPEN);
    wave.finish(1, Outcome::Failed, 3);
    assert!(wave.progress.halted.is_some());
    wave.resume();
    assert_eq!(wave.progress.forgiven, 1);
    assert_eq!(wave.progress.forgiven_in_stage, BTreeMap::from([(1, 1)]));
}

#[test]
fn budget_use_counts_disrupted_hosts_and_the_values_that_are_full() {
    // app a: 3 hosts, at most 2 at once; app b: 3 hosts, 1 running.
    let mut members = hosts(3);
    members.extend((0..3).map(|i| member(&format!("b{i}"), "b", "dc1", "hv", false)));
    let mut wave = Wave::plan(
        Policy {
            batches: vec![Limit::Percent(100)],
            ..policy(
                0,
                3,
                vec![Budget {
                    label: "app".into(),
                    limit: Limit::Count(2),
                }],
            )
        },
        members,
    );
    assert_eq!(wave.budget_use(), vec![("app".to_string(), 0, 0)]);
    assert_eq!(wave.dispatch(0, OPEN).len(), 3);
    // a: 2 of 2 (full); b: 1 of 2 (not full).
    assert_eq!(wave.budget_use(), vec![("app".to_string(), 3, 1)]);
}

#[test]
fn a_retried_host_and_its_new_stage_start_together_and_the_stage_stays_open() {
    let mut wave = wave_of(4, 1, Limit::Count(3), 4);
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    wave.finish(0, Outcome::RolledBack, 1);
    assert_eq!(wave.dispatch(2, OPEN), vec![1, 2, 3]);
    wave.finish(1, Outcome::Succeeded, 3);
    wave.retry(0).expect("retry");
    assert_eq!(wave.dispatch(4, OPEN), vec![0]);
    // The retried host of stage 1 ends; stage 2 is still running.
    wave.finish(0, Outcome::Succeeded, 5);
    assert_eq!(wave.progress.stage_done_unix_ms, None);
    wave.finish(2, Outcome::Succeeded, 6);
    wave.finish(3, Outcome::Succeeded, 7);
    assert_eq!(wave.progress.stage_done_unix_ms, Some(7));

    // Two retried at once with the rest of a stage.
    let mut wave = wave_of(4, 2, Limit::Count(2), 4);
    assert_eq!(wave.dispatch(0, OPEN), vec![0, 1]);
    wave.finish(0, Outcome::RolledBack, 1);
    wave.finish(1, Outcome::Aborted, 1);
    assert_eq!(wave.dispatch(2, OPEN), vec![2, 3]);
    wave.finish(2, Outcome::Succeeded, 3);
    wave.retry(1).expect("retry");
    wave.retry(0).expect("retry");
    assert_eq!(
        wave.dispatch(4, OPEN),
        vec![1, 0],
        "in the order they were retried"
    );
}

#[test]
fn a_finished_wave_stays_on_its_last_stage() {
    let mut wave = wave_of(3, 1, Limit::Percent(100), 5);
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    wave.finish(0, Outcome::Succeeded, 1);
    assert_eq!(wave.dispatch(2, OPEN), vec![1, 2]);
    wave.finish(1, Outcome::Succeeded, 3);
    wave.finish(2, Outcome::Succeeded, 3);
    assert!(wave.dispatch(4, OPEN).is_empty());
    assert_eq!(wave.progress.current_stage, 1);
    assert!(wave.is_finished());
}

#[test]
fn skipping_the_last_pending_host_ends_the_stage_then_not_before() {
    let mut wave = wave_of(5, 1, Limit::Count(2), 1);
    // Stage 0: h0; stage 1: h1, h2; stage 2: h3, h4.
    assert_eq!(wave.dispatch(0, OPEN), vec![0]);
    wave.finish(0, Outcome::Succeeded, 1);
    assert_eq!(wave.dispatch(2, OPEN), vec![1]);
    // All of the later stage skipped: the current one is not over.
    wave.skip(3, 3).expect("skip");
    wave.skip(4, 3).expect("skip");
    assert_eq!(wave.progress.stage_done_unix_ms, None);
    wave.finish(1, Outcome::Succeeded, 4);
    assert_eq!(wave.progress.stage_done_unix_ms, None, "h2 is pending");
    wave.skip(2, 5).expect("skip");
    assert_eq!(wave.progress.stage_done_unix_ms, Some(5));
    assert!(wave.is_finished());
}
