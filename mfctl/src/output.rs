//! Small formatting helpers shared by mfctl's commands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use mf_proto::v1 as pb;
use serde::Serialize;

use super::Format;

/// "1 host", "2 hosts", "0 hosts".
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// The wall clock, for "at" stamps.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 in UTC, or None for 0 (never).
pub fn timestamp(unix_ms: i64) -> Option<String> {
    let ms = u64::try_from(unix_ms).ok().filter(|ms| *ms > 0)?;
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

/// "42s ago", "3m ago", or "never".
pub fn ago(unix_ms: i64, now: SystemTime) -> String {
    let Some(ms) = u64::try_from(unix_ms).ok().filter(|ms| *ms > 0) else {
        return "never".into();
    };
    let then = UNIX_EPOCH + Duration::from_millis(ms);
    let secs = now.duration_since(then).unwrap_or_default().as_secs();
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints `document` as JSON or YAML and says so; a table format prints
/// nothing here (the caller prints its table).
pub fn print_document<T: Serialize>(document: &T, format: Format) -> Result<bool> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(document)?),
        Format::Yaml => print!("{}", serde_norway::to_string(document)?),
        Format::Table | Format::Wide => return Ok(false),
    }
    Ok(true)
}

/// One document of a watch: a line of JSON, or a YAML document after `---`.
pub fn watched_document<T: Serialize>(document: &T, format: Format) -> Result<String> {
    Ok(match format {
        Format::Yaml => format!("---\n{}", serde_norway::to_string(document)?)
            .trim_end()
            .to_string(),
        _ => serde_json::to_string(document)?,
    })
}

pub fn print_tokens(tokens: &[pb::TokenInfo], format: Format) -> Result<()> {
    let documents: Vec<_> = tokens
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id,
                "host_id": (!t.host_id.is_empty()).then_some(&t.host_id),
                "created": timestamp(t.created_unix_ms),
                "expires": timestamp(t.expires_unix_ms),
                "uses": t.uses,
                "uses_left": t.uses_left,
            })
        })
        .collect();
    if !print_document(&documents, format)? {
        let rows: Vec<Vec<String>> = tokens
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    if t.host_id.is_empty() {
                        "(any new host)".into()
                    } else {
                        t.host_id.clone()
                    },
                    timestamp(t.expires_unix_ms).unwrap_or_default(),
                    format!("{}/{}", t.uses_left, t.uses),
                ]
            })
            .collect();
        println!("{}", table(&["ID", "HOST", "EXPIRES", "USES LEFT"], &rows));
    }
    Ok(())
}

pub fn print_token(token: &pb::CreateTokenResponse, format: Format) -> Result<()> {
    let value = serde_json::json!({
        "token": token.token,
        "host_id": (!token.host_id.is_empty()).then_some(&token.host_id),
        "expires": timestamp(token.expires_unix_ms),
        "uses": token.uses,
    });
    if !print_document(&value, format)? {
        println!("{}", token.token);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_naturally() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(ago(0, now), "never");
        assert_eq!(ago(9_958_000, now), "42s ago");
        assert_eq!(ago(9_000_000, now), "16m ago");
        assert_eq!(timestamp(0), None);
        assert_eq!(timestamp(1_000).as_deref(), Some("1970-01-01T00:00:01Z"));
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1u32, "host"), "1 host");
        assert_eq!(count(0u32, "host"), "0 hosts");
        assert_eq!(count(11_500u64, "host"), "11500 hosts");
    }

    #[test]
    fn tables_align() {
        let text = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(text, "A    BB\nxxx  y");
    }
}
