//! The fleet's readiness: each selected host's verdict (its latest
//! pre-check, or a rebuild), and every finding aggregated by its stable key
//! across those hosts.

use std::collections::{BTreeMap, BTreeSet};

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

/// A host's platform as its facts say: os-release ID, version, architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform<'a> {
    pub os: &'a str,
    pub version: &'a str,
    pub arch: &'a str,
}

/// What the site holds impossible to fix in place besides the platform: the
/// keys of findings that make a host `rebuild` rather than `blocked`. The
/// tools' reports do not say which of their inhibitors no change on the
/// host lifts, so the site names them (`rebuild_findings`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildRules {
    pub findings: BTreeSet<String>,
}

/// Where a host stands, and why when it is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub readiness: Readiness,
    pub reason: Option<String>,
}

/// A host's verdict: `rebuild` when its platform has no in-place path or a
/// blocking finding is one the site holds impossible to fix in place; else
/// the outcome of its latest pre-check.
pub fn verdict(
    platform: Option<Platform<'_>>,
    precheck: Option<&PrecheckRecord>,
    rules: &RebuildRules,
) -> Verdict {
    if let Some(p) = platform
        && let Err(reason) = crate::path::in_place(p.os, p.version, p.arch)
    {
        return Verdict {
            readiness: Readiness::Rebuild,
            reason: Some(reason),
        };
    }
    let Some(done) = precheck.and_then(PrecheckRecord::latest_done) else {
        return Verdict {
            readiness: Readiness::Unknown,
            reason: None,
        };
    };
    let blocking = || done.findings.iter().filter(|f| f.blocking);
    if let Some(finding) = blocking().find(|f| rules.findings.contains(&f.key)) {
        return Verdict {
            readiness: Readiness::Rebuild,
            reason: Some(format!(
                "{}: the site holds it impossible to fix in place (rebuild_findings)",
                finding.title
            )),
        };
    }
    let reason = match done.readiness {
        Readiness::Ready | Readiness::Unknown => None,
        Readiness::Blocked => blocking().next().map(|f| f.title.clone()),
        Readiness::Error | Readiness::Rebuild => Some(done.detail.clone()),
    };
    Verdict {
        readiness: done.readiness,
        reason,
    }
}

/// One selected host as the report reads it.
#[derive(Debug, Clone, Copy)]
pub struct SelectedHost<'a> {
    pub id: &'a str,
    pub connected: bool,
    pub precheck: Option<&'a PrecheckRecord>,
    /// From its facts; `None` before it reported them.
    pub platform: Option<Platform<'a>>,
}

impl SelectedHost<'_> {
    pub fn verdict(&self, rules: &RebuildRules) -> Verdict {
        verdict(self.platform, self.precheck, rules)
    }
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
    /// No in-place path: to rebuild.
    pub rebuild: u32,
    pub in_flight: u32,
    /// In flight, waiting for an agent that is not connected.
    pub in_flight_disconnected: u32,
}

impl ReadinessCounts {
    pub fn of<'a>(hosts: impl IntoIterator<Item = SelectedHost<'a>>, rules: &RebuildRules) -> Self {
        let mut counts = ReadinessCounts::default();
        for host in hosts {
            counts.hosts += 1;
            *match host.verdict(rules).readiness {
                Readiness::Ready => &mut counts.ready,
                Readiness::Blocked => &mut counts.blocked,
                Readiness::Error => &mut counts.error,
                Readiness::Unknown => &mut counts.unknown,
                Readiness::Rebuild => &mut counts.rebuild,
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

/// One host of a report.
#[derive(Debug, Clone)]
pub struct HostReadiness {
    pub id: String,
    pub precheck: Option<PrecheckRecord>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Default)]
pub struct ReadinessReport {
    pub counts: ReadinessCounts,
    /// Every selected host with its latest pre-check, if any, and its
    /// verdict, sorted by id.
    pub hosts: Vec<HostReadiness>,
    /// Blocking findings first, then the most widespread.
    pub findings: Vec<FindingSummary>,
}

pub fn report<'a>(
    selected: impl IntoIterator<Item = SelectedHost<'a>> + Clone,
    rules: &RebuildRules,
) -> ReadinessReport {
    let counts = ReadinessCounts::of(selected.clone(), rules);
    let mut hosts: Vec<HostReadiness> = selected
        .into_iter()
        .map(|h| HostReadiness {
            id: h.id.to_string(),
            precheck: h.precheck.cloned(),
            verdict: h.verdict(rules),
        })
        .collect();
    hosts.sort_by(|a, b| a.id.cmp(&b.id));
    let mut by_key: BTreeMap<String, FindingSummary> = BTreeMap::new();
    for HostReadiness {
        id: host, precheck, ..
    } in &hosts
    {
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
                platform: None,
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
        let report = report(selected(&hosts), &RebuildRules::default());
        let hosts: Vec<&str> = report.hosts.iter().map(|h| h.id.as_str()).collect();
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
        let report = report(selected(&hosts), &RebuildRules::default());
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
        let report = report(selected(&hosts), &RebuildRules::default());
        assert_eq!(
            report.counts,
            ReadinessCounts {
                hosts: 5,
                ready: 1,
                blocked: 1,
                error: 0,
                unknown: 3,
                rebuild: 0,
                in_flight: 3,
                in_flight_disconnected: 1,
            }
        );
        // The outcome being re-checked still shows its findings.
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].example_hosts, ["again"]);
    }

    #[test]
    fn a_platform_without_a_path_or_a_finding_the_site_names_makes_a_rebuild() {
        let rules = RebuildRules {
            findings: BTreeSet::from(["no-fix".to_string()]),
        };
        let el7 = Platform {
            os: "rhel",
            version: "7.9",
            arch: "x86_64",
        };
        let old = Platform {
            os: "centos",
            version: "6.10",
            arch: "x86_64",
        };
        let blocked = done(vec![finding("fixable", true), finding("no-fix", false)]);
        let unfixable = done(vec![finding("fixable", true), finding("no-fix", true)]);
        let hosts = [
            ("ready", Some(el7), done(vec![])),
            ("blocked", Some(el7), blocked),
            ("unfixable", Some(el7), unfixable),
            ("old", Some(old), done(vec![])),
            ("old-unchecked", Some(old), None),
            ("silent", None, None),
        ];
        let selected: Vec<SelectedHost<'_>> = hosts
            .iter()
            .map(|(id, platform, precheck)| SelectedHost {
                id,
                connected: true,
                precheck: precheck.as_ref(),
                platform: *platform,
            })
            .collect();
        let report = report(selected, &rules);
        let verdicts: Vec<(&str, Readiness)> = report
            .hosts
            .iter()
            .map(|h| (h.id.as_str(), h.verdict.readiness))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("blocked", Readiness::Blocked),
                ("old", Readiness::Rebuild),
                ("old-unchecked", Readiness::Rebuild),
                ("ready", Readiness::Ready),
                ("silent", Readiness::Unknown),
                ("unfixable", Readiness::Rebuild),
            ]
        );
        let reason = |id: &str| {
            report
                .hosts
                .iter()
                .find(|h| h.id == id)
                .and_then(|h| h.verdict.reason.clone())
                .unwrap_or_default()
        };
        assert_eq!(reason("blocked"), "title fixable");
        assert!(reason("old").contains("no in-place path from centos 6.10"));
        assert!(reason("unfixable").starts_with("title no-fix: the site holds it"));
        assert_eq!(
            (
                report.counts.rebuild,
                report.counts.blocked,
                report.counts.ready
            ),
            (3, 1, 1)
        );
    }
}
