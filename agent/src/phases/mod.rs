//! The phases an agent runs on its host, each through the `Host` interface
//! only. A phase returns its outcome; the executor journals it.

mod precheck;
pub mod step;

use crate::command::{Phase, State};
use crate::host::Host;
use crate::report::Finding;

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    pub detail: String,
    pub findings: Vec<Finding>,
}

/// Runs a phase to its end. Blocking: call it off the async runtime.
pub fn run(host: &dyn Host, phase: &Phase) -> Outcome {
    match phase {
        Phase::Precheck {
            tool,
            target_version,
        } => precheck::run(host, *tool, target_version),
    }
}
