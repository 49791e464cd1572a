//! The coordinator's clock, passed in rather than read: wall time in
//! milliseconds since the Unix epoch. Production runs on the system clock;
//! tests move a manual one, so that the reboot timeout, the unreachable rule,
//! soak and maintenance windows are tested at task level without sleeping.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use mf_core::time::{format_duration_ms, format_unix_ms};

pub trait Clock: Debug + Send + Sync + 'static {
    fn now_unix_ms(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_unix_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn at(unix_ms: i64) -> Self {
        Self {
            now_unix_ms: Arc::new(AtomicI64::new(unix_ms)),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_unix_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, unix_ms: i64) {
        self.now_unix_ms.store(unix_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        self.now_unix_ms.load(Ordering::SeqCst)
    }
}

/// The clock a component was given, shared.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
