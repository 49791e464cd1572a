//! Migrations end to end over real processes: a real coordinator, real agents
//! on emulated host roots, reboots played by killing and restarting the agent
//! (the `Machine` watcher), SIGKILL of an agent mid-upgrade and of the
//! coordinator mid-job.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use mf_e2e::{Deployment, HostOs, LEAPP_READY, Machine, host_root, set_scenario, wait_for};
use serde_json::Value;

const C2R: &str = "[[packages]]\nname = \"convert2rhel\"\nversion = \"2.1.0\"\nrelease = \"1.el7\"\narch = \"noarch\"\n";

struct Host {
    id: String,
    root: PathBuf,
    machine: Machine,
}

fn host(
    deployment: &Deployment,
    token: &str,
    name: &str,
    os: HostOs,
    scenario: &str,
) -> Result<Host> {
    host_with(deployment, token, name, os, scenario, &[])
}

/// A host whose agent runs with more arguments (`--config FILE`...).
fn host_with(
    deployment: &Deployment,
    token: &str,
    name: &str,
    os: HostOs,
    scenario: &str,
    extra: &[&str],
) -> Result<Host> {
    let root = host_root(
        &deployment.path(&format!("roots/{name}")),
        os,
        name,
        "example.com",
    );
    set_scenario(&root, scenario);
    // Where a real agent keeps it: on /var, which a rollback's merge rewinds too.
    let state = root.join("var/lib/mf-agent");
    let enrolled = deployment.enroll(token, &state, &root, &[]);
    if !enrolled.success {
        bail!("enroll {name}: {}", enrolled.stderr);
    }
    let machine = Machine::start_with(
        &state,
        &root,
        &deployment.path(&format!("{name}.log")),
        extra,
    );
    Ok(Host {
        id: format!("{name}.example.com"),
        root,
        machine,
    })
}

fn show(deployment: &Deployment, id: &str) -> Result<Value> {
    let ran = deployment.mfctl(&["hosts", "show", id, "-o", "json"]);
    if !ran.success {
        bail!("hosts show {id}: {}", ran.stderr);
    }
    Ok(serde_json::from_str(&ran.stdout)?)
}

fn job_state(deployment: &Deployment, id: &str) -> Result<String> {
    Ok(show(deployment, id)?["job"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn wait_job(deployment: &Deployment, id: &str) -> Result<Value> {
    wait_for(
        &format!("the job of {id} to end"),
        Duration::from_secs(60),
        || {
            Ok(!matches!(
                job_state(deployment, id)?.as_str(),
                "running" | ""
            ))
        },
    )?;
    show(deployment, id)
}

fn timeline(host: &Value) -> Vec<String> {
    host["job"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect()
}

fn os(host: &Value) -> String {
    format!(
        "{} {}",
        host["os"]["id"].as_str().unwrap_or("?"),
        host["os"]["version"].as_str().unwrap_or("?")
    )
}

fn snapshots_left(root: &std::path::Path) -> usize {
    let state: Value =
        serde_json::from_slice(&std::fs::read(root.join(".mf-sim/state.json")).unwrap_or_default())
            .unwrap_or(Value::Null);
    state["snapshots"].as_array().map_or(0, Vec::len)
}

fn migrate(deployment: &Deployment, id: &str, target: &str) {
    let ran = deployment.mfctl(&["migrate", id, "--target", target]);
    assert!(ran.success, "migrate {id}: {}", ran.stderr);
}

fn wait_connected(deployment: &Deployment, n: usize) -> Result<()> {
    wait_for(
        &format!("{n} connected hosts"),
        Duration::from_secs(30),
        || {
            let hosts = deployment.hosts("connected=true")?;
            Ok(hosts.len() == n && hosts.iter().all(|h| !h["facts"].is_null()))
        },
    )
}

#[test]
fn conversion_upgrade_rollback_and_a_blocked_host() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "3"])?;
    let blocker = "[[findings]]\nkey = \"d35f6c6b1b1fa6924ef442e3670d90fa92f0d54b\"\ntitle = \"Missing required answers in the answer file\"\n\
                   severity = \"high\"\nblocking = true\nhint = \"leapp answer --section remove_pam_pkcs11_module_check.confirm=True\"\n";
    let c7 = host(&deployment, &token, "c7", HostOs::Centos79, C2R)?;
    // FirstBoot runs for a while after the agent has started again: the
    // verification must wait for it, not fail.
    let r7 = host(
        &deployment,
        &token,
        "r7",
        HostOs::Rhel79,
        &format!("{LEAPP_READY}[durations]\nfirst_boot_seconds = 7.0\n"),
    )?;
    let blocked = host(
        &deployment,
        &token,
        "r7blocked",
        HostOs::Rhel79,
        &format!("{LEAPP_READY}{blocker}"),
    )?;
    wait_connected(&deployment, 3)?;

    migrate(&deployment, &c7.id, "rhel-7.9");
    migrate(&deployment, &r7.id, "rhel-8.10");
    migrate(&deployment, &blocked.id, "rhel-8.10");
    let again = deployment.mfctl(&["migrate", &r7.id, "--target", "rhel-8.10"]);
    assert!(
        !again.success && again.stderr.contains("has a job in progress"),
        "{}",
        again.stderr
    );

    // CentOS 7.9 -> RHEL 7.9: conversion, reboot into the RHEL kernel, verified, committed.
    let shown = wait_job(&deployment, &c7.id)?;
    assert_eq!(
        shown["job"]["state"],
        "succeeded",
        "{:#?}",
        timeline(&shown)
    );
    wait_for("fresh facts", Duration::from_secs(10), || {
        Ok(os(&show(&deployment, &c7.id)?) == "rhel 7.9")
    })?;
    let shown = show(&deployment, &c7.id)?;
    assert_eq!(shown["facts"]["kernel"], "3.10.0-1160.125.1.el7.x86_64");
    assert_eq!(c7.machine.reboots(), 1);
    assert_eq!(
        snapshots_left(&c7.root),
        0,
        "committed: the snapshots are removed"
    );
    let text = timeline(&shown).join("\n");
    for phase in [
        "precheck", "snapshot", "execute", "reboot", "verify", "commit",
    ] {
        assert!(
            text.contains(&format!("{phase} succeeded")),
            "{phase} missing from\n{text}"
        );
    }

    // RHEL 7.9 -> 8.10: upgrade initramfs and FirstBoot across the reboot.
    // The agent is killed while its verification waits for FirstBoot: the
    // restarted agent resumes the verification (it only reads the host).
    wait_for(
        "r7's verification to start",
        Duration::from_secs(60),
        || {
            Ok(timeline(&show(&deployment, &r7.id)?)
                .iter()
                .any(|t| t.starts_with("verify started")))
        },
    )?;
    r7.machine.kill_agent();
    r7.machine.start_agent();
    let shown = wait_job(&deployment, &r7.id)?;
    assert!(
        !timeline(&shown).iter().any(|t| t.contains("interrupted")),
        "{:#?}",
        timeline(&shown)
    );
    assert_eq!(
        shown["job"]["state"],
        "succeeded",
        "{:#?}",
        timeline(&shown)
    );
    wait_for("fresh facts", Duration::from_secs(10), || {
        Ok(os(&show(&deployment, &r7.id)?) == "rhel 8.10")
    })?;
    assert_eq!(
        show(&deployment, &r7.id)?["facts"]["kernel"],
        "4.18.0-553.el8_10.x86_64"
    );
    assert!(
        !r7.root
            .join("etc/systemd/system/leapp_resume.service")
            .exists()
    );

    // Blocked at the pre-check: nothing changed, the findings are shown.
    let shown = wait_job(&deployment, &blocked.id)?;
    assert_eq!(shown["job"]["state"], "blocked");
    let findings = shown["job"]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(
            |f| f["key"] == "d35f6c6b1b1fa6924ef442e3670d90fa92f0d54b" && f["blocking"] == true
        )
    );
    assert_eq!(snapshots_left(&blocked.root), 0, "no snapshot was taken");
    assert_eq!(blocked.machine.reboots(), 0);
    // A script tells the outcome by the exit code: blocked again at its pre-check.
    let again = deployment.mfctl(&["migrate", &blocked.id, "--target", "rhel-8.10", "--wait"]);
    assert_eq!(again.code, Some(10), "{}", again.stderr);
    assert!(again.stderr.contains("ended blocked"), "{}", again.stderr);
    let human = deployment.mfctl(&["hosts", "show", &blocked.id]);
    assert!(
        human
            .stdout
            .contains("Missing required answers in the answer file"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("blocked at the pre-check of leapp to 8.10"),
        "{}",
        human.stdout
    );

    assert_eq!(
        deployment
            .coordinator
            .metric("mf_jobs{state=\"succeeded\"}")?,
        2.0
    );
    assert_eq!(
        deployment
            .coordinator
            .metric("mf_jobs{state=\"blocked\"}")?,
        1.0
    );
    Ok(())
}

/// A failure in the upgrade initramfs stops the machine in the emergency
/// shell with leapp's entry still the default: it never comes back by itself.
/// The reboot timeout holds the job with a message that says so; someone at
/// the console boots the previous entry; the agent reports the failure and
/// the job rolls back from the LVM snapshot (which removes the entry), never
/// rebooting into the failed upgrade again.
#[test]
fn an_initramfs_failure_holds_until_the_console_brings_the_host_back() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--reboot-timeout", "3s"])?;
    let token = deployment.token(&["--uses", "3"])?;
    // A machine that never comes back from its reboot at all (powered off,
    // lost): held at the timeout the same way, with the text for it.
    let lost = host(
        &deployment,
        &token,
        "r7lost",
        HostOs::Rhel79,
        &format!("failures = [\"never-returns\"]\n{LEAPP_READY}"),
    )?;
    let failing = host(
        &deployment,
        &token,
        "r7fail",
        HostOs::Rhel79,
        &format!("failures = [\"initramfs-failure\"]\n{LEAPP_READY}"),
    )?;
    // A FirstBoot that never ends: the verification gives up after the
    // agent's configured wait, and the job rolls back.
    let config = deployment.path("r7slow-agent.toml");
    std::fs::write(&config, "[leapp]\nfirst_boot_timeout = \"2s\"\n")?;
    let slow = host_with(
        &deployment,
        &token,
        "r7slow",
        HostOs::Rhel79,
        &format!("{LEAPP_READY}[durations]\nfirst_boot_seconds = 3600.0\n"),
        &["--config", config.to_str().unwrap()],
    )?;
    wait_connected(&deployment, 3)?;
    migrate(&deployment, &failing.id, "rhel-8.10");
    migrate(&deployment, &slow.id, "rhel-8.10");
    migrate(&deployment, &lost.id, "rhel-8.10");
    let gone = wait_job(&deployment, &lost.id)?;
    let text = timeline(&gone).join("\n");
    assert_eq!(gone["job"]["state"], "held", "{text}");
    assert!(text.contains("reboot had no outcome within 3s"), "{text}");
    assert!(text.contains("has not come back from its reboot"), "{text}");
    assert!(lost.machine.is_down(), "it never came back");

    wait_for(
        "the machine to stop in its initramfs",
        Duration::from_secs(60),
        || Ok(failing.machine.is_down()),
    )?;
    let shown = wait_job(&deployment, &failing.id)?;
    let text = timeline(&shown).join("\n");
    assert_eq!(shown["job"]["state"], "held", "{text}");
    assert!(text.contains("reboot had no outcome within"), "{text}");
    assert!(text.contains("emergency shell"), "{text}");
    assert!(failing.machine.is_down(), "nothing brought it back");

    let console = failing.machine.console_boot_previous();
    assert!(console.success, "{}", console.stderr);
    assert!(
        console.stdout.contains("3.10.0-1160.125.1.el7"),
        "{}",
        console.stdout
    );

    wait_for(
        "the job to end after the console",
        Duration::from_secs(60),
        || {
            Ok(!matches!(
                job_state(&deployment, &failing.id)?.as_str(),
                "running" | "held"
            ))
        },
    )?;
    let shown = show(&deployment, &failing.id)?;
    let text = timeline(&shown).join("\n");
    assert_eq!(shown["job"]["state"], "rolled-back", "{text}");
    for words in [
        "the host reported after the timeout: succeeded",
        ".leapp_upgrade_failed is present",
        "still the boot default",
        "rolled back: the host came back from its snapshot running rhel 7.9",
    ] {
        assert!(text.contains(words), "{words} missing from\n{text}");
    }
    wait_for("fresh facts", Duration::from_secs(10), || {
        Ok(os(&show(&deployment, &failing.id)?) == "rhel 7.9")
    })?;
    assert_eq!(
        failing.machine.reboots(),
        3,
        "the upgrade's reboot, the console's boot and the rollback's"
    );
    assert!(
        !failing.machine.is_down(),
        "the rollback's reboot came back"
    );
    assert!(
        !failing
            .root
            .join("root/tmp_leapp_py3/.leapp_upgrade_failed")
            .exists()
    );
    assert!(!failing.root.join("boot/vmlinuz-upgrade.x86_64").exists());
    let grub = std::fs::read_to_string(failing.root.join("boot/grub2/grub.cfg"))?;
    assert!(!grub.contains("RHEL-Upgrade-Initramfs"), "{grub}");
    assert_eq!(snapshots_left(&failing.root), 0, "merged away");
    assert!(std::fs::read_to_string(failing.root.join("etc/redhat-release"))?.contains("7.9"));

    wait_for(
        "the slow host's job to end",
        Duration::from_secs(60),
        || {
            Ok(!matches!(
                job_state(&deployment, &slow.id)?.as_str(),
                "running" | "held" | ""
            ))
        },
    )?;
    let shown = show(&deployment, &slow.id)?;
    let text = timeline(&shown).join("\n");
    assert_eq!(shown["job"]["state"], "rolled-back", "{text}");
    assert!(
        text.contains("FirstBoot is running, still after 2s: FirstBoot did not finish"),
        "{text}"
    );
    assert_eq!(
        deployment
            .coordinator
            .metric("mf_jobs{state=\"rolled-back\"}")?,
        2.0
    );
    Ok(())
}

#[test]
fn sigkill_of_the_agent_mid_upgrade_and_of_the_coordinator_mid_job() -> Result<()> {
    let mut deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "2"])?;
    let slow = "[durations]\nexecute_seconds = 3.0\n";
    let killed = host(
        &deployment,
        &token,
        "killed",
        HostOs::Rhel79,
        &format!("{LEAPP_READY}{slow}"),
    )?;
    let survivor = host(
        &deployment,
        &token,
        "survivor",
        HostOs::Rhel79,
        &format!("{LEAPP_READY}{slow}"),
    )?;
    wait_connected(&deployment, 2)?;
    let executing = |id: &str| -> Result<bool> {
        Ok(timeline(&show(&deployment, id)?)
            .iter()
            .any(|t| t.starts_with("execute started")))
    };

    // The agent dies while leapp upgrade runs: reported interrupted after the
    // restart, never run again, and the job rolls back to the snapshot.
    migrate(&deployment, &killed.id, "rhel-8.10");
    wait_for("the upgrade to start", Duration::from_secs(30), || {
        executing(&killed.id)
    })?;
    killed.machine.kill_agent();
    // Disconnected mid-phase is unknown, not failed.
    wait_for(
        "the job to be shown unknown",
        Duration::from_secs(20),
        || {
            let human = deployment.mfctl(&["hosts", "show", &killed.id]);
            Ok(human
                .stdout
                .contains("unknown: the host is disconnected during execute"))
        },
    )?;
    assert_eq!(job_state(&deployment, &killed.id)?, "running");
    killed.machine.start_agent();
    let shown = wait_job(&deployment, &killed.id)?;
    let text = timeline(&shown).join("\n");
    assert_eq!(shown["job"]["state"], "rolled-back", "{text}");
    assert!(text.contains("execute interrupted"), "{text}");
    assert!(
        text.contains("rolled back: the host came back from its snapshot running rhel 7.9"),
        "{text}"
    );
    assert!(
        !killed.root.join("var/run/leapp.pid").exists(),
        "the merge took the stale lock away"
    );

    // The coordinator dies while the upgrade runs; the agent's outcome arrives
    // with its hello after the restart and the job completes.
    migrate(&deployment, &survivor.id, "rhel-8.10");
    wait_for("the upgrade to start", Duration::from_secs(30), || {
        executing(&survivor.id)
    })?;
    deployment.coordinator.kill9();
    // The upgrade ends while the coordinator is down: its outcome is in the
    // host's journal and has been sent to no one.
    wait_for(
        "the upgrade to end on the host",
        Duration::from_secs(30),
        || Ok(execute_finished(&survivor.root)),
    )?;
    deployment.coordinator.restart()?;
    let shown = wait_job(&deployment, &survivor.id)?;
    assert_eq!(
        shown["job"]["state"],
        "succeeded",
        "{:#?}",
        timeline(&shown)
    );
    wait_for("fresh facts", Duration::from_secs(10), || {
        Ok(os(&show(&deployment, &survivor.id)?) == "rhel 8.10")
    })?;
    assert_eq!(survivor.machine.reboots(), 1, "the step ran once");
    Ok(())
}

/// Whether the host's journal holds the outcome of its latest execute.
fn execute_finished(root: &std::path::Path) -> bool {
    let records = mf_e2e::journal(root);
    let Some(execute) = records
        .iter()
        .rev()
        .find(|r| r["event"] == "started" && r["phase"]["phase"] == "execute")
    else {
        return false;
    };
    records
        .iter()
        .any(|r| r["event"] == "finished" && r["update"]["command_id"] == execute["command_id"])
}

/// `migrate --wait` ends with the exit code of how the job ended: 12 for a
/// change rolled back, 13 for one held for an operator; a wave or host that
/// does not exist is 3.
#[test]
fn migrate_wait_exits_by_how_the_job_ended() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "2"])?;
    let failing = format!("failures = [\"first-boot-failure\"]\n{LEAPP_READY}");
    let held = host(&deployment, &token, "held", HostOs::Rhel79, &failing)?;
    let back = host(&deployment, &token, "back", HostOs::Rhel79, &failing)?;
    wait_connected(&deployment, 2)?;
    let ran = deployment.mfctl(&[
        "migrate",
        &held.id,
        "--target",
        "rhel-8.10",
        "--on-failure",
        "hold",
        "--wait",
    ]);
    assert_eq!(ran.code, Some(13), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("ended held"), "{}", ran.stderr);
    // Held after a failed change: the step cannot run again, only a
    // rollback leaves it; it takes the host back to its snapshot.
    let retried = deployment.mfctl(&["hosts", "retry", &held.id]);
    assert!(
        !retried.success && retried.stderr.contains("cannot run again"),
        "{}",
        retried.stderr
    );
    let rolled = deployment.mfctl(&["hosts", "rollback", &held.id]);
    assert!(rolled.success, "{}", rolled.stderr);
    let shown = wait_job(&deployment, &held.id)?;
    assert_eq!(
        shown["job"]["state"],
        "rolled-back",
        "{:#?}",
        timeline(&shown)
    );
    assert!(
        timeline(&shown)
            .iter()
            .any(|t| t.contains("rollback requested by an operator")),
        "{:#?}",
        timeline(&shown)
    );
    wait_for("the host back on 7.9", Duration::from_secs(20), || {
        Ok(os(&show(&deployment, &held.id)?) == "rhel 7.9")
    })?;
    let ran = deployment.mfctl(&["migrate", &back.id, "--target", "rhel-8.10", "--wait"]);
    assert_eq!(ran.code, Some(12), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("ended rolled-back"), "{}", ran.stderr);
    let missing = deployment.mfctl(&["wave", "why", "no-such-wave", &held.id]);
    assert_eq!(missing.code, Some(3), "{}", missing.stderr);
    drop((held, back));
    Ok(())
}
