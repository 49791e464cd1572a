//! The events outbox and the webhooks it feeds: each event is kept under its
//! sequence number (big-endian, so the tree is in order) until every webhook
//! has taken it or it is older than the retention; each webhook's record
//! holds how far it was delivered.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, decode, encode};

/// An event as the outbox keeps it; `seq` is its stable id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: u64,
    /// The CloudEvents type, e.g. `dev.migration-factory.job.state-changed`.
    pub kind: String,
    /// What it is about: a host id or a wave name.
    pub subject: String,
    pub time_unix_ms: i64,
    pub data: serde_json::Value,
}

/// A receiver an admin registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// The HMAC key (`whsec_` and base64), shown once when added.
    pub secret: String,
    /// Event types it wants; empty: all.
    pub events: Vec<String>,
    pub created_unix_ms: i64,
    pub created_by: String,
    /// The last event delivered (or skipped as not wanted).
    pub delivered_seq: u64,
}

impl WebhookRecord {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

impl Store {
    pub fn put_event(&self, event: &StoredEvent) -> Result<(), StoreError> {
        self.events.insert(event.seq.to_be_bytes(), encode(event))?;
        Ok(())
    }

    /// At most `limit` events after `seq`, in order.
    pub fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.events
            .range((seq.saturating_add(1)).to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    /// The newest event's sequence number, 0 when there is none.
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .events
            .last()?
            .and_then(|(key, _)| <[u8; 8]>::try_from(key.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Removes events up to `seq`, and those older than `before_unix_ms`;
    /// returns how many of the old ones were not up to `seq` (undelivered).
    pub fn trim_events(&self, seq: u64, before_unix_ms: i64) -> Result<u64, StoreError> {
        let mut expired = 0;
        for item in self.events.iter() {
            let (key, value) = item?;
            let event: StoredEvent = decode(&key, &value)?;
            if event.seq <= seq {
                self.events.remove(key)?;
            } else if event.time_unix_ms < before_unix_ms {
                self.events.remove(key)?;
                expired += 1;
            } else {
                break;
            }
        }
        Ok(expired)
    }

    pub fn put_webhook(&self, record: &WebhookRecord) -> Result<(), StoreError> {
        self.webhooks.insert(record.id.as_bytes(), encode(record))?;
        Ok(())
    }

    pub fn delete_webhook(&self, id: &str) -> Result<(), StoreError> {
        self.webhooks.remove(id.as_bytes())?;
        Ok(())
    }

    pub fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.webhooks
            .iter()
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }
}
