//! Events out: what happened (a pre-check finished, a job changed state, a
//! wave halted or completed, a host enrolled or was lost) is written to the
//! outbox in the same batch as the change itself, so it is durable when the
//! change is; the webhook delivery (`crate::webhooks`) reads it from here and
//! says how far each webhook got. Events are written only while some webhook
//! wants their type.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;
use tracing::{error, warn};

use super::{InventoryError, State};
use crate::store::outbox::{StoredEvent, WebhookRecord};

/// The event types, as CloudEvents `type`s.
pub mod kinds {
    pub const PRECHECK_FINISHED: &str = "dev.migration-factory.precheck.finished";
    pub const JOB_STATE_CHANGED: &str = "dev.migration-factory.job.state-changed";
    pub const WAVE_HALTED: &str = "dev.migration-factory.wave.halted";
    pub const WAVE_COMPLETED: &str = "dev.migration-factory.wave.completed";
    pub const HOST_ENROLLED: &str = "dev.migration-factory.host.enrolled";
    pub const HOST_LOST: &str = "dev.migration-factory.host.lost";
    pub const ALL: [&str; 6] = [
        PRECHECK_FINISHED,
        JOB_STATE_CHANGED,
        WAVE_HALTED,
        WAVE_COMPLETED,
        HOST_ENROLLED,
        HOST_LOST,
    ];
}

/// Events no webhook took are dropped after this long (counted).
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many webhooks.
pub const MAX_WEBHOOKS: usize = 32;

/// What the delivery watches: the newest event and the webhooks. Kept in
/// the inventory's settings so that a reload of the store keeps them.
#[derive(Debug, Clone)]
pub struct OutboxSignals {
    latest: Arc<watch::Sender<u64>>,
    webhooks: Arc<watch::Sender<Arc<Vec<WebhookRecord>>>>,
}

impl Default for OutboxSignals {
    fn default() -> Self {
        Self {
            latest: Arc::new(watch::Sender::new(0)),
            webhooks: Arc::new(watch::Sender::new(Arc::new(Vec::new()))),
        }
    }
}

impl OutboxSignals {
    pub fn latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub fn webhooks(&self) -> watch::Receiver<Arc<Vec<WebhookRecord>>> {
        self.webhooks.subscribe()
    }
}

/// A webhook as an admin asks for it.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_by: String,
}

/// The events a webhook has not taken yet, and how far the read went (past
/// events it does not want).
#[derive(Debug, Clone, Default)]
pub struct PendingEvents {
    pub events: Vec<StoredEvent>,
    /// The webhook's cursor the read started after.
    pub from: u64,
    pub scanned_to: u64,
    /// Events after its cursor, wanted or not.
    pub behind: u64,
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    next_seq: u64,
    webhooks: BTreeMap<String, WebhookRecord>,
}

impl Outbox {
    pub(super) fn load(store: &crate::store::Store) -> Result<Self, InventoryError> {
        Ok(Self {
            next_seq: store.last_event_seq()? + 1,
            webhooks: store
                .webhooks()?
                .into_iter()
                .map(|w| (w.id.clone(), w))
                .collect(),
        })
    }
}

impl State {
    /// Publishes the webhooks to the delivery (at load and on every change).
    pub(super) fn publish_webhooks(&self) {
        let list: Vec<WebhookRecord> = self.outbox.webhooks.values().cloned().collect();
        self.settings.outbox.webhooks.send_replace(Arc::new(list));
        self.settings
            .outbox
            .latest
            .send_replace(self.outbox.next_seq - 1);
    }

    /// Records an event, durable with the batch, if a webhook wants it.
    pub(super) fn emit(&mut self, kind: &'static str, subject: &str, data: Value) {
        if !self.outbox.webhooks.values().any(|w| w.wants(kind)) {
            return;
        }
        let event = StoredEvent {
            seq: self.outbox.next_seq,
            kind: kind.to_string(),
            subject: subject.to_string(),
            time_unix_ms: self.now(),
            data,
        };
        if let Err(e) = self.store.put_event(&event) {
            error!(kind, subject, error = %e, "cannot record an event");
            return;
        }
        self.outbox.next_seq += 1;
        self.settings.outbox.latest.send_replace(event.seq);
    }

    pub(super) fn add_webhook(&mut self, new: NewWebhook) -> Result<WebhookRecord, InventoryError> {
        if self.outbox.webhooks.len() >= MAX_WEBHOOKS {
            return Err(InventoryError::Conflict(format!(
                "there are {MAX_WEBHOOKS} webhooks already: remove one first"
            )));
        }
        if let Some(same) = self.outbox.webhooks.values().find(|w| w.url == new.url) {
            return Err(InventoryError::Exists(format!(
                "webhook {} already delivers to {}",
                same.id, same.url
            )));
        }
        let record = WebhookRecord {
            id: format!("wh-{}", &mf_pki::token::hex_id()[..12]),
            url: new.url,
            secret: new.secret,
            events: new.events,
            created_unix_ms: self.now(),
            created_by: new.created_by,
            // Only what happens from now on.
            delivered_seq: self.outbox.next_seq - 1,
        };
        self.store.put_webhook(&record)?;
        self.outbox
            .webhooks
            .insert(record.id.clone(), record.clone());
        self.publish_webhooks();
        Ok(record)
    }

    pub(super) fn remove_webhook(&mut self, id: &str) -> Result<WebhookRecord, InventoryError> {
        let Some(record) = self.outbox.webhooks.remove(id) else {
            return Err(InventoryError::UnknownWebhook(id.to_string()));
        };
        self.store.delete_webhook(id)?;
        self.publish_webhooks();
        Ok(record)
    }

    pub(super) fn list_webhooks(&self) -> Vec<(WebhookRecord, u64)> {
        let last = self.outbox.next_seq - 1;
        self.outbox
            .webhooks
            .values()
            .map(|w| (w.clone(), last.saturating_sub(w.delivered_seq)))
            .collect()
    }

    /// At most `limit` events the webhook wants after its cursor.
    pub(super) fn pending_events(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<PendingEvents, InventoryError> {
        let Some(webhook) = self.outbox.webhooks.get(id) else {
            return Err(InventoryError::UnknownWebhook(id.to_string()));
        };
        let mut pending = PendingEvents {
            from: webhook.delivered_seq,
            scanned_to: webhook.delivered_seq,
            behind: (self.outbox.next_seq - 1).saturating_sub(webhook.delivered_seq),
            ..PendingEvents::default()
        };
        for event in self.store.events_after(webhook.delivered_seq, limit)? {
            pending.scanned_to = event.seq;
            if webhook.wants(&event.kind) {
                pending.events.push(event);
            }
        }
        Ok(pending)
    }

    /// The webhook took everything up to `seq` (written with the batch; a
    /// crash before that only repeats deliveries, which receivers dedupe by
    /// event id).
    pub(super) fn delivered(&mut self, id: &str, seq: u64) {
        let Some(webhook) = self.outbox.webhooks.get_mut(id) else {
            return;
        };
        if seq <= webhook.delivered_seq {
            return;
        }
        webhook.delivered_seq = seq;
        if let Err(e) = self.store.put_webhook(webhook) {
            error!(webhook = id, error = %e, "cannot record a delivery");
        }
    }

    /// Drops events every webhook took, and those past the retention.
    pub(super) fn trim_outbox(&mut self) {
        let taken = self
            .outbox
            .webhooks
            .values()
            .map(|w| w.delivered_seq)
            .min()
            .unwrap_or(self.outbox.next_seq - 1);
        match self.store.trim_events(taken, self.now() - RETENTION_MS) {
            Ok(0) => {}
            Ok(expired) => {
                warn!(
                    expired,
                    "events older than the retention were dropped undelivered"
                );
                self.metrics.webhook_events_expired.inc_by(expired);
            }
            Err(e) => error!(error = %e, "cannot trim the outbox"),
        }
    }
}
