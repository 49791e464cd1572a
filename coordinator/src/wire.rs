//! The coordinator's edge with the wire: proto messages from agents become the
//! core's domain types (and are checked whole on the way in), domain types
//! become proto messages on the way out. Nothing past this module sees both.

use mf_core::command::{AgentCommand, CommandPhase, CommandUpdate, InvalidUpdate, UpdateState};
use mf_core::facts::{Facts, Filesystem, InvalidFacts, OsInfo, UnknownFact};
use mf_core::finding::{Finding, Remediation, Severity, Source};
use mf_core::job::{JobPhase, JobState, OnFailure};
use mf_core::path::Tool;
use mf_core::precheck::{PrecheckRecord, Readiness};
use mf_core::wave::status::{HostStatus, WaveState};
use mf_proto::v1 as pb;

/// An agent's facts, checked against every limit.
pub fn facts_from_wire(wire: pb::Facts) -> Result<Facts, InvalidFacts> {
    Facts {
        os: wire.os.map(|os| OsInfo {
            id: os.id,
            name: os.name,
            version: os.version,
        }),
        kernel: wire.kernel,
        arch: wire.arch,
        hostname: wire.hostname,
        fqdn: wire.fqdn,
        machine_id: wire.machine_id,
        boot_id: wire.boot_id,
        uptime_seconds: wire.uptime_seconds,
        cpus: wire.cpus,
        memory_bytes: wire.memory_bytes,
        filesystems: wire
            .filesystems
            .into_iter()
            .map(|fs| Filesystem {
                path: fs.path,
                free_bytes: fs.free_bytes,
                total_bytes: fs.total_bytes,
            })
            .collect(),
        package_count: wire.package_count,
        packages: wire.packages.into_iter().collect(),
        agent_version: wire.agent_version,
        labels: wire.labels.into_iter().collect(),
        unknown: wire
            .unknown
            .into_iter()
            .map(|u| UnknownFact {
                fact: u.fact,
                reason: u.reason,
            })
            .collect(),
    }
    .validate()
}

pub fn facts_to_wire(facts: &Facts) -> pb::Facts {
    pb::Facts {
        os: facts.os.as_ref().map(|os| pb::OsInfo {
            id: os.id.clone(),
            name: os.name.clone(),
            version: os.version.clone(),
        }),
        kernel: facts.kernel.clone(),
        arch: facts.arch.clone(),
        hostname: facts.hostname.clone(),
        fqdn: facts.fqdn.clone(),
        machine_id: facts.machine_id.clone(),
        boot_id: facts.boot_id.clone(),
        uptime_seconds: facts.uptime_seconds,
        cpus: facts.cpus,
        memory_bytes: facts.memory_bytes,
        filesystems: facts
            .filesystems
            .iter()
            .map(|fs| pb::Filesystem {
                path: fs.path.clone(),
                free_bytes: fs.free_bytes,
                total_bytes: fs.total_bytes,
            })
            .collect(),
        package_count: facts.package_count,
        packages: facts.packages.clone().into_iter().collect(),
        agent_version: facts.agent_version.clone(),
        labels: facts.labels.clone().into_iter().collect(),
        unknown: facts
            .unknown
            .iter()
            .map(|u| pb::UnknownFact {
                fact: u.fact.clone(),
                reason: u.reason.clone(),
            })
            .collect(),
    }
}

fn finding_from_wire(f: pb::Finding) -> Result<Finding, InvalidUpdate> {
    let source = match pb::FindingSource::try_from(f.source) {
        Ok(pb::FindingSource::Convert2rhel) => Source::Convert2rhel,
        Ok(pb::FindingSource::Leapp) => Source::Leapp,
        Ok(pb::FindingSource::Agent) => Source::Agent,
        _ => {
            return Err(InvalidUpdate(format!(
                "finding {} has no valid source",
                f.key
            )));
        }
    };
    let severity = match pb::Severity::try_from(f.severity) {
        Ok(pb::Severity::Info) => Severity::Info,
        Ok(pb::Severity::Low) => Severity::Low,
        Ok(pb::Severity::Medium) => Severity::Medium,
        Ok(pb::Severity::High) => Severity::High,
        _ => {
            return Err(InvalidUpdate(format!(
                "finding {} has no valid severity",
                f.key
            )));
        }
    };
    Ok(Finding {
        source,
        key: f.key,
        severity,
        blocking: f.blocking,
        title: f.title,
        summary: f.summary,
        remediations: f
            .remediations
            .into_iter()
            .filter_map(|r| r.kind)
            .map(|kind| match kind {
                pb::remediation::Kind::Hint(h) => Remediation::Hint(h),
                pb::remediation::Kind::Playbook(p) => Remediation::Playbook(p),
                pb::remediation::Kind::Command(c) => Remediation::Command(c.argv),
            })
            .collect(),
    })
}

/// An agent's report on a command, checked against every limit.
pub fn update_from_wire(u: pb::CommandUpdate) -> Result<CommandUpdate, InvalidUpdate> {
    let state = match pb::CommandState::try_from(u.state) {
        Ok(pb::CommandState::Started) => UpdateState::Started,
        Ok(pb::CommandState::Succeeded) => UpdateState::Succeeded,
        Ok(pb::CommandState::Failed) => UpdateState::Failed,
        Ok(pb::CommandState::Refused) => UpdateState::Refused,
        Ok(pb::CommandState::Interrupted) => UpdateState::Interrupted,
        _ => return Err(InvalidUpdate("no valid state".into())),
    };
    if u.findings.len() > mf_core::finding::MAX_FINDINGS {
        return Err(InvalidUpdate(format!(
            "more than {} findings",
            mf_core::finding::MAX_FINDINGS
        )));
    }
    let update = CommandUpdate {
        command_id: u.command_id,
        sequence: u.sequence,
        state,
        detail: u.detail,
        findings: u
            .findings
            .into_iter()
            .map(finding_from_wire)
            .collect::<Result<_, _>>()?,
        finished_unix_ms: u.finished_unix_ms,
    };
    update.validate()?;
    Ok(update)
}

pub fn source_to_wire(source: Source) -> i32 {
    match source {
        Source::Convert2rhel => pb::FindingSource::Convert2rhel,
        Source::Leapp => pb::FindingSource::Leapp,
        Source::Agent => pb::FindingSource::Agent,
    }
    .into()
}

pub fn severity_to_wire(severity: Severity) -> i32 {
    match severity {
        Severity::Info => pb::Severity::Info,
        Severity::Low => pb::Severity::Low,
        Severity::Medium => pb::Severity::Medium,
        Severity::High => pb::Severity::High,
    }
    .into()
}

pub fn remediation_to_wire(r: &Remediation) -> pb::Remediation {
    pb::Remediation {
        kind: Some(match r {
            Remediation::Hint(h) => pb::remediation::Kind::Hint(h.clone()),
            Remediation::Command(a) => {
                pb::remediation::Kind::Command(pb::CommandLine { argv: a.clone() })
            }
            Remediation::Playbook(p) => pb::remediation::Kind::Playbook(p.clone()),
        }),
    }
}

pub fn finding_to_wire(f: &Finding) -> pb::Finding {
    pb::Finding {
        source: source_to_wire(f.source),
        key: f.key.clone(),
        severity: severity_to_wire(f.severity),
        blocking: f.blocking,
        title: f.title.clone(),
        summary: f.summary.clone(),
        remediations: f.remediations.iter().map(remediation_to_wire).collect(),
    }
}

fn tool_to_wire(tool: Tool) -> i32 {
    match tool {
        Tool::Convert2rhel => pb::MigrationTool::Convert2rhel,
        Tool::Leapp => pb::MigrationTool::Leapp,
    }
    .into()
}

/// The command as sent at `now_unix_ms`: its expiry also as a duration from
/// now, which the agent counts on its own clock.
pub fn command_to_wire(c: &AgentCommand, now_unix_ms: i64) -> pb::Command {
    use pb::command::Phase;
    let phase = match &c.phase {
        CommandPhase::Precheck(step) => Phase::Precheck(pb::Precheck {
            tool: tool_to_wire(step.tool),
            target_version: step.to.version(),
        }),
        CommandPhase::Snapshot { job_id } => Phase::Snapshot(pb::Snapshot {
            job_id: job_id.clone(),
        }),
        CommandPhase::Execute(step) => Phase::Execute(pb::Execute {
            tool: tool_to_wire(step.tool),
            target_version: step.to.version(),
        }),
        CommandPhase::Reboot => Phase::Reboot(pb::Reboot {}),
        CommandPhase::Verify(step) => Phase::Verify(pb::Verify {
            tool: tool_to_wire(step.tool),
            target_version: step.to.version(),
        }),
        CommandPhase::Commit => Phase::Commit(pb::Commit {}),
        CommandPhase::Rollback => Phase::Rollback(pb::Rollback {}),
    };
    pb::Command {
        command_id: c.id.clone(),
        host_id: c.host_id.clone(),
        sequence: c.sequence,
        expires_unix_ms: c.expires_unix_ms,
        valid_for_ms: (c.expires_unix_ms - now_unix_ms).max(0),
        // Signed by the session that sends it.
        signature: Vec::new(),
        phase: Some(phase),
    }
}

pub fn readiness_to_wire(readiness: Readiness) -> i32 {
    match readiness {
        Readiness::Ready => pb::Readiness::Ready,
        Readiness::Blocked => pb::Readiness::Blocked,
        Readiness::Error => pb::Readiness::Error,
        Readiness::Unknown => pb::Readiness::Unknown,
        Readiness::Rebuild => pb::Readiness::Rebuild,
    }
    .into()
}

/// The latest outcome, and what is in flight if anything.
pub fn latest_precheck_to_wire(current: &PrecheckRecord) -> pb::LatestPrecheck {
    let record = current.latest_done().unwrap_or(current);
    let in_flight = current.in_flight().then_some(current);
    pb::LatestPrecheck {
        in_flight_target: in_flight.map(|p| p.target.to_string()).unwrap_or_default(),
        in_flight_requested_unix_ms: in_flight.map_or(0, |p| p.requested_unix_ms),
        target: record.target.to_string(),
        readiness: readiness_to_wire(record.readiness()),
        detail: record.detail.clone(),
        requested_unix_ms: record.requested_unix_ms,
        finished_unix_ms: record.finished_unix_ms,
        findings: record.findings.iter().map(finding_to_wire).collect(),
        step: record.step.to_string(),
    }
}

/// An unspecified `on_failure` takes the default (rollback); an unknown one is refused.
pub fn on_failure_from_wire(value: i32) -> Result<Option<OnFailure>, InvalidEnum> {
    match pb::OnFailure::try_from(value) {
        Ok(pb::OnFailure::Unspecified) => Ok(None),
        Ok(pb::OnFailure::Rollback) => Ok(Some(OnFailure::Rollback)),
        Ok(pb::OnFailure::Hold) => Ok(Some(OnFailure::Hold)),
        Err(_) => Err(InvalidEnum("on_failure", value)),
    }
}

pub fn on_failure_to_wire(on_failure: OnFailure) -> i32 {
    match on_failure {
        OnFailure::Rollback => pb::OnFailure::Rollback,
        OnFailure::Hold => pb::OnFailure::Hold,
    }
    .into()
}

pub fn job_phase_to_wire(phase: JobPhase) -> i32 {
    match phase {
        JobPhase::Precheck => pb::JobPhase::Precheck,
        JobPhase::Snapshot => pb::JobPhase::Snapshot,
        JobPhase::Execute => pb::JobPhase::Execute,
        JobPhase::Reboot => pb::JobPhase::Reboot,
        JobPhase::Verify => pb::JobPhase::Verify,
        JobPhase::Commit => pb::JobPhase::Commit,
        JobPhase::Rollback => pb::JobPhase::Rollback,
    }
    .into()
}

pub fn job_state_to_wire(state: JobState) -> i32 {
    match state {
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Blocked => pb::JobState::Blocked,
        JobState::Failed => pb::JobState::Failed,
        JobState::RolledBack => pb::JobState::RolledBack,
        JobState::Held => pb::JobState::Held,
    }
    .into()
}

pub fn wave_state_to_wire(state: WaveState) -> i32 {
    match state {
        WaveState::Created => pb::WaveState::Created,
        WaveState::Running => pb::WaveState::Running,
        WaveState::Paused => pb::WaveState::Paused,
        WaveState::Halted => pb::WaveState::Halted,
        WaveState::Cancelled => pb::WaveState::Cancelled,
        WaveState::Completed => pb::WaveState::Completed,
    }
    .into()
}

pub fn host_status_to_wire(status: HostStatus) -> i32 {
    match status {
        HostStatus::Excluded => pb::WaveHostState::Excluded,
        HostStatus::Pending => pb::WaveHostState::Pending,
        HostStatus::Running => pb::WaveHostState::Running,
        HostStatus::Succeeded => pb::WaveHostState::Succeeded,
        HostStatus::RolledBack => pb::WaveHostState::RolledBack,
        HostStatus::Failed => pb::WaveHostState::Failed,
        HostStatus::Blocked => pb::WaveHostState::Blocked,
        HostStatus::Aborted => pb::WaveHostState::Aborted,
        HostStatus::Unreachable => pb::WaveHostState::Unreachable,
        HostStatus::Skipped => pb::WaveHostState::Skipped,
        HostStatus::NotStarted => pb::WaveHostState::NotStarted,
    }
    .into()
}

/// A value of a closed set that this coordinator does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} has no value {1}")]
pub struct InvalidEnum(pub &'static str, pub i32);

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> pb::Finding {
        pb::Finding {
            source: pb::FindingSource::Leapp.into(),
            key: "k".into(),
            severity: pb::Severity::High.into(),
            blocking: true,
            title: "t".into(),
            summary: "s".into(),
            remediations: vec![pb::Remediation {
                kind: Some(pb::remediation::Kind::Command(pb::CommandLine {
                    argv: vec!["leapp".into(), "answer".into()],
                })),
            }],
        }
    }

    fn update(findings: Vec<pb::Finding>) -> pb::CommandUpdate {
        pb::CommandUpdate {
            command_id: "c".into(),
            sequence: 1,
            state: pb::CommandState::Succeeded.into(),
            findings,
            ..pb::CommandUpdate::default()
        }
    }

    #[test]
    fn findings_round_trip_and_bad_ones_are_refused() {
        let domain = update_from_wire(update(vec![finding()])).expect("valid");
        assert_eq!(finding_to_wire(&domain.findings[0]), finding());
        let mut bad = finding();
        bad.source = 0;
        let err = update_from_wire(update(vec![bad])).expect_err("source");
        assert!(err.0.contains("has no valid source"), "{err}");
        let mut bad = finding();
        bad.severity = 0;
        let err = update_from_wire(update(vec![bad])).expect_err("severity");
        assert!(err.0.contains("no valid severity"), "{err}");
        let mut bad = finding();
        bad.summary = "x".repeat(16 * 1024 + 1);
        let err = update_from_wire(update(vec![bad])).expect_err("long");
        assert!(err.0.contains("summary"), "{err}");
    }

    #[test]
    fn valid_facts_round_trip_and_bad_ones_are_refused() {
        let wire = pb::Facts {
            os: Some(pb::OsInfo {
                id: "centos".into(),
                name: "CentOS Linux".into(),
                version: "7.9".into(),
            }),
            kernel: "3.10.0-1160.el7.x86_64".into(),
            labels: [("app".to_string(), "billing".to_string())].into(),
            ..pb::Facts::default()
        };
        let facts = facts_from_wire(wire.clone()).expect("valid");
        assert_eq!(facts_to_wire(&facts), wire);
        let mut bad = wire;
        bad.kernel = "x".repeat(300);
        let err = facts_from_wire(bad).expect_err("long kernel");
        assert!(err.0.contains("kernel is longer"), "{err}");
    }
}
