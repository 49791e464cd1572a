//! `leapp preupgrade`, `leapp upgrade [--reboot]` and `leapp answer`, as
//! oamg/leapp and leapp-repository behave:
//! - Usage errors exit 2 with argparse's message and no report; a held lock
//!   (`/var/run/leapp.pid`) exits 1.
//! - The upgrade paths are the installed leapp-repository's
//!   `upgrade_paths.json`; the package must be the one for this major
//!   (`leapp-upgrade-el7toel8` on EL7...). An unsupported `--target` is an
//!   inhibitor in the report, not a usage error.
//! - Inhibitors and errors both exit 1. The report is schema 1.1.0 unless
//!   `--report-schema` says otherwise; 1.1.0 marks inhibitors in `flags` and
//!   drops the `error` group altogether, 1.2.0 has `groups` with both.
//! - An actor that raises is an error: the run goes on to write its report
//!   (with an error entry) and exits 1.
//! - A dialog left unanswered in `/var/log/leapp/answerfile` raises "Missing
//!   required answers in the answer file"; `leapp answer --section s.o=v`
//!   records an answer.
//! - `upgrade` without inhibitors adds the boot entry titled
//!   RHEL-Upgrade-Initramfs (kernel `/boot/vmlinuz-upgrade.x86_64`) as the
//!   default, and asks for a reboot (or reboots with `--reboot`).
//! - Every preupgrade and upgrade run appends to `/etc/migration-results`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::bootloader;
use super::results;
use super::scenario::{Failure, ScenarioFinding};
use super::tree::{LockFile, Tree};
use super::{CommandOutput, EmulatedHost};

pub const REPORT: &str = "/var/log/leapp/leapp-report.json";
const REPORT_TXT: &str = "/var/log/leapp/leapp-report.txt";
pub const ANSWERFILE: &str = "/var/log/leapp/answerfile";
const LOCK: &str = "/var/run/leapp.pid";
/// Where leapp-repository installs its upgrade paths.
pub const UPGRADE_PATHS: &str = "/etc/leapp/repos.d/system_upgrade/common/files/upgrade_paths.json";

fn usage(message: &str) -> CommandOutput {
    CommandOutput {
        status: 2,
        stdout: String::new(),
        stderr: format!(
            "usage: leapp [-h] [--version] {{answer,preupgrade,upgrade}} ...\nleapp: error: {message}\n"
        ),
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
    no_rhsm: bool,
}

/// Where RHSM registration shows.
const CONSUMER_CERT: &str = "/etc/pki/consumer/cert.pem";

const CHANNELS: [&str; 4] = ["ga", "e4s", "eus", "aus"];

fn parse(command: &str, args: &[&str]) -> Result<Options, String> {
    let mut args = args.iter();
    let mut options = Options {
        upgrade: command == "upgrade",
        reboot: false,
        target: None,
        schema: "1.1.0".into(),
        no_rhsm: false,
    };
    let value = |name: &str, args: &mut std::slice::Iter<'_, &str>| {
        args.next()
            .map(|v| v.to_string())
            .ok_or_else(|| format!("argument {name}: expected one argument"))
    };
    while let Some(arg) = args.next() {
        match *arg {
            "--target" => options.target = Some(value("--target", &mut args)?),
            "--report-schema" => {
                let schema = value("--report-schema", &mut args)?;
                if !["1.0.0", "1.1.0", "1.2.0"].contains(&schema.as_str()) {
                    return Err(format!(
                        "argument --report-schema: invalid choice: '{schema}' (choose from '1.0.0', '1.1.0', '1.2.0')"
                    ));
                }
                options.schema = schema;
            }
            "--channel" => {
                let channel = value("--channel", &mut args)?.to_lowercase();
                if !CHANNELS.contains(&channel.as_str()) {
                    return Err(format!(
                        "argument --channel: invalid choice: '{channel}' (choose from 'ga', 'e4s', 'eus', 'aus')"
                    ));
                }
            }
            "--enablerepo" => {
                value("--enablerepo", &mut args)?;
            }
            "--reboot" if options.upgrade => options.reboot = true,
            "--no-rhsm" => options.no_rhsm = true,
            "--debug"
            | "--verbose"
            | "--no-rhsm-facts"
            | "--nogpgcheck"
            | "--no-insights-register" => {}
            other => return Err(format!("unrecognized arguments: {other}")),
        }
    }
    Ok(options)
}

pub fn run(host: &EmulatedHost, args: &[&str]) -> CommandOutput {
    match args.split_first() {
        Some((&"answer", rest)) => answer(&host.tree, rest),
        Some((command @ (&"preupgrade" | &"upgrade"), rest)) => match parse(command, rest) {
            Ok(options) => check(host, args, options),
            Err(message) => usage(&message),
        },
        Some((other, _)) => usage(&format!(
            "argument subcommand: invalid choice: '{other}' (choose from 'answer', 'preupgrade', 'upgrade')"
        )),
        None => usage("too few arguments"),
    }
}

/// The targets the installed leapp-repository lists for `version`.
fn supported_targets(tree: &Tree, version: &str) -> Result<Vec<String>, String> {
    let bytes = tree
        .read(UPGRADE_PATHS)
        .map_err(|e| format!("cannot read the upgrade paths: {e}"))?;
    let paths: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{UPGRADE_PATHS} is not valid JSON: {e}"))?;
    let major = version.split('.').next().unwrap_or_default();
    let default = paths.pointer("/rhel/default");
    let list = default
        .and_then(|d| d.get(version))
        .or_else(|| default.and_then(|d| d.get(major)))
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(list)
}

/// The `leapp-upgrade-elXtoelY` package installed, when it is the one for
/// `major`.
fn repository_for(host: &EmulatedHost, major: &str) -> Result<(), String> {
    let installed: Vec<String> = host
        .installed()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("leapp-upgrade-el"))
        .collect();
    let wanted = format!("leapp-upgrade-el{major}toel");
    if installed.iter().any(|n| n.starts_with(&wanted)) {
        Ok(())
    } else {
        Err(format!(
            "No leapp-repository for RHEL {major} is installed (installed: {}); install leapp-upgrade-el{major}toel{}",
            if installed.is_empty() {
                "none".to_string()
            } else {
                installed.join(", ")
            },
            major.parse::<u32>().unwrap_or_default() + 1
        ))
    }
}

/// A report entry as leapp writes it.
struct Entry {
    title: String,
    summary: String,
    severity: String,
    key: String,
    inhibitor: bool,
    error: bool,
    remediations: Vec<Value>,
}

impl Entry {
    fn from_scenario(f: &ScenarioFinding) -> Self {
        let mut remediations: Vec<Value> = f
            .hint
            .iter()
            .map(|h| json!({"type": "hint", "context": h}))
            .collect();
        if let Some(dialog) = &f.answer {
            remediations.push(json!({
                "type": "command",
                "context": ["leapp", "answer", "--section", format!("{dialog}=True")],
            }));
        }
        Self {
            title: f.title.clone(),
            summary: f.summary.clone(),
            severity: f.severity.clone(),
            key: f.key.clone(),
            inhibitor: f.blocking && !f.error,
            error: f.error,
            remediations,
        }
    }

    /// One entry as leapp writes it: the run id is the report's, not the entry's.
    fn to_json(&self, schema: &str, hostname: &str) -> Value {
        let mut entry = json!({
            "title": self.title,
            "summary": self.summary,
            "severity": self.severity,
            "audience": "sysadmin",
            "key": self.key,
            "id": format!("{}{}", super::random_id(), super::random_id()),
            "timeStamp": super::now_rfc3339(),
            "hostname": hostname,
            "actor": "mf_sim_check",
            "detail": {"remediations": self.remediations},
        });
        if schema == "1.2.0" {
            let mut groups = Vec::new();
            if self.inhibitor {
                groups.push("inhibitor");
            }
            if self.error {
                groups.push("error");
            }
            if !groups.is_empty() {
                entry["groups"] = json!(groups);
            }
        } else {
            // Schema 1.1.0 keeps the inhibitor flag and drops the error group.
            entry["tags"] = json!([]);
            entry["flags"] = json!(if self.inhibitor {
                vec!["inhibitor"]
            } else {
                Vec::new()
            });
        }
        entry
    }
}

/// The answerfile: `[section]` then `option = value` lines.
fn answers(tree: &Tree) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(&tree.read(ANSWERFILE).unwrap_or_default()).into_owned();
    let mut section = String::new();
    let mut found = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((option, value)) = line.split_once('=')
            && !line.starts_with('#')
        {
            found.insert(
                format!("{section}.{}", option.trim()),
                value.trim().to_string(),
            );
        }
    }
    found
}

fn write_answerfile(tree: &Tree, answers: &BTreeMap<String, String>) {
    let mut sections: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (dialog, value) in answers {
        let (section, option) = dialog.split_once('.').unwrap_or((dialog, ""));
        sections
            .entry(section)
            .or_default()
            .push((option, value.as_str()));
    }
    let mut text = String::new();
    for (section, options) in sections {
        text.push_str(&format!("[{section}]\n"));
        for (option, value) in options {
            text.push_str(&format!("{option} = {value}\n"));
        }
        text.push('\n');
    }
    let _ = tree.write(ANSWERFILE, text.as_bytes());
}

/// `leapp answer --section dialog.option=value[,...] [--add]`.
fn answer(tree: &Tree, args: &[&str]) -> CommandOutput {
    let mut sections = Vec::new();
    let mut add = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--section" => match args.next() {
                Some(value) => sections.extend(value.split(',').map(str::to_string)),
                None => return usage("argument --section: expected one argument"),
            },
            "--add" => add = true,
            other => return usage(&format!("unrecognized arguments: {other}")),
        }
    }
    if sections.is_empty() {
        return usage(
            "At least one dialog section must be specified, ex. --section dialog.option=mychoice",
        );
    }
    let mut parsed = Vec::new();
    for section in &sections {
        match section.split_once('=') {
            Some((dialog, value)) if dialog.contains('.') && !value.is_empty() => {
                parsed.push((dialog.to_string(), value.to_string()))
            }
            _ => {
                return usage(
                    "A bad formatted section has been passed. Expected format is dialog.option=mychoice",
                );
            }
        }
    }
    let mut current = answers(tree);
    let mut ignored = Vec::new();
    for (dialog, value) in parsed {
        if add || current.contains_key(&dialog) {
            current.insert(dialog, value);
        } else {
            ignored.push(dialog);
        }
    }
    write_answerfile(tree, &current);
    CommandOutput {
        status: 0,
        stdout: String::new(),
        stderr: if ignored.is_empty() {
            String::new()
        } else {
            format!(
                "WARNING: Only sections found in original userfile can be updated, ignoring {}\n",
                ignored.join(",")
            )
        },
    }
}

fn check(host: &EmulatedHost, argv: &[&str], options: Options) -> CommandOutput {
    let tree = &host.tree;
    let Some(_lock) = LockFile::acquire(tree, LOCK) else {
        return fail(&format!(
            "Leapp is already running (lock file {LOCK} exists); wait for it to finish"
        ));
    };
    let (os_id, version) = host.os();
    let major = version.split('.').next().unwrap_or_default().to_string();
    if os_id != "rhel" {
        return fail(&format!(
            "The system is {os_id} {version}: this leapp-repository upgrades Red Hat Enterprise Linux"
        ));
    }
    if let Err(reason) = repository_for(host, &major) {
        return fail(&reason);
    }
    if host.scenario.fails(Failure::ToolCrash) {
        return CommandOutput {
            status: 1,
            stdout: String::new(),
            stderr: "Traceback (most recent call last):\n  File \"/usr/bin/leapp\", line 9, in <module>\nRuntimeError: simulated crash before the workflow\n".into(),
        };
    }
    let supported = match supported_targets(tree, &version) {
        Ok(list) => list,
        Err(reason) => return fail(&reason),
    };
    let target = options
        .target
        .clone()
        .or_else(|| supported.last().cloned())
        .unwrap_or_default();
    if options.upgrade {
        host.scenario.durations.execute();
    } else {
        host.scenario.durations.precheck();
    }
    let run_id = super::random_id();
    let _ = tree.remove(REPORT);
    let _ = tree.remove(REPORT_TXT);

    let given = answers(tree);
    let mut entries: Vec<Entry> = host
        .scenario
        .findings
        .iter()
        .filter(|f| {
            f.answer
                .as_ref()
                .is_none_or(|dialog| given.get(dialog).is_none_or(String::is_empty))
        })
        .map(Entry::from_scenario)
        .collect();
    // checkrhsmsku: without --no-rhsm the host must be registered.
    if !options.no_rhsm && tree.read(CONSUMER_CERT).is_err() {
        entries.push(Entry {
            title: "The system is not registered or subscribed.".into(),
            summary: "The system has to be registered and subscribed to be able to proceed with \
                      the upgrade, unless the --no-rhsm option is specified when executing leapp."
                .into(),
            severity: "high".into(),
            key: "7b5e5f2c7fc2a1c4d3e9b8a6f5d4c3b2a1908f7e".into(),
            inhibitor: true,
            error: false,
            remediations: vec![json!({"type": "hint", "context":
                "Register your system with the subscription-manager tool and attach proper SKUs \
                 to be able to proceed the upgrade or use the --no-rhsm leapp option if you want \
                 to provide target repositories by yourself."})],
        });
    }
    if !supported.contains(&target) {
        entries.push(Entry {
            title: "Specified version of the target system is not supported".into(),
            summary: format!(
                "The in-place upgrade to the specified version ({target}) of the target system is not \
                 supported from the current system version. Supported target versions: {}",
                supported.join(", ")
            ),
            severity: "high".into(),
            key: "7f3b2c5a1d9e8f40b6c2a3d4e5f60718293a4b5c".into(),
            inhibitor: true,
            error: false,
            remediations: vec![json!({"type": "hint", "context":
                "Choose a supported version of the target OS for the upgrade."})],
        });
    }
    if host.scenario.fails(Failure::AnalysisCrash) {
        entries.push(Entry {
            title: "Actor mf_sim_check unexpectedly terminated with exit code: 1".into(),
            summary: "RuntimeError: simulated actor crash".into(),
            severity: "high".into(),
            key: "0d6c1b9e2f3a4b5c6d7e8f90a1b2c3d4e5f60718".into(),
            inhibitor: false,
            error: true,
            remediations: Vec::new(),
        });
    }
    // Dialogs still unanswered go into the answerfile with empty choices.
    let mut answerfile = given.clone();
    for finding in &host.scenario.findings {
        if let Some(dialog) = &finding.answer {
            answerfile.entry(dialog.clone()).or_default();
        }
    }
    write_answerfile(tree, &answerfile);

    let hostname = String::from_utf8_lossy(&tree.read("/etc/hostname").unwrap_or_default())
        .trim()
        .to_string();
    let report = match &host.scenario.report_file {
        Some(path) => match tree.read(path) {
            Ok(bytes) => bytes,
            Err(e) => return fail(&format!("cannot read the scenario's report file: {e}")),
        },
        None => serde_json::to_vec_pretty(&json!({
            "leapp_run_id": run_id,
            "entries": entries.iter().map(|e| e.to_json(&options.schema, &hostname)).collect::<Vec<_>>(),
        }))
        .unwrap_or_default(),
    };
    let (inhibitors, errors) = if host.scenario.report_file.is_some() {
        let (inhibitors, mut errors) = marked(&report);
        if host.scenario.fails(Failure::AnalysisCrash) {
            errors.push("RuntimeError: simulated actor crash".to_string());
        }
        (inhibitors, errors)
    } else {
        (
            entries
                .iter()
                .filter(|e| e.inhibitor)
                .map(|e| e.title.clone())
                .collect(),
            entries
                .iter()
                .filter(|e| e.error)
                .map(|e| e.summary.clone())
                .collect(),
        )
    };
    let failed = !inhibitors.is_empty() || !errors.is_empty();
    let _ = tree.write(REPORT, &report);
    let _ = tree.write(REPORT_TXT, text_report(&entries).as_bytes());
    let log = if options.upgrade {
        "/var/log/leapp/leapp-upgrade.log"
    } else {
        "/var/log/leapp/leapp-preupgrade.log"
    };
    let _ = tree.write(
        log,
        format!(
            "{} leapp {} (run {run_id})\n",
            super::now_rfc3339(),
            argv.join(" ")
        )
        .as_bytes(),
    );
    let prepared = options.upgrade && !failed;
    results::append(
        tree,
        results::leapp(
            if options.upgrade {
                "upgrade"
            } else {
                "preupgrade"
            },
            !failed,
            argv,
            &version,
            &target,
            &run_id,
            if prepared {
                "InterimPreparation"
            } else {
                "Reports"
            },
        ),
    );

    let mut stdout = String::from(
        "==> Processing phase `configuration_phase`\n==> Processing phase `FactsCollection`\n\
         ==> Processing phase `Checks`\n==> Processing phase `Reports`\n",
    );
    if !errors.is_empty() {
        stdout.push_str(
            "============================================================\n\
             \x20                          ERRORS\n\
             ============================================================\n\n",
        );
        for message in &errors {
            stdout.push_str(&format!(
                "{} [ERROR] Actor: mf_sim_check\nMessage: {message}\n",
                super::now_rfc3339(),
            ));
        }
        stdout.push_str(
            "\n============================================================\n\
             \x20                      END OF ERRORS\n\
             ============================================================\n",
        );
    }
    stdout.push_str(&format!(
        "\nDebug output written to {log}\n\n============================================================\n\
         \x20                     REPORT OVERVIEW\n============================================================\n\n"
    ));
    if !errors.is_empty() {
        stdout.push_str("Following errors occurred and the upgrade cannot continue:\n");
        for (i, message) in errors.iter().enumerate() {
            stdout.push_str(&format!(
                "    {}. Actor: mf_sim_check\n       Message: {message}\n",
                i + 1,
            ));
        }
        stdout.push('\n');
    }
    if !inhibitors.is_empty() {
        stdout.push_str("Upgrade has been inhibited due to the following problems:\n");
        for (i, title) in inhibitors.iter().enumerate() {
            stdout.push_str(&format!("    {}. {title}\n", i + 1));
        }
        stdout.push('\n');
    }
    stdout.push_str(&format!(
        "Reports summary:\n    Errors:                  {:5}\n    Inhibitors:              {:5}\n\n\
         Before continuing, review the full report below for details about discovered problems and \
         possible remediation instructions:\n    A report has been generated at {REPORT_TXT}\n    \
         A report has been generated at {REPORT}\n\n\
         ============================================================\n\
         \x20                  END OF REPORT OVERVIEW\n\
         ============================================================\n\n\
         Answerfile has been generated at {ANSWERFILE}\n",
        errors.len(),
        inhibitors.len()
    ));
    if prepared {
        prepare_reboot(host, &target, options.reboot);
        if !options.reboot {
            stdout.push_str("A reboot is required to continue. Please reboot your system.\n");
        }
    }
    CommandOutput {
        status: i32::from(failed),
        stdout,
        stderr: String::new(),
    }
}

/// The end of a successful `leapp upgrade` on the source system: the upgrade
/// kernel and initramfs, their boot entry made the default, the target kept
/// for the initramfs.
fn prepare_reboot(host: &EmulatedHost, target: &str, reboot: bool) {
    let tree = &host.tree;
    let _ = tree.write(bootloader::UPGRADE_KERNEL, b"upgrade kernel\n");
    let _ = tree.write(bootloader::UPGRADE_INITRD, b"upgrade initramfs\n");
    bootloader::remove_kernel(tree, bootloader::UPGRADE_KERNEL);
    bootloader::add(
        tree,
        bootloader::UPGRADE_TITLE,
        bootloader::UPGRADE_KERNEL,
        bootloader::UPGRADE_INITRD,
        true,
    );
    let _ = tree.remove(super::boot::UPGRADE_FAILED);
    let mut state = super::state::MachineState::load(tree);
    state.leapp_target = Some(target.to_string());
    state.reboot_pending |= reboot;
    state.save(tree);
}

/// Titles of the inhibitors and of the errors a report marks, in either schema.
fn marked(report: &[u8]) -> (Vec<String>, Vec<String>) {
    let entries = serde_json::from_slice::<Value>(report)
        .ok()
        .and_then(|v| v.get("entries").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let has = |e: &Value, field: &str, name: &str| {
        e.get(field)
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(name)))
    };
    let titles = |wanted: &dyn Fn(&Value) -> bool| {
        entries
            .iter()
            .filter(|e| wanted(e))
            .filter_map(|e| e.get("title").and_then(Value::as_str).map(str::to_string))
            .collect::<Vec<_>>()
    };
    (
        titles(&|e| has(e, "flags", "inhibitor") || has(e, "groups", "inhibitor")),
        titles(&|e| has(e, "groups", "error")),
    )
}

fn text_report(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "Risk Factor: {} {}\nTitle: {}\nSummary: {}\nKey: {}\n{}\n",
                e.severity,
                if e.error {
                    "(error)"
                } else if e.inhibitor {
                    "(inhibitor)"
                } else {
                    ""
                },
                e.title,
                e.summary,
                e.key,
                "-".repeat(40)
            )
        })
        .collect()
}
