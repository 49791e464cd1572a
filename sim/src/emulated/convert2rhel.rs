//! `convert2rhel` 2.x: `analyze` (the non-destructive pre-check) and `convert`
//! (the default). Exit codes: 0 success, 1 failure (crash, lock held, bad
//! options, a failed conversion), 2 inhibitors found; but `analyze` before
//! 2.1.0 returned 0 even with inhibitors, which the emulation reproduces from
//! the installed version. Writes `/var/log/convert2rhel/convert2rhel-pre-conversion.{json,txt}`
//! and, past the point of no return, `convert2rhel-post-conversion.json`, and
//! appends an activity to `/etc/migration-results`. Before the point of no
//! return a failed conversion undoes its changes; after it, nothing is undone.

use serde_json::{Map, Value, json};

use super::results::{self, Activity};
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
        stdout: String::new(),
        stderr: format!("{message}\n"),
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
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "analyze" | "convert" if options.subcommand.is_none() => {
                options.subcommand = Some((*arg).into())
            }
            "-y" | "--assumeyes" => options.assume_yes = true,
            "--els" | "--debug" => {}
            "-r" | "--restart" => options.restart = true,
            "--no-rhsm" => options.no_rhsm = true,
            "--enablerepo" => options
                .repos
                .push(args.next().ok_or("--enablerepo needs a value")?.to_string()),
            "-k" | "--activationkey" => options.key = args.next().is_some(),
            "-o" | "--org" => options.org = args.next().is_some(),
            "-c" | "--config-file" => {
                args.next().ok_or("--config-file needs a value")?;
            }
            other => {
                return Err(format!(
                    "convert2rhel: error: unrecognized arguments: {other}"
                ));
            }
        }
    }
    if options.key != options.org {
        return Err("Either the --org or the --activationkey option is missing. You can't use one without the other.".into());
    }
    if options.no_rhsm && options.repos.is_empty() {
        return Err("The --enablerepo option is required when --no-rhsm is used.".into());
    }
    Ok(options)
}

/// "2.0.0" < "2.1.0", numerically per component.
fn version_at_least(version: &str, minimum: &[u32]) -> bool {
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.as_slice() >= minimum
}

pub fn run(host: &EmulatedHost, args: &[&str]) -> CommandOutput {
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => return fail(&message),
    };
    // `convert` is the default subcommand.
    let converting = options.subcommand.as_deref() != Some("analyze");
    if !options.assume_yes {
        return fail(
            "Continue with the system conversion? [y/n]: no answer on standard input; use -y to run unattended",
        );
    }
    let tree = &host.tree;
    let Some(_lock) = LockFile::acquire(tree, LOCK) else {
        return fail("Another copy of convert2rhel is running.");
    };
    let (os_id, os_version) = host.os();
    let source_os = format!("{os_id} {os_version}");
    let target_os = format!("Red Hat Enterprise Linux {os_version}");
    if converting {
        host.scenario.durations.execute();
    } else {
        host.scenario.durations.precheck();
    }
    let run_id = super::random_id();
    let _ = tree.remove(REPORT);
    let _ = tree.remove(REPORT_TXT);
    let mut log = format!(
        "[{}] INFO - convert2rhel analyze started\n",
        super::now_rfc3339()
    );

    if host.scenario.fails(Failure::AnalysisCrash) {
        log.push_str(
            "CRITICAL - Traceback (most recent call last): RuntimeError: simulated crash\n",
        );
        let _ = tree.write(LOG, log.as_bytes());
        results::append(
            tree,
            Activity {
                activity: "analysis",
                success: false,
                source_os,
                target_os,
                run_id: &run_id,
                extra: json!({}),
            },
        );
        return CommandOutput {
            status: 1,
            stdout: "Pre-conversion analysis\n".into(),
            stderr: "Traceback (most recent call last):\n  File \"/usr/bin/convert2rhel\", line 9, in <module>\nRuntimeError: simulated crash\n".into(),
        };
    }

    let report = match &host.scenario.report_file {
        Some(path) => match tree.read(path) {
            Ok(bytes) => bytes,
            Err(e) => return fail(&format!("cannot read the scenario's report file: {e}")),
        },
        None => build_report(&host.scenario.findings),
    };
    let blocked = serde_json::from_slice::<Value>(&report)
        .ok()
        .and_then(|r| r.get("actions").and_then(Value::as_object).cloned())
        .is_some_and(|actions| {
            actions.values().any(|a| {
                matches!(
                    a.pointer("/result/level").and_then(Value::as_str),
                    Some("SKIP" | "OVERRIDABLE" | "ERROR")
                )
            })
        });
    let _ = tree.write(REPORT, &report);
    let _ = tree.write(REPORT_TXT, text_report(&host.scenario.findings).as_bytes());
    log.push_str("INFO - Pre-conversion analysis report written\n");
    let _ = tree.write(LOG, log.as_bytes());
    results::append(
        tree,
        Activity {
            activity: "analysis",
            success: !blocked,
            source_os,
            target_os,
            run_id: &run_id,
            extra: json!({}),
        },
    );

    let version = host
        .installed()
        .iter()
        .find(|p| p.name == "convert2rhel")
        .map(|p| p.version.clone())
        .unwrap_or_default();
    if converting {
        return convert(
            host,
            blocked,
            &version,
            &os_id,
            &os_version,
            &run_id,
            options.restart,
        );
    }
    let mut stdout = String::from("\n[Pre-conversion analysis report]\n");
    for finding in &host.scenario.findings {
        stdout.push_str(&format!(
            "{}: {}\n",
            if finding.blocking {
                "(ERROR)"
            } else {
                "(WARNING)"
            },
            finding.title
        ));
    }
    if blocked {
        stdout.push_str("The system is not ready for conversion: resolve the errors above and run the analysis again.\n");
    } else {
        stdout.push_str("No problems detected during the analysis!\n");
    }
    let status = if blocked && version_at_least(&version, &[2, 1]) {
        2
    } else {
        0
    };
    CommandOutput {
        status,
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

/// The conversion proper, after the analysis.
fn convert(
    host: &EmulatedHost,
    blocked: bool,
    tool_version: &str,
    os_id: &str,
    os_version: &str,
    run_id: &str,
    restart: bool,
) -> CommandOutput {
    let tree = &host.tree;
    let record = |success: bool| {
        results::append(
            tree,
            Activity {
                activity: "conversion",
                success,
                source_os: format!("{os_id} {os_version}"),
                target_os: format!("Red Hat Enterprise Linux {os_version}"),
                run_id,
                extra: json!({}),
            },
        );
    };
    if blocked {
        record(false);
        return CommandOutput {
            status: if version_at_least(tool_version, &[2, 1]) { 2 } else { 1 },
            stdout: "The conversion cannot proceed: inhibitors were found. See the pre-conversion report.
".into(),
            stderr: String::new(),
        };
    }
    let _ = tree.remove(POST_REPORT);
    if host.scenario.fails(Failure::ConversionBeforePonr) {
        record(false);
        return CommandOutput {
            status: 1,
            stdout: "Conversion failed.\nRolling back changes made by convert2rhel.\nRollback complete.\n".into(),
            stderr: "CRITICAL - Failed to download the RHEL packages (simulated)\n".into(),
        };
    }
    let Some((os_release, redhat_release)) = super::profile::rhel_release_files(os_version) else {
        return fail(&format!("no RHEL release for version {os_version}"));
    };
    // The point of no return: packages are replaced from here on.
    let _ = tree.write("/etc/os-release", os_release.as_bytes());
    let _ = tree.write("/etc/redhat-release", redhat_release.as_bytes());
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
        record(false);
        return CommandOutput {
            status: 1,
            stdout: String::new(),
            stderr: "CRITICAL - The conversion failed after the point of no return; the system is not in a consistent state.\n".into(),
        };
    }
    if let Some(kernel) = super::profile::rhel_kernel(os_version) {
        let _ = tree.write(&format!("/boot/vmlinuz-{kernel}"), b"kernel image\n");
        let _ = tree.write(&format!("/boot/initramfs-{kernel}.img"), b"initramfs\n");
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
    record(true);
    let mut stdout = String::from("Conversion successful!\n");
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
/// (ERROR when high, else OVERRIDABLE), others are messages (WARNING or INFO).
fn build_report(findings: &[ScenarioFinding]) -> Vec<u8> {
    let mut actions: Map<String, Value> = Map::new();
    for id in [
        "CONVERT2RHEL_LATEST_VERSION",
        "EFI",
        "READ_ONLY_MOUNTS_DETECTION",
    ] {
        actions.insert(id.into(), json!({"result": success(), "messages": []}));
    }
    let mut status = "SUCCESS";
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
            status = if level == "ERROR" || status == "ERROR" {
                "ERROR"
            } else {
                "OVERRIDABLE"
            };
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
            if status == "SUCCESS" || (status == "INFO" && level == "WARNING") {
                status = level;
            }
        }
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
