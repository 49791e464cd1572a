//! `leapp preupgrade --target X.Y` (the non-destructive pre-check) and `leapp
//! upgrade --target X.Y [--reboot]`, which runs the same checks and, without
//! inhibitors, prepares the `RHEL-Upgrade-Initramfs` boot entry and asks for a
//! reboot (the package upgrade runs at the next boot). Exit 0, or 1 when
//! inhibitors are found or it fails. Prints the report location lines that
//! automation keys on, writes `/var/log/leapp/leapp-report.{json,txt}` in report
//! schema 1.1.0 (default; blockers in `flags`) or 1.2.0 (`--report-schema`;
//! blockers in `groups`), the answerfile and the log, and appends an activity
//! to `/etc/migration-results`.

use serde_json::{Value, json};

use super::results::{self, Activity};
use super::scenario::{Failure, ScenarioFinding};
use super::tree::LockFile;
use super::{CommandOutput, EmulatedHost};

pub const REPORT: &str = "/var/log/leapp/leapp-report.json";
const REPORT_TXT: &str = "/var/log/leapp/leapp-report.txt";
const ANSWERFILE: &str = "/var/log/leapp/answerfile";
const LOG: &str = "/var/log/leapp/leapp-preupgrade.log";
const LOCK: &str = "/var/run/leapp.pid";

/// Upgrade paths of leapp-repository for RHEL (the archived RHEL 7 list and
/// the current one agree on these).
fn targets_from(version: &str) -> &'static [&'static str] {
    match version {
        "7.9" => &["8.10"],
        "8.10" => &["9.4", "9.6"],
        _ => &[],
    }
}

fn fail(message: &str) -> CommandOutput {
    CommandOutput {
        status: 1,
        stdout: String::new(),
        stderr: format!("{message}\n"),
    }
}

struct Options {
    upgrade: bool,
    reboot: bool,
    target: Option<String>,
    schema: String,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut args = args.iter();
    let upgrade = match args.next() {
        Some(&"preupgrade") => false,
        Some(&"upgrade") => true,
        Some(other) => {
            return Err(format!(
                "leapp: `{other}` is not available on this emulated host"
            ));
        }
        None => return Err("usage: leapp [-h] {answer,preupgrade,upgrade} ...".into()),
    };
    let mut options = Options {
        upgrade,
        reboot: false,
        target: None,
        schema: "1.1.0".into(),
    };
    while let Some(arg) = args.next() {
        match *arg {
            "--target" => {
                options.target = Some(args.next().ok_or("--target needs a value")?.to_string())
            }
            "--report-schema" => {
                let schema = args.next().ok_or("--report-schema needs a value")?;
                if !["1.0.0", "1.1.0", "1.2.0"].contains(schema) {
                    return Err(format!(
                        "leapp preupgrade: error: argument --report-schema: invalid choice: '{schema}'"
                    ));
                }
                options.schema = (*schema).into();
            }
            "--enablerepo" | "--channel" => {
                args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            }
            "--reboot" if options.upgrade => options.reboot = true,
            "--no-rhsm" | "--debug" | "--verbose" => {}
            other => {
                return Err(format!(
                    "leapp preupgrade: error: unrecognized arguments: {other}"
                ));
            }
        }
    }
    Ok(options)
}

pub fn run(host: &EmulatedHost, args: &[&str]) -> CommandOutput {
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => return fail(&message),
    };
    let tree = &host.tree;
    let Some(_lock) = LockFile::acquire(tree, LOCK) else {
        return fail("Leapp is already running (lock file /var/run/leapp.pid exists)");
    };
    let (os_id, version) = host.os();
    let supported = targets_from(&version);
    if os_id != "rhel" || supported.is_empty() {
        return fail(&format!(
            "Upgrade from {os_id} {version} is not supported by this leapp-repository"
        ));
    }
    let target = options
        .target
        .unwrap_or_else(|| supported[supported.len() - 1].to_string());
    if !supported.contains(&target.as_str()) {
        return fail(&format!(
            "Error: Target version {target} is not supported for upgrade from {version}. Supported: {}",
            supported.join(", ")
        ));
    }
    if options.upgrade {
        host.scenario.durations.execute();
    } else {
        host.scenario.durations.precheck();
    }
    let run_id = super::random_id();
    let _ = tree.remove(REPORT);
    let _ = tree.remove(REPORT_TXT);
    let mut log = format!(
        "{} leapp preupgrade --target {target} (run {run_id})\n",
        super::now_rfc3339()
    );
    let mut stdout = String::from(
        "==> Processing phase `configuration_phase`\n==> Processing phase `FactsCollection`\n\
         ==> Processing phase `Checks`\n==> Processing phase `Reports`\n",
    );
    let activity = |success: bool| Activity {
        activity: if options.upgrade {
            "upgrade"
        } else {
            "preupgrade"
        },
        success,
        source_os: format!("Red Hat Enterprise Linux {version}"),
        target_os: format!("Red Hat Enterprise Linux {target}"),
        run_id: &run_id,
        extra: json!({"env": {"LEAPP_CURRENT_PHASE": "Reports"}}),
    };

    if host.scenario.fails(Failure::AnalysisCrash) {
        log.push_str("Traceback (most recent call last): simulated actor crash\n");
        let _ = tree.write(LOG, log.as_bytes());
        results::append(tree, activity(false));
        return CommandOutput {
            status: 1,
            stdout,
            stderr: "Traceback (most recent call last):\n  leapp.exceptions.StopActorExecutionError: simulated crash\n".into(),
        };
    }

    let hostname = String::from_utf8_lossy(&tree.read("/etc/hostname").unwrap_or_default())
        .trim()
        .to_string();
    let report = match &host.scenario.report_file {
        Some(path) => match tree.read(path) {
            Ok(bytes) => bytes,
            Err(e) => return fail(&format!("cannot read the scenario's report file: {e}")),
        },
        None => build_report(&host.scenario.findings, &options.schema, &run_id, &hostname),
    };
    let inhibitors = inhibitor_titles(&report);
    let _ = tree.write(REPORT, &report);
    let _ = tree.write(REPORT_TXT, text_report(&host.scenario.findings).as_bytes());
    let _ = tree.write(
        ANSWERFILE,
        b"# Answers to questions asked by leapp actors; see leapp answer --help\n",
    );
    let _ = tree.write(LOG, log.as_bytes());
    // A successful upgrade records its activity at FirstBoot, after the reboots.
    if !(options.upgrade && inhibitors.is_empty()) {
        results::append(tree, activity(inhibitors.is_empty()));
    }

    stdout.push_str(&format!(
        "====> * check_{}\n\nDebug output written to {LOG}\n\n============================================================\n",
        run_id.get(..8).unwrap_or_default()
    ));
    if !inhibitors.is_empty() {
        stdout.push_str("                     UPGRADE INHIBITED\n============================================================\n\n");
        stdout.push_str("Upgrade has been inhibited due to the following problems:\n");
        for (i, title) in inhibitors.iter().enumerate() {
            stdout.push_str(&format!("    {}. Inhibitor: {title}\n", i + 1));
        }
        stdout.push_str("Consult the pre-upgrade report for details and possible remediation.\n\n");
    }
    stdout.push_str(&format!(
        "A report has been generated at {REPORT}\nA report has been generated at {REPORT_TXT}\n"
    ));
    if options.upgrade && inhibitors.is_empty() {
        // Ready for the upgrade initramfs: a one-shot boot entry and the next boot's work.
        let _ = tree.write(
            super::boot::UPGRADE_BOOT_ENTRY,
            b"title RHEL-Upgrade-Initramfs\nlinux /vmlinuz-upgrade.x86_64\n",
        );
        let _ = tree.write("/boot/initramfs-upgrade.x86_64.img", b"upgrade initramfs\n");
        let _ = tree.remove(super::boot::UPGRADE_FAILED);
        let mut state = super::state::MachineState::load(tree);
        state.at_boot.push(super::state::BootAction::LeappUpgrade {
            target: target.clone(),
        });
        state.reboot_pending |= options.reboot;
        state.save(tree);
        if !options.reboot {
            stdout.push_str("A reboot is required to continue. Please reboot your system.\n");
        }
    }
    CommandOutput {
        status: i32::from(!inhibitors.is_empty()),
        stdout,
        stderr: String::new(),
    }
}

/// Titles of the entries that block, in either schema.
fn inhibitor_titles(report: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(report) else {
        return Vec::new();
    };
    let Some(entries) = value.get("entries").and_then(Value::as_array) else {
        return Vec::new();
    };
    let marks = |e: &Value, field: &str, names: &[&str]| {
        e.get(field).and_then(Value::as_array).is_some_and(|list| {
            list.iter()
                .any(|v| v.as_str().is_some_and(|s| names.contains(&s)))
        })
    };
    entries
        .iter()
        .filter(|e| {
            marks(e, "flags", &["inhibitor"]) || marks(e, "groups", &["inhibitor", "error"])
        })
        .filter_map(|e| e.get("title").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn build_report(
    findings: &[ScenarioFinding],
    schema: &str,
    run_id: &str,
    hostname: &str,
) -> Vec<u8> {
    let entries: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut entry = json!({
                "title": f.title,
                "summary": f.summary,
                "severity": f.severity,
                "audience": "sysadmin",
                "key": f.key,
                "id": format!("{}{}", super::random_id(), super::random_id()),
                "timeStamp": super::now_rfc3339(),
                "hostname": hostname,
                "actor": "mf_sim_check",
                "detail": {
                    "remediations": f.hint.iter().map(|h| json!({"type": "hint", "context": h})).collect::<Vec<_>>(),
                },
            });
            if schema == "1.2.0" {
                if f.blocking {
                    entry["groups"] = json!(["inhibitor"]);
                }
            } else {
                entry["tags"] = json!([]);
                if f.blocking {
                    entry["flags"] = json!(["inhibitor"]);
                }
            }
            entry
        })
        .collect();
    serde_json::to_vec_pretty(&json!({"leapp_run_id": run_id, "entries": entries}))
        .unwrap_or_default()
}

fn text_report(findings: &[ScenarioFinding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "Risk Factor: {} {}\nTitle: {}\nSummary: {}\nKey: {}\n{}\n",
                f.severity,
                if f.blocking { "(inhibitor)" } else { "" },
                f.title,
                f.summary,
                f.key,
                "-".repeat(40)
            )
        })
        .collect()
}
