//! Webhooks: events from the outbox (`inventory::outbox`) delivered as
//! CloudEvents 1.0 (structured JSON mode) to the URLs admins registered,
//! signed as the Standard Webhooks scheme does it (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>` over
//! `id.timestamp.body`), so that a receiver checks who sent it, refuses a
//! replay by the timestamp and dedupes a redelivery by the id.

pub mod delivery;

use base64::Engine;
use serde_json::{Value, json};

use crate::store::outbox::StoredEvent;

/// The CloudEvents `source` of every event.
pub const SOURCE: &str = "urn:mf:coordinator";

/// A new secret: 32 random bytes, `whsec_` and base64 as the scheme writes it.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no randomness for a webhook secret".to_string())?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The event as a CloudEvent (structured mode).
pub fn cloud_event(event: &StoredEvent) -> Value {
    let time = jiff::Timestamp::from_millisecond(event.time_unix_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    json!({
        "specversion": "1.0",
        "id": event.seq.to_string(),
        "source": SOURCE,
        "type": event.kind,
        "subject": event.subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": event.data,
    })
}

/// The `webhook-signature` value for `body` sent as event `id` at
/// `timestamp` (unix seconds).
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap_or_else(|_| raw.as_bytes().to_vec());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(format!("{id}.{timestamp}.").as_bytes());
    context.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(context.sign().as_ref())
    )
}

/// Whether `url` is one we deliver to: http or https, a host, no user info.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| format!("webhook URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("webhook URL {url:?}: use http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("webhook URL {url:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "webhook URL {url:?}: no credentials in the URL (the signature authenticates us)"
        ));
    }
    if url.len() > 2048 {
        return Err("a webhook URL has at most 2048 characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn an_event_is_a_cloud_event_with_a_stable_id() {
        let event = StoredEvent {
            seq: 42,
            kind: "dev.migration-factory.host.enrolled".into(),
            subject: "a.example.com".into(),
            time_unix_ms: 1_764_460_800_000,
            data: json!({"host_id": "a.example.com"}),
        };
        let ce = cloud_event(&event);
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], "42");
        assert_eq!(ce["type"], "dev.migration-factory.host.enrolled");
        assert_eq!(ce["time"], "2025-11-30T00:00:00Z");
        assert_eq!(ce["data"]["host_id"], "a.example.com");
    }

    #[test]
    fn only_plain_http_and_https_urls_are_taken() {
        assert!(check_url("https://hooks.example.com/mf").is_ok());
        assert!(check_url("http://127.0.0.1:8080/in").is_ok());
        for bad in [
            "ftp://x/",
            "hooks.example.com",
            "https://user:pw@hooks.example.com/",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
