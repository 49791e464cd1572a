//! The only module that touches sled. Records are JSON under these trees:
//! `hosts` (by host id), `tokens` (by SHA-256 of the token), `prechecks` (the
//! latest pre-check of each host, by host id), `jobs` (the latest migration
//! job of each host, by host id), `waves` (each wave's head, by name),
//! `wave_plans` (its members and stages, by name), `wave_hosts` (each
//! member's record, by name, a zero byte and its index), `revoked` (revoked
//! certificates, by serial), `operators` (by name), `audit` (the audit
//! chain, by big-endian sequence number) and `meta`.
//! sled writes in the background every 500 ms; callers call [`Store::flush`]
//! before telling anyone that a change happened.

pub mod backup;
pub mod outbox;
pub mod wave_record;

use std::path::Path;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::audit::AuditEntry;
use crate::store::wave_record::{MemberRecord, WaveHead, WavePlan};
use mf_core::facts::Facts;
use mf_core::precheck::PrecheckRecord;

const SCHEMA_VERSION: &[u8] = b"1";

/// Every tree, as backups name them.
pub const TREES: [&str; 13] = [
    "meta",
    "hosts",
    "tokens",
    "prechecks",
    "jobs",
    "waves",
    "wave_plans",
    "wave_hosts",
    "revoked",
    "operators",
    "audit",
    "events",
    "webhooks",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory {0} is in use by another coordinator")]
    Locked(String),
    #[error("the data directory {dir} was written by an incompatible version (schema {found})")]
    Schema { dir: String, found: String },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key:?} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    /// The system's words for what went wrong ("No space left on device
    /// (os error 28)"), without our wrapping.
    pub fn cause(&self) -> String {
        match self {
            Self::Sled(sled::Error::Io(io)) if io.raw_os_error().is_some() => io.to_string(),
            // sled hands out copies of the error it stored, whose text is the
            // original's debug form: `Os { code: 28, kind: .., message: ".." }`.
            Self::Sled(sled::Error::Io(io)) => {
                let text = io.to_string();
                let field = |name: &str, end: char| {
                    let start = text.find(name)? + name.len();
                    let rest = &text[start..];
                    Some(rest[..rest.find(end)?].to_string())
                };
                match (field("message: \"", '"'), field("code: ", ',')) {
                    (Some(message), Some(code)) => format!("{message} (os error {code})"),
                    _ => text,
                }
            }
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: String,
    pub enrolled_unix_ms: i64,
    pub cert_serial: String,
    pub cert_not_after_unix_ms: i64,
    pub facts: Option<Facts>,
    pub last_seen_unix_ms: i64,
    pub last_peer: String,
    /// Highest command sequence issued to this host (or reported by its agent).
    #[serde(default)]
    pub last_sequence: u64,
    /// The certificate a renewal replaced, accepted until the new one opens
    /// a session (an agent may stop between receiving and saving it).
    #[serde(default)]
    pub previous_cert_serial: Option<String>,
    /// When an operator revoked the host's certificate; 0 when not revoked.
    #[serde(default)]
    pub revoked_unix_ms: i64,
    /// Labels an admin pinned: they win over the agent's, and scopes see
    /// only these.
    #[serde(default)]
    pub pinned_labels: std::collections::BTreeMap<String, String>,
    /// The host's clock minus the coordinator's, as last measured (ms).
    #[serde(default)]
    pub clock_skew_ms: i64,
}

/// An operator as a person: a role, a scope, the certificates issued to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub name: String,
    pub role: mf_core::access::Role,
    pub scope: Option<mf_core::selector::Selector>,
    /// Serials of the certificates issued to this operator.
    pub serials: Vec<String>,
    pub created_unix_ms: i64,
    pub created_by: String,
    #[serde(default)]
    pub revoked_unix_ms: i64,
}

impl HostRecord {
    /// The serials this host's agent may present.
    pub fn accepted_serials(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.cert_serial.as_str()).chain(self.previous_cert_serial.as_deref())
    }
}

/// A certificate no longer accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedRecord {
    pub serial: String,
    /// Whose it was: "agent web-01.example.com".
    pub subject: String,
    pub reason: String,
    pub revoked_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// When set, the token enrolls only this host id (and may re-enroll it).
    pub host_id: Option<String>,
    pub created_unix_ms: i64,
    pub expires_unix_ms: i64,
    pub uses: u32,
    pub uses_left: u32,
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefusal {
    #[error("unknown bootstrap token")]
    UnknownToken,
    #[error("the bootstrap token has expired")]
    ExpiredToken,
    #[error("the bootstrap token has no uses left")]
    ExhaustedToken,
    #[error("the bootstrap token was created for host {0}")]
    WrongHost(String),
    #[error("host {0} is already enrolled; create a token for that host id to enroll it again")]
    AlreadyEnrolled(String),
}

impl EnrollRefusal {
    /// Label value for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            EnrollRefusal::UnknownToken => "unknown_token",
            EnrollRefusal::ExpiredToken => "expired_token",
            EnrollRefusal::ExhaustedToken => "exhausted_token",
            EnrollRefusal::WrongHost(_) => "wrong_host",
            EnrollRefusal::AlreadyEnrolled(_) => "already_enrolled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: std::path::PathBuf,
    db: sled::Db,
    hosts: sled::Tree,
    tokens: sled::Tree,
    prechecks: sled::Tree,
    jobs: sled::Tree,
    waves: sled::Tree,
    wave_plans: sled::Tree,
    wave_hosts: sled::Tree,
    revoked: sled::Tree,
    operators: sled::Tree,
    audit: sled::Tree,
    events: sled::Tree,
    webhooks: sled::Tree,
}

/// A stored wave: head, plan and member records in index order.
pub type StoredWave = (WaveHead, WavePlan, Vec<MemberRecord>);

fn member_key(wave: &str, index: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(wave.len() + 5);
    key.extend_from_slice(wave.as_bytes());
    key.push(0);
    key.extend_from_slice(&(index as u32).to_be_bytes());
    key
}

/// How long an open waits for a lock being let go (see `Store::open_with`).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, true)
    }

    /// `background_flush: false` leaves sled's 500 ms flusher off, so that
    /// only [`Store::flush`] reaches the disk: crash tests copy the directory
    /// as it is on disk and find there exactly what was flushed.
    pub fn open_with(dir: &Path, background_flush: bool) -> Result<Self, StoreError> {
        let open = || {
            sled::Config::new()
                .path(dir)
                .flush_every_ms(background_flush.then_some(500))
                .open()
                .map_err(|e| match e {
                    sled::Error::Io(ref io)
                        if io.kind() == std::io::ErrorKind::WouldBlock
                            || io.to_string().contains("lock") =>
                    {
                        StoreError::Locked(dir.display().to_string())
                    }
                    other => StoreError::Sled(other),
                })
        };
        // sled lets go of its lock a moment after its last handle is dropped
        // (its write threads hold it until they finish): a store opened again
        // in this process (a restore, a recovery) waits for that; another
        // process holding it is refused after the wait.
        let started = std::time::Instant::now();
        let db = loop {
            match open() {
                Err(StoreError::Locked(_)) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let meta = db.open_tree("meta")?;
        match meta.get("schema")? {
            None => {
                meta.insert("schema", SCHEMA_VERSION)?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(StoreError::Schema {
                    dir: dir.display().to_string(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            hosts: db.open_tree("hosts")?,
            tokens: db.open_tree("tokens")?,
            prechecks: db.open_tree("prechecks")?,
            jobs: db.open_tree("jobs")?,
            waves: db.open_tree("waves")?,
            wave_plans: db.open_tree("wave_plans")?,
            wave_hosts: db.open_tree("wave_hosts")?,
            revoked: db.open_tree("revoked")?,
            operators: db.open_tree("operators")?,
            audit: db.open_tree("audit")?,
            events: db.open_tree("events")?,
            webhooks: db.open_tree("webhooks")?,
            db,
        })
    }

    /// Whether the data directory takes writes again: a file of some size
    /// written and synced there, then removed.
    pub fn probe(&self) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.dir.join(".write-probe");
        let result = (|| {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&[0u8; 256 * 1024])?;
            file.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        result
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every record of every tree. Consistent when the store's one writer
    /// (the inventory task) calls it between writes.
    pub fn snapshot(&self) -> Result<Vec<backup::Record>, StoreError> {
        let mut records = Vec::new();
        for name in TREES {
            for item in self.db.open_tree(name)?.iter() {
                let (key, value) = item?;
                records.push(backup::Record {
                    tree: name,
                    key: key.to_vec(),
                    value: value.to_vec(),
                });
            }
        }
        Ok(records)
    }

    /// Writes a record read from a backup, as it was.
    pub fn restore(&self, record: backup::Record) -> Result<(), StoreError> {
        self.db
            .open_tree(record.tree)?
            .insert(record.key, record.value)?;
        Ok(())
    }

    /// Marks the store as restored from a backup taken at `created_unix_ms`.
    pub fn set_restored_from(&self, created_unix_ms: i64) -> Result<(), StoreError> {
        self.db
            .open_tree("meta")?
            .insert("restored_from_unix_ms", &created_unix_ms.to_be_bytes())?;
        Ok(())
    }

    /// When the backup this store was restored from was taken, if it was.
    pub fn restored_from(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db
            .open_tree("meta")?
            .get("restored_from_unix_ms")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    /// Makes every write so far durable, blocking: for tools run before
    /// the service starts.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn put_token(&self, hash: &[u8; 32], record: &TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(hash, encode(record))?;
        Ok(())
    }

    /// Every token, by the hex of its hash.
    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        self.tokens
            .iter()
            .map(|item| {
                let (key, value) = item?;
                Ok((token_id(&key), decode(&key, &value)?))
            })
            .collect()
    }

    /// Deletes the token whose id (as `tokens` gives it) starts with
    /// `prefix`: the one deleted, or how many the prefix names.
    pub fn delete_token(&self, prefix: &str) -> Result<Result<TokenRecord, usize>, StoreError> {
        let prefix = prefix.to_ascii_lowercase();
        let matching: Vec<(Vec<u8>, TokenRecord)> = self
            .tokens
            .iter()
            .map(|item| {
                let (key, value) = item?;
                Ok((key.to_vec(), decode(&key, &value)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?
            .into_iter()
            .filter(|(key, _)| token_id(key).starts_with(&prefix))
            .collect();
        match matching.as_slice() {
            [(key, record)] => {
                self.tokens.remove(key)?;
                Ok(Ok(record.clone()))
            }
            _ => Ok(Err(matching.len())),
        }
    }

    /// Whether an enrollment with this token for `host_id` would pass, read
    /// only: what is refused here is refused before anything is signed.
    pub fn check_token(
        &self,
        token_hash: &[u8; 32],
        host_id: &str,
        now_unix_ms: i64,
    ) -> Result<Result<(), EnrollRefusal>, StoreError> {
        let Some(raw) = self.tokens.get(token_hash)? else {
            return Ok(Err(EnrollRefusal::UnknownToken));
        };
        let token: TokenRecord = decode(token_hash, &raw)?;
        if token.expires_unix_ms <= now_unix_ms {
            return Ok(Err(EnrollRefusal::ExpiredToken));
        }
        if token.uses_left == 0 {
            return Ok(Err(EnrollRefusal::ExhaustedToken));
        }
        match token.host_id {
            Some(bound) if bound != host_id => Ok(Err(EnrollRefusal::WrongHost(bound))),
            None if self.hosts.contains_key(host_id.as_bytes())? => {
                Ok(Err(EnrollRefusal::AlreadyEnrolled(host_id.to_string())))
            }
            _ => Ok(Ok(())),
        }
    }

    pub fn put_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.audit.insert(entry.seq.to_be_bytes(), encode(entry))?;
        Ok(())
    }

    /// Every audit entry, in the order of their keys.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit
            .iter()
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    pub fn last_audit_entry(&self) -> Result<Option<AuditEntry>, StoreError> {
        match self.audit.last()? {
            Some((key, value)) => Ok(Some(decode(&key, &value)?)),
            None => Ok(None),
        }
    }

    pub fn put_operator(&self, record: &OperatorRecord) -> Result<(), StoreError> {
        self.operators
            .insert(record.name.as_bytes(), encode(record))?;
        Ok(())
    }

    pub fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        self.operators
            .iter()
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    pub fn put_revoked(&self, record: &RevokedRecord) -> Result<(), StoreError> {
        self.revoked
            .insert(record.serial.as_bytes(), encode(record))?;
        Ok(())
    }

    pub fn revoked(&self) -> Result<Vec<RevokedRecord>, StoreError> {
        self.revoked
            .iter()
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    pub fn put_host(&self, record: &HostRecord) -> Result<(), StoreError> {
        self.hosts.insert(record.id.as_bytes(), encode(record))?;
        Ok(())
    }

    pub fn put_precheck(&self, host_id: &str, record: &PrecheckRecord) -> Result<(), StoreError> {
        self.prechecks.insert(host_id.as_bytes(), encode(record))?;
        Ok(())
    }

    pub fn put_job(&self, host_id: &str, job: &mf_core::job::Job) -> Result<(), StoreError> {
        self.jobs.insert(host_id.as_bytes(), encode(job))?;
        Ok(())
    }

    pub fn put_wave_head(&self, head: &WaveHead) -> Result<(), StoreError> {
        self.waves.insert(head.spec.name.as_bytes(), encode(head))?;
        Ok(())
    }

    pub fn put_wave_plan(&self, name: &str, plan: &WavePlan) -> Result<(), StoreError> {
        self.wave_plans.insert(name.as_bytes(), encode(plan))?;
        Ok(())
    }

    pub fn put_wave_member(
        &self,
        name: &str,
        index: usize,
        record: &MemberRecord,
    ) -> Result<(), StoreError> {
        self.wave_hosts
            .insert(member_key(name, index), encode(record))?;
        Ok(())
    }

    /// Removes a host's record, pre-check and job, atomically.
    pub fn delete_host(&self, host_id: &str) -> Result<(), StoreError> {
        (&self.hosts, &self.prechecks, &self.jobs)
            .transaction(|(hosts, prechecks, jobs)| {
                hosts.remove(host_id.as_bytes())?;
                prechecks.remove(host_id.as_bytes())?;
                jobs.remove(host_id.as_bytes())?;
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => StoreError::Corrupt {
                    key: host_id.to_string(),
                    reason: "the host's removal was aborted".into(),
                },
            })
    }

    /// Removes a wave, its plan and its `members` member records, atomically.
    pub fn delete_wave(&self, name: &str, members: usize) -> Result<(), StoreError> {
        (&self.waves, &self.wave_plans, &self.wave_hosts)
            .transaction(|(waves, plans, hosts)| {
                waves.remove(name.as_bytes())?;
                plans.remove(name.as_bytes())?;
                for index in 0..members {
                    hosts.remove(member_key(name, index))?;
                }
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => StoreError::Corrupt {
                    key: name.to_string(),
                    reason: "the wave's removal was aborted".into(),
                },
            })
    }

    /// Every wave with its plan and member records.
    pub fn waves(&self) -> Result<Vec<StoredWave>, StoreError> {
        let mut waves = Vec::new();
        for item in self.waves.iter() {
            let (key, value) = item?;
            let head: WaveHead = decode(&key, &value)?;
            let name = head.spec.name.as_str();
            let plan: WavePlan = match self.wave_plans.get(name.as_bytes())? {
                Some(raw) => decode(&key, &raw)?,
                None => {
                    return Err(StoreError::Corrupt {
                        key: name.to_string(),
                        reason: "a wave without its plan".into(),
                    });
                }
            };
            let mut prefix = name.as_bytes().to_vec();
            prefix.push(0);
            let members = self
                .wave_hosts
                .scan_prefix(&prefix)
                .map(|item| {
                    let (key, value) = item?;
                    decode(&key, &value)
                })
                .collect::<Result<Vec<MemberRecord>, StoreError>>()?;
            if members.len() != plan.members.len() {
                return Err(StoreError::Corrupt {
                    key: name.to_string(),
                    reason: format!(
                        "{} member records for {} members",
                        members.len(),
                        plan.members.len()
                    ),
                });
            }
            waves.push((head, plan, members));
        }
        Ok(waves)
    }

    /// The latest job of every host, by host id.
    pub fn jobs(&self) -> Result<Vec<(String, mf_core::job::Job)>, StoreError> {
        by_host(&self.jobs)
    }

    /// The latest pre-check of every host, by host id.
    pub fn prechecks(&self) -> Result<Vec<(String, PrecheckRecord)>, StoreError> {
        by_host(&self.prechecks)
    }

    pub fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.hosts
            .iter()
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    /// Checks and consumes one use of the token and writes the host record,
    /// atomically. Returns the record it replaced, if the host was enrolled.
    pub fn enroll(
        &self,
        token_hash: &[u8; 32],
        record: &HostRecord,
        now_unix_ms: i64,
    ) -> Result<Result<Option<HostRecord>, EnrollRefusal>, StoreError> {
        let result =
            (&self.tokens, &self.hosts, &self.revoked).transaction(|(tokens, hosts, revoked)| {
                let abort = |r| Err(ConflictableTransactionError::Abort(r));
                let Some(raw) = tokens.get(token_hash)? else {
                    return abort(EnrollRefusal::UnknownToken);
                };
                let mut token: TokenRecord = decode(token_hash, &raw).map_err(|_| {
                    ConflictableTransactionError::Abort(EnrollRefusal::UnknownToken)
                })?;
                if token.expires_unix_ms <= now_unix_ms {
                    return abort(EnrollRefusal::ExpiredToken);
                }
                if token.uses_left == 0 {
                    return abort(EnrollRefusal::ExhaustedToken);
                }
                if let Some(bound) = token.host_id.as_ref().filter(|b| **b != record.id) {
                    return abort(EnrollRefusal::WrongHost(bound.clone()));
                }
                let previous = match hosts.get(record.id.as_bytes())? {
                    Some(raw) => {
                        if token.host_id.is_none() {
                            return abort(EnrollRefusal::AlreadyEnrolled(record.id.clone()));
                        }
                        decode::<HostRecord>(record.id.as_bytes(), &raw).ok()
                    }
                    None => None,
                };
                token.uses_left -= 1;
                tokens.insert(token_hash, encode(&token))?;
                let mut new = record.clone();
                if let Some(old) = &previous {
                    // Re-enrollment replaces the certificate, not what we know of the
                    // host, and sequences keep increasing; the old certificates are
                    // revoked in the same transaction.
                    new.facts.clone_from(&old.facts);
                    new.pinned_labels.clone_from(&old.pinned_labels);
                    new.last_sequence = old.last_sequence;
                    for serial in old.accepted_serials() {
                        let record = RevokedRecord {
                            serial: serial.to_string(),
                            subject: format!("agent {}", old.id),
                            reason: "replaced by a new enrollment".into(),
                            revoked_unix_ms: now_unix_ms,
                        };
                        revoked.insert(serial.as_bytes(), encode(&record))?;
                    }
                }
                hosts.insert(record.id.as_bytes(), encode(&new))?;
                Ok(previous)
            });
        match result {
            Ok(previous) => Ok(Ok(previous)),
            Err(TransactionError::Abort(refusal)) => Ok(Err(refusal)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}

/// A token's id: the hex of its hash (the token itself is never stored).
fn token_id(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every record of a tree keyed by host id.
fn by_host<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<(String, T)>, StoreError> {
    tree.iter()
        .map(|item| {
            let (key, value) = item?;
            Ok((
                String::from_utf8_lossy(&key).into_owned(),
                decode(&key, &value)?,
            ))
        })
        .collect()
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// A copy of a data directory as it is on disk now, as a crash (kill -9,
/// power loss) would leave it: what was not flushed is not there.
#[cfg(test)]
pub(crate) fn crash_image(dir: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }
    let image = tempfile::tempdir().expect("tempdir");
    copy(dir, image.path()).expect("a copy of the data directory");
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> HostRecord {
        HostRecord {
            id: id.into(),
            enrolled_unix_ms: 1,
            cert_serial: "01".into(),
            cert_not_after_unix_ms: 2,
            facts: None,
            last_seen_unix_ms: 0,
            last_peer: String::new(),
            last_sequence: 0,
            previous_cert_serial: None,
            revoked_unix_ms: 0,
            pinned_labels: Default::default(),
            clock_skew_ms: 0,
        }
    }

    fn token(host_id: Option<&str>, uses: u32, expires: i64) -> TokenRecord {
        TokenRecord {
            host_id: host_id.map(str::to_string),
            created_unix_ms: 0,
            expires_unix_ms: expires,
            uses,
            uses_left: uses,
        }
    }

    #[test]
    fn a_storage_error_says_what_the_system_said() {
        let direct = StoreError::Sled(sled::Error::Io(std::io::Error::from_raw_os_error(28)));
        assert_eq!(direct.cause(), "No space left on device (os error 28)");
        // What sled hands out after it stored the error.
        let copied = StoreError::Sled(sled::Error::Io(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "Os { code: 28, kind: StorageFull, message: \"No space left on device\" }",
        )));
        assert_eq!(copied.cause(), "No space left on device (os error 28)");
        let other = StoreError::Corrupt {
            key: "k".into(),
            reason: "r".into(),
        };
        assert_eq!(other.cause(), other.to_string());
    }

    #[test]
    fn enrollment_consumes_token_uses_and_refuses_with_reasons()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let any = [1u8; 32];
        store.put_token(&any, &token(None, 2, 1_000))?;
        assert_eq!(store.enroll(&any, &host("a"), 10)?, Ok(None));
        assert_eq!(
            store.enroll(&any, &host("a"), 10)?,
            Err(EnrollRefusal::AlreadyEnrolled("a".into()))
        );
        assert_eq!(store.enroll(&any, &host("b"), 10)?, Ok(None));
        assert_eq!(
            store.enroll(&any, &host("c"), 10)?,
            Err(EnrollRefusal::ExhaustedToken)
        );
        assert_eq!(
            store.enroll(&[9u8; 32], &host("c"), 10)?,
            Err(EnrollRefusal::UnknownToken)
        );

        let late = [2u8; 32];
        store.put_token(&late, &token(None, 5, 100))?;
        assert_eq!(
            store.enroll(&late, &host("d"), 100)?,
            Err(EnrollRefusal::ExpiredToken)
        );

        let bound = [3u8; 32];
        store.put_token(&bound, &token(Some("a"), 1, 1_000))?;
        assert_eq!(
            store.enroll(&bound, &host("x"), 10)?,
            Err(EnrollRefusal::WrongHost("a".into()))
        );
        let previous = store
            .enroll(&bound, &host("a"), 10)?
            .map_err(|e| e.to_string())?;
        assert_eq!(previous.map(|h| h.id).as_deref(), Some("a"));

        let ids: Vec<String> = store.hosts()?.into_iter().map(|h| h.id).collect();
        assert_eq!(ids, vec!["a", "b"]);
        // The re-enrollment revoked the certificate it replaced, in the same
        // transaction, and the revocation outlives the store.
        drop(store);
        let store = Store::open(dir.path())?;
        let revoked = store.revoked()?;
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert_eq!(revoked[0].serial, "01");
        assert_eq!(revoked[0].subject, "agent a");
        Ok(())
    }

    #[test]
    fn the_audit_chain_shows_an_entry_edited_in_the_store_offline()
    -> Result<(), Box<dyn std::error::Error>> {
        use crate::audit::{ChainBreak, NewAuditEntry, verify};
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            let mut last = None;
            for verb in ["create-token", "migrate", "revoke-host"] {
                let entry = AuditEntry::append(
                    last.as_ref(),
                    NewAuditEntry {
                        operator: "alice".into(),
                        role: "admin".into(),
                        verb: verb.into(),
                        arguments: "{}".into(),
                        outcome: "ok".into(),
                    },
                    1,
                );
                store.put_audit(&entry)?;
                last = Some(entry);
            }
            assert_eq!(verify(&store.audit_entries()?), Ok(3));
        }
        // Offline, as someone with the data directory would: change what
        // the second entry says, then remove the first.
        {
            let db = sled::open(dir.path())?;
            let tree = db.open_tree("audit")?;
            let raw = tree.get(2u64.to_be_bytes())?.expect("entry 2");
            let edited = String::from_utf8(raw.to_vec())?.replace("migrate", "precheck");
            tree.insert(2u64.to_be_bytes(), edited.as_bytes())?;
            db.flush()?;
        }
        let store = Store::open(dir.path())?;
        assert_eq!(verify(&store.audit_entries()?), Err(ChainBreak::Changed(2)));
        drop(store);
        {
            let db = sled::open(dir.path())?;
            db.open_tree("audit")?.remove(1u64.to_be_bytes())?;
            db.flush()?;
        }
        let store = Store::open(dir.path())?;
        assert!(matches!(
            verify(&store.audit_entries()?),
            Err(ChainBreak::Sequence { .. })
        ));
        Ok(())
    }

    #[test]
    fn refused_enrollments_change_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let hash = [1u8; 32];
        store.put_token(&hash, &token(Some("a"), 1, 1_000))?;
        assert!(store.enroll(&hash, &host("b"), 10)?.is_err());
        assert!(store.hosts()?.is_empty());
        assert_eq!(store.enroll(&hash, &host("a"), 10)?, Ok(None));
        Ok(())
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let _first = Store::open(dir.path())?;
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn flushed_records_survive_a_crash_and_unflushed_ones_do_not()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open_with(dir.path(), false)?;
        store.put_host(&host("kept"))?;
        store.flush().await?;
        store.put_host(&host("lost"))?;
        // The directory as a crash leaves it: the store is still open, so
        // nothing is flushed on its way out.
        let image = crash_image(dir.path());
        let crashed = Store::open(image.path())?;
        assert_eq!(crashed.hosts()?, vec![host("kept")]);
        drop(store);
        Ok(())
    }
}
