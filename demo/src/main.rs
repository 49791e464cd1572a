//! `mf-demo`: a coordinator on loopback with a fresh PKI and data dir, a
//! simulated fleet enrolling and reporting through the real gRPC/mTLS path,
//! the fleet summarised by OS and datacenter, its readiness, then a wave over
//! the RHEL 7.9 hosts told from plan to summary.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mf_agent::session::SessionConfig;
use mf_sim::SimProfile;
use mf_sim::emulated::Failure;
use mf_sim::fleet::{self as sim, FleetSpec, SimConfig};

use mf_coordinator::config::{CoordinatorConfig, DEFAULT_HEARTBEAT};
use mf_coordinator::{process, server};
use mf_pki::{PkiFiles, PkiPaths};
use mf_proto::v1::{WaveHostState, WaveState};
use mfctl::client;
use mfctl::output::table;
use mfctl::wire::{hosts_in, wave_is};

/// Start a coordinator and a simulated fleet on loopback, then show the fleet,
/// its readiness and a wave from plan to summary.
#[derive(Debug, Clone, Parser)]
#[command(name = "mf-demo", version)]
pub struct DemoArgs {
    /// Simulated hosts.
    #[arg(long, default_value_t = 300)]
    pub hosts: usize,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep running and print how to point mfctl at the demo.
    #[arg(long)]
    pub keep: bool,
    /// Give up if the fleet has not reported by then.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

fn main() -> Result<()> {
    let args = DemoArgs::parse();
    process::init_logging(false, "warn");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args))
}

async fn run(args: DemoArgs) -> Result<()> {
    if args.hosts == 0 {
        bail!("--hosts must be at least 1");
    }
    process::raise_open_file_limit();
    let workdir = tempfile::Builder::new()
        .prefix("mf-demo-")
        .tempdir()
        .context("cannot create the demo directory")?;
    let pki = PkiPaths::new(workdir.path().join("pki"));
    PkiFiles::init(
        &pki,
        &["localhost".into(), "127.0.0.1".into()],
        "demo-operator",
        None,
    )?;
    let loopback = "127.0.0.1:0".parse()?;
    let config = CoordinatorConfig {
        api_listen: None,
        api_reads_per_second: mf_coordinator::api::budget::DEFAULT_PER_SECOND,
        oidc: None,
        self_service: Default::default(),
        rebuild: Default::default(),
        webhook_delivery: Default::default(),
        data_dir: workdir.path().join("data"),
        pki_dir: pki.dir().to_path_buf(),
        agent_listen: loopback,
        admin_listen: loopback,
        metrics_listen: loopback,
        heartbeat_interval: DEFAULT_HEARTBEAT,
        reboot_timeout: DEMO_REBOOT_TIMEOUT,
        agent_cert_lifetime: mf_pki::AGENT_VALIDITY,
        max_clock_skew: Duration::from_secs(300),
        operator_cert_lifetime: mf_pki::OPERATOR_VALIDITY,
        server_cert_renew_before: Duration::from_secs(30 * 86_400),
        blast_radius: Default::default(),
        enroll_limits: Default::default(),
        listener_limits: Default::default(),
        agent_messages_per_minute: mf_coordinator::config::DEFAULT_AGENT_MESSAGES,
        agent_stall_timeout: Duration::from_secs(30),
        // One token enrolls the whole simulated fleet.
        token_policy: mf_coordinator::service::admin::TokenPolicy {
            max_uses: u32::try_from(args.hosts).unwrap_or(u32::MAX).max(1),
            ..Default::default()
        },
    };
    let coordinator = server::start(&config).await?;
    println!(
        "coordinator: agents on {}, admin on {}, metrics on http://{}/metrics",
        coordinator.agent_addr, coordinator.admin_addr, coordinator.metrics_addr
    );

    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let ca = read(pki.ca_cert())?;
    let mut admin = client::connect(
        &coordinator.admin_addr.to_string(),
        &ca,
        &read(pki.operator_cert())?,
        &read(pki.operator_key())?,
    )
    .await?;
    let uses = u32::try_from(args.hosts).context("too many hosts")?;
    let token = client::create_token(&mut admin, None, Duration::from_secs(3600), uses).await?;

    let started = Instant::now();
    let mut plan = sim::plan_fleet(&FleetSpec {
        hosts: args.hosts,
        seed: args.seed,
        prefix: "demo".into(),
        ready_rhel79: false,
    });
    // Two clean RHEL 7.9 hosts will fail in their upgrade initramfs and stop
    // in its emergency shell: the first is within the error budget, the
    // second crosses it; someone at their consoles brings them back.
    let doomed = pick_doomed(&mut plan);
    let fleet = sim::start(
        plan,
        SimConfig {
            coordinator: coordinator.agent_addr.to_string(),
            ca_pem: ca,
            token: token.token,
            enroll_concurrency: 64,
            session: SessionConfig::default(),
        },
    );
    println!("simulated fleet of {} hosts enrolling...", args.hosts);

    let hosts = loop {
        let hosts = client::list_hosts(&mut admin, "connected=true").await?;
        let reported = hosts.iter().filter(|h| h.facts.is_some()).count();
        if reported == args.hosts {
            break hosts;
        }
        if fleet.failed() > 0 {
            bail!("{} simulated agents could not enroll", fleet.failed());
        }
        if started.elapsed() > args.timeout {
            bail!(
                "only {reported} of {} hosts reported within {:?}",
                args.hosts,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "all {} hosts enrolled, connected and reported facts in {:.1} s\n",
        hosts.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", fleet_summary(&hosts));

    // Readiness: the pre-check of each host's next step toward RHEL 8.10.
    println!("\n$ mfctl precheck --target rhel-8.10");
    let started = Instant::now();
    let target = "rhel-8.10".parse().context("the demo's target")?;
    let response = mfctl::precheck::send(&mut admin, "", target).await?;
    mfctl::readiness::print_precheck(&response, mfctl::Format::Table)?;
    let report =
        mfctl::precheck::outcomes(&mut admin, "", response.dispatched, args.timeout).await?;
    println!(
        "pre-checks finished in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    println!("$ mfctl report readiness");
    mfctl::readiness::print_report(&report, mfctl::Format::Table)?;

    wave_story(&mut admin, &fleet, &doomed, args.timeout).await?;

    if args.keep {
        println!("\nThe demo keeps running. In another shell:");
        println!("  export MF_COORDINATOR={}", coordinator.admin_addr);
        println!("  export MF_PKI_DIR={}", pki.dir().display());
        println!("  mfctl hosts list --selector 'os=centos,dc=dc1'");
        println!("Press Ctrl-C to stop.");
        process::shutdown_signal().await;
    }
    fleet.shutdown().await;
    coordinator.stop().await;
    Ok(())
}

/// The wave's start order is by application, clean hosts before those with
/// serious findings, then host id: of the RHEL 7.9 hosts the pre-check will
/// pass, the first in that order (in the canary) and the third (the first of
/// stage 2) get an initramfs failure.
fn pick_doomed(plan: &mut [sim::HostPlan]) -> Vec<String> {
    let mut ready: Vec<(String, bool, String, usize)> = plan
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            let free = |path: &str| h.spec.filesystems.get(path).map_or(0, |fs| fs.free_bytes);
            h.spec.profile == SimProfile::Rhel79
                && h.spec.findings.iter().all(|f| !f.blocking)
                && free("/boot") >= 200 << 20
                && free("/var") >= 4 << 30
        })
        .map(|(i, h)| {
            let concerns = h.spec.findings.iter().any(|f| f.severity == "high");
            let app = h.labels.get("app").cloned().unwrap_or_default();
            (app, concerns, h.host_id.clone(), i)
        })
        .collect();
    ready.sort();
    [0, 2]
        .iter()
        .filter_map(|&k| ready.get(k))
        .map(|(_, _, id, i)| {
            plan[*i].spec.failures.push(Failure::InitramfsFailure);
            id.clone()
        })
        .collect()
}

const WAVE: &str = "rhel8-wave1";
/// How long the demo's coordinator waits for a reboot before holding its job
/// (real sites: hours; the default is 4 h).
const DEMO_REBOOT_TIMEOUT: Duration = Duration::from_secs(15);

/// A wave over the RHEL 7.9 hosts: plan, canary, budgets per application and
/// datacenter, upgrades that stop in their initramfs held at the reboot
/// timeout, a halt on the error budget, the operator at the consoles, the
/// rollbacks, the operator's resume, the summary.
async fn wave_story(
    admin: &mut client::AdminClient,
    fleet: &sim::Fleet,
    doomed: &[String],
    timeout: Duration,
) -> Result<()> {
    use mfctl::waves;
    let args = waves::CreateArgs {
        name: WAVE.into(),
        selector: "os=rhel,version=7.9".into(),
        target: "rhel-8.10".into(),
        canary: Some(2),
        canary_selector: None,
        batches: Some("10%,100%".into()),
        max_parallel: Some(20),
        budgets: vec!["app=1".into(), "dc=10%".into()],
        stage_errors: Some("1".into()),
        total_errors: Some("1".into()),
        windows: Vec::new(),
        freezes: Vec::new(),
        soak: None,
        approve_stages: false,
        on_failure: mfctl::OnFailureArg::Rollback,
        expected: Some(Duration::from_secs(90 * 60)),
        dry_run: false,
    };
    println!(
        "\n$ mfctl wave create {WAVE} -l os=rhel,version=7.9 --target rhel-8.10 --canary 2 \\\n    --batches 10%,100% --max-parallel 20 --budget app=1 --budget dc=10% \\\n    --stage-errors 1 --total-errors 1 --expected 90m"
    );
    let plan = client::create_wave(admin, waves::spec(&args)).await?;
    println!("{}", waves::plan_text(&plan, mfctl::Format::Table));
    if !doomed.is_empty() {
        println!(
            "\n(the demo made {} fail in their upgrade initramfs: they will stop in its emergency \
             shell, and the demo's coordinator holds a reboot after {} s)",
            doomed.join(" and "),
            DEMO_REBOOT_TIMEOUT.as_secs()
        );
    }

    println!("\n$ mfctl wave start {WAVE} && mfctl wave status {WAVE} --watch");
    let started = Instant::now();
    admin
        .wave_action(mf_proto::v1::WaveActionRequest {
            name: WAVE.into(),
            action: mf_proto::v1::WaveAction::Start.into(),
            rollback: false,
        })
        .await
        .map_err(client::refused)?;
    let halted = |s: &mf_proto::v1::WaveStatus| {
        wave_is(s, WaveState::Halted) && hosts_in(s, WaveHostState::Running) == 0
    };
    // A host down in its initramfs is held at the reboot timeout: counted
    // failed, and still holding its application's budget until it is back.
    let stuck = |s: &mf_proto::v1::WaveStatus| {
        hosts_in(s, WaveHostState::Failed) > 0
            && doomed
                .iter()
                .any(|id| fleet.host(id).is_some_and(|h| h.is_down()))
    };
    loop {
        let status = watch_until(admin, timeout, |s| {
            halted(s) || stuck(s) || wave_is(s, WaveState::Completed)
        })
        .await?;
        if halted(&status) {
            println!("\n$ mfctl wave status {WAVE}");
            println!("{}", waves::status_text(&status));
            if let Some(waiting) = first_pending(admin).await? {
                println!("\n$ mfctl wave why {WAVE} {waiting}");
                let why = admin
                    .why_wave(mf_proto::v1::WhyWaveRequest {
                        name: WAVE.into(),
                        host_id: waiting.clone(),
                    })
                    .await
                    .map_err(client::refused)?
                    .into_inner();
                println!(
                    "{} ({}, stage {}): {}",
                    why.host_id,
                    mfctl::wire::host_state(why.state),
                    why.stage,
                    why.reason
                );
            }
            bring_back(admin, fleet, doomed, timeout).await?;
            println!(
                "\n(the operator has looked at the rolled-back hosts, then)\n$ mfctl wave resume {WAVE}"
            );
            admin
                .wave_action(mf_proto::v1::WaveActionRequest {
                    name: WAVE.into(),
                    action: mf_proto::v1::WaveAction::Resume.into(),
                    rollback: false,
                })
                .await
                .map_err(client::refused)?;
        } else if stuck(&status) {
            bring_back(admin, fleet, doomed, timeout).await?;
        } else {
            break;
        }
    }
    println!(
        "\nwave {WAVE} over in {:.1} s\n\n$ mfctl wave status {WAVE}",
        started.elapsed().as_secs_f64()
    );
    let status = admin
        .get_wave(mf_proto::v1::WaveRef { name: WAVE.into() })
        .await
        .map_err(client::refused)?
        .into_inner();
    println!("{}", waves::status_text(&status));
    if let Some(host) = doomed.first() {
        println!("\n$ mfctl hosts show {host}   (its job's timeline)");
        let shown = client::get_host(admin, host).await?;
        if let Some(job) = &shown.job {
            for entry in &job.timeline {
                println!(
                    "  {}  {}",
                    mfctl::output::timestamp(entry.at_unix_ms).unwrap_or_default(),
                    entry.text
                );
            }
        }
    }
    Ok(())
}

/// The doomed hosts stopped in the upgrade initramfs's emergency shell: their
/// jobs are held at the reboot timeout, and nothing happens until someone at
/// the console (or the site's console hook) boots the previous entry. Then
/// each agent reports the failure and its job rolls back from the snapshot.
async fn bring_back(
    admin: &mut client::AdminClient,
    fleet: &sim::Fleet,
    doomed: &[String],
    timeout: Duration,
) -> Result<()> {
    let down: Vec<&String> = doomed
        .iter()
        .filter(|id| fleet.host(id).is_some_and(|h| h.is_down()))
        .collect();
    if down.is_empty() {
        return Ok(());
    }
    for id in &down {
        let shown = client::get_host(admin, id).await?;
        if let Some(job) = &shown.job {
            println!(
                "\n$ mfctl hosts show {id}   (job {})\n  {}",
                mfctl::wire::job_state(job.state),
                job.detail
            );
        }
    }
    for id in &down {
        let Some(host) = fleet.host(id) else { continue };
        let title = host
            .console_boot_previous()
            .map_err(|reason| anyhow::anyhow!("{id}: {reason}"))?;
        println!(
            "\n(at the console of {id}: the emergency shell of the upgrade initramfs; the operator \
             boots the previous entry, {title:?}, once)"
        );
    }
    let deadline = Instant::now() + timeout;
    for id in &down {
        loop {
            let shown = client::get_host(admin, id).await?;
            let state = shown
                .job
                .as_ref()
                .map_or("none", |j| mfctl::wire::job_state(j.state));
            if !matches!(state, "running" | "held") {
                let detail = shown.job.map(|j| j.detail).unwrap_or_default();
                println!("  {id}: {state}: {detail}");
                break;
            }
            if Instant::now() > deadline {
                bail!("{id} did not settle after it came back ({state})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Prints a progress line whenever it changes, until `done`.
async fn watch_until(
    admin: &mut client::AdminClient,
    timeout: Duration,
    mut done: impl FnMut(&mf_proto::v1::WaveStatus) -> bool,
) -> Result<mf_proto::v1::WaveStatus> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let status = admin
            .get_wave(mf_proto::v1::WaveRef { name: WAVE.into() })
            .await
            .map_err(client::refused)?
            .into_inner();
        let line = mfctl::waves::progress_line(&status);
        if line != last {
            println!("  {line}");
            last = line;
        }
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("the wave did not settle in {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A host of the wave still waiting, to ask `why`.
async fn first_pending(admin: &mut client::AdminClient) -> Result<Option<String>> {
    let plan = client::plan_wave(admin, WAVE).await?;
    for host in plan.stages.iter().flat_map(|s| &s.hosts).rev() {
        let why = admin
            .why_wave(mf_proto::v1::WhyWaveRequest {
                name: WAVE.into(),
                host_id: host.clone(),
            })
            .await
            .map_err(client::refused)?
            .into_inner();
        if mf_proto::v1::WaveHostState::try_from(why.state) == Ok(WaveHostState::Pending) {
            return Ok(Some(host.clone()));
        }
    }
    Ok(None)
}

/// Hosts counted by OS and version (rows) and datacenter (columns).
pub fn fleet_summary(hosts: &[mf_proto::v1::Host]) -> String {
    let mut counts: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    let mut dcs = std::collections::BTreeSet::new();
    for host in hosts {
        let facts = host.facts.clone().unwrap_or_default();
        let os = facts.os.unwrap_or_default();
        let dc = facts
            .labels
            .get("dc")
            .cloned()
            .unwrap_or_else(|| "-".into());
        dcs.insert(dc.clone());
        *counts
            .entry((os.id, os.version))
            .or_default()
            .entry(dc)
            .or_default() += 1;
    }
    let mut header = vec!["OS", "VERSION"];
    header.extend(dcs.iter().map(String::as_str));
    header.push("TOTAL");
    let mut rows: Vec<Vec<String>> = counts
        .iter()
        .map(|((os, version), by_dc)| {
            let mut row = vec![os.clone(), version.clone()];
            row.extend(
                dcs.iter()
                    .map(|dc| by_dc.get(dc).copied().unwrap_or(0).to_string()),
            );
            row.push(by_dc.values().sum::<usize>().to_string());
            row
        })
        .collect();
    let mut total = vec!["all".to_string(), String::new()];
    total.extend(dcs.iter().map(|dc| {
        counts
            .values()
            .map(|m| m.get(dc).copied().unwrap_or(0))
            .sum::<usize>()
            .to_string()
    }));
    total.push(hosts.len().to_string());
    rows.push(total);
    table(&header, &rows)
}
