//! Wall-clock time as stored and shown: milliseconds since the Unix epoch.

pub fn now_unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

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
