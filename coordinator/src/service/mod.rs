//! The gRPC services: thin adapters that authenticate the peer, validate the
//! message, ask the inventory, and map every failure to a precise status.

pub mod admin;
pub mod agent;
pub(crate) mod auth;
pub mod enroll_limit;
pub mod message_limit;
mod outbound;
pub(crate) mod parts;
mod waves;

/// A host id: what an FQDN may contain, at most 253 bytes.
pub fn valid_host_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_ids_are_fqdn_shaped() {
        for good in ["web-01", "web-01.dc1.example.com", "a", "db_2.x"] {
            assert!(super::valid_host_id(good), "{good}");
        }
        for bad in ["", "-web", ".x", "a b", "a/b", "é", &"a".repeat(254)] {
            assert!(!super::valid_host_id(bad), "{bad}");
        }
    }
}
