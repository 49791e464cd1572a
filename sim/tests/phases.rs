//! Whole migration steps on an emulated host, phase by phase, with the state
//! each leaves threaded through as the executor does.

use std::collections::BTreeMap;

use mf_agent::command::{CommandPhase, Step, Tool, UpdateState};
use mf_agent::facts;
use mf_agent::host::Host;
use mf_agent::migration::{Migration, SnapshotSet, Stage};
use mf_agent::phases::snapshot::{self, SnapshotConfig};
use mf_agent::phases::{Context, Outcome, boot_id, run};
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
        let result = run(host, phase, &migration, &context, boot.as_deref());
        let outcome = result.outcome.expect("in memory every phase finishes");
        if let Some(next) = result.migration {
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
fn an_initramfs_failure_fails_verification_and_rolls_back_to_the_original_os() {
    let host = host(SimProfile::Rhel79, &[Failure::InitramfsFailure]);
    let (migration, outcomes) = drive(
        &host,
        &[
            CommandPhase::Snapshot {
                job_id: "j2".into(),
            },
            CommandPhase::Execute(leapp("8.10")),
            CommandPhase::Reboot,
            CommandPhase::Verify(leapp("8.10")),
        ],
    );
    let verify = outcomes.last().expect("verify");
    assert_eq!(verify.state, UpdateState::Failed);
    assert!(
        verify.detail.contains(".leapp_upgrade_failed is present"),
        "{}",
        verify.detail
    );
    assert_eq!(migration.stage, Stage::Failed);
    assert!(
        Migration::default()
            .allows(&CommandPhase::Rollback)
            .is_err()
    );
    migration
        .allows(&CommandPhase::Rollback)
        .expect("rollback allowed after a failure");
    let boot = boot_id(&host);
    let rollback = run(
        &host,
        &CommandPhase::Rollback,
        &migration,
        &Context::default(),
        boot.as_deref(),
    );
    let outcome = rollback.outcome.expect("finished");
    assert_eq!(outcome.state, UpdateState::Succeeded, "{}", outcome.detail);
    assert_eq!(rollback.migration, Some(Migration::default()));
    assert_eq!(os(&host), "rhel 7.9");
    assert!(
        host.read_file("/root/tmp_leapp_py3/.leapp_upgrade_failed")
            .is_err(),
        "the merge removed the marker"
    );
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
    assert_eq!(
        rollback.outcome.expect("done").state,
        UpdateState::Succeeded
    );
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
    let outcome = result.outcome.expect("done");
    assert_eq!(outcome.state, UpdateState::Failed);
    assert!(
        outcome
            .detail
            .contains("volume group rhel has 12288 MiB free; the snapshots need 30720 MiB"),
        "{}",
        outcome.detail
    );
    assert_eq!(result.migration, None);
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
    };
    let result = run(
        &host,
        &CommandPhase::Snapshot { job_id: "n".into() },
        &Migration::default(),
        &context,
        None,
    );
    let migration = result.migration.expect("snapshotted");
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
    };
    let precheck = run(
        &host,
        &CommandPhase::Precheck(leapp("8.10")),
        &Migration::default(),
        &context,
        None,
    );
    let findings = precheck.outcome.expect("done").findings;
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
        CommandPhase::Reboot,
        CommandPhase::Verify(leapp("8.10")),
    ] {
        let boot = boot_id(&host);
        let result = run(&host, &phase, &migration, &context, boot.as_deref());
        if let Some(next) = result.migration {
            migration = next;
        }
    }
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
    let outcome = rollback.outcome.expect("done");
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
