//! The agent's command line (enroll, run, facts), shared by the `mf-agent`
//! binary and by `mf-sim`, which runs the same daemon over an emulated host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{self, FileConfig};
use crate::enroll::{self, EnrollParams};
use crate::facts;
use crate::host::{Host, RootedHost};
use crate::identity::Identity;
use crate::journal::Journal;
use crate::session;

/// How a binary turns a host root into the machine the agent acts on: the
/// real machine (or a prepared tree) for `mf-agent`, the emulation for `mf-sim`.
pub type OpenHost = fn(&Path) -> Result<Arc<dyn Host>>;

/// The real machine, or a prepared tree under `root` (facts only).
pub fn open_rooted_host(root: &Path) -> Result<Arc<dyn Host>> {
    Ok(Arc::new(RootedHost::new(root)))
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Enroll this host with a bootstrap token; stores key and certificate in the state dir.
    Enroll {
        /// Coordinator agent listener, HOST:PORT (or `coordinator` under [enroll]).
        #[arg(long)]
        coordinator: Option<String>,
        /// CA certificate of the coordinator, PEM (or `ca` under [enroll]).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Bootstrap token from `mfctl token create`.
        #[arg(long, env = "MF_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// Where the identity goes (or `state_dir` in the configuration).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Host id to enroll as; defaults to the host's FQDN.
        #[arg(long)]
        host_id: Option<String>,
        /// Where the agent reads the machine (or `host_root`); default /.
        #[arg(long)]
        host_root: Option<PathBuf>,
        /// The agent's TOML configuration (`mf-agent run --config`): its
        /// [enroll] section, state_dir and host_root; flags win.
        #[arg(long)]
        config: Option<PathBuf>,
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
}

/// Logs to stderr at `default_level` unless RUST_LOG says otherwise; colours
/// only on a terminal.
pub fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs one subcommand until it ends or SIGTERM/SIGINT arrives.
pub async fn run(command: CliCommand, open_host: OpenHost) -> Result<()> {
    match command {
        CliCommand::Enroll {
            coordinator,
            ca,
            token,
            state_dir,
            host_id,
            host_root,
            config,
        } => {
            let file = match config {
                Some(path) => FileConfig::load(&path)?,
                None => FileConfig::default(),
            };
            let enroll = file.enroll.unwrap_or_default();
            let coordinator = coordinator.or(enroll.coordinator).context(
                "no coordinator: give --coordinator or coordinator under [enroll] in --config",
            )?;
            let ca = ca
                .or(enroll.ca)
                .context("no CA certificate: give --ca or ca under [enroll] in --config")?;
            let state_dir = state_dir
                .or(file.state_dir)
                .context("no state directory: give --state-dir or state_dir in --config")?;
            let host_root = host_root.or(file.host_root).unwrap_or_else(|| "/".into());
            let ca_pem = std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            let host_id = match host_id {
                Some(id) => id,
                None => default_host_id(open_host(&host_root)?.as_ref())?,
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
        CliCommand::Run {
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
            let _lock = crate::lock::StateLock::acquire(&run.state_dir)?;
            let host = open_host(&run.host_root)?;
            // convert2rhel refuses an exposed credentials file: so does the agent, at once.
            run.session
                .phases
                .convert2rhel
                .check_on(host.as_ref())
                .context("the agent's configuration")?;
            let identity = Identity::load(&run.state_dir)?;
            info!(
                host_id = %identity.host_id,
                coordinator = %identity.coordinator,
                host_root = %run.host_root.display(),
                version = env!("CARGO_PKG_VERSION"),
                "mf-agent starting"
            );
            let journal_path = run.state_dir.join("journal.jsonl");
            let journal = Journal::open(&journal_path)?;
            let shutdown = shutdown_on_signal();
            let journal = std::sync::Arc::new(std::sync::Mutex::new(journal));
            session::run(identity, host, journal, run.session, shutdown).await;
            info!("mf-agent stopped");
            Ok(())
        }
        CliCommand::Facts { host_root, labels } => {
            let labels = labels
                .iter()
                .map(|l| config::parse_label(l))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let host = open_host(&host_root)?;
            let facts =
                tokio::task::spawn_blocking(move || facts::collect(host.as_ref(), &labels)).await?;
            println!("{}", serde_json::to_string_pretty(&facts)?);
            Ok(())
        }
    }
}

fn default_host_id(host: &dyn Host) -> Result<String> {
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

/// A token cancelled by the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
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
