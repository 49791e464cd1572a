//! The fleet's readiness: each selected host's latest pre-check, and every
//! finding aggregated by its stable key across those hosts.

use std::collections::BTreeMap;

use crate::finding::{Finding, Remediation, Severity, Source};
use crate::precheck::{PrecheckRecord, PrecheckState};

/// Hosts named as examples of a finding.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingSummary {
    pub source: Source,
    pub key: String,
    pub title: String,
    pub severity: Severity,
    pub blocking: bool,
    pub host_count: u32,
    pub example_hosts: Vec<String>,
    pub remediations: Vec<Remediation>,
}

#[derive(Debug, Clone, Default)]
pub struct ReadinessReport {
    /// Every selected host with its latest pre-check, if any, sorted by id.
    pub hosts: Vec<(String, Option<PrecheckRecord>)>,
    /// Blocking findings first, then the most widespread.
    pub findings: Vec<FindingSummary>,
}

pub fn report(mut hosts: Vec<(String, Option<PrecheckRecord>)>) -> ReadinessReport {
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut by_key: BTreeMap<String, FindingSummary> = BTreeMap::new();
    for (host, precheck) in &hosts {
        let Some(precheck) = precheck.as_ref().filter(|p| p.state == PrecheckState::Done) else {
            continue;
        };
        for finding in dedup(&precheck.findings) {
            let summary = by_key
                .entry(finding.key.clone())
                .or_insert_with(|| FindingSummary {
                    source: finding.source,
                    key: finding.key.clone(),
                    title: finding.title.clone(),
                    severity: finding.severity,
                    blocking: false,
                    host_count: 0,
                    example_hosts: Vec::new(),
                    remediations: finding.remediations.clone(),
                });
            summary.blocking |= finding.blocking;
            summary.severity = summary.severity.max(finding.severity);
            summary.host_count += 1;
            if summary.example_hosts.len() < EXAMPLES {
                summary.example_hosts.push(host.clone());
            }
        }
    }
    let mut findings: Vec<FindingSummary> = by_key.into_values().collect();
    findings.sort_by(|a, b| {
        b.blocking
            .cmp(&a.blocking)
            .then(b.host_count.cmp(&a.host_count))
            .then(b.severity.cmp(&a.severity))
            .then(a.key.cmp(&b.key))
    });
    ReadinessReport { hosts, findings }
}

/// A host counts once per key even if a report lists the key twice.
fn dedup(findings: &[Finding]) -> impl Iterator<Item = &Finding> {
    let mut seen = std::collections::BTreeSet::new();
    findings.iter().filter(move |f| seen.insert(f.key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{Step, Target, Tool};
    use crate::precheck::Readiness;

    fn finding(key: &str, blocking: bool) -> Finding {
        Finding {
            source: Source::Leapp,
            key: key.into(),
            severity: if blocking {
                Severity::High
            } else {
                Severity::Low
            },
            blocking,
            title: format!("title {key}"),
            summary: String::new(),
            remediations: vec![Remediation::Hint("fix".into())],
        }
    }

    fn done(findings: Vec<Finding>) -> Option<PrecheckRecord> {
        let blocked = findings.iter().any(|f| f.blocking);
        Some(PrecheckRecord {
            command_id: "c".into(),
            sequence: 1,
            target: Target {
                major: 8,
                minor: 10,
            },
            step: Step {
                tool: Tool::Leapp,
                to: Target {
                    major: 8,
                    minor: 10,
                },
            },
            state: PrecheckState::Done,
            readiness: if blocked {
                Readiness::Blocked
            } else {
                Readiness::Ready
            },
            detail: String::new(),
            requested_unix_ms: 1,
            expires_unix_ms: 2,
            started_unix_ms: 1,
            finished_unix_ms: 2,
            findings,
        })
    }

    #[test]
    fn findings_aggregate_by_key_blocking_and_widespread_first() {
        let mut running = done(vec![finding("ignored", true)]);
        if let Some(r) = running.as_mut() {
            r.state = PrecheckState::Running;
        }
        let report = report(vec![
            (
                "h3".into(),
                done(vec![
                    finding("common", false),
                    finding("rare-blocker", true),
                ]),
            ),
            (
                "h1".into(),
                done(vec![finding("common", false), finding("common", false)]),
            ),
            ("h2".into(), done(vec![finding("common", false)])),
            ("h4".into(), running),
            ("h5".into(), None),
        ]);
        let hosts: Vec<&str> = report.hosts.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["h1", "h2", "h3", "h4", "h5"]);
        let keys: Vec<(&str, u32, bool)> = report
            .findings
            .iter()
            .map(|f| (f.key.as_str(), f.host_count, f.blocking))
            .collect();
        assert_eq!(keys, [("rare-blocker", 1, true), ("common", 3, false)]);
        assert_eq!(report.findings[1].example_hosts, ["h1", "h2", "h3"]);
    }
}
