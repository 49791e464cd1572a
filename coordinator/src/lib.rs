//! mf-coordinator and mfctl: enrollment and PKI, the inventory in sled, the
//! agent and admin gRPC services, Prometheus metrics, and the operators' CLI.

pub mod cli;
pub mod clock;
pub mod config;
pub mod inventory;
pub mod jobs;
pub mod metrics;
pub mod migration;
pub mod pki;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
pub mod waves;
