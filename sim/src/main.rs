//! mf-sim: the real agent over emulated hosts. `enroll`, `run` and `facts`
//! are `mf-agent`'s own subcommands, run over a host root that holds a
//! scenario file (`.mf-sim/scenario.toml`); `fleet` runs N simulated agents.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use mf_agent::cli;
use mf_agent::host::Host;
use mf_agent::session::SessionConfig;
use mf_sim::EmulatedHost;
use mf_sim::fleet::{self, FleetSpec, SimConfig};

#[derive(Debug, Parser)]
#[command(
    name = "mf-sim",
    version,
    about = "Migration Factory agent over emulated hosts (tests and demos)"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    #[command(flatten)]
    Agent(cli::CliCommand),
    /// Run N simulated agents, each with its own identity, connection and host.
    Fleet(FleetArgs),
    /// Act at the console of an emulated machine, as an operator would.
    Console(ConsoleArgs),
}

#[derive(Debug, Args)]
struct ConsoleArgs {
    #[command(subcommand)]
    action: ConsoleAction,
    /// The emulated machine's root directory.
    #[arg(long, global = true)]
    host_root: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ConsoleAction {
    /// A machine stopped in the upgrade initramfs's emergency shell: pick the
    /// previous system's entry in the GRUB menu for one boot (the upgrade
    /// entry stays the default). The machine boots when its agent starts.
    BootPrevious,
}

#[derive(Debug, Args)]
struct FleetArgs {
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Coordinator agent listener, HOST:PORT.
    #[arg(long)]
    coordinator: String,
    /// CA certificate of the coordinator (PEM).
    #[arg(long)]
    ca: std::path::PathBuf,
    /// Bootstrap token from `mfctl token create` (one use per host).
    #[arg(long, env = "MF_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// Seed of the fleet's plan: the same seed gives the same hosts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of the simulated host ids.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 64)]
    enroll_concurrency: usize,
    /// Every host a RHEL 7.9 whose upgrade pre-check passes (benchmarks).
    #[arg(long)]
    ready_rhel79: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Thousands of simulated agents would drown the log in session lines.
    let default_level = match cli.command {
        SimCommand::Fleet(_) => "warn",
        SimCommand::Agent(_) | SimCommand::Console(_) => "info",
    };
    cli::init_logging(cli.log_json, default_level);
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    match cli.command {
        SimCommand::Agent(command) => runtime()?.block_on(cli::run(command, open_emulated_host)),
        SimCommand::Fleet(args) => runtime()?.block_on(run_fleet(args)),
        SimCommand::Console(args) => console(&args),
    }
}

fn console(args: &ConsoleArgs) -> Result<()> {
    let root = args
        .host_root
        .as_deref()
        .context("--host-root is required: which machine's console?")?;
    if !root
        .join(mf_sim::emulated::SCENARIO_PATH.trim_start_matches('/'))
        .exists()
    {
        bail!(
            "{} holds no {}: not an emulated machine",
            root.display(),
            mf_sim::emulated::SCENARIO_PATH
        );
    }
    match args.action {
        ConsoleAction::BootPrevious => {
            let title = EmulatedHost::console_boot_previous_dir(root)
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", root.display()))?;
            println!("booting {title:?} once; the default entry is unchanged");
        }
    }
    Ok(())
}

/// The emulation over a host root; a root without a scenario file is refused,
/// so that nothing real is ever emulated by mistake.
fn open_emulated_host(root: &Path) -> Result<Arc<dyn Host>> {
    match EmulatedHost::open_dir(root)? {
        Some(host) => Ok(Arc::new(host)),
        None => bail!(
            "{} holds no {}: mf-sim only runs over an emulated host root",
            root.display(),
            mf_sim::emulated::SCENARIO_PATH
        ),
    }
}

async fn run_fleet(args: FleetArgs) -> Result<()> {
    raise_open_file_limit();
    let ca_pem = std::fs::read_to_string(&args.ca)
        .with_context(|| format!("cannot read the CA certificate {}", args.ca.display()))?;
    let plan = fleet::plan_fleet(&FleetSpec {
        hosts: args.hosts,
        seed: args.seed,
        prefix: args.prefix,
        ready_rhel79: args.ready_rhel79,
    });
    let fleet = fleet::start(
        plan,
        SimConfig {
            coordinator: args.coordinator,
            ca_pem,
            token: args.token,
            enroll_concurrency: args.enroll_concurrency,
            session: SessionConfig::default(),
        },
    );
    let shutdown = cli::shutdown_on_signal();
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
