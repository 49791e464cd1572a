//! The emulated tools' reports against the formats of the real ones, over
//! generated mixes of findings (inhibitors, errors, hints, dialogs, skipped
//! actions, actors that raise) on every profile each tool runs on:
//!
//! - always, against the project's own fixtures of each format (written from
//!   the real tools' reports): every field the emulation writes, with its
//!   type, is one the fixtures have;
//! - and, where the published JSON schemas are kept beside the checkout (the
//!   project's build machine keeps leapp's report schemas 1.1.0 and 1.2.0
//!   and convert2rhel's assessment schema in `../shared/fixtures/real`; the
//!   project does not copy them), validated against them by the `jsonschema`
//!   Python package (Debian's python3-jsonschema, installed by scripts/test),
//!   with a control: a report with a required field removed must fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use mf_agent::host::Host;
use mf_sim::emulated::{Failure, ScenarioFinding};
use mf_sim::{EmulatedHost, SimHostSpec, SimProfile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LEAPP_1_1: &str = "leapp-report-json-schema-v110__oamg-leapp.json";
const LEAPP_1_2: &str = "leapp-report-json-schema-v120__oamg-leapp.json";
const CONVERT2RHEL: &str = "convert2rhel-assessment-json-schema-1.2__oamg-convert2rhel.json";

const VALIDATE: &str = r#"
import json, sys
from jsonschema import validators
failed = 0
pairs = sys.argv[1:]
for schema_path, doc_path in zip(pairs[0::2], pairs[1::2]):
    with open(schema_path) as f:
        schema = json.load(f)
    with open(doc_path) as f:
        doc = json.load(f)
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=str)
    for e in errors[:3]:
        print(f"{doc_path}: /{'/'.join(map(str, e.absolute_path))}: {e.message}")
    failed += bool(errors)
print(f"{failed} of {len(pairs) // 2} documents invalid")
sys.exit(1 if failed else 0)
"#;

fn published_schemas() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real");
    if dir.join(LEAPP_1_2).is_file() {
        eprintln!(
            "validating against the published schemas in {}",
            dir.display()
        );
        Some(dir)
    } else {
        eprintln!(
            "no published schemas beside the checkout: checked against the own fixtures only"
        );
        None
    }
}

/// Runs the validator over (schema, report) pairs: its exit status and output.
fn validate(pairs: &[(PathBuf, PathBuf)]) -> (bool, String) {
    let mut command = Command::new("python3");
    command.args(["-c", VALIDATE]);
    for (schema, doc) in pairs {
        command.arg(schema).arg(doc);
    }
    let output = command
        .output()
        .expect("python3 (scripts/test installs python3-jsonschema)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "the jsonschema module is missing (scripts/test installs python3-jsonschema): {text}"
    );
    (output.status.success(), text)
}

fn finding(rng: &mut StdRng, n: usize, convert2rhel: bool) -> ScenarioFinding {
    let key = if convert2rhel {
        let actions = [
            "SUBSCRIBE_SYSTEM",
            "IS_LOADED_KERNEL_LATEST",
            "RHEL_COMPATIBLE_KERNEL",
            "EUS",
        ];
        format!("{}::MESSAGE_{n}", actions[rng.gen_range(0..actions.len())])
    } else {
        format!("{:040x}", rng.r#gen::<u128>() ^ n as u128)
    };
    ScenarioFinding {
        key,
        title: format!("Finding {n}"),
        summary: if rng.gen_bool(0.8) {
            format!("What was found on this host ({n}).")
        } else {
            String::new()
        },
        severity: ["info", "low", "medium", "high"][rng.gen_range(0..4)].into(),
        blocking: rng.gen_bool(0.4),
        hint: rng.gen_bool(0.6).then(|| format!("Change {n} first.")),
        error: !convert2rhel && rng.gen_bool(0.15),
        answer: (!convert2rhel && rng.gen_bool(0.1))
            .then(|| "remove_pam_pkcs11_module_check.confirm".into()),
        skips: if convert2rhel && rng.gen_bool(0.3) {
            vec!["CONVERT_DEPENDENT".into()]
        } else {
            Vec::new()
        },
    }
}

/// A host of `profile` with random findings, maybe an analysis that raises.
fn host(rng: &mut StdRng, profile: SimProfile, convert2rhel: bool) -> EmulatedHost {
    let findings = (0..rng.gen_range(0..8))
        .map(|n| finding(rng, n, convert2rhel))
        .collect();
    let failures = if rng.gen_bool(0.2) {
        vec![Failure::AnalysisCrash]
    } else {
        Vec::new()
    };
    EmulatedHost::simulated(&SimHostSpec {
        findings,
        failures,
        ..SimHostSpec::example(profile)
    })
}

/// Runs the tool's pre-check and keeps its report under `dir`.
fn report(host: &EmulatedHost, argv: &[&str], report: &str, dir: &Path, name: &str) -> PathBuf {
    let ran = host.run(argv).expect("the emulated tool runs");
    let bytes = host
        .read_file(report)
        .unwrap_or_else(|e| panic!("{argv:?} exited {} without a report: {e}", ran.status));
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("written");
    path
}

/// Every field of a document as `path:type`, array items as `[]`, and the
/// keys of maps keyed by ids (convert2rhel's actions, variables) as `*`.
fn shape(value: &serde_json::Value, at: &str, out: &mut BTreeSet<String>) {
    use serde_json::Value;
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    out.insert(format!("{at}:{kind}"));
    match value {
        Value::Array(items) => items.iter().for_each(|v| shape(v, &format!("{at}[]"), out)),
        Value::Object(map) => {
            let keyed_by_id = at.ends_with(".actions") || at.ends_with(".variables");
            for (key, v) in map {
                let key = if keyed_by_id { "*" } else { key.as_str() };
                shape(v, &format!("{at}.{key}"), out);
            }
        }
        _ => {}
    }
}

fn own_fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("an own fixture")).expect("json")
}

/// The fields of `doc` that no fixture of its format has.
fn unknown_fields(doc: &Path, fixtures: &[&str]) -> Vec<String> {
    let mut known = BTreeSet::new();
    for fixture in fixtures {
        shape(&own_fixture(fixture), "", &mut known);
    }
    let mut seen = BTreeSet::new();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(doc).expect("read")).expect("a JSON report");
    shape(&doc, "", &mut seen);
    seen.difference(&known).cloned().collect()
}

#[test]
fn emulated_reports_have_the_real_formats_and_follow_the_published_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(0x5c4e);
    let mut pairs = Vec::new();
    for case in 0..40 {
        let (profile, target) =
            [(SimProfile::Rhel79, "8.10"), (SimProfile::Rhel810, "9.6")][case % 2];
        for (schema, flag) in [(LEAPP_1_1, None), (LEAPP_1_2, Some("1.2.0"))] {
            let host = host(&mut rng, profile, false);
            let mut argv = vec!["leapp", "preupgrade", "--target", target];
            if let Some(version) = flag {
                argv.extend(["--report-schema", version]);
            }
            let name = format!("leapp-{case}-{schema}");
            let path = report(
                &host,
                &argv,
                "/var/log/leapp/leapp-report.json",
                dir.path(),
                &name,
            );
            pairs.push((PathBuf::from(schema), path));
        }
        let profile = [
            SimProfile::Centos79,
            SimProfile::Oracle79,
            SimProfile::Rocky810,
        ][case % 3];
        let host = host(&mut rng, profile, true);
        let path = report(
            &host,
            &["convert2rhel", "analyze", "-y"],
            "/var/log/convert2rhel/convert2rhel-pre-conversion.json",
            dir.path(),
            &format!("convert2rhel-{case}.json"),
        );
        pairs.push((PathBuf::from(CONVERT2RHEL), path));
    }
    for (schema, report) in &pairs {
        let fixtures: &[&str] = match schema.file_name().and_then(|n| n.to_str()) {
            Some(LEAPP_1_1) => &["leapp/report-1.1.0.json"],
            Some(LEAPP_1_2) => &["leapp/report-1.2.0.json"],
            _ => &["convert2rhel/pre-conversion.json"],
        };
        let unknown = unknown_fields(report, fixtures);
        assert!(
            unknown.is_empty(),
            "{} has fields the {fixtures:?} fixtures do not: {unknown:#?}",
            report.display()
        );
    }
    let Some(schemas) = published_schemas() else {
        return;
    };
    let pairs: Vec<(PathBuf, PathBuf)> = pairs
        .into_iter()
        .map(|(schema, report)| (schemas.join(schema), report))
        .collect();
    let (valid, output) = validate(&pairs);
    eprint!("{output}");
    assert!(valid, "{output}");
    assert!(
        output.contains(&format!("0 of {} documents invalid", pairs.len())),
        "{output}"
    );

    // The control: the validator does refuse a report that breaks a schema.
    for (schema, field) in [(LEAPP_1_2, "entries"), (CONVERT2RHEL, "status")] {
        let (_, good) = pairs
            .iter()
            .find(|(s, _)| s.ends_with(schema))
            .expect("a report of that schema");
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(good).expect("read")).expect("json");
        doc.as_object_mut().expect("an object").remove(field);
        let broken = dir.path().join(format!("broken-{field}.json"));
        std::fs::write(&broken, doc.to_string()).expect("written");
        let (valid, output) = validate(&[(schemas.join(schema), broken)]);
        assert!(!valid, "a report without {field} passed: {output}");
        assert!(output.contains(field), "{output}");
    }
}
