//! Process plumbing of a coordinator process: logging, the open-file limit and
//! the shutdown signal. Used by the `mf-coordinator` binary and by the demo.

use tokio_util::sync::CancellationToken;

/// Logs to stderr at `default_level` unless RUST_LOG says otherwise; colours
/// only on a terminal, so that journald and files get plain text.
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

/// Each agent session holds a socket: lift the soft open-file limit to the hard one.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

/// Resolves at the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        cancel.cancel();
    });
    token.cancelled().await;
}
