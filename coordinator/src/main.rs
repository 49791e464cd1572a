//! mf-coordinator: thin entry point. Reads flags or a config file, starts the
//! coordinator, and stops it cleanly on SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use mf_coordinator::config::FileConfig;
use mf_coordinator::server;

#[derive(Debug, Parser)]
#[command(
    name = "mf-coordinator",
    version,
    about = "Migration Factory coordinator",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML file with the settings below; flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the inventory (sled) lives.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory written by `mfctl pki init`.
    #[arg(long)]
    pki_dir: Option<PathBuf>,
    /// Agent listener (mTLS; enrollment without a certificate), e.g. 0.0.0.0:7443.
    #[arg(long)]
    agent_listen: Option<String>,
    /// Admin listener (operator certificates only), e.g. 127.0.0.1:7444.
    #[arg(long)]
    admin_listen: Option<String>,
    /// Prometheus /metrics and /healthz, e.g. 127.0.0.1:9464.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// The REST API for portals (HTTPS, OpenAPI at /v1/openapi.json), e.g.
    /// 0.0.0.0:8443 [default: off]; tokens need [oidc] in the config file.
    #[arg(long)]
    api_listen: Option<String>,
    /// How often agents send heartbeats, e.g. 30s.
    #[arg(long)]
    heartbeat_interval: Option<String>,
    /// A reboot with no outcome after this holds its job, e.g. 4h.
    #[arg(long)]
    reboot_timeout: Option<String>,
    /// How long agent certificates live, e.g. 30d [default: 30d]; agents
    /// renew theirs between half and three quarters of it.
    #[arg(long)]
    agent_cert_lifetime: Option<String>,
    /// The longest a bootstrap token may live, e.g. 7d [default: 30d].
    #[arg(long)]
    token_max_ttl: Option<String>,
    /// The most enrollments one token may allow [default: 10000].
    #[arg(long)]
    token_max_uses: Option<u32>,
    /// A host whose clock is off by more than this is sent no work, e.g. 5m
    /// [default: 5m].
    #[arg(long)]
    max_clock_skew: Option<String>,
    /// How long operators' certificates live, e.g. 365d [default: 365d].
    #[arg(long)]
    operator_cert_lifetime: Option<String>,
    /// Renew the coordinator's own server certificate when less than this is
    /// left, e.g. 30d [default: 30d].
    #[arg(long)]
    server_cert_renew_before: Option<String>,
    /// Waves over this many hosts start only when a second, different admin
    /// starts them too [default: no limit].
    #[arg(long)]
    blast_radius_hosts: Option<usize>,
    /// The same for waves with a higher --max-parallel.
    #[arg(long)]
    blast_radius_max_parallel: Option<u32>,
    /// The same for waves whose error budgets exceed this percentage.
    #[arg(long)]
    blast_radius_error_percent: Option<u32>,
    /// Refused enrollments allowed a minute from one source address (an
    /// IPv6 /64); beyond it, its attempts are refused unread [default: 30].
    #[arg(long)]
    enroll_refusals_per_source: Option<u32>,
    /// Refused enrollments allowed a minute from all sources together
    /// [default: 600].
    #[arg(long)]
    enroll_refusals_total: Option<u32>,
    /// TLS handshakes in progress at once from one source address
    /// [default: 128]; the listener's 512 are shared by all.
    #[arg(long)]
    handshakes_per_source: Option<usize>,
    /// A connection must start HTTP/2 this soon after its TLS handshake, e.g.
    /// 10s [default: 10s].
    #[arg(long)]
    preface_timeout: Option<String>,
    /// A connection without a client certificate (enrollment, health) is
    /// closed after this, e.g. 60s [default: 60s].
    #[arg(long)]
    unauthenticated_connection_lifetime: Option<String>,
    /// Messages one agent may send a minute; past it, its session is closed
    /// and counted [default: 120].
    #[arg(long)]
    agent_messages_per_minute: Option<u32>,
    /// An agent that takes nothing off the wire for this long while something
    /// waits for it is disconnected, e.g. 30s [default: 30s].
    #[arg(long)]
    agent_stall_timeout: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Restores a backup (from `mfctl backup`) into an empty data directory,
    /// with the coordinator stopped; the file is checked whole first.
    #[command(
        after_help = "Example:\n  mf-coordinator restore --data-dir /var/lib/mf-coordinator \
                            /srv/backups/mf-2026-11-29.jsonl"
    )]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to create (absent or empty).
        #[arg(long, required_unless_present = "check")]
        data_dir: Option<PathBuf>,
        /// Only check the file (complete, unaltered, this store's schema).
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    mf_coordinator::process::init_logging(cli.log_json, "info");
    if let Some(Command::Restore {
        file,
        data_dir,
        check,
    }) = cli.command
    {
        return restore(&file, data_dir.as_deref(), check);
    }
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = file.resolve(FileConfig {
        data_dir: cli.data_dir,
        pki_dir: cli.pki_dir,
        agent_listen: cli.agent_listen,
        admin_listen: cli.admin_listen,
        metrics_listen: cli.metrics_listen,
        api_listen: cli.api_listen,
        oidc: None,
        self_service: None,
        api_reads_per_second: None,
        rebuild_findings: None,
        webhook_retry_max_interval: None,
        heartbeat_interval: cli.heartbeat_interval,
        reboot_timeout: cli.reboot_timeout,
        agent_cert_lifetime: cli.agent_cert_lifetime,
        token_max_ttl: cli.token_max_ttl,
        token_max_uses: cli.token_max_uses,
        max_clock_skew: cli.max_clock_skew,
        operator_cert_lifetime: cli.operator_cert_lifetime,
        server_cert_renew_before: cli.server_cert_renew_before,
        blast_radius_hosts: cli.blast_radius_hosts,
        blast_radius_max_parallel: cli.blast_radius_max_parallel,
        blast_radius_error_percent: cli.blast_radius_error_percent,
        enroll_refusals_per_source: cli.enroll_refusals_per_source,
        enroll_refusals_total: cli.enroll_refusals_total,
        handshakes_per_source: cli.handshakes_per_source,
        preface_timeout: cli.preface_timeout,
        unauthenticated_connection_lifetime: cli.unauthenticated_connection_lifetime,
        agent_messages_per_minute: cli.agent_messages_per_minute,
        agent_stall_timeout: cli.agent_stall_timeout,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        mf_coordinator::process::raise_open_file_limit();
        let coordinator = server::start(&config).await?;
        coordinator
            .run_until(mf_coordinator::process::shutdown_signal())
            .await
            .map_err(anyhow::Error::msg)
    })
}

fn restore(file: &std::path::Path, data_dir: Option<&std::path::Path>, check: bool) -> Result<()> {
    use mf_coordinator::store::backup;
    let trailer = match data_dir {
        Some(dir) if !check => backup::restore(file, dir)
            .with_context(|| format!("cannot restore {} into {}", file.display(), dir.display()))?,
        _ => backup::check(file)
            .with_context(|| format!("{} is not a usable backup", file.display()))?,
    };
    match data_dir {
        Some(dir) if !check => println!(
            "restored {} records into {} (sha256 {}); start the coordinator on it",
            trailer.records,
            dir.display(),
            trailer.sha256
        ),
        _ => println!(
            "{}: a complete backup of {} records (sha256 {})",
            file.display(),
            trailer.records,
            trailer.sha256
        ),
    }
    Ok(())
}
