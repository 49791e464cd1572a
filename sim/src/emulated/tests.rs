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

#[test]
fn a_leapp_upgrade_completes_across_the_initramfs_and_firstboot() {
    let host = host(SimProfile::Rhel79, &[]);
    let out = run(&host, &["leapp", "upgrade", "--target", "8.10"]);
    assert_eq!(out.status, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("A report has been generated at /var/log/leapp/leapp-report.json")
    );
    assert!(
        out.stdout
            .ends_with("A reboot is required to continue. Please reboot your system.\n")
    );
    assert!(host.read_file(boot::UPGRADE_BOOT_ENTRY).is_ok());
    assert_eq!(os(&host).1, "7.9");
    host.reboot().expect("reboot");
    let (id, version, kernel) = os(&host);
    assert_eq!(
        (id.as_str(), version.as_str(), kernel.as_str()),
        ("rhel", "8.10", "4.18.0-553.el8_10.x86_64")
    );
    assert!(
        host.read_file(boot::LEAPP_RESUME).is_err(),
        "FirstBoot removed leapp_resume.service"
    );
    assert!(host.read_file(boot::UPGRADE_BOOT_ENTRY).is_err());
    let activity = last_activity(&host);
    assert_eq!(
        (activity["activity"].as_str(), activity["success"].as_bool()),
        (Some("upgrade"), Some(true))
    );
    assert_eq!(activity["env"]["LEAPP_CURRENT_PHASE"], "FirstBoot");
    assert!(
        host.installed()
            .iter()
            .any(|p| p.name == "leapp-upgrade-el8toel9")
    );
}

#[test]
fn an_initramfs_failure_comes_back_on_the_old_system_marked() {
    let host = host(SimProfile::Rhel79, &[Failure::InitramfsFailure]);
    assert_eq!(
        run(&host, &["leapp", "upgrade", "--target", "8.10"]).status,
        0
    );
    host.reboot().expect("reboot");
    assert_eq!(os(&host).1, "7.9");
    assert!(host.read_file(boot::UPGRADE_FAILED).is_ok());
    assert_eq!(last_activity(&host)["success"], false);
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
    let (id, version, kernel) = os(&host);
    assert_eq!(
        (id.as_str(), version.as_str(), kernel.as_str()),
        ("rhel", "7.9", "3.10.0-1160.125.1.el7.x86_64")
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
