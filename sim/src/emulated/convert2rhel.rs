//! `convert2rhel` 2.x: `analyze` (the non-destructive pre-check) and `convert`
//! (the default), as oamg/convert2rhel's main.py behaves:
//! - argparse refusals exit 2 with no report; invalid option combinations,
//!   a held lock and a crash before the checks exit 1 with no report.
//! - `analyze` exits 2 when an action failed only from 2.2.0 (0 before), and
//!   its activity in `/etc/migration-results` is a success either way.
//! - `convert` stopped by failed actions rolls back and exits 2 (all of 2.x),
//!   writing the pre-conversion report; a failure before the point of no
//!   return rolls back and exits 1; a rollback that fails leaves no report.
//! - After the point of no return only `convert2rhel-post-conversion.json`
//!   is written, on success as on failure.
//! - An action that raises becomes an ERROR `UNEXPECTED_ERROR` result; actions
//!   depending on a failed one are SKIP.
//! - The system is identified from `/etc/system-release`; everything is logged
//!   to stdout.

use serde_json::{Map, Value, json};

use super::results;
use super::scenario::{Failure, ScenarioFinding};
use super::tree::LockFile;
use super::{CommandOutput, EmulatedHost};

pub const REPORT: &str = "/var/log/convert2rhel/convert2rhel-pre-conversion.json";
const REPORT_TXT: &str = "/var/log/convert2rhel/convert2rhel-pre-conversion.txt";
const LOG: &str = "/var/log/convert2rhel/convert2rhel.log";
const LOCK: &str = "/var/run/lock/convert2rhel.pid";

fn fail(message: &str) -> CommandOutput {
    CommandOutput {
        status: 1,
        stdout: format!("[CRITICAL] {message}\nNo changes were made to the system.\n"),
        stderr: String::new(),
    }
}

/// argparse's refusal: exit 2, usage on stderr, nothing run, no report.
fn usage(message: &str) -> CommandOutput {
    CommandOutput {
        status: 2,
        stdout: String::new(),
        stderr: format!(
            "usage: convert2rhel [-h] [--version] {{convert,analyze}} ...\nconvert2rhel: error: {message}\n"
        ),
    }
}

#[derive(Default)]
struct Options {
    subcommand: Option<String>,
    assume_yes: bool,
    no_rhsm: bool,
    repos: Vec<String>,
    key: bool,
    org: bool,
    restart: bool,
    config_file: Option<String>,
}

enum Refused {
    Usage(String),
    Invalid(String),
}

fn parse(args: &[&str]) -> Result<Options, Refused> {
    let mut options = Options::default();
    let mut args = args.iter();
    let value = |name: &str, args: &mut std::slice::Iter<'_, &str>| {
        args.next()
            .map(|v| v.to_string())
            .ok_or_else(|| Refused::Usage(format!("argument {name}: expected one argument")))
    };
    while let Some(arg) = args.next() {
        match *arg {
            "analyze" | "convert" if options.subcommand.is_none() => {
                options.subcommand = Some((*arg).into())
            }
            "-y" | "--assumeyes" => options.assume_yes = true,
            "--els" | "--eus" | "--debug" => {}
            "-r" | "--restart" => options.restart = true,
            "--no-rhsm" => options.no_rhsm = true,
            "--enablerepo" => options.repos.push(value("--enablerepo", &mut args)?),
            "-k" | "--activationkey" => options.key = value(arg, &mut args).is_ok(),
            "-o" | "--org" => options.org = value(arg, &mut args).is_ok(),
            "-c" | "--config-file" => {
                options.config_file = Some(value("--config-file", &mut args)?);
            }
            other => return Err(Refused::Usage(format!("unrecognized arguments: {other}"))),
        }
    }
    if options.no_rhsm && options.repos.is_empty() {
        return Err(Refused::Invalid(
            "The --enablerepo option is required when --no-rhsm is used.".into(),
        ));
    }
    Ok(options)
}

/// "2.1.0" >= [2, 2]? Numerically per component.
fn version_at_least(version: &str, minimum: &[u32]) -> bool {
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.as_slice() >= minimum
}

/// `/etc/system-release`, which convert2rhel reads: name, version, codename.
fn system_release(host: &EmulatedHost) -> Option<(String, String, String)> {
    let text = String::from_utf8_lossy(&host.tree.read("/etc/system-release").ok()?).into_owned();
    let (name, rest) = text.trim().split_once(" release ")?;
    let mut words = rest.split_whitespace();
    let full = words.next()?;
    let version = full.split('.').take(2).collect::<Vec<_>>().join(".");
    let codename = words
        .next()
        .map(|w| w.trim_matches(|c| c == '(' || c == ')').to_string())
        .unwrap_or_default();
    Some((name.to_string(), version, codename))
}

pub fn run(host: &EmulatedHost, args: &[&str]) -> CommandOutput {
    let options = match parse(args) {
        Ok(options) => options,
        Err(Refused::Usage(message)) => return usage(&message),
        Err(Refused::Invalid(message)) => return fail(&message),
    };
    // `convert` is the default subcommand.
    let converting = options.subcommand.as_deref() != Some("analyze");
    if !options.assume_yes {
        return fail(
            "Continue with the system conversion? [y/n]: no answer on standard input; use -y to run unattended",
        );
    }
    let tree = &host.tree;
    // Credentials: /etc/convert2rhel.ini is read even without -c; the file
    // and the command line are merged, then key and org must pair.
    let mut options = options;
    for path in ["/etc/convert2rhel.ini"]
        .into_iter()
        .map(str::to_string)
        .chain(options.config_file.clone())
    {
        let Ok(mode) = tree.mode(&path) else {
            if options.config_file.as_deref() == Some(path.as_str()) {
                return fail(&format!("No such file or directory: {path}"));
            }
            continue;
        };
        if mode & 0o077 != 0 {
            return fail(&format!(
                "The {path} file must only be accessible by the owner (0600)"
            ));
        }
        let text = String::from_utf8_lossy(&tree.read(&path).unwrap_or_default()).into_owned();
        let has = |key: &str| {
            text.lines().any(|l| {
                l.split_once('=')
                    .is_some_and(|(k, v)| k.trim() == key && !v.trim().is_empty())
            })
        };
        options.key |= has("activation_key");
        options.org |= has("org");
    }
    if options.key != options.org {
        return fail(
            "Either the --org or the --activationkey option is missing. You can't use one without the other.",
        );
    }
    let subscribed = options.no_rhsm || (options.key && options.org);
    let Some(_lock) = LockFile::acquire(tree, LOCK) else {
        return CommandOutput {
            status: 1,
            stdout: format!(
                "[CRITICAL] Another copy of convert2rhel is running.\n\nTo make sure only one copy runs, the lock file {LOCK} is held.\n"
            ),
            stderr: String::new(),
        };
    };
    let Some((name, os_version, codename)) = system_release(host) else {
        return fail("Unable to read /etc/system-release: cannot tell which system this is");
    };
    let source_os = results::convert2rhel_os(&name, &codename, &os_version);
    let tool = host
        .installed()
        .into_iter()
        .find(|p| p.name == "convert2rhel");
    let version = tool.as_ref().map(|p| p.version.clone()).unwrap_or_default();
    let nevra = tool
        .map(|p| format!("convert2rhel-0:{}-{}.{}", p.version, p.release, p.arch))
        .unwrap_or_default();
    let record = |activity: &str, success: bool, target: Option<Value>| {
        results::append(
            tree,
            results::convert2rhel(activity, success, args, source_os.clone(), target, &nevra),
        );
    };
    if host.scenario.fails(Failure::ToolCrash) {
        return CommandOutput {
            status: 1,
            stdout: "[CRITICAL] Traceback (most recent call last):\n  File \"/usr/bin/convert2rhel\", line 9, in <module>\nRuntimeError: simulated crash while preparing\nNo changes were made to the system.\n".into(),
            stderr: String::new(),
        };
    }
    if converting {
        host.scenario.durations.execute();
    } else {
        host.scenario.durations.precheck();
    }
    let _ = tree.remove(REPORT);
    let _ = tree.remove(REPORT_TXT);
    let _ = tree.write(
        LOG,
        format!(
            "[{}] INFO - convert2rhel {} started\n",
            super::now_rfc3339(),
            if converting { "convert" } else { "analyze" }
        )
        .as_bytes(),
    );

    let report = match &host.scenario.report_file {
        Some(path) => match tree.read(path) {
            Ok(bytes) => bytes,
            Err(e) => return fail(&format!("cannot read the scenario's report file: {e}")),
        },
        None => build_report(
            &host.scenario.findings,
            host.scenario.fails(Failure::AnalysisCrash),
            !subscribed,
        ),
    };
    let failed_actions: Vec<String> = serde_json::from_slice::<Value>(&report)
        .ok()
        .and_then(|r| r.get("actions").and_then(Value::as_object).cloned())
        .map(|actions| {
            actions
                .iter()
                .filter(|(_, a)| {
                    matches!(
                        a.pointer("/result/level").and_then(Value::as_str),
                        Some("SKIP" | "OVERRIDABLE" | "ERROR")
                    )
                })
                .map(|(id, a)| {
                    format!(
                        "({}) {id}::{}",
                        a.pointer("/result/level")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        a.pointer("/result/id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let blocked = !failed_actions.is_empty();
    let mut stdout = String::from("\nPre-conversion analysis report\n");
    for line in &failed_actions {
        stdout.push_str(&format!("{line}\n"));
    }
    if converting && !blocked {
        return convert(host, &os_version, &record, stdout, options.restart);
    }
    // The analysis, or a conversion stopped by what it found: rolled back,
    // the pre-conversion report written.
    let _ = tree.write(REPORT, &report);
    let _ = tree.write(REPORT_TXT, text_report(&host.scenario.findings).as_bytes());
    stdout.push_str("Abnormal exit! Performing rollback ...\nRollback complete.\n");
    if converting {
        record("conversion", false, None);
        stdout.push_str("The conversion process failed.\n\nA problem was encountered during conversion and a rollback will be initiated to restore the system as the previous state.\n");
        return CommandOutput {
            status: 2,
            stdout,
            stderr: String::new(),
        };
    }
    // An analysis that ran to its end is a success, whatever it found.
    record("analysis", true, None);
    if blocked {
        stdout.push_str("The system is not ready for conversion: resolve the errors above and run the analysis again.\n");
    } else {
        stdout.push_str("No problems detected during the analysis!\n");
    }
    CommandOutput {
        status: if blocked && version_at_least(&version, &[2, 2]) {
            2
        } else {
            0
        },
        stdout,
        stderr: String::new(),
    }
}

pub const POST_REPORT: &str = "/var/log/convert2rhel/convert2rhel-post-conversion.json";
const OTHER_RELEASE_FILES: [&str; 4] = [
    "/etc/centos-release",
    "/etc/oracle-release",
    "/etc/rocky-release",
    "/etc/almalinux-release",
];

/// The conversion proper, after an analysis that found nothing blocking.
fn convert(
    host: &EmulatedHost,
    os_version: &str,
    record: &dyn Fn(&str, bool, Option<Value>),
    mut stdout: String,
    restart: bool,
) -> CommandOutput {
    let tree = &host.tree;
    let _ = tree.remove(POST_REPORT);
    if host.scenario.fails(Failure::RollbackFailure) {
        // Part-way through the pre-PONR changes, and the rollback fails: no
        // report at all, and what was changed stays changed.
        let _ = tree.write(
            "/etc/yum.repos.d/redhat.repo",
            b"# left behind by a failed rollback\n",
        );
        record("conversion", false, None);
        stdout.push_str("Abnormal exit! Performing rollback ...\n[CRITICAL] Rollback of system wasn't completed successfully.\nThe system is left in an undetermined state that Convert2RHEL cannot fix. It is strongly recommended to store the Convert2RHEL logs for later investigation, and restore the system from a backup.\n");
        return CommandOutput {
            status: 1,
            stdout,
            stderr: String::new(),
        };
    }
    if host.scenario.fails(Failure::ConversionBeforePonr) {
        let report = build_report(&host.scenario.findings, false, false);
        let _ = tree.write(REPORT, &report);
        record("conversion", false, None);
        stdout.push_str("[CRITICAL] Failed to download the RHEL packages (simulated)\nAbnormal exit! Performing rollback ...\nRollback complete.\n");
        return CommandOutput {
            status: 1,
            stdout,
            stderr: String::new(),
        };
    }
    let Some((os_release, redhat_release)) = super::profile::rhel_release_files(os_version) else {
        return fail(&format!("no RHEL release for version {os_version}"));
    };
    // The point of no return: packages are replaced from here on.
    let _ = tree.write("/etc/os-release", os_release.as_bytes());
    let _ = tree.write("/etc/redhat-release", redhat_release.as_bytes());
    let _ = tree.write("/etc/system-release", redhat_release.as_bytes());
    for path in OTHER_RELEASE_FILES {
        let _ = tree.remove(path);
    }
    if host.scenario.fails(Failure::ConversionAfterPonr) {
        let report = json!({
            "format_version": "1.1",
            "status": "ERROR",
            "actions": {"CONVERSION": {"result": item("ERROR", "PACKAGE_REPLACEMENT_FAILED",
                "Package replacement failed", "The conversion failed after the point of no return.",
                "Replacing the original packages failed part-way (simulated).", "Restore the system from a backup.")}},
        });
        let _ = tree.write(
            POST_REPORT,
            serde_json::to_vec_pretty(&report)
                .unwrap_or_default()
                .as_slice(),
        );
        record("conversion", false, None);
        stdout.push_str("The conversion process failed.\n\nThe system is left in an undetermined state that Convert2RHEL cannot fix. The system might not be fully converted, and might incorrectly be reporting as a Red Hat Enterprise Linux machine.\n");
        return CommandOutput {
            status: 1,
            stdout,
            stderr: String::new(),
        };
    }
    if let Some(kernel) = super::profile::rhel_kernel(os_version) {
        let _ = tree.write(&format!("/boot/vmlinuz-{kernel}"), b"kernel image\n");
        let _ = tree.write(&format!("/boot/initramfs-{kernel}.img"), b"initramfs\n");
        let major = os_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(7);
        let (name, version) = super::boot::os_name(tree);
        super::bootloader::install_kernel(tree, kernel, major, &name, &version);
        let (version, release) = kernel
            .trim_end_matches(".x86_64")
            .split_once('-')
            .unwrap_or((kernel, ""));
        super::boot::install(
            tree,
            &host.scenario,
            super::Package::new("kernel", version, release, "x86_64"),
            &[],
        );
    }
    let report = json!({
        "format_version": "1.1",
        "status": "SUCCESS",
        "actions": {"CONVERSION": {"result": success(), "messages": []}},
    });
    let _ = tree.write(
        POST_REPORT,
        serde_json::to_vec_pretty(&report)
            .unwrap_or_default()
            .as_slice(),
    );
    let target = system_release(host)
        .map(|(name, version, codename)| results::convert2rhel_os(&name, &codename, &version));
    record("conversion", true, target);
    stdout.push_str("\nConversion successful!\n");
    if restart {
        let mut state = super::state::MachineState::load(tree);
        state.reboot_pending = true;
        state.save(tree);
    } else {
        stdout.push_str("In order to boot the RHEL kernel, restart of the system is needed.\n");
    }
    CommandOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

fn item(
    level: &str,
    id: &str,
    title: &str,
    description: &str,
    diagnosis: &str,
    remediations: &str,
) -> Value {
    json!({
        "level": level,
        "id": id,
        "title": title,
        "description": description,
        "diagnosis": diagnosis,
        "remediations": remediations,
        "variables": {},
    })
}

fn success() -> Value {
    item("SUCCESS", "SUCCESS", "", "", "", "")
}

/// A report in the assessment schema: blocking findings are action results
/// (ERROR when high, else OVERRIDABLE) and the actions depending on them are
/// SKIP; others are messages (WARNING or INFO). A crashing action is an ERROR
/// `UNEXPECTED_ERROR` result.
fn build_report(findings: &[ScenarioFinding], crash: bool, unsubscribed: bool) -> Vec<u8> {
    let mut actions: Map<String, Value> = Map::new();
    for id in [
        "CONVERT2RHEL_LATEST_VERSION",
        "EFI",
        "READ_ONLY_MOUNTS_DETECTION",
    ] {
        actions.insert(id.into(), json!({"result": success(), "messages": []}));
    }
    let mut status = "SUCCESS";
    let raise = |status: &mut &str, level: &'static str| {
        let rank = |l: &str| {
            ["SUCCESS", "INFO", "WARNING", "SKIP", "OVERRIDABLE", "ERROR"]
                .iter()
                .position(|x| *x == l)
                .unwrap_or(0)
        };
        if rank(level) > rank(status) {
            *status = level;
        }
    };
    for finding in findings {
        let (action, id) = finding
            .key
            .split_once("::")
            .unwrap_or((&finding.key, &finding.key));
        let remediation = finding.hint.clone().unwrap_or_default();
        let entry = actions
            .entry(action.to_string())
            .or_insert_with(|| json!({"result": success(), "messages": []}));
        if finding.blocking {
            let level = if finding.severity == "high" {
                "ERROR"
            } else {
                "OVERRIDABLE"
            };
            entry["result"] = item(
                level,
                id,
                &finding.title,
                &finding.summary,
                &finding.summary,
                &remediation,
            );
            raise(&mut status, level);
            for dependant in &finding.skips {
                actions.insert(
                    dependant.clone(),
                    json!({"result": item(
                        "SKIP",
                        "SKIP",
                        "Skipped action",
                        "This action was skipped due to another action failing.",
                        &format!("Skipped because {action} was not successful"),
                        &format!("Please ensure that the {action} check passes so that this Action can evaluate your system"),
                    ), "messages": []}),
                );
                raise(&mut status, "SKIP");
            }
        } else {
            let level = if matches!(finding.severity.as_str(), "info" | "low") {
                "INFO"
            } else {
                "WARNING"
            };
            if let Some(messages) = entry["messages"].as_array_mut() {
                messages.push(item(
                    level,
                    id,
                    &finding.title,
                    &finding.summary,
                    &finding.summary,
                    &remediation,
                ));
            }
            raise(&mut status, level);
        }
    }
    if unsubscribed {
        // No credentials and no --no-rhsm: the subscription fails, and the
        // checks that need the RHEL repositories are skipped after it.
        actions.insert(
            "SUBSCRIBE_SYSTEM".into(),
            json!({"result": item(
                "ERROR",
                "SYSTEM_NOT_REGISTERED",
                "Not registered with RHSM",
                "The system is not registered and no credentials were given.",
                "convert2rhel needs an activation key and organisation (or a username and password) to register the system, or --no-rhsm with the RHEL repositories.",
                "Give an activation key and organisation through the config file (-c), or use --no-rhsm with --enablerepo.",
            ), "messages": []}),
        );
        raise(&mut status, "ERROR");
        for dependant in [
            "ENSURE_KERNEL_MODULES_COMPATIBILITY",
            "LIST_THIRD_PARTY_PACKAGES",
        ] {
            actions.insert(
                dependant.into(),
                json!({"result": item(
                    "SKIP",
                    "SKIP",
                    "Skipped action",
                    "This action was skipped due to another action failing.",
                    "Skipped because SUBSCRIBE_SYSTEM was not successful",
                    "Please ensure that the SUBSCRIBE_SYSTEM check passes so that this Action can evaluate your system",
                ), "messages": []}),
            );
        }
    }
    if crash {
        actions.insert(
            "IS_LOADED_KERNEL_LATEST".into(),
            json!({"result": item(
                "ERROR",
                "UNEXPECTED_ERROR",
                "Unhandled exception caught",
                "Unhandled exception was caught: simulated crash\nPlease file a bug at https://issues.redhat.com/ to have this fixed or a specific error message added.\nTraceback: RuntimeError: simulated crash",
                "",
                "",
            ), "messages": []}),
        );
        raise(&mut status, "ERROR");
    }
    serde_json::to_vec_pretty(&json!({
        "format_version": "1.1",
        "status": status,
        "actions": actions,
    }))
    .unwrap_or_default()
}

fn text_report(findings: &[ScenarioFinding]) -> String {
    let mut text = String::from("Pre-conversion analysis report\n\n");
    for f in findings {
        text.push_str(&format!(
            "{} {}: {}\n  {}\n",
            if f.blocking { "ERROR" } else { "WARNING" },
            f.key,
            f.title,
            f.summary
        ));
    }
    text
}
