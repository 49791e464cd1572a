//! The audit chain: every state-changing admin call and every refusal, each
//! entry carrying the hash of the one before, so that a changed, removed or
//! reordered entry shows. Entries are written by the inventory task and
//! durable before the call they record is answered.

use serde::{Deserialize, Serialize};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3... with no gap.
    pub seq: u64,
    pub at_unix_ms: i64,
    pub operator: String,
    /// "-" when the caller has no role.
    pub role: String,
    pub verb: String,
    pub arguments: String,
    /// "ok", or "refused: why", or "failed: why".
    pub outcome: String,
    /// The hash of the entry before ("" for the first).
    pub previous_hash: String,
    /// SHA-256 over every field above, hex.
    pub hash: String,
}

/// An entry to append: what happened; the chain fields are filled in.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub operator: String,
    pub role: String,
    pub verb: String,
    pub arguments: String,
    pub outcome: String,
}

impl AuditEntry {
    /// Chains `new` after `previous` (the last entry, if any).
    pub fn append(previous: Option<&AuditEntry>, new: NewAuditEntry, at_unix_ms: i64) -> Self {
        let mut entry = AuditEntry {
            seq: previous.map_or(1, |p| p.seq + 1),
            at_unix_ms,
            operator: new.operator,
            role: new.role,
            verb: new.verb,
            arguments: new.arguments,
            outcome: new.outcome,
            previous_hash: previous.map(|p| p.hash.clone()).unwrap_or_default(),
            hash: String::new(),
        };
        entry.hash = entry.digest();
        entry
    }

    fn digest(&self) -> String {
        let fields = serde_json::json!([
            self.seq,
            self.at_unix_ms,
            self.operator,
            self.role,
            self.verb,
            self.arguments,
            self.outcome,
            self.previous_hash,
        ]);
        ring::digest::digest(&ring::digest::SHA256, fields.to_string().as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where the chain breaks, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error(
        "entry {position} is numbered {seq}: an entry before it was removed or the entries reordered"
    )]
    Sequence { position: u64, seq: u64 },
    #[error(
        "entry {0} does not follow the one before it (its previous hash differs): an entry was removed, inserted or reordered"
    )]
    Link(u64),
    #[error("entry {0} was changed after it was written (its hash does not match its content)")]
    Changed(u64),
}

/// Checks the whole chain, in stored order; how many entries it holds.
pub fn verify(entries: &[AuditEntry]) -> Result<u64, ChainBreak> {
    let mut previous: Option<&AuditEntry> = None;
    for (i, entry) in entries.iter().enumerate() {
        let position = i as u64 + 1;
        if entry.seq != position {
            return Err(ChainBreak::Sequence {
                position,
                seq: entry.seq,
            });
        }
        let expected_previous = previous.map(|p| p.hash.as_str()).unwrap_or_default();
        if entry.previous_hash != expected_previous {
            return Err(ChainBreak::Link(entry.seq));
        }
        if entry.digest() != entry.hash {
            return Err(ChainBreak::Changed(entry.seq));
        }
        previous = Some(entry);
    }
    Ok(entries.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let entry = AuditEntry::append(
                entries.last(),
                NewAuditEntry {
                    operator: "alice".into(),
                    role: "admin".into(),
                    verb: "migrate".into(),
                    arguments: format!("host h{i}"),
                    outcome: "ok".into(),
                },
                i as i64,
            );
            entries.push(entry);
        }
        entries
    }

    #[test]
    fn a_changed_removed_or_reordered_entry_breaks_the_chain() {
        let entries = chain(5);
        assert_eq!(verify(&entries), Ok(5));
        let mut changed = entries.clone();
        changed[2].outcome = "refused".into();
        assert_eq!(verify(&changed), Err(ChainBreak::Changed(3)));
        let mut removed = entries.clone();
        removed.remove(4);
        assert_eq!(verify(&removed), Ok(4), "the tail alone cannot be told");
        let mut removed = entries.clone();
        removed.remove(1);
        assert!(matches!(
            verify(&removed),
            Err(ChainBreak::Sequence {
                position: 2,
                seq: 3
            })
        ));
        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        assert!(verify(&reordered).is_err());
        // Renumbered to hide a removal: the links break.
        let mut renumbered = entries;
        renumbered.remove(1);
        for (i, e) in renumbered.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert!(verify(&renumbered).is_err());
    }
}
