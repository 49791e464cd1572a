//! Bootstrap tokens: 256 random bits shown once, stored only as a SHA-256 hash.

use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "mfbt_";

/// Random bytes from the operating system. A failing system RNG leaves us
/// nothing safe to do, so it aborts.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    #[allow(clippy::expect_used)] // no safe fallback exists for a broken system RNG
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator failed");
    bytes
}

pub fn generate() -> String {
    let bytes = random_bytes::<32>();
    let mut token = String::with_capacity(PREFIX.len() + 64);
    token.push_str(PREFIX);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// A random 16-hex-digit identifier (command ids).
pub fn hex_id() -> String {
    random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash under which a token is stored and looked up.
pub fn hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Cheap shape check before any lookup: refuses garbage early with a clear error.
pub fn well_formed(token: &str) -> bool {
    token
        .strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert!(!well_formed("mfbt_1234"));
        assert!(!well_formed(&a.replace(PREFIX, "xx")));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&a));
    }
}
