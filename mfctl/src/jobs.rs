//! `mfctl migrate` and a job's timeline, as text or JSON.

use std::time::Duration;

use anyhow::{Result, bail};
use mf_proto::v1 as pb;

use super::client::{self, AdminClient};
use super::output::{print_document, timestamp};
use super::readiness::{remediation_text, severity_label};
use super::{Format, OnFailureArg, exit, wire};
use mf_core::path::Target;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The host's id (its FQDN, unless it enrolled with --host-id).
    host: String,
    /// rhel-7.9, rhel-8.10, rhel-9.4, rhel-9.6, rhel-9.8 or rhel-10.0 (which the
    /// host's leapp supports, its pre-check says).
    #[arg(long)]
    target: Target,
    /// When a change fails: roll back to the snapshot, or hold for an operator.
    #[arg(long, value_enum, default_value_t = OnFailureArg::Rollback)]
    on_failure: OnFailureArg,
    /// Wait until the job succeeds, stops or is held, showing its progress.
    #[arg(long)]
    wait: bool,
    /// Output: table, wide (every column, texts whole), json or yaml (one document).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// `mfctl migrate`: starts the job, and with `--wait` follows it to its end;
/// the exit code then says how it ended.
pub async fn migrate(admin: &mut AdminClient, args: MigrateArgs) -> Result<()> {
    let job = admin
        .migrate(pb::MigrateRequest {
            host_id: args.host.clone(),
            target: args.target.to_string(),
            on_failure: wire::on_failure_to_wire(args.on_failure),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(client::refused)?;
    if !args.wait {
        return print_job(&job, args.output);
    }
    let job = wait(admin, &args.host, args.output.is_table()).await?;
    print_job(&job, args.output)?;
    if pb::JobState::try_from(job.state) != Ok(pb::JobState::Succeeded) {
        return Err(exit::with_code(
            exit::for_job_state(job.state),
            format!(
                "the job of {} ended {}: {}",
                args.host,
                wire::job_state(job.state),
                job.detail
            ),
        ));
    }
    Ok(())
}

pub fn is_running(job: &pb::Job) -> bool {
    pb::JobState::try_from(job.state) == Ok(pb::JobState::Running)
}

pub fn to_json(job: &pb::Job) -> serde_json::Value {
    serde_json::json!({
        "id": job.id,
        "host_id": job.host_id,
        "target": job.target,
        "steps": job.steps,
        "step": job.step_index + 1,
        "phase": wire::job_phase(job.phase),
        "state": wire::job_state(job.state),
        "on_failure": wire::on_failure(job.on_failure),
        "detail": job.detail,
        "created": timestamp(job.created_unix_ms),
        "created_unix_ms": job.created_unix_ms,
        "findings": job.findings.iter().map(|f| serde_json::json!({
            "source": wire::finding_source(f.source), "key": f.key, "severity": severity_label(f.severity),
            "blocking": f.blocking, "title": f.title,
            "remediations": f.remediations.iter().map(remediation_text).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "timeline": job.timeline.iter().map(|t| serde_json::json!({"at": timestamp(t.at_unix_ms), "at_unix_ms": t.at_unix_ms, "text": t.text})).collect::<Vec<_>>(),
    })
}

/// The job's lines for `hosts show` and `migrate`. A running job whose host
/// is disconnected is not failed: its outcome is unknown until the host returns.
pub fn lines(job: &pb::Job, connected: bool) -> Vec<(String, String)> {
    let mut lines = vec![
        (
            "Job".into(),
            format!(
                "{} to {} ({} on failure)",
                job.id,
                job.target,
                wire::on_failure(job.on_failure)
            ),
        ),
        (
            "Job state".into(),
            format!(
                "{} at step {} of {} ({}), {}",
                wire::job_state(job.state),
                job.step_index + 1,
                job.steps.len(),
                job.steps
                    .get(job.step_index as usize)
                    .cloned()
                    .unwrap_or_default(),
                wire::job_phase(job.phase)
            ),
        ),
    ];
    if is_running(job) && !connected {
        lines.push((
            "Job outcome".into(),
            format!(
                "unknown: the host is disconnected during {}; the job goes on when it returns",
                wire::job_phase(job.phase)
            ),
        ));
    }
    for f in &job.findings {
        lines.push((
            format!("Job finding{}", if f.blocking { " (blocking)" } else { "" }),
            format!(
                "[{}] {}: {}",
                severity_label(f.severity),
                wire::finding_source(f.source),
                f.title
            ),
        ));
    }
    for entry in &job.timeline {
        lines.push((
            timestamp(entry.at_unix_ms).unwrap_or_default(),
            entry.text.clone(),
        ));
    }
    lines
}

/// "running verify to rhel-8.10", "held in execute to rhel-9.6".
pub fn summary(job: &pb::Job) -> String {
    let state = wire::job_state(job.state);
    let preposition = if is_running(job) { "" } else { " in" };
    format!(
        "{state}{preposition} {} to {}",
        wire::job_phase(job.phase),
        job.target
    )
}

pub fn print_job(job: &pb::Job, format: Format) -> Result<()> {
    if print_document(&to_json(job), format)? {
        return Ok(());
    }
    let lines = lines(job, true);
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        println!("{key:<width$}  {value}");
    }
    Ok(())
}

/// Polls the host until its job is no longer running, printing new timeline
/// entries as they come when `follow` is set.
pub async fn wait(admin: &mut AdminClient, host_id: &str, follow: bool) -> Result<pb::Job> {
    let mut shown = 0;
    loop {
        let host = client::get_host(admin, host_id).await?;
        let Some(job) = host.job else {
            bail!("host {host_id} has no job")
        };
        if follow {
            for entry in job.timeline.iter().skip(shown) {
                println!(
                    "{}  {}",
                    timestamp(entry.at_unix_ms).unwrap_or_default(),
                    entry.text
                );
            }
        }
        shown = job.timeline.len();
        if !is_running(&job) {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
