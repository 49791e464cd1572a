//! mf-agent: the daemon on every VM. It enrolls once, then holds one mutual-TLS
//! session with the coordinator and reports its host's facts. Everything it knows
//! of its machine comes through [`host::Host`].

pub mod cli;
pub mod command;
pub mod config;
pub mod enroll;
pub mod executor;
pub mod facts;
pub mod host;
pub mod identity;
pub mod journal;
pub mod lock;
pub mod migration;
pub mod phases;
pub mod renew;
pub mod report;
pub mod session;
mod wire;

#[cfg(test)]
mod fixtures;
