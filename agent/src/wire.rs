//! Converts between the agent's domain types and the wire. Only session code uses it.

use mf_proto::v1 as pb;

use crate::facts::Facts;

impl From<&Facts> for pb::Facts {
    fn from(facts: &Facts) -> Self {
        pb::Facts {
            os: facts.os.as_ref().map(|os| pb::OsInfo {
                id: os.id.clone(),
                name: os.name.clone(),
                version: os.version.clone(),
            }),
            kernel: facts.kernel.clone().unwrap_or_default(),
            arch: facts.arch.clone().unwrap_or_default(),
            hostname: facts.hostname.clone().unwrap_or_default(),
            fqdn: facts.fqdn.clone().unwrap_or_default(),
            machine_id: facts.machine_id.clone().unwrap_or_default(),
            boot_id: facts.boot_id.clone().unwrap_or_default(),
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
}

use crate::command::{AgentCommand, CommandPhase, CommandUpdate, Step, Tool, UpdateState};
use crate::report::{Finding, Remediation, Severity, Source};
use mf_core::path::Target;

/// Why a command from the wire is not a command the agent knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed command: {0}")]
pub struct MalformedCommand(pub String);

impl MalformedCommand {
    fn new(reason: &str) -> Self {
        MalformedCommand(reason.to_string())
    }
}

/// Whether the command carries the signature of the pinned command key: a
/// peer with a server certificate from the CA but without that key is not
/// obeyed.
pub fn check_signature(command: &pb::Command, pinned: &[u8]) -> Result<(), MalformedCommand> {
    if pinned.is_empty() {
        return Err(MalformedCommand::new(
            "no command key is pinned yet (the agent's next certificate renewal pins it)",
        ));
    }
    if command.signature.is_empty() {
        return Err(MalformedCommand::new("the command is not signed"));
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pinned)
        .verify(&mf_proto::command_signed_bytes(command), &command.signature)
        .map_err(|_| {
            MalformedCommand::new(
                "the command's signature is not by the coordinator's command key pinned at \
                 enrollment",
            )
        })
}

/// A command from the wire, checked: ids, the phase and its step. Its expiry
/// is counted on this host's clock from `now_unix_ms` (when it arrived) when
/// the coordinator says how long it is valid for, so that a skewed clock
/// neither expires every command nor keeps an old one alive.
pub fn command_from_wire(
    wire: pb::Command,
    now_unix_ms: i64,
) -> Result<AgentCommand, MalformedCommand> {
    {
        if wire.command_id.is_empty() || wire.command_id.len() > 128 {
            return Err(MalformedCommand::new("the command id must be 1-128 bytes"));
        }
        let phase = match wire.phase.ok_or(MalformedCommand::new("no phase"))? {
            pb::command::Phase::Precheck(p) => {
                CommandPhase::Precheck(step(p.tool, p.target_version)?)
            }
            pb::command::Phase::Snapshot(s) => CommandPhase::Snapshot {
                job_id: valid_job_id(s.job_id)?,
            },
            pb::command::Phase::Execute(e) => {
                CommandPhase::Execute(step(e.tool, e.target_version)?)
            }
            pb::command::Phase::Reboot(_) => CommandPhase::Reboot,
            pb::command::Phase::Verify(v) => CommandPhase::Verify(step(v.tool, v.target_version)?),
            pb::command::Phase::Commit(_) => CommandPhase::Commit,
            pb::command::Phase::Rollback(_) => CommandPhase::Rollback,
        };
        Ok(AgentCommand {
            id: wire.command_id,
            host_id: wire.host_id,
            sequence: wire.sequence,
            expires_unix_ms: if wire.valid_for_ms > 0 {
                now_unix_ms.saturating_add(wire.valid_for_ms)
            } else {
                wire.expires_unix_ms
            },
            phase,
        })
    }
}

fn step(tool: i32, target_version: String) -> Result<Step, MalformedCommand> {
    Ok(Step {
        tool: match pb::MigrationTool::try_from(tool) {
            Ok(pb::MigrationTool::Convert2rhel) => Tool::Convert2rhel,
            Ok(pb::MigrationTool::Leapp) => Tool::Leapp,
            _ => return Err(MalformedCommand::new("unknown migration tool")),
        },
        // Digits only (it ends up on a command line) and a target this agent knows.
        to: Target::from_version(&target_version).map_err(|e| MalformedCommand(e.to_string()))?,
    })
}

/// 1-64 of letters, digits, '-' and '_': it names volumes and files.
fn valid_job_id(job_id: String) -> Result<String, MalformedCommand> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 64
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(job_id)
    } else {
        Err(MalformedCommand::new(
            "the job id must be 1-64 of [A-Za-z0-9_-]",
        ))
    }
}

fn finding_to_wire(f: &Finding) -> pb::Finding {
    {
        pb::Finding {
            source: match f.source {
                Source::Convert2rhel => pb::FindingSource::Convert2rhel,
                Source::Leapp => pb::FindingSource::Leapp,
                Source::Agent => pb::FindingSource::Agent,
            }
            .into(),
            key: f.key.clone(),
            severity: match f.severity {
                Severity::Info => pb::Severity::Info,
                Severity::Low => pb::Severity::Low,
                Severity::Medium => pb::Severity::Medium,
                Severity::High => pb::Severity::High,
            }
            .into(),
            blocking: f.blocking,
            title: f.title.clone(),
            summary: f.summary.clone(),
            remediations: f
                .remediations
                .iter()
                .map(|r| pb::Remediation {
                    kind: Some(match r {
                        Remediation::Hint(h) => pb::remediation::Kind::Hint(h.clone()),
                        Remediation::Command(argv) => {
                            pb::remediation::Kind::Command(pb::CommandLine { argv: argv.clone() })
                        }
                        Remediation::Playbook(p) => pb::remediation::Kind::Playbook(p.clone()),
                    }),
                })
                .collect(),
        }
    }
}

/// An update as sent, fitted to the coordinator's limits.
pub fn update_to_wire(u: &CommandUpdate) -> pb::CommandUpdate {
    let u = &u.fitted();
    {
        pb::CommandUpdate {
            command_id: u.command_id.clone(),
            sequence: u.sequence,
            state: match u.state {
                UpdateState::Started => pb::CommandState::Started,
                UpdateState::Succeeded => pb::CommandState::Succeeded,
                UpdateState::Failed => pb::CommandState::Failed,
                UpdateState::Refused => pb::CommandState::Refused,
                UpdateState::Interrupted => pb::CommandState::Interrupted,
            }
            .into(),
            detail: u.detail.clone(),
            findings: u.findings.iter().map(finding_to_wire).collect(),
            finished_unix_ms: u.finished_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real report may say more than an update may carry (a summary
    /// listing every package of a large host, hundreds of entries): the
    /// update leaves fitted to the coordinator's limits, however old the
    /// journal line it comes from, and the blocking findings stay.
    #[test]
    fn an_update_from_a_report_too_long_for_one_leaves_fitted() {
        use mf_core::finding::MAX_FINDINGS;
        let mut doc: serde_json::Value =
            serde_json::from_slice(&crate::fixtures::own("leapp/report-1.2.0.json")).expect("json");
        let entries = doc["entries"].as_array_mut().expect("entries");
        let first = entries[0].clone();
        entries[0]["summary"] =
            serde_json::Value::from("kernel-3.10.0-1160.el7.x86_64 ".repeat(5000));
        for i in 0..600 {
            let mut entry = first.clone();
            entry["key"] = serde_json::Value::from(format!("{i:040x}"));
            entry["groups"] = serde_json::json!(["kernel"]);
            entries.push(entry);
        }
        let findings = crate::report::parse_leapp(doc.to_string().as_bytes()).expect("parses");
        let blocking = findings.iter().filter(|f| f.blocking).count();
        assert!(blocking > 0, "the fixture has inhibitors");
        let update = CommandUpdate {
            command_id: "c".into(),
            sequence: 3,
            state: UpdateState::Succeeded,
            detail: "leapp preupgrade exited 1: ".repeat(1000),
            findings,
            finished_unix_ms: 5,
        };
        assert!(
            update.validate().is_err(),
            "the coordinator would refuse it whole"
        );
        let wire = update_to_wire(&update);
        assert_eq!(wire.findings.len(), MAX_FINDINGS);
        assert_eq!(
            wire.findings.last().map(|f| f.title.as_str()),
            Some(
                format!(
                    "{} more findings left out",
                    update.findings.len() - (MAX_FINDINGS - 1)
                )
                .as_str()
            )
        );
        assert_eq!(
            wire.findings.iter().filter(|f| f.blocking).count(),
            blocking
        );
        assert!(wire.detail.len() <= 16 * 1024);
        assert!(wire.findings.iter().all(|f| f.summary.len() <= 16 * 1024));
        assert_eq!((wire.command_id.as_str(), wire.sequence), ("c", 3));
    }

    #[test]
    fn only_well_formed_commands_convert() {
        let good = pb::Command {
            command_id: "c1".into(),
            host_id: "h".into(),
            sequence: 1,
            expires_unix_ms: 1,
            valid_for_ms: 0,
            signature: Vec::new(),
            phase: Some(pb::command::Phase::Precheck(pb::Precheck {
                tool: pb::MigrationTool::Leapp.into(),
                target_version: "8.10".into(),
            })),
        };
        assert!(command_from_wire(good.clone(), 0).is_ok());
        let mut no_phase = good.clone();
        no_phase.phase = None;
        assert_eq!(
            command_from_wire(no_phase, 0),
            Err(MalformedCommand::new("no phase"))
        );
        for (tool, version, expected) in [
            (0, "8.10", "unknown migration tool"),
            (2, "8.10; rm -rf /", "is not a target"),
            (2, "--reboot", "is not a target"),
            (2, "9.5", "not a supported target"),
        ] {
            let mut bad = good.clone();
            bad.phase = Some(pb::command::Phase::Precheck(pb::Precheck {
                tool,
                target_version: version.into(),
            }));
            let err = command_from_wire(bad, 0).expect_err(expected);
            assert!(err.0.contains(expected), "{err}");
        }
    }

    #[test]
    fn only_commands_signed_by_the_pinned_key_pass() {
        use ring::signature::{Ed25519KeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let key = |_: u8| {
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).expect("key").as_ref())
                .expect("pkcs8")
        };
        let (ours, theirs) = (key(1), key(2));
        let pinned = ours.public_key().as_ref().to_vec();
        let mut command = pb::Command {
            command_id: "c1".into(),
            host_id: "h".into(),
            sequence: 7,
            expires_unix_ms: 1,
            valid_for_ms: 60_000,
            signature: Vec::new(),
            phase: Some(pb::command::Phase::Rollback(pb::Rollback {})),
        };
        let unsigned = check_signature(&command, &pinned).expect_err("unsigned");
        assert!(unsigned.0.contains("not signed"), "{unsigned}");
        command.signature = theirs
            .sign(&mf_proto::command_signed_bytes(&command))
            .as_ref()
            .to_vec();
        let foreign = check_signature(&command, &pinned).expect_err("another key");
        assert!(foreign.0.contains("pinned at enrollment"), "{foreign}");
        command.signature = ours
            .sign(&mf_proto::command_signed_bytes(&command))
            .as_ref()
            .to_vec();
        assert_eq!(check_signature(&command, &pinned), Ok(()));
        // Any field changed after signing breaks it.
        let mut replayed = command.clone();
        replayed.sequence = 8;
        assert!(check_signature(&replayed, &pinned).is_err());
        // Nothing pinned: nothing obeyed.
        assert!(check_signature(&command, &[]).is_err());
    }

    #[test]
    fn an_expiry_is_counted_on_this_hosts_clock_from_arrival() {
        let day = 86_400_000;
        let coordinator_now = 1_000 * day;
        let command = pb::Command {
            command_id: "c1".into(),
            host_id: "h".into(),
            sequence: 1,
            expires_unix_ms: coordinator_now + 3_600_000,
            valid_for_ms: 3_600_000,
            signature: Vec::new(),
            phase: Some(pb::command::Phase::Reboot(pb::Reboot {})),
        };
        // This host's clock is two days ahead (or behind): still an hour.
        for skew in [2 * day, -2 * day] {
            let arrived = coordinator_now + skew;
            let command = command_from_wire(command.clone(), arrived).expect("valid");
            assert_eq!(command.expires_unix_ms - arrived, 3_600_000);
        }
        // From an older coordinator (no duration): its expiry as sent.
        let old = pb::Command {
            valid_for_ms: 0,
            ..command
        };
        assert_eq!(
            command_from_wire(old, 0).expect("valid").expires_unix_ms,
            coordinator_now + 3_600_000
        );
    }
}
