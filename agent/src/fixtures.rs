//! Where the agent's tests find their fixtures: the project's own, always
//! (`tests/fixtures/`). The project's build machine also keeps the tools'
//! published samples beside its checkouts; when present they are checked in
//! addition, never instead, and their absence changes no test's result.

use std::path::{Path, PathBuf};

/// A file of the project's own fixtures, e.g. `leapp/report-1.1.0.json`.
pub fn own(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The folder of real samples, if this checkout has it; says so either way,
/// so that a run shows whether the conformance checks ran.
pub fn real_samples(test: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real");
    if dir.is_dir() {
        eprintln!(
            "{test}: also checking the real samples in {}",
            dir.display()
        );
        Some(dir)
    } else {
        eprintln!(
            "{test}: no real samples beside the checkout; checked the project's own fixtures"
        );
        None
    }
}
