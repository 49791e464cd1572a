//! `mf-sim fleet`: many simulated agents in one process. Each has its own key,
//! certificate, TLS connection and simulated host, and runs the same enrollment
//! and session code as the real daemon.

mod plan;

pub use plan::{FleetSpec, HostPlan, plan_fleet};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::emulated::EmulatedHost;
use mf_agent::enroll::{self, EnrollParams};
use mf_agent::host::Host;
use mf_agent::journal::Journal;
use mf_agent::session::{self, SessionConfig};

/// How to reach the coordinator and how hard to press it.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub coordinator: String,
    pub ca_pem: String,
    pub token: String,
    /// Enrollments in flight at once.
    pub enroll_concurrency: usize,
    pub session: SessionConfig,
}

/// A running simulated fleet; dropping it does not stop it, `shutdown` does.
#[derive(Debug)]
pub struct Fleet {
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    enrolled: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    size: usize,
}

impl Fleet {
    pub fn size(&self) -> usize {
        self.size
    }

    /// Agents that have enrolled so far.
    pub fn enrolled(&self) -> usize {
        self.enrolled.load(Ordering::Relaxed)
    }

    /// Agents whose enrollment was refused or failed after retries.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops every agent and waits for them to close their sessions.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts every planned host: enroll (bounded concurrency, a few retries on
/// transport errors), then run its session until shutdown.
pub fn start(plan: Vec<HostPlan>, config: SimConfig) -> Fleet {
    let shutdown = CancellationToken::new();
    let enrolled = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(config.enroll_concurrency.max(1)));
    let config = Arc::new(config);
    let size = plan.len();
    let mut tasks = JoinSet::new();
    for planned in plan {
        let span = info_span!("sim_agent", host_id = %planned.host_id);
        let (shutdown, enrolled, failed, permits, config) = (
            shutdown.clone(),
            Arc::clone(&enrolled),
            Arc::clone(&failed),
            Arc::clone(&permits),
            Arc::clone(&config),
        );
        tasks.spawn(
            async move {
                let params = EnrollParams {
                    coordinator: config.coordinator.clone(),
                    ca_pem: config.ca_pem.clone(),
                    token: config.token.clone(),
                    host_id: planned.host_id.clone(),
                };
                let identity = {
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    match enroll_with_retries(params, &shutdown).await {
                        Some(identity) => identity,
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                };
                enrolled.fetch_add(1, Ordering::Relaxed);
                let host: Arc<dyn Host> = Arc::new(EmulatedHost::simulated(&planned.spec));
                let mut session_config = config.session.clone();
                session_config.labels = planned.labels;
                session::run(
                    identity,
                    host,
                    Journal::in_memory(),
                    session_config,
                    shutdown,
                )
                .await;
            }
            .instrument(span),
        );
    }
    Fleet {
        tasks,
        shutdown,
        enrolled,
        failed,
        size,
    }
}

async fn enroll_with_retries(
    params: EnrollParams,
    shutdown: &CancellationToken,
) -> Option<mf_agent::identity::Identity> {
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        match enroll::enroll(params.clone()).await {
            Ok(identity) => return Some(identity),
            // A refusal is final: retrying a bad token only burns attempts.
            Err(e @ enroll::EnrollError::Refused(_)) => {
                warn!(error = %e, "enrollment refused");
                return None;
            }
            Err(e) => {
                warn!(error = %e, attempt, "enrollment failed");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))) => {}
                }
            }
        }
    }
    None
}
