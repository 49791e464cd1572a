//! mfctl's edge with the wire: the facts the coordinator returns, as the core's
//! type, for JSON output in the same shape the coordinator stores them.

use mf_core::facts::{Facts, Filesystem, OsInfo, UnknownFact};
use mf_proto::v1 as pb;

/// The coordinator validated these facts on the way in; mfctl only reshapes them.
pub fn facts_from_wire(wire: pb::Facts) -> Facts {
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
}

/// The words for closed sets are the core's; a value this mfctl does not
/// know (a newer coordinator) shows as "unknown".
const UNKNOWN: &str = "unknown";

pub fn job_phase(value: i32) -> &'static str {
    use mf_core::job::JobPhase;
    match pb::JobPhase::try_from(value) {
        Ok(pb::JobPhase::Precheck) => JobPhase::Precheck.label(),
        Ok(pb::JobPhase::Snapshot) => JobPhase::Snapshot.label(),
        Ok(pb::JobPhase::Execute) => JobPhase::Execute.label(),
        Ok(pb::JobPhase::Reboot) => JobPhase::Reboot.label(),
        Ok(pb::JobPhase::Verify) => JobPhase::Verify.label(),
        Ok(pb::JobPhase::Commit) => JobPhase::Commit.label(),
        Ok(pb::JobPhase::Rollback) => JobPhase::Rollback.label(),
        Ok(pb::JobPhase::Unspecified) | Err(_) => UNKNOWN,
    }
}

pub fn job_state(value: i32) -> &'static str {
    use mf_core::job::JobState;
    match pb::JobState::try_from(value) {
        Ok(pb::JobState::Running) => JobState::Running.label(),
        Ok(pb::JobState::Succeeded) => JobState::Succeeded.label(),
        Ok(pb::JobState::Blocked) => JobState::Blocked.label(),
        Ok(pb::JobState::Failed) => JobState::Failed.label(),
        Ok(pb::JobState::RolledBack) => JobState::RolledBack.label(),
        Ok(pb::JobState::Held) => JobState::Held.label(),
        Ok(pb::JobState::Unspecified) | Err(_) => UNKNOWN,
    }
}

pub fn on_failure(value: i32) -> &'static str {
    use mf_core::job::OnFailure;
    match pb::OnFailure::try_from(value) {
        Ok(pb::OnFailure::Rollback) => OnFailure::Rollback.label(),
        Ok(pb::OnFailure::Hold) => OnFailure::Hold.label(),
        Ok(pb::OnFailure::Unspecified) | Err(_) => UNKNOWN,
    }
}

pub fn wave_state(value: i32) -> &'static str {
    use mf_core::wave::status::WaveState;
    match pb::WaveState::try_from(value) {
        Ok(pb::WaveState::Created) => WaveState::Created.label(),
        Ok(pb::WaveState::Running) => WaveState::Running.label(),
        Ok(pb::WaveState::Paused) => WaveState::Paused.label(),
        Ok(pb::WaveState::Halted) => WaveState::Halted.label(),
        Ok(pb::WaveState::Cancelled) => WaveState::Cancelled.label(),
        Ok(pb::WaveState::Completed) => WaveState::Completed.label(),
        Ok(pb::WaveState::Unspecified) | Err(_) => UNKNOWN,
    }
}

pub fn host_state(value: i32) -> &'static str {
    use mf_core::wave::status::HostStatus;
    match pb::WaveHostState::try_from(value) {
        Ok(pb::WaveHostState::Excluded) => HostStatus::Excluded.label(),
        Ok(pb::WaveHostState::Pending) => HostStatus::Pending.label(),
        Ok(pb::WaveHostState::Running) => HostStatus::Running.label(),
        Ok(pb::WaveHostState::Succeeded) => HostStatus::Succeeded.label(),
        Ok(pb::WaveHostState::RolledBack) => HostStatus::RolledBack.label(),
        Ok(pb::WaveHostState::Failed) => HostStatus::Failed.label(),
        Ok(pb::WaveHostState::Blocked) => HostStatus::Blocked.label(),
        Ok(pb::WaveHostState::Aborted) => HostStatus::Aborted.label(),
        Ok(pb::WaveHostState::Unreachable) => HostStatus::Unreachable.label(),
        Ok(pb::WaveHostState::Skipped) => HostStatus::Skipped.label(),
        Ok(pb::WaveHostState::NotStarted) => HostStatus::NotStarted.label(),
        Ok(pb::WaveHostState::Unspecified) | Err(_) => UNKNOWN,
    }
}

pub fn finding_source(value: i32) -> &'static str {
    use mf_core::finding::Source;
    match pb::FindingSource::try_from(value) {
        Ok(pb::FindingSource::Convert2rhel) => Source::Convert2rhel.label(),
        Ok(pb::FindingSource::Leapp) => Source::Leapp.label(),
        Ok(pb::FindingSource::Agent) => Source::Agent.label(),
        Ok(pb::FindingSource::Unspecified) | Err(_) => UNKNOWN,
    }
}

/// Whether the wave is in `state`.
pub fn wave_is(status: &pb::WaveStatus, state: pb::WaveState) -> bool {
    pb::WaveState::try_from(status.state) == Ok(state)
}

/// How many of the wave's hosts are in `state`.
pub fn hosts_in(status: &pb::WaveStatus, state: pb::WaveHostState) -> u32 {
    status
        .counts
        .iter()
        .filter(|c| pb::WaveHostState::try_from(c.state) == Ok(state))
        .map(|c| c.hosts)
        .sum()
}

/// A wave's hosts per state, by the state's word.
pub fn counts(status: &pb::WaveStatus) -> std::collections::BTreeMap<&'static str, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for count in &status.counts {
        *counts.entry(host_state(count.state)).or_default() += count.hosts;
    }
    counts
}

pub fn on_failure_to_wire(arg: crate::OnFailureArg) -> i32 {
    match arg {
        crate::OnFailureArg::Rollback => pb::OnFailure::Rollback,
        crate::OnFailureArg::Hold => pb::OnFailure::Hold,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_value_has_the_core_s_word_and_unknown_values_say_so() {
        assert_eq!(job_state(pb::JobState::RolledBack.into()), "rolled-back");
        assert_eq!(job_phase(pb::JobPhase::Verify.into()), "verify");
        assert_eq!(wave_state(pb::WaveState::Halted.into()), "halted");
        assert_eq!(
            host_state(pb::WaveHostState::NotStarted.into()),
            "not-started"
        );
        assert_eq!(on_failure(pb::OnFailure::Hold.into()), "hold");
        for unknown in [0, 99] {
            assert_eq!(job_state(unknown), "unknown");
            assert_eq!(host_state(unknown), "unknown");
        }
    }
}
