//! The fleet's readiness: each selected host's latest pre-check, and every
//! finding aggregated by its stable key across those hosts.

use std::collections::BTreeMap;

use crate::finding::{Finding, Remediation, Severity, Source};
use crate::precheck::{PrecheckRecord, Readiness};

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

/// One selected host as the report reads it.
#[derive(Debug, Clone, Copy)]
pub struct SelectedHost<'a> {
    pub id: &'a str,
    pub connected: bool,
    pub precheck: Option<&'a PrecheckRecord>,
}

/// Selected hosts by the outcome of their latest pre-check, and those with
/// one in flight (counted in both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadinessCounts {
    pub hosts: u32,
    pub ready: u32,
    pub blocked: u32,
    pub error: u32,
    pub unknown: u32,
    pub in_flight: u32,
    /// In flight, waiting for an agent that is not connected.
    pub in_flight_disconnected: u32,
}

impl ReadinessCounts {
    pub fn of<'a>(hosts: impl IntoIterator<Item = SelectedHost<'a>>) -> Self {
        let mut counts = ReadinessCounts::default();
        for host in hosts {
            counts.hosts += 1;
            let readiness = host
                .precheck
                .map_or(Readiness::Unknown, PrecheckRecord::readiness);
            *match readiness {
                Readiness::Ready => &mut counts.ready,
                Readiness::Blocked => &mut counts.blocked,
                Readiness::Error => &mut counts.error,
                Readiness::Unknown => &mut counts.unknown,
            } += 1;
            if host.precheck.is_some_and(PrecheckRecord::in_flight) {
                counts.in_flight += 1;
                if !host.connected {
                    counts.in_flight_disconnected += 1;
                }
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReadinessReport {
    pub counts: ReadinessCounts,
    /// Every selected host with its latest pre-check, if any, sorted by id.
    pub hosts: Vec<(String, Option<PrecheckRecord>)>,
    /// Blocking findings first, then the most widespread.
    pub findings: Vec<FindingSummary>,
}

pub fn report<'a>(selected: impl IntoIterator<Item = SelectedHost<'a>> + Clone) -> ReadinessReport {
    let counts = ReadinessCounts::of(selected.clone());
    let mut hosts: Vec<(String, Option<PrecheckRecord>)> = selected
        .into_iter()
        .map(|h| (h.id.to_string(), h.precheck.cloned()))
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut by_key: BTreeMap<String, FindingSummary> = BTreeMap::new();
    for (host, precheck) in &hosts {
        let Some(precheck) = precheck.as_ref().and_then(PrecheckRecord::latest_done) else {
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
    ReadinessReport {
        counts,
        hosts,
        findings,
    }
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
    use crate::precheck::PrecheckState;

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
            previous: None,
        })
    }

    fn selected<'a>(hosts: &'a [(&'a str, bool, Option<PrecheckRecord>)]) -> Vec<SelectedHost<'a>> {
        hosts
            .iter()
            .map(|(id, connected, precheck)| SelectedHost {
                id,
                connected: *connected,
                precheck: precheck.as_ref(),
            })
            .collect()
    }

    #[test]
    fn findings_aggregate_by_key_blocking_and_widespread_first() {
        let mut running = done(vec![finding("ignored", true)]);
        if let Some(r) = running.as_mut() {
            r.state = PrecheckState::Running;
        }
        let hosts = [
            (
                "h3",
                true,
                done(vec![
                    finding("common", false),
                    finding("rare-blocker", true),
                ]),
            ),
            (
                "h1",
                true,
                done(vec![finding("common", false), finding("common", false)]),
            ),
            ("h2", true, done(vec![finding("common", false)])),
            ("h4", true, running),
            ("h5", true, None),
        ];
        let report = report(selected(&hosts));
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

    #[test]
    fn a_finding_names_at_most_five_example_hosts() {
        let hosts: Vec<(String, bool, Option<PrecheckRecord>)> = (0..7)
            .map(|i| (format!("h{i}"), true, done(vec![finding("common", false)])))
            .collect();
        let hosts: Vec<(&str, bool, Option<PrecheckRecord>)> = hosts
            .iter()
            .map(|(id, connected, record)| (id.as_str(), *connected, record.clone()))
            .collect();
        let report = report(selected(&hosts));
        assert_eq!(report.findings[0].host_count, 7);
        assert_eq!(
            report.findings[0].example_hosts,
            ["h0", "h1", "h2", "h3", "h4"]
        );
    }

    #[test]
    fn a_host_re_checked_counts_under_its_latest_outcome_and_as_in_flight() {
        let blocked = done(vec![finding("blocker", true)]);
        let mut again = done(vec![]).expect("record");
        again.state = PrecheckState::Requested;
        again.readiness = Readiness::Unknown;
        again.previous = blocked.as_ref().and_then(PrecheckRecord::carried_outcome);
        let mut first_ever = again.clone();
        first_ever.previous = None;
        let hosts = [
            ("again", true, Some(again)),
            ("away", false, Some(first_ever.clone())),
            ("asked", true, Some(first_ever)),
            ("ready", true, done(vec![])),
            ("never", false, None),
        ];
        let report = report(selected(&hosts));
        assert_eq!(
            report.counts,
            ReadinessCounts {
                hosts: 5,
                ready: 1,
                blocked: 1,
                error: 0,
                unknown: 3,
                in_flight: 3,
                in_flight_disconnected: 1,
            }
        );
        // The outcome being re-checked still shows its findings.
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].example_hosts, ["again"]);
    }
}
