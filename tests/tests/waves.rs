//! Waves end to end over real processes: a real coordinator, real agents on
//! emulated RHEL 7.9 host roots, driven only through `mfctl wave`; one wave
//! under a disruption budget and a maintenance window, one resumed after
//! SIGKILL of the coordinator mid-wave.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use mf_e2e::{Deployment, LEAPP_READY, Machine, set_scenario, wait_for};
use serde_json::Value;

const FIRST_BOOT_FAILS: &str = "failures = [\"first-boot-failure\"]\n";
const BLOCKER: &str = "[[findings]]\nkey = \"d35f6c6b1b1fa6924ef442e3670d90fa92f0d54b\"\ntitle = \"Missing required answers in the answer file\"\n\
                       severity = \"high\"\nblocking = true\n";

fn json(deployment: &Deployment, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let ran = deployment.mfctl(&args);
    if !ran.success {
        bail!("mfctl {}: {}", args.join(" "), ran.stderr);
    }
    Ok(serde_json::from_str(&ran.stdout)?)
}

fn ready(deployment: &Deployment, hosts: usize) -> Result<()> {
    wait_for(
        &format!("{hosts} connected hosts"),
        Duration::from_secs(30),
        || {
            let list = deployment.hosts("connected=true")?;
            Ok(list.len() == hosts && list.iter().all(|h| !h["facts"].is_null()))
        },
    )?;
    let ran = deployment.mfctl(&[
        "precheck",
        "--selector",
        "os=rhel",
        "--target",
        "rhel-8.10",
        "--wait",
    ]);
    if !ran.success {
        bail!("precheck: {}", ran.stderr);
    }
    Ok(())
}

/// Enrolls and starts each (name, application, scenario) machine with one
/// token, then waits until all are connected and pre-checked.
fn fleet(deployment: &Deployment, machines: &[(&str, &str, &str)]) -> Result<Vec<Machine>> {
    let token = deployment.token(&["--uses", &machines.len().to_string()])?;
    let started = machines
        .iter()
        .map(|(name, app, scenario)| deployment.rhel79_machine(&token, name, app, scenario))
        .collect::<Result<Vec<_>>>()?;
    ready(deployment, machines.len())?;
    Ok(started)
}

/// Runs mfctl and fails the test if it fails.
fn mfctl_ok(deployment: &Deployment, args: &[&str]) {
    let ran = deployment.mfctl(args);
    assert!(ran.success, "mfctl {}: {}", args.join(" "), ran.stderr);
}

fn wait_wave(deployment: &Deployment, name: &str, state: &str) -> Result<Value> {
    wait_for(
        &format!("wave {name} {state}"),
        Duration::from_secs(90),
        || Ok(json(deployment, &["wave", "status", name])?["state"] == state),
    )?;
    json(deployment, &["wave", "status", name])
}

/// "HH:00-HH:00 UTC" starting `from` hours from now, `hours` long.
fn daily_window(from: i64, hours: i64) -> String {
    let now_hour = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600) as i64;
    let start = (now_hour + from).rem_euclid(24);
    let end = (start + hours).rem_euclid(24);
    format!("{start:02}:00-{end:02}:00 UTC")
}

/// When each host's job started and ended (ms), from `hosts show`.
fn job_span(deployment: &Deployment, host: &str) -> Result<(i64, i64)> {
    let shown = json(deployment, &["hosts", "show", host])?;
    let timeline = shown["job"]["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let at = |entry: &Value| {
        humantime::parse_rfc3339(entry["at"].as_str().unwrap_or_default())
            .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64)
    };
    match (timeline.first(), timeline.last()) {
        (Some(first), Some(last)) => Ok((at(first)?, at(last)?)),
        _ => bail!("{host} has no job"),
    }
}

#[test]
fn a_wave_under_a_budget_and_a_window_with_a_failure_rolled_back() -> Result<()> {
    let deployment = Deployment::new()?;
    let _machines = fleet(
        &deployment,
        &[
            ("bill1", "billing", ""),
            ("bill2", "billing", ""),
            ("crm1", "crm", ""),
            ("crm2", "crm", FIRST_BOOT_FAILS),
            ("crm3", "crm", BLOCKER),
        ],
    )?;

    // A wave whose window is closed now: nothing starts, `why` says when it opens.
    let closed = daily_window(6, 2);
    let created = deployment.mfctl(&[
        "wave",
        "create",
        "night",
        "-l",
        "app=billing",
        "--target",
        "rhel-8.10",
        "--window",
        &closed,
    ]);
    assert!(created.success, "{}", created.stderr);
    let started = deployment.mfctl(&["wave", "start", "night"]);
    assert!(started.success, "{}", started.stderr);
    let why = json(&deployment, &["wave", "why", "night", "bill1.example.com"])?;
    let reason = why["reason"].as_str().unwrap();
    assert!(
        reason.contains("outside its maintenance windows; the next opens at"),
        "{reason}"
    );
    let status = json(&deployment, &["wave", "status", "night"])?;
    assert_eq!(status["counts"]["pending"], 2, "{status:#}");
    // Its hosts are taken: another wave leaves them out, and says why.
    let other = json(
        &deployment,
        &[
            "wave",
            "create",
            "day",
            "-l",
            "os=rhel",
            "--target",
            "rhel-8.10",
            "--dry-run",
        ],
    )?;
    let mut taken: Vec<(String, String)> = other["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["host_id"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(host, _)| host.starts_with("bill"))
        .collect();
    taken.sort();
    assert_eq!(
        taken,
        [
            ("bill1.example.com".into(), "already in wave night".into()),
            ("bill2.example.com".into(), "already in wave night".into()),
        ],
        "{other:#}"
    );
    let cancel = deployment.mfctl(&["wave", "cancel", "night"]);
    assert!(cancel.success, "{}", cancel.stderr);
    let status = json(&deployment, &["wave", "status", "night"])?;
    assert_eq!(status["state"], "cancelled");
    assert_eq!(status["counts"]["not-started"], 2);

    // Bad input is refused with the reason and records nothing.
    for (flag, value, expected) in [
        ("--budget", "app", "LABEL=LIMIT"),
        (
            "--window",
            "sat 22:00-sun 06:00 Mars/Olympus",
            "unknown time zone",
        ),
        ("--batches", "1,0", "batch of 0"),
    ] {
        let ran = deployment.mfctl(&[
            "wave",
            "create",
            "bad",
            "-l",
            "os=rhel",
            "--target",
            "rhel-8.10",
            flag,
            value,
        ]);
        assert!(
            !ran.success && ran.stderr.contains(expected),
            "{}",
            ran.stderr
        );
    }
    let list = json(&deployment, &["wave", "list"])?;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    // A wave that is over can be deleted.
    let deleted = deployment.mfctl(&["wave", "delete", "night"]);
    assert!(deleted.success, "{}", deleted.stderr);
    let list = json(&deployment, &["wave", "list"])?;
    assert!(list.as_array().unwrap().is_empty(), "{list:#}");

    // The real wave: a window open now, one host per application at a time.
    let open = daily_window(-1, 4);
    let created = deployment.mfctl(&[
        "wave",
        "create",
        "w1",
        "-l",
        "os=rhel",
        "--target",
        "rhel-8.10",
        "--canary",
        "1",
        "--batches",
        "100%",
        "--budget",
        "app=1",
        "--window",
        &open,
        "--expected",
        "10m",
        "--stage-errors",
        "1",
        "--total-errors",
        "1",
    ]);
    assert!(created.success, "{}", created.stderr);
    let plan = json(&deployment, &["wave", "plan", "w1"])?;
    let stages: Vec<usize> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_array().unwrap().len())
        .collect();
    assert_eq!(stages, [1, 3], "{plan:#}");
    assert_eq!(plan["excluded"][0]["host_id"], "crm3.example.com");
    assert!(
        plan["excluded"][0]["reason"].as_str().unwrap()
            == "blocked at pre-check: Missing required answers in the answer file",
        "{plan:#}"
    );
    assert!(plan["eta"].is_string(), "an ETA: {plan:#}");
    let text = deployment.mfctl(&["wave", "plan", "w1"]);
    assert!(
        text.stdout.contains("Stage 1 (canary): 1 host:"),
        "{}",
        text.stdout
    );

    let started = deployment.mfctl(&["wave", "start", "w1"]);
    assert!(started.success, "{}", started.stderr);
    let done = wait_wave(&deployment, "w1", "completed")?;
    assert_eq!(done["counts"]["succeeded"], 3, "{done:#}");
    assert_eq!(done["counts"]["rolled-back"], 1, "{done:#}");
    assert!(
        done["halted"].is_null(),
        "one failure is within budget: {done:#}"
    );
    assert_eq!(done["problems"][0]["host_id"], "crm2.example.com");

    // The budget held: jobs of one application never overlapped in time.
    let spans: BTreeMap<&str, (i64, i64)> = [
        "bill1.example.com",
        "bill2.example.com",
        "crm1.example.com",
        "crm2.example.com",
    ]
    .into_iter()
    .map(|h| Ok((h, job_span(&deployment, h)?)))
    .collect::<Result<_>>()?;
    for (a, b) in [
        ("bill1.example.com", "bill2.example.com"),
        ("crm1.example.com", "crm2.example.com"),
    ] {
        let ((a0, a1), (b0, b1)) = (spans[a], spans[b]);
        assert!(a1 <= b0 || b1 <= a0, "{a} and {b} ran together: {spans:?}");
    }
    let metric = deployment
        .coordinator
        .metric("mf_wave_hosts{state=\"succeeded\",wave=\"w1\"}")?;
    assert_eq!(metric, 3.0);
    let body = deployment.coordinator.metrics()?;
    for family in [
        "mf_wave_hosts{state=\"rolled-back\",wave=\"w1\"} 1",
        "mf_wave_stage{wave=\"w1\"} 2",
        "mf_wave_stages{wave=\"w1\"} 2",
        "mf_wave_budget_in_use{label=\"app\",wave=\"w1\"} 0",
        "mf_wave_dispatch_latency_seconds_count 4",
    ] {
        assert!(body.contains(family), "{family} missing from\n{body}");
    }
    mf_e2e::promtool_check(&body)?;
    // Every query of the Grafana dashboard finds its metric here.
    mf_e2e::dashboard_check(&body)?;
    Ok(())
}

#[test]
fn a_wave_resumes_exactly_after_sigkill_of_the_coordinator() -> Result<()> {
    let mut deployment = Deployment::new()?;
    // Upgrades take a second, so the coordinator dies with hosts in flight.
    let slow = "[durations]\nexecute_seconds = 1.0\n";
    let _machines = fleet(
        &deployment,
        &[
            ("a1", "a", slow),
            ("a2", "a", slow),
            ("b1", "b", slow),
            ("b2", "b", slow),
        ],
    )?;
    let created = deployment.mfctl(&[
        "wave",
        "create",
        "w",
        "-l",
        "os=rhel",
        "--target",
        "rhel-8.10",
        "--canary",
        "1",
        "--batches",
        "100%",
        "--max-parallel",
        "2",
    ]);
    assert!(created.success, "{}", created.stderr);
    let started = deployment.mfctl(&["wave", "start", "w"]);
    assert!(started.success, "{}", started.stderr);
    // A first kill right after the start was acknowledged: the start is durable.
    deployment.coordinator.kill9();
    deployment.coordinator.restart()?;
    let after = json(&deployment, &["wave", "status", "w"])?;
    assert_eq!(after["state"], "running", "{after:#}");
    // A second one with stage 2 in flight.
    wait_for("stage 2 in flight", Duration::from_secs(60), || {
        let status = json(&deployment, &["wave", "status", "w"])?;
        Ok(status["current_stage"] == 2 && status["counts"]["running"] == 2)
    })?;
    deployment.coordinator.kill9();
    deployment.coordinator.restart()?;
    // Read back where it was: the canary done, stage 2 under way, and the
    // hosts in flight waiting for their agents to come back, not given up.
    let after = json(&deployment, &["wave", "status", "w"])?;
    assert_eq!(after["state"], "running", "{after:#}");
    assert_eq!(after["current_stage"], 2, "{after:#}");
    assert!(
        after["counts"]["succeeded"].as_u64().unwrap() >= 1,
        "{after:#}"
    );
    assert!(after["counts"]["unreachable"].is_null(), "{after:#}");
    let done = wait_wave(&deployment, "w", "completed")?;
    // Four successes: a host started twice would have found itself on 8.10
    // already and ended aborted.
    assert_eq!(done["counts"]["succeeded"], 4, "{done:#}");
    for host in ["a1", "a2", "b1", "b2"] {
        let id = format!("{host}.example.com");
        let why = json(&deployment, &["wave", "why", "w", &id])?;
        let shown = json(&deployment, &["hosts", "show", &id])?;
        assert_eq!(why["job_id"], shown["job"]["id"], "{host}: one job");
    }
    upgrades_ran_once(&deployment)
}

/// `mfctl backup` mid-wave, the data directory destroyed, `mf-coordinator
/// restore` into a new one: hosts, tokens, operators, pinned labels, the
/// audit chain and the wave are all back, and the wave completes with each
/// upgrade run once.
#[test]
fn a_backup_restored_into_an_empty_data_dir_brings_everything_back_and_the_wave_goes_on()
-> Result<()> {
    let mut deployment = Deployment::new()?;
    let spare = deployment.token(&["--uses", "7"])?;
    // Upgrades take 3 s: the backup is taken inside one, so that nothing
    // is sent between the backup and the crash.
    let slow = "[durations]\nexecute_seconds = 3.0\n";
    let _machines = fleet(
        &deployment,
        &[
            ("a1", "a", slow),
            ("a2", "a", slow),
            ("b1", "b", slow),
            ("b2", "b", slow),
        ],
    )?;
    let people = deployment.path("people/olga");
    let requested = mf_e2e::run(
        "mfctl",
        &[
            "operator",
            "request",
            "--name",
            "olga",
            "--dir",
            people.to_str().unwrap(),
        ],
        &[],
    );
    assert!(requested.success, "{}", requested.stderr);
    let csr = people.join("olga.csr");
    let out = people.join("operator.pem");
    for args in [
        vec!["hosts", "label", "a1.example.com", "tier=gold"],
        vec![
            "operator",
            "add",
            "olga",
            "--role",
            "viewer",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        vec![
            "wave",
            "create",
            "w",
            "-l",
            "os=rhel",
            "--target",
            "rhel-8.10",
            "--canary",
            "1",
            "--batches",
            "100%",
            "--max-parallel",
            "2",
            // Hosts held after the second restore must not halt the wave:
            // the one left pending is still started, and shown aborted.
            "--stage-errors",
            "100%",
            "--total-errors",
            "100%",
        ],
        vec!["wave", "start", "w"],
    ] {
        let ran = deployment.mfctl(&args);
        assert!(ran.success, "mfctl {}: {}", args.join(" "), ran.stderr);
    }
    wait_for("stage 2 upgrading", Duration::from_secs(60), || {
        let status = json(&deployment, &["wave", "status", "w"])?;
        let upgrading = deployment
            .hosts("")?
            .iter()
            .filter(|h| h["job"]["state"] == "running" && h["job"]["phase"] == "execute")
            .count();
        Ok(status["current_stage"] == 2 && upgrading == 2)
    })?;
    let before = json(&deployment, &["wave", "status", "w"])?;

    let file = deployment.path("backups/mf.jsonl");
    std::fs::create_dir_all(file.parent().unwrap())?;
    let backup = json(&deployment, &["backup", file.to_str().unwrap()])?;
    assert!(backup["records"].as_u64().unwrap() > 10, "{backup}");
    assert!(file.exists() && !deployment.path("backups/mf.jsonl.partial").exists());

    // The disk is lost.
    deployment.coordinator.kill9();
    let data = deployment.path("data");
    std::fs::remove_dir_all(&data)?;
    let checked = mf_e2e::run(
        "mf-coordinator",
        &["restore", "--check", file.to_str().unwrap()],
        &[],
    );
    assert!(
        checked.success && checked.stdout.contains("a complete backup"),
        "{}",
        checked.stderr
    );
    let restored = mf_e2e::run(
        "mf-coordinator",
        &[
            "restore",
            "--data-dir",
            data.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        restored.success
            && restored
                .stdout
                .contains(&format!("restored {} records", backup["records"])),
        "{}{}",
        restored.stdout,
        restored.stderr
    );
    // Never over a store: the second restore is refused and changes nothing.
    let over = mf_e2e::run(
        "mf-coordinator",
        &[
            "restore",
            "--data-dir",
            data.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !over.success && over.stderr.contains("is not empty"),
        "{}",
        over.stderr
    );
    deployment.coordinator.restart()?;
    // A backup is never written over.
    let again = deployment.mfctl(&["backup", file.to_str().unwrap()]);
    assert!(
        !again.success && again.stderr.contains("exists"),
        "{}",
        again.stderr
    );

    let after = json(&deployment, &["wave", "status", "w"])?;
    assert_eq!(after["state"], "running", "{after:#}");
    assert_eq!(after["current_stage"], before["current_stage"], "{after:#}");
    let hosts = deployment.hosts("")?;
    assert_eq!(hosts.len(), 4);
    let gold = deployment.hosts("tier=gold")?;
    assert_eq!(gold.len(), 1, "the pinned label is back");
    let tokens = json(&deployment, &["token", "list"])?;
    let uses_left: Vec<u64> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uses_left"].as_u64().unwrap())
        .collect();
    assert!(
        uses_left.contains(&7) && uses_left.contains(&0),
        "{tokens:#}"
    );
    let operators = json(&deployment, &["operator", "list"])?;
    assert!(operators.to_string().contains("olga"), "{operators:#}");
    let verified = deployment.mfctl(&["audit", "verify"]);
    assert!(verified.success, "{}", verified.stderr);
    let audit = json(&deployment, &["audit", "list"])?;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["verb"] == "backup"),
        "the backup is in the chain it copied"
    );
    // The spare token still enrolls (the restored store is a working one).
    let _late = deployment.rhel79_machine(&spare, "c1", "c", "")?;

    let done = wait_wave(&deployment, "w", "completed")?;
    assert_eq!(done["counts"]["succeeded"], 4, "{done:#}");
    upgrades_ran_once(&deployment)?;

    // The same backup again, now older than the hosts: those it left in
    // flight went on since, so their jobs are held with the reason instead
    // of driven from stale records, and the one it left pending already
    // runs the target. Nothing runs twice.
    deployment.coordinator.kill9();
    std::fs::remove_dir_all(&data)?;
    let restored = mf_e2e::run(
        "mf-coordinator",
        &[
            "restore",
            "--data-dir",
            data.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(restored.success, "{}", restored.stderr);
    deployment.coordinator.restart()?;
    let stale = wait_wave(&deployment, "w", "completed")?;
    let problems = stale["problems"].as_array().unwrap();
    let held = problems
        .iter()
        .filter(|p| {
            p["detail"]
                .as_str()
                .unwrap()
                .contains("went on after the coordinator's records were saved")
        })
        .count();
    assert_eq!(held, 2, "{stale:#}");
    assert!(
        problems.iter().any(|p| p["detail"]
            .as_str()
            .unwrap()
            .contains("already runs RHEL 8.10")),
        "{stale:#}"
    );
    upgrades_ran_once(&deployment)?;
    let held_host = problems[0]["host_id"].as_str().unwrap();
    let retry = deployment.mfctl(&["hosts", "retry", held_host]);
    assert!(
        !retry.success && retry.stderr.contains("is not sent again"),
        "{}",
        retry.stderr
    );
    Ok(())
}

/// Each host's own journal shows its upgrade started once.
fn upgrades_ran_once(deployment: &Deployment) -> Result<()> {
    for host in ["a1", "a2", "b1", "b2"] {
        let journal = mf_e2e::journal(&deployment.path(&format!("roots/{host}")));
        let upgrades = journal
            .iter()
            .filter(|r| r["event"] == "started" && r["phase"]["phase"] == "execute")
            .count();
        assert_eq!(upgrades, 1, "{host}: {journal:#?}");
    }
    Ok(())
}

/// An operator steering real waves: a stage that waits for approval, a pause
/// that holds an approved stage, resume; a wave halted by its error budget
/// (counted in `mf_wave_halts_total`), its host fixed and retried, resumed to
/// completion. Every action is in the audit under the operator.
#[test]
fn an_operator_pauses_approves_resumes_and_retries_real_waves() -> Result<()> {
    let deployment = Deployment::new()?;
    let _machines = fleet(
        &deployment,
        &[
            ("can", "canary", ""),
            ("m1", "main", ""),
            ("m2", "main", ""),
            ("bad", "bad", FIRST_BOOT_FAILS),
            ("spare", "spare", ""),
        ],
    )?;
    let mfctl = |args: &[&str]| mfctl_ok(&deployment, args);
    mfctl(&[
        "wave",
        "create",
        "w",
        "-l",
        "app in (canary,main)",
        "--target",
        "rhel-8.10",
        "--canary-selector",
        "app=canary",
        "--batches",
        "100%",
        "--approve-stages",
    ]);
    mfctl(&["wave", "start", "w"]);
    wait_for("the canary done", Duration::from_secs(60), || {
        Ok(json(&deployment, &["wave", "status", "w"])?["counts"]["succeeded"] == 1)
    })?;
    let why = json(&deployment, &["wave", "why", "w", "m1.example.com"])?;
    assert!(
        why["reason"].as_str().unwrap().contains("approv"),
        "{why:#}"
    );
    // Paused, an approval lets nothing start until the resume.
    mfctl(&["wave", "pause", "w"]);
    mfctl(&["wave", "approve", "w"]);
    let paused = json(&deployment, &["wave", "status", "w"])?;
    assert_eq!(paused["state"], "paused", "{paused:#}");
    let why = json(&deployment, &["wave", "why", "w", "m1.example.com"])?;
    assert!(why["reason"].as_str().unwrap().contains("pause"), "{why:#}");
    assert_eq!(paused["counts"]["pending"], 2, "{paused:#}");
    mfctl(&["wave", "resume", "w"]);
    let done = wait_wave(&deployment, "w", "completed")?;
    assert_eq!(done["counts"]["succeeded"], 3, "{done:#}");

    // A wave whose error budget is 0 halts at its first failure: its canary
    // fails, and the host after it waits.
    mfctl(&[
        "wave",
        "create",
        "h",
        "-l",
        "app in (bad,spare)",
        "--canary-selector",
        "app=bad",
        "--batches",
        "100%",
        "--target",
        "rhel-8.10",
        "--stage-errors",
        "0",
        "--total-errors",
        "0",
    ]);
    mfctl(&["wave", "start", "h"]);
    let halted = wait_wave(&deployment, "h", "halted")?;
    assert!(
        halted["halted"].as_str().unwrap().contains("error budget"),
        "{halted:#}"
    );
    assert_eq!(halted["counts"]["pending"], 1, "{halted:#}");
    let metrics = deployment.coordinator.metrics()?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mf_wave_halts_total{")
                && l.contains("wave=\"h\"")
                && l.ends_with(" 1")),
        "no halt counted for wave h"
    );
    // The cause fixed on the host, the operator retries it and resumes.
    let root = deployment.path("roots/bad");
    set_scenario(&root, LEAPP_READY);
    mfctl(&["wave", "retry", "h", "bad.example.com"]);
    mfctl(&["wave", "resume", "h"]);
    let done = wait_wave(&deployment, "h", "completed")?;
    assert_eq!(done["counts"]["succeeded"], 2, "{done:#}");

    let audit = json(&deployment, &["audit", "list"])?;
    let verbs: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .map(|e| {
            format!(
                "{} {}",
                e["verb"].as_str().unwrap(),
                e["arguments"].as_str().unwrap()
            )
        })
        .collect();
    for action in ["Pause", "Approve", "Resume", "Retry"] {
        assert!(
            verbs.iter().any(|v| v.contains(action)),
            "{action} not audited: {verbs:#?}"
        );
    }
    Ok(())
}

/// UTC as a freeze writes it, to the second.
fn freeze_time(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(unix_ms as u64);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text.trim_end_matches('Z').to_string()
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A freeze holds every start until it ends, an operator skips a pending
/// host (it never runs, and cannot be skipped twice), and the stage after
/// the canary starts only once the soak after the canary's end is over;
/// `wave why` names the freeze and the soak while they hold.
#[test]
fn a_freeze_holds_starts_a_skipped_host_never_runs_and_the_next_stage_soaks() -> Result<()> {
    const SOAK_MS: i64 = 4_000;
    let deployment = Deployment::new()?;
    let _machines = fleet(
        &deployment,
        &[
            ("can", "canary", ""),
            ("m1", "main", ""),
            ("m2", "main", ""),
        ],
    )?;
    let mfctl = |args: &[&str]| mfctl_ok(&deployment, args);
    let freeze_ends = unix_ms_now() / 1000 * 1000 + 20_000;
    let freeze = format!(
        "{}..{} UTC",
        freeze_time(freeze_ends - 3_600_000),
        freeze_time(freeze_ends)
    );
    mfctl(&[
        "wave",
        "create",
        "w",
        "-l",
        "app in (canary,main)",
        "--target",
        "rhel-8.10",
        "--canary-selector",
        "app=canary",
        "--batches",
        "100%",
        "--soak",
        "4s",
        "--freeze",
        &freeze,
        "--expected",
        "1m",
    ]);
    mfctl(&["wave", "start", "w"]);
    let why = json(&deployment, &["wave", "why", "w", "can.example.com"])?;
    assert!(
        why["reason"].as_str().unwrap().contains("freeze"),
        "{why:#}"
    );
    let frozen = json(&deployment, &["wave", "status", "w"])?;
    assert_eq!(frozen["counts"]["pending"], 3, "{frozen:#}");

    mfctl(&["wave", "skip", "w", "m2.example.com"]);
    let again = deployment.mfctl(&["wave", "skip", "w", "m2.example.com"]);
    assert!(!again.success);
    assert!(again.stderr.contains("skipped"), "{}", again.stderr);

    wait_for("the canary done", Duration::from_secs(60), || {
        Ok(json(&deployment, &["wave", "status", "w"])?["counts"]["succeeded"] == 1)
    })?;
    let (canary_start, canary_end) = job_span(&deployment, "can.example.com")?;
    assert!(
        canary_start >= freeze_ends,
        "the canary started {} ms before the freeze ended",
        freeze_ends - canary_start
    );
    // Within the soak (its 4 s run from the canary's end), m1 waits for it.
    let why = json(&deployment, &["wave", "why", "w", "m1.example.com"])?;
    let reason = why["reason"].as_str().unwrap();
    assert!(
        reason.contains("soak")
            || json(&deployment, &["wave", "status", "w"])?["counts"]["pending"] == 0,
        "{why:#}"
    );
    let done = wait_wave(&deployment, "w", "completed")?;
    assert_eq!(done["counts"]["succeeded"], 2, "{done:#}");
    assert_eq!(done["counts"]["skipped"], 1, "{done:#}");
    let (m1_start, _) = job_span(&deployment, "m1.example.com")?;
    assert!(
        m1_start >= canary_end + SOAK_MS,
        "m1 started {} ms after the canary ended, inside the {SOAK_MS} ms soak",
        m1_start - canary_end
    );
    let skipped = mf_e2e::journal(&deployment.path("roots/m2"));
    assert!(
        !skipped
            .iter()
            .any(|r| r["event"] == "started" && r["phase"]["phase"] != "precheck"),
        "the skipped host ran commands: {skipped:#?}"
    );
    Ok(())
}
