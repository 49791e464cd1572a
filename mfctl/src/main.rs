//! mfctl: thin entry point over the `mfctl` library. Errors go to stderr with
//! the exit code of their kind (`mfctl::exit`).

use anyhow::Context;
use clap::Parser;
use mfctl::{self as cli, Cli, exit};

fn main() {
    quiet_on_broken_pipe();
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

/// `mfctl hosts list | head`: when the reader goes away, end quietly as
/// kubectl and the shell's own tools do, not with a panic message. (Rust
/// ignores SIGPIPE, so printing to a closed pipe panics in `println!`; the
/// workspace forbids the unsafe code that would restore the signal.)
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // println! ("failed printing to stdout: Broken pipe") and writers
        // that unwrap (clap_complete's "BrokenPipe") say it either way.
        if message.contains("Broken pipe") || message.contains("BrokenPipe") {
            std::process::exit(exit::BROKEN_PIPE);
        }
        default(info);
    }));
}
