//! Runs the coordinator's commands, one at a time, across sessions. Every
//! command is checked before anything happens: a duplicate gets its recorded
//! outcome; a command for another host, an expired one, a replayed sequence or
//! one that arrives while another runs is refused with the reason. An accepted
//! command is journaled before its phase starts.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::command::{Command, State, Update, now_unix_ms};
use crate::host::Host;
use crate::journal::Journal;
use crate::phases;

/// What a new session tells the coordinator in its hello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub last_sequence: u64,
    pub last_update: Option<Update>,
}

/// The session's handle on the executor.
#[derive(Debug, Clone)]
pub struct Executor {
    commands: mpsc::Sender<Command>,
    progress: watch::Receiver<Progress>,
}

const QUEUE: usize = 16;

impl Executor {
    /// Starts the executor task. `updates` carries every update to whichever
    /// session is open; when none is, they wait there (bounded) and the journal
    /// keeps the final one for the next hello.
    pub fn spawn(
        host_id: String,
        host: Arc<dyn Host>,
        journal: Journal,
        updates: mpsc::Sender<Update>,
    ) -> Self {
        let (commands, rx) = mpsc::channel(QUEUE);
        let (progress_tx, progress) = watch::channel(progress_of(&journal));
        let worker = Worker {
            host_id,
            host,
            journal: Arc::new(Mutex::new(journal)),
            updates,
            progress: progress_tx,
        };
        tokio::spawn(worker.run(rx));
        Self { commands, progress }
    }

    pub async fn submit(&self, command: Command) {
        // The worker only stops when every handle is gone.
        let _ = self.commands.send(command).await;
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }
}

fn progress_of(journal: &Journal) -> Progress {
    Progress {
        last_sequence: journal.last_sequence(),
        last_update: journal.last_update().cloned(),
    }
}

struct Worker {
    host_id: String,
    host: Arc<dyn Host>,
    journal: Arc<Mutex<Journal>>,
    updates: mpsc::Sender<Update>,
    progress: watch::Sender<Progress>,
}

type Running = tokio::task::JoinHandle<(Command, phases::Outcome)>;

impl Worker {
    async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let mut running: Option<(String, Running)> = None;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        let busy = running.as_ref().map(|(id, _)| id.clone());
                        if let Some(task) = self.accept(command, busy).await {
                            running = Some(task);
                        }
                    }
                    None => break,
                },
                finished = async { running.as_mut().map(|(_, task)| task).expect("guarded").await }, if running.is_some() => {
                    running = None;
                    match finished {
                        Ok((command, outcome)) => self.finish(&command, outcome).await,
                        Err(e) => warn!(error = %e, "a phase panicked; the journal reports it as interrupted at restart"),
                    }
                }
            }
        }
    }

    fn send(&self, update: Update) {
        if self.updates.try_send(update).is_err() {
            warn!("update queue full; the journal keeps the outcome for the next hello");
        }
    }

    fn journal<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> T {
        // A panic inside a journal call leaves its in-memory index as it was.
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut journal)
    }

    /// Checks a command; starts it if it passes. Returns the running phase.
    async fn accept(&self, command: Command, busy: Option<String>) -> Option<(String, Running)> {
        if let Some(recorded) = self.journal(|j| j.outcome(&command.id).cloned()) {
            info!(command_id = %command.id, "duplicate command: sending its recorded outcome");
            self.send(recorded);
            return None;
        }
        let last_sequence = self.journal(|j| j.last_sequence());
        let refusal = if command.host_id != self.host_id {
            Some(format!(
                "this command is for host {}, this is {}",
                command.host_id, self.host_id
            ))
        } else if command.expires_unix_ms <= now_unix_ms() {
            Some(format!(
                "the command expired at {} (unix ms)",
                command.expires_unix_ms
            ))
        } else if command.sequence <= last_sequence {
            Some(format!(
                "sequence {} is not after the last accepted one ({last_sequence}): replayed command",
                command.sequence
            ))
        } else {
            busy.or_else(|| self.journal(|j| j.running().map(str::to_string)))
                .map(|other| format!("busy with command {other}"))
        };
        if let Some(reason) = refusal {
            warn!(command_id = %command.id, %reason, "command refused");
            self.send(Update::new(&command, State::Refused, reason));
            return None;
        }

        let journal = Arc::clone(&self.journal);
        let to_start = command.clone();
        let started = tokio::task::spawn_blocking(move || {
            journal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .start(&to_start)
        })
        .await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.send(Update::new(
                    &command,
                    State::Failed,
                    format!("cannot journal the command: {e}"),
                ));
                return None;
            }
            Err(e) => {
                self.send(Update::new(
                    &command,
                    State::Failed,
                    format!("cannot journal the command: {e}"),
                ));
                return None;
            }
        }
        self.publish();
        info!(command_id = %command.id, phase = %command.phase, "command started");
        self.send(Update::new(
            &command,
            State::Started,
            command.phase.to_string(),
        ));
        let host = Arc::clone(&self.host);
        let id = command.id.clone();
        let task = tokio::task::spawn_blocking(move || {
            let outcome = phases::run(host.as_ref(), &command.phase);
            (command, outcome)
        });
        Some((id, task))
    }

    async fn finish(&self, command: &Command, outcome: phases::Outcome) {
        let mut update = Update::new(command, outcome.state, outcome.detail);
        update.findings = outcome.findings;
        let journal = Arc::clone(&self.journal);
        let record = update.clone();
        let written = tokio::task::spawn_blocking(move || {
            journal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .finish(record)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            warn!(command_id = %command.id, "cannot journal the outcome; it is sent but may be reported as interrupted after a restart");
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
    use std::time::Duration;

    use super::*;
    use crate::command::{MigrationTool, Phase};
    use crate::host::RootedHost;

    fn command(id: &str, host: &str, sequence: u64, expires_in_ms: i64) -> Command {
        Command {
            id: id.into(),
            host_id: host.into(),
            sequence,
            expires_unix_ms: now_unix_ms() + expires_in_ms,
            phase: Phase::Precheck {
                tool: MigrationTool::Leapp,
                target_version: "8.10".into(),
            },
        }
    }

    async fn next(updates: &mut mpsc::Receiver<Update>) -> Update {
        tokio::time::timeout(Duration::from_secs(10), updates.recv())
            .await
            .expect("an update in time")
            .expect("the executor is running")
    }

    /// An executor over an empty tree: its precheck fails fast (unknown OS),
    /// which is all these tests need from a phase.
    fn executor(dir: &std::path::Path) -> (Executor, mpsc::Receiver<Update>) {
        let journal = Journal::open(&dir.join("journal.jsonl")).expect("journal");
        let (tx, rx) = mpsc::channel(16);
        let host: Arc<dyn Host> = Arc::new(RootedHost::new(dir.join("root")));
        (Executor::spawn("me".into(), host, journal, tx), rx)
    }

    #[tokio::test]
    async fn every_unsafe_command_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (executor, mut updates) = executor(dir.path());

        executor.submit(command("c1", "me", 5, 60_000)).await;
        assert_eq!(next(&mut updates).await.state, State::Started);
        let done = next(&mut updates).await;
        assert_eq!(
            (done.command_id.as_str(), done.state),
            ("c1", State::Failed)
        );

        let cases = [
            (
                command("c2", "someone-else", 6, 60_000),
                "this command is for host someone-else",
            ),
            (command("c3", "me", 7, -1), "expired"),
            (command("c4", "me", 5, 60_000), "replayed command"),
            (command("c5", "me", 3, 60_000), "replayed command"),
        ];
        for (command, reason) in cases {
            let id = command.id.clone();
            executor.submit(command).await;
            let update = next(&mut updates).await;
            assert_eq!(
                (update.command_id.as_str(), update.state),
                (id.as_str(), State::Refused)
            );
            assert!(update.detail.contains(reason), "{id}: {}", update.detail);
        }

        // A duplicate gets the recorded outcome, not a second run.
        executor.submit(command("c1", "me", 5, 60_000)).await;
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
                .start(&command("long", "me", 9, 60_000))
                .expect("start");
        }
        let (executor, _updates) = executor(dir.path());
        let progress = executor.progress();
        assert_eq!(progress.last_sequence, 9);
        let last = progress.last_update.expect("the interrupted command");
        assert_eq!(
            (last.command_id.as_str(), last.state),
            ("long", State::Interrupted)
        );
    }
}
