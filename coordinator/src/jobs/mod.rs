//! Jobs: one host's migration to a target, through the steps its OS needs,
//! each step pre-check, snapshot, execute, reboot, verify, then commit; on a
//! failure, roll back or hold as the job's policy says. `machine.rs` is the
//! pure state machine (events in, commands out); the inventory task persists
//! a job before acting on its decision.

mod machine;

pub use machine::{Decision, Event, Job, JobPhase, JobState, OnFailure, TimelineEntry, start};
