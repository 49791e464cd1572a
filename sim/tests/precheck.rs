//! The agent's pre-check phase over emulated hosts: its own checks, then the
//! tool's pre-check, whose report (not its exit code) decides.
use mf_agent::command::{Step, Tool, UpdateState};
use mf_agent::host::Host;
use mf_agent::phases::leapp::LeappConfig;
use mf_agent::phases::snapshot::{Provider, SnapshotConfig};
use mf_agent::phases::{Context, Outcome};
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
        error: false,
        answer: None,
        skips: Vec::new(),
    }
}

/// The keys of the blocking findings, in order.
fn blocking_keys(outcome: &Outcome) -> Vec<&str> {
    outcome
        .findings
        .iter()
        .filter(|f| f.blocking)
        .map(|f| f.key.as_str())
        .collect()
}

/// The titles of the blocking findings, in order.
fn blocking_titles(outcome: &Outcome) -> Vec<&str> {
    outcome
        .findings
        .iter()
        .filter(|f| f.blocking)
        .map(|f| f.title.as_str())
        .collect()
}

/// The agent's pre-check with the default configuration.
fn run(host: &dyn Host, step: Step) -> Outcome {
    run_with(host, step, &Context::default())
}

fn run_with(host: &dyn Host, step: Step, context: &Context) -> Outcome {
    mf_agent::phases::precheck::run(host, step, context)
}

fn with_snapshot(snapshot: SnapshotConfig) -> Context {
    Context {
        snapshot,
        ..Context::default()
    }
}

#[test]
fn a_clean_rhel7_host_is_ready_for_leapp() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![finding("k-info", false)]));
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
    assert_eq!(outcome.state, UpdateState::Succeeded, "{outcome:?}");
    assert!(outcome.findings.iter().all(|f| !f.blocking), "{outcome:?}");
    assert_eq!(outcome.findings[0].key, "k-info");
    assert!(
        outcome
            .detail
            .starts_with("leapp preupgrade --target 8.10 --report-schema 1.2.0 exited 0"),
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
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
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
fn convert2rhel_before_2_2_exits_0_with_inhibitors_and_the_report_still_blocks() {
    let blocked = |profile, version: Option<&str>| {
        let spec = spec(
            profile,
            vec![finding(
                "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION",
                true,
            )],
        );
        let host = EmulatedHost::simulated(&spec).with_scenario(|s| {
            if let Some(version) = version {
                for p in s.packages.iter_mut().filter(|p| p.name == "convert2rhel") {
                    p.version = version.into();
                }
            }
        });
        run(&host, step(Tool::Convert2rhel, "7.9"))
    };
    // Oracle Linux ships convert2rhel 2.0.0, CentOS 2.1.0: both exit 0.
    for (profile, version) in [(SimProfile::Oracle79, None), (SimProfile::Centos79, None)] {
        let outcome = blocked(profile, version);
        assert!(outcome.detail.contains("exited 0"), "{}", outcome.detail);
        let blocking: Vec<_> = outcome.findings.iter().filter(|f| f.blocking).collect();
        assert_eq!(blocking.len(), 1, "{outcome:?}");
        assert_eq!(
            blocking[0].key,
            "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION"
        );
    }
    // From 2.2.0 the exit code says so too.
    let outcome = blocked(SimProfile::Centos79, Some("2.2.0"));
    assert!(outcome.detail.contains("exited 2"), "{}", outcome.detail);
}

#[test]
fn a_crash_inside_an_action_is_an_unexpected_error_in_a_normal_report() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Centos79, vec![]))
        .with_scenario(|s| s.failures.push(Failure::AnalysisCrash));
    let outcome = run(&host, step(Tool::Convert2rhel, "7.9"));
    assert_eq!(outcome.state, UpdateState::Succeeded, "{outcome:?}");
    let blocking = blocking_keys(&outcome);
    assert_eq!(blocking, ["IS_LOADED_KERNEL_LATEST::UNEXPECTED_ERROR"]);
}

#[test]
fn a_tool_that_stops_before_its_checks_fails_the_pre_check_with_the_reason() {
    for (profile, tool, to) in [
        (SimProfile::Centos79, Tool::Convert2rhel, "7.9"),
        (SimProfile::Rhel79, Tool::Leapp, "8.10"),
    ] {
        let host = EmulatedHost::simulated(&spec(profile, vec![]))
            .with_scenario(|s| s.failures.push(Failure::ToolCrash));
        let outcome = run(&host, step(tool, to));
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
}

#[test]
fn a_leapp_actor_error_blocks_and_exit_1_with_nothing_blocking_is_never_ready() {
    // The agent asks for schema 1.2.0, where the error is a group.
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]))
        .with_scenario(|s| s.failures.push(Failure::AnalysisCrash));
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
    assert_eq!(outcome.state, UpdateState::Succeeded);
    let errors = blocking_titles(&outcome);
    assert_eq!(
        errors,
        ["Actor mf_sim_check unexpectedly terminated with exit code: 1"]
    );

    // A report that marks nothing (the error dropped, as schema 1.1.0 does)
    // with exit 1: the agent blocks on the exit code.
    let quiet = r#"{"leapp_run_id": "r", "entries": [{"title": "Actor failed", "summary": "s",
        "severity": "high", "key": "k1", "flags": [], "tags": []}]}"#;
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]));
    host.write_file("/root/quiet-report.json", quiet.as_bytes())
        .expect("write");
    let host = host.with_scenario(|s| {
        s.report_file = Some("/root/quiet-report.json".into());
        s.failures.push(Failure::AnalysisCrash);
    });
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
    let failed = outcome
        .findings
        .iter()
        .find(|f| f.key == "agent::tool-failed")
        .expect("the exit code is not ignored");
    assert!(failed.blocking);
    assert!(failed.summary.contains("exited 1"), "{}", failed.summary);
}

#[test]
fn an_unsupported_target_is_an_inhibitor_from_the_installed_upgrade_paths() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel810, vec![]));
    let paths = host
        .read_to_string("/etc/leapp/repos.d/system_upgrade/common/files/upgrade_paths.json")
        .expect("installed by leapp-upgrade-el8toel9");
    assert!(paths.contains("\"9.8\""), "{paths}");
    let outcome = run(&host, step(Tool::Leapp, "9.4"));
    let inhibitor = outcome
        .findings
        .iter()
        .find(|f| f.blocking)
        .expect("an inhibitor");
    assert_eq!(
        inhibitor.title,
        "Specified version of the target system is not supported"
    );
    assert!(
        inhibitor.summary.contains("9.6, 9.8"),
        "{}",
        inhibitor.summary
    );
    let ready = run(&host, step(Tool::Leapp, "9.8"));
    assert!(ready.findings.iter().all(|f| !f.blocking), "{ready:?}");
}

#[test]
fn the_next_hop_needs_its_own_leapp_repository_which_the_upgrade_did_not_install() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel810, vec![])).with_scenario(|s| {
        for p in s
            .packages
            .iter_mut()
            .filter(|p| p.name.starts_with("leapp-upgrade"))
        {
            p.name = "leapp-upgrade-el7toel8".into();
        }
    });
    let outcome = run(&host, step(Tool::Leapp, "9.6"));
    let missing = outcome
        .findings
        .iter()
        .find(|f| f.key == "agent::tool-missing")
        .expect("blocked");
    assert!(
        missing.summary.contains("leapp-upgrade-el8toel9"),
        "{}",
        missing.summary
    );
    assert_eq!(
        missing.remediations,
        [
            mf_agent::report::Remediation::Command(
                ["dnf", "remove", "-y", "leapp-upgrade-el7toel8"]
                    .map(String::from)
                    .to_vec()
            ),
            mf_agent::report::Remediation::Command(
                ["dnf", "install", "-y", "leapp-upgrade-el8toel9"]
                    .map(String::from)
                    .to_vec()
            ),
        ]
    );
}

#[test]
fn configured_answers_clear_the_missing_answers_inhibitor() {
    let dialog = ScenarioFinding {
        title: "Missing required answers in the answer file".into(),
        answer: Some("remove_pam_pkcs11_module_check.confirm".into()),
        ..finding("d35f6c6b1b1fa6924ef442e3670d90fa92f0d54b", true)
    };
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![dialog.clone()]));
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
    let inhibitor = outcome
        .findings
        .iter()
        .find(|f| f.blocking)
        .expect("unanswered");
    assert!(
        inhibitor
            .remediations
            .contains(&mf_agent::report::Remediation::Command(
                [
                    "leapp",
                    "answer",
                    "--section",
                    "remove_pam_pkcs11_module_check.confirm=True"
                ]
                .map(String::from)
                .to_vec()
            )),
        "{inhibitor:?}"
    );
    let answered = Context {
        leapp: LeappConfig {
            answers: vec![
                "remove_pam_pkcs11_module_check.confirm=True"
                    .parse()
                    .expect("answer"),
            ],
            ..LeappConfig::default()
        },
        ..Context::default()
    };
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![dialog]));
    let outcome = run_with(&host, step(Tool::Leapp, "8.10"), &answered);
    assert!(outcome.findings.iter().all(|f| !f.blocking), "{outcome:?}");
    let answerfile = host
        .read_to_string("/var/log/leapp/answerfile")
        .expect("answerfile");
    assert!(
        answerfile.contains("[remove_pam_pkcs11_module_check]\nconfirm = True"),
        "{answerfile}"
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
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
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
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
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
    let outcome = run_with(&host, step(Tool::Leapp, "8.10"), &with_snapshot(none));
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
    let outcome = run(&host, step(Tool::Leapp, "9.6"));
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
        "/etc/system-release",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/convert2rhel.ini",
        "/etc/pki/consumer/cert.pem",
    ] {
        if let Ok(bytes) = host.read_file(path) {
            use std::os::unix::fs::PermissionsExt;
            let full = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().expect("parent")).expect("dir");
            std::fs::write(&full, bytes).expect("write");
            // Credentials are the owner's alone, as convert2rhel demands.
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o600)).expect("chmod");
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

#[test]
fn a_convertible_host_without_credentials_is_blocked_with_its_remediation() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Centos79, vec![]));
    host.remove_file("/etc/convert2rhel.ini").expect("rm");
    let outcome = run(&host, step(Tool::Convert2rhel, "7.9"));
    let blocking = blocking_keys(&outcome);
    assert_eq!(
        blocking,
        [
            "agent::no-subscription-path",
            "SUBSCRIBE_SYSTEM::SYSTEM_NOT_REGISTERED"
        ],
        "{outcome:#?}"
    );
    assert!(
        outcome
            .findings
            .iter()
            .any(|f| f.key == "LIST_THIRD_PARTY_PACKAGES::SKIP" && !f.blocking),
        "the checks skipped after it are one root cause"
    );

    // A disconnected site: --no-rhsm with its repositories.
    let offline = Context {
        convert2rhel: mf_agent::phases::Convert2rhelConfig {
            no_rhsm: true,
            enablerepo: vec!["rhel-7-server-rpms-local".into()],
            ..Default::default()
        },
        ..Context::default()
    };
    let outcome = run_with(&host, step(Tool::Convert2rhel, "7.9"), &offline);
    assert!(outcome.findings.iter().all(|f| !f.blocking), "{outcome:#?}");
    let results = host
        .read_to_string("/etc/migration-results")
        .expect("results");
    assert!(
        results.contains("analyze -y --no-rhsm --enablerepo rhel-7-server-rpms-local"),
        "{results}"
    );
}

#[test]
fn an_exposed_or_half_given_credentials_file_blocks_before_the_tool_runs() {
    use std::os::unix::fs::PermissionsExt;
    let scenario = EmulatedHost::simulated(&spec(SimProfile::Centos79, vec![]))
        .scenario()
        .clone();
    let (dir, host) = with_scenario(&spec(SimProfile::Centos79, vec![]), scenario);
    let ini = dir.path().join("etc/convert2rhel.ini");
    std::fs::write(
        &ini,
        "[subscription_manager]\nactivation_key = k\norg = o\n",
    )
    .expect("write");
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // The tool itself refuses it: exit 1, no report.
    let refused = host.run(&["convert2rhel", "analyze", "-y"]).expect("runs");
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(refused.stdout.contains("0600"), "{refused:?}");
    assert!(
        host.read_file("/var/log/convert2rhel/convert2rhel-pre-conversion.json")
            .is_err()
    );
    // The agent says so before running it.
    let outcome = run(&host, step(Tool::Convert2rhel, "7.9"));
    let finding = outcome
        .findings
        .iter()
        .find(|f| f.key == "agent::subscription-file")
        .expect("the file is named");
    assert!(finding.summary.contains("chmod 600"), "{}", finding.summary);
    assert!(outcome.detail.contains("did not run"), "{}", outcome.detail);

    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&ini, "[subscription_manager]\nactivation_key = k\n").expect("write");
    let outcome = run(&host, step(Tool::Convert2rhel, "7.9"));
    let finding = outcome
        .findings
        .iter()
        .find(|f| f.key == "agent::subscription-file")
        .expect("half-given");
    assert!(
        finding
            .summary
            .contains("only one of activation_key and org"),
        "{}",
        finding.summary
    );
}

#[test]
fn an_unregistered_rhel_host_needs_a_registration_or_no_rhsm() {
    let host = EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![]));
    host.remove_file("/etc/pki/consumer/cert.pem").expect("rm");
    let outcome = run(&host, step(Tool::Leapp, "8.10"));
    let titles = blocking_titles(&outcome);
    assert_eq!(
        titles,
        [
            "No subscription path to RHEL content",
            "The system is not registered or subscribed."
        ],
        "{outcome:#?}"
    );
    let offline = Context {
        leapp: LeappConfig {
            content: mf_agent::phases::subscription::LeappContent {
                no_rhsm: true,
                enablerepo: vec!["rhel-8-baseos-local".into()],
                channel: Some("eus".into()),
            },
            ..LeappConfig::default()
        },
        ..Context::default()
    };
    let outcome = run_with(&host, step(Tool::Leapp, "8.10"), &offline);
    assert!(outcome.findings.iter().all(|f| !f.blocking), "{outcome:#?}");
    assert!(
        outcome
            .detail
            .contains("--no-rhsm --enablerepo rhel-8-baseos-local --channel eus"),
        "{}",
        outcome.detail
    );
}
