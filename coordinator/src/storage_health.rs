//! Whether the coordinator can write its store. The inventory task finds
//! out (a flush that fails: ENOSPC, EIO) and recovers (its probe writes
//! again); the listeners and metrics read it: `/healthz` and the gRPC health
//! service say NOT_SERVING with the cause, admin calls that would change
//! something are refused with it, and `mf_store_writable` drops to 0.

use tokio::sync::watch;

/// `None` while the store is writable; the cause while it is not.
#[derive(Debug, Clone)]
pub struct StorageHealth {
    cause: watch::Sender<Option<String>>,
}

impl Default for StorageHealth {
    fn default() -> Self {
        Self {
            cause: watch::Sender::new(None),
        }
    }
}

impl StorageHealth {
    /// The store cannot be written; `cause` says why (the system's words).
    pub fn failed(&self, cause: String) {
        self.cause.send_if_modified(|now| {
            let changed = now.as_deref() != Some(cause.as_str());
            *now = Some(cause);
            changed
        });
    }

    pub fn recovered(&self) {
        self.cause.send_if_modified(|now| now.take().is_some());
    }

    /// Why the store cannot be written, if it cannot.
    pub fn cause(&self) -> Option<String> {
        self.cause.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.cause.subscribe()
    }

    /// What a refused change says.
    pub fn refusal(cause: &str) -> String {
        format!(
            "the coordinator cannot write its store ({cause}): it refuses changes until it can \
             again, and goes on by itself once it can (free space in its data directory)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_see_a_failure_and_the_recovery() {
        let health = StorageHealth::default();
        let mut watcher = health.subscribe();
        assert_eq!(health.cause(), None);
        health.failed("No space left on device (os error 28)".into());
        assert!(watcher.has_changed().expect("open"));
        assert_eq!(
            watcher.borrow_and_update().as_deref(),
            Some("No space left on device (os error 28)")
        );
        // The same cause again is no news.
        health.failed("No space left on device (os error 28)".into());
        assert!(!watcher.has_changed().expect("open"));
        health.recovered();
        assert!(watcher.has_changed().expect("open"));
        assert_eq!(*watcher.borrow_and_update(), None);
    }
}
