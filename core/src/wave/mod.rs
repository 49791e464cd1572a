//! Waves: many hosts migrated in stages under safety rules. `scheduler.rs` is
//! the pure core (who may start now, and why the others wait), `calendar.rs`
//! the maintenance windows and freezes, `spec.rs` what an operator asks for,
//! `durations.rs` the expected duration of a migration path measured from past
//! jobs, and `estimate.rs` the ETA, by running the scheduler on those
//! durations. The coordinator's inventory task drives waves and stores them.

pub mod blast;
pub mod calendar;
pub mod durations;
pub mod estimate;
pub mod joining;
pub mod lifecycle;
pub mod scheduler;
pub mod spec;
pub mod status;

#[cfg(test)]
mod tests;
