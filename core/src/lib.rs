//! mf-core: the model both ends share and the decisions made on it, as pure
//! logic: facts, findings, commands, label selectors, targets and the one
//! migration path table, readiness, the job state machine and the wave
//! scheduler with its calendar. No I/O, no async, no clock: time is an argument.

#[macro_use]
pub mod labels;

pub mod access;
pub mod command;
pub mod facts;
pub mod finding;
pub mod job;

pub mod path;
pub mod precheck;
pub mod rate;
pub mod readiness;
pub mod selector;
pub mod time;
pub mod wave;
pub mod words;
