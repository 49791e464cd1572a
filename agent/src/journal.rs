//! The agent's durable record of commands and of its migration state, and the
//! only writer of that state: a command is journaled as started before its
//! phase runs, and its final update (with the new migration state, in the same
//! line) after. After a crash or reboot the agent reads the journal; a command
//! that started but never finished is settled by the executor (a reboot is
//! judged by the boot id, anything else is interrupted), never run again
//! blindly. A duplicate command gets its recorded result.
//!
//! Format: JSON lines in `<state-dir>/journal.jsonl`, each appended and
//! fsynced. A torn last line (crash mid-write) is ignored.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::command::{AgentCommand, CommandPhase, CommandUpdate};
use crate::migration::Migration;

/// Outcomes kept for answering duplicates.
const REMEMBERED: usize = 128;
/// Past this many lines the journal is rewritten with only what is remembered.
const COMPACT_AFTER: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Record {
    Started {
        command_id: String,
        sequence: u64,
        phase: CommandPhase,
        at_unix_ms: i64,
        /// The boot id when the command started, to tell whether a reboot happened.
        #[serde(default)]
        boot_id: Option<String>,
    },
    Finished {
        update: CommandUpdate,
        /// The migration state after this command, when it changed it.
        #[serde(default)]
        migration: Option<Migration>,
    },
}

/// A command that started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub command_id: String,
    pub sequence: u64,
    pub phase: CommandPhase,
    pub boot_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The journal as the executor holds it. Shared so that a simulated machine
/// that goes down and comes back (`mf-sim fleet`) restarts its agent on the
/// same in-memory journal, as a real one restarts on the same file.
pub type SharedJournal = std::sync::Arc<std::sync::Mutex<Journal>>;

#[derive(Debug)]
pub struct Journal {
    /// None for an in-memory journal (simulated agents).
    path: Option<PathBuf>,
    lines: usize,
    last_sequence: u64,
    outcomes: BTreeMap<String, CommandUpdate>,
    order: VecDeque<String>,
    running: Option<Running>,
    last: Option<CommandUpdate>,
    migration: Migration,
}

impl Journal {
    pub fn in_memory() -> Self {
        Self {
            path: None,
            lines: 0,
            last_sequence: 0,
            outcomes: BTreeMap::new(),
            order: VecDeque::new(),
            running: None,
            last: None,
            migration: Migration::default(),
        }
    }

    /// Reads the journal. A command left running stays running: see [`Journal::running`].
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let error = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        let mut journal = Self {
            path: Some(path.to_path_buf()),
            ..Self::in_memory()
        };
        match File::open(path) {
            Ok(file) => {
                for (index, line) in BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(error)?;
                    match serde_json::from_str::<Record>(&line) {
                        Ok(record) => journal.apply(record),
                        Err(e) => {
                            warn!(line = index + 1, error = %e, "skipping an unreadable journal line")
                        }
                    }
                    journal.lines += 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
        if journal.lines > COMPACT_AFTER && journal.running.is_none() {
            journal.compact()?;
        }
        Ok(journal)
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Started {
                command_id,
                sequence,
                phase,
                boot_id,
                ..
            } => {
                self.last_sequence = self.last_sequence.max(sequence);
                self.running = Some(Running {
                    command_id,
                    sequence,
                    phase,
                    boot_id,
                });
            }
            Record::Finished { update, migration } => {
                self.last_sequence = self.last_sequence.max(update.sequence);
                if self
                    .running
                    .as_ref()
                    .is_some_and(|r| r.command_id == update.command_id)
                {
                    self.running = None;
                }
                if let Some(migration) = migration {
                    self.migration = migration;
                }
                if !self.outcomes.contains_key(&update.command_id) {
                    self.order.push_back(update.command_id.clone());
                }
                self.outcomes
                    .insert(update.command_id.clone(), update.clone());
                while self.order.len() > REMEMBERED {
                    if let Some(old) = self.order.pop_front() {
                        self.outcomes.remove(&old);
                    }
                }
                self.last = Some(update);
            }
        }
    }

    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        if let Some(path) = &self.path {
            let error = |source| JournalError {
                path: path.clone(),
                source,
            };
            let mut line = serde_json::to_vec(record).map_err(|e| error(e.into()))?;
            line.push(b'\n');
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(error)?;
            file.write_all(&line).map_err(error)?;
            file.sync_data().map_err(error)?;
            self.lines += 1;
        }
        self.apply(record.clone());
        Ok(())
    }

    /// Rewrites the journal with only the remembered outcomes, atomically; the
    /// migration state rides on the last of them.
    fn compact(&mut self) -> Result<(), JournalError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let error = |source| JournalError {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("jsonl.tmp");
        let mut text = Vec::new();
        let last = self.order.back().cloned();
        for id in &self.order {
            if let Some(update) = self.outcomes.get(id) {
                let migration = (Some(id) == last.as_ref()).then(|| self.migration.clone());
                let record = Record::Finished {
                    update: update.clone(),
                    migration,
                };
                serde_json::to_writer(&mut text, &record).map_err(|e| error(e.into()))?;
                text.push(b'\n');
            }
        }
        let mut file = File::create(&tmp).map_err(error)?;
        file.write_all(&text).map_err(error)?;
        file.sync_all().map_err(error)?;
        std::fs::rename(&tmp, &path).map_err(error)?;
        self.lines = self.order.len();
        Ok(())
    }

    /// Records that a command starts; its phase may run only after this returns.
    pub fn start(
        &mut self,
        command: &AgentCommand,
        boot_id: Option<String>,
    ) -> Result<(), JournalError> {
        self.append(&Record::Started {
            command_id: command.id.clone(),
            sequence: command.sequence,
            phase: command.phase.clone(),
            at_unix_ms: crate::command::now_unix_ms(),
            boot_id,
        })
    }

    /// Records a command's outcome and, when it changed, the migration state.
    pub fn finish(
        &mut self,
        update: CommandUpdate,
        migration: Option<Migration>,
    ) -> Result<(), JournalError> {
        self.append(&Record::Finished { update, migration })
    }

    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub fn last_update(&self) -> Option<&CommandUpdate> {
        self.last.as_ref()
    }

    /// The recorded outcome of a command, for a duplicate.
    pub fn outcome(&self, command_id: &str) -> Option<&CommandUpdate> {
        self.outcomes.get(command_id)
    }

    /// The command that started and has not finished, if any.
    pub fn running(&self) -> Option<&Running> {
        self.running.as_ref()
    }

    pub fn migration(&self) -> &Migration {
        &self.migration
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Step, Tool, UpdateState};
    use crate::migration::Stage;

    fn command(id: &str, sequence: u64) -> AgentCommand {
        AgentCommand {
            id: id.into(),
            host_id: "h".into(),
            sequence,
            expires_unix_ms: i64::MAX,
            phase: CommandPhase::Precheck(Step {
                tool: Tool::Leapp,
                to: mf_core::path::Target::from_version("8.10").expect("supported"),
            }),
        }
    }

    fn done(
        journal: &mut Journal,
        id: &str,
        sequence: u64,
        state: UpdateState,
    ) -> Result<(), JournalError> {
        journal.start(&command(id, sequence), None)?;
        journal.finish(
            CommandUpdate::new(
                &command(id, sequence),
                state,
                "",
                crate::command::now_unix_ms(),
            ),
            None,
        )
    }

    #[test]
    fn outcomes_and_sequences_survive_reopening() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        done(&mut Journal::open(&path)?, "a", 1, UpdateState::Succeeded)?;
        let journal = Journal::open(&path)?;
        assert_eq!(journal.last_sequence(), 1);
        assert_eq!(
            journal.outcome("a").map(|u| u.state),
            Some(UpdateState::Succeeded)
        );
        assert_eq!(journal.running(), None);
        Ok(())
    }

    #[test]
    fn a_command_left_running_is_still_running_after_reopening()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        Journal::open(&path)?.start(&command("b", 7), Some("boot-1".into()))?; // the agent dies here
        let journal = Journal::open(&path)?;
        let running = journal.running().expect("still running");
        assert_eq!(
            (running.command_id.as_str(), running.boot_id.as_deref()),
            ("b", Some("boot-1"))
        );
        assert_eq!(journal.last_sequence(), 7);
        Ok(())
    }

    #[test]
    fn the_migration_state_survives_reopening_and_compaction()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        let snapshotted = Migration {
            stage: Stage::Snapshotted,
            ..Migration::default()
        };
        {
            let mut journal = Journal::open(&path)?;
            journal.start(&command("s", 1), None)?;
            journal.finish(
                CommandUpdate::new(
                    &command("s", 1),
                    UpdateState::Succeeded,
                    "",
                    crate::command::now_unix_ms(),
                ),
                Some(snapshotted.clone()),
            )?;
            done(&mut journal, "p", 2, UpdateState::Succeeded)?;
        }
        let mut journal = Journal::open(&path)?;
        assert_eq!(journal.migration(), &snapshotted);
        journal.compact()?;
        assert_eq!(Journal::open(&path)?.migration(), &snapshotted);
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        done(&mut Journal::open(&path)?, "c", 3, UpdateState::Failed)?;
        OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(b"{\"event\":\"started\",\"comm")?;
        let journal = Journal::open(&path)?;
        assert_eq!(journal.last_sequence(), 3);
        assert_eq!(
            journal.outcome("c").map(|u| u.state),
            Some(UpdateState::Failed)
        );
        Ok(())
    }

    #[test]
    fn compaction_keeps_what_is_remembered() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path)?;
        let last = COMPACT_AFTER as u64 / 2 + 10;
        for n in 1..=last {
            done(&mut journal, &format!("c{n}"), n, UpdateState::Succeeded)?;
        }
        drop(journal);
        let journal = Journal::open(&path)?;
        assert_eq!(journal.last_sequence(), last);
        assert!(journal.outcome(&format!("c{last}")).is_some());
        assert!(journal.outcome("c1").is_none());
        assert_eq!(std::fs::read_to_string(&path)?.lines().count(), REMEMBERED);
        assert_eq!(Journal::open(&path)?.last_sequence(), last);
        Ok(())
    }
}
