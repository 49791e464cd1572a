//! The non-destructive readiness run of one migration step: the agent's own
//! checks (step possible, tool installed, space in /var and /boot), then the
//! tool's pre-check (`convert2rhel analyze -y` or `leapp preupgrade --target`),
//! whose report, not its exit code, decides.

use super::snapshot::{self, Provider, SnapshotConfig};
use super::{Outcome, step};
use crate::command::{MigrationTool, State};
use crate::facts::{self, Facts};
use crate::host::Host;
use crate::report::{self, Finding, Remediation, Severity, Source};

const CONVERT2RHEL_REPORT: &str = "/var/log/convert2rhel/convert2rhel-pre-conversion.json";
const LEAPP_REPORT: &str = "/var/log/leapp/leapp-report.json";

const MIB: u64 = 1024 * 1024;
/// Space the tools need: leapp downloads the target's packages into /var, and
/// both write a new initramfs and kernel into /boot.
fn space_needed(tool: MigrationTool, path: &str) -> Option<u64> {
    match (tool, path) {
        (MigrationTool::Leapp, "/var") => Some(3072 * MIB),
        (MigrationTool::Convert2rhel, "/var") => Some(1024 * MIB),
        (_, "/boot") => Some(100 * MIB),
        _ => None,
    }
}

fn agent_finding(key: &str, blocking: bool, title: String, summary: String, hint: &str) -> Finding {
    Finding {
        source: Source::Agent,
        key: format!("agent::{key}"),
        severity: if blocking {
            Severity::High
        } else {
            Severity::Medium
        },
        blocking,
        title,
        summary,
        remediations: vec![Remediation::Hint(hint.into())],
    }
}

fn failed(detail: String, findings: Vec<Finding>) -> Outcome {
    Outcome {
        state: State::Failed,
        detail,
        findings,
    }
}

pub fn run(
    host: &dyn Host,
    tool: MigrationTool,
    target: &str,
    snapshots: &SnapshotConfig,
) -> Outcome {
    let facts = facts::collect(host, &Default::default());
    let Some(os) = &facts.os else {
        return failed(
            "the operating system is unknown: /etc/os-release cannot be read".into(),
            Vec::new(),
        );
    };
    if let Err(reason) = step::check(os, tool, target) {
        return failed(reason, Vec::new());
    }
    let mut findings = own_checks(&facts, tool);
    findings.extend(snapshot_check(host, snapshots));
    if findings.iter().any(|f| f.key == "agent::tool-missing") {
        return Outcome {
            state: State::Succeeded,
            detail: format!("{tool} is not installed; its pre-check did not run"),
            findings,
        };
    }
    let (argv, report_path): (Vec<&str>, &str) = match tool {
        MigrationTool::Convert2rhel => (vec!["convert2rhel", "analyze", "-y"], CONVERT2RHEL_REPORT),
        MigrationTool::Leapp => (
            vec!["leapp", "preupgrade", "--target", target],
            LEAPP_REPORT,
        ),
    };
    // A report left by an earlier run must never pass for this run's.
    if let Err(e) = host.remove_file(report_path) {
        return failed(format!("cannot remove the old report: {e}"), findings);
    }
    let output = match host.run(&argv) {
        Ok(output) => output,
        Err(e) => return failed(format!("cannot run {}: {e}", argv.join(" ")), findings),
    };
    let command = argv.join(" ");
    let bytes = match host.read_file(report_path) {
        Ok(bytes) => bytes,
        Err(_) => {
            let last = output
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return failed(
                format!(
                    "{command} exited {} and wrote no report: {}",
                    output.status,
                    last.trim()
                ),
                findings,
            );
        }
    };
    let parsed = match tool {
        MigrationTool::Convert2rhel => report::parse_convert2rhel(&bytes),
        MigrationTool::Leapp => report::parse_leapp(&bytes),
    };
    match parsed {
        Ok(tool_findings) => {
            findings.extend(tool_findings);
            let blocking = findings.iter().filter(|f| f.blocking).count();
            Outcome {
                state: State::Succeeded,
                detail: format!(
                    "{command} exited {}; {} findings, {blocking} blocking",
                    output.status,
                    findings.len()
                ),
                findings,
            }
        }
        Err(e) => failed(format!("{report_path}: {e}"), findings),
    }
}

/// Whether the change can be protected as this host's configuration says.
fn snapshot_check(host: &dyn Host, config: &SnapshotConfig) -> Vec<Finding> {
    if config.provider == Provider::None {
        return vec![agent_finding(
            "no-snapshot",
            false,
            "This host migrates without a snapshot".into(),
            "Its configuration has snapshots disabled: a failed change cannot be rolled back."
                .into(),
            "Enable LVM snapshots in the agent's configuration, or keep a backup.",
        )];
    }
    if config.provider == Provider::Command {
        return match config.command.as_deref() {
            Some(path) if path.starts_with('/') && host.read_file(path).is_ok() => Vec::new(),
            other => vec![agent_finding(
                "snapshot-hook-missing",
                true,
                "The snapshot hook is not installed".into(),
                format!(
                    "The configured snapshot command {other:?} is not an installed absolute path."
                ),
                "Install the site's snapshot hook, or fix `command` under [snapshot].",
            )],
        };
    }
    match snapshot::capacity(host, config) {
        Ok(groups) => groups
            .into_iter()
            .filter(|(_, needed, free)| needed > free)
            .map(|(vg, needed, free)| {
                agent_finding(
                    "snapshot-capacity",
                    true,
                    format!("Not enough free space in volume group {vg} for the snapshots"),
                    format!("The snapshots need {} MiB; {vg} has {} MiB free.", needed / MIB, free / MIB),
                    "Add a physical volume to the volume group, or lower size_percent in the agent's configuration.",
                )
            })
            .collect(),
        Err(reason) => vec![agent_finding(
            "snapshot-unavailable",
            true,
            "The change cannot be protected by an LVM snapshot".into(),
            reason,
            "Put the system on LVM, or configure the snapshot provider none for this host.",
        )],
    }
}

fn own_checks(facts: &Facts, tool: MigrationTool) -> Vec<Finding> {
    let mut findings = Vec::new();
    let installed = match tool {
        MigrationTool::Convert2rhel => facts.packages.contains_key("convert2rhel"),
        MigrationTool::Leapp => {
            facts.packages.contains_key("leapp")
                && facts
                    .packages
                    .keys()
                    .any(|p| p.starts_with("leapp-upgrade"))
        }
    };
    if !installed && facts.package_count.is_some() {
        findings.push(agent_finding(
            "tool-missing",
            true,
            format!("{tool} is not installed"),
            format!("The packages of {tool} are not installed on this host."),
            match tool {
                MigrationTool::Convert2rhel => "yum install convert2rhel",
                MigrationTool::Leapp => "yum install leapp-upgrade",
            },
        ));
    }
    for path in ["/var", "/boot"] {
        let Some(needed) = space_needed(tool, path) else {
            continue;
        };
        match facts.filesystems.iter().find(|fs| fs.path == path) {
            Some(fs) if fs.free_bytes < needed => findings.push(agent_finding(
                &format!("space{}", path.replace('/', "-")),
                true,
                format!("Not enough free space in {path}"),
                format!(
                    "{path} has {} MiB free; {tool} needs at least {} MiB.",
                    fs.free_bytes / MIB,
                    needed / MIB
                ),
                "Free space or grow the filesystem, then run the pre-check again.",
            )),
            Some(_) => {}
            None => findings.push(agent_finding(
                &format!("space-unknown{}", path.replace('/', "-")),
                false,
                format!("Free space in {path} is unknown"),
                format!("The agent could not read the free space of {path}."),
                "Check the free space by hand before migrating.",
            )),
        }
    }
    findings
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::host::emulated::{Failure, ScenarioFinding};
    use crate::host::{EmulatedHost, SimHostSpec, SimProfile};

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
        let host =
            EmulatedHost::simulated(&spec(SimProfile::Rhel79, vec![finding("k-info", false)]));
        let outcome = run(
            &host,
            MigrationTool::Leapp,
            "8.10",
            &SnapshotConfig::default(),
        );
        assert_eq!(outcome.state, State::Succeeded, "{outcome:?}");
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
        let outcome = run(
            &host,
            MigrationTool::Leapp,
            "8.10",
            &SnapshotConfig::default(),
        );
        assert_eq!(outcome.state, State::Succeeded);
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
            MigrationTool::Convert2rhel,
            "7.9",
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
            MigrationTool::Convert2rhel,
            "7.9",
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
            MigrationTool::Convert2rhel,
            "7.9",
            &SnapshotConfig::default(),
        );
        assert_eq!(outcome.state, State::Failed);
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
        let outcome = run(
            &host,
            MigrationTool::Leapp,
            "8.10",
            &SnapshotConfig::default(),
        );
        assert_eq!(outcome.state, State::Succeeded);
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
        let outcome = run(
            &host,
            MigrationTool::Leapp,
            "8.10",
            &SnapshotConfig::default(),
        );
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
        let outcome = run(&host, MigrationTool::Leapp, "8.10", &none);
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
        let outcome = run(
            &host,
            MigrationTool::Leapp,
            "9.6",
            &SnapshotConfig::default(),
        );
        assert_eq!(outcome.state, State::Failed);
        assert!(outcome.detail.contains("in one run"), "{}", outcome.detail);
    }

    /// The simulated host's files written to a directory with `scenario`, opened
    /// as a real `mf-agent run --host-root` would.
    fn with_scenario(
        spec: &SimHostSpec,
        scenario: crate::host::emulated::Scenario,
    ) -> (tempfile::TempDir, EmulatedHost) {
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
}
