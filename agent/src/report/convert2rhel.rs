//! `/var/log/convert2rhel/convert2rhel-{pre,post}-conversion.json`:
//! `{"format_version", "status", "actions": {ID: {"result": ITEM, "messages": [ITEM]}}}`.
//! There is no "inhibitor" level: SKIP, OVERRIDABLE and ERROR results all block
//! a conversion. `diagnosis` and `remediations` carry `{{name}}` placeholders
//! filled from `variables`. A SKIP result is an action that did not run
//! because one it depends on failed: beside that root cause it is reported
//! but not counted as a blocker of its own (the host stays blocked by the
//! root cause), so that fleet-wide counts show one cause per host.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Finding, Remediation, ReportError, Severity, Source, check_size};

#[derive(Debug, Deserialize)]
struct Report {
    format_version: String,
    #[allow(dead_code)] // read for shape; findings carry the levels
    status: String,
    actions: BTreeMap<String, Action>,
}

#[derive(Debug, Deserialize)]
struct Action {
    result: Item,
    #[serde(default)]
    messages: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    level: Level,
    id: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    diagnosis: String,
    #[serde(default)]
    remediations: String,
    #[serde(default)]
    variables: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Level {
    Success,
    Info,
    Warning,
    Skip,
    Overridable,
    Error,
}

pub fn parse(bytes: &[u8]) -> Result<Vec<Finding>, ReportError> {
    check_size(bytes)?;
    let report: Report = serde_json::from_slice(bytes)?;
    if !report.format_version.starts_with("1.") {
        return Err(ReportError::Invalid(format!(
            "unsupported format_version {:?}",
            report.format_version
        )));
    }
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    for (action_id, action) in report.actions {
        for item in std::iter::once(action.result).chain(action.messages) {
            let skip = item.level == Level::Skip;
            if let Some(finding) = finding(&action_id, item) {
                if skip {
                    skipped.push(findings.len());
                }
                findings.push(finding);
            }
        }
    }
    let root_cause = findings
        .iter()
        .enumerate()
        .any(|(i, f)| f.blocking && !skipped.contains(&i));
    if root_cause {
        for i in skipped {
            findings[i].blocking = false;
        }
    }
    Ok(findings)
}

fn finding(action_id: &str, item: Item) -> Option<Finding> {
    let (severity, blocking) = match item.level {
        Level::Success => return None,
        Level::Info => (Severity::Info, false),
        Level::Warning => (Severity::Medium, false),
        Level::Skip => (Severity::Medium, true),
        Level::Overridable | Level::Error => (Severity::High, true),
    };
    let diagnosis = fill(&item.diagnosis, &item.variables);
    let remediation = fill(&item.remediations, &item.variables);
    Some(Finding {
        source: Source::Convert2rhel,
        key: format!("{action_id}::{}", item.id),
        severity,
        blocking,
        title: item.title,
        summary: if diagnosis.is_empty() {
            item.description
        } else {
            diagnosis
        },
        remediations: if remediation.trim().is_empty() {
            Vec::new()
        } else {
            vec![Remediation::Hint(remediation)]
        },
    })
}

/// Replaces `{{name}}` (spaces inside the braces allowed) with the variable's
/// value; an unknown placeholder stays as it is.
fn fill(template: &str, variables: &BTreeMap<String, serde_json::Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        match variables.get(name) {
            Some(serde_json::Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn result(action: &str, level: &str, id: &str) -> String {
        format!(
            r#""{action}": {{"result": {{"level": "{level}", "id": "{id}", "title": "t {action}",
               "description": "d", "diagnosis": "", "remediations": "", "variables": {{}}}}, "messages": []}}"#
        )
    }

    #[test]
    fn skipped_dependants_count_once_through_their_root_cause() {
        let report = format!(
            r#"{{"format_version": "1.1", "status": "ERROR", "actions": {{{}, {}, {}}}}}"#,
            result("SUBSCRIBE_SYSTEM", "ERROR", "SYSTEM_NOT_REGISTERED"),
            result("PACKAGE_UPDATES", "SKIP", "SKIP"),
            result("ENSURE_KERNEL_MODULES_COMPATIBILITY", "SKIP", "SKIP"),
        );
        let findings = parse(report.as_bytes()).expect("parses");
        let blocking: Vec<&str> = findings
            .iter()
            .filter(|f| f.blocking)
            .map(|f| f.key.as_str())
            .collect();
        assert_eq!(blocking, ["SUBSCRIBE_SYSTEM::SYSTEM_NOT_REGISTERED"]);
        assert_eq!(findings.len(), 3, "the skipped actions are still reported");

        // Skips with no failed action beside them still block.
        let only_skips = format!(
            r#"{{"format_version": "1.1", "status": "SKIP", "actions": {{{}}}}}"#,
            result("PACKAGE_UPDATES", "SKIP", "SKIP"),
        );
        let findings = parse(only_skips.as_bytes()).expect("parses");
        assert!(findings.iter().all(|f| f.blocking));
    }

    /// A pre-conversion report in the shape of schema 1.2 (format_version 1.1).
    pub(crate) const SAMPLE: &str = r#"{
      "format_version": "1.1",
      "status": "ERROR",
      "actions": {
        "CONVERT2RHEL_LATEST_VERSION": {
          "result": {"level": "SUCCESS", "id": "SUCCESS", "title": "", "description": "", "diagnosis": "", "remediations": "", "variables": {}},
          "messages": []
        },
        "IS_LOADED_KERNEL_LATEST": {
          "result": {"level": "OVERRIDABLE", "id": "INVALID_KERNEL_VERSION", "title": "Invalid kernel version detected",
            "description": "The loaded kernel version mismatch the latest one available in the enabled system repositories",
            "diagnosis": "The version of the loaded kernel is different from the latest version in the enabled system repositories.\n Latest kernel version available in {{ repos }}: {{latest}}\n Loaded kernel version: {{loaded}}",
            "remediations": "To proceed with the conversion, update the kernel version by executing the following step:\n\n1. yum install {{ latest }} -y\n2. reboot",
            "variables": {"repos": "baseos", "latest": "kernel-3.10.0-1160.119.1.el7", "loaded": "kernel-3.10.0-1160.el7"}},
          "messages": []
        },
        "PACKAGE_UPDATES": {
          "result": {"level": "SUCCESS", "id": "SUCCESS", "title": "", "description": "", "diagnosis": "", "remediations": "", "variables": {}},
          "messages": [{"level": "WARNING", "id": "OUT_OF_DATE_PACKAGES", "title": "Outdated packages detected",
            "description": "Please refer to the diagnosis for further information", "diagnosis": "The system has 12 package(s) not updated.",
            "remediations": "Run yum update to update all the packages on the system.", "variables": {"count": 12}}]
        }
      }
    }"#;

    #[test]
    fn results_block_messages_inform_and_placeholders_are_filled() {
        let findings = parse(SAMPLE.as_bytes()).expect("parses");
        assert_eq!(
            findings.len(),
            2,
            "SUCCESS results are not findings: {findings:#?}"
        );
        let kernel = &findings[0];
        assert_eq!(
            kernel.key,
            "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION"
        );
        assert!(kernel.blocking);
        assert_eq!(kernel.severity, Severity::High);
        assert!(
            kernel
                .summary
                .contains("available in baseos: kernel-3.10.0-1160.119.1.el7"),
            "{}",
            kernel.summary
        );
        assert!(
            matches!(&kernel.remediations[..], [Remediation::Hint(h)] if h.contains("yum install kernel-3.10.0-1160.119.1.el7 -y"))
        );
        let outdated = &findings[1];
        assert!(!outdated.blocking);
        assert_eq!(outdated.severity, Severity::Medium);
    }

    #[test]
    fn skip_overridable_and_error_all_block() {
        for (level, severity) in [
            ("SKIP", Severity::Medium),
            ("OVERRIDABLE", Severity::High),
            ("ERROR", Severity::High),
        ] {
            let report = format!(
                r#"{{"format_version": "1.1", "status": "{level}", "actions": {{"A": {{"result":
                {{"level": "{level}", "id": "X", "title": "t", "description": "d", "diagnosis": "", "remediations": "", "variables": {{}}}}}}}}}}"#
            );
            let findings = parse(report.as_bytes()).expect("parses");
            assert!(findings[0].blocking, "{level}");
            assert_eq!(findings[0].severity, severity, "{level}");
            assert_eq!(
                findings[0].summary, "d",
                "an empty diagnosis falls back to the description"
            );
        }
    }

    #[test]
    fn templates_leave_unknown_placeholders_and_stray_braces_alone() {
        let vars: BTreeMap<String, serde_json::Value> =
            [("a".to_string(), serde_json::json!(1))].into();
        assert_eq!(
            fill("x {{a}} {{ b }} {{unclosed", &vars),
            "x 1 {{ b }} {{unclosed"
        );
    }

    #[test]
    fn an_unregistered_host_blocks_on_its_causes_and_reports_the_skips_after_them() {
        let findings =
            parse(&crate::fixtures::own("convert2rhel/pre-conversion.json")).expect("parses");
        let keys: Vec<(&str, bool)> = findings
            .iter()
            .map(|f| (f.key.as_str(), f.blocking))
            .collect();
        assert_eq!(
            keys,
            [
                ("ENSURE_KERNEL_MODULES_COMPATIBILITY::SKIP", false),
                ("IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION", true),
                ("LIST_THIRD_PARTY_PACKAGES::SKIP", false),
                ("PACKAGE_UPDATES::OUT_OF_DATE_PACKAGES", false),
                ("SUBSCRIBE_SYSTEM::SYSTEM_NOT_REGISTERED", true),
            ]
        );
        let outdated = &findings[3];
        assert_eq!(outdated.summary, "The system has 4 package(s) not updated.");
    }

    #[test]
    fn malformed_reports_are_clear_errors() {
        for (bad, expected) in [
            (
                r#"{"format_version": "2.0", "status": "SUCCESS", "actions": {}}"#,
                "unsupported format_version",
            ),
            (
                r#"{"format_version": "1.1", "status": "SUCCESS", "actions": {"A": {"result": {"level": "FATAL", "id": "x", "title": "t"}}}}"#,
                "unknown variant",
            ),
            (
                r#"{"format_version": "1.1", "status": "SUCCESS"}"#,
                "missing field `actions`",
            ),
            ("[]", "expected struct Report"),
        ] {
            let err = parse(bad.as_bytes()).expect_err("malformed");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
