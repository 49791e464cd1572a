//! The rules that depend on time, tested at task level with a manual clock:
//! the reboot timeout (also after a restart and during a rollback), the
//! unreachable rule (counted from the coordinator's start at the earliest),
//! soak between stages, maintenance windows and the expected duration that
//! must fit in them, and the hour a pre-check waits for an absent host.
//! Nothing here sleeps: the test moves the clock and asks the task to tick.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{Fixture, enroll, facts, job_of, ok, recv, session_with_commands, update};
use super::*;
use crate::clock::{Clock, ManualClock};
use mf_core::command::CommandPhase;
use mf_core::job::{JobPhase, JobState, OnFailure};
use mf_core::selector::Selector;
use mf_core::wave::spec::SpecInput;

/// 2026-11-02T12:00:00Z, a Monday.
const MONDAY_NOON: i64 = 1_793_620_800_000;
/// 2026-11-02T22:30:00Z.
const MONDAY_2230: i64 = 1_793_658_600_000;
const MINUTE: Duration = Duration::from_secs(60);

fn settings(clock: &ManualClock) -> Settings {
    Settings {
        reboot_timeout: Duration::from_secs(4 * 3600),
        clock: Arc::new(clock.clone()),
        ..Settings::default()
    }
}

/// An enrolled RHEL 7.9 host with an open session: its session id and queue.
async fn connect(
    inventory: &Inventory,
    host: &str,
    serial: &str,
    app: &str,
) -> (SessionId, mpsc::Receiver<Box<AgentCommand>>) {
    enroll(inventory, host, serial).await;
    let (s, _, rx) = session_with_commands(host, serial, facts("rhel", "7.9", app), 0);
    let id = inventory.connect(s).await.expect("connect");
    (id, rx)
}

#[tokio::test]
async fn a_reboot_with_no_outcome_is_held_when_the_clock_passes_the_timeout_even_across_a_restart()
{
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    {
        let (inventory, task, _) = fixture.start_with(settings(&clock));
        let (session, mut rx) = connect(&inventory, "r7", "01", "a").await;
        inventory
            .migrate(NewJob {
                host_id: "r7".into(),
                target: "rhel-8.10".parse().expect("target"),
                on_failure: OnFailure::Rollback,
                requested_by: "test".into(),
            })
            .await
            .expect("migrate");
        for _ in 0..3 {
            let command = recv(&mut rx).await;
            inventory.command_update("r7".into(), ok(&command)).await;
        }
        assert_eq!(recv(&mut rx).await.phase, CommandPhase::Reboot);
        // The machine goes down and never comes back.
        inventory.disconnect("r7".into(), session).await;
        clock.advance(4 * 60 * MINUTE - MINUTE);
        inventory.tick().await.expect("tick");
        let job = job_of(&inventory, "r7").await;
        assert_eq!(
            (job.phase, job.state),
            (JobPhase::Reboot, JobState::Running)
        );
        drop(inventory);
        task.await.expect("inventory ends");
    }
    // The coordinator restarts a minute before the limit: the timeout counts
    // from the reboot, not from the restart.
    let (inventory, _task, metrics) = fixture.start_with(settings(&clock));
    inventory.tick().await.expect("tick");
    assert_eq!(job_of(&inventory, "r7").await.state, JobState::Running);
    clock.advance(2 * MINUTE);
    inventory.tick().await.expect("tick");
    let job = job_of(&inventory, "r7").await;
    assert_eq!((job.phase, job.state), (JobPhase::Reboot, JobState::Held));
    assert!(
        job.timeline.iter().any(|t| t.text.contains("4h")),
        "the timeline says after how long: {:#?}",
        job.timeline
    );
    assert_eq!(metrics.jobs.with_label_values(&["held"]).get(), 1);
}

#[tokio::test]
async fn a_rollback_reboot_with_no_outcome_is_held_too() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let (session, mut rx) = connect(&inventory, "r7", "01", "a").await;
    inventory
        .migrate(NewJob {
            host_id: "r7".into(),
            target: "rhel-8.10".parse().expect("target"),
            on_failure: OnFailure::Rollback,
            requested_by: "test".into(),
        })
        .await
        .expect("migrate");
    for _ in 0..2 {
        let command = recv(&mut rx).await;
        inventory.command_update("r7".into(), ok(&command)).await;
    }
    let execute = recv(&mut rx).await;
    assert!(matches!(execute.phase, CommandPhase::Execute(_)));
    inventory
        .command_update("r7".into(), update(&execute, UpdateState::Failed, vec![]))
        .await;
    assert_eq!(recv(&mut rx).await.phase, CommandPhase::Rollback);
    inventory.disconnect("r7".into(), session).await;
    clock.advance(3 * 60 * MINUTE);
    inventory.tick().await.expect("tick");
    assert_eq!(job_of(&inventory, "r7").await.state, JobState::Running);
    clock.advance(61 * MINUTE);
    inventory.tick().await.expect("tick");
    let job = job_of(&inventory, "r7").await;
    assert_eq!((job.phase, job.state), (JobPhase::Rollback, JobState::Held));
}

/// Plans wave "w" over the RHEL hosts to RHEL 8.10 with `input`'s policy
/// (one batch after the canary unless it says otherwise).
async fn create(inventory: &Inventory, input: SpecInput, mode: CreateMode) -> PlanView {
    let batches = if input.batches.is_empty() {
        "100%".into()
    } else {
        input.batches.clone()
    };
    let spec = SpecInput {
        name: "w".into(),
        selector: "os=rhel".into(),
        target: "rhel-8.10".into(),
        batches,
        ..input
    }
    .check()
    .expect("spec");
    inventory.create_wave(spec, mode).await.expect("created")
}

async fn start(inventory: &Inventory) {
    inventory
        .wave_action("w".into(), WaveAction::Start)
        .await
        .expect("start");
}

/// Two RHEL 7.9 hosts of two applications with a passed pre-check.
async fn two_ready_hosts(
    inventory: &Inventory,
) -> [(SessionId, mpsc::Receiver<Box<AgentCommand>>); 2] {
    let mut a = connect(inventory, "a1", "01", "a").await;
    let mut b = connect(inventory, "b1", "02", "b").await;
    inventory
        .precheck(Selector::default(), "rhel-8.10".parse().expect("target"))
        .await
        .expect("precheck");
    for (host, (_, rx)) in [("a1", &mut a), ("b1", &mut b)] {
        let command = recv(rx).await;
        inventory.command_update(host.into(), ok(&command)).await;
    }
    [a, b]
}

async fn why(inventory: &Inventory, host: &str) -> WhyView {
    inventory
        .wave_why("w".into(), host.into())
        .await
        .expect("why")
}

#[tokio::test]
async fn a_host_away_is_given_up_after_ten_minutes_counted_from_the_restart_at_the_earliest() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    {
        let (inventory, task, _) = fixture.start_with(settings(&clock));
        let [(_, mut a), (b_session, _b)] = two_ready_hosts(&inventory).await;
        create(&inventory, SpecInput::default(), CreateMode::Record).await;
        inventory.disconnect("b1".into(), b_session).await;
        start(&inventory).await;
        // The canary a1 runs to its end; then it is b1's turn, and b1 is away.
        super::tests::run_job(&inventory, "a1", &mut a).await;
        inventory.tick().await.expect("tick");
        let waiting = why(&inventory, "b1").await;
        assert_eq!(
            waiting.state,
            mf_core::wave::status::HostStatus::Pending,
            "{waiting:?}"
        );
        assert!(waiting.reason.contains("not connected"), "{waiting:?}");
        clock.advance(9 * MINUTE);
        inventory.tick().await.expect("tick");
        assert_eq!(
            why(&inventory, "b1").await.state,
            mf_core::wave::status::HostStatus::Pending
        );
        drop(inventory);
        task.await.expect("inventory ends");
    }
    // Eleven minutes after b1 left, but two after the restart: agents need a
    // moment to come back, so nobody is given up yet.
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    clock.advance(2 * MINUTE);
    inventory.tick().await.expect("tick");
    assert_eq!(
        why(&inventory, "b1").await.state,
        mf_core::wave::status::HostStatus::Pending
    );
    clock.advance(9 * MINUTE);
    inventory.tick().await.expect("tick");
    let gone = why(&inventory, "b1").await;
    assert_eq!(
        gone.state,
        mf_core::wave::status::HostStatus::Unreachable,
        "{gone:?}"
    );
    let status = inventory.wave_status("w".into()).await.expect("status");
    assert!(
        status
            .problems
            .iter()
            .any(|(host, _, detail)| host == "b1" && detail.contains("not connected for 10m")),
        "{:?}",
        status.problems
    );
}

#[tokio::test]
async fn the_next_stage_waits_for_its_soak_by_the_clock() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let [(_, mut a), (_, mut b)] = two_ready_hosts(&inventory).await;
    create(
        &inventory,
        SpecInput {
            canary: "1".into(),
            soak_seconds: 3600,
            ..Default::default()
        },
        CreateMode::Record,
    )
    .await;
    start(&inventory).await;
    super::tests::run_job(&inventory, "a1", &mut a).await;
    inventory.tick().await.expect("tick");
    assert!(b.try_recv().is_err(), "b1 must wait for the canary's soak");
    let waiting = why(&inventory, "b1").await;
    assert!(waiting.reason.contains("soak"), "{waiting:?}");
    clock.advance(59 * MINUTE);
    inventory.tick().await.expect("tick");
    assert!(b.try_recv().is_err(), "the soak lasts an hour");
    clock.advance(2 * MINUTE);
    inventory.tick().await.expect("tick");
    assert!(
        matches!(recv(&mut b).await.phase, CommandPhase::Precheck(_)),
        "after the soak b1 starts with its pre-check"
    );
}

#[tokio::test]
async fn a_wave_starts_nobody_outside_its_window_and_starts_when_the_clock_enters_it() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let [(_, mut a), (_, mut b)] = two_ready_hosts(&inventory).await;
    create(
        &inventory,
        SpecInput {
            windows: vec!["22:00-06:00 UTC".into()],
            ..Default::default()
        },
        CreateMode::Record,
    )
    .await;
    start(&inventory).await;
    inventory.tick().await.expect("tick");
    assert!(
        a.try_recv().is_err() && b.try_recv().is_err(),
        "closed at noon"
    );
    let waiting = why(&inventory, "a1").await;
    assert!(waiting.reason.contains("window"), "{waiting:?}");
    clock.set(MONDAY_2230);
    inventory.tick().await.expect("tick");
    // The canary (a1) starts with its job's own pre-check; b1 waits for it.
    assert!(matches!(
        recv(&mut a).await.phase,
        CommandPhase::Precheck(_)
    ));
    let job = job_of(&inventory, "a1").await;
    assert_eq!(job.created_unix_ms, MONDAY_2230);
}

#[tokio::test]
async fn operators_verbs_are_idempotent_where_safe_and_unknown_hosts_are_not_found() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let [_a, _b] = two_ready_hosts(&inventory).await;
    create(&inventory, SpecInput::default(), CreateMode::Record).await;
    start(&inventory).await;
    for _ in 0..2 {
        let status = inventory
            .wave_action("w".into(), WaveAction::Pause)
            .await
            .expect("pausing a paused wave is no error");
        assert_eq!(status.state, mf_core::wave::status::WaveState::Paused);
    }
    let unknown = inventory.wave_why("w".into(), "no-such-host".into()).await;
    assert!(
        matches!(&unknown, Err(InventoryError::UnknownHost(h)) if h == "no-such-host"),
        "{unknown:?}"
    );
    let no_wave = inventory.wave_why("nope".into(), "a1".into()).await;
    assert!(
        matches!(no_wave, Err(InventoryError::UnknownWave(_))),
        "{no_wave:?}"
    );
}

#[tokio::test]
async fn a_canary_of_zero_plans_no_canary_stage() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let [_a, _b] = two_ready_hosts(&inventory).await;
    let plan = create(
        &inventory,
        SpecInput {
            canary: "0".into(),
            ..Default::default()
        },
        CreateMode::DryRun,
    )
    .await;
    assert!(!plan.has_canary, "no canary stage: {:?}", plan.stages);
    assert_eq!(plan.stages, [vec!["a1".to_string(), "b1".into()]]);
    let with_canary = create(&inventory, SpecInput::default(), CreateMode::DryRun).await;
    assert!(with_canary.has_canary);
    assert_eq!(with_canary.stages.len(), 2);
}

#[tokio::test]
async fn after_a_cancel_hosts_that_never_started_are_not_counted_done() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_NOON);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let [_a, _b] = two_ready_hosts(&inventory).await;
    create(&inventory, SpecInput::default(), CreateMode::Record).await;
    start(&inventory).await;
    let status = inventory
        .wave_action("w".into(), WaveAction::Cancel { rollback: false })
        .await
        .expect("cancel");
    let stage2 = &status.stages[1];
    assert_eq!((stage2.hosts, stage2.done), (1, 0), "b1 never started");
    assert_eq!(
        status
            .counts
            .get(&mf_core::wave::status::HostStatus::NotStarted),
        Some(&1)
    );
}

/// A pre-check asked for while its host is away waits an hour: delivered if
/// the host comes back within it, not after (the command would be stale, and
/// the agent refuses expired ones), when another can be asked for at once.
#[tokio::test]
async fn a_precheck_for_an_absent_host_expires_after_an_hour() {
    let clock = ManualClock::at(MONDAY_NOON);
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let target: mf_core::path::Target = "rhel-8.10".parse().expect("target");
    for (host, serial, away) in [("soon", "01", 59), ("late", "02", 61)] {
        let (session, _rx) = connect(&inventory, host, serial, "a").await;
        inventory.disconnect(host.into(), session).await;
        let selector = Selector::parse(&format!("id={host}")).expect("selector");
        let asked = inventory
            .precheck(selector.clone(), target)
            .await
            .expect("asked");
        assert_eq!((asked.dispatched, asked.queued), (0, 1), "{host}");
        clock.advance(MINUTE * away);
        let (s, _, mut rx) = session_with_commands(host, serial, facts("rhel", "7.9", "a"), 0);
        inventory.connect(s).await.expect("back");
        inventory.get(host.into()).await.expect("sync");
        let delivered = rx.try_recv().ok();
        if away < 60 {
            let command = delivered.expect("delivered within the hour");
            assert!(matches!(command.phase, CommandPhase::Precheck(_)));
            assert!(command.expires_unix_ms > clock.now_unix_ms());
        } else {
            assert!(delivered.is_none(), "an expired pre-check was sent");
            // Not in flight any more: a new one goes out at once.
            let again = inventory.precheck(selector, target).await.expect("asked");
            assert_eq!((again.dispatched, again.queued), (1, 0));
            let command = recv(&mut rx).await;
            assert!(command.expires_unix_ms > clock.now_unix_ms());
        }
    }
}

/// A host starts only if its expected duration fits in what is left of the
/// window: at 23:30 in a 22:00-01:00 window, a 2-hour upgrade waits (and
/// `why` says it would overrun), and it starts when the next night opens.
#[tokio::test]
async fn a_host_whose_expected_duration_would_overrun_the_window_waits_for_the_next() {
    let fixture = Fixture::new();
    let clock = ManualClock::at(MONDAY_2230 + 60 * 60 * 1000);
    let (inventory, _task, _) = fixture.start_with(settings(&clock));
    let [(_, mut a), (_, _b)] = two_ready_hosts(&inventory).await;
    create(
        &inventory,
        SpecInput {
            windows: vec!["22:00-01:00 UTC".into()],
            expected_seconds: 2 * 3600,
            ..Default::default()
        },
        CreateMode::Record,
    )
    .await;
    start(&inventory).await;
    inventory.tick().await.expect("tick");
    assert!(a.try_recv().is_err(), "started though it would overrun");
    let waiting = why(&inventory, "a1").await;
    assert!(
        waiting.reason.contains("would overrun the window"),
        "{waiting:?}"
    );
    // Tuesday 21:59: still closed; 22:00: two hours fit before 01:00.
    clock.advance(MINUTE * (22 * 60 + 29));
    inventory.tick().await.expect("tick");
    assert!(a.try_recv().is_err(), "started before the window");
    clock.advance(MINUTE);
    inventory.tick().await.expect("tick");
    assert!(matches!(
        recv(&mut a).await.phase,
        CommandPhase::Precheck(_)
    ));
    let job = job_of(&inventory, "a1").await;
    assert_eq!(
        job.created_unix_ms,
        MONDAY_2230 - 30 * 60 * 1000 + 24 * 3600 * 1000
    );
}
