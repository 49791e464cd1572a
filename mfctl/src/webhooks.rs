//! `mfctl webhook`: where the coordinator sends its events (admins). Each
//! event is a CloudEvent signed with the webhook's secret, which `add` shows
//! once.

use anyhow::Result;
use clap::Subcommand;
use mf_proto::v1 as pb;

use super::Format;
use super::client::{self, AdminClient};
use super::output::{print_document, table, timestamp};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Deliver events to URL from now on; prints its id and secret (shown
    /// once: the receiver checks each event's signature with it).
    #[command(after_long_help = "Examples:
  mfctl webhook add https://automation.example.com/hooks/mf
  mfctl webhook add https://portal.example.com/mf --event dev.migration-factory.job.state-changed

Event types: dev.migration-factory.precheck.finished, .job.state-changed,
.wave.halted, .wave.completed, .host.enrolled, .host.lost (all by default).")]
    Add {
        /// http:// or https:// (checked against the system's CAs).
        url: String,
        /// Only these event types (repeat the flag); all when not given.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Output: table, wide, json or yaml.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// The webhooks, with how many events each has not taken yet.
    List {
        /// Output: table, wide, json or yaml.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Stop delivering to a webhook (its undelivered events are dropped).
    Remove {
        /// Its id (wh-...).
        id: String,
    },
}

fn to_json(w: &pb::Webhook) -> serde_json::Value {
    let mut document = serde_json::json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "created": timestamp(w.created_unix_ms),
        "created_by": w.created_by,
        "pending_events": w.pending_events,
    });
    if !w.secret.is_empty() {
        document["secret"] = w.secret.clone().into();
    }
    document
}

pub async fn run(admin: &mut AdminClient, command: WebhookCommand) -> Result<()> {
    match command {
        WebhookCommand::Add {
            url,
            events,
            output,
        } => {
            let added = admin
                .add_webhook(pb::AddWebhookRequest { url, events })
                .await
                .map_err(client::refused)?
                .into_inner();
            if !print_document(&to_json(&added), output)? {
                println!("webhook {} delivers to {}", added.id, added.url);
                println!("secret (shown once): {}", added.secret);
            }
        }
        WebhookCommand::List { output } => {
            let list = admin
                .list_webhooks(pb::ListWebhooksRequest {})
                .await
                .map_err(client::refused)?
                .into_inner()
                .webhooks;
            let documents: Vec<_> = list.iter().map(to_json).collect();
            if !print_document(&documents, output)? {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.clone(),
                            w.url.clone(),
                            if w.events.is_empty() {
                                "all".into()
                            } else {
                                w.events.join(",")
                            },
                            w.pending_events.to_string(),
                        ]
                    })
                    .collect();
                println!("{}", table(&["ID", "URL", "EVENTS", "PENDING"], &rows));
            }
        }
        WebhookCommand::Remove { id } => {
            let removed = admin
                .remove_webhook(pb::WebhookRef { id })
                .await
                .map_err(client::refused)?
                .into_inner();
            println!("webhook {} removed ({})", removed.id, removed.url);
        }
    }
    Ok(())
}
