//! mf-sim: the one simulation the project accepts, the host under the agent.
//! `emulated` is an EL machine whose tools (convert2rhel, leapp, rpm, LVM,
//! tar, reboots) answer with the real tools' command lines, exit codes,
//! console lines and files; `fleet` runs many real agents (the `mf-agent`
//! library's enrollment and session code) over such hosts in one process.
//! The agent binary we ship does not contain any of it.

pub mod emulated;
pub mod fleet;

pub use emulated::{EmulatedHost, SimHostSpec, SimProfile};
