//! Waves: many hosts migrated in stages under safety rules. `scheduler.rs` is
//! the pure core (who may start now, and why the others wait). Not wired to
//! the coordinator yet: windows, soak, approvals, persistence, the CLI and
//! metrics come next (issue 4).

pub mod scheduler;

#[cfg(test)]
mod tests;
