//! Messages an agent may send: a token bucket per host, kept across its
//! sessions so that reconnecting does not refill it. A session takes its
//! host's bucket when it opens and puts it back when it ends; the map is
//! touched twice per session, never per message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mf_core::rate::{PerMinute, TokenBucket};

#[derive(Debug, Clone)]
pub struct MessageLimits {
    rate: PerMinute,
    /// Buckets of hosts between sessions; only those still in debt or
    /// partly spent are kept (a full one is the same as none).
    resting: Arc<Mutex<HashMap<String, TokenBucket>>>,
}

impl MessageLimits {
    pub fn new(rate: PerMinute) -> Self {
        Self {
            rate,
            resting: Arc::default(),
        }
    }

    pub fn rate(&self) -> PerMinute {
        self.rate
    }

    /// The host's bucket for a new session.
    pub fn open(&self, host_id: &str, now_ms: i64) -> TokenBucket {
        self.resting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host_id)
            .unwrap_or_else(|| TokenBucket::new(self.rate, now_ms))
    }

    /// A session ended: its bucket rests until the host's next one.
    pub fn close(&self, host_id: &str, mut bucket: TokenBucket, now_ms: i64) {
        if bucket.is_full(now_ms) {
            return;
        }
        self.resting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host_id.to_string(), bucket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_does_not_refill_the_bucket() {
        let limits = MessageLimits::new(PerMinute(3));
        let mut bucket = limits.open("web-1", 0);
        for _ in 0..3 {
            assert_eq!(bucket.take(0), Ok(()));
        }
        assert!(bucket.take(0).is_err());
        limits.close("web-1", bucket, 0);
        let mut again = limits.open("web-1", 1_000);
        assert!(again.take(1_000).is_err(), "still spent after reconnecting");
        // Other hosts have their own.
        assert_eq!(limits.open("web-2", 1_000).take(1_000), Ok(()));
        // A bucket that refilled is forgotten.
        limits.close("web-1", again, 60_000);
        assert!(limits.resting.lock().expect("lock").is_empty());
    }
}
