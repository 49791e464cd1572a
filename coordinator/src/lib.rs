//! mf-coordinator: enrollment, the inventory in sled, the agent and admin gRPC
//! services and Prometheus metrics. The operators' CLI is the `mfctl` crate.

pub mod api;
pub mod audit;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod http_client;
pub mod inventory;
pub mod metrics;
pub mod process;
pub mod revocation;
pub mod server;
pub mod server_cert;
pub mod service;
pub mod source;
pub mod storage_health;
pub mod store;
pub mod tls;
pub mod webhooks;
pub mod wire;
