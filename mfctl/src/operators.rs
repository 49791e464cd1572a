//! `mfctl operator`: operators as people. Each makes their own key
//! (`request`), an admin signs it with a role and an optional scope (`add`),
//! and roles and scopes change in the coordinator's store without a new
//! certificate (`set`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use mf_proto::v1 as pb;

use super::Format;
use super::client::{self, AdminClient};
use super::output::{print_document, table, timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads the inventory, readiness, waves and jobs.
    Viewer,
    /// Also pre-checks, migrates, runs waves, decides held jobs.
    Operator,
    /// Also tokens, operators, labels, deleting and revoking hosts.
    Admin,
}

impl RoleArg {
    fn to_wire(self) -> i32 {
        match self {
            RoleArg::Viewer => pb::Role::Viewer,
            RoleArg::Operator => pb::Role::Operator,
            RoleArg::Admin => pb::Role::Admin,
        }
        .into()
    }
}

fn role_label(value: i32) -> &'static str {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Viewer) => "viewer",
        Ok(pb::Role::Operator) => "operator",
        Ok(pb::Role::Admin) => "admin",
        _ => "unknown",
    }
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Make your own key and a certificate request for an admin to sign
    /// (writes DIR/operator-key.pem, mode 0600, and DIR/NAME.csr). Local only.
    #[command(after_long_help = "Examples:
  mfctl operator request --name alice --dir ~/.mf     # then send ~/.mf/alice.csr to an admin")]
    Request {
        /// Your operator name (letters, digits, - _ . @).
        #[arg(long)]
        name: String,
        /// Where to write the key and the request; later your --pki-dir.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Sign an operator's request with a role and an optional scope.
    #[command(after_long_help = "Examples:
  mfctl operator add alice --role operator --scope app=billing --csr alice.csr --out alice.pem
  mfctl operator add bob --role viewer --csr bob.csr --out bob.pem")]
    Add {
        /// The operator's name, as in the request.
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Hosts this operator sees and acts on: a label selector over the
        /// labels pinned with `mfctl hosts label` (empty: the whole fleet).
        #[arg(long, default_value = "")]
        scope: String,
        /// The request the operator made (`mfctl operator request`).
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the signed certificate (give it to the operator as
        /// operator.pem in their --pki-dir, with ca.pem).
        #[arg(long)]
        out: PathBuf,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Every operator, with role, scope and state.
    List {
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Change an operator's role or scope (no new certificate needed).
    Set {
        /// The operator's name.
        name: String,
        /// The new role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// The new scope, a label selector over pinned labels.
        #[arg(long, conflicts_with = "whole_fleet")]
        scope: Option<String>,
        /// Remove the scope: the whole fleet.
        #[arg(long)]
        whole_fleet: bool,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke an operator: every certificate of theirs is refused from the
    /// next connection, and their calls from now.
    Revoke {
        /// The operator's name.
        name: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Renew your own certificate: a new key made here, signed for you by
    /// the coordinator; both replace the files mfctl uses (--pki-dir or
    /// --cert/--key). mfctl warns a month before the certificate expires.
    Renew,
    /// Who the coordinator takes you for: name, role, scope.
    Whoami {
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

fn to_json(operator: &pb::Operator) -> serde_json::Value {
    serde_json::json!({
        "name": operator.name,
        "role": role_label(operator.role),
        "scope": (!operator.scope.is_empty()).then_some(&operator.scope),
        "created": timestamp(operator.created_unix_ms),
        "created_by": (!operator.created_by.is_empty()).then_some(&operator.created_by),
        "revoked": timestamp(operator.revoked_unix_ms),
        "certificate_expires": timestamp(operator.certificate_not_after_unix_ms),
    })
}

fn print_one(operator: &pb::Operator, format: Format) -> Result<()> {
    if !print_document(&to_json(operator), format)? {
        println!(
            "{} ({}){}{}",
            operator.name,
            role_label(operator.role),
            if operator.scope.is_empty() {
                ", the whole fleet".to_string()
            } else {
                format!(", scoped to {}", operator.scope)
            },
            match timestamp(operator.revoked_unix_ms) {
                Some(at) => format!(", revoked at {at}"),
                None => String::new(),
            }
        );
    }
    Ok(())
}

/// `mfctl operator renew`: a new key here, the certificate from the
/// coordinator, both written where mfctl reads them.
pub async fn renew(connect: &client::ConnectArgs) -> Result<()> {
    let (cert_path, key_path) = connect.operator_files()?;
    let mut admin = connect.admin().await?;
    let (key_pem, csr_der) =
        mf_pki::key_and_request("operator").context("cannot make a new key")?;
    let renewed = admin
        .renew_operator(pb::RenewOperatorRequest { csr_der })
        .await
        .map(tonic::Response::into_inner)
        .map_err(client::refused)?;
    mf_pki::replace_key_and_cert(&key_path, &key_pem, &cert_path, &renewed.certificate_pem)
        .context("cannot write the renewed key and certificate")?;
    println!(
        "renewed the certificate of operator {} until {}: wrote {} and {}",
        renewed.name,
        timestamp(renewed.certificate_not_after_unix_ms).unwrap_or_default(),
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

/// `mfctl operator request`: needs no coordinator.
pub fn request(name: &str, dir: &std::path::Path) -> Result<()> {
    let written = mf_pki::OperatorRequest::create(dir, name)
        .with_context(|| format!("cannot write the key and request into {}", dir.display()))?;
    println!("wrote {} (your key: it stays here)", written.key.display());
    println!(
        "wrote {} (give it to an admin: mfctl operator add {name} --role ... --csr {})",
        written.csr.display(),
        written.csr.display()
    );
    Ok(())
}

pub async fn run(connect: &client::ConnectArgs, command: OperatorCommand) -> Result<()> {
    match command {
        OperatorCommand::Request { name, dir } => request(&name, &dir),
        OperatorCommand::Renew => renew(connect).await,
        command => talk(&mut connect.admin().await?, command).await,
    }
}

async fn talk(admin: &mut AdminClient, command: OperatorCommand) -> Result<()> {
    match command {
        OperatorCommand::Request { .. } | OperatorCommand::Renew => {
            anyhow::bail!("handled by run")
        }
        OperatorCommand::Add {
            name,
            role,
            scope,
            csr,
            out,
            output,
        } => {
            let pem = std::fs::read_to_string(&csr)
                .with_context(|| format!("cannot read {}", csr.display()))?;
            let csr_der = mf_pki::csr_der(&pem).with_context(|| csr.display().to_string())?;
            let added = admin
                .add_operator(pb::AddOperatorRequest {
                    name,
                    role: role.to_wire(),
                    scope,
                    csr_der,
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(client::refused)?;
            std::fs::write(&out, &added.certificate_pem)
                .with_context(|| format!("cannot write {}", out.display()))?;
            if output.is_table() {
                println!("wrote {}", out.display());
            }
            print_one(&added, output)
        }
        OperatorCommand::List { output } => {
            let list = client::list_operators(admin).await?;
            let documents: Vec<_> = list.iter().map(to_json).collect();
            if !print_document(&documents, output)? {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|o| {
                        vec![
                            o.name.clone(),
                            role_label(o.role).into(),
                            if o.scope.is_empty() {
                                "(whole fleet)".into()
                            } else {
                                o.scope.clone()
                            },
                            o.created_by.clone(),
                            timestamp(o.revoked_unix_ms).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["NAME", "ROLE", "SCOPE", "ADDED BY", "REVOKED"], &rows)
                );
            }
            Ok(())
        }
        OperatorCommand::Set {
            name,
            role,
            scope,
            whole_fleet,
            output,
        } => {
            let changed = admin
                .update_operator(pb::UpdateOperatorRequest {
                    name,
                    role: role.map_or(0, RoleArg::to_wire),
                    set_scope: scope.is_some() || whole_fleet,
                    scope: scope.unwrap_or_default(),
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(client::refused)?;
            print_one(&changed, output)
        }
        OperatorCommand::Revoke { name, output } => {
            let revoked = admin
                .revoke_operator(pb::OperatorRef { name })
                .await
                .map(tonic::Response::into_inner)
                .map_err(client::refused)?;
            print_one(&revoked, output)
        }
        OperatorCommand::Whoami { output } => {
            let me = admin
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(client::refused)?;
            print_one(&me, output)
        }
    }
}
