//! mf-agent: thin entry point over the library. Parses flags, sets up logging,
//! runs one subcommand on the real machine until it ends or SIGTERM/SIGINT.

use anyhow::{Context, Result};
use clap::Parser;
use mf_agent::cli::{self, CliCommand};

#[derive(Debug, Parser)]
#[command(name = "mf-agent", version, about = "Migration Factory agent")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: CliCommand,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    cli::init_logging(cli.log_json, "info");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(cli::run(cli.command, cli::open_rooted_host))
}
