//! mfctl: thin entry point over the `mfctl` library. Errors go to stderr with
//! the exit code of their kind (`mfctl::exit`).

use anyhow::Context;
use clap::Parser;
use mfctl::{self as cli, Cli, exit};

fn main() {
    let cli = Cli::parse();
    cli::init_logging(false, "warn");
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(cli::run(cli)));
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(exit::code_of(&e));
    }
}
