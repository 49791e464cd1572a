//! mfctl refuses bad input with the reason and changes nothing, checked over
//! the real binary: a token for zero hosts, a URL given as the coordinator's
//! name.

use anyhow::Result;
use mf_e2e::{Deployment, run};

#[test]
fn a_token_for_no_host_is_refused_at_the_command_line() -> Result<()> {
    let deployment = Deployment::new()?;
    let ran = deployment.mfctl(&["token", "create", "--uses", "0"]);
    assert!(!ran.success, "{}", ran.stdout);
    assert_eq!(ran.code, Some(2), "a usage error: {}", ran.stderr);
    assert!(ran.stderr.contains("--uses"), "{}", ran.stderr);
    let ran = deployment.mfctl(&["token", "create", "--uses", "1"]);
    assert!(ran.success, "one use is fine: {}", ran.stderr);
    Ok(())
}

#[test]
fn pki_init_refuses_a_url_as_a_name_and_writes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let ran = run(
        "mfctl",
        &[
            "pki",
            "init",
            "--dir",
            pki.to_str().unwrap_or_default(),
            "--name",
            "https://coordinator.example.com",
        ],
        &[],
    );
    assert!(!ran.success, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("is not a DNS name or an IP address"),
        "{}",
        ran.stderr
    );
    assert!(!pki.exists(), "nothing is written, not even the directory");
    Ok(())
}

#[test]
fn the_coordinator_address_may_be_a_url_and_wrong_ones_are_named() -> Result<()> {
    let deployment = Deployment::new()?;
    let admin = deployment.coordinator.admin_address();
    for address in [format!("https://{admin}"), format!("https://{admin}/")] {
        let ran = deployment.mfctl(&["--coordinator", &address, "hosts", "list"]);
        assert!(ran.success, "{address}: {}", ran.stderr);
    }
    let ran = deployment.mfctl(&["--coordinator", &format!("http://{admin}"), "hosts", "list"]);
    assert!(ran.stderr.contains("speaks TLS only"), "{}", ran.stderr);

    let agent_port = deployment.coordinator.agent_address();
    let ran = deployment.mfctl(&["--coordinator", &agent_port, "hosts", "list"]);
    assert!(!ran.success);
    assert!(ran.stderr.contains("agent port"), "{}", ran.stderr);

    // A port nobody listens on: bound, then closed, by this test.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let ran = deployment.mfctl(&["--coordinator", &unused.to_string(), "hosts", "list"]);
    assert!(!ran.success);
    assert!(
        ran.stderr.contains(&format!("nothing listens at {unused}")),
        "{}",
        ran.stderr
    );
    Ok(())
}

#[test]
fn exit_codes_tell_not_found_refused_and_unavailable_apart() -> Result<()> {
    let deployment = Deployment::new()?;
    let missing = deployment.mfctl(&["hosts", "show", "no-such-host.example.com"]);
    assert_eq!(missing.code, Some(3), "not found: {}", missing.stderr);
    let refused = deployment.mfctl(&["token", "create", "--ttl", "40d"]);
    assert_eq!(refused.code, Some(4), "refused: {}", refused.stderr);
    // A target mfctl knows to be unsupported is a usage error, before any call.
    let usage = deployment.mfctl(&["precheck", "--target", "rhel-9.5"]);
    assert_eq!(usage.code, Some(2), "usage: {}", usage.stderr);
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let down = deployment.mfctl(&["--coordinator", &unused.to_string(), "hosts", "list"]);
    assert_eq!(down.code, Some(5), "unavailable: {}", down.stderr);
    let help = deployment.mfctl(&["--help"]);
    assert!(
        help.stdout.contains("Exit codes: 0 success"),
        "{}",
        help.stdout
    );
    Ok(())
}

/// The daemons refuse bad files at start, naming the file and the fix: the
/// agent an exposed credentials file or an unknown key in its configuration,
/// the coordinator a private key that others can read.
#[test]
fn bad_files_are_refused_at_start_with_the_file_and_the_fix() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let root = mf_e2e::host_root(
        &dir.path().join("root"),
        mf_e2e::HostOs::Centos79,
        "c7",
        "example.com",
    );
    mf_e2e::set_scenario(&root, "");
    let ini = root.join("etc/convert2rhel-site.ini");
    std::fs::write(
        &ini,
        "[subscription_manager]\nactivation_key = k\norg = o\n",
    )?;
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644))?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[convert2rhel]\nconfig_file = \"/etc/convert2rhel-site.ini\"\n",
    )?;
    let agent = |config: &std::path::Path| {
        run(
            "mf-sim",
            &[
                "run",
                "--state-dir",
                dir.path().join("state").to_str().unwrap_or_default(),
                "--host-root",
                root.to_str().unwrap_or_default(),
                "--config",
                config.to_str().unwrap_or_default(),
            ],
            &[],
        )
    };
    let ran = agent(&config);
    assert!(!ran.success);
    assert!(
        ran.stderr
            .contains("/etc/convert2rhel-site.ini is readable by group or others")
            && ran.stderr.contains("chmod 600"),
        "{}",
        ran.stderr
    );
    std::fs::write(&config, "[convert2rhel]\nconfig_fle = \"/x\"\n")?;
    let ran = agent(&config);
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("agent.toml")
            && ran.stderr.contains("line 2, column 1")
            && ran.stderr.contains("config_fle"),
        "{}",
        ran.stderr
    );
    let coordinator_config = dir.path().join("coordinator.toml");
    std::fs::write(
        &coordinator_config,
        "data_dir = \"/x\"\nheartbeat_interval = 30\n",
    )?;
    let ran = run(
        "mf-coordinator",
        &["--config", coordinator_config.to_str().unwrap_or_default()],
        &[],
    );
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("coordinator.toml") && ran.stderr.contains("line 2"),
        "a line, not a character offset: {}",
        ran.stderr
    );

    let pki = dir.path().join("pki");
    let coordinator_args = |pki: &std::path::Path| {
        run(
            "mf-coordinator",
            &[
                "--data-dir",
                dir.path().join("data").to_str().unwrap_or_default(),
                "--pki-dir",
                pki.to_str().unwrap_or_default(),
                "--agent-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            &[],
        )
    };
    // No PKI yet: the missing CA is named, with the command that makes it.
    let ran = coordinator_args(&pki);
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("ca.pem does not exist") && ran.stderr.contains("mfctl pki init"),
        "{}",
        ran.stderr
    );
    let init = run(
        "mfctl",
        &["pki", "init", "--dir", pki.to_str().unwrap_or_default()],
        &[],
    );
    assert!(init.success, "{}", init.stderr);
    let key = pki.join("coordinator-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))?;
    let ran = coordinator_args(&pki);
    assert!(!ran.success);
    assert!(
        ran.stderr
            .contains("coordinator-key.pem is readable by group or others")
            && ran.stderr.contains("chmod 600"),
        "{}",
        ran.stderr
    );
    Ok(())
}

/// A second agent on the same state directory is refused while the first
/// runs (it would replace the live session and write the same journal).
#[test]
fn a_second_agent_on_one_state_dir_is_refused() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&[])?;
    let root = mf_e2e::host_root(
        &deployment.path("roots/solo"),
        mf_e2e::HostOs::Rhel79,
        "solo",
        "example.com",
    );
    let state = deployment.path("state/solo");
    let enrolled = deployment.enroll(&token, &state, &root, &[]);
    assert!(enrolled.success, "{}", enrolled.stderr);
    let args = [
        "run",
        "--state-dir",
        state.to_str().unwrap_or_default(),
        "--host-root",
        root.to_str().unwrap_or_default(),
    ];
    let _first = mf_e2e::Daemon::spawn("mf-agent", &args, &deployment.path("solo.log"))?;
    mf_e2e::wait_for(
        "the first agent",
        std::time::Duration::from_secs(20),
        || Ok(deployment.hosts("connected=true")?.len() == 1),
    )?;
    let second = run("mf-agent", &args, &[]);
    assert!(!second.success);
    assert!(
        second.stderr.contains("another mf-agent runs on") && second.stderr.contains("pid"),
        "{}",
        second.stderr
    );
    assert_eq!(
        deployment.hosts("connected=true")?.len(),
        1,
        "the first stays"
    );
    Ok(())
}

/// `mfctl ... | head`: when the reader goes away, mfctl ends quietly with
/// the shell's code for a broken pipe, not with a panic.
#[test]
fn a_closed_pipe_ends_mfctl_quietly() -> Result<()> {
    let mut child = std::process::Command::new(mf_e2e::bin("mfctl"))
        .args(["completion", "zsh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

/// A decommissioned host is forgotten: gone from the inventory, its session
/// ended with the reason (the agent says its certificate was revoked), its
/// certificate refused at the handshake from then on; a second delete is
/// "not found" (exit 3).
#[test]
fn a_deleted_host_is_forgotten_and_its_agent_refused() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&[])?;
    let mut agent = deployment.start_agent(&token, "gone", mf_e2e::HostOs::Rhel79, None, &[])?;
    mf_e2e::wait_for("the agent", std::time::Duration::from_secs(20), || {
        Ok(deployment.hosts("connected=true")?.len() == 1)
    })?;
    let deleted = deployment.mfctl(&["hosts", "delete", "gone.example.com"]);
    assert!(deleted.success, "{}", deleted.stderr);
    assert!(
        deleted.stdout.contains("deleted host gone.example.com"),
        "{}",
        deleted.stdout
    );
    // The session's last message says why, so the agent knows at once
    // (a refused TLS 1.3 handshake reaches tonic's caller as its alert only
    // some of the time).
    let log = deployment.path("gone.log");
    let said = mf_e2e::wait_for(
        "the agent to say it was revoked",
        std::time::Duration::from_secs(10),
        || {
            let log = std::fs::read_to_string(&log)?;
            Ok(log.contains("has revoked this agent's certificate")
                && log.contains("the host was deleted"))
        },
    );
    if let Err(e) = said {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        anyhow::bail!("{e}; the agent's log:\n{log}");
    }
    // Started again, the agent connects at once: refused at the handshake.
    agent.kill9();
    let state = deployment.path("state/gone");
    let root = deployment.path("roots/gone");
    let _again = mf_e2e::Daemon::spawn(
        "mf-agent",
        &[
            "run",
            "--state-dir",
            state.to_str().unwrap_or_default(),
            "--host-root",
            root.to_str().unwrap_or_default(),
        ],
        &log,
    )?;
    mf_e2e::wait_for(
        "the handshake refused as revoked",
        std::time::Duration::from_secs(20),
        || {
            Ok(deployment.coordinator.metric(
                "mf_refused_handshakes_total{listener=\"agent\",reason=\"revoked_certificate\"}",
            )? >= 1.0)
        },
    )?;
    assert!(deployment.hosts("")?.is_empty());
    assert_eq!(deployment.coordinator.metric("mf_agents_connected")?, 0.0);
    let again = deployment.mfctl(&["hosts", "delete", "gone.example.com"]);
    assert_eq!(again.code, Some(3), "{}", again.stderr);
    Ok(())
}

/// kubectl's conventions over the real binary: `-o json|yaml|wide` (also on
/// `pki init`), and `hosts list --watch`, which prints the list again, one
/// document per line with `-o json`, when a host comes.
#[test]
fn hosts_list_watches_and_every_format_prints_its_document() -> Result<()> {
    use std::io::BufRead;

    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let init = run(
        "mfctl",
        &[
            "pki",
            "init",
            "--dir",
            pki.to_str().unwrap_or_default(),
            "-o",
            "json",
        ],
        &[],
    );
    assert!(init.success, "{}", init.stderr);
    let init: serde_json::Value = serde_json::from_str(&init.stdout)?;
    assert_eq!(init["written"].as_array().map(Vec::len), Some(7), "{init}");

    let deployment = Deployment::new()?;
    let mut watch = std::process::Command::new(mf_e2e::bin("mfctl"))
        .args([
            "hosts",
            "list",
            "--watch",
            "--interval",
            "200ms",
            "-o",
            "json",
        ])
        .env("MF_COORDINATOR", deployment.coordinator.admin_address())
        .env("MF_PKI_DIR", &deployment.pki)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().expect("piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Result<serde_json::Value> {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .map_err(|e| anyhow::anyhow!("no document {what}: {e}"))?;
        Ok(serde_json::from_str(&line)?)
    };
    assert_eq!(next("at first")?, serde_json::json!([]));

    let token = deployment.token(&[])?;
    let _agent = deployment.start_agent(&token, "one", mf_e2e::HostOs::Rhel79, None, &[])?;
    // Enrolled (not connected), then connected: each change a document.
    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|d: &serde_json::Value| d[0]["connected"] != true)
    {
        let document = next("after the host came")?;
        assert!(seen.len() < 5, "too many documents: {seen:?}");
        seen.push(document);
    }
    assert_eq!(
        seen.last().map(|d| d[0]["id"].clone()),
        Some("one.example.com".into())
    );
    // Heartbeats change nothing watched: no document while nothing happens.
    assert!(
        lines
            .recv_timeout(std::time::Duration::from_millis(1500))
            .is_err(),
        "a document without a change"
    );
    watch.kill()?;
    watch.wait()?;

    let yaml = deployment.mfctl(&["hosts", "list", "-o", "yaml"]);
    assert!(yaml.success, "{}", yaml.stderr);
    assert!(
        yaml.stdout.starts_with("- id: one.example.com\n")
            && yaml.stdout.contains("  connected: true\n"),
        "{}",
        yaml.stdout
    );
    let wide = deployment.mfctl(&["hosts", "list", "-o", "wide"]);
    let header = wide.stdout.lines().next().unwrap_or_default();
    for column in ["HOST", "READINESS", "JOB", "PEER", "LABELS"] {
        assert!(header.contains(column), "{header}");
    }
    let table = deployment.mfctl(&["hosts", "list"]);
    assert!(!table.stdout.contains("READINESS"), "{}", table.stdout);
    let token = deployment.mfctl(&["token", "create", "-o", "yaml"]);
    assert!(
        token.stdout.contains("\ntoken: mfbt_") && token.stdout.contains("\nuses: 1\n"),
        "{}",
        token.stdout
    );
    Ok(())
}
