//! The backup file: JSON lines, so that it can be read, diffed and checked
//! with ordinary tools. A header (format, version, store schema, when), one
//! line per record of every tree, and a trailer with the number of records
//! and the SHA-256 of every line before it: a truncated, reordered or edited
//! file is refused before anything is restored.
//!
//! The snapshot is taken by the inventory task, the store's only writer,
//! between two of its batches, so it is consistent across trees without a
//! pause of the service longer than reading the store.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::{SCHEMA_VERSION, StoreError};

pub const FORMAT: &str = "mf-coordinator-backup";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("not a backup of this coordinator's store: {0}")]
    Foreign(String),
    #[error("the file is incomplete or altered: {0} (nothing was restored; take the backup again)")]
    Damaged(String),
    #[error(
        "the data directory {0} is not empty: restore goes into an empty one (move this one aside)"
    )]
    Occupied(String),
    #[error("cannot read the backup: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One record of one tree, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub tree: &'static str,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    schema: String,
    created_unix_ms: i64,
    coordinator_version: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    tree: String,
    /// Hex: keys are bytes (token hashes, big-endian sequence numbers).
    key: String,
    /// The stored JSON, as text.
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    records: u64,
    sha256: String,
}

/// What a checked backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub created_unix_ms: i64,
    pub records: u64,
    pub sha256: String,
}

/// The backup of `records`, in chunks of about `chunk_bytes`, made as they
/// are sent (the records are read once; the file is never whole in memory).
pub fn chunks(
    records: Vec<Record>,
    created_unix_ms: i64,
    chunk_bytes: usize,
) -> impl Iterator<Item = Vec<u8>> + Send {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        schema: String::from_utf8_lossy(SCHEMA_VERSION).into_owned(),
        created_unix_ms,
        coordinator_version: env!("CARGO_PKG_VERSION").into(),
    };
    let count = records.len() as u64;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut lines = std::iter::once(json_line(&header)).chain(records.into_iter().map(|r| {
        json_line(&Line {
            tree: r.tree.into(),
            key: hex(&r.key),
            // Stored values are JSON text; a byte that is not would be
            // replaced, and the restored record refused when read.
            value: String::from_utf8_lossy(&r.value).into_owned(),
        })
    }));
    let mut finished = false;
    std::iter::from_fn(move || {
        if finished {
            return None;
        }
        let mut chunk = Vec::with_capacity(chunk_bytes + 4096);
        while chunk.len() < chunk_bytes {
            match lines.next() {
                Some(line) => {
                    digest.update(&line);
                    chunk.extend_from_slice(&line);
                }
                None => {
                    let trailer = Trailer {
                        records: count,
                        sha256: hex(digest.clone().finish().as_ref()),
                    };
                    chunk.extend_from_slice(&json_line(&trailer));
                    finished = true;
                    break;
                }
            }
        }
        Some(chunk)
    })
}

fn json_line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Reads a backup, handing each record to `restore` as it is checked, and
/// returns the trailer once the whole file has proved complete and intact.
/// The caller restores into a directory it discards unless this succeeds.
pub fn read(
    input: impl BufRead,
    mut restore: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<Summary, BackupError> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut records = 0u64;
    let mut header_seen = false;
    let mut created_unix_ms = 0;
    for (index, line) in input.split(b'\n').enumerate() {
        let number = index + 1;
        let mut line = line?;
        let malformed = |reason: String| BackupError::Malformed {
            line: number,
            reason,
        };
        if !header_seen {
            let header: Header = serde_json::from_slice(&line).map_err(|e| {
                BackupError::Foreign(format!("its first line is not a backup header ({e})"))
            })?;
            if header.format != FORMAT || header.version != VERSION {
                return Err(BackupError::Foreign(format!(
                    "format {} version {}, expected {FORMAT} version {VERSION}",
                    header.format, header.version
                )));
            }
            if header.schema.as_bytes() != SCHEMA_VERSION {
                return Err(BackupError::Foreign(format!(
                    "store schema {}, this coordinator reads schema {}",
                    header.schema,
                    String::from_utf8_lossy(SCHEMA_VERSION)
                )));
            }
            header_seen = true;
            created_unix_ms = header.created_unix_ms;
        } else if let Ok(record) = serde_json::from_slice::<Line>(&line) {
            let tree = super::TREES
                .iter()
                .find(|t| **t == record.tree)
                .ok_or_else(|| malformed(format!("unknown tree {:?}", record.tree)))?;
            let key = unhex(&record.key).ok_or_else(|| malformed("a key is not hex".into()))?;
            restore(Record {
                tree,
                key,
                value: record.value.into_bytes(),
            })?;
            records += 1;
        } else {
            let trailer: Trailer = serde_json::from_slice(&line)
                .map_err(|e| malformed(format!("neither a record nor the trailer: {e}")))?;
            let sha256 = hex(digest.finish().as_ref());
            if trailer.sha256 != sha256 {
                return Err(BackupError::Damaged(format!(
                    "its lines hash to {sha256}, the trailer says {}",
                    trailer.sha256
                )));
            }
            if trailer.records != records {
                return Err(BackupError::Damaged(format!(
                    "{records} records, the trailer says {}",
                    trailer.records
                )));
            }
            return Ok(Summary {
                created_unix_ms,
                records,
                sha256,
            });
        }
        line.push(b'\n');
        digest.update(&line);
    }
    Err(BackupError::Damaged(if header_seen {
        format!("it ends after {records} records without its trailer")
    } else {
        "it is empty".into()
    }))
}

/// Restores `file` into `data_dir`, which must be absent or empty: into a
/// sibling directory first, renamed into place only once the whole file has
/// proved intact and is flushed, so a failed restore leaves nothing behind.
pub fn restore(file: &std::path::Path, data_dir: &std::path::Path) -> Result<Summary, BackupError> {
    let occupied = std::fs::read_dir(data_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(BackupError::Occupied(data_dir.display().to_string()));
    }
    let input = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut partial = data_dir.as_os_str().to_owned();
    partial.push(".restoring");
    let partial = std::path::PathBuf::from(partial);
    if partial.exists() {
        // Ours by name: what an interrupted restore left.
        std::fs::remove_dir_all(&partial)?;
    }
    let outcome = (|| {
        let store = super::Store::open(&partial)?;
        let summary = read(input, |record| store.restore(record))?;
        // Certificates issued after this moment are unknown to the records
        // but not stale: the inventory takes them (a renewal since).
        store.set_restored_from(summary.created_unix_ms)?;
        store.flush_now()?;
        Ok(summary)
    })();
    match outcome {
        Ok(summary) => {
            if data_dir.exists() {
                std::fs::remove_dir(data_dir)?;
            }
            std::fs::rename(&partial, data_dir)?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

/// Checks `file` as a restore would, writing nothing.
pub fn check(file: &std::path::Path) -> Result<Summary, BackupError> {
    let input = std::io::BufReader::new(std::fs::File::open(file)?);
    read(input, |_| Ok(()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        vec![
            Record {
                tree: "hosts",
                key: b"web-01".to_vec(),
                value: br#"{"id":"web-01"}"#.to_vec(),
            },
            Record {
                tree: "audit",
                key: 7u64.to_be_bytes().to_vec(),
                value: br#"{"seq":7,"note":"line\nbreak"}"#.to_vec(),
            },
        ]
    }

    fn file(records: Vec<Record>, chunk: usize) -> Vec<u8> {
        chunks(records, 1_700_000_000_000, chunk)
            .flatten()
            .collect()
    }

    fn read_all(bytes: &[u8]) -> Result<(Summary, Vec<Record>), BackupError> {
        let mut got = Vec::new();
        let trailer = read(bytes, |r| {
            got.push(r);
            Ok(())
        })?;
        Ok((trailer, got))
    }

    #[test]
    fn a_backup_reads_back_to_the_same_records_whatever_the_chunk_size() {
        for chunk in [1, 64, 1 << 20] {
            let bytes = file(records(), chunk);
            let (trailer, got) = read_all(&bytes).expect("a good backup");
            assert_eq!(trailer.records, 2);
            assert_eq!(got, records(), "chunk {chunk}");
        }
        let empty = file(Vec::new(), 1 << 20);
        assert_eq!(read_all(&empty).expect("an empty store").1, Vec::new());
    }

    #[test]
    fn a_truncated_edited_or_reordered_backup_is_refused() {
        let bytes = file(records(), 1 << 20);
        let text = String::from_utf8(bytes.clone()).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);

        let truncated = lines[..3].join("\n");
        let err = read_all(truncated.as_bytes()).expect_err("truncated");
        assert!(err.to_string().contains("without its trailer"), "{err}");

        let edited = text.replacen("web-01", "web-02", 1);
        let err = read_all(edited.as_bytes()).expect_err("edited");
        assert!(err.to_string().contains("hash to"), "{err}");

        let reordered = [lines[0], lines[2], lines[1], lines[3]].join("\n");
        assert!(matches!(
            read_all(reordered.as_bytes()),
            Err(BackupError::Damaged(_))
        ));

        let dropped = [lines[0], lines[1], lines[3]].join("\n");
        assert!(matches!(
            read_all(dropped.as_bytes()),
            Err(BackupError::Damaged(_))
        ));

        let foreign = text.replacen(FORMAT, "something-else", 1);
        assert!(matches!(
            read_all(foreign.as_bytes()),
            Err(BackupError::Foreign(_))
        ));
        assert!(matches!(read_all(b""), Err(BackupError::Damaged(_))));
        let unknown_tree = text.replacen("\"hosts\"", "\"secrets\"", 1);
        let err = read_all(unknown_tree.as_bytes()).expect_err("unknown tree");
        assert!(err.to_string().contains("unknown tree"), "{err}");
    }

    #[test]
    fn a_restore_lands_whole_or_not_at_all() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let source = super::super::Store::open(&dir.path().join("source"))?;
        for record in records() {
            source.restore(record)?;
        }
        let snapshot = source.snapshot()?;
        let file = dir.path().join("backup.jsonl");
        std::fs::write(&file, self::file(snapshot.clone(), 1 << 20))?;
        assert_eq!(check(&file)?.records, snapshot.len() as u64);

        let target = dir.path().join("restored");
        assert_eq!(restore(&file, &target)?.records, snapshot.len() as u64);
        let restored = super::super::Store::open(&target)?;
        assert_eq!(restored.restored_from()?, Some(1_700_000_000_000));
        let mut records = restored.snapshot()?;
        records.retain(|r| r.key != b"restored_from_unix_ms");
        assert_eq!(records, snapshot);
        drop(restored);

        // Into a directory in use: refused, untouched.
        let err = restore(&file, &target).expect_err("occupied");
        assert!(matches!(err, BackupError::Occupied(_)), "{err}");
        // A damaged file: nothing is left behind.
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, &text[..text.len() - 20])?;
        let fresh = dir.path().join("fresh");
        assert!(restore(&file, &fresh).is_err());
        assert!(!fresh.exists());
        assert!(!dir.path().join("fresh.restoring").exists());
        Ok(())
    }

    #[test]
    fn hex_round_trips_and_refuses_odd_or_foreign_text() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
