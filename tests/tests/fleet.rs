//! Three real agents on host roots built from the real os-release samples,
//! one real coordinator, and mfctl: facts arrive, the coordinator is killed
//! with SIGKILL and restarted, and the agents come back by themselves.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use mf_e2e::{Daemon, Deployment, HostOs, host_root, run, wait_for};
use serde_json::Value;

fn by_id<'a>(hosts: &'a [Value], id: &str) -> &'a Value {
    hosts
        .iter()
        .find(|h| h["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing from {hosts:#?}"))
}

fn all_connected_with_facts(hosts: &[Value], n: usize) -> bool {
    hosts.len() == n
        && hosts
            .iter()
            .all(|h| h["connected"] == true && !h["facts"].is_null())
}

#[test]
fn three_agents_report_their_facts_and_survive_a_coordinator_kill() -> Result<()> {
    let mut deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "3"])?;
    let hosts = [
        ("web-01", HostOs::Centos7, "billing", "dc1"),
        ("db-01", HostOs::Rhel7, "billing", "dc2"),
        ("app-01", HostOs::Rhel8, "payroll", "dc1"),
    ];
    let mut agents = Vec::new();
    let mut configs = Vec::new();
    for (name, os, app, dc) in hosts {
        let root = host_root(
            &deployment.path(&format!("roots/{name}")),
            os,
            name,
            "example.com",
        );
        let state = deployment.path(&format!("state/{name}"));
        let enrolled = deployment.enroll(&token, &state, &root, &[]);
        assert!(enrolled.success, "enroll {name}: {}", enrolled.stderr);
        assert_eq!(
            enrolled.stdout.trim(),
            format!("enrolled as {name}.example.com")
        );
        // Settings from a config file (as packaged), one label from a flag on top.
        let config = deployment.path(&format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\nhost_root = {root:?}\nfacts_interval = \"1s\"\n\
                 [labels]\napp = \"{app}\"\ndc = \"{dc}\"\n"
            ),
        )?;
        agents.push(run_agent(&deployment, name, &config)?);
        configs.push((name, config));
    }

    wait_for(
        "three connected hosts with facts",
        Duration::from_secs(30),
        || Ok(all_connected_with_facts(&deployment.hosts("")?, 3)),
    )?;
    let hosts = deployment.hosts("")?;
    let expected = [
        (
            "web-01.example.com",
            "centos",
            "CentOS Linux",
            "7.1",
            "3.10.0-229.el7.x86_64",
            "billing",
        ),
        (
            "db-01.example.com",
            "rhel",
            "Red Hat Enterprise Linux Server",
            "7.6",
            "3.10.0-957.el7.x86_64",
            "billing",
        ),
        (
            "app-01.example.com",
            "rhel",
            "Red Hat Enterprise Linux",
            "8.10",
            "4.18.0-553.el8_10.x86_64",
            "payroll",
        ),
    ];
    for (id, os, name, version, kernel, app) in expected {
        let host = by_id(&hosts, id);
        assert_eq!(
            host["os"],
            serde_json::json!({"id": os, "name": name, "version": version}),
            "{id}"
        );
        assert_eq!(host["facts"]["kernel"], kernel, "{id}");
        assert_eq!(host["facts"]["arch"], "x86_64", "{id}");
        assert_eq!(host["labels"]["app"], app, "{id}");
        assert_eq!(host["labels"]["tier"], "backend", "{id}");
        assert!(host["last_seen"].is_string(), "{id}");
        // rpm cannot run for a prepared tree: unknown, with the reason.
        let unknown = host["facts"]["unknown"].as_array().unwrap();
        assert!(
            unknown.iter().any(|u| u["fact"] == "packages"
                && u["reason"]
                    .as_str()
                    .unwrap()
                    .contains("not the running system")),
            "{id}: {unknown:?}"
        );
    }

    // Selectors over facts and labels.
    let ids = |selector: &str| -> Result<Vec<String>> {
        let mut ids: Vec<String> = deployment
            .hosts(selector)?
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        Ok(ids)
    };
    assert_eq!(ids("os=rhel")?, ["app-01.example.com", "db-01.example.com"]);
    assert_eq!(ids("app=billing,dc in (dc2)")?, ["db-01.example.com"]);
    assert_eq!(
        ids("version notin (7.1,7.6),connected=true")?,
        ["app-01.example.com"]
    );
    let bad = deployment.mfctl(&["hosts", "list", "--selector", "os in rhel"]);
    assert!(!bad.success);
    assert!(
        bad.stderr.contains("InvalidArgument") && bad.stderr.contains("expected '('"),
        "{}",
        bad.stderr
    );

    let show = deployment.mfctl(&["hosts", "show", "web-01.example.com"]);
    assert!(show.success, "{}", show.stderr);
    let field = |name: &str| {
        show.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} not in\n{}", show.stdout))
            .to_string()
    };
    assert_eq!(field("Connected"), "yes");
    assert_eq!(field("OS"), "centos 7.1 (CentOS Linux)");
    assert_eq!(field("Kernel"), "3.10.0-229.el7.x86_64");
    assert!(field("Free /var").contains(" of "), "{}", show.stdout);
    let missing = deployment.mfctl(&["hosts", "show", "nope.example.com"]);
    assert!(
        !missing.success && missing.stderr.contains("NotFound"),
        "{}",
        missing.stderr
    );

    // A changed fact reaches the coordinator without a reconnect (interval 1s).
    std::fs::write(
        deployment.path("roots/web-01/proc/sys/kernel/osrelease"),
        "3.10.0-1160.119.1.el7.x86_64\n",
    )?;
    wait_for(
        "the new kernel to be reported",
        Duration::from_secs(15),
        || {
            let hosts = deployment.hosts("id=web-01.example.com")?;
            Ok(hosts
                .first()
                .is_some_and(|h| h["facts"]["kernel"] == "3.10.0-1160.119.1.el7.x86_64"))
        },
    )?;
    assert!(
        deployment
            .coordinator
            .metric("mf_stream_messages_total{direction=\"in\",kind=\"facts\"}")?
            >= 1.0
    );

    // Facts are not flushed on their own: the inventory's next periodic
    // flush (every 5 s) makes them durable. Wait for one to happen after
    // the new kernel was stored, then take the agents away (so that nothing
    // can send the facts again) and kill the coordinator.
    let flushes = "mf_store_flush_seconds_count";
    let before = deployment.coordinator.metric(flushes)?;
    wait_for("a flush after the facts", Duration::from_secs(15), || {
        Ok(deployment.coordinator.metric(flushes)? > before)
    })?;
    drop(agents);
    deployment.coordinator.kill9();
    deployment.coordinator.restart()?;
    let after = deployment.hosts("")?;
    assert_eq!(after.len(), 3, "inventory after restart: {after:#?}");
    for (id, os, _, version, _, _) in expected {
        let host = by_id(&after, id);
        assert_eq!(host["connected"], false, "{id}: the facts are the store's");
        assert_eq!(
            (host["os"]["id"].as_str(), host["os"]["version"].as_str()),
            (Some(os), Some(version))
        );
        assert_eq!(host["facts"]["arch"], "x86_64", "{id} lost its facts");
    }
    assert_eq!(
        by_id(&after, "web-01.example.com")["facts"]["kernel"],
        "3.10.0-1160.119.1.el7.x86_64",
        "the last facts before the crash were durable"
    );
    let agents = configs
        .iter()
        .map(|(name, config)| run_agent(&deployment, name, config))
        .collect::<Result<Vec<_>>>()?;
    wait_for(
        "the agents to reconnect by themselves",
        Duration::from_secs(30),
        || Ok(all_connected_with_facts(&deployment.hosts("")?, 3)),
    )?;
    assert_eq!(deployment.coordinator.metric("mf_agents_connected")?, 3.0);
    assert_eq!(
        deployment
            .coordinator
            .metric("mf_hosts{os=\"rhel\",version=\"8.10\"}")?,
        1.0
    );
    drop(agents);
    Ok(())
}

/// `mf-agent run` with the settings of `config`, one label from a flag on top.
fn run_agent(deployment: &Deployment, name: &str, config: &std::path::Path) -> Result<Daemon> {
    Daemon::spawn(
        "mf-agent",
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--label",
            "tier=backend",
        ],
        &deployment.path(&format!("{name}.log")),
    )
}

#[test]
fn facts_are_printed_without_a_coordinator() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = host_root(dir.path(), HostOs::Centos7, "lonely", "example.com");
    let ran = run(
        "mf-agent",
        &[
            "facts",
            "--host-root",
            root.to_str().unwrap(),
            "--label",
            "app=x",
        ],
        &[],
    );
    assert!(ran.success, "{}", ran.stderr);
    let facts: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!(facts["os"]["id"], "centos");
    assert_eq!(facts["os"]["version"], "7.1");
    assert_eq!(facts["fqdn"], "lonely.example.com");
    assert_eq!(facts["labels"]["app"], "x");

    std::fs::write(root.join("etc/os-release"), "this is not os-release\n")?;
    let ran = run(
        "mf-agent",
        &["facts", "--host-root", root.to_str().unwrap()],
        &[],
    );
    assert!(
        ran.success,
        "a garbled file must not crash the agent: {}",
        ran.stderr
    );
    let facts: Value = serde_json::from_str(&ran.stdout)?;
    assert!(facts["os"].is_null());
    let reason = facts["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["fact"] == "os")
        .unwrap()["reason"]
        .clone();
    assert!(
        reason.as_str().unwrap().contains("/etc/os-release"),
        "{reason}"
    );

    let bad_label = run(
        "mf-agent",
        &[
            "facts",
            "--host-root",
            root.to_str().unwrap(),
            "--label",
            "bad label",
        ],
        &[],
    );
    assert!(
        !bad_label.success && bad_label.stderr.contains("invalid label"),
        "{}",
        bad_label.stderr
    );
    Ok(())
}

#[test]
fn a_second_coordinator_on_the_same_data_dir_is_refused() -> Result<()> {
    let deployment = Deployment::new()?;
    let mut args = deployment.coordinator.args().to_vec();
    for flag in ["--agent-listen", "--admin-listen", "--metrics-listen"] {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = "127.0.0.1:0".to_string();
    }
    let output = Command::new(mf_e2e::bin("mf-coordinator"))
        .args(&args)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("is in use by another coordinator"),
        "{stderr}"
    );
    // The first one is untouched.
    assert!(deployment.hosts("").is_ok());
    Ok(())
}

#[test]
fn the_metrics_pass_promtool() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&[])?;
    let root = host_root(&deployment.path("root"), HostOs::Rhel8, "m1", "example.com");
    let ok = deployment.enroll(&token, &deployment.path("state"), &root, &[]);
    assert!(ok.success, "{}", ok.stderr);
    let refused = deployment.enroll(
        &token,
        &deployment.path("state2"),
        &root,
        &["--host-id", "m2"],
    );
    assert!(!refused.success);

    let body = deployment.coordinator.metrics()?;
    for family in [
        "mf_agents_connected",
        "mf_hosts{",
        "mf_enrollments_total{result=\"ok\"} 1",
        "mf_enrollments_total{result=\"exhausted_token\"} 1",
        "mf_stream_messages_total{direction=\"in\",kind=\"heartbeat\"} 0",
        "mf_store_flush_seconds_bucket",
        "mf_build_info{",
    ] {
        assert!(body.contains(family), "{family} missing from\n{body}");
    }
    mf_e2e::promtool_check(&body)?;
    let (status, health) = mf_e2e::http_get(deployment.coordinator.metrics_port, "/healthz")?;
    assert!(status.contains("200") && health.trim() == "ok");
    Ok(())
}

#[test]
fn the_alert_rules_pass_promtool() -> Result<()> {
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus-alerts.yml");
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()?;
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
