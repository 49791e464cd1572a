//! Time as stored and shown: milliseconds since the Unix epoch, formatted for
//! people. The core never reads the clock: callers pass the time in.

/// RFC 3339 in UTC to the second, for messages; the epoch for out-of-range times.
pub fn format_unix_ms(unix_ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A duration rounded to the second, e.g. `2h 10m 5s`.
pub fn format_duration_ms(ms: i64) -> String {
    let seconds = u64::try_from(ms.max(0) / 1000).unwrap_or_default();
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}
