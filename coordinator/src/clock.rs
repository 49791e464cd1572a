//! The coordinator's wall clock: milliseconds since the Unix epoch.

pub use mf_core::time::{format_duration_ms, format_unix_ms};

pub fn now_unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
