//! Runs the step itself: `convert2rhel convert -y` or `leapp upgrade --target`.
//! Success means the tool finished and asks for the reboot that completes it;
//! the reports, not the exit codes alone, say what happened.

use crate::command::{Step, Tool};
use crate::facts;
use crate::host::Host;
use crate::report::{self, Finding};
use mf_core::path;

const C2R_PRE: &str = "/var/log/convert2rhel/convert2rhel-pre-conversion.json";
const C2R_POST: &str = "/var/log/convert2rhel/convert2rhel-post-conversion.json";
const LEAPP_REPORT: &str = "/var/log/leapp/leapp-report.json";
const UPGRADE_ENTRY: &str = "/boot/loader/entries/RHEL-Upgrade-Initramfs.conf";

/// How the tool run ended.
pub enum Executed {
    /// Done; a reboot completes it.
    Changed(String),
    /// The tool failed; `changed` says whether it may have changed the host.
    Failed {
        detail: String,
        findings: Vec<Finding>,
        changed: bool,
    },
}

pub fn run(host: &dyn Host, step: &Step) -> Executed {
    let facts = facts::collect(host, &Default::default());
    let Some(os) = &facts.os else {
        return Executed::Failed {
            detail: "the operating system is unknown".into(),
            findings: Vec::new(),
            changed: false,
        };
    };
    if let Err(reason) = path::check_step(&os.id, &os.version, *step) {
        return Executed::Failed {
            detail: reason.to_string(),
            findings: Vec::new(),
            changed: false,
        };
    }
    match step.tool {
        Tool::Convert2rhel => convert(host),
        Tool::Leapp => upgrade(host, &step.to.version()),
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
}

fn findings(
    host: &dyn Host,
    path: &str,
    parse: fn(&[u8]) -> Result<Vec<Finding>, report::ReportError>,
) -> Vec<Finding> {
    host.read_file(path)
        .ok()
        .and_then(|b| parse(&b).ok())
        .unwrap_or_default()
}

fn convert(host: &dyn Host) -> Executed {
    let _ = host.remove_file(C2R_POST);
    let output = match host.run(&["convert2rhel", "convert", "-y"]) {
        Ok(output) => output,
        Err(e) => {
            return Executed::Failed {
                detail: format!("cannot run convert2rhel: {e}"),
                findings: Vec::new(),
                changed: false,
            };
        }
    };
    // The post-conversion report exists only past the point of no return.
    let post = host.read_file(C2R_POST).ok();
    let post_findings = post
        .as_deref()
        .and_then(|b| report::parse_convert2rhel(b).ok())
        .unwrap_or_default();
    if output.status == 0 && post.is_some() && !post_findings.iter().any(|f| f.blocking) {
        return Executed::Changed(format!(
            "convert2rhel convert -y exited 0; {}",
            last_line(&output.stdout)
        ));
    }
    let changed = post.is_some();
    let mut all = findings(host, C2R_PRE, report::parse_convert2rhel);
    all.extend(post_findings);
    Executed::Failed {
        detail: format!(
            "convert2rhel convert -y exited {} {}: {}",
            output.status,
            if changed {
                "after the point of no return"
            } else {
                "before the point of no return (it undid its changes)"
            },
            last_line(if output.stderr.trim().is_empty() {
                &output.stdout
            } else {
                &output.stderr
            })
        ),
        findings: all.into_iter().filter(|f| f.blocking).collect(),
        changed,
    }
}

fn upgrade(host: &dyn Host, target: &str) -> Executed {
    let _ = host.remove_file(LEAPP_REPORT);
    let output = match host.run(&["leapp", "upgrade", "--target", target]) {
        Ok(output) => output,
        Err(e) => {
            return Executed::Failed {
                detail: format!("cannot run leapp: {e}"),
                findings: Vec::new(),
                changed: false,
            };
        }
    };
    let prepared = host.read_file(UPGRADE_ENTRY).is_ok();
    if output.status == 0 && prepared {
        return Executed::Changed(format!(
            "leapp upgrade --target {target} exited 0; {}",
            last_line(&output.stdout)
        ));
    }
    Executed::Failed {
        detail: format!(
            "leapp upgrade --target {target} exited {}: {}",
            output.status,
            last_line(&output.stderr)
        ),
        findings: findings(host, LEAPP_REPORT, report::parse_leapp)
            .into_iter()
            .filter(|f| f.blocking)
            .collect(),
        // leapp changes nothing before the reboot into the upgrade initramfs.
        changed: false,
    }
}
