//! `mfctl backup FILE`: an online, consistent copy of the coordinator's
//! store, written where mfctl runs. The file appears only whole: the stream
//! goes to `FILE.partial`, synced, then renamed; a broken stream leaves no
//! file that could be mistaken for a backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use mf_proto::v1 as pb;

use super::Format;
use super::client::{self, AdminClient};
use super::output::print_document;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup (refused if it exists).
    pub file: PathBuf,
    /// Output: table (a sentence), json or yaml.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

pub async fn run(admin: &mut AdminClient, args: BackupArgs) -> Result<()> {
    if args.file.exists() {
        bail!(
            "{} exists: give a new file name (backups are never overwritten)",
            args.file.display()
        );
    }
    let mut partial = args.file.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = receive(admin, &partial).await;
    let (bytes, trailer) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &args.file)
        .with_context(|| format!("cannot rename {} into place", partial.display()))?;
    let document = serde_json::json!({
        "file": args.file,
        "bytes": bytes,
        "records": trailer["records"],
        "sha256": trailer["sha256"],
    });
    if !print_document(&document, args.output)? {
        println!(
            "backup written to {}: {} records, {bytes} bytes, sha256 {}\n\
             restore it with: mf-coordinator restore --data-dir DIR {}",
            args.file.display(),
            trailer["records"],
            trailer["sha256"].as_str().unwrap_or("?"),
            args.file.display()
        );
    }
    Ok(())
}

/// Writes the stream to `path`, synced; the byte count and the trailer.
async fn receive(admin: &mut AdminClient, path: &Path) -> Result<(u64, serde_json::Value)> {
    let mut stream = admin
        .backup(pb::BackupRequest {})
        .await
        .map_err(client::refused)?
        .into_inner();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut bytes = 0u64;
    let mut last = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(client::refused)? {
        file.write_all(&chunk.data)
            .with_context(|| format!("cannot write {}", path.display()))?;
        bytes += chunk.data.len() as u64;
        last = chunk.data;
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    // The trailer is the last line; the coordinator's restore checks it whole.
    let text = String::from_utf8_lossy(&last);
    let trailer: serde_json::Value = text
        .trim_end()
        .rsplit('\n')
        .next()
        .and_then(|line| serde_json::from_str(line).ok())
        .filter(|t: &serde_json::Value| t.get("sha256").is_some())
        .context("the coordinator's answer ended without the backup's trailer")?;
    Ok((bytes, trailer))
}
