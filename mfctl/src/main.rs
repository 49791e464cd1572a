//! mfctl: thin entry point over the `mfctl` library. Errors go to stderr with a
//! non-zero exit code.

use anyhow::{Context, Result};
use clap::Parser;
use mfctl::{self as cli, Cli};

fn main() -> Result<()> {
    let cli = Cli::parse();
    cli::init_logging(false, "warn");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(cli::run(cli))
}
