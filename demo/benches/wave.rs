//! The wave scheduler itself at fleet scale, without the network: the real
//! inventory task (sled on disk, group commit, the job state machine, the wave
//! driven after each batch) with 11,500 hosts whose agents are in-process
//! tasks that answer every command at once. What it measures is the
//! coordinator's side of a wave: from `start` until every host has been
//! dispatched under the budgets, until the wave completes, and the CPU it took.
//! `scripts/bench-wave` measures the same wave end to end with real agents.
//!
//! Run: `cargo bench -p mf-coordinator --bench wave [-- HOSTS]`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mf_coordinator::inventory::{
    CreateMode, EndReason, Inventory, NewEnrollment, NewSession, NewToken, SessionEnd, Settings,
    WaveAction,
};
use mf_coordinator::metrics::Metrics;
use mf_coordinator::store::Store;
use mf_core::command::{AgentCommand, CommandUpdate, UpdateState};
use mf_core::facts::{Facts, OsInfo};
use mf_core::selector::Selector;
use mf_core::wave::spec::SpecInput;
use mf_sim::fleet::{FleetSpec, plan_fleet};
use tokio::sync::mpsc;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / rustix::param::clock_ticks_per_second() as f64
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// An agent that answers every command with success, at once.
async fn agent(
    inventory: Inventory,
    host_id: String,
    mut commands: mpsc::Receiver<Box<AgentCommand>>,
) {
    while let Some(command) = commands.recv().await {
        let update = CommandUpdate {
            command_id: command.id.clone(),
            sequence: command.sequence,
            state: UpdateState::Succeeded,
            detail: String::new(),
            findings: Vec::new(),
            finished_unix_ms: 0,
        };
        inventory.command_update(host_id.clone(), update).await;
    }
}

async fn run(hosts: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("data"))?;
    let (inventory, _task) = Inventory::start(store, Metrics::new()?, Settings::default())?;
    let plan = plan_fleet(&FleetSpec {
        hosts,
        seed: 1,
        prefix: "bench".into(),
        ready_rhel79: true,
    });
    let token = [1u8; 32];
    inventory
        .create_token(
            token,
            NewToken {
                host_id: None,
                ttl: Duration::from_secs(3600),
                uses: u32::MAX,
            },
        )
        .await?;
    let mut labels_of = HashMap::new();
    let mut sessions = Vec::new();
    for (i, host) in plan.iter().enumerate() {
        inventory
            .enroll(NewEnrollment {
                token_hash: token,
                host_id: host.host_id.clone(),
                cert_serial: format!("{i:x}"),
                cert_not_after_unix_ms: i64::MAX,
            })
            .await?
            .map_err(|e| anyhow::anyhow!("enroll: {e}"))?;
        let (commands, rx) = mpsc::channel(16);
        let replaced = SessionEnd::default();
        inventory
            .connect(NewSession {
                host_id: host.host_id.clone(),
                cert_serial: format!("{i:x}"),
                cert_issued_unix_ms: 0,
                peer: "127.0.0.1:1".into(),
                facts: Facts {
                    os: Some(OsInfo {
                        id: "rhel".into(),
                        name: "Red Hat Enterprise Linux".into(),
                        version: "7.9".into(),
                    }),
                    labels: host.labels.clone().into_iter().collect(),
                    ..Facts::default()
                },
                end: replaced.clone(),
                last_sequence: 0,
                last_update: None,
                clock_skew_ms: Some(0),
                commands,
            })
            .await?;
        tokio::spawn(agent(inventory.clone(), host.host_id.clone(), rx));
        labels_of.insert(host.host_id.clone(), host.labels.clone());
        sessions.push(replaced);
    }
    let target = "rhel-8.10".parse().context("target")?;
    inventory.precheck(Selector::default(), target).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while inventory
        .readiness(Selector::default())
        .await?
        .hosts
        .iter()
        .any(|h| h.precheck.as_ref().is_none_or(|p| p.finished_unix_ms == 0))
    {
        if Instant::now() > deadline {
            bail!("the pre-checks did not finish");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec = SpecInput {
        name: "bench".into(),
        selector: "os=rhel".into(),
        target: "rhel-8.10".into(),
        canary: "10".into(),
        batches: "100%".into(),
        max_parallel: 2000,
        budgets: vec!["app=1".into(), "hypervisor=2".into(), "dc=50%".into()],
        stage_errors: "5%".into(),
        total_errors: "5%".into(),
        ..SpecInput::default()
    }
    .check()?;
    let plan = inventory.create_wave(spec, CreateMode::Record).await?;
    let members: usize = plan.stages.iter().map(Vec::len).sum();

    let cpu = cpu_seconds();
    let started = Instant::now();
    inventory
        .wave_action("bench".into(), WaveAction::Start)
        .await?;
    loop {
        let status = inventory.wave_status("bench".into()).await?;
        if status.state == mf_core::wave::status::WaveState::Completed {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the wave did not complete: {:?}", status.counts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    let status = inventory.wave_status("bench".into()).await?;

    // Each job's own times: when it was created (dispatched) and when it ended.
    let views = inventory.list(Selector::default()).await?;
    let mut spans = Vec::new();
    for view in &views {
        let job = view.job.as_ref().context("a host without a job")?;
        let end = job.timeline.last().map_or(0, |e| e.at_unix_ms);
        spans.push((view.record.id.clone(), job.created_unix_ms, end));
    }
    let first = spans.iter().map(|s| s.1).min().unwrap_or(0);
    let last = spans.iter().map(|s| s.1).max().unwrap_or(0);
    // The budgets, from those times: never more in flight per value than allowed.
    for (label, limit) in [("app", 1usize), ("hypervisor", 2)] {
        let mut by_value: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
        for (id, a, b) in &spans {
            by_value
                .entry(labels_of[id][label].as_str())
                .or_default()
                .push((*a, *b));
        }
        for (value, intervals) in by_value {
            let mut events: Vec<(i64, i32)> = intervals
                .iter()
                .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
                .collect();
            events.sort();
            let (mut live, mut peak) = (0, 0);
            for (_, d) in events {
                live += d;
                peak = peak.max(live);
            }
            if peak as usize > limit {
                bail!("budget {label}={limit} broken for {value}: {peak} at once");
            }
        }
    }
    println!("hosts in the wave:            {members}");
    println!("outcome:                      {:?}", status.counts);
    println!(
        "every host dispatched:        {:.2} s after the first",
        (last - first) as f64 / 1000.0
    );
    println!(
        "wave completed:               {:.2} s after the start",
        took.as_secs_f64()
    );
    println!("coordinator CPU in the wave:  {cpu:.1} s (the in-process agents' share is small)");
    println!("process peak RSS (VmHWM):     {} MiB", peak_rss_mib());
    println!("budgets app=1 and hypervisor=2 honoured, checked from every job's times");
    for s in sessions {
        s.end(EndReason::Stopping);
    }
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench; the only other argument is the fleet size.
    let hosts = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(11_500);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(hosts))
}
