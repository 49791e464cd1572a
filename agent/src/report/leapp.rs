//! `/var/log/leapp/leapp-report.json`: `{"leapp_run_id", "entries": [...]}`.
//! Schema 1.1.0 marks blockers in `flags` (`inhibitor`); 1.2.0 in `groups`
//! (`inhibitor` or `error`), and `groups` may be absent. Both are accepted.

use serde::Deserialize;

use super::{Finding, Remediation, ReportError, Severity, Source, check_size};

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    #[allow(dead_code)] // read for shape; the run id is not needed yet
    leapp_run_id: Option<String>,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    title: String,
    #[serde(default)]
    summary: String,
    severity: RawSeverity,
    key: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    detail: Detail,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawSeverity {
    Info,
    Low,
    Medium,
    High,
}

#[derive(Debug, Default, Deserialize)]
struct Detail {
    #[serde(default)]
    remediations: Vec<RawRemediation>,
}

#[derive(Debug, Deserialize)]
struct RawRemediation {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    context: serde_json::Value,
}

pub fn parse(bytes: &[u8]) -> Result<Vec<Finding>, ReportError> {
    check_size(bytes)?;
    let report: Report = serde_json::from_slice(bytes)?;
    report.entries.into_iter().map(finding).collect()
}

fn finding(entry: Entry) -> Result<Finding, ReportError> {
    let blocking = entry.flags.iter().any(|f| f == "inhibitor")
        || entry
            .groups
            .iter()
            .any(|g| g == "inhibitor" || g == "error");
    let key = entry
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ReportError::Invalid(format!("entry {:?} has no key", entry.title)))?;
    let remediations = entry
        .detail
        .remediations
        .into_iter()
        .filter_map(|r| match (r.kind.as_str(), r.context) {
            ("hint", serde_json::Value::String(text)) => Some(Remediation::Hint(text)),
            ("command", serde_json::Value::Array(argv)) => Some(Remediation::Command(
                argv.into_iter()
                    .map(|a| match a {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
            )),
            ("playbook", serde_json::Value::String(text)) => Some(Remediation::Playbook(text)),
            _ => None,
        })
        .collect();
    Ok(Finding {
        source: Source::Leapp,
        key,
        severity: match entry.severity {
            RawSeverity::Info => Severity::Info,
            RawSeverity::Low => Severity::Low,
            RawSeverity::Medium => Severity::Medium,
            RawSeverity::High => Severity::High,
        },
        blocking,
        title: entry.title,
        summary: entry.summary,
        remediations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures;

    #[test]
    fn a_schema_1_1_report_blocks_on_inhibitors_only() {
        let findings = parse(&fixtures::own("leapp/report-1.1.0.json")).expect("parses");
        assert_eq!(findings.len(), 9);
        let blocking: Vec<&str> = findings
            .iter()
            .filter(|f| f.blocking)
            .map(|f| f.title.as_str())
            .collect();
        assert_eq!(blocking.len(), 3, "{blocking:?}");
        assert!(blocking.contains(&"Missing required answers in the answer file"));
        assert!(findings.iter().all(|f| f.key.len() == 40));
        // A "failure" flag alone does not block in schema 1.1.0.
        let excluded = findings
            .iter()
            .find(|f| f.title == "Excluded target system repositories")
            .expect("entry");
        assert!(!excluded.blocking);
        assert_eq!(excluded.severity, Severity::Info);
        assert!(
            matches!(excluded.remediations.as_slice(), [Remediation::Hint(h)] if h.contains("--enablerepo"))
        );
        let answers = &findings[0];
        assert_eq!(
            answers.remediations[1],
            Remediation::Command(vec![
                "leapp".into(),
                "answer".into(),
                "--section".into(),
                "remove_pam_pkcs11_module_check.confirm=True".into()
            ])
        );

        // The tools' published samples, where the build machine keeps them:
        // checked in addition to the project's own fixture above.
        let Some(real) = fixtures::real_samples("a_schema_1_1_report_blocks_on_inhibitors_only")
        else {
            return;
        };
        let read = |name: &str| std::fs::read(real.join(name)).expect("real sample");
        let findings = parse(&read(
            "leapp-report__foreman_leapp__report_samples__schema-1.1.0.json",
        ))
        .expect("parses");
        assert_eq!(findings.len(), 15);
        assert_eq!(findings.iter().filter(|f| f.blocking).count(), 4);
        let excluded = findings
            .iter()
            .find(|f| f.title == "Excluded RHEL 8 repositories")
            .expect("entry");
        assert!(!excluded.blocking);
        assert_eq!(excluded.key, "a12013a95a6d305adc9f4f675186f89760af1a7e");

        let findings = parse(&read(
            "leapp-report__oamg-leapp__tests-stable-key__schema-1.1.0.json",
        ))
        .expect("parses");
        assert_eq!(findings.len(), 12);
        assert_eq!(findings.iter().filter(|f| f.blocking).count(), 2);
        assert!(findings.iter().all(|f| f.key.len() == 40));
    }

    #[test]
    fn a_schema_1_2_report_blocks_on_inhibitors_and_errors() {
        let findings = parse(&fixtures::own("leapp/report-1.2.0.json")).expect("parses");
        assert_eq!(findings.len(), 10);
        let blocking: Vec<&str> = findings
            .iter()
            .filter(|f| f.blocking)
            .map(|f| f.title.as_str())
            .collect();
        assert_eq!(blocking.len(), 4, "{blocking:?}");
        assert!(blocking.contains(&"Unable to collect the list of installed RPM packages"));
        let python = findings.last().expect("entries");
        assert!(python.title.starts_with("Difference in Python"));
        assert!(!python.blocking, "an entry without groups is not blocking");
    }

    #[test]
    fn schema_1_2_groups_block_on_inhibitor_and_error_and_may_be_absent() {
        let report = br#"{"leapp_run_id": "x", "entries": [
            {"title": "a", "summary": "", "severity": "high", "key": "k1", "groups": ["inhibitor", "network"]},
            {"title": "b", "summary": "", "severity": "high", "key": "k2", "groups": ["error"]},
            {"title": "c", "summary": "", "severity": "medium", "key": "k3", "groups": ["failure"]},
            {"title": "d", "summary": "", "severity": "low", "key": "k4",
             "detail": {"remediations": [{"type": "command", "context": ["leapp", "answer", "--section", "a.b=True"]}]}}
        ]}"#;
        let findings = parse(report).expect("parses");
        let blocking: Vec<bool> = findings.iter().map(|f| f.blocking).collect();
        assert_eq!(blocking, [true, true, false, false]);
        assert_eq!(
            findings[3].remediations,
            [Remediation::Command(vec![
                "leapp".into(),
                "answer".into(),
                "--section".into(),
                "a.b=True".into()
            ])]
        );
    }

    #[test]
    fn malformed_reports_are_clear_errors() {
        for (bad, expected) in [
            (&b"{"[..], "not valid JSON"),
            (
                br#"{"entries": [{"title": "x", "severity": "urgent", "key": "k"}]}"#,
                "unknown variant",
            ),
            (
                br#"{"entries": [{"title": "x", "severity": "high"}]}"#,
                "has no key",
            ),
            (br#"{"leapp_run_id": "x"}"#, "missing field `entries`"),
        ] {
            let err = parse(bad).expect_err("malformed");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
