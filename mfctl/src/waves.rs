//! `mfctl wave`: create, plan, start, pause, resume, approve, cancel, status
//! [--watch], list, why, retry, skip; as text or JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use mf_proto::v1 as pb;

use super::client::{self, AdminClient, refused};
use super::output::{count, print_document, table, timestamp, watched_document};
use super::{Format, OnFailureArg, wire};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The wave's name.
    pub name: String,
    /// Hosts of the wave: Kubernetes label-selector syntax over labels and facts.
    #[arg(short = 'l', long)]
    pub selector: String,
    /// rhel-7.9, rhel-8.10, rhel-9.4, rhel-9.6, rhel-9.8 or rhel-10.0.
    #[arg(long)]
    pub target: String,
    /// Hosts in the canary stage [default: 1].
    #[arg(long, conflicts_with = "canary_selector")]
    pub canary: Option<u32>,
    /// The canary stage is the selected hosts of the wave.
    #[arg(long)]
    pub canary_selector: Option<String>,
    /// Sizes of the stages after the canary; the last repeats [default: 1,5%,25%,100%].
    #[arg(long)]
    pub batches: Option<String>,
    /// Hosts in flight at once, over the whole wave [default: 50].
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// At most LIMIT hosts sharing a value of LABEL disrupted at once, e.g.
    /// app=1, hypervisor=2, dc=10% (repeatable).
    #[arg(long = "budget")]
    pub budgets: Vec<String>,
    /// Failures allowed in one stage before the wave halts [default: 10%].
    #[arg(long)]
    pub stage_errors: Option<String>,
    /// Failures allowed in the whole wave before it halts [default: 5%].
    #[arg(long)]
    pub total_errors: Option<String>,
    /// Hosts start only inside these windows, e.g. "sat 22:00-sun 06:00
    /// Europe/Paris" or "22:00-06:00 UTC" (daily) (repeatable).
    #[arg(long = "window")]
    pub windows: Vec<String>,
    /// No host starts or runs in these periods, e.g. "2026-12-20..2027-01-04
    /// Europe/Paris" (repeatable).
    #[arg(long = "freeze")]
    pub freezes: Vec<String>,
    /// Wait this long after a stage ends before the next begins, e.g. 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Each stage after the canary waits for `mfctl wave approve`.
    #[arg(long)]
    pub approve_stages: bool,
    /// When a change fails: roll back to the snapshot, or hold for an operator.
    #[arg(long, value_enum, default_value_t = OnFailureArg::Rollback)]
    pub on_failure: OnFailureArg,
    /// Expected duration of a migration path with no measured job yet [default: 2h].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expected: Option<Duration>,
    /// Only show the plan: nothing is recorded.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum WaveCommand {
    /// Plan and record a wave (nothing starts until `wave start`); with
    /// --dry-run, only show the plan.
    #[command(after_long_help = crate::examples::WAVE_CREATE)]
    Create {
        #[command(flatten)]
        args: Box<CreateArgs>,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// The stages with their hosts, the hosts left out and why, the ETA.
    Plan {
        /// The wave's name.
        name: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Start a created wave.
    Start(NameArgs),
    /// Start no more hosts until `resume` (hosts in flight go on).
    Pause(NameArgs),
    /// Go on after a pause or an error-budget halt.
    Resume(NameArgs),
    /// Let the next stage begin.
    Approve(NameArgs),
    /// Start no more hosts; hosts in flight finish.
    Cancel {
        /// The wave's name.
        name: String,
        /// Also roll back held hosts, and hosts in flight that end held.
        #[arg(long)]
        rollback: bool,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Progress: hosts per state, stages, budgets, problems, ETA.
    Status {
        /// The wave's name.
        name: String,
        /// Refresh every few seconds until the wave is over.
        #[arg(long)]
        watch: bool,
        /// How often --watch asks, e.g. 2s.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Every wave with its state, stage, hosts per state and ETA.
    List {
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a wave that is over (completed, or cancelled with nothing in
    /// flight); prints its last status.
    Delete(NameArgs),
    /// Why a host of the wave is where it is.
    Why {
        /// The wave's name.
        name: String,
        /// The host's id (its FQDN, unless it enrolled with --host-id).
        host: String,
        /// Output: table, wide (every column, texts whole), json or yaml (one document).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run a host that ended without success again (a held job from where it stopped).
    Retry(HostArgs),
    /// Take a host that has not started out of the wave.
    Skip(HostArgs),
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The wave's name.
    pub name: String,
    /// Output: table, wide (every column, texts whole), json or yaml (one document).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// The wave's name.
    pub name: String,
    /// The host's id (its FQDN, unless it enrolled with --host-id).
    pub host: String,
    /// Output: table, wide (every column, texts whole), json or yaml (one document).
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

pub fn spec(args: &CreateArgs) -> pb::WaveSpec {
    pb::WaveSpec {
        name: args.name.clone(),
        selector: args.selector.clone(),
        target: args.target.clone(),
        canary: args.canary.map(|c| c.to_string()).unwrap_or_default(),
        canary_selector: args.canary_selector.clone().unwrap_or_default(),
        batches: args.batches.clone().unwrap_or_default(),
        max_parallel: args.max_parallel.unwrap_or(0),
        budgets: args.budgets.clone(),
        stage_errors: args.stage_errors.clone().unwrap_or_default(),
        total_errors: args.total_errors.clone().unwrap_or_default(),
        windows: args.windows.clone(),
        freezes: args.freezes.clone(),
        soak_seconds: args.soak.map_or(0, |d| d.as_secs()),
        approve_stages: args.approve_stages,
        on_failure: wire::on_failure_to_wire(args.on_failure),
        expected_seconds: args.expected.map_or(0, |d| d.as_secs()),
        dry_run: args.dry_run,
    }
}

pub async fn run(admin: &mut AdminClient, command: WaveCommand) -> Result<()> {
    let wave_ref = |name: &str| pb::WaveRef {
        name: name.to_string(),
    };
    match command {
        WaveCommand::Create { args, output } => {
            let plan = client::create_wave(admin, spec(&args)).await?;
            print_plan(&plan, output)
        }
        WaveCommand::Plan { name, output } => {
            let plan = client::plan_wave(admin, &name).await?;
            print_plan(&plan, output)
        }
        WaveCommand::Start(a) => {
            action(admin, &a.name, pb::WaveAction::Start, false, a.output).await
        }
        WaveCommand::Pause(a) => {
            action(admin, &a.name, pb::WaveAction::Pause, false, a.output).await
        }
        WaveCommand::Resume(a) => {
            action(admin, &a.name, pb::WaveAction::Resume, false, a.output).await
        }
        WaveCommand::Approve(a) => {
            action(admin, &a.name, pb::WaveAction::Approve, false, a.output).await
        }
        WaveCommand::Cancel {
            name,
            rollback,
            output,
        } => action(admin, &name, pb::WaveAction::Cancel, rollback, output).await,
        WaveCommand::Status {
            name,
            watch,
            interval,
            output,
        } => {
            if watch {
                return self::watch(admin, &name, interval, output).await;
            }
            let status = admin
                .get_wave(wave_ref(&name))
                .await
                .map_err(refused)?
                .into_inner();
            print_status(&status, output)
        }
        WaveCommand::List { output } => print_list(&client::list_waves(admin).await?, output),
        WaveCommand::Why { name, host, output } => {
            let why = admin
                .why_wave(pb::WhyWaveRequest {
                    name,
                    host_id: host,
                })
                .await
                .map_err(refused)?
                .into_inner();
            if !print_document(&why_json(&why), output)? {
                println!(
                    "{} ({}, stage {}): {}",
                    why.host_id,
                    wire::host_state(why.state),
                    why.stage,
                    why.reason
                );
            }
            Ok(())
        }
        WaveCommand::Delete(a) => {
            let status = admin
                .delete_wave(wave_ref(&a.name))
                .await
                .map_err(refused)?
                .into_inner();
            print_status(&status, a.output)
        }
        WaveCommand::Retry(a) => host_action(admin, a, pb::WaveHostAction::Retry).await,
        WaveCommand::Skip(a) => host_action(admin, a, pb::WaveHostAction::Skip).await,
    }
}

async fn action(
    admin: &mut AdminClient,
    name: &str,
    action: pb::WaveAction,
    rollback: bool,
    output: Format,
) -> Result<()> {
    let status = admin
        .wave_action(pb::WaveActionRequest {
            name: name.to_string(),
            action: action.into(),
            rollback,
        })
        .await
        .map_err(refused)?
        .into_inner();
    if output.is_table() {
        println!("{}\n", did(action, &status));
    }
    print_status(&status, output)
}

/// What a wave verb did, in one line, before the status: a verb that
/// changed nothing visible (approving a paused wave's stage) still says so.
fn did(action: pb::WaveAction, status: &pb::WaveStatus) -> String {
    let name = &status.name;
    let paused = wire::wave_is(status, pb::WaveState::Paused);
    match action {
        pb::WaveAction::Start => format!("wave {name} started"),
        pb::WaveAction::Pause => format!(
            "wave {name} is paused: no new host starts, running ones finish (mfctl wave resume {name})"
        ),
        pb::WaveAction::Resume => format!("wave {name} resumed"),
        pb::WaveAction::Approve if paused => format!(
            "wave {name}: stage {} approved; the wave is paused, so its hosts start after \
             mfctl wave resume {name}",
            status.current_stage
        ),
        pb::WaveAction::Approve => {
            format!("wave {name}: stage {} approved", status.current_stage)
        }
        pb::WaveAction::Cancel => {
            format!("wave {name} cancelled: hosts not started yet are released")
        }
        pb::WaveAction::Unspecified => format!("wave {name}"),
    }
}

async fn host_action(
    admin: &mut AdminClient,
    args: HostArgs,
    action: pb::WaveHostAction,
) -> Result<()> {
    let status = admin
        .wave_host_action(pb::WaveHostActionRequest {
            name: args.name,
            host_id: args.host,
            action: action.into(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    print_status(&status, args.output)
}

/// Live progress until the wave is over: redrawn in place on a terminal, one
/// line per change otherwise (logs, pipes), one JSON object per change with -o json.
pub async fn watch(
    admin: &mut AdminClient,
    name: &str,
    interval: Duration,
    output: Format,
) -> Result<()> {
    let terminal = std::io::stdout().is_terminal() && output.is_table();
    let mut last = String::new();
    loop {
        let status = admin
            .get_wave(pb::WaveRef {
                name: name.to_string(),
            })
            .await
            .map_err(refused)?
            .into_inner();
        let text = match output {
            Format::Json | Format::Yaml => watched_document(&status_json(&status), output)?,
            _ if terminal => status_text(&status),
            _ => progress_line(&status),
        };
        if text != last {
            let mut out = std::io::stdout().lock();
            if terminal {
                // Clear the screen and go home, then draw.
                writeln!(out, "\x1b[2J\x1b[H{text}")?;
            } else {
                writeln!(out, "{text}")?;
            }
            out.flush()?;
            last = text;
        }
        let over = wire::wave_is(&status, pb::WaveState::Completed)
            || wire::wave_is(&status, pb::WaveState::Cancelled);
        if over && wire::hosts_in(&status, pb::WaveHostState::Running) == 0 {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

fn eta(unix_ms: i64) -> String {
    timestamp(unix_ms).unwrap_or_else(|| "-".into())
}

fn counts_text(status: &pb::WaveStatus) -> String {
    let counts = wire::counts(status);
    let counts: Vec<(&&str, &u32)> = counts.iter().filter(|(_, n)| **n > 0).collect();
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line: for logs and `--watch` into a pipe.
pub fn progress_line(status: &pb::WaveStatus) -> String {
    let total: u32 = status.counts.iter().map(|c| c.hosts).sum();
    let done = total
        - wire::hosts_in(status, pb::WaveHostState::Pending)
        - wire::hosts_in(status, pb::WaveHostState::Running);
    format!(
        "{} {} stage {}/{} {done}/{total} done ({}){}{}{}",
        status.name,
        wire::wave_state(status.state),
        status.current_stage,
        status.stages.len(),
        counts_text(status),
        if status.eta_unix_ms > 0 && status.finished_unix_ms == 0 {
            format!(" eta {}", eta(status.eta_unix_ms))
        } else {
            String::new()
        },
        if status.halted_reason.is_empty() {
            String::new()
        } else {
            format!(" halted: {}", status.halted_reason)
        },
        if status.waiting.is_empty() {
            String::new()
        } else {
            format!(" waiting: {}", status.waiting)
        },
    )
}

pub fn status_text(status: &pb::WaveStatus) -> String {
    let mut lines = vec![
        format!(
            "Wave      {} to {}: {}",
            status.name,
            status.target,
            wire::wave_state(status.state)
        ),
        format!("Hosts     {}", counts_text(status)),
        format!(
            "Stage     {} of {}",
            status.current_stage,
            status.stages.len()
        ),
    ];
    if !status.halted_reason.is_empty() {
        lines.push(format!(
            "Halted    {} (mfctl wave resume)",
            status.halted_reason
        ));
    }
    if !status.waiting.is_empty() {
        lines.push(format!("Waiting   {}", status.waiting));
    }
    if status.started_unix_ms > 0 {
        lines.push(format!("Started   {}", eta(status.started_unix_ms)));
    }
    if status.finished_unix_ms > 0 {
        lines.push(format!("Finished  {}", eta(status.finished_unix_ms)));
    } else {
        lines.push(format!("ETA       {}", eta(status.eta_unix_ms)));
    }
    for budget in &status.budgets {
        lines.push(format!(
            "Budget    {}: {} holding it, {} full",
            budget.label,
            mf_core::words::count(budget.in_use, "host", "hosts"),
            mf_core::words::count(budget.full_values, "value", "values")
        ));
    }
    let rows: Vec<Vec<String>> = status
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                format!(
                    "{}{}",
                    i + 1,
                    if i == 0 && status.has_canary {
                        " (canary)"
                    } else {
                        ""
                    }
                ),
                s.hosts.to_string(),
                s.running.to_string(),
                s.done.to_string(),
                s.failures.to_string(),
            ]
        })
        .collect();
    lines.push(String::new());
    lines.push(table(
        &["STAGE", "HOSTS", "RUNNING", "DONE", "FAILURES"],
        &rows,
    ));
    if !status.problems.is_empty() {
        let rows: Vec<Vec<String>> = status
            .problems
            .iter()
            .map(|p| {
                vec![
                    p.host_id.clone(),
                    wire::host_state(p.outcome).to_string(),
                    p.detail.clone(),
                ]
            })
            .collect();
        lines.push(String::new());
        lines.push(table(&["HOST", "OUTCOME", "DETAIL"], &rows));
    }
    lines.join("\n")
}

pub fn status_json(status: &pb::WaveStatus) -> serde_json::Value {
    serde_json::json!({
        "name": status.name,
        "target": status.target,
        "state": wire::wave_state(status.state),
        "halted": (!status.halted_reason.is_empty()).then_some(&status.halted_reason),
        "waiting": (!status.waiting.is_empty()).then_some(&status.waiting),
        "current_stage": status.current_stage,
        "stages": status.stages.iter().map(|s| serde_json::json!({
            "hosts": s.hosts, "running": s.running, "done": s.done, "failures": s.failures,
        })).collect::<Vec<_>>(),
        "counts": wire::counts(status),
        "eta": timestamp(status.eta_unix_ms),
        "created": timestamp(status.created_unix_ms),
        "started": timestamp(status.started_unix_ms),
        "finished": timestamp(status.finished_unix_ms),
        "started_unix_ms": status.started_unix_ms,
        "finished_unix_ms": status.finished_unix_ms,
        "budgets": status.budgets.iter().map(|b| serde_json::json!({
            "label": b.label, "in_use": b.in_use, "full_values": b.full_values,
        })).collect::<Vec<_>>(),
        "problems": status.problems.iter().map(|p| serde_json::json!({
            "host_id": p.host_id, "outcome": wire::host_state(p.outcome), "detail": p.detail,
        })).collect::<Vec<_>>(),
    })
}

fn why_json(why: &pb::WhyWaveResponse) -> serde_json::Value {
    serde_json::json!({
        "host_id": why.host_id, "state": wire::host_state(why.state), "stage": why.stage,
        "job_id": why.job_id, "reason": why.reason,
    })
}

pub fn print_status(status: &pb::WaveStatus, output: Format) -> Result<()> {
    if !print_document(&status_json(status), output)? {
        println!("{}", status_text(status));
    }
    Ok(())
}

fn print_list(waves: &[pb::WaveStatus], output: Format) -> Result<()> {
    let list: Vec<_> = waves.iter().map(status_json).collect();
    match output {
        Format::Json | Format::Yaml => {
            print_document(&list, output)?;
        }
        Format::Table | Format::Wide => {
            let rows: Vec<Vec<String>> = waves
                .iter()
                .map(|w| {
                    let total: u32 = wire::counts(w).values().sum();
                    vec![
                        w.name.clone(),
                        w.target.clone(),
                        wire::wave_state(w.state).to_string(),
                        format!("{}/{}", w.current_stage, w.stages.len()),
                        total.to_string(),
                        counts_text(w),
                        eta(w.eta_unix_ms),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "NAME", "TARGET", "STATE", "STAGE", "HOSTS", "PROGRESS", "ETA"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(())
}

/// A dry run's plan was recorded nowhere: it says so instead of a state.
fn plan_state(plan: &pb::WavePlan) -> &'static str {
    if plan.dry_run {
        "dry run: not recorded"
    } else {
        wire::wave_state(plan.state)
    }
}

pub fn plan_json(plan: &pb::WavePlan) -> serde_json::Value {
    serde_json::json!({
        "name": plan.name,
        "target": plan.target,
        "state": plan_state(plan),
        "policy": plan.policy,
        "stages": plan.stages.iter().map(|s| &s.hosts).collect::<Vec<_>>(),
        "excluded": plan.excluded.iter().map(|e| serde_json::json!({
            "host_id": e.host_id, "reason": e.reason,
        })).collect::<Vec<_>>(),
        "outside_selector": plan.outside_selector,
        "eta": timestamp(plan.eta_unix_ms),
        "paths": plan.paths.iter().map(|p| serde_json::json!({
            "path": p.path, "hosts": p.hosts, "expected_seconds": p.expected_seconds,
            "samples": p.samples,
        })).collect::<Vec<_>>(),
    })
}

/// Stages show their first hosts only: an 11,500-host plan stays readable
/// (`-o wide` and `-o json` have them all).
const HOSTS_SHOWN: usize = 8;
const EXCLUDED_SHOWN: usize = 20;

pub fn plan_text(plan: &pb::WavePlan, format: Format) -> String {
    let (hosts_shown, excluded_shown) = match format {
        Format::Wide => (usize::MAX, usize::MAX),
        _ => (HOSTS_SHOWN, EXCLUDED_SHOWN),
    };
    let hosts: usize = plan.stages.iter().map(|s| s.hosts.len()).sum();
    let mut lines = vec![
        format!(
            "Wave      {} to {}: {}, {} in {}",
            plan.name,
            plan.target,
            plan_state(plan),
            count(hosts as u64, "host"),
            count(plan.stages.len() as u64, "stage")
        ),
        format!("Policy    {}", plan.policy.join("; ")),
        format!("ETA       {}", eta(plan.eta_unix_ms)),
    ];
    for path in &plan.paths {
        lines.push(format!(
            "Path      {}: {}, expected {} each ({})",
            path.path,
            count(path.hosts, "host"),
            humantime::format_duration(Duration::from_secs(path.expected_seconds)),
            if path.samples == 0 {
                "not measured yet: the wave's default".to_string()
            } else {
                format!("90th percentile of {}", count(path.samples, "job"))
            }
        ));
    }
    lines.push(String::new());
    for (i, stage) in plan.stages.iter().enumerate() {
        let shown: Vec<&str> = stage
            .hosts
            .iter()
            .take(hosts_shown)
            .map(String::as_str)
            .collect();
        let more = stage.hosts.len().saturating_sub(hosts_shown);
        lines.push(format!(
            "Stage {}{}: {}: {}{}",
            i + 1,
            if i == 0 && plan.has_canary {
                " (canary)"
            } else {
                ""
            },
            count(stage.hosts.len() as u64, "host"),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    lines.push(String::new());
    // Reasons counted by kind ("blocked at pre-check", "unreachable"...).
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in &plan.excluded {
        *kinds
            .entry(e.reason.split(':').next().unwrap_or_default())
            .or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    lines.push(format!(
        "Left out  {} selected{}; {} outside the selector",
        count(plan.excluded.len() as u64, "host"),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
        count(plan.outside_selector, "host")
    ));
    if !plan.excluded.is_empty() {
        let rows: Vec<Vec<String>> = plan
            .excluded
            .iter()
            .take(excluded_shown)
            .map(|e| vec![e.host_id.clone(), e.reason.clone()])
            .collect();
        lines.push(table(&["HOST", "REASON"], &rows));
        if plan.excluded.len() > excluded_shown {
            lines.push(format!(
                "and {} more (-o wide lists them all)",
                plan.excluded.len() - excluded_shown
            ));
        }
    }
    lines.join("\n")
}

pub fn print_plan(plan: &pb::WavePlan, output: Format) -> Result<()> {
    if !print_document(&plan_json(plan), output)? {
        println!("{}", plan_text(plan, output));
    }
    Ok(())
}

/// Waits until the wave is over or `settled` says to stop; returns the status.
pub async fn wait_until(
    admin: &mut AdminClient,
    name: &str,
    timeout: Duration,
    mut settled: impl FnMut(&pb::WaveStatus) -> bool,
) -> Result<pb::WaveStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = admin
            .get_wave(pb::WaveRef {
                name: name.to_string(),
            })
            .await
            .map_err(refused)?
            .into_inner();
        if settled(&status) {
            return Ok(status);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "wave {name} did not settle in {timeout:?}: {}",
                progress_line(&status)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod verb_tests {
    use super::*;

    fn status(state: pb::WaveState) -> pb::WaveStatus {
        pb::WaveStatus {
            name: "w1".into(),
            state: state.into(),
            current_stage: 2,
            ..Default::default()
        }
    }

    #[test]
    fn every_verb_says_what_it_did_even_when_the_wave_does_not_move() {
        let approved_paused = did(pb::WaveAction::Approve, &status(pb::WaveState::Paused));
        assert!(
            approved_paused.contains("stage 2 approved")
                && approved_paused.contains("mfctl wave resume w1"),
            "{approved_paused}"
        );
        let approved = did(pb::WaveAction::Approve, &status(pb::WaveState::Running));
        assert_eq!(approved, "wave w1: stage 2 approved");
        let paused = did(pb::WaveAction::Pause, &status(pb::WaveState::Paused));
        assert!(paused.starts_with("wave w1 is paused"), "{paused}");
        for action in [
            pb::WaveAction::Start,
            pb::WaveAction::Resume,
            pb::WaveAction::Cancel,
        ] {
            assert!(did(action, &status(pb::WaveState::Running)).starts_with("wave w1 "));
        }
    }
}
