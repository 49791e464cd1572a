//! `convert2rhel` 2.x: `analyze` (the non-destructive pre-check). Exit codes: 0
//! success, 1 failure (crash, lock held, bad options), 2 inhibitors found; but
//! `analyze` before 2.1.0 returned 0 even with inhibitors, which the emulation
//! reproduces from the installed version. Writes
//! `/var/log/convert2rhel/convert2rhel-pre-conversion.{json,txt}` and appends an
//! activity to `/etc/migration-results`.

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
            "--els" | "--debug" | "-r" | "--restart" => {}
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
    if options.subcommand.as_deref() != Some("analyze") {
        return fail("convert2rhel: only `analyze` is available on this emulated host");
    }
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
    host.scenario.durations.precheck();
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
        .scenario
        .package("convert2rhel")
        .map(|p| p.version.clone())
        .unwrap_or_default();
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
