//! Whole migration steps on an emulated host, phase by phase, with the state
//! each leaves threaded through as the executor does.

use std::collections::BTreeMap;

use mf_agent::command::{CommandPhase, Step, Tool, UpdateState};
use mf_agent::facts;
use mf_agent::host::Host;
use mf_agent::journal::Running;
use mf_agent::migration::{Migration, SnapshotSet, Stage};
use mf_agent::phases::snapshot::{self, SnapshotConfig};
use mf_agent::phases::{Context, Outcome, PhaseResult, boot_id, recover, run};
use mf_sim::emulated::{Failure, Hook};
use mf_sim::{EmulatedHost, SimHostSpec, SimProfile};

fn host(profile: SimProfile, failures: &[Failure]) -> EmulatedHost {
    EmulatedHost::simulated_with_failures(&SimHostSpec::example(profile), failures)
}

/// Runs the phases in order as the executor would, checking each is allowed.
fn drive(host: &EmulatedHost, phases: &[CommandPhase]) -> (Migration, Vec<Outcome>) {
    let context = Context::default();
    let mut migration = Migration::default();
    let mut outcomes = Vec::new();
    for phase in phases {
        migration
            .allows(phase)
            .unwrap_or_else(|e| panic!("{phase} refused: {e}"));
        let boot = boot_id(host);
        let (outcome, next) = finished(run(host, phase, &migration, &context, boot.as_deref()));
        if let Some(next) = next {
            migration = next;
        }
        let failed = outcome.state != UpdateState::Succeeded;
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    (migration, outcomes)
}

/// Snapshot, execute and reboot of an upgrade to 8.10, each succeeding.
fn upgraded_and_rebooted(host: &EmulatedHost, job_id: &str) -> Migration {
    let (migration, outcomes) = drive(
        host,
        &[
            CommandPhase::Snapshot {
                job_id: job_id.into(),
            },
            CommandPhase::Execute(leapp("8.10")),
            CommandPhase::Reboot,
        ],
    );
    assert!(
        outcomes.iter().all(|o| o.state == UpdateState::Succeeded),
        "{outcomes:#?}"
    );
    migration
}

/// Runs `phase` now with the default configuration, to its end.
fn step(
    host: &EmulatedHost,
    phase: &CommandPhase,
    migration: &Migration,
) -> (Outcome, Option<Migration>) {
    finished(run(
        host,
        phase,
        migration,
        &Context::default(),
        boot_id(host).as_deref(),
    ))
}

fn finished(result: PhaseResult) -> (Outcome, Option<Migration>) {
    match result {
        PhaseResult::Done { outcome, migration } => (outcome, migration),
        other => panic!("the phase did not finish: {other:?}"),
    }
}

fn leapp(target: &str) -> Step {
    Step {
        tool: Tool::Leapp,
        to: mf_core::path::Target::from_version(target).expect("supported"),
    }
}

fn os(host: &EmulatedHost) -> String {
    let os = facts::collect(host, &BTreeMap::new()).os.expect("os");
    format!("{} {}", os.id, os.version)
}

#[test]
fn an_upgrade_goes_snapshot_execute_reboot_verify_commit() {
    let host = host(SimProfile::Rhel79, &[]);
    let (migration, outcomes) = drive(
        &host,
        &[
            CommandPhase::Snapshot {
                job_id: "job1".into(),
            },
            CommandPhase::Execute(leapp("8.10")),
            CommandPhase::Reboot,
            CommandPhase::Verify(leapp("8.10")),
            CommandPhase::Commit,
        ],
    );
    let details: Vec<&str> = outcomes.iter().map(|o| o.detail.as_str()).collect();
    assert!(
        outcomes.iter().all(|o| o.state == UpdateState::Succeeded),
        "{details:#?}"
    );
    assert!(details[0].contains("rhel/root_mf_job1"), "{}", details[0]);
    assert!(
        details[2].starts_with("rebooted (boot id boot-0 -> "),
        "{}",
        details[2]
    );
    assert!(
        details[3].contains("verified: RHEL 8.10 (kernel 4.18.0-553.el8_10.x86_64)"),
        "{}",
        details[3]
    );
    assert_eq!(migration, Migration::default());
    assert_eq!(os(&host), "rhel 8.10");
}

#[test]
fn an_initramfs_failure_keeps_the_host_down_until_the_console_and_then_rolls_back() {
    let host = host(SimProfile::Rhel79, &[Failure::InitramfsFailure]);
    let (migration, outcomes) = drive(
        &host,
        &[
            CommandPhase::Snapshot {
                job_id: "j2".into(),
            },
            CommandPhase::Execute(leapp("8.10")),
        ],
    );
    assert!(outcomes.iter().all(|o| o.state == UpdateState::Succeeded));
    let before = boot_id(&host);
    let reboot = run(
        &host,
        &CommandPhase::Reboot,
        &migration,
        &Context::default(),
        before.as_deref(),
    );
    assert_eq!(reboot, PhaseResult::Rebooting, "it does not come back");
    assert!(host.is_down(), "stopped in the emergency shell");

    // Someone at the console boots the old system once.
    let title = host.console_boot_previous().expect("an old entry");
    assert!(title.contains("3.10.0-1160.125.1.el7"), "{title}");
    let running = Running {
        command_id: "reboot-1".into(),
        sequence: 3,
        phase: CommandPhase::Reboot,
        boot_id: before,
    };
    let (settled, next) = finished(recover(&host, &running, &migration));
    assert_eq!(settled.state, UpdateState::Succeeded, "{}", settled.detail);
    let migration = next.expect("rebooted");

    // A second reboot would run the failed upgrade again: refused.
    let (again, _) = step(&host, &CommandPhase::Reboot, &migration);
    assert_eq!(again.state, UpdateState::Failed);
    assert!(
        again.detail.contains("refused to reboot"),
        "{}",
        again.detail
    );

    let (verify, next) = step(&host, &CommandPhase::Verify(leapp("8.10")), &migration);
    assert_eq!(verify.state, UpdateState::Failed);
    for words in [
        "runs rhel 7.9",
        ".leapp_upgrade_failed is present",
        "still the boot default",
    ] {
        assert!(verify.detail.contains(words), "{words}: {}", verify.detail);
    }
    let migration = next.expect("failed");
    assert_eq!(migration.stage, Stage::Failed);

    let (outcome, next) = step(&host, &CommandPhase::Rollback, &migration);
    assert_eq!(outcome.state, UpdateState::Succeeded, "{}", outcome.detail);
    assert_eq!(next, Some(Migration::default()));
    assert_eq!(os(&host), "rhel 7.9");
    let default = host.run(&["grubby", "--default-title"]).expect("grubby");
    assert!(
        !default.stdout.contains("RHEL-Upgrade-Initramfs"),
        "{}",
        default.stdout
    );
    assert!(host.read_file("/boot/vmlinuz-upgrade.x86_64").is_err());
    assert!(
        host.read_file("/root/tmp_leapp_py3/.leapp_upgrade_failed")
            .is_err(),
        "the merge removed the marker"
    );
}

#[test]
fn verification_waits_while_first_boot_runs_beside_the_agent() {
    let host =
        host(SimProfile::Rhel79, &[]).with_scenario(|s| s.durations.first_boot_seconds = 1.5);
    let migration = upgraded_and_rebooted(&host, "fb");
    let verify = CommandPhase::Verify(leapp("8.10"));
    let first = run(&host, &verify, &migration, &Context::default(), None);
    assert!(
        matches!(&first, PhaseResult::NotYet(why) if why.contains("leapp_resume.service")),
        "{first:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let (outcome, _) = finished(run(&host, &verify, &migration, &Context::default(), None));
    assert_eq!(outcome.state, UpdateState::Succeeded, "{}", outcome.detail);
}

#[test]
fn a_conversion_goes_through_and_verifies() {
    let host = host(SimProfile::Centos79, &[]);
    let convert = Step {
        tool: Tool::Convert2rhel,
        to: mf_core::path::Target::from_version("7.9").expect("supported"),
    };
    let (_, outcomes) = drive(
        &host,
        &[
            CommandPhase::Snapshot { job_id: "c".into() },
            CommandPhase::Execute(convert),
            CommandPhase::Reboot,
            CommandPhase::Verify(convert),
        ],
    );
    assert!(
        outcomes.iter().all(|o| o.state == UpdateState::Succeeded),
        "{outcomes:#?}"
    );
    assert_eq!(os(&host), "rhel 7.9");
}

#[test]
fn a_conversion_failing_after_the_point_of_no_return_asks_for_a_rollback() {
    let host = host(SimProfile::Centos79, &[Failure::ConversionAfterPonr]);
    let convert = Step {
        tool: Tool::Convert2rhel,
        to: mf_core::path::Target::from_version("7.9").expect("supported"),
    };
    let (migration, outcomes) = drive(
        &host,
        &[
            CommandPhase::Snapshot { job_id: "c".into() },
            CommandPhase::Execute(convert),
        ],
    );
    let failed = outcomes.last().expect("execute");
    assert_eq!(failed.state, UpdateState::Failed);
    assert!(
        failed.detail.contains("after the point of no return"),
        "{}",
        failed.detail
    );
    assert!(failed.detail.contains("roll back"), "{}", failed.detail);
    assert_eq!(migration.stage, Stage::Failed);
    let boot = boot_id(&host);
    let rollback = run(
        &host,
        &CommandPhase::Rollback,
        &migration,
        &Context::default(),
        boot.as_deref(),
    );
    assert_eq!(finished(rollback).0.state, UpdateState::Succeeded);
    assert_eq!(os(&host), "centos 7.9");
}

#[test]
fn a_snapshot_too_big_for_the_volume_group_changes_nothing() {
    let host = host(SimProfile::Rhel79, &[]);
    let context = Context {
        host_id: "h.example.com".into(),
        snapshot: SnapshotConfig {
            size_percent: 100,
            ..SnapshotConfig::default()
        },
        ..Context::default()
    };
    let result = run(
        &host,
        &CommandPhase::Snapshot {
            job_id: "big".into(),
        },
        &Migration::default(),
        &context,
        None,
    );
    let (outcome, next) = finished(result);
    assert_eq!(outcome.state, UpdateState::Failed);
    assert!(
        outcome
            .detail
            .contains("volume group rhel has 12288 MiB free; the snapshots need 30720 MiB"),
        "{}",
        outcome.detail
    );
    assert_eq!(next, None);
    let lvs = host.run(&mf_agent::phases::snapshot::LVS).expect("lvs");
    assert!(!lvs.stdout.contains("_mf_"), "{}", lvs.stdout);
}

#[test]
fn without_snapshots_only_where_configured_and_then_no_rollback() {
    let host = host(SimProfile::Rhel79, &[]);
    let context = Context {
        host_id: "h.example.com".into(),
        snapshot: SnapshotConfig {
            provider: snapshot::Provider::None,
            ..SnapshotConfig::default()
        },
        ..Context::default()
    };
    let result = run(
        &host,
        &CommandPhase::Snapshot { job_id: "n".into() },
        &Migration::default(),
        &context,
        None,
    );
    let migration = finished(result).1.expect("snapshotted");
    assert_eq!(migration.snapshot, Some(SnapshotSet::None));
    assert!(
        migration
            .allows(&CommandPhase::Rollback)
            .expect_err("no rollback")
            .to_string()
            .contains("without snapshots")
    );
}

#[test]
fn a_site_hook_snapshot_takes_reverts_and_tells_the_hook_who_and_what() {
    let spec = SimHostSpec {
        failures: vec![Failure::InitramfsFailure],
        hook: Some(Hook {
            path: "/usr/local/sbin/vm-snapshot".into(),
            fail: Vec::new(),
        }),
        ..SimHostSpec::example(SimProfile::Rhel79)
    };
    let host = EmulatedHost::simulated(&spec);
    let context = Context {
        host_id: "h.example.com".into(),
        snapshot: SnapshotConfig {
            provider: snapshot::Provider::AgentCommand,
            command: Some("/usr/local/sbin/vm-snapshot".into()),
            ..SnapshotConfig::default()
        },
        ..Context::default()
    };
    let precheck = run(
        &host,
        &CommandPhase::Precheck(leapp("8.10")),
        &Migration::default(),
        &context,
        None,
    );
    let findings = finished(precheck).0.findings;
    assert!(
        findings
            .iter()
            .all(|f| !f.key.starts_with("agent::snapshot")),
        "{findings:#?}"
    );

    let mut migration = Migration::default();
    for phase in [
        CommandPhase::Snapshot {
            job_id: "job7".into(),
        },
        CommandPhase::Execute(leapp("8.10")),
    ] {
        let boot = boot_id(&host);
        let (_, next) = finished(run(&host, &phase, &migration, &context, boot.as_deref()));
        migration = next.expect("a new stage");
    }
    let before = boot_id(&host);
    let reboot = run(
        &host,
        &CommandPhase::Reboot,
        &migration,
        &context,
        before.as_deref(),
    );
    assert_eq!(reboot, PhaseResult::Rebooting);
    host.console_boot_previous()
        .expect("back on the old system");
    let running = Running {
        command_id: "reboot-7".into(),
        sequence: 5,
        phase: CommandPhase::Reboot,
        boot_id: before,
    };
    migration = finished(recover(&host, &running, &migration))
        .1
        .expect("rebooted");
    let (_, next) = finished(run(
        &host,
        &CommandPhase::Verify(leapp("8.10")),
        &migration,
        &context,
        None,
    ));
    migration = next.expect("failed");
    assert_eq!(
        migration.stage,
        Stage::Failed,
        "the upgrade failed in its initramfs"
    );
    let boot = boot_id(&host);
    let rollback = run(
        &host,
        &CommandPhase::Rollback,
        &migration,
        &context,
        boot.as_deref(),
    );
    let (outcome, _) = finished(rollback);
    assert_eq!(outcome.state, UpdateState::Succeeded, "{}", outcome.detail);
    assert_eq!(os(&host), "rhel 7.9");
    let log = host
        .read_to_string("/.mf-sim/hook.log")
        .expect("the hook was called");
    assert!(
        log.contains(
            "take MF_ACTION=take MF_HOST_ID=h.example.com MF_JOB_ID=job7 MF_SNAPSHOT=mf-job7"
        ),
        "{log}"
    );
    assert!(
        log.contains("revert MF_ACTION=revert MF_HOST_ID=h.example.com MF_JOB_ID=job7"),
        "{log}"
    );
}

#[test]
fn a_failed_first_boot_fails_verification_at_once_instead_of_waiting() {
    let host = host(SimProfile::Rhel79, &[Failure::FirstBootFailure]);
    let migration = upgraded_and_rebooted(&host, "fbf");
    assert!(
        host.read_file("/etc/systemd/system/leapp_resume.service")
            .is_ok(),
        "the unit stays when FirstBoot fails"
    );
    let (verify, _) = step(&host, &CommandPhase::Verify(leapp("8.10")), &migration);
    assert_eq!(verify.state, UpdateState::Failed);
    assert!(
        verify.detail.contains("FirstBoot failed"),
        "{}",
        verify.detail
    );

    // The rollback makes /boot what it was: tar deletes nothing, so the new
    // kernel and its BLS entry must be removed for the old kernel to boot.
    let mut failed = migration.clone();
    failed.stage = Stage::Failed;
    let (outcome, _) = step(&host, &CommandPhase::Rollback, &failed);
    assert_eq!(outcome.state, UpdateState::Succeeded, "{}", outcome.detail);
    let kernel = facts::collect(&host, &BTreeMap::new()).kernel;
    assert_eq!(kernel.as_deref(), Some("3.10.0-1160.125.1.el7.x86_64"));
    let boot_files = host.list_files("/boot").expect("list");
    assert!(
        !boot_files
            .iter()
            .any(|p| p.contains("el8") || p.starts_with("/boot/loader/")),
        "{boot_files:#?}"
    );
}

#[test]
fn a_conversion_whose_own_rollback_failed_may_have_changed_the_host() {
    let host = host(SimProfile::Centos79, &[Failure::RollbackFailure]);
    let (migration, outcomes) = drive(
        &host,
        &[
            CommandPhase::Snapshot {
                job_id: "rbf".into(),
            },
            CommandPhase::Execute(Step {
                tool: Tool::Convert2rhel,
                to: mf_core::path::Target::from_version("7.9").expect("target"),
            }),
        ],
    );
    let execute = outcomes.last().expect("execute");
    assert_eq!(execute.state, UpdateState::Failed);
    for words in ["with no report", "the host was changed: roll back"] {
        assert!(
            execute.detail.contains(words),
            "{words}: {}",
            execute.detail
        );
    }
    assert_eq!(migration.stage, Stage::Failed);
    migration
        .allows(&CommandPhase::Rollback)
        .expect("a rollback is what comes next");
}
