//! Delivery: one worker per webhook, started and stopped as admins add and
//! remove them. A worker sends its webhook's events in order, each until a
//! 2xx answer, waiting between attempts with exponential backoff and jitter
//! (the `backoff` crate) capped at `max_interval`, and tells the inventory
//! how far it got; a receiver that is down for an hour gets everything after
//! it returns, and a coordinator killed mid-delivery sends again what was
//! not acknowledged (at least once; the event id is stable).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{cloud_event, signature};
use crate::http_client as client;
use crate::inventory::{Inventory, InventoryError, OutboxSignals};
use crate::metrics::Metrics;
use crate::store::outbox::{StoredEvent, WebhookRecord};

/// Events read from the outbox at a time.
const BATCH: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// The longest wait between two attempts at one event.
    pub max_interval: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_interval: Duration::from_secs(300),
        }
    }
}

/// Runs the workers until `shutdown`.
pub async fn run(
    inventory: Inventory,
    signals: OutboxSignals,
    metrics: Metrics,
    settings: DeliverySettings,
    shutdown: CancellationToken,
) {
    let mut webhooks = signals.webhooks();
    let mut workers: HashMap<String, CancellationToken> = HashMap::new();
    loop {
        let current = Arc::clone(&webhooks.borrow_and_update());
        workers.retain(|id, stop| {
            let kept = current.iter().any(|w| &w.id == id);
            if !kept {
                stop.cancel();
                let _ = metrics.webhook_lag_seconds.remove_label_values(&[id]);
                let _ = metrics.webhook_pending_events.remove_label_values(&[id]);
            }
            kept
        });
        for webhook in current.iter() {
            if workers.contains_key(&webhook.id) {
                continue;
            }
            let stop = shutdown.child_token();
            workers.insert(webhook.id.clone(), stop.clone());
            let worker = Worker {
                inventory: inventory.clone(),
                webhook: webhook.clone(),
                metrics: metrics.clone(),
                settings,
                stop,
            };
            tokio::spawn(worker.run(signals.latest()));
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = webhooks.changed() => if changed.is_err() { break },
        }
    }
    for stop in workers.values() {
        stop.cancel();
    }
}

struct Worker {
    inventory: Inventory,
    webhook: WebhookRecord,
    metrics: Metrics,
    settings: DeliverySettings,
    stop: CancellationToken,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Worker {
    async fn run(self, mut latest: watch::Receiver<u64>) {
        let id = self.webhook.id.clone();
        let tls = match tokio::task::spawn_blocking(client::system_roots).await {
            Ok(tls) => tls,
            Err(_) => return,
        };
        while !self.stop.is_cancelled() {
            // Marked seen before reading, so an event recorded meanwhile wakes us.
            latest.borrow_and_update();
            let pending = match self.inventory.pending_events(id.clone(), BATCH).await {
                Ok(pending) => pending,
                Err(InventoryError::UnknownWebhook(_) | InventoryError::Stopped) => return,
                Err(e) => {
                    debug!(webhook = %id, error = %e, "cannot read the outbox; trying again");
                    if self.pause(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            self.export(pending.behind, pending.events.first());
            let read_any = pending.scanned_to > pending.from;
            for event in &pending.events {
                if !self.deliver(&tls, event).await {
                    return;
                }
                self.inventory.delivered(id.clone(), event.seq).await;
            }
            if read_any {
                // Past the events it does not want, too.
                self.inventory
                    .delivered(id.clone(), pending.scanned_to)
                    .await;
                continue;
            }
            self.export(0, None);
            tokio::select! {
                () = self.stop.cancelled() => return,
                changed = latest.changed() => if changed.is_err() { return },
            }
        }
    }

    fn export(&self, behind: u64, oldest: Option<&StoredEvent>) {
        let id = self.webhook.id.as_str();
        self.metrics
            .webhook_pending_events
            .with_label_values(&[id])
            .set(i64::try_from(behind).unwrap_or(i64::MAX));
        let lag = oldest.map_or(0.0, |e| (now_ms() - e.time_unix_ms).max(0) as f64 / 1000.0);
        self.metrics
            .webhook_lag_seconds
            .with_label_values(&[id])
            .set(lag);
    }

    /// Waits `wait` unless told to stop (then true).
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }

    /// Sends one event until a 2xx answer; false if told to stop first.
    async fn deliver(&self, tls: &Arc<rustls::ClientConfig>, event: &StoredEvent) -> bool {
        let id = self.webhook.id.as_str();
        let body = serde_json::to_vec(&cloud_event(event)).unwrap_or_default();
        let event_id = event.seq.to_string();
        let mut policy = ExponentialBackoff {
            initial_interval: Duration::from_secs(1).min(self.settings.max_interval),
            max_interval: self.settings.max_interval,
            multiplier: 2.0,
            randomization_factor: 0.5,
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        loop {
            let timestamp = now_ms() / 1000;
            let headers = [
                (
                    "content-type",
                    "application/cloudevents+json; charset=utf-8".to_string(),
                ),
                ("webhook-id", event_id.clone()),
                ("webhook-timestamp", timestamp.to_string()),
                (
                    "webhook-signature",
                    signature(&self.webhook.secret, &event_id, timestamp, &body),
                ),
            ];
            let outcome = client::post(tls, &self.webhook.url, &headers, body.clone()).await;
            let result = match &outcome {
                Ok(status) if (200..300).contains(status) => "ok",
                _ => "failed",
            };
            self.metrics
                .webhook_deliveries
                .with_label_values(&[id, result])
                .inc();
            match outcome {
                Ok(status) if (200..300).contains(&status) => return true,
                Ok(status) => {
                    warn!(
                        webhook = id,
                        event = event.seq,
                        status,
                        "webhook refused an event"
                    );
                }
                Err(error) => {
                    warn!(webhook = id, event = event.seq, %error, "webhook unreachable");
                }
            }
            self.export(1, Some(event));
            let wait = policy.next_backoff().unwrap_or(self.settings.max_interval);
            if self.pause(wait).await {
                return false;
            }
        }
    }
}
