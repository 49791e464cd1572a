//! Runs the coordinator's commands, one at a time, across sessions. Every
//! command is checked before anything happens: a duplicate gets its recorded
//! outcome; a command for another host, an expired one, a replayed sequence,
//! one that arrives while another runs, or a phase the migration state does
//! not allow is refused with the reason. An accepted command is journaled
//! before its phase starts. At start-up, a command the journal shows running
//! is settled first (a reboot by the boot id), before the first hello.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::command::{AgentCommand, CommandUpdate, UpdateState, now_unix_ms};
use crate::host::Host;
use crate::journal::{Journal, SharedJournal};
use crate::migration::{Migration, NotAllowed};
use crate::phases::{self, Context, Outcome, PhaseResult};

/// Why the agent refuses a command; sent back as the refusal's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this command is for host {command_for}, this is {this_host}")]
    OtherHost {
        command_for: String,
        this_host: String,
    },
    #[error("the command expired at {0} (unix ms)")]
    Expired(i64),
    #[error("sequence {sequence} is not after the last accepted one ({last}): replayed command")]
    Replayed { sequence: u64, last: u64 },
    #[error("busy with command {0}")]
    Busy(String),
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
}

/// What a new session tells the coordinator in its hello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub last_sequence: u64,
    pub last_update: Option<CommandUpdate>,
}

/// The session's handle on the executor.
#[derive(Debug, Clone)]
pub struct Executor {
    commands: mpsc::Sender<AgentCommand>,
    progress: watch::Receiver<Progress>,
}

const QUEUE: usize = 16;
/// A host that asked to reboot and is still up after this has failed to reboot.
const REBOOT_GRACE: Duration = Duration::from_secs(600);

impl Executor {
    /// Settles what the journal shows running, then starts the executor task.
    /// `updates` carries every update to whichever session is open; when none
    /// is, they wait there (bounded) and the journal keeps the final one for
    /// the next hello.
    pub async fn spawn(
        host_id: String,
        host: Arc<dyn Host>,
        journal: SharedJournal,
        context: Context,
        updates: mpsc::Sender<CommandUpdate>,
    ) -> Self {
        let settled = {
            let (journal, host) = (Arc::clone(&journal), Arc::clone(&host));
            tokio::task::spawn_blocking(move || recover(&journal, host.as_ref())).await
        };
        let resume = match settled {
            Ok(Recovered::Settled(update)) => {
                info!(command_id = %update.command_id, state = ?update.state, "settled the command left running");
                None
            }
            Ok(Recovered::Resume(command)) => {
                info!(command_id = %command.id, phase = %command.phase, "resuming the command left running");
                Some(command)
            }
            Ok(Recovered::Nothing) => None,
            Err(e) => {
                warn!(error = %e, "settling the command left running panicked");
                None
            }
        };
        let context = Context {
            host_id: host_id.clone(),
            ..context
        };
        let (commands, rx) = mpsc::channel(QUEUE);
        let initial = progress_of(&lock(&journal));
        let (progress_tx, progress) = watch::channel(initial);
        let worker = Worker {
            host_id,
            host,
            journal,
            context,
            updates,
            progress: progress_tx,
        };
        tokio::spawn(worker.run(rx, resume));
        Self { commands, progress }
    }

    pub async fn submit(&self, command: AgentCommand) {
        // The worker only stops when every handle is gone.
        let _ = self.commands.send(command).await;
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }
}

fn lock(journal: &Mutex<Journal>) -> MutexGuard<'_, Journal> {
    // A panic inside a journal call leaves its in-memory index as it was.
    journal.lock().unwrap_or_else(PoisonError::into_inner)
}

fn progress_of(journal: &Journal) -> Progress {
    Progress {
        last_sequence: journal.last_sequence(),
        last_update: journal.last_update().cloned(),
    }
}

/// What start-up did with the command the journal shows running.
enum Recovered {
    Nothing,
    Settled(CommandUpdate),
    /// A verification, which only reads the host: run it again (the agent
    /// was restarted while it waited for FirstBoot, by an SELinux relabel's
    /// reboot for instance).
    Resume(AgentCommand),
}

/// Settles a command the journal shows running (blocking).
fn recover(journal: &Mutex<Journal>, host: &dyn Host) -> Recovered {
    let (running, migration) = {
        let journal = lock(journal);
        let Some(running) = journal.running() else {
            return Recovered::Nothing;
        };
        (running.clone(), journal.migration().clone())
    };
    if matches!(running.phase, crate::command::CommandPhase::Verify(_)) {
        // Already accepted and journaled: only its id, sequence and phase
        // matter from here on (the outcome is reported by them); the checks
        // on host id and expiry were passed when it arrived.
        return Recovered::Resume(AgentCommand {
            id: running.command_id,
            host_id: String::new(),
            sequence: running.sequence,
            expires_unix_ms: 0,
            phase: running.phase,
        });
    }
    let PhaseResult::Done { outcome, migration } = phases::recover(host, &running, &migration)
    else {
        return Recovered::Nothing;
    };
    let update = CommandUpdate {
        command_id: running.command_id,
        sequence: running.sequence,
        state: outcome.state,
        detail: outcome.detail,
        findings: outcome.findings,
        finished_unix_ms: now_unix_ms(),
    };
    if let Err(e) = lock(journal).finish(update.clone(), migration) {
        warn!(error = %e, "cannot journal the settled command");
    }
    Recovered::Settled(update)
}

struct Worker {
    host_id: String,
    host: Arc<dyn Host>,
    journal: Arc<Mutex<Journal>>,
    context: Context,
    updates: mpsc::Sender<CommandUpdate>,
    progress: watch::Sender<Progress>,
}

type Running = tokio::task::JoinHandle<(AgentCommand, PhaseResult)>;

/// A command whose phase is not decided yet, run again at `next`.
struct Waiting {
    command: AgentCommand,
    next: Instant,
}

/// How often an undecided verification looks again.
const RECHECK: Duration = Duration::from_secs(5);

impl Worker {
    async fn run(self, mut commands: mpsc::Receiver<AgentCommand>, resume: Option<AgentCommand>) {
        let mut running: Option<(String, Running)> =
            resume.map(|command| self.spawn_phase(command, None));
        // A command whose host is going down for a reboot, and until when.
        let mut rebooting: Option<(AgentCommand, Instant)> = None;
        let mut waiting: Option<Waiting> = None;
        // The command that is waiting, and when the wait gives up.
        let mut patience: Option<(String, Instant)> = None;
        loop {
            let deadline = rebooting.as_ref().map(|(_, at)| *at);
            let recheck = waiting.as_ref().map(|w| w.next);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        let busy = running
                            .as_ref()
                            .map(|(id, _)| id.clone())
                            .or_else(|| rebooting.as_ref().map(|(c, _)| c.id.clone()))
                            .or_else(|| waiting.as_ref().map(|w| w.command.id.clone()));
                        if let Some(task) = self.accept(command, busy).await {
                            running = Some(task);
                        }
                    }
                    None => break,
                },
                // With nothing running (or no deadline) these branches wait forever.
                finished = async {
                    match running.as_mut() {
                        Some((_, task)) => task.await,
                        None => std::future::pending().await,
                    }
                } => {
                    running = None;
                    match finished {
                        Ok((command, PhaseResult::Done { outcome, migration })) => {
                            patience = None;
                            self.finish(&command, outcome, migration).await;
                        }
                        Ok((command, PhaseResult::Rebooting)) => {
                            info!(command_id = %command.id, "the host is going down for a reboot");
                            rebooting = Some((command, Instant::now() + REBOOT_GRACE));
                        }
                        Ok((command, PhaseResult::NotYet(reason))) => {
                            let now = Instant::now();
                            let timeout = self.context.leapp.first_boot_timeout;
                            let give_up = match &patience {
                                Some((id, at)) if *id == command.id => *at,
                                _ => now + timeout,
                            };
                            if now >= give_up {
                                patience = None;
                                let migration = self.journal(|j| j.migration().clone());
                                if let PhaseResult::Done { outcome, migration } =
                                    phases::gave_up_waiting(&migration, &reason, timeout)
                                {
                                    self.finish(&command, outcome, migration).await;
                                }
                            } else {
                                info!(command_id = %command.id, %reason, "waiting before looking again");
                                patience = Some((command.id.clone(), give_up));
                                waiting = Some(Waiting { command, next: now + RECHECK });
                            }
                        }
                        Err(e) => warn!(error = %e, "a phase panicked; it is settled at the next start"),
                    }
                }
                () = async {
                    match recheck {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(again) = waiting.take() {
                        running = Some(self.spawn_phase(again.command, None));
                    }
                }
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some((command, _)) = rebooting.take() {
                        let outcome = Outcome {
                            state: UpdateState::Failed,
                            detail: format!("the host did not go down within {} s of its reboot", REBOOT_GRACE.as_secs()),
                            findings: Vec::new(),
                        };
                        self.finish(&command, outcome, None).await;
                    }
                }
            }
        }
    }

    fn send(&self, update: CommandUpdate) {
        if self.updates.try_send(update).is_err() {
            warn!("update queue full; the journal keeps the outcome for the next hello");
        }
    }

    fn journal<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> T {
        f(&mut lock(&self.journal))
    }

    /// Why `command` must not run now, if it must not.
    fn refusal(&self, command: &AgentCommand, busy: Option<String>) -> Option<Refusal> {
        let last_sequence = self.journal(|j| j.last_sequence());
        if command.host_id != self.host_id {
            return Some(Refusal::OtherHost {
                command_for: command.host_id.clone(),
                this_host: self.host_id.clone(),
            });
        }
        if command.expires_unix_ms <= now_unix_ms() {
            return Some(Refusal::Expired(command.expires_unix_ms));
        }
        if command.sequence <= last_sequence {
            return Some(Refusal::Replayed {
                sequence: command.sequence,
                last: last_sequence,
            });
        }
        if let Some(other) =
            busy.or_else(|| self.journal(|j| j.running().map(|r| r.command_id.clone())))
        {
            return Some(Refusal::Busy(other));
        }
        self.journal(|j| j.migration().allows(&command.phase))
            .err()
            .map(Refusal::NotAllowed)
    }

    /// Checks a command; starts it if it passes. Returns the running phase.
    async fn accept(
        &self,
        command: AgentCommand,
        busy: Option<String>,
    ) -> Option<(String, Running)> {
        if let Some(recorded) = self.journal(|j| j.outcome(&command.id).cloned()) {
            info!(command_id = %command.id, "duplicate command: sending its recorded outcome");
            self.send(recorded);
            return None;
        }
        if let Some(reason) = self.refusal(&command, busy) {
            warn!(command_id = %command.id, %reason, "command refused");
            self.send(CommandUpdate::new(
                &command,
                UpdateState::Refused,
                reason.to_string(),
                crate::command::now_unix_ms(),
            ));
            return None;
        }
        let journal = Arc::clone(&self.journal);
        let host = Arc::clone(&self.host);
        let to_start = command.clone();
        let started = tokio::task::spawn_blocking(move || {
            let boot = phases::boot_id(host.as_ref());
            lock(&journal).start(&to_start, boot.clone()).map(|()| boot)
        })
        .await;
        let boot = match started {
            Ok(Ok(boot)) => boot,
            Ok(Err(e)) => {
                self.send(CommandUpdate::new(
                    &command,
                    UpdateState::Failed,
                    format!("cannot journal the command: {e}"),
                    crate::command::now_unix_ms(),
                ));
                return None;
            }
            Err(e) => {
                self.send(CommandUpdate::new(
                    &command,
                    UpdateState::Failed,
                    format!("cannot journal the command: {e}"),
                    crate::command::now_unix_ms(),
                ));
                return None;
            }
        };
        self.publish();
        info!(command_id = %command.id, phase = %command.phase, "command started");
        self.send(CommandUpdate::new(
            &command,
            UpdateState::Started,
            command.phase.to_string(),
            crate::command::now_unix_ms(),
        ));
        Some(self.spawn_phase(command, boot))
    }

    /// Runs the command's phase off the runtime; `boot` is the boot id
    /// journaled when it started.
    fn spawn_phase(&self, command: AgentCommand, boot: Option<String>) -> (String, Running) {
        let host = Arc::clone(&self.host);
        let migration = self.journal(|j| j.migration().clone());
        let context = self.context.clone();
        let id = command.id.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = phases::run(
                host.as_ref(),
                &command.phase,
                &migration,
                &context,
                boot.as_deref(),
            );
            (command, result)
        });
        (id, task)
    }

    async fn finish(&self, command: &AgentCommand, outcome: Outcome, migration: Option<Migration>) {
        let mut update = CommandUpdate::new(
            command,
            outcome.state,
            outcome.detail,
            crate::command::now_unix_ms(),
        );
        update.findings = outcome.findings;
        let journal = Arc::clone(&self.journal);
        let record = update.clone();
        let written =
            tokio::task::spawn_blocking(move || lock(&journal).finish(record, migration)).await;
        if !matches!(written, Ok(Ok(()))) {
            warn!(command_id = %command.id, "cannot journal the outcome; it is sent, and settled again at the next start");
        }
        self.publish();
        info!(command_id = %command.id, state = ?update.state, "command finished");
        self.send(update);
    }

    fn publish(&self) {
        let progress = self.journal(|j| progress_of(j));
        self.progress.send_replace(progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandPhase, Step, Tool};
    use crate::host::RootedHost;

    fn command(
        id: &str,
        host: &str,
        sequence: u64,
        expires_in_ms: i64,
        phase: CommandPhase,
    ) -> AgentCommand {
        AgentCommand {
            id: id.into(),
            host_id: host.into(),
            sequence,
            expires_unix_ms: now_unix_ms() + expires_in_ms,
            phase,
        }
    }

    fn precheck() -> CommandPhase {
        CommandPhase::Precheck(Step {
            tool: Tool::Leapp,
            to: mf_core::path::Target::from_version("8.10").expect("supported"),
        })
    }

    async fn next(updates: &mut mpsc::Receiver<CommandUpdate>) -> CommandUpdate {
        tokio::time::timeout(Duration::from_secs(10), updates.recv())
            .await
            .expect("an update in time")
            .expect("the executor is running")
    }

    /// An executor over an empty tree: its precheck fails fast (unknown OS),
    /// which is all these tests need from a phase.
    async fn executor(dir: &std::path::Path) -> (Executor, mpsc::Receiver<CommandUpdate>) {
        let journal = Journal::open(&dir.join("journal.jsonl")).expect("journal");
        let (tx, rx) = mpsc::channel(16);
        let host: Arc<dyn Host> = Arc::new(RootedHost::new(dir.join("root")));
        (
            Executor::spawn(
                "me".into(),
                host,
                Arc::new(Mutex::new(journal)),
                Context::default(),
                tx,
            )
            .await,
            rx,
        )
    }

    #[tokio::test]
    async fn every_unsafe_command_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (executor, mut updates) = executor(dir.path()).await;

        executor
            .submit(command("c1", "me", 5, 60_000, precheck()))
            .await;
        assert_eq!(next(&mut updates).await.state, UpdateState::Started);
        let done = next(&mut updates).await;
        assert_eq!(
            (done.command_id.as_str(), done.state),
            ("c1", UpdateState::Failed)
        );

        let cases = [
            (
                command("c2", "someone-else", 6, 60_000, precheck()),
                "this command is for host someone-else",
            ),
            (command("c3", "me", 7, -1, precheck()), "expired"),
            (
                command("c4", "me", 5, 60_000, precheck()),
                "replayed command",
            ),
            (
                command("c5", "me", 3, 60_000, precheck()),
                "replayed command",
            ),
            (
                command("c6", "me", 8, 60_000, CommandPhase::Commit),
                "commit is not allowed while the host is idle",
            ),
            (
                command("c7", "me", 9, 60_000, CommandPhase::Rollback),
                "nothing to roll back",
            ),
            (
                command("c8", "me", 10, 60_000, CommandPhase::Reboot),
                "reboot is not allowed",
            ),
        ];
        for (command, reason) in cases {
            let id = command.id.clone();
            executor.submit(command).await;
            let update = next(&mut updates).await;
            assert_eq!(
                (update.command_id.as_str(), update.state),
                (id.as_str(), UpdateState::Refused)
            );
            assert!(update.detail.contains(reason), "{id}: {}", update.detail);
        }

        // A duplicate gets the recorded outcome, not a second run.
        executor
            .submit(command("c1", "me", 5, 60_000, precheck()))
            .await;
        let again = next(&mut updates).await;
        assert_eq!(again, done);
        assert_eq!(executor.progress().last_sequence, 5);
    }

    #[tokio::test]
    async fn a_restarted_agent_reports_its_interrupted_command_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut journal = Journal::open(&dir.path().join("journal.jsonl")).expect("journal");
            journal
                .start(&command("long", "me", 9, 60_000, precheck()), None)
                .expect("start");
        }
        let (executor, _updates) = executor(dir.path()).await;
        let progress = executor.progress();
        assert_eq!(progress.last_sequence, 9);
        let last = progress.last_update.expect("the interrupted command");
        assert_eq!(
            (last.command_id.as_str(), last.state),
            ("long", UpdateState::Interrupted)
        );
    }
}
