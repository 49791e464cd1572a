//! Certificates no longer accepted, by serial: read by the TLS verifiers at
//! every handshake, written only by the inventory task, which stores each
//! revocation (and flushes it before it answers) as it adds it here.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

/// The deny-list the verifiers read; cheap to clone (one shared set).
#[derive(Debug, Clone, Default)]
pub struct Revocations(Arc<RwLock<HashSet<String>>>);

impl Revocations {
    pub fn contains(&self, serial_hex: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(serial_hex)
    }

    pub(crate) fn insert(&self, serial_hex: String) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(serial_hex);
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
