//! `mfctl demo`: a coordinator on loopback with a fresh PKI and data dir, a
//! simulated fleet enrolling and reporting through the real gRPC/mTLS path,
//! and the fleet summarised by OS and datacenter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use mf_agent::host::SimProfile;
use mf_agent::host::emulated::Failure;
use mf_agent::session::SessionConfig;
use mf_agent::sim::{self, FleetSpec, SimConfig};

use super::client;
use super::output::table;
use crate::config::{CoordinatorConfig, DEFAULT_HEARTBEAT};
use crate::pki::{PkiFiles, PkiPaths};
use crate::server;

#[derive(Debug, Clone, Args)]
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

pub async fn run(args: DemoArgs) -> Result<()> {
    if args.hosts == 0 {
        bail!("--hosts must be at least 1");
    }
    super::raise_open_file_limit();
    let workdir = tempfile::Builder::new()
        .prefix("mf-demo-")
        .tempdir()
        .context("cannot create the demo directory")?;
    let pki = PkiPaths::new(workdir.path().join("pki"));
    PkiFiles::init(
        &pki,
        &["localhost".into(), "127.0.0.1".into()],
        "demo-operator",
    )?;
    let loopback = "127.0.0.1:0".parse()?;
    let config = CoordinatorConfig {
        data_dir: workdir.path().join("data"),
        pki_dir: pki.dir().to_path_buf(),
        agent_listen: loopback,
        admin_listen: loopback,
        metrics_listen: loopback,
        heartbeat_interval: DEFAULT_HEARTBEAT,
        reboot_timeout: crate::config::DEFAULT_REBOOT_TIMEOUT,
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
    });
    // One clean RHEL 7.9 host will fail in its upgrade initramfs, to show a rollback.
    let doomed = plan
        .iter_mut()
        .find(|h| {
            let free = |path: &str| h.spec.filesystems.get(path).map_or(0, |fs| fs.free_bytes);
            h.spec.profile == SimProfile::Rhel79
                && h.spec.findings.iter().all(|f| !f.blocking)
                && free("/boot") >= 200 << 20
                && free("/var") >= 4 << 30
        })
        .map(|h| {
            h.spec.failures.push(Failure::InitramfsFailure);
            h.host_id.clone()
        });
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
    let response = client::precheck(&mut admin, "", "rhel-8.10").await?;
    super::readiness::print_precheck(&response, super::Format::Table)?;
    let report = super::readiness::wait_for_outcomes(&mut admin, "", args.timeout).await?;
    println!(
        "pre-checks finished in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    println!("$ mfctl report readiness");
    super::readiness::print_report(&report, super::Format::Table)?;

    // Migrations: a few ready hosts of each kind, and the one set to fail.
    let ready = |profile: &str| -> Vec<String> {
        report
            .hosts
            .iter()
            .filter(|h| {
                h.precheck
                    .as_ref()
                    .is_some_and(|p| super::readiness::readiness_label(p.readiness) == "ready")
            })
            .filter(|h| h.host_id.contains(profile) || profile.is_empty())
            .map(|h| h.host_id.clone())
            .collect()
    };
    let os_of = |id: &str| {
        hosts
            .iter()
            .find(|h| h.id == id)
            .and_then(|h| h.facts.as_ref())
            .and_then(|f| f.os.as_ref())
            .map(|o| (o.id.clone(), o.version.clone()))
            .unwrap_or_default()
    };
    // One host for each path: CentOS to RHEL 7.9 (one step) and to 8.10 (two),
    // RHEL 7.9 to 8.10.
    let mut wanted = vec![
        ("centos", "rhel-7.9"),
        ("centos", "rhel-8.10"),
        ("rhel", "rhel-8.10"),
    ];
    let mut chosen: Vec<(String, &str)> = Vec::new();
    for id in ready("") {
        if Some(&id) == doomed.as_ref() {
            continue;
        }
        let (os, version) = os_of(&id);
        if version != "7.9" {
            continue;
        }
        if let Some(i) = wanted.iter().position(|(o, _)| *o == os) {
            chosen.push((id, wanted.remove(i).1));
        }
    }
    if let Some(id) = doomed {
        chosen.push((id, "rhel-8.10"));
    }
    println!();
    for (host, target) in &chosen {
        println!("$ mfctl migrate {host} --target {target}");
        client::migrate(&mut admin, host, target, "rollback").await?;
    }
    let mut summary = Vec::new();
    for (host, _) in &chosen {
        let job = super::jobs::wait(&mut admin, host, false).await?;
        let (os, version) = os_of(host);
        let now = client::get_host(&mut admin, host).await?;
        let now_os = now
            .facts
            .as_ref()
            .and_then(|f| f.os.as_ref())
            .map(|o| format!("{} {}", o.id, o.version))
            .unwrap_or_default();
        summary.push(vec![
            host.clone(),
            format!("{os} {version}"),
            job.target.clone(),
            job.state.clone(),
            now_os,
            job.detail.clone(),
        ]);
    }
    println!(
        "\n{}",
        table(
            &["HOST", "WAS", "TARGET", "JOB", "NOW", "LAST EVENT"],
            &summary
        )
    );
    if let Some((host, _)) = chosen.last() {
        println!("\n$ mfctl hosts show {host}   (its job's timeline)");
        let shown = client::get_host(&mut admin, host).await?;
        if let Some(job) = &shown.job {
            for entry in &job.timeline {
                println!(
                    "  {}  {}",
                    super::output::timestamp(entry.at_unix_ms).unwrap_or_default(),
                    entry.text
                );
            }
        }
    }

    if args.keep {
        println!("\nThe demo keeps running. In another shell:");
        println!("  export MF_COORDINATOR={}", coordinator.admin_addr);
        println!("  export MF_PKI_DIR={}", pki.dir().display());
        println!("  mfctl hosts list --selector 'os=centos,dc=dc1'");
        println!("Press Ctrl-C to stop.");
        super::shutdown_signal().await;
    }
    fleet.shutdown().await;
    coordinator.stop().await;
    Ok(())
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
