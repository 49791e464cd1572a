//! mfctl, the operators' CLI. Every command except `pki init` goes through the
//! coordinator's admin API: mfctl never opens the coordinator's store.

pub mod audit;
pub mod backup;
pub mod client;
pub mod docs;
pub mod examples;
pub mod exit;
pub mod hosts;
pub mod jobs;
pub mod operators;
pub mod output;
pub mod precheck;
pub mod readiness;
pub mod waves;
pub mod webhooks;
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

/// How a command prints what it answers, as kubectl's `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Columns for people; long texts cut to fit.
    Table,
    /// The table with more columns and every text whole.
    Wide,
    /// One JSON document (with --watch: one per line, per change).
    Json,
    /// The JSON document as YAML (with --watch: `---` between documents).
    Yaml,
}

impl Format {
    /// For people: a table (or its wide form), not a document.
    pub fn is_table(self) -> bool {
        matches!(self, Format::Table | Format::Wide)
    }
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
    /// Copy the coordinator's whole store into FILE while it runs (admins);
    /// `mf-coordinator restore` puts it back.
    #[command(after_long_help = "Examples:
  mfctl backup /srv/backups/mf-$(date +%F).jsonl
  mf-coordinator restore --check /srv/backups/mf-2026-11-29.jsonl")]
    Backup(backup::BackupArgs),
    /// Where the coordinator sends its events: signed CloudEvents (admins).
    Webhook {
        #[command(subcommand)]
        command: webhooks::WebhookCommand,
    },
    /// Who did what: the audit chain of every change and refusal.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Operators as people: their keys, roles and scopes.
    Operator {
        #[command(subcommand)]
        command: operators::OperatorCommand,
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
    #[command(after_long_help = examples::PRECHECK)]
    Precheck(precheck::PrecheckArgs),
    /// Migrate one host to a target: every step pre-check, snapshot, execute,
    /// reboot, verify, commit; on failure roll back (default) or hold.
    #[command(after_long_help = examples::MIGRATE)]
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
    #[command(after_long_help = examples::READINESS)]
    Readiness {
        /// Which hosts: a Kubernetes label selector over labels and os, version, arch,
        /// connected (e.g. app=billing,os=rhel); empty: every host.
        #[arg(short = 'l', long, default_value = "")]
        selector: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Write a new CA, the coordinator's certificate and an operator certificate
    /// into DIR (refused if DIR already holds a CA).
    #[command(after_long_help = examples::PKI_INIT)]
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
        /// Output: table (the files written), wide, json or yaml.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token for `mf-agent enroll`; it is shown once.
    #[command(after_long_help = examples::TOKEN_CREATE)]
    Create {
        /// Only this host id may enroll with the token (and may re-enroll).
        #[arg(long)]
        host_id: Option<String>,
        /// How long the token stays valid, e.g. 24h, 30m (at most the site's
        /// token_max_ttl, 30 days by default).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How many hosts may enroll with it (at least 1, at most the site's
        /// token_max_uses, 10000 by default).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        uses: u32,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// The tokens, by id (never the token itself): host, expiry, uses left.
    List {
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete a token: no enrollment with it from now on.
    Revoke {
        /// At least 8 hex digits of its id (mfctl token list).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// The enrolled hosts: OS, labels, connection (-o wide: readiness, job, peer).
    #[command(after_long_help = examples::HOSTS_LIST)]
    List {
        /// Kubernetes label-selector syntax over labels and os, version, arch, connected.
        #[arg(short = 'l', long, default_value = "")]
        selector: String,
        /// Keep watching: print the list again each time a host connects,
        /// changes OS, readiness or job (Ctrl-C ends it).
        #[arg(short = 'w', long)]
        watch: bool,
        /// With --watch: how often to look, e.g. 2s.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "watch")]
        interval: std::time::Duration,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// One host in full: facts, its latest pre-check with findings, its job's timeline.
    Show {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
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
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke the host's certificate (a decommissioned or compromised
    /// machine): its agent is refused from its next connection and its open
    /// session ends now. The record stays, marked revoked; enrolling the host
    /// again with a token created for it brings it back.
    Revoke {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Pin labels on a host (KEY=VALUE), or remove pinned ones (KEY-): a
    /// pinned label wins over the agent's, and operators' scopes see only
    /// pinned labels.
    #[command(after_long_help = "Examples:
  mfctl hosts label web-01.example.com app=billing env=prod
  mfctl hosts label web-01.example.com env-")]
    Label {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// KEY=VALUE to pin, KEY- to remove.
        #[arg(required = true)]
        labels: Vec<String>,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Roll back a held job to its snapshot.
    Rollback {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run the current phase of a held job again.
    Retry {
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
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
                    output,
                },
        } => {
            let owner = owner
                .as_deref()
                .map(mf_pki::Owner::lookup)
                .transpose()
                .context("--owner")?;
            let files = PkiFiles::init(&PkiPaths::new(&dir), &names, &operator, owner)
                .with_context(|| format!("cannot create the PKI in {}", dir.display()))?;
            let document = serde_json::json!({
                "dir": dir,
                "names": names,
                "operator": operator,
                "written": files.written,
            });
            if !output::print_document(&document, output)? {
                for path in files.written {
                    println!("wrote {}", path.display());
                }
            }
            Ok(())
        }
        Command::Audit { command } => audit::run(&mut cli.connect.admin().await?, command).await,
        Command::Webhook { command } => {
            webhooks::run(&mut cli.connect.admin().await?, command).await
        }
        Command::Backup(args) => backup::run(&mut cli.connect.admin().await?, args).await,
        Command::Operator { command } => operators::run(&cli.connect, command).await,
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
        Command::Token {
            command: TokenCommand::List { output },
        } => {
            let mut admin = cli.connect.admin().await?;
            let stream = admin
                .list_tokens(pb::ListTokensRequest {})
                .await
                .map_err(client::refused)?
                .into_inner();
            let tokens = client::parts(stream).await?;
            output::print_tokens(&tokens, output)
        }
        Command::Token {
            command: TokenCommand::Revoke { id },
        } => {
            let mut admin = cli.connect.admin().await?;
            let revoked = admin
                .revoke_token(pb::TokenRef { id })
                .await
                .map(tonic::Response::into_inner)
                .map_err(client::refused)?;
            println!(
                "revoked token {} ({} of {} uses left): no enrollment with it from now on",
                revoked.id, revoked.uses_left, revoked.uses
            );
            Ok(())
        }
        Command::Hosts { command } => {
            let mut admin = cli.connect.admin().await?;
            match command {
                HostsCommand::List {
                    selector,
                    watch: true,
                    interval,
                    output,
                } => hosts::watch(&mut admin, &selector, interval, output).await,
                HostsCommand::List {
                    selector, output, ..
                } => {
                    let hosts = client::list_hosts(&mut admin, &selector).await?;
                    hosts::print_list(&hosts, output)
                }
                HostsCommand::Show { host, output } => {
                    let host = client::get_host(&mut admin, &host).await?;
                    hosts::print_one(&host, output)
                }
                HostsCommand::Delete { host, output } => {
                    let deleted = client::delete_host(&mut admin, &host).await?;
                    if !output.is_table() {
                        hosts::print_one(&deleted, output)
                    } else {
                        println!(
                            "deleted host {host}: its agent's certificate is refused from now on; \
                             enroll it again with a token to bring it back"
                        );
                        Ok(())
                    }
                }
                HostsCommand::Revoke { host, output } => {
                    let revoked = client::revoke_host(&mut admin, &host).await?;
                    if !output.is_table() {
                        return hosts::print_one(&revoked, output);
                    }
                    println!(
                        "revoked the certificate of host {host}: its agent is refused from now \
                         on and its session has ended; to bring it back, enroll it again with \
                         a token created for it (mfctl token create --host-id {host})"
                    );
                    Ok(())
                }
                HostsCommand::Label {
                    host,
                    labels,
                    output,
                } => {
                    let mut request = pb::LabelHostRequest {
                        host_id: host,
                        ..Default::default()
                    };
                    for label in labels {
                        match (label.split_once('='), label.strip_suffix('-')) {
                            (Some((key, value)), _) => {
                                request.set.insert(key.to_string(), value.to_string());
                            }
                            (None, Some(key)) => request.remove.push(key.to_string()),
                            (None, None) => {
                                return Err(exit::with_code(
                                    exit::ExitCode::Usage,
                                    format!(
                                        "{label:?}: write KEY=VALUE to pin a label, KEY- to remove one"
                                    ),
                                ));
                            }
                        }
                    }
                    let labelled = admin
                        .label_host(request)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(client::refused)?;
                    hosts::print_one(&labelled, output)
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
        Command::Precheck(args) => precheck::run(&mut cli.connect.admin().await?, args).await,
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
    use clap::{CommandFactory, Parser};

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

    /// The words of an example line as a shell would pass them (single
    /// quotes, a trailing comment and a pipe are all the examples use).
    fn words(line: &str) -> Vec<String> {
        let line = line.split(" | ").next().unwrap_or_default();
        let line = line.split("  #").next().unwrap_or_default();
        let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '\'' => quoted = !quoted,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        words
    }

    #[test]
    fn the_big_commands_show_examples_that_parse() {
        let root = super::Cli::command();
        for (path, text) in crate::examples::ALL {
            let mut command = root.clone();
            for name in path.split(' ') {
                command = command
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no command {path}"))
                    .clone();
            }
            let long = command.get_after_long_help().map(|h| h.to_string());
            assert_eq!(
                long.as_deref(),
                Some(text),
                "{path}: examples not in its --help"
            );
            let joined = text.replace("\\\n", " ");
            let examples: Vec<&str> = joined.lines().skip(1).map(str::trim).collect();
            assert!(!examples.is_empty(), "{path}");
            for example in examples {
                let words = words(example);
                assert!(example.starts_with(&format!("mfctl {path}")), "{example}");
                if let Err(e) = super::Cli::try_parse_from(&words) {
                    panic!("{example}\n{words:?}\n{e}");
                }
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
