//! The agent's pre-check phase over emulated hosts: its own checks, then the
//! tool's pre-check, whose report (not its exit code) decides.
use mf_agent::command::{Step, Tool, UpdateState};
use mf_agent::host::Host;
use mf_agent::phases::precheck::run;
use mf_agent::phases::snapshot::{Provider, SnapshotConfig};
use mf_sim::emulated::{Failure, Scenario, ScenarioFinding};
use mf_sim::{EmulatedHost, SimHostSpec, SimProfile};

const MIB: u64 = 1024 * 1024;

fn step(tool: Tool, to: &str) -> Step {
    Step {
        tool,
        to: mf_core::path::Target::from_version(to).expect("supported"),
    }
}

fn spec(profile: SimProfile, findings: Vec<ScenarioFinding>) -> SimHostSpec {
    SimHostSpec {
        findings,
        ..SimHostSpec::example(profile)
    }
}

fn finding(key: &str, blocking: bool) -> ScenarioFinding {
    ScenarioFinding {
        key: key.into(),
        title: format!("title of {key}"),
        summary: "summary".into(),
        severity: if blocking { "high" } else { "medium" }.into(),
        blocking,
        hint: Some("do this".into()),
    }
}

#[test]
fn a_clean_rhel7_host_is_ready_for_leapp() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![finding("k-info", false)]));
    let outcome = run(&host, step(Tool::Leapp, "8.10"), &SnapshotConfig::default());
    assert_eq!(outcome.state, UpdateState::Succeeded, "{outcome:?}");
    assert!(outcome.findings.iter().all(|f| !f.blocking), "{outcome:?}");
    assert_eq!(outcome.findings[0].key, "k-info");
    assert!(
        outcome
            .detail
            .starts_with("leapp preupgrade --target 8.10 exited 0"),
        "{}",
        outcome.detail
    );
    let results = String::from_utf8(host.read_file("/etc/migration-results").expect("written"))
        .expect("utf8");
    assert!(results.contains("\"preupgrade\""), "{results}");
}

#[test]
fn leapp_inhibitors_block_and_exit_1_is_not_a_failure() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![finding("d35f", true)]));
    let outcome = run(&host, step(Tool::Leapp, "8.10"), &SnapshotConfig::default());
    assert_eq!(outcome.state, UpdateState::Succeeded);
    assert!(outcome.detail.contains("exited 1"), "{}", outcome.detail);
    assert!(
        outcome
            .findings
            .iter()
            .any(|f| f.key == "d35f" && f.blocking)
    );
}

#[test]
fn convert2rhel_before_2_1_exits_0_with_inhibitors_and_the_report_still_blocks() {
    let spec = spec(
        SimProfile::Oracle79,
        vec![finding(
            "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION",
            true,
        )],
    );
    let host = EmulatedHost::simulated(&spec); // Oracle Linux ships convert2rhel 2.0.0
    let installed = host.installed();
    let tool = installed.iter().find(|p| p.name == "convert2rhel");
    assert_eq!(tool.map(|p| p.version.as_str()), Some("2.0.0"));
    let outcome = run(
        &host,
        step(Tool::Convert2rhel, "7.9"),
        &SnapshotConfig::default(),
    );
    assert!(outcome.detail.contains("exited 0"), "{}", outcome.detail);
    let blocking: Vec<_> = outcome.findings.iter().filter(|f| f.blocking).collect();
    assert_eq!(blocking.len(), 1, "{outcome:?}");
    assert_eq!(
        blocking[0].key,
        "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION"
    );

    // convert2rhel 2.1 says so in its exit code too.
    let host = EmulatedHost::simulated(&self::spec(
        SimProfile::Centos79,
        vec![finding(
            "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION",
            true,
        )],
    ));
    let outcome = run(
        &host,
        step(Tool::Convert2rhel, "7.9"),
        &SnapshotConfig::default(),
    );
    assert!(outcome.detail.contains("exited 2"), "{}", outcome.detail);
}

#[test]
fn a_crashing_analysis_fails_with_the_reason() {
    let mut scenario = EmulatedHost::simulated(&spec(SimProfile::Centos79, vec![]))
        .scenario()
        .clone();
    scenario.failures.push(Failure::AnalysisCrash);
    let (_dir, host) = with_scenario(&spec(SimProfile::Centos79, vec![]), scenario);
    let outcome = run(
        &host,
        step(Tool::Convert2rhel, "7.9"),
        &SnapshotConfig::default(),
    );
    assert_eq!(outcome.state, UpdateState::Failed);
    assert!(
        outcome.detail.contains("exited 1 and wrote no report"),
        "{}",
        outcome.detail
    );
    assert!(
        outcome.detail.contains("RuntimeError"),
        "{}",
        outcome.detail
    );
}

#[test]
fn the_agent_s_own_checks_block_before_the_tool_runs() {
    let mut scenario = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]))
        .scenario()
        .clone();
    scenario
        .packages
        .retain(|p| p.name != "leapp-upgrade-el7toel8");
    scenario
        .filesystems
        .get_mut("/var")
        .expect("/var")
        .free_bytes = 512 * MIB;
    let (_dir, host) = with_scenario(&spec(SimProfile::Rhel79, vec![]), scenario);
    let outcome = run(&host, step(Tool::Leapp, "8.10"), &SnapshotConfig::default());
    assert_eq!(outcome.state, UpdateState::Succeeded);
    let keys: Vec<&str> = outcome.findings.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["agent::tool-missing", "agent::space-var"]);
    assert!(
        host.read_file("/etc/migration-results").is_err(),
        "the tool must not have run"
    );
}

#[test]
fn the_snapshot_must_fit_before_anything_is_changed() {
    let mut scenario = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]))
        .scenario()
        .clone();
    scenario.lvm.free_bytes = 1 << 30;
    let (_dir, host) = with_scenario(&spec(SimProfile::Rhel79, vec![]), scenario);
    let outcome = run(&host, step(Tool::Leapp, "8.10"), &SnapshotConfig::default());
    let finding = outcome
        .findings
        .iter()
        .find(|f| f.key == "agent::snapshot-capacity")
        .expect("a capacity finding");
    assert!(finding.blocking);
    assert!(
        finding
            .summary
            .contains("need 6144 MiB; rhel has 1024 MiB free"),
        "{}",
        finding.summary
    );

    let none = SnapshotConfig {
        provider: Provider::None,
        ..SnapshotConfig::default()
    };
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]));
    let outcome = run(&host, step(Tool::Leapp, "8.10"), &none);
    let warning = outcome
        .findings
        .iter()
        .find(|f| f.key == "agent::no-snapshot")
        .expect("a warning");
    assert!(!warning.blocking);
}

#[test]
fn impossible_steps_fail_before_anything_runs() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]));
    let outcome = run(&host, step(Tool::Leapp, "9.6"), &SnapshotConfig::default());
    assert_eq!(outcome.state, UpdateState::Failed);
    assert!(
        outcome.detail.contains("is not one run"),
        "{}",
        outcome.detail
    );
}

/// The simulated host's files written to a directory with `scenario`, opened
/// as a real `mf-agent run --host-root` would.
fn with_scenario(spec: &SimHostSpec, scenario: Scenario) -> (tempfile::TempDir, EmulatedHost) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().to_path_buf();
    let host = EmulatedHost::simulated(spec);
    for path in [
        "/etc/os-release",
        "/etc/centos-release",
        "/etc/redhat-release",
        "/etc/hostname",
        "/etc/hosts",
    ] {
        if let Ok(bytes) = host.read_file(path) {
            let full = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().expect("parent")).expect("dir");
            std::fs::write(full, bytes).expect("write");
        }
    }
    let scenario_path = dir.join(".mf-sim/scenario.toml");
    std::fs::create_dir_all(scenario_path.parent().expect("parent")).expect("dir");
    std::fs::write(&scenario_path, toml::to_string(&scenario).expect("toml")).expect("write");
    let host = EmulatedHost::open_dir(&dir)
        .expect("opens")
        .expect("has a scenario");
    (temp, host)
}
