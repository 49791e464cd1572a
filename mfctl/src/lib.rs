//! mfctl, the operators' CLI. Every command except `pki init` goes through the
//! coordinator's admin API: mfctl never opens the coordinator's store.

pub mod client;
pub mod docs;
pub mod exit;
pub mod hosts;
pub mod jobs;
pub mod output;
pub mod readiness;
pub mod waves;
pub mod wire;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use client::ConnectArgs;
use mf_pki::{PkiFiles, PkiPaths};
use mf_proto::v1 as pb;

#[derive(Debug, Parser)]
#[command(
    name = "mfctl",
    version,
    about = "Migration Factory operators' CLI",
    after_help = exit::TABLE
)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the shell completion script for bash, zsh or fish, e.g.
    /// `source <(mfctl completion bash)`. The package installs all three.
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Write the man pages of mfctl and of each of its commands into DIR.
    #[command(hide = true)]
    Man {
        /// Where to write them (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Create the CA, the coordinator's certificate and an operator certificate.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Bootstrap tokens for enrolling agents.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The inventory.
    Hosts {
        #[command(subcommand)]
        command: HostsCommand,
    },
    /// Run the non-destructive pre-check of the next migration step on the
    /// selected hosts (convert2rhel analyze or leapp preupgrade).
    Precheck {
        /// Which hosts: a Kubernetes label selector over labels and os, version, arch,
        /// connected (e.g. app=billing,os=rhel); empty: every host.
        #[arg(short = 'l', long, default_value = "")]
        selector: String,
        /// rhel-7.9, rhel-8.10, rhel-9.4, rhel-9.6, rhel-9.8 or rhel-10.0 (which the
        /// host's leapp supports, its pre-check says).
        #[arg(long)]
        target: String,
        /// Wait until every dispatched pre-check has an outcome, then print the readiness.
        #[arg(long)]
        wait: bool,
        /// With --wait: exit 10 if a selected host is blocked, 11 if one ended in error.
        #[arg(long, requires = "wait")]
        fail_on_blocked: bool,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Migrate one host to a target: every step pre-check, snapshot, execute,
    /// reboot, verify, commit; on failure roll back (default) or hold.
    Migrate(jobs::MigrateArgs),
    /// Waves: many hosts migrated in stages under budgets, windows and error
    /// budgets, resumable and explained.
    Wave {
        #[command(subcommand)]
        command: waves::WaveCommand,
    },
    /// Reports over the fleet.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Hosts ready, blocked, in error or unknown after their latest pre-check,
    /// and the findings aggregated by key across the fleet.
    Readiness {
        /// Which hosts: a Kubernetes label selector over labels and os, version, arch,
        /// connected (e.g. app=billing,os=rhel); empty: every host.
        #[arg(short = 'l', long, default_value = "")]
        selector: String,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Write a new CA, the coordinator's certificate and an operator certificate
    /// into DIR (refused if DIR already holds a CA).
    Init {
        /// Directory to write (created if missing): ca.pem, ca-key.pem,
        /// coordinator.pem, coordinator-key.pem, operator.pem, operator-key.pem.
        #[arg(long)]
        dir: PathBuf,
        /// Hand the directory, the CA and the coordinator's certificate and
        /// key to this user (USER or UID:GID), e.g. mf-coordinator, the user
        /// the packaged coordinator runs as. The operator's stay yours.
        #[arg(long)]
        owner: Option<String>,
        /// DNS name or IP address of the coordinator, repeatable.
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
        /// Name in the operator certificate.
        #[arg(long, default_value = "admin")]
        operator: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token for `mf-agent enroll`; it is shown once.
    Create {
        /// Only this host id may enroll with the token (and may re-enroll).
        #[arg(long)]
        host_id: Option<String>,
        /// How long the token stays valid, e.g. 24h, 30m (at most 30 days).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How many hosts may enroll with it (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        uses: u32,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// The enrolled hosts: OS, labels, connection, readiness and job.
    List {
        /// Kubernetes label-selector syntax over labels and os, version, arch, connected.
        #[arg(short = 'l', long, default_value = "")]
        selector: String,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// One host in full: facts, its latest pre-check with findings, its job's timeline.
    Show {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Forget a decommissioned host: its record, pre-check and finished job.
    /// Its agent's certificate is refused from then on; enrolling it again
    /// (with a token) brings it back. Refused while its job runs or is held,
    /// or while an unfinished wave includes it.
    Delete {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Roll back a held job to its snapshot.
    Rollback {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run the current phase of a held job again.
    Retry {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table (for people) or json (one document, for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailureArg {
    Rollback,
    Hold,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Completion { shell } => {
            docs::completion(shell, &mut std::io::stdout()).context("cannot write the completion")
        }
        Command::Man { dir } => {
            let written = docs::man_pages(&dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            println!("wrote {written} man pages into {}", dir.display());
            Ok(())
        }
        Command::Pki {
            command:
                PkiCommand::Init {
                    dir,
                    names,
                    operator,
                    owner,
                },
        } => {
            let owner = owner
                .as_deref()
                .map(mf_pki::Owner::lookup)
                .transpose()
                .context("--owner")?;
            let files = PkiFiles::init(&PkiPaths::new(&dir), &names, &operator, owner)
                .with_context(|| format!("cannot create the PKI in {}", dir.display()))?;
            for path in files.written {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    host_id,
                    ttl,
                    uses,
                    output,
                },
        } => {
            let mut admin = cli.connect.admin().await?;
            let token = client::create_token(&mut admin, host_id, ttl, uses).await?;
            output::print_token(&token, output)
        }
        Command::Hosts { command } => {
            let mut admin = cli.connect.admin().await?;
            match command {
                HostsCommand::List { selector, output } => {
                    let hosts = client::list_hosts(&mut admin, &selector).await?;
                    hosts::print_list(&hosts, output)
                }
                HostsCommand::Show { host, output } => {
                    let host = client::get_host(&mut admin, &host).await?;
                    hosts::print_one(&host, output)
                }
                HostsCommand::Delete { host, output } => {
                    let deleted = client::delete_host(&mut admin, &host).await?;
                    if output == Format::Json {
                        hosts::print_one(&deleted, output)
                    } else {
                        println!(
                            "deleted host {host}: its agent's certificate is refused from now on; \
                             enroll it again with a token to bring it back"
                        );
                        Ok(())
                    }
                }
                HostsCommand::Rollback { host, output } => {
                    let job =
                        client::job_action(&mut admin, &host, pb::JobAction::Rollback).await?;
                    jobs::print_job(&job, output)
                }
                HostsCommand::Retry { host, output } => {
                    let job = client::job_action(&mut admin, &host, pb::JobAction::Retry).await?;
                    jobs::print_job(&job, output)
                }
            }
        }
        Command::Precheck {
            selector,
            target,
            wait,
            fail_on_blocked,
            output,
        } => {
            let mut admin = cli.connect.admin().await?;
            let response = client::precheck(&mut admin, &selector, &target).await?;
            if !wait {
                return readiness::print_precheck(&response, output);
            }
            // One JSON document per call: what was dispatched and what came of it.
            if output == Format::Table {
                readiness::print_precheck(&response, output)?;
            }
            let report = readiness::wait_for_outcomes(
                &mut admin,
                &selector,
                std::time::Duration::from_secs(3600),
            )
            .await?;
            if output == Format::Json {
                let document = serde_json::json!({
                    "precheck": readiness::precheck_json(&response),
                    "readiness": readiness::report_json(&report)?,
                });
                println!("{}", serde_json::to_string_pretty(&document)?);
            } else {
                readiness::print_report(&report, output)?;
            }
            if fail_on_blocked {
                return readiness::outcome_code(&report);
            }
            Ok(())
        }
        Command::Migrate(args) => jobs::migrate(&mut cli.connect.admin().await?, args).await,
        Command::Report {
            command: ReportCommand::Readiness { selector, output },
        } => {
            let mut admin = cli.connect.admin().await?;
            let report = client::readiness(&mut admin, &selector).await?;
            readiness::print_report(&report, output)
        }
        Command::Wave { command } => {
            let mut admin = cli.connect.admin().await?;
            waves::run(&mut admin, command).await
        }
    }
}

/// Logs to stderr at `default_level` unless RUST_LOG says otherwise.
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

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every command and every argument of `cmd` and below without a line of help.
    fn missing_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let here = format!("{path} {}", cmd.get_name()).trim().to_string();
        if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
            out.push(here.clone());
        }
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("{here} <{}>", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                missing_help(sub, &here, out);
            }
        }
    }

    #[test]
    fn every_command_and_flag_has_a_line_of_help() {
        let mut missing = Vec::new();
        missing_help(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help for:\n{}", missing.join("\n"));
    }
}
