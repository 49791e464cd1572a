//! The non-destructive readiness run of one migration step: the agent's own
//! checks (step possible, the tool for this hop installed, space in /var and
//! /boot), then the tool's pre-check (`convert2rhel analyze -y`, or the site's
//! answers then `leapp preupgrade --target X.Y --report-schema 1.2.0`). The
//! report decides; an exit 1 whose report blocks nothing is still a failure
//! (an error the report does not show), never a clean bill.

use super::snapshot::{self, Provider, SnapshotConfig};
use super::{Context, Outcome, leapp, subscription};
use crate::command::{Step, Tool, UpdateState};
use crate::facts::{self, Facts};
use crate::host::Host;
use crate::report::{self, Finding, Remediation, Severity, Source};
use mf_core::path;

const CONVERT2RHEL_REPORT: &str = "/var/log/convert2rhel/convert2rhel-pre-conversion.json";
const LEAPP_REPORT: &str = "/var/log/leapp/leapp-report.json";

const MIB: u64 = 1024 * 1024;
/// Space the tools need: leapp downloads the target's packages into /var, and
/// both write a new initramfs and kernel into /boot.
fn space_needed(tool: Tool, path: &str) -> Option<u64> {
    match (tool, path) {
        (Tool::Leapp, "/var") => Some(3072 * MIB),
        (Tool::Convert2rhel, "/var") => Some(1024 * MIB),
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
        state: UpdateState::Failed,
        detail,
        findings,
    }
}

pub fn run(host: &dyn Host, step: Step, context: &Context) -> Outcome {
    let tool = step.tool;
    let facts = facts::collect(host, &Default::default());
    let Some(os) = &facts.os else {
        return failed(
            "the operating system is unknown: /etc/os-release cannot be read".into(),
            Vec::new(),
        );
    };
    if let Err(reason) = path::check_step(&os.id, &os.version, step) {
        return failed(reason.to_string(), Vec::new());
    }
    let mut findings = own_checks(&facts, step, &os.version);
    findings.extend(snapshot_check(host, &context.snapshot));
    findings.extend(match tool {
        Tool::Convert2rhel => subscription::convert2rhel_path(host, &context.convert2rhel),
        Tool::Leapp => subscription::leapp_path(host, &context.leapp.content),
    });
    // Where the tool would refuse to run at all, it is not run.
    if let Some(reason) = findings.iter().find_map(|f| match f.key.as_str() {
        "agent::tool-missing" => Some(format!("{tool} is not installed")),
        "agent::subscription-file" => Some("convert2rhel would refuse its credentials file".into()),
        _ => None,
    }) {
        return Outcome {
            state: UpdateState::Succeeded,
            detail: format!("{reason}; its pre-check did not run"),
            findings,
        };
    }
    let (argv, report_path): (Vec<String>, &str) = match tool {
        Tool::Convert2rhel => (context.convert2rhel.argv("analyze"), CONVERT2RHEL_REPORT),
        Tool::Leapp => (
            leapp::argv("preupgrade", step.to, &context.leapp.content),
            LEAPP_REPORT,
        ),
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    if tool == Tool::Leapp
        && let Err(e) = leapp::apply_answers(host, &context.leapp.answers)
    {
        return failed(e, findings);
    }
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
            return failed(
                format!(
                    "{command} exited {} and wrote no report: {}",
                    output.status,
                    super::complaint(&output)
                ),
                findings,
            );
        }
    };
    let parsed = match tool {
        Tool::Convert2rhel => report::parse_convert2rhel(&bytes),
        Tool::Leapp => report::parse_leapp(&bytes),
    };
    match parsed {
        Ok(tool_findings) => {
            if output.status == 1 && !tool_findings.iter().any(|f| f.blocking) {
                findings.push(agent_finding(
                    "tool-failed",
                    true,
                    format!("{command} failed"),
                    format!(
                        "{command} exited 1 but its report marks nothing as blocking: an error the \
                         report does not show. Last output: {}",
                        super::complaint(&output)
                    ),
                    "Read the tool's log on the host, fix the cause, then run the pre-check again.",
                ));
            }
            findings.extend(tool_findings);
            let blocking = findings.iter().filter(|f| f.blocking).count();
            Outcome {
                state: UpdateState::Succeeded,
                detail: format!(
                    "{command} exited {}; {}, {blocking} blocking",
                    output.status,
                    mf_core::words::count(findings.len() as u64, "finding", "findings")
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
    if config.provider == Provider::AgentCommand {
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
            reason.to_string(),
            "Put the system on LVM, or configure the snapshot provider none for this host.",
        )],
    }
}

/// The packages this step needs that are missing, and those in the way: each
/// leapp hop has its own `leapp-upgrade-elXtoelY`, and they conflict with one
/// another (the upgrade does not install the next hop's).
fn tool_packages(facts: &Facts, step: Step, version: &str) -> (Vec<String>, Vec<String>) {
    let has = |name: &str| facts.packages.contains_key(name);
    match step.tool {
        Tool::Convert2rhel => (
            (!has("convert2rhel"))
                .then(|| "convert2rhel".to_string())
                .into_iter()
                .collect(),
            Vec::new(),
        ),
        Tool::Leapp => {
            let from = version.split('.').next().unwrap_or_default();
            let repository = format!("leapp-upgrade-el{from}toel{}", step.to.major);
            let missing = ["leapp", repository.as_str()]
                .into_iter()
                .filter(|p| !has(p))
                .map(str::to_string)
                .collect();
            let in_the_way = facts
                .packages
                .keys()
                .filter(|p| p.starts_with("leapp-upgrade-el") && **p != repository)
                .cloned()
                .collect();
            (missing, in_the_way)
        }
    }
}

fn own_checks(facts: &Facts, step: Step, version: &str) -> Vec<Finding> {
    let tool = step.tool;
    let mut findings = Vec::new();
    let (missing, in_the_way) = tool_packages(facts, step, version);
    if !missing.is_empty() && facts.package_count.is_some() {
        let installer = if version.starts_with('7') {
            "yum"
        } else {
            "dnf"
        };
        let mut remediations = Vec::new();
        if !in_the_way.is_empty() {
            remediations.push(Remediation::Command(
                [installer, "remove", "-y"]
                    .into_iter()
                    .map(str::to_string)
                    .chain(in_the_way.iter().cloned())
                    .collect(),
            ));
        }
        remediations.push(Remediation::Command(
            [installer, "install", "-y"]
                .into_iter()
                .map(str::to_string)
                .chain(missing.iter().cloned())
                .collect(),
        ));
        findings.push(Finding {
            source: Source::Agent,
            key: "agent::tool-missing".into(),
            severity: Severity::High,
            blocking: true,
            title: format!("{tool} for this step is not installed"),
            summary: format!(
                "{step} needs {} installed on this host{}.",
                missing.join(" and "),
                if in_the_way.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} (an earlier hop's) conflicts with it and must be removed first",
                        in_the_way.join(", ")
                    )
                }
            ),
            remediations,
        });
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
