//! The emulated machine driven through `Host` exactly as the agent drives a
//! real one: argv in, exit codes and files out, reboots.

use std::collections::BTreeMap;

use super::*;
use mf_agent::facts;

fn host(profile: SimProfile, failures: &[Failure]) -> EmulatedHost {
    EmulatedHost::simulated_with_failures(&SimHostSpec::example(profile), failures)
}

fn os(host: &EmulatedHost) -> (String, String, String) {
    let facts = facts::collect(host, &BTreeMap::new());
    let os = facts.os.expect("os");
    (os.id, os.version, facts.kernel.unwrap_or_default())
}

fn run(host: &EmulatedHost, argv: &[&str]) -> CommandOutput {
    host.run(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn last_activity(host: &EmulatedHost) -> serde_json::Value {
    let results: serde_json::Value =
        serde_json::from_slice(&host.read_file("/etc/migration-results").expect("results"))
            .expect("json");
    results["activities"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .expect("an activity")
}

#[test]
fn a_conversion_boots_the_rhel_kernel_after_the_reboot() {
    let host = host(SimProfile::Centos79, &[]);
    let out = run(&host, &["convert2rhel", "-y"]);
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("In order to boot the RHEL kernel, restart of the system is needed.")
    );
    let (id, version, kernel) = os(&host);
    assert_eq!((id.as_str(), version.as_str()), ("rhel", "7.9"));
    assert_eq!(
        kernel, "3.10.0-1160.119.1.el7.x86_64",
        "still the CentOS kernel until the reboot"
    );
    assert!(
        host.read_file("/var/log/convert2rhel/convert2rhel-post-conversion.json")
            .is_ok()
    );
    assert_eq!(last_activity(&host)["activity"], "conversion");
    assert_eq!(host.reboot().expect("reboot"), Reboot::Completed);
    assert_eq!(os(&host).2, "3.10.0-1160.125.1.el7.x86_64");
    assert_ne!(
        host.read_to_string("/proc/sys/kernel/random/boot_id")
            .expect("boot id")
            .trim(),
        "boot-0"
    );
}

#[test]
fn a_conversion_failing_before_the_point_of_no_return_changes_nothing() {
    let host = host(SimProfile::Centos79, &[Failure::ConversionBeforePonr]);
    let out = run(&host, &["convert2rhel", "convert", "-y"]);
    assert_eq!(out.status, 1);
    assert!(out.stdout.contains("Rollback complete"));
    assert_eq!(os(&host).0, "centos");
    assert!(
        host.read_file("/var/log/convert2rhel/convert2rhel-post-conversion.json")
            .is_err()
    );
}

#[test]
fn a_conversion_failing_after_the_point_of_no_return_leaves_a_half_converted_host() {
    let host = host(SimProfile::Centos79, &[Failure::ConversionAfterPonr]);
    let out = run(&host, &["convert2rhel", "convert", "-y"]);
    assert_eq!(out.status, 1);
    assert_eq!(os(&host).0, "rhel");
    let post = String::from_utf8(
        host.read_file("/var/log/convert2rhel/convert2rhel-post-conversion.json")
            .expect("report"),
    )
    .expect("utf8");
    assert!(post.contains("PACKAGE_REPLACEMENT_FAILED"));
}

fn grubby(host: &EmulatedHost, option: &str) -> String {
    let out = run(host, &["grubby", option]);
    assert_eq!(out.status, 0, "{out:?}");
    out.stdout.trim().to_string()
}

#[test]
fn a_leapp_upgrade_completes_across_the_initramfs_and_firstboot() {
    let host = host(SimProfile::Rhel79, &[]);
    let out = run(
        &host,
        &[
            "leapp",
            "upgrade",
            "--target",
            "8.10",
            "--report-schema",
            "1.2.0",
        ],
    );
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("A report has been generated at /var/log/leapp/leapp-report.json")
    );
    assert!(
        out.stdout
            .ends_with("A reboot is required to continue. Please reboot your system.\n")
    );
    // EL7: a menuentry titled RHEL-Upgrade-Initramfs, made the default; no
    // file is named after the title.
    assert_eq!(grubby(&host, "--default-title"), "RHEL-Upgrade-Initramfs");
    assert_eq!(
        grubby(&host, "--default-kernel"),
        "/boot/vmlinuz-upgrade.x86_64"
    );
    let cfg = host
        .read_to_string("/boot/grub2/grub.cfg")
        .expect("grub.cfg");
    assert!(cfg.contains("menuentry 'RHEL-Upgrade-Initramfs'"), "{cfg}");
    assert!(
        !host
            .list_files("/boot/loader")
            .expect("list")
            .iter()
            .any(|p| p.contains("RHEL-Upgrade-Initramfs"))
    );
    assert_eq!(os(&host).1, "7.9");
    let upgrade_activity = last_activity(&host);
    assert_eq!(
        upgrade_activity["env"]["LEAPP_CURRENT_PHASE"],
        "InterimPreparation"
    );
    assert_eq!(
        upgrade_activity["executed"],
        "/usr/bin/leapp upgrade --target 8.10 --report-schema 1.2.0"
    );
    host.reboot().expect("reboot");
    let (id, version, kernel) = os(&host);
    assert_eq!(
        (id.as_str(), version.as_str(), kernel.as_str()),
        ("rhel", "8.10", "4.18.0-553.el8_10.x86_64")
    );
    assert_eq!(
        grubby(&host, "--default-kernel"),
        "/boot/vmlinuz-4.18.0-553.el8_10.x86_64"
    );
    assert!(
        host.read_file(boot::LEAPP_RESUME).is_err(),
        "FirstBoot (no delay in this scenario) removed leapp_resume.service"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&host.read_file("/etc/migration-results").expect("results"))
            .expect("json");
    let phases: Vec<&str> = results["activities"]
        .as_array()
        .expect("activities")
        .iter()
        .filter(|a| a["activity"] == "upgrade")
        .filter_map(|a| a["env"]["LEAPP_CURRENT_PHASE"].as_str())
        .collect();
    assert_eq!(
        phases,
        [
            "InterimPreparation",
            "RPMUpgrade",
            "Finalization",
            "FirstBoot"
        ],
        "the source side, two initramfs runs and FirstBoot each append an entry"
    );
    assert!(
        !host
            .installed()
            .iter()
            .any(|p| p.name == "leapp-upgrade-el8toel9"),
        "the next hop's leapp-repository is not installed by the upgrade"
    );
}

#[test]
fn first_boot_ends_after_the_agent_has_started() {
    let host =
        host(SimProfile::Rhel79, &[]).with_scenario(|s| s.durations.first_boot_seconds = 0.4);
    assert_eq!(
        run(&host, &["leapp", "upgrade", "--target", "8.10"]).status,
        0
    );
    host.reboot().expect("reboot");
    assert!(host.read_file(boot::LEAPP_RESUME).is_ok(), "FirstBoot runs");
    assert_ne!(
        last_activity(&host)["env"]["LEAPP_CURRENT_PHASE"],
        "FirstBoot"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        host.read_file(boot::LEAPP_RESUME).is_err(),
        "FirstBoot ended"
    );
    assert_eq!(
        last_activity(&host)["env"]["LEAPP_CURRENT_PHASE"],
        "FirstBoot"
    );
}

#[test]
fn an_initramfs_failure_stops_in_the_emergency_shell_until_someone_acts() {
    let host = host(SimProfile::Rhel79, &[Failure::InitramfsFailure]);
    assert_eq!(
        run(&host, &["leapp", "upgrade", "--target", "8.10"]).status,
        0
    );
    assert_eq!(host.reboot().expect("reboot"), Reboot::Requested);
    assert!(host.is_down(), "it does not come back by itself");
    let state = state::MachineState::load(&host.tree);
    assert!(state.emergency_shell);
    assert!(host.read_file(boot::UPGRADE_FAILED).is_ok());
    assert_eq!(last_activity(&host)["success"], false);

    host.console_boot_previous().expect("the old entry");
    assert!(!host.is_down());
    assert_eq!(os(&host).1, "7.9");
    assert_eq!(
        grubby(&host, "--default-title"),
        "RHEL-Upgrade-Initramfs",
        "the upgrade entry is still the default"
    );
    // A plain reboot runs the failed upgrade again.
    assert_eq!(host.reboot().expect("reboot"), Reboot::Requested);
    assert!(host.is_down());
}

#[test]
fn leapp_s_default_report_schema_hides_actor_errors() {
    let report = |schema: Option<&str>| {
        let host = host(SimProfile::Rhel79, &[Failure::AnalysisCrash]);
        let mut argv = vec!["leapp", "preupgrade", "--target", "8.10"];
        if let Some(schema) = schema {
            argv.extend(["--report-schema", schema]);
        }
        let out = run(&host, &argv);
        assert_eq!(out.status, 1, "{out:?}");
        assert!(out.stdout.contains("ERRORS"), "{}", out.stdout);
        let report: serde_json::Value =
            serde_json::from_slice(&host.read_file(leapp::REPORT).expect("a report even so"))
                .expect("json");
        report["entries"][0].clone()
    };
    let default = report(None);
    assert_eq!(default["flags"], serde_json::json!([]), "{default}");
    assert!(default.get("groups").is_none());
    let explicit = report(Some("1.2.0"));
    assert_eq!(
        explicit["groups"],
        serde_json::json!(["error"]),
        "{explicit}"
    );
}

#[test]
fn leapp_refuses_usage_errors_with_2_and_a_held_lock_with_1() {
    let host = host(SimProfile::Rhel79, &[]);
    for argv in [
        vec!["leapp", "preupgrade", "--bogus"],
        vec!["leapp", "preupgrade", "--channel", "beta"],
        vec!["leapp", "preupgrade", "--report-schema", "2.0.0"],
        vec!["leapp", "answer"],
        vec!["leapp", "answer", "--section", "nodot=True"],
    ] {
        let out = run(&host, &argv);
        assert_eq!(out.status, 2, "{argv:?}: {out:?}");
        assert!(out.stderr.contains("usage: leapp"), "{out:?}");
    }
    for channel in ["ga", "E4S", "eus", "aus"] {
        let out = run(&host, &["leapp", "preupgrade", "--channel", channel]);
        assert_eq!(out.status, 0, "{channel}: {out:?}");
    }
    host.remove_file(leapp::REPORT).expect("rm");
    host.write_file(
        "/var/run/leapp.pid",
        format!("{}\n", std::process::id()).as_bytes(),
    )
    .expect("lock");
    let out = run(&host, &["leapp", "preupgrade"]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(host.read_file(leapp::REPORT).is_err());
}

#[test]
fn convert2rhel_records_its_own_activity_shape_and_identifies_by_system_release() {
    let host = host(SimProfile::Centos79, &[]);
    let out = run(&host, &["convert2rhel", "analyze", "-y"]);
    assert_eq!(out.status, 0, "{out:?}");
    let activity = last_activity(&host);
    assert_eq!(activity["version"], "1");
    assert_eq!(activity["activity"], "analysis");
    assert_eq!(activity["executed"], "/usr/bin/convert2rhel analyze -y");
    assert_eq!(
        activity["source_os"],
        serde_json::json!({"id": "Core", "name": "CentOS Linux", "version": "Version(major=7, minor=9)"})
    );
    assert_eq!(activity["target_os"], "null");
    host.remove_file("/etc/system-release").expect("rm");
    let out = run(&host, &["convert2rhel", "analyze", "-y"]);
    assert_eq!(out.status, 1);
    assert!(out.stdout.contains("/etc/system-release"), "{out:?}");
}

#[test]
fn convert2rhel_usage_errors_exit_2_and_write_no_report() {
    let host = host(SimProfile::Centos79, &[]);
    let out = run(&host, &["convert2rhel", "analyze", "-y", "--bogus"]);
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("usage: convert2rhel"));
    assert!(host.read_file(convert2rhel::REPORT).is_err());
    // The org may come from /etc/convert2rhel.ini; without it, -k alone is refused.
    assert_eq!(
        run(&host, &["convert2rhel", "analyze", "-y", "-k", "key"]).status,
        0
    );
    host.remove_file("/etc/convert2rhel.ini").expect("rm");
    let out = run(&host, &["convert2rhel", "analyze", "-y", "-k", "key"]);
    assert_eq!(out.status, 1, "-k without -o: {out:?}");
    assert!(out.stdout.contains("--org"), "{out:?}");
}

#[test]
fn a_successful_conversion_writes_only_the_post_conversion_report() {
    let host = host(SimProfile::Centos79, &[]);
    let out = run(&host, &["convert2rhel", "convert", "-y"]);
    assert_eq!(out.status, 0, "{out:?}");
    assert!(host.read_file(convert2rhel::POST_REPORT).is_ok());
    assert!(host.read_file(convert2rhel::REPORT).is_err());
    let activity = last_activity(&host);
    assert_eq!(activity["success"], true);
    assert_eq!(
        activity["target_os"]["name"],
        "Red Hat Enterprise Linux Server"
    );
}

#[test]
fn dependants_of_a_failed_action_are_skipped_and_an_analysis_with_inhibitors_succeeds() {
    let finding = ScenarioFinding {
        key: "SUBSCRIBE_SYSTEM::SYSTEM_NOT_REGISTERED".into(),
        title: "System is not registered".into(),
        summary: "No credentials".into(),
        severity: "high".into(),
        blocking: true,
        hint: None,
        error: false,
        answer: None,
        skips: vec![
            "ENSURE_KERNEL_MODULES_COMPATIBILITY".into(),
            "PACKAGE_UPDATES".into(),
        ],
    };
    let host = host(SimProfile::Centos79, &[]).with_scenario(|s| s.findings = vec![finding]);
    let out = run(&host, &["convert2rhel", "analyze", "-y"]);
    assert_eq!(out.status, 0, "2.1.0 exits 0 with failed actions: {out:?}");
    assert_eq!(last_activity(&host)["success"], true);
    let report: serde_json::Value =
        serde_json::from_slice(&host.read_file(convert2rhel::REPORT).expect("report"))
            .expect("json");
    assert_eq!(
        report["actions"]["PACKAGE_UPDATES"]["result"]["level"],
        "SKIP"
    );
    assert_eq!(report["actions"]["PACKAGE_UPDATES"]["result"]["id"], "SKIP");
}

#[test]
fn a_conversion_whose_rollback_fails_leaves_no_report() {
    let host = host(SimProfile::Centos79, &[Failure::RollbackFailure]);
    let out = run(&host, &["convert2rhel", "-y"]);
    assert_eq!(out.status, 1);
    assert!(!out.stdout.contains("No changes were made"), "{out:?}");
    assert!(host.read_file(convert2rhel::REPORT).is_err());
    assert!(host.read_file(convert2rhel::POST_REPORT).is_err());
}

#[test]
fn a_machine_that_never_returns_stays_down() {
    let host = host(SimProfile::Rhel79, &[Failure::NeverReturns]);
    assert_eq!(host.reboot().expect("reboot"), Reboot::Requested);
    assert!(state::MachineState::load(&host.tree).down);
}

#[test]
fn an_lvm_snapshot_and_a_boot_backup_roll_an_upgrade_back() {
    let host = host(SimProfile::Rhel79, &[]);
    let vgs = run(&host, &mf_agent::phases::snapshot::VGS);
    assert_eq!(vgs.stdout, format!("  rhel:{}\n", 12u64 << 30));
    for lv in ["root", "var"] {
        let out = run(
            &host,
            &[
                "lvcreate",
                "-s",
                "-n",
                &format!("{lv}_mf"),
                "-L",
                "2048m",
                &format!("rhel/{lv}"),
            ],
        );
        assert_eq!(
            out.stdout,
            format!("  Logical volume \"{lv}_mf\" created.\n")
        );
    }
    assert_eq!(
        run(
            &host,
            &[
                "tar",
                "-czf",
                "/var/lib/mf-agent/boot.tar.gz",
                "-C",
                "/boot",
                "."
            ]
        )
        .status,
        0
    );
    let lvs = run(&host, &mf_agent::phases::snapshot::LVS);
    assert!(
        lvs.stdout
            .contains("  rhel:root_mf:2147483648:swi-a-s---:root\n"),
        "{}",
        lvs.stdout
    );

    run(&host, &["leapp", "upgrade", "--target", "8.10"]);
    host.reboot().expect("reboot");
    assert_eq!(os(&host).1, "8.10");

    // Revert: /boot from the backup, merge both snapshots, reboot.
    assert_eq!(
        run(
            &host,
            &[
                "tar",
                "-xzf",
                "/var/lib/mf-agent/boot.tar.gz",
                "-C",
                "/boot"
            ]
        )
        .status,
        0
    );
    for lv in ["root", "var"] {
        let out = run(&host, &["lvconvert", "--merge", &format!("rhel/{lv}_mf")]);
        assert!(
            out.stdout.contains("will occur on next activation"),
            "{}",
            out.stdout
        );
    }
    host.reboot().expect("reboot");
    // tar extracts over /boot and deletes nothing: the new kernel and its
    // boot entry are still there, and still the default. The agent's revert
    // removes what the archive does not hold (tested with the phases).
    let (id, version, kernel) = os(&host);
    assert_eq!(
        (id.as_str(), version.as_str(), kernel.as_str()),
        ("rhel", "7.9", "4.18.0-553.el8_10.x86_64")
    );
    assert!(
        host.read_file("/boot/vmlinuz-4.18.0-553.el8_10.x86_64")
            .is_ok()
    );
    assert!(
        host.installed()
            .iter()
            .any(|p| p.name == "leapp-upgrade-el7toel8"),
        "the rpm database on /var rolled back"
    );
    let lvs = run(&host, &mf_agent::phases::snapshot::LVS);
    assert!(
        !lvs.stdout.contains("_mf"),
        "merged snapshots are gone: {}",
        lvs.stdout
    );
}

#[test]
fn an_overflowed_snapshot_is_invalid_and_cannot_be_merged() {
    let host = host(SimProfile::Rhel79, &[Failure::SnapshotOverflow]);
    run(
        &host,
        &["lvcreate", "-s", "-n", "root_mf", "-L", "1g", "rhel/root"],
    );
    let lvs = run(&host, &mf_agent::phases::snapshot::LVS);
    assert!(lvs.stdout.contains(":swi-I-s---:"), "{}", lvs.stdout);
    let merge = run(&host, &["lvconvert", "--merge", "rhel/root_mf"]);
    assert_eq!(merge.status, 5);
    let too_big = run(
        &host,
        &["lvcreate", "-s", "-n", "var_mf", "-L", "100g", "rhel/var"],
    );
    assert_eq!(too_big.status, 5);
    assert!(too_big.stderr.contains("insufficient free space"));
}
