//! Runs the step itself: `convert2rhel convert -y` or `leapp upgrade --target`.
//! Success means the tool finished and asks for the reboot that completes it;
//! the reports, not the exit codes alone, say what happened. convert2rhel
//! writes only its post-conversion report once past the point of no return,
//! and no report at all when its own rollback failed; leapp is done when its
//! `RHEL-Upgrade-Initramfs` entry is the boot loader's default.

use super::bootloader;
use super::leapp::{self, LeappConfig};
use super::{Context, Convert2rhelConfig};
use crate::command::{Step, Tool};
use crate::facts;
use crate::host::Host;
use crate::report::{self, Finding};
use mf_core::path::{self, Target};

const C2R_PRE: &str = "/var/log/convert2rhel/convert2rhel-pre-conversion.json";
const C2R_POST: &str = "/var/log/convert2rhel/convert2rhel-post-conversion.json";
const LEAPP_REPORT: &str = "/var/log/leapp/leapp-report.json";
/// What convert2rhel prints when it stopped before changing anything.
const C2R_NOTHING_CHANGED: &str = "No changes were made to the system.";

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

pub fn run(host: &dyn Host, step: &Step, context: &Context) -> Executed {
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
        Tool::Convert2rhel => convert(host, &context.convert2rhel),
        Tool::Leapp => upgrade(host, step.to, &context.leapp),
    }
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

fn convert(host: &dyn Host, config: &Convert2rhelConfig) -> Executed {
    // Reports left by earlier runs must never pass for this run's.
    let _ = host.remove_file(C2R_POST);
    let _ = host.remove_file(C2R_PRE);
    let argv = config.argv("convert");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let output = match host.run(&argv) {
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
            super::tail(&output.stdout, 1)
        ));
    }
    let pre = host.read_file(C2R_PRE).ok();
    // Exit 2 is argparse or "failed actions, rolled back"; exit 1 with no
    // report at all is a crash before the checks (it says nothing was
    // changed) or a rollback that failed: then the host may have changed.
    let rollback_failed = post.is_none()
        && pre.is_none()
        && output.status == 1
        && !output.stdout.contains(C2R_NOTHING_CHANGED);
    let changed = post.is_some() || rollback_failed;
    let mut all = pre
        .as_deref()
        .and_then(|b| report::parse_convert2rhel(b).ok())
        .unwrap_or_default();
    all.extend(post_findings);
    let when = if post.is_some() {
        "after the point of no return"
    } else if rollback_failed {
        "with no report: its rollback failed or it stopped part-way"
    } else {
        "before the point of no return (it undid its changes)"
    };
    Executed::Failed {
        detail: format!(
            "convert2rhel convert -y exited {} {when}: {}",
            output.status,
            super::complaint(&output)
        ),
        findings: all.into_iter().filter(|f| f.blocking).collect(),
        changed,
    }
}

fn upgrade(host: &dyn Host, target: Target, config: &LeappConfig) -> Executed {
    let _ = host.remove_file(LEAPP_REPORT);
    if let Err(e) = leapp::apply_answers(host, &config.answers) {
        return Executed::Failed {
            detail: e,
            findings: Vec::new(),
            changed: false,
        };
    }
    let argv = leapp::argv("upgrade", target, &config.content);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let output = match host.run(&argv) {
        Ok(output) => output,
        Err(e) => {
            return Executed::Failed {
                detail: format!("cannot run leapp: {e}"),
                findings: Vec::new(),
                changed: false,
            };
        }
    };
    let command = argv.join(" ");
    let prepared = bootloader::default_entry(host);
    match &prepared {
        Ok(entry) if output.status == 0 && entry.is_upgrade() => {
            return Executed::Changed(format!(
                "{command} exited 0; the next boot is {entry}; {}",
                super::tail(&output.stdout, 1)
            ));
        }
        _ => {}
    }
    let why = match (&prepared, output.status) {
        (Ok(entry), 0) => format!("exited 0 but the default boot entry is {entry}, not leapp's"),
        (Err(e), 0) => format!("exited 0 but the boot loader cannot be read: {e}"),
        (_, status) => format!("exited {status}: {}", super::complaint(&output)),
    };
    Executed::Failed {
        detail: format!("{command} {why}"),
        findings: findings(host, LEAPP_REPORT, report::parse_leapp)
            .into_iter()
            .filter(|f| f.blocking)
            .collect(),
        // leapp changes nothing before the reboot into the upgrade initramfs.
        changed: false,
    }
}
