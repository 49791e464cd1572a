//! Readiness over real agent processes whose host roots carry a scenario: the
//! agent runs the emulated convert2rhel and leapp exactly as it would run the
//! real ones, and the coordinator aggregates the outcome.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use mf_e2e::{Daemon, Deployment, HostOs, agent_binary, host_root, set_scenario, wait_for};
use serde_json::Value;

const SPACE: &str = r#"
[filesystems."/"]
free_bytes = 10737418240
total_bytes = 21474836480
[filesystems."/var"]
free_bytes = 10737418240
total_bytes = 21474836480
[filesystems."/boot"]
free_bytes = 524288000
total_bytes = 1073741824
"#;

fn packages(list: &[(&str, &str, &str)]) -> String {
    list.iter()
        .map(|(name, version, release)| {
            format!("[[packages]]\nname = \"{name}\"\nversion = \"{version}\"\nrelease = \"{release}\"\narch = \"noarch\"\n")
        })
        .collect()
}

const LEAPP: [(&str, &str, &str); 2] = [
    ("leapp", "0.17.0", "1.el7_9"),
    ("leapp-upgrade-el7toel8", "0.20.0", "2.el7_9"),
];

fn finding(key: &str, title: &str, blocking: bool) -> String {
    format!(
        "[[findings]]\nkey = \"{key}\"\ntitle = \"{title}\"\nsummary = \"{title}.\"\nseverity = \"high\"\nblocking = {blocking}\nhint = \"Fix it.\"\n"
    )
}

#[test]
fn precheck_reports_ready_blocked_and_error_hosts_with_their_findings() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "6"])?;
    let python = finding(
        "0c98585b1d8d252eb540bf61560094f3495351f5",
        "Difference in Python versions and support in RHEL 8",
        false,
    );
    let kernel = finding(
        "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION",
        "Invalid kernel version detected",
        true,
    );
    let hosts: Vec<(&str, HostOs, String)> = vec![
        (
            "rhel-ready",
            HostOs::Rhel79,
            format!("{}{python}{SPACE}", packages(&LEAPP)),
        ),
        (
            "centos-blocked",
            HostOs::Centos79,
            format!(
                "{}{kernel}{SPACE}",
                packages(&[("convert2rhel", "2.1.0", "1.el7")])
            ),
        ),
        // convert2rhel 2.0 exits 0 despite the inhibitor: the report decides.
        (
            "centos-old-tool",
            HostOs::Centos79,
            format!(
                "{}{kernel}{SPACE}",
                packages(&[("convert2rhel", "2.0.0", "1.el7")])
            ),
        ),
        (
            "rhel-crash",
            HostOs::Rhel79,
            format!("failures = [\"tool-crash\"]\n{}{SPACE}", packages(&LEAPP)),
        ),
        (
            "rhel-old-minor",
            HostOs::Rhel7,
            format!("{}{SPACE}", packages(&LEAPP)),
        ),
        // Not registered with RHSM, and no --no-rhsm in its configuration.
        (
            "rhel-unregistered",
            HostOs::Rhel79,
            format!("{}{SPACE}", packages(&LEAPP)),
        ),
    ];
    let mut agents = Vec::new();
    for (name, os, scenario) in &hosts {
        let root = host_root(
            &deployment.path(&format!("roots/{name}")),
            *os,
            name,
            "example.com",
        );
        set_scenario(&root, scenario);
        if *name == "rhel-unregistered" {
            std::fs::remove_file(root.join("etc/pki/consumer/cert.pem"))?;
        }
        let state = deployment.path(&format!("state/{name}"));
        let enrolled = deployment.enroll(&token, &state, &root, &[]);
        assert!(enrolled.success, "{name}: {}", enrolled.stderr);
        agents.push(Daemon::spawn(
            agent_binary(&root),
            &[
                "run",
                "--state-dir",
                state.to_str().unwrap(),
                "--host-root",
                root.to_str().unwrap(),
            ],
            &deployment.path(&format!("{name}.log")),
        )?);
    }
    wait_for("six connected hosts", Duration::from_secs(30), || {
        let hosts = deployment.hosts("connected=true")?;
        Ok(hosts.len() == 6 && hosts.iter().all(|h| !h["facts"].is_null()))
    })?;

    let ran = deployment.mfctl(&["precheck", "--target", "rhel-8.10", "-o", "json"]);
    assert!(ran.success, "{}", ran.stderr);
    let response: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!(response["dispatched"], 5, "{response}");
    assert_eq!(
        response["refused"][0]["host_id"],
        "rhel-old-minor.example.com"
    );
    assert!(
        response["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("must be updated to 7.9"),
        "{response}"
    );

    let mut report = Value::Null;
    wait_for("every pre-check to finish", Duration::from_secs(30), || {
        let ran = deployment.mfctl(&["report", "readiness", "-o", "json"]);
        report = serde_json::from_str(&ran.stdout)?;
        Ok(report["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["finished"].is_string() || h["target"].is_null()))
    })?;
    let readiness = |id: &str| {
        report["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {report:#}"))
            .clone()
    };
    assert_eq!(
        readiness("rhel-ready.example.com")["readiness"],
        "ready",
        "{report:#}"
    );
    assert_eq!(
        readiness("centos-blocked.example.com")["readiness"],
        "blocked"
    );
    let old = readiness("centos-old-tool.example.com");
    assert_eq!(old["readiness"], "blocked", "{old:#}");
    assert!(
        old["detail"]
            .as_str()
            .unwrap()
            .contains("convert2rhel analyze -y exited 0"),
        "{old:#}"
    );
    let crash = readiness("rhel-crash.example.com");
    assert_eq!(crash["readiness"], "error");
    assert!(
        crash["detail"]
            .as_str()
            .unwrap()
            .contains("wrote no report"),
        "{crash:#}"
    );
    assert_eq!(
        readiness("rhel-old-minor.example.com")["readiness"],
        "unknown"
    );
    assert_eq!(report["summary"]["ready"], 1);
    assert_eq!(report["summary"]["blocked"], 3);
    assert_eq!(report["summary"]["error"], 1);

    let findings = report["findings"].as_array().unwrap();
    let kernel = &findings[0];
    assert_eq!(
        kernel["key"], "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION",
        "{report:#}"
    );
    assert_eq!(
        (kernel["host_count"].as_u64(), kernel["blocking"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(kernel["source"], "convert2rhel");
    // Which hosts lack a subscription path, fleet-wide.
    let no_path = findings
        .iter()
        .find(|f| f["key"] == "agent::no-subscription-path")
        .expect("the unregistered host's finding");
    assert_eq!(no_path["host_count"], 1, "{no_path}");
    assert_eq!(no_path["blocking"], true);
    assert_eq!(
        no_path["example_hosts"][0], "rhel-unregistered.example.com",
        "{no_path}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f["source"] == "leapp" && f["blocking"] == false && f["host_count"] == 1)
    );

    // What the emulated tools left on the hosts, as the real ones would.
    let root = deployment.path("roots/rhel-ready");
    let leapp_report: Value = serde_json::from_slice(&std::fs::read(
        root.join("var/log/leapp/leapp-report.json"),
    )?)?;
    assert_eq!(
        leapp_report["entries"][0]["key"],
        "0c98585b1d8d252eb540bf61560094f3495351f5"
    );
    let results: Value =
        serde_json::from_slice(&std::fs::read(root.join("etc/migration-results"))?)?;
    assert_eq!(results["activities"][0]["activity"], "preupgrade");
    let journal = std::fs::read_to_string(deployment.path("state/rhel-ready/journal.jsonl"))?;
    assert!(
        journal.contains("\"started\"") && journal.contains("\"finished\""),
        "{journal}"
    );

    let show = deployment.mfctl(&["hosts", "show", "centos-blocked.example.com"]);
    assert!(
        show.stdout
            .contains("blocked for rhel-8.10 (convert2rhel to 7.9)"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("Invalid kernel version detected"),
        "{}",
        show.stdout
    );

    // The readiness gauge is exported whole at each tick (5 s).
    let blocked = "mf_hosts_by_readiness{readiness=\"blocked\"}";
    wait_for(
        "3 blocked hosts in the gauge",
        Duration::from_secs(15),
        || Ok(deployment.coordinator.metric(blocked)? == 3.0),
    )?;
    assert_eq!(
        deployment
            .coordinator
            .metric("mf_commands_total{phase=\"precheck\",state=\"succeeded\"}")?,
        4.0
    );

    // With --wait and -o json: exactly one JSON document, the dispatch and the outcomes.
    let ran = deployment.mfctl(&["precheck", "--target", "rhel-8.10", "--wait", "-o", "json"]);
    assert!(ran.success, "{}", ran.stderr);
    let document: Value = serde_json::from_str(&ran.stdout)
        .map_err(|e| anyhow::anyhow!("not one JSON document ({e}): {}", ran.stdout))?;
    assert_eq!(document["precheck"]["dispatched"], 5, "{document}");
    assert_eq!(document["readiness"]["summary"]["blocked"], 3, "{document}");
    // A script that wants blocked or failed pre-checks to fail the step says so.
    let ran = deployment.mfctl(&[
        "precheck",
        "--target",
        "rhel-8.10",
        "--wait",
        "--fail-on-blocked",
    ]);
    // One host here ends in error (11 wins over 10) and three are blocked.
    assert_eq!(ran.code, Some(11), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("1 pre-check(s) ended in error, 3 blocked"),
        "{}",
        ran.stderr
    );

    let bad = deployment.mfctl(&["precheck", "--target", "rhel-9.5"]);
    assert!(
        !bad.success && bad.stderr.contains("not a supported target"),
        "{}",
        bad.stderr
    );
    drop(agents);
    Ok(())
}

/// A host pre-checked again goes on showing its latest outcome while the new
/// one runs; `--wait` shows progress on a terminal and is bounded by
/// `--timeout`; `--watch` prints a document per change; a host whose agent is
/// away does not hold a wait up; `-o wide` and `-o yaml` show what the table
/// leaves out.
#[test]
fn a_pre_check_running_again_keeps_the_latest_outcome_and_waits_are_bounded() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "2"])?;
    let long_title = "A title longer than the seventy characters of the table, which the wide output shows whole";
    let slow = format!(
        "{}{}{SPACE}[durations]\nprecheck_seconds = 3.0\n",
        packages(&LEAPP),
        finding("long-title-blocker", long_title, true)
    );
    let mut agents = ["slow", "away"]
        .iter()
        .map(|name| {
            let label = format!("role={name}");
            deployment.start_agent(
                &token,
                name,
                HostOs::Rhel79,
                Some(&slow),
                &["--label", &label],
            )
        })
        .collect::<Result<Vec<_>>>()?;
    wait_for("two connected hosts", Duration::from_secs(30), || {
        let hosts = deployment.hosts("connected=true")?;
        Ok(hosts.len() == 2 && hosts.iter().all(|h| !h["facts"].is_null()))
    })?;
    let slow_host = ["-l", "role=slow"];

    // Progress on a terminal: one line rewritten in place on stderr.
    let script = format!(
        "{} precheck --target rhel-8.10 -l role=slow --wait",
        mf_e2e::bin("mfctl").display()
    );
    // `script` gives mfctl a pseudo-terminal and copies what it shows.
    let on_tty = std::process::Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .env("MF_COORDINATOR", deployment.coordinator.admin_address())
        .env("MF_PKI_DIR", &deployment.pki)
        .output()?;
    let on_tty = (
        on_tty.status.success(),
        String::from_utf8_lossy(&on_tty.stdout).into_owned(),
    );
    assert!(on_tty.0, "{}", on_tty.1);
    assert!(
        on_tty
            .1
            .contains("pre-checks 0/1 done, 1 running, time left not known yet")
            && on_tty
                .1
                .contains("pre-checks 1/1 done, 0 running; ready 0, blocked 1"),
        "{}",
        on_tty.1
    );

    // Again: while it runs, readiness still says blocked, and what runs.
    let again = deployment.mfctl(&[
        "precheck",
        "--target",
        "rhel-8.10",
        slow_host[0],
        slow_host[1],
    ]);
    assert!(again.success, "{}", again.stderr);
    let report = deployment.mfctl(&["report", "readiness", "-o", "json"]);
    let report: Value = serde_json::from_str(&report.stdout)?;
    let slow = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == "slow.example.com")
        .unwrap()
        .clone();
    assert_eq!(slow["readiness"], "blocked", "{report:#}");
    assert_eq!(slow["in_flight"], "rhel-8.10", "{report:#}");
    assert_eq!(report["summary"]["in_flight"], 1, "{report:#}");
    assert_eq!(report["summary"]["blocked"], 1, "{report:#}");
    let wide = deployment.mfctl(&["hosts", "list", "-o", "wide", slow_host[0], slow_host[1]]);
    assert!(
        wide.stdout.contains("READINESS")
            && wide
                .stdout
                .contains("blocked for rhel-8.10 (checking rhel-8.10)"),
        "{}",
        wide.stdout
    );
    // A second request while one is in flight is refused for that host,
    // and a wait bounded by --timeout gives up with its own exit code.
    let bounded = deployment.mfctl(&[
        "precheck",
        "--target",
        "rhel-8.10",
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert_eq!(
        bounded.code,
        Some(14),
        "{}{}",
        bounded.stdout,
        bounded.stderr
    );
    assert!(
        bounded.stdout.contains("already in flight")
            && bounded.stderr.contains("still running after 1s"),
        "{}{}",
        bounded.stdout,
        bounded.stderr
    );
    wait_for("the re-check to end", Duration::from_secs(20), || {
        let ran = deployment.mfctl(&["report", "readiness", "-o", "json"]);
        let report: Value = serde_json::from_str(&ran.stdout)?;
        Ok(report["summary"]["in_flight"] == 0)
    })?;

    // --watch: a document per change, then the report.
    let watched = deployment.mfctl(&[
        "precheck",
        "--target",
        "rhel-8.10",
        "--watch",
        "-o",
        "json",
        slow_host[0],
        slow_host[1],
    ]);
    assert!(watched.success, "{}", watched.stderr);
    let documents: Vec<Value> = watched
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(documents.len() >= 2, "{}", watched.stdout);
    assert_eq!(documents[0]["running"], 1, "{}", watched.stdout);
    assert_eq!(documents[0]["sent"], 1);
    let last = documents.last().unwrap();
    assert_eq!(last["summary"]["blocked"], 1, "{}", watched.stdout);

    // The readiness report: the title cut in the table, whole in wide and yaml.
    let table = deployment.mfctl(&["report", "readiness"]);
    assert!(
        table.stdout.contains('…') && !table.stdout.contains(long_title),
        "{}",
        table.stdout
    );
    let wide = deployment.mfctl(&["report", "readiness", "-o", "wide"]);
    assert!(wide.stdout.contains(long_title), "{}", wide.stdout);
    let yaml = deployment.mfctl(&["report", "readiness", "-o", "yaml"]);
    assert!(
        yaml.stdout.contains(&format!("title: {long_title}")) && yaml.stdout.contains("summary:\n"),
        "{}",
        yaml.stdout
    );

    // An agent that is away: its pre-check is queued and a wait does not
    // hang on it; it says so.
    agents.pop();
    wait_for(
        "the away host disconnected",
        Duration::from_secs(20),
        || Ok(deployment.hosts("connected=false")?.len() == 1),
    )?;
    let queued = deployment.mfctl(&[
        "precheck",
        "--target",
        "rhel-8.10",
        "--wait",
        "-l",
        "role=away",
    ]);
    assert!(queued.success, "{}", queued.stderr);
    assert!(
        queued.stdout.contains("queued for 1 disconnected host")
            && queued
                .stderr
                .contains("1 pre-check(s) wait for agents that are not connected"),
        "{}{}",
        queued.stdout,
        queued.stderr
    );
    drop(agents);
    Ok(())
}
