//! Who joins a wave when it is created: a selected host with a passed
//! pre-check for the wave's target, a path to it, no job in progress, no other
//! unfinished wave, and a connected agent. The others are left out, each with
//! its reason, which `wave plan` shows.

use crate::facts::OsInfo;
use crate::job::{Job, JobState};
use crate::path::{self, PathError, Step, Target};
use crate::precheck::{PrecheckRecord, Readiness};

/// What the coordinator knows of a selected host when a wave is created.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub os: Option<&'a OsInfo>,
    pub job: Option<&'a Job>,
    pub precheck: Option<&'a PrecheckRecord>,
    pub connected: bool,
    /// The unfinished wave the host already belongs to, if any.
    pub in_wave: Option<&'a str>,
}

/// Why a selected host is left out of a wave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exclusion {
    #[error("already in wave {0}")]
    InOtherWave(String),
    #[error("has not reported its operating system")]
    NoOs,
    #[error("{0}")]
    NoPath(PathError),
    #[error("has a job in progress ({0})")]
    JobInProgress(JobState),
    #[error("no pre-check for {0} (run mfctl precheck)")]
    NoPrecheck(Target),
    /// What (at most three of) its blocking findings say: their titles,
    /// the key where a finding has no title.
    #[error("blocked at pre-check: {}", .0.join("; "))]
    Blocked(Vec<String>),
    #[error("pre-check error: {0}")]
    PrecheckError(String),
    #[error("its pre-check has not finished")]
    PrecheckUnfinished,
    #[error("unreachable: not connected")]
    Unreachable,
}

/// The steps a host will take in a wave to `target`, or why it stays out.
pub fn join(host: Candidate<'_>, target: Target) -> Result<Vec<Step>, Exclusion> {
    if let Some(other) = host.in_wave {
        return Err(Exclusion::InOtherWave(other.to_string()));
    }
    let os = host.os.ok_or(Exclusion::NoOs)?;
    let steps = path::plan(&os.id, &os.version, target).map_err(Exclusion::NoPath)?;
    if let Some(job) = host.job.filter(|j| !j.state.is_final()) {
        return Err(Exclusion::JobInProgress(job.state));
    }
    let precheck = host
        .precheck
        .filter(|p| p.target == target)
        .ok_or(Exclusion::NoPrecheck(target))?;
    // A pre-check in flight keeps the agent busy: the job's would be refused.
    if precheck.in_flight() {
        return Err(Exclusion::PrecheckUnfinished);
    }
    match precheck.readiness {
        Readiness::Ready => {}
        Readiness::Blocked => {
            let titles = precheck
                .findings
                .iter()
                .filter(|f| f.blocking)
                .map(|f| match f.title.trim() {
                    "" => f.key.clone(),
                    title => title.to_string(),
                })
                .take(3)
                .collect();
            return Err(Exclusion::Blocked(titles));
        }
        // A verdict, never a stored outcome; as an error if it ever is one.
        Readiness::Error | Readiness::Rebuild => {
            return Err(Exclusion::PrecheckError(precheck.detail.clone()));
        }
        Readiness::Unknown => return Err(Exclusion::PrecheckUnfinished),
    }
    if !host.connected {
        return Err(Exclusion::Unreachable);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Severity, Source};
    use crate::precheck::PrecheckState;

    fn rhel79() -> OsInfo {
        OsInfo {
            id: "rhel".into(),
            name: "Red Hat Enterprise Linux Server".into(),
            version: "7.9".into(),
        }
    }

    fn target() -> Target {
        "rhel-8.10".parse().expect("target")
    }

    fn precheck(readiness: Readiness, findings: Vec<Finding>) -> PrecheckRecord {
        let step = path::plan("rhel", "7.9", target()).expect("path")[0];
        PrecheckRecord {
            command_id: "c".into(),
            sequence: 1,
            target: target(),
            step,
            state: PrecheckState::Done,
            readiness,
            detail: "leapp preupgrade exited 1".into(),
            requested_unix_ms: 0,
            expires_unix_ms: 0,
            started_unix_ms: 0,
            finished_unix_ms: 0,
            findings,
            previous: None,
        }
    }

    fn blocker(key: &str) -> Finding {
        Finding {
            source: Source::Leapp,
            key: key.into(),
            severity: Severity::High,
            blocking: true,
            // A finding without a title is named by its key.
            title: if key == "k2" {
                String::new()
            } else {
                format!("Title of {key}")
            },
            summary: String::new(),
            remediations: Vec::new(),
        }
    }

    #[test]
    fn a_ready_connected_host_joins_and_every_other_case_says_why() {
        let os = rhel79();
        let ready = precheck(Readiness::Ready, vec![]);
        let blocked = precheck(Readiness::Blocked, vec![blocker("k1"), blocker("k2")]);
        let errored = precheck(Readiness::Error, vec![]);
        let host = Candidate {
            os: Some(&os),
            job: None,
            precheck: Some(&ready),
            connected: true,
            in_wave: None,
        };
        assert_eq!(
            join(host, target()).map(|s| s.len()),
            Ok(1),
            "leapp to 8.10"
        );
        let cases: Vec<(Candidate<'_>, &str)> = vec![
            (
                Candidate {
                    in_wave: Some("w0"),
                    ..host
                },
                "already in wave w0",
            ),
            (Candidate { os: None, ..host }, "has not reported"),
            (
                Candidate {
                    precheck: None,
                    ..host
                },
                "no pre-check for rhel-8.10",
            ),
            (
                Candidate {
                    precheck: Some(&blocked),
                    ..host
                },
                "blocked at pre-check: Title of k1; k2",
            ),
            (
                Candidate {
                    precheck: Some(&errored),
                    ..host
                },
                "pre-check error: leapp preupgrade exited 1",
            ),
            (
                Candidate {
                    connected: false,
                    ..host
                },
                "unreachable",
            ),
        ];
        for (candidate, expected) in cases {
            let why = join(candidate, target()).expect_err(expected).to_string();
            assert!(why.contains(expected), "{why} lacks {expected}");
        }
    }
}

/// A host whose turn comes while it is disconnected waits this long before
/// the wave gives it up as unreachable.
pub const UNREACHABLE_AFTER_MS: i64 = 10 * 60 * 1000;

/// Whether a host away since `last_seen_unix_ms` is given up now. The wait
/// counts from the coordinator's start at the earliest: after a restart every
/// agent needs a moment to come back, and none may be given up for that.
pub fn given_up(
    last_seen_unix_ms: i64,
    coordinator_started_unix_ms: i64,
    now_unix_ms: i64,
) -> bool {
    now_unix_ms - last_seen_unix_ms.max(coordinator_started_unix_ms) > UNREACHABLE_AFTER_MS
}

#[cfg(test)]
mod presence_tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn away_hosts_are_given_up_after_ten_minutes_from_the_later_of_sighting_and_start() {
        // (last seen, coordinator start, now, given up)
        let cases = [
            (0, 0, 10 * MIN, false),
            (0, 0, 10 * MIN + 1, true),
            (0, 9 * MIN, 11 * MIN, false),
            (0, 9 * MIN, 19 * MIN + 1, true),
            (5 * MIN, 0, 15 * MIN + 1, true),
        ];
        for (seen, start, now, expected) in cases {
            assert_eq!(given_up(seen, start, now), expected, "{seen} {start} {now}");
        }
    }
}
