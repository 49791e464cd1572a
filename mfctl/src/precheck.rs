//! `mfctl precheck`: send the pre-checks, and with `--wait` or `--watch`
//! follow them to their outcomes by polling the readiness counts (one small
//! answer, whatever the fleet's size), then print the readiness report.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ArgGroup;
use mf_core::path::Target;
use mf_proto::v1 as pb;

use super::client::{self, AdminClient};
use super::exit::{self, ExitCode};
use super::output::{self, print_document};
use super::{Format, readiness};

/// How often a wait asks for the counts.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("waiting").args(["wait", "watch"]).multiple(true)))]
pub struct PrecheckArgs {
    /// Which hosts: a Kubernetes label selector over labels and os, version, arch,
    /// connected (e.g. app=billing,os=rhel); empty: every host.
    #[arg(short = 'l', long, default_value = "")]
    selector: String,
    /// rhel-7.9, rhel-8.10, rhel-9.4, rhel-9.6, rhel-9.8 or rhel-10.0 (which the
    /// host's leapp supports, its pre-check says).
    #[arg(long)]
    target: Target,
    /// Wait until every pre-check sent to a connected agent has an outcome
    /// (progress and ETA on a terminal), then print the readiness.
    #[arg(long)]
    wait: bool,
    /// As --wait, printing a line each time the counts change (a document
    /// per change with -o json|yaml).
    #[arg(long)]
    watch: bool,
    /// With --wait or --watch: give up after this long (exit 14), e.g. 30m.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, requires = "waiting")]
    timeout: Duration,
    /// With --wait or --watch: exit 10 if a selected host is blocked, 11 if one
    /// ended in error.
    #[arg(long, requires = "waiting")]
    fail_on_blocked: bool,
    /// Output: table, wide, json or yaml (one document; with --watch one per change).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Asks for the pre-checks: what was sent, queued and refused.
pub async fn send(
    admin: &mut AdminClient,
    selector: &str,
    target: Target,
) -> Result<pb::PrecheckResponse> {
    admin
        .precheck(pb::PrecheckRequest {
            selector: selector.to_string(),
            target: target.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(client::refused)
}

/// Waits quietly for the outcomes of `sent` pre-checks, then reads the report.
pub async fn outcomes(
    admin: &mut AdminClient,
    selector: &str,
    sent: u32,
    timeout: Duration,
) -> Result<pb::ReadinessReport> {
    wait(admin, selector, sent, timeout, Follow::Quiet).await?;
    client::readiness(admin, selector).await
}

pub async fn run(admin: &mut AdminClient, args: PrecheckArgs) -> Result<()> {
    let response = send(admin, &args.selector, args.target).await?;
    if !(args.wait || args.watch) {
        return readiness::print_precheck(&response, args.output);
    }
    // One JSON document per call: what was sent and what came of it.
    if args.output.is_table() {
        readiness::print_precheck(&response, args.output)?;
    }
    let follow = if args.watch {
        Follow::Lines(args.output)
    } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Follow::Terminal
    } else {
        Follow::Quiet
    };
    let counts = wait(
        admin,
        &args.selector,
        response.dispatched,
        args.timeout,
        follow,
    )
    .await?;
    if counts.in_flight_disconnected > 0 {
        eprintln!(
            "{} pre-check(s) wait for agents that are not connected: they run when those \
             agents connect, and readiness shows them then",
            counts.in_flight_disconnected
        );
    }
    let report = client::readiness(admin, &args.selector).await?;
    if args.watch && !args.output.is_table() {
        let document = readiness::report_json(&report)?;
        println!("{}", output::watched_document(&document, args.output)?);
    } else if args.output.is_table() {
        readiness::print_report(&report, args.output)?;
    } else {
        let document = serde_json::json!({
            "precheck": readiness::precheck_json(&response),
            "readiness": readiness::report_json(&report)?,
        });
        print_document(&document, args.output)?;
    }
    if args.fail_on_blocked {
        return readiness::outcome_code(&report);
    }
    Ok(())
}

/// How a wait shows where it is.
#[derive(Debug, Clone, Copy)]
enum Follow {
    /// Nothing (stderr is not a terminal).
    Quiet,
    /// One line on stderr, rewritten in place.
    Terminal,
    /// A line (or document) on stdout each time the counts change.
    Lines(Format),
}

/// Polls the counts until no pre-check of a connected agent is in flight.
async fn wait(
    admin: &mut AdminClient,
    selector: &str,
    sent: u32,
    timeout: Duration,
    follow: Follow,
) -> Result<pb::ReadinessCounts> {
    let started = Instant::now();
    let mut last: Option<pb::ReadinessCounts> = None;
    loop {
        let counts = client::readiness_counts(admin, selector).await?;
        let running = counts
            .in_flight
            .saturating_sub(counts.in_flight_disconnected);
        let progress = Progress {
            sent,
            running,
            elapsed: started.elapsed(),
        };
        match follow {
            Follow::Quiet => {}
            Follow::Terminal => eprint!("\r{}\x1b[K", progress.line(&counts)),
            Follow::Lines(format) if last != Some(counts) => {
                let at = output::timestamp(output::now_unix_ms()).unwrap_or_default();
                if format.is_table() {
                    println!("{at}  {}", progress.line(&counts));
                } else {
                    let document = progress.document(&counts, &at);
                    println!("{}", output::watched_document(&document, format)?);
                }
            }
            Follow::Lines(_) => {}
        }
        last = Some(counts);
        if running == 0 {
            if matches!(follow, Follow::Terminal) {
                eprintln!();
            }
            return Ok(counts);
        }
        if started.elapsed() > timeout {
            if matches!(follow, Follow::Terminal) {
                eprintln!();
            }
            return Err(exit::with_code(
                ExitCode::Timeout,
                format!(
                    "{running} pre-check(s) still running after {}: readiness shows them \
                     when they end (mfctl report readiness)",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where a wait stands: of the pre-checks sent, how many still run.
#[derive(Debug, Clone, Copy)]
struct Progress {
    sent: u32,
    running: u32,
    elapsed: Duration,
}

impl Progress {
    fn done(&self) -> u32 {
        self.sent.saturating_sub(self.running)
    }

    /// The time left at the pace so far; unknown before the first outcome.
    fn eta(&self) -> Option<Duration> {
        let done = self.done();
        if done == 0 || self.running == 0 {
            return None;
        }
        let per_host = self.elapsed / done;
        Some(Duration::from_secs((per_host * self.running).as_secs()))
    }

    fn line(&self, counts: &pb::ReadinessCounts) -> String {
        let eta = match (self.running, self.eta()) {
            (0, _) => String::new(),
            (_, Some(eta)) => format!(", about {} left", humantime::format_duration(eta)),
            (_, None) => ", time left not known yet".into(),
        };
        format!(
            "pre-checks {}/{} done, {} running{eta}; ready {}, blocked {}, error {}",
            self.done(),
            self.sent,
            self.running,
            counts.ready,
            counts.blocked,
            counts.error
        )
    }

    fn document(&self, counts: &pb::ReadinessCounts, at: &str) -> serde_json::Value {
        serde_json::json!({
            "at": at,
            "sent": self.sent,
            "done": self.done(),
            "running": self.running,
            "eta_seconds": self.eta().map(|d| d.as_secs()),
            "ready": counts.ready,
            "blocked": counts.blocked,
            "error": counts.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_how_many_are_done_and_how_long_is_left() {
        let counts = pb::ReadinessCounts {
            ready: 70,
            blocked: 9,
            error: 1,
            ..Default::default()
        };
        let halfway = Progress {
            sent: 160,
            running: 80,
            elapsed: Duration::from_secs(40),
        };
        assert_eq!(halfway.eta(), Some(Duration::from_secs(40)));
        assert_eq!(
            halfway.line(&counts),
            "pre-checks 80/160 done, 80 running, about 40s left; ready 70, blocked 9, error 1"
        );
        let starting = Progress {
            sent: 160,
            running: 160,
            elapsed: Duration::from_secs(3),
        };
        assert_eq!(starting.eta(), None);
        assert!(starting.line(&counts).contains("time left not known yet"));
        let finished = Progress {
            sent: 160,
            running: 0,
            elapsed: Duration::from_secs(90),
        };
        assert_eq!(
            finished.line(&counts),
            "pre-checks 160/160 done, 0 running; ready 70, blocked 9, error 1"
        );
        // Others' pre-checks on the same hosts never make it negative.
        let crowded = Progress {
            sent: 2,
            running: 5,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(crowded.done(), 0);
    }
}
