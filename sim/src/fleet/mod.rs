//! `mf-sim fleet`: many simulated agents in one process. Each has its own key,
//! certificate, TLS connection and simulated host, and runs the same enrollment
//! and session code as the real daemon.

mod plan;

pub use plan::{FleetSpec, HostPlan, plan_fleet};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::emulated::EmulatedHost;
use mf_agent::enroll::{self, EnrollParams};
use mf_agent::host::Host;
use mf_agent::journal::{Journal, SharedJournal};
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
    /// Each host's machine, for acting at its console.
    hosts: BTreeMap<String, Arc<EmulatedHost>>,
    shutdown: CancellationToken,
    enrolled: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    size: usize,
}

impl Fleet {
    pub fn size(&self) -> usize {
        self.size
    }

    /// The simulated machine of `host_id`.
    pub fn host(&self, host_id: &str) -> Option<&Arc<EmulatedHost>> {
        self.hosts.get(host_id)
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
    let mut hosts = BTreeMap::new();
    for planned in plan {
        let host = Arc::new(EmulatedHost::simulated(&planned.spec));
        hosts.insert(planned.host_id.clone(), Arc::clone(&host));
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
                let mut session_config = config.session.clone();
                session_config.labels = planned.labels;
                run_machine(identity, host, session_config, shutdown).await;
            }
            .instrument(span),
        );
    }
    Fleet {
        tasks,
        hosts,
        shutdown,
        enrolled,
        failed,
        size,
    }
}

/// The agent of one machine, as its process would live: it runs while the
/// machine is up, is gone the moment the machine goes down (a reboot that did
/// not come back, the emergency shell), and starts again on the same journal
/// when the machine comes back, settling what it left running.
async fn run_machine(
    identity: mf_agent::identity::Identity,
    host: Arc<EmulatedHost>,
    config: SessionConfig,
    shutdown: CancellationToken,
) {
    let journal: SharedJournal = Arc::new(Mutex::new(Journal::in_memory()));
    let mut power = host.power();
    loop {
        let as_host: Arc<dyn Host> = Arc::clone(&host) as Arc<dyn Host>;
        let agent = session::run(
            identity.clone(),
            as_host,
            Arc::clone(&journal),
            config.clone(),
            shutdown.clone(),
        );
        tokio::select! {
            () = agent => return,
            // Dropping the session is the power going off under the agent.
            _ = power.wait_for(|up| !*up) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = power.wait_for(|up| *up) => {}
        }
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
