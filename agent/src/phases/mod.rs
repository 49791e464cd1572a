//! The phases an agent runs on its host, each through the `Host` interface
//! only, and the migration state each leaves. A phase returns its outcome;
//! the executor journals it. `Reboot` and `Rollback` end on a new boot: on a
//! real host the agent is stopped by the reboot, and [`recover`] settles them
//! when it starts again.

pub mod bootloader;
mod execute;
pub mod leapp;
pub mod precheck;
pub mod snapshot;
pub mod subscription;
mod verify;

use crate::command::{CommandPhase, UpdateState};
use crate::host::{Host, Reboot};
use crate::journal::Running;
use crate::migration::{Migration, Stage};
use crate::report::Finding;

pub use leapp::LeappConfig;
pub use snapshot::SnapshotConfig;
pub use subscription::Convert2rhelConfig;

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: UpdateState,
    pub detail: String,
    pub findings: Vec<Finding>,
}

impl Outcome {
    fn new(state: UpdateState, detail: impl Into<String>) -> Self {
        Self {
            state,
            detail: detail.into(),
            findings: Vec::new(),
        }
    }
}

/// What a phase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseResult {
    /// Its outcome, and the migration state it leaves when it changed it.
    Done {
        outcome: Outcome,
        migration: Option<Migration>,
    },
    /// The host is going down for a reboot; [`recover`] settles the phase
    /// when the agent starts again.
    Rebooting,
    /// Not decided yet (FirstBoot still runs beside the agent): the caller
    /// runs the phase again later, within its patience.
    NotYet(String),
}

impl PhaseResult {
    fn done(outcome: Outcome, migration: Option<Migration>) -> Self {
        Self::Done { outcome, migration }
    }
}

/// What a verification that waited too long for FirstBoot ends as.
pub fn gave_up_waiting(
    migration: &Migration,
    reason: &str,
    waited: std::time::Duration,
) -> PhaseResult {
    let reason = format!(
        "{reason}, still after {}: FirstBoot did not finish",
        mf_core::time::format_duration_ms(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX))
    );
    PhaseResult::done(
        Outcome::new(UpdateState::Failed, reason.clone()),
        with(migration, |m| {
            m.stage = Stage::Failed;
            m.failure = Some(reason);
        }),
    )
}

/// What the host's configuration says about phases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// This host's id, for the snapshot hook's environment.
    pub host_id: String,
    pub snapshot: SnapshotConfig,
    pub convert2rhel: Convert2rhelConfig,
    pub leapp: LeappConfig,
}

/// The last `n` non-empty lines of a tool's output, joined: what a phase's
/// detail quotes of it.
fn tail(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(n)
        .collect();
    lines.reverse();
    if lines.is_empty() {
        "no output".into()
    } else {
        lines.join(" / ")
    }
}

/// Why a tool says it failed: the last two lines of its stderr, or of its
/// stdout when stderr is empty (convert2rhel logs everything to stdout, and
/// its last line may only say whether the host was left unchanged).
fn complaint(output: &crate::host::CommandOutput) -> String {
    if output.stderr.trim().is_empty() {
        tail(&output.stdout, 2)
    } else {
        tail(&output.stderr, 2)
    }
}

pub fn boot_id(host: &dyn Host) -> Option<String> {
    host.read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn with(migration: &Migration, change: impl FnOnce(&mut Migration)) -> Option<Migration> {
    let mut next = migration.clone();
    change(&mut next);
    Some(next)
}

/// Runs a phase the state machine allows. Blocking: call it off the runtime.
/// `started_boot` is the boot id journaled when the command started.
pub fn run(
    host: &dyn Host,
    phase: &CommandPhase,
    migration: &Migration,
    context: &Context,
    started_boot: Option<&str>,
) -> PhaseResult {
    match phase {
        CommandPhase::Precheck(step) => {
            PhaseResult::done(precheck::run(host, *step, context), None)
        }
        CommandPhase::Snapshot { job_id } => {
            match snapshot::take(host, &context.snapshot, &context.host_id, job_id) {
                Ok((set, detail)) => PhaseResult::done(
                    Outcome::new(UpdateState::Succeeded, detail),
                    with(migration, |m| {
                        *m = Migration {
                            stage: Stage::Snapshotted,
                            snapshot: Some(set),
                            step: None,
                            failure: None,
                        }
                    }),
                ),
                Err(reason) => {
                    PhaseResult::done(Outcome::new(UpdateState::Failed, reason.to_string()), None)
                }
            }
        }
        CommandPhase::Execute(step) => match execute::run(host, step, context) {
            execute::Executed::Changed(detail) => PhaseResult::done(
                Outcome::new(UpdateState::Succeeded, detail),
                with(migration, |m| {
                    m.stage = Stage::Executed;
                    m.step = Some(*step);
                }),
            ),
            execute::Executed::Failed {
                detail,
                findings,
                changed,
            } => {
                let detail = if changed {
                    format!("{detail}; the host was changed: roll back")
                } else {
                    format!("{detail}; the host was not changed")
                };
                PhaseResult::done(
                    Outcome {
                        state: UpdateState::Failed,
                        detail: detail.clone(),
                        findings,
                    },
                    with(migration, |m| {
                        m.stage = Stage::Failed;
                        m.step = Some(*step);
                        m.failure = Some(detail);
                    }),
                )
            }
        },
        CommandPhase::Reboot => {
            // Never reboot blindly into an upgrade that already failed.
            if let Some(entry) = bootloader::failed_upgrade_pending(host) {
                return PhaseResult::done(
                    Outcome::new(
                        UpdateState::Failed,
                        format!(
                            "refused to reboot: the last upgrade failed in its initramfs ({}) and its \
                             boot entry {entry} is still the default, so the host would run the failed \
                             upgrade again; roll back (which removes that entry)",
                            bootloader::UPGRADE_FAILED
                        ),
                    ),
                    None,
                );
            }
            reboot(host, migration, started_boot, |m| m.stage = Stage::Rebooted)
        }
        CommandPhase::Verify(step) => match verify::run(host, step) {
            Err(pending @ verify::NotVerified::FirstBootPending) => {
                PhaseResult::NotYet(pending.to_string())
            }
            Ok(detail) => PhaseResult::done(
                Outcome::new(UpdateState::Succeeded, format!("verified: {detail}")),
                with(migration, |m| m.stage = Stage::Verified),
            ),
            Err(reason) => {
                let reason = reason.to_string();
                PhaseResult::done(
                    Outcome::new(UpdateState::Failed, reason.clone()),
                    with(migration, |m| {
                        m.stage = Stage::Failed;
                        m.failure = Some(reason);
                    }),
                )
            }
        },
        CommandPhase::Commit => {
            let set = migration
                .snapshot
                .clone()
                .unwrap_or(crate::migration::SnapshotSet::None);
            match snapshot::remove(host, &set, &context.host_id) {
                Ok(detail) => PhaseResult::done(
                    Outcome::new(UpdateState::Succeeded, format!("committed: {detail}")),
                    Some(Migration::default()),
                ),
                Err(reason) => {
                    PhaseResult::done(Outcome::new(UpdateState::Failed, reason.to_string()), None)
                }
            }
        }
        CommandPhase::Rollback => {
            let set = migration
                .snapshot
                .clone()
                .unwrap_or(crate::migration::SnapshotSet::None);
            if let Err(reason) = snapshot::revert(host, &set, &context.host_id) {
                return PhaseResult::done(
                    Outcome::new(UpdateState::Failed, reason.to_string()),
                    None,
                );
            }
            match host.reboot() {
                Ok(Reboot::Requested) => PhaseResult::Rebooting,
                Ok(Reboot::Completed) => settle_rollback(host, migration, started_boot),
                Err(e) => PhaseResult::done(
                    Outcome::new(UpdateState::Failed, format!("cannot reboot: {e}")),
                    None,
                ),
            }
        }
    }
}

/// Reboots; settles at once on a host that rebooted in-process, else waits
/// for [`recover`] on the next start.
fn reboot(
    host: &dyn Host,
    migration: &Migration,
    started_boot: Option<&str>,
    after: impl FnOnce(&mut Migration),
) -> PhaseResult {
    match host.reboot() {
        Ok(Reboot::Requested) => PhaseResult::Rebooting,
        Ok(Reboot::Completed) => settle_reboot(host, migration, started_boot, after),
        Err(e) => PhaseResult::done(
            Outcome::new(UpdateState::Failed, format!("cannot reboot: {e}")),
            None,
        ),
    }
}

fn settle_reboot(
    host: &dyn Host,
    migration: &Migration,
    started_boot: Option<&str>,
    after: impl FnOnce(&mut Migration),
) -> PhaseResult {
    let now = boot_id(host);
    if now.is_some() && now.as_deref() != started_boot {
        PhaseResult::done(
            Outcome::new(
                UpdateState::Succeeded,
                format!(
                    "rebooted (boot id {} -> {})",
                    started_boot.unwrap_or("?"),
                    now.unwrap_or_default()
                ),
            ),
            with(migration, after),
        )
    } else {
        PhaseResult::done(
            Outcome::new(
                UpdateState::Interrupted,
                "the agent restarted but the host did not reboot",
            ),
            None,
        )
    }
}

/// After the reboot of a rollback: the snapshots merged, and the host runs
/// what it ran before the step.
fn settle_rollback(host: &dyn Host, migration: &Migration, started: Option<&str>) -> PhaseResult {
    let set = migration
        .snapshot
        .clone()
        .unwrap_or(crate::migration::SnapshotSet::None);
    let settled = settle_reboot(host, migration, started, |m| *m = Migration::default());
    let PhaseResult::Done {
        outcome: settled_outcome,
        migration: settled_migration,
    } = &settled
    else {
        return settled;
    };
    match (settled_outcome, snapshot::merged(host, &set)) {
        (o, Ok(())) if o.state == UpdateState::Succeeded => {
            let os = crate::facts::collect(host, &Default::default()).os;
            let running_os = os.map_or("an unknown OS".to_string(), |o| {
                format!("{} {}", o.id, o.version)
            });
            PhaseResult::done(
                Outcome::new(
                    UpdateState::Succeeded,
                    format!("rolled back: the host runs {running_os} again"),
                ),
                settled_migration.clone(),
            )
        }
        (o, Err(reason)) if o.state == UpdateState::Succeeded => PhaseResult::done(
            Outcome::new(
                UpdateState::Failed,
                format!("the rollback did not complete: {reason}"),
            ),
            with(migration, |m| m.stage = Stage::Failed),
        ),
        _ => settled,
    }
}

/// Settles the command the journal shows as running when the agent starts.
/// A reboot or a rollback ends here on its new boot; anything else was cut
/// short and is reported interrupted, not run again.
pub fn recover(host: &dyn Host, running: &Running, migration: &Migration) -> PhaseResult {
    let started = running.boot_id.as_deref();
    match &running.phase {
        CommandPhase::Reboot => {
            settle_reboot(host, migration, started, |m| m.stage = Stage::Rebooted)
        }
        CommandPhase::Rollback => settle_rollback(host, migration, started),
        // The tool may have changed the host before it was cut short: only a
        // rollback (or an operator) may decide what comes next.
        CommandPhase::Execute(_) => PhaseResult::done(
            Outcome::new(
                UpdateState::Interrupted,
                "the agent stopped while the tool ran; the host's state is unknown and it was not run again",
            ),
            with(migration, |m| {
                m.stage = Stage::Failed;
                m.failure = Some("interrupted while executing".into());
            }),
        ),
        _ => PhaseResult::done(
            Outcome::new(
                UpdateState::Interrupted,
                "the agent stopped while this command ran; it was not run again",
            ),
            None,
        ),
    }
}
