//! The agent's durable record of commands, and the only writer of its durable
//! state: a command is journaled as started before its phase runs, and its
//! final update after. After a crash or reboot the agent reads the journal, and
//! a command that started but never finished is reported as interrupted, never
//! run again blindly. A duplicate command gets its recorded result.
//!
//! Format: JSON lines in `<state-dir>/journal.jsonl`, each appended and
//! fsynced. A torn last line (crash mid-write) is ignored.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::command::{Command, Phase, State, Update};

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
        phase: Phase,
        at_unix_ms: i64,
    },
    Finished {
        update: Update,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Debug)]
pub struct Journal {
    /// None for an in-memory journal (simulated agents).
    path: Option<PathBuf>,
    lines: usize,
    last_sequence: u64,
    outcomes: BTreeMap<String, Update>,
    order: VecDeque<String>,
    running: Option<(String, u64)>,
    last: Option<Update>,
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
        }
    }

    /// Reads the journal; a command left running is finished as interrupted.
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
        if let Some((command_id, sequence)) = journal.running.clone() {
            journal.finish(Update {
                command_id,
                sequence,
                state: State::Interrupted,
                detail: "the agent stopped while this command ran; it was not run again".into(),
                findings: Vec::new(),
                finished_unix_ms: crate::command::now_unix_ms(),
            })?;
        }
        if journal.lines > COMPACT_AFTER {
            journal.compact()?;
        }
        Ok(journal)
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Started {
                command_id,
                sequence,
                ..
            } => {
                self.last_sequence = self.last_sequence.max(sequence);
                self.running = Some((command_id, sequence));
            }
            Record::Finished { update } => {
                self.last_sequence = self.last_sequence.max(update.sequence);
                if self
                    .running
                    .as_ref()
                    .is_some_and(|(id, _)| *id == update.command_id)
                {
                    self.running = None;
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

    /// Rewrites the journal with only the remembered outcomes, atomically.
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
        for id in &self.order {
            if let Some(update) = self.outcomes.get(id) {
                serde_json::to_writer(
                    &mut text,
                    &Record::Finished {
                        update: update.clone(),
                    },
                )
                .map_err(|e| error(e.into()))?;
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
    pub fn start(&mut self, command: &Command) -> Result<(), JournalError> {
        self.append(&Record::Started {
            command_id: command.id.clone(),
            sequence: command.sequence,
            phase: command.phase.clone(),
            at_unix_ms: crate::command::now_unix_ms(),
        })
    }

    pub fn finish(&mut self, update: Update) -> Result<(), JournalError> {
        self.append(&Record::Finished { update })
    }

    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub fn last_update(&self) -> Option<&Update> {
        self.last.as_ref()
    }

    /// The recorded outcome of a command, for a duplicate.
    pub fn outcome(&self, command_id: &str) -> Option<&Update> {
        self.outcomes.get(command_id)
    }

    /// The command that started and has not finished, if any.
    pub fn running(&self) -> Option<&str> {
        self.running.as_ref().map(|(id, _)| id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MigrationTool;

    fn command(id: &str, sequence: u64) -> Command {
        Command {
            id: id.into(),
            host_id: "h".into(),
            sequence,
            expires_unix_ms: i64::MAX,
            phase: Phase::Precheck {
                tool: MigrationTool::Leapp,
                target_version: "8.10".into(),
            },
        }
    }

    #[test]
    fn outcomes_and_sequences_survive_reopening() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        {
            let mut journal = Journal::open(&path)?;
            journal.start(&command("a", 1))?;
            journal.finish(Update::new(&command("a", 1), State::Succeeded, "ok"))?;
        }
        let journal = Journal::open(&path)?;
        assert_eq!(journal.last_sequence(), 1);
        assert_eq!(
            journal.outcome("a").map(|u| u.state),
            Some(State::Succeeded)
        );
        assert_eq!(journal.running(), None);
        Ok(())
    }

    #[test]
    fn a_command_left_running_is_interrupted_not_rerun() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        {
            let mut journal = Journal::open(&path)?;
            journal.start(&command("b", 7))?;
        } // the agent dies here
        let journal = Journal::open(&path)?;
        let update = journal.last_update().expect("an update");
        assert_eq!(
            (update.command_id.as_str(), update.state),
            ("b", State::Interrupted)
        );
        assert_eq!(journal.running(), None);
        assert_eq!(journal.last_sequence(), 7);
        // Reopening again does not interrupt it twice.
        let again = Journal::open(&path)?;
        assert_eq!(
            again.outcome("b").map(|u| u.state),
            Some(State::Interrupted)
        );
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        {
            let mut journal = Journal::open(&path)?;
            journal.start(&command("c", 3))?;
            journal.finish(Update::new(&command("c", 3), State::Failed, "no"))?;
        }
        OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(b"{\"event\":\"started\",\"comm")?;
        let journal = Journal::open(&path)?;
        assert_eq!(journal.last_sequence(), 3);
        assert_eq!(journal.outcome("c").map(|u| u.state), Some(State::Failed));
        Ok(())
    }

    #[test]
    fn compaction_keeps_what_is_remembered() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path)?;
        for n in 1..=(COMPACT_AFTER as u64 / 2 + 10) {
            let c = command(&format!("c{n}"), n);
            journal.start(&c)?;
            journal.finish(Update::new(&c, State::Succeeded, ""))?;
        }
        drop(journal);
        let journal = Journal::open(&path)?;
        let last = COMPACT_AFTER as u64 / 2 + 10;
        assert_eq!(journal.last_sequence(), last);
        assert!(journal.outcome(&format!("c{last}")).is_some());
        assert!(journal.outcome("c1").is_none());
        let lines = std::fs::read_to_string(&path)?.lines().count();
        assert_eq!(lines, REMEMBERED);
        // The highest sequence survives compaction through the kept outcomes.
        assert_eq!(Journal::open(&path)?.last_sequence(), last);
        Ok(())
    }
}
