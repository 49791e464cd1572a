//! `mfctl audit`: who did what, checked. The coordinator chains every entry
//! to the one before it; `verify` recomputes the chain.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use mf_proto::v1 as pb;

use super::Format;
use super::client::{self, AdminClient};
use super::output::{self, print_document, table, timestamp};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every state-changing call and every refusal, oldest first.
    #[command(after_long_help = "Examples:
  mfctl audit list --since 24h
  mfctl audit list --operator alice -o json")]
    List {
        /// Only entries newer than this, e.g. 24h, 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Only this operator's.
        #[arg(long)]
        operator: Option<String>,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Recompute the chain: exits 1 naming the first entry changed, removed
    /// or out of order.
    Verify,
    /// Every entry as a line of JSON, for a SIEM (with the hashes to keep
    /// the chain checkable there).
    Export,
}

fn to_json(e: &pb::AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq, "at": timestamp(e.at_unix_ms), "at_unix_ms": e.at_unix_ms,
        "operator": e.operator, "role": e.role, "verb": e.verb,
        "arguments": e.arguments, "outcome": e.outcome,
        "previous_hash": e.previous_hash, "hash": e.hash,
    })
}

async fn entries(
    admin: &mut AdminClient,
    since: Option<Duration>,
    operator: Option<String>,
) -> Result<Vec<pb::AuditEntry>> {
    let since_unix_ms = since.map_or(0, |d| {
        output::now_unix_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    });
    let stream = admin
        .list_audit(pb::ListAuditRequest {
            since_unix_ms,
            operator: operator.unwrap_or_default(),
        })
        .await
        .map_err(client::refused)?
        .into_inner();
    client::parts(stream).await
}

pub async fn run(admin: &mut AdminClient, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::List {
            since,
            operator,
            output,
        } => {
            let list = entries(admin, since, operator).await?;
            let documents: Vec<_> = list.iter().map(to_json).collect();
            if !print_document(&documents, output)? {
                let width = if output == Format::Wide {
                    usize::MAX
                } else {
                    60
                };
                let cut = |text: &str| text.chars().take(width).collect::<String>();
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|e| {
                        vec![
                            e.seq.to_string(),
                            timestamp(e.at_unix_ms).unwrap_or_default(),
                            format!("{} ({})", e.operator, e.role),
                            e.verb.clone(),
                            cut(&e.outcome),
                            cut(&e.arguments),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &["#", "AT", "OPERATOR", "VERB", "OUTCOME", "ARGUMENTS"],
                        &rows
                    )
                );
            }
            Ok(())
        }
        AuditCommand::Verify => {
            let verdict = admin
                .verify_audit(pb::VerifyAuditRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(client::refused)?;
            if !verdict.problem.is_empty() {
                bail!(
                    "the audit chain is broken ({} entries): {}",
                    verdict.entries,
                    verdict.problem
                );
            }
            println!(
                "the audit chain holds: {} entries, the last one's hash {}",
                verdict.entries, verdict.head_hash
            );
            Ok(())
        }
        AuditCommand::Export => {
            for entry in entries(admin, None, None).await? {
                println!("{}", serde_json::to_string(&to_json(&entry))?);
            }
            Ok(())
        }
    }
}
