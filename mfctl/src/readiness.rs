//! `mfctl precheck` and `mfctl report readiness`: what was sent, and where the
//! fleet stands, as a table or JSON.

use std::collections::BTreeMap;

use anyhow::Result;
use mf_proto::v1 as pb;
use serde::Serialize;

use super::Format;
use super::output::{count, print_document, table, timestamp};

pub fn readiness_label(value: i32) -> &'static str {
    match pb::Readiness::try_from(value) {
        Ok(pb::Readiness::Ready) => "ready",
        Ok(pb::Readiness::Blocked) => "blocked",
        Ok(pb::Readiness::Error) => "error",
        Ok(pb::Readiness::Rebuild) => "rebuild",
        _ => "unknown",
    }
}

pub fn severity_label(value: i32) -> &'static str {
    match pb::Severity::try_from(value) {
        Ok(pb::Severity::Info) => "info",
        Ok(pb::Severity::Low) => "low",
        Ok(pb::Severity::Medium) => "medium",
        Ok(pb::Severity::High) => "high",
        _ => "?",
    }
}

/// A remediation as one line of text.
pub fn remediation_text(r: &pb::Remediation) -> String {
    match &r.kind {
        Some(pb::remediation::Kind::Hint(h)) => h.clone(),
        Some(pb::remediation::Kind::Command(c)) => format!("run: {}", c.argv.join(" ")),
        Some(pb::remediation::Kind::Playbook(p)) => format!("playbook: {p}"),
        None => String::new(),
    }
}

/// For `precheck --wait --fail-on-blocked`: an error ending mfctl with 10 when
/// a host is blocked, 11 when one ended in error; the report says which.
pub fn outcome_code(report: &pb::ReadinessReport) -> Result<()> {
    use crate::exit::{ExitCode, with_code};
    let count = |r: pb::Readiness| {
        report
            .hosts
            .iter()
            .filter(|h| {
                h.precheck
                    .as_ref()
                    .is_some_and(|p| p.readiness == i32::from(r))
            })
            .count()
    };
    let (blocked, error) = (count(pb::Readiness::Blocked), count(pb::Readiness::Error));
    if error > 0 {
        return Err(with_code(
            ExitCode::Failed,
            format!("{error} pre-check(s) ended in error, {blocked} blocked"),
        ));
    }
    if blocked > 0 {
        return Err(with_code(
            ExitCode::Blocked,
            format!("{blocked} host(s) blocked at their pre-check"),
        ));
    }
    Ok(())
}

/// What `precheck` dispatched, as JSON.
pub fn precheck_json(response: &pb::PrecheckResponse) -> serde_json::Value {
    let refused: Vec<_> = response
        .refused
        .iter()
        .map(|r| serde_json::json!({"host_id": r.host_id, "reason": r.reason}))
        .collect();
    serde_json::json!({
        "dispatched": response.dispatched,
        "queued": response.queued,
        "refused": refused,
    })
}

pub fn print_precheck(response: &pb::PrecheckResponse, format: Format) -> Result<()> {
    if print_document(&precheck_json(response), format)? {
        return Ok(());
    }
    println!(
        "pre-check sent to {}, queued for {}, refused for {}",
        count(response.dispatched, "host"),
        count(response.queued, "disconnected host"),
        count(response.refused.len() as u64, "host")
    );
    // Group refusals by reason: on a fleet, the same reason repeats.
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for refusal in &response.refused {
        by_reason
            .entry(&refusal.reason)
            .or_default()
            .push(&refusal.host_id);
    }
    for (reason, hosts) in by_reason {
        let examples: Vec<&str> = hosts.iter().take(3).copied().collect();
        let more = if hosts.len() > 3 {
            format!(" and {} more", hosts.len() - 3)
        } else {
            String::new()
        };
        println!("  refused: {reason}: {}{more}", examples.join(", "));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct HostJson<'a> {
    id: &'a str,
    /// ready, blocked, error, unknown or rebuild (no in-place path).
    readiness: &'static str,
    /// Why it is blocked, failed its check or needs a rebuild.
    reason: Option<&'a str>,
    target: Option<&'a str>,
    step: Option<&'a str>,
    detail: Option<&'a str>,
    finished: Option<String>,
    /// A newer pre-check requested or running: its target.
    in_flight: Option<&'a str>,
    blocking_findings: usize,
}

#[derive(Debug, Serialize)]
struct FindingJson<'a> {
    source: &'a str,
    key: &'a str,
    title: &'a str,
    severity: &'static str,
    blocking: bool,
    host_count: u32,
    example_hosts: &'a [String],
    remediation: Vec<String>,
}

/// The readiness report as JSON: the summary, every host, the findings.
pub fn report_json(report: &pb::ReadinessReport) -> Result<serde_json::Value> {
    let (counts, hosts, findings) = report_parts(report);
    Ok(serde_json::json!({"summary": counts, "hosts": hosts, "findings": findings}))
}

type ReportParts<'a> = (
    BTreeMap<&'static str, u32>,
    Vec<HostJson<'a>>,
    Vec<FindingJson<'a>>,
);

fn report_parts(report: &pb::ReadinessReport) -> ReportParts<'_> {
    let c = report.counts.unwrap_or_default();
    let counts: BTreeMap<&str, u32> = [
        ("hosts", c.hosts),
        ("ready", c.ready),
        ("blocked", c.blocked),
        ("error", c.error),
        ("unknown", c.unknown),
        ("rebuild", c.rebuild),
        ("in_flight", c.in_flight),
        ("in_flight_disconnected", c.in_flight_disconnected),
    ]
    .into_iter()
    .collect();
    let hosts: Vec<HostJson> = report
        .hosts
        .iter()
        .map(|h| {
            let p = h.precheck.as_ref();
            HostJson {
                id: &h.host_id,
                readiness: readiness_label(h.verdict),
                reason: Some(h.verdict_reason.as_str()).filter(|r| !r.is_empty()),
                target: p.map(|p| p.target.as_str()),
                step: p.map(|p| p.step.as_str()),
                detail: p.map(|p| p.detail.as_str()),
                finished: p.and_then(|p| timestamp(p.finished_unix_ms)),
                in_flight: p
                    .map(|p| p.in_flight_target.as_str())
                    .filter(|t| !t.is_empty()),
                blocking_findings: p
                    .map_or(0, |p| p.findings.iter().filter(|f| f.blocking).count()),
            }
        })
        .collect();
    let findings: Vec<FindingJson> = report
        .findings
        .iter()
        .map(|f| FindingJson {
            source: crate::wire::finding_source(f.source),
            key: &f.key,
            title: &f.title,
            severity: severity_label(f.severity),
            blocking: f.blocking,
            host_count: f.host_count,
            example_hosts: &f.example_hosts,
            remediation: f.remediations.iter().map(remediation_text).collect(),
        })
        .collect();
    (counts, hosts, findings)
}

/// Finding titles in the table; `-o wide` shows them whole.
const TITLE_SHOWN: usize = 70;

pub fn print_report(report: &pb::ReadinessReport, format: Format) -> Result<()> {
    if print_document(&report_json(report)?, format)? {
        return Ok(());
    }
    let (counts, hosts, findings) = report_parts(report);
    let running = match counts["in_flight"] {
        0 => String::new(),
        n => format!(" ({n} being pre-checked again or for the first time)"),
    };
    let rebuild = match counts["rebuild"] {
        0 => String::new(),
        n => format!(", {n} to rebuild"),
    };
    println!(
        "{}: {} ready, {} blocked, {} error, {} unknown{rebuild}{running}\n",
        count(counts["hosts"], "host"),
        counts["ready"],
        counts["blocked"],
        counts["error"],
        counts["unknown"]
    );
    let title_shown = if format == Format::Wide {
        usize::MAX
    } else {
        TITLE_SHOWN
    };
    if !findings.is_empty() {
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                vec![
                    f.host_count.to_string(),
                    if f.blocking { "yes" } else { "no" }.into(),
                    f.severity.into(),
                    f.source.into(),
                    cut(f.title, title_shown),
                    f.example_hosts.first().cloned().unwrap_or_default(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "HOSTS",
                    "BLOCKING",
                    "SEVERITY",
                    "SOURCE",
                    "FINDING",
                    "EXAMPLE HOST"
                ],
                &rows
            )
        );
    }
    for (readiness, heading) in [
        ("error", "hosts in error"),
        ("rebuild", "hosts to rebuild (no in-place path)"),
    ] {
        let listed: Vec<&HostJson> = hosts.iter().filter(|h| h.readiness == readiness).collect();
        if listed.is_empty() {
            continue;
        }
        println!("\n{heading}:");
        for h in listed.iter().take(20) {
            println!("  {}: {}", h.id, h.reason.or(h.detail).unwrap_or_default());
        }
        if listed.len() > 20 {
            println!("  ... and {} more (use -o json)", listed.len() - 20);
        }
    }
    Ok(())
}

/// `text` in at most `shown` characters, an ellipsis saying it was cut.
fn cut(text: &str, shown: usize) -> String {
    if text.chars().count() <= shown {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(shown.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(readiness: pb::Readiness) -> pb::HostReadiness {
        pb::HostReadiness {
            host_id: "h".into(),
            precheck: Some(pb::LatestPrecheck {
                readiness: readiness.into(),
                ..Default::default()
            }),
            verdict: readiness.into(),
            verdict_reason: String::new(),
        }
    }

    #[test]
    fn long_titles_are_cut_visibly_and_short_ones_kept() {
        assert_eq!(cut("short", 70), "short");
        let long = "x".repeat(100);
        let shown = cut(&long, 70);
        assert_eq!(shown.chars().count(), 70);
        assert!(shown.ends_with('…'));
        assert_eq!(cut(&long, usize::MAX), long);
    }

    #[test]
    fn fail_on_blocked_exits_by_the_worst_outcome() {
        let code = |hosts: Vec<pb::HostReadiness>| {
            outcome_code(&pb::ReadinessReport {
                hosts,
                ..Default::default()
            })
            .map_err(|e| crate::exit::code_of(&e))
        };
        assert_eq!(code(vec![host(pb::Readiness::Ready)]), Ok(()));
        assert_eq!(
            code(vec![
                host(pb::Readiness::Ready),
                host(pb::Readiness::Blocked)
            ]),
            Err(10)
        );
        assert_eq!(
            code(vec![
                host(pb::Readiness::Blocked),
                host(pb::Readiness::Error)
            ]),
            Err(11)
        );
    }
}
