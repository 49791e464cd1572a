//! Renewing the agent's certificate before it expires, with nobody's help:
//! a new key made here, its CSR sent over a connection authenticated by the
//! current certificate, the new pair saved so that a crash never leaves a
//! mismatched one. Each agent renews at its own point between half and three
//! quarters of the lifetime (drawn from its certificate), so a fleet
//! enrolled in one day does not renew in one minute.

use std::path::Path;
use std::time::Duration;

use mf_proto::v1::RenewRequest;
use mf_proto::v1::agent_service_client::AgentServiceClient;

use crate::enroll::{key_and_request, validity_of};
use crate::identity::{self, Identity, IdentityError};
use mf_proto::transport::{self, ConnectError, MAX_MESSAGE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot reach the coordinator: {0}")]
    Unreachable(#[from] tonic::transport::Error),
    #[error("the coordinator refused the renewal: {0}")]
    Refused(String),
    #[error("cannot create the key or request: {0}")]
    Crypto(#[from] rcgen::Error),
    #[error("cannot save the renewed certificate: {0}")]
    Save(#[from] IdentityError),
}

/// Where in [0, 1) this certificate's renewal falls within its window: the
/// same on every start, different from one certificate to the next.
fn spread(cert_pem: &str) -> f64 {
    // FNV-1a, then splitmix64's finalizer so that near-identical inputs land
    // far apart; nothing here needs to be secret.
    let hash = cert_pem.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut z = hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// When to renew (this host's clock): between 50% and 75% of the lifetime
/// after the certificate came; now when its validity is unknown.
pub fn renew_at(identity: &Identity) -> i64 {
    let v = identity.validity;
    if v.received_unix_ms == 0 || v.lifetime_seconds == 0 {
        return 0;
    }
    let lifetime_ms = v.lifetime_seconds.saturating_mul(1000) as f64;
    v.received_unix_ms + (lifetime_ms * (0.5 + 0.25 * spread(&identity.cert_pem))) as i64
}

/// When the certificate expires by this host's clock, if known.
pub fn expires_at(identity: &Identity) -> Option<i64> {
    let v = identity.validity;
    (v.received_unix_ms != 0 && v.lifetime_seconds != 0).then(|| {
        v.received_unix_ms.saturating_add(
            i64::try_from(v.lifetime_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
        )
    })
}

/// How long to wait after a failed renewal: a twentieth of the lifetime,
/// between a second and five minutes.
pub fn retry_after(identity: &Identity) -> Duration {
    Duration::from_secs(identity.validity.lifetime_seconds / 20)
        .clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// Asks for a new certificate with the current one and saves the new pair
/// (when `state_dir` is given) before anything uses it.
pub async fn renew(identity: &Identity, state_dir: Option<&Path>) -> Result<Identity, RenewError> {
    let (key, csr) = key_and_request(&identity.host_id)?;
    let channel = transport::endpoint(
        &identity.coordinator,
        &identity.ca_pem,
        Some((&identity.cert_pem, &identity.key_pem)),
    )?
    .connect()
    .await?;
    let response = AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .renew(RenewRequest { csr_der: csr })
        .await
        .map_err(|status| RenewError::Refused(transport::describe_status(&status)))?
        .into_inner();
    // The pinned command key stays: a renewal's answer cannot replace it
    // (a server certificate alone must not be able to). An enrollment from
    // before signed commands pins it here, once.
    let command_key = if identity.command_key.is_empty() {
        response.command_public_key.clone()
    } else {
        identity.command_key.clone()
    };
    let renewed = Identity {
        key_pem: key.serialize_pem(),
        cert_pem: response.certificate_pem.clone(),
        validity: validity_of(&response),
        command_key,
        ..identity.clone()
    };
    if let Some(dir) = state_dir {
        identity::save_renewed(&renewed, dir)?;
    }
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Validity;

    fn identity(cert: &str, received: i64, lifetime: u64) -> Identity {
        Identity {
            host_id: "h".into(),
            coordinator: "127.0.0.1:1".into(),
            key_pem: String::new(),
            cert_pem: cert.into(),
            ca_pem: String::new(),
            validity: Validity {
                received_unix_ms: received,
                lifetime_seconds: lifetime,
                not_after_unix_ms: 0,
            },
            command_key: Vec::new(),
        }
    }

    #[test]
    fn a_fleet_renews_spread_between_half_and_three_quarters_of_the_lifetime() {
        let day = 86_400;
        let points: Vec<f64> = (0..2000)
            .map(|i| {
                let id = identity(
                    &format!("-----BEGIN CERTIFICATE-----\n{i:08}\n"),
                    0,
                    30 * day,
                );
                // A received time of 0 means unknown: measure from 1 ms.
                let id = Identity {
                    validity: Validity {
                        received_unix_ms: 1,
                        ..id.validity
                    },
                    ..id
                };
                (renew_at(&id) - 1) as f64 / (30 * day * 1000) as f64
            })
            .collect();
        assert!(points.iter().all(|p| (0.5..0.75).contains(p)), "{points:?}");
        // Spread over the window, not bunched: every tenth of it gets some.
        for tenth in 0..10 {
            let (low, high) = (0.5 + 0.025 * tenth as f64, 0.5 + 0.025 * (tenth + 1) as f64);
            let n = points.iter().filter(|p| (low..high).contains(*p)).count();
            assert!((100..300).contains(&n), "{n} renewals in [{low}, {high})");
        }
        // The same certificate renews at the same point on every start.
        let id = identity("cert A", 1_000, 3600);
        assert_eq!(renew_at(&id), renew_at(&id.clone()));
    }

    #[test]
    fn an_unknown_validity_renews_at_once_and_expiry_follows_the_lifetime() {
        assert_eq!(renew_at(&identity("c", 0, 0)), 0);
        assert_eq!(expires_at(&identity("c", 0, 0)), None);
        assert_eq!(expires_at(&identity("c", 10_000, 20)), Some(30_000));
        assert_eq!(retry_after(&identity("c", 1, 20)), Duration::from_secs(1));
        assert_eq!(
            retry_after(&identity("c", 1, 30 * 86_400)),
            Duration::from_secs(300)
        );
    }
}
