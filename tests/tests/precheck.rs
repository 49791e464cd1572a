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

    assert_eq!(
        deployment
            .coordinator
            .metric("mf_hosts_by_readiness{readiness=\"blocked\"}")?,
        3.0
    );
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
