//! `mfctl hosts list` and `mfctl hosts show`: the inventory as a table or JSON.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use mf_proto::v1 as pb;
use serde::Serialize;

use super::Format;
use super::client::{self, AdminClient};
use super::output::{self, ago, print_document, table, timestamp, watched_document};
use mf_core::facts::{Facts, OsInfo};

/// One host in JSON output.
#[derive(Debug, Serialize)]
pub struct HostJson {
    pub id: String,
    pub connected: bool,
    pub os: Option<OsInfo>,
    pub labels: BTreeMap<String, String>,
    /// Labels an admin pinned (they win over the agent's; scopes see only these).
    pub pinned_labels: BTreeMap<String, String>,
    pub last_seen: Option<String>,
    pub enrolled: Option<String>,
    pub peer_address: String,
    /// When its agent's certificate expires (it renews it before).
    pub certificate_expires: Option<String>,
    /// When its certificate was revoked, if it was.
    pub revoked: Option<String>,
    /// The host's clock minus the coordinator's, as last measured.
    pub clock_skew_seconds: f64,
    pub facts: Option<Facts>,
    /// ready, blocked, error, unknown or rebuild (no in-place path).
    pub readiness: &'static str,
    pub readiness_reason: Option<String>,
    pub precheck: Option<PrecheckJson>,
    pub job: Option<serde_json::Value>,
}

/// The latest pre-check in JSON output.
#[derive(Debug, Serialize)]
pub struct PrecheckJson {
    pub target: String,
    pub step: String,
    pub readiness: &'static str,
    pub detail: String,
    pub requested: Option<String>,
    pub finished: Option<String>,
    /// A newer pre-check requested or running (its target); the fields
    /// above are the latest outcome until it has its own.
    pub in_flight: Option<String>,
    pub findings: Vec<serde_json::Value>,
}

impl From<&pb::Host> for HostJson {
    fn from(host: &pb::Host) -> Self {
        // The coordinator validated these facts on the way in.
        let facts = host.facts.clone().map(crate::wire::facts_from_wire);
        HostJson {
            id: host.id.clone(),
            connected: host.connected,
            os: facts.as_ref().and_then(|f| f.os.clone()),
            labels: facts.as_ref().map(|f| f.labels.clone()).unwrap_or_default(),
            pinned_labels: host.pinned_labels.clone().into_iter().collect(),
            last_seen: timestamp(host.last_seen_unix_ms),
            enrolled: timestamp(host.enrolled_unix_ms),
            peer_address: host.peer_address.clone(),
            certificate_expires: timestamp(host.cert_not_after_unix_ms),
            revoked: timestamp(host.revoked_unix_ms),
            clock_skew_seconds: host.clock_skew_ms as f64 / 1000.0,
            facts,
            readiness: super::readiness::readiness_label(host.readiness),
            readiness_reason: Some(host.readiness_reason.clone()).filter(|r| !r.is_empty()),
            job: host.job.as_ref().map(super::jobs::to_json),
            precheck: host.precheck.as_ref().map(|p| PrecheckJson {
                target: p.target.clone(),
                step: p.step.clone(),
                readiness: super::readiness::readiness_label(p.readiness),
                detail: p.detail.clone(),
                requested: timestamp(p.requested_unix_ms),
                finished: timestamp(p.finished_unix_ms),
                in_flight: (!p.in_flight_target.is_empty()).then(|| p.in_flight_target.clone()),
                findings: p
                    .findings
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "source": crate::wire::finding_source(f.source),
                            "key": f.key,
                            "severity": super::readiness::severity_label(f.severity),
                            "blocking": f.blocking,
                            "title": f.title,
                            "summary": f.summary,
                            "remediations": f.remediations.iter().map(super::readiness::remediation_text).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            }),
        }
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn print_list(hosts: &[pb::Host], format: Format) -> Result<()> {
    let views: Vec<HostJson> = hosts.iter().map(HostJson::from).collect();
    if print_document(&views, format)? {
        return Ok(());
    }
    println!("{}", list_text(hosts, format));
    Ok(())
}

/// The hosts as a table; the wide one adds readiness, job and peer.
pub fn list_text(hosts: &[pb::Host], format: Format) -> String {
    let wide = format == Format::Wide;
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|host| {
            let view = HostJson::from(host);
            let os = view.os.clone().unwrap_or_default();
            let known = |s: String| if s.is_empty() { "?".to_string() } else { s };
            let mut row = vec![
                view.id.clone(),
                if view.connected { "yes" } else { "no" }.into(),
                known(os.id),
                known(os.version),
                ago(host.last_seen_unix_ms, now),
            ];
            if wide {
                row.extend([
                    readiness_text(host),
                    host.job.as_ref().map_or("-".into(), super::jobs::summary),
                    view.peer_address.clone(),
                ]);
            }
            row.push(labels_text(&view.labels));
            row
        })
        .collect();
    let mut header = vec!["HOST", "CONNECTED", "OS", "VERSION", "LAST SEEN"];
    if wide {
        header.extend(["READINESS", "JOB", "PEER"]);
    }
    header.push("LABELS");
    let connected = hosts.iter().filter(|h| h.connected).count();
    format!(
        "{}\n{} host{}, {connected} connected",
        table(&header, &rows),
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    )
}

/// "ready for rhel-8.10", "blocked for rhel-8.10 (re-checking for rhel-9.6)", "-".
fn readiness_text(host: &pb::Host) -> String {
    if host.readiness == i32::from(pb::Readiness::Rebuild) {
        return "rebuild".into();
    }
    let Some(p) = host.precheck.as_ref() else {
        return "-".into();
    };
    let mut text = if p.finished_unix_ms > 0 {
        format!(
            "{} for {}",
            super::readiness::readiness_label(p.readiness),
            p.target
        )
    } else {
        "unknown".into()
    };
    if !p.in_flight_target.is_empty() {
        text.push_str(&format!(" (checking {})", p.in_flight_target));
    }
    text
}

/// "in step (within 1s)", "2days 3h ahead of the coordinator".
fn clock_text(skew_ms: i64) -> String {
    if skew_ms.abs() < 1000 {
        return "in step with the coordinator (within 1s)".into();
    }
    // To the second: the message's transit is not the skew.
    let off =
        humantime::format_duration(Duration::from_secs((skew_ms.unsigned_abs() + 500) / 1000));
    let side = if skew_ms > 0 { "ahead of" } else { "behind" };
    format!("{off} {side} the coordinator")
}

fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

pub fn print_one(host: &pb::Host, format: Format) -> Result<()> {
    let json = HostJson::from(host);
    if print_document(&json, format)? {
        return Ok(());
    }
    let mut lines: Vec<(String, String)> = vec![
        ("Host".into(), json.id.clone()),
        (
            "Connected".into(),
            if json.connected {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("Peer".into(), json.peer_address.clone()),
        (
            "Enrolled".into(),
            json.enrolled.clone().unwrap_or_else(|| "?".into()),
        ),
        (
            "Last seen".into(),
            json.last_seen.clone().unwrap_or_else(|| "never".into()),
        ),
        ("Labels".into(), labels_text(&json.labels)),
        ("Pinned labels".into(), labels_text(&json.pinned_labels)),
        ("Clock".into(), clock_text(host.clock_skew_ms)),
        (
            "Certificate".into(),
            match (&json.revoked, &json.certificate_expires) {
                (Some(at), _) => format!("revoked at {at}: enroll the host again to bring it back"),
                (None, Some(at)) => format!("expires {at} (the agent renews it before)"),
                (None, None) => "?".into(),
            },
        ),
    ];
    if let Some(f) = &json.facts {
        let os = f.os.clone().unwrap_or_default();
        let known = |s: &str| {
            if s.is_empty() {
                "?".to_string()
            } else {
                s.to_string()
            }
        };
        lines.extend([
            (
                "OS".into(),
                format!(
                    "{} {} ({})",
                    known(&os.id),
                    known(&os.version),
                    known(&os.name)
                ),
            ),
            ("Kernel".into(), known(&f.kernel)),
            ("Arch".into(), known(&f.arch)),
            ("Hostname".into(), known(&f.hostname)),
            ("FQDN".into(), known(&f.fqdn)),
            ("Machine id".into(), known(&f.machine_id)),
            ("Boot id".into(), known(&f.boot_id)),
            (
                "Uptime".into(),
                f.uptime_seconds.map_or("?".into(), |s| {
                    format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
                }),
            ),
            ("CPUs".into(), f.cpus.map_or("?".into(), |c| c.to_string())),
            ("Memory".into(), f.memory_bytes.map_or("?".into(), bytes)),
            (
                "Packages".into(),
                f.package_count.map_or("?".into(), |c| c.to_string()),
            ),
            ("Agent".into(), known(&f.agent_version)),
        ]);
        for fs in &f.filesystems {
            lines.push((
                format!("Free {}", fs.path),
                format!("{} of {}", bytes(fs.free_bytes), bytes(fs.total_bytes)),
            ));
        }
        for (name, version) in &f.packages {
            lines.push((format!("Package {name}"), version.clone()));
        }
        for unknown in &f.unknown {
            lines.push((format!("Unknown {}", unknown.fact), unknown.reason.clone()));
        }
    } else {
        lines.push(("Facts".into(), "none reported yet".into()));
    }
    if let Some(p) = &host.precheck {
        lines.push((
            "Pre-check".into(),
            format!(
                "{} for {} ({})",
                super::readiness::readiness_label(p.readiness),
                p.target,
                p.step
            ),
        ));
        lines.push(("Pre-check detail".into(), p.detail.clone()));
        if !p.in_flight_target.is_empty() {
            lines.push((
                "Pre-check running".into(),
                format!(
                    "for {} since {} (the outcome above stays until it ends)",
                    p.in_flight_target,
                    timestamp(p.in_flight_requested_unix_ms).unwrap_or_default()
                ),
            ));
        }
        for f in &p.findings {
            lines.push((
                format!("Finding {}", if f.blocking { "(blocking)" } else { "" }),
                format!(
                    "[{}] {}: {}",
                    super::readiness::severity_label(f.severity),
                    crate::wire::finding_source(f.source),
                    f.title
                ),
            ));
            for r in &f.remediations {
                lines.push((
                    "  remediation".into(),
                    super::readiness::remediation_text(r),
                ));
            }
        }
    }
    if let Some(job) = &host.job {
        lines.extend(super::jobs::lines(job, host.connected));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        println!("{key:<width$}  {value}");
    }
    Ok(())
}

/// What a watch of the list compares: the hosts' state, not their heartbeats.
fn watched_state(hosts: &[pb::Host]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| {
            let view = HostJson::from(h);
            let os = view.os.unwrap_or_default();
            format!(
                "{} {} {} {} {} {} {}",
                h.id,
                h.connected,
                os.id,
                os.version,
                labels_text(&view.labels),
                readiness_text(h),
                h.job.as_ref().map_or(String::new(), super::jobs::summary),
            )
        })
        .collect()
}

/// `hosts list --watch`: the list again whenever a host's state changes;
/// a table redrawn in place on a terminal, a document per change otherwise.
pub async fn watch(
    admin: &mut AdminClient,
    selector: &str,
    interval: Duration,
    format: Format,
) -> Result<()> {
    let terminal = std::io::stdout().is_terminal() && format.is_table();
    let mut last = None;
    loop {
        let hosts = client::list_hosts(admin, selector).await?;
        let state = watched_state(&hosts);
        if last.as_ref() != Some(&state) {
            let text = if format.is_table() {
                let at = timestamp(output::now_unix_ms()).unwrap_or_default();
                format!("{at}\n{}", list_text(&hosts, format))
            } else {
                let views: Vec<HostJson> = hosts.iter().map(HostJson::from).collect();
                watched_document(&views, format)?
            };
            let mut out = std::io::stdout().lock();
            if terminal {
                writeln!(out, "\x1b[2J\x1b[H{text}")?;
            } else if format.is_table() {
                writeln!(out, "{text}\n")?;
            } else {
                writeln!(out, "{text}")?;
            }
            out.flush()?;
            last = Some(state);
        }
        tokio::time::sleep(interval).await;
    }
}
