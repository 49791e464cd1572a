//! mf-agent: thin entry point over the library. Parses flags, sets up logging,
//! runs one subcommand until it ends or SIGTERM/SIGINT arrives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mf_agent::config::{self, FileConfig};
use mf_agent::enroll::{self, EnrollParams};
use mf_agent::facts;
use mf_agent::host::{EmulatedHost, Host, RootedHost};
use mf_agent::identity::Identity;
use mf_agent::journal::Journal;
use mf_agent::session::{self, SessionConfig};
use mf_agent::sim::{self, FleetSpec, SimConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, Parser)]
#[command(name = "mf-agent", version, about = "Migration Factory agent")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll this host with a bootstrap token; stores key and certificate in the state dir.
    Enroll {
        /// Coordinator agent listener, HOST:PORT.
        #[arg(long)]
        coordinator: String,
        /// CA certificate of the coordinator (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// Bootstrap token from `mfctl token create`.
        #[arg(long, env = "MF_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long)]
        state_dir: PathBuf,
        /// Host id to enroll as; defaults to the host's FQDN.
        #[arg(long)]
        host_id: Option<String>,
        #[arg(long, default_value = "/")]
        host_root: PathBuf,
    },
    /// Run the daemon: hold the session with the coordinator and report facts.
    Run {
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Where the agent reads the machine (tests point it at a prepared tree).
        #[arg(long)]
        host_root: Option<PathBuf>,
        /// KEY=VALUE, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// How often facts are collected again, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        facts_interval: Option<Duration>,
        /// TOML file with the same settings; flags win.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the host's facts as JSON without connecting.
    Facts {
        #[arg(long, default_value = "/")]
        host_root: PathBuf,
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Run N simulated agents, each with its own identity, connection and host.
    Sim {
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        #[arg(long)]
        coordinator: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, env = "MF_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Prefix of the simulated host ids.
        #[arg(long, default_value = "sim")]
        prefix: String,
        #[arg(long, default_value_t = 64)]
        enroll_concurrency: usize,
        /// Every host a RHEL 7.9 whose upgrade pre-check passes (benchmarks).
        #[arg(long)]
        ready_rhel79: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Thousands of simulated agents would drown the log in session lines.
    let default_level = if matches!(cli.command, Command::Sim { .. }) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_json, default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli.command))
}

fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Enroll {
            coordinator,
            ca,
            token,
            state_dir,
            host_id,
            host_root,
        } => {
            let ca_pem = std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let host_id = match host_id {
                Some(id) => id,
                None => default_host_id(&RootedHost::new(&host_root))?,
            };
            let identity = enroll::enroll(EnrollParams {
                coordinator,
                ca_pem,
                token,
                host_id,
            })
            .await?;
            identity
                .save(&state_dir)
                .with_context(|| format!("cannot save the identity in {}", state_dir.display()))?;
            println!("enrolled as {}", identity.host_id);
            Ok(())
        }
        Command::Run {
            state_dir,
            host_root,
            labels,
            facts_interval,
            config,
        } => {
            let file = match config {
                Some(path) => FileConfig::load(&path)?,
                None => FileConfig::default(),
            };
            let run = config::resolve(file, state_dir, host_root, &labels, facts_interval)?;
            let identity = Identity::load(&run.state_dir)?;
            info!(
                host_id = %identity.host_id,
                coordinator = %identity.coordinator,
                host_root = %run.host_root.display(),
                version = env!("CARGO_PKG_VERSION"),
                "mf-agent starting"
            );
            let host: Arc<dyn Host> = match EmulatedHost::open_dir(&run.host_root)? {
                Some(emulated) => {
                    tracing::warn!(host_root = %run.host_root.display(), "this host root has a scenario file: its tools are emulated");
                    Arc::new(emulated)
                }
                None => Arc::new(RootedHost::new(run.host_root)),
            };
            let journal_path = run.state_dir.join("journal.jsonl");
            let journal = Journal::open(&journal_path)?;
            let shutdown = shutdown_on_signal();
            session::run(identity, host, journal, run.session, shutdown).await;
            info!("mf-agent stopped");
            Ok(())
        }
        Command::Facts { host_root, labels } => {
            let labels = labels
                .iter()
                .map(|l| config::parse_label(l))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let host: Box<dyn Host> = match EmulatedHost::open_dir(&host_root)? {
                Some(emulated) => Box::new(emulated),
                None => Box::new(RootedHost::new(host_root)),
            };
            let facts =
                tokio::task::spawn_blocking(move || facts::collect(host.as_ref(), &labels)).await?;
            println!("{}", serde_json::to_string_pretty(&facts)?);
            Ok(())
        }
        Command::Sim {
            hosts,
            coordinator,
            ca,
            token,
            seed,
            prefix,
            enroll_concurrency,
            ready_rhel79,
        } => {
            raise_open_file_limit();
            let ca_pem = std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let plan = sim::plan_fleet(&FleetSpec {
                hosts,
                seed,
                prefix,
                ready_rhel79,
            });
            let fleet = sim::start(
                plan,
                SimConfig {
                    coordinator,
                    ca_pem,
                    token,
                    enroll_concurrency,
                    session: SessionConfig::default(),
                },
            );
            let shutdown = shutdown_on_signal();
            let started = std::time::Instant::now();
            let mut progress = tokio::time::interval(Duration::from_secs(5));
            let mut last = None;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = progress.tick() => {
                        let now = (fleet.enrolled(), fleet.failed());
                        if last != Some(now) {
                            println!(
                                "{:>6.1}s  enrolled {}  failed {}  of {}",
                                started.elapsed().as_secs_f64(), now.0, now.1, fleet.size()
                            );
                            last = Some(now);
                        }
                    }
                }
            }
            fleet.shutdown().await;
            Ok(())
        }
    }
}

fn default_host_id(host: &RootedHost) -> Result<String> {
    let facts = facts::collect(host, &BTreeMap::new());
    match (facts.fqdn, facts.hostname) {
        (Some(fqdn), _) => Ok(fqdn),
        (None, Some(hostname)) => {
            tracing::warn!(%hostname, "no FQDN found in /etc/hosts; enrolling under the short hostname");
            Ok(hostname)
        }
        (None, None) => bail!("cannot tell this host's name: pass --host-id"),
    }
}

/// Each simulated agent holds a socket: lift the soft limit to the hard one.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

/// A token cancelled by the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutting down");
        cancel.cancel();
    });
    token
}
