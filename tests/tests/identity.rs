//! Identity over time, with real processes: an agent renews its own
//! certificate before it expires (here a 20 s lifetime), the certificate it
//! replaced is refused at the handshake once the new one is in use, an
//! operator's revocation ends the session within 5 s and survives a restart,
//! and the documented way back for a revoked host or for one whose
//! certificate expired while the coordinator was down (a token for the host,
//! enroll again) works.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use mf_e2e::{Daemon, Deployment, HostOs, host_root, wait_for};

const HOST: &str = "renewing.example.com";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn connected(deployment: &Deployment) -> Result<bool> {
    Ok(deployment
        .hosts("")?
        .iter()
        .any(|h| h["id"] == HOST && h["connected"] == true))
}

/// Opens a connection with this certificate and asks the health service:
/// whether the coordinator let the certificate in.
fn accepted(deployment: &Deployment, cert: &str, key: &str) -> bool {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ca = read(&deployment.pki.join("ca.pem"));
        let Ok(endpoint) = mf_proto::transport::endpoint(
            &deployment.coordinator.agent_address(),
            &ca,
            Some((cert, key)),
        ) else {
            return false;
        };
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
    })
}

/// When the agent's current certificate expires by its own record.
fn expires_at_ms(state: &Path) -> i64 {
    let enrollment = read(&state.join("enrollment.toml"));
    let field = |name: &str| -> i64 {
        enrollment
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {enrollment}"))
    };
    field("received_unix_ms") + field("lifetime_seconds") * 1000
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn certificates_renew_themselves_and_revoked_or_expired_ones_are_refused() -> Result<()> {
    let mut deployment = Deployment::with_coordinator_flags(&["--agent-cert-lifetime", "20s"])?;
    let root = host_root(
        &deployment.path("root"),
        HostOs::Rhel79,
        "renewing",
        "example.com",
    );
    let state = deployment.path("state");
    let token = deployment.token(&[])?;
    let enrolled = deployment.enroll(&token, &state, &root, &[]);
    assert!(enrolled.success, "{}", enrolled.stderr);
    let (first_cert, first_key) = (
        read(&state.join("agent.pem")),
        read(&state.join("agent-key.pem")),
    );
    let log = deployment.path("agent.log");
    let run = |state: &Path| {
        Daemon::spawn(
            "mf-agent",
            &[
                "run",
                "--state-dir",
                state.to_str().unwrap(),
                "--host-root",
                root.to_str().unwrap(),
            ],
            &log,
        )
    };
    let mut agent = run(&state)?;
    wait_for("the agent", Duration::from_secs(20), || {
        connected(&deployment)
    })?;

    // Renewal, between 10 and 15 s after enrollment, by the agent alone: a
    // new key and certificate on disk, a session with them, and the first
    // certificate revoked once the new one is in use.
    wait_for("a renewed certificate", Duration::from_secs(30), || {
        Ok(read(&state.join("agent.pem")) != first_cert)
    })?;
    assert_ne!(read(&state.join("agent-key.pem")), first_key, "a new key");
    wait_for(
        "the first certificate revoked",
        Duration::from_secs(20),
        || {
            Ok(
                deployment.coordinator.metric("mf_revoked_certificates")? >= 1.0
                    && connected(&deployment)?,
            )
        },
    )?;
    let shown = deployment.mfctl(&["hosts", "show", HOST, "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout)?;
    assert!(shown["certificate_expires"].is_string(), "{shown}");
    assert!(
        !accepted(&deployment, &first_cert, &first_key),
        "the replaced certificate"
    );
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"agent\",reason=\"revoked_certificate\"}",
        1.0,
    )?;
    let (current_cert, current_key) = (
        read(&state.join("agent.pem")),
        read(&state.join("agent-key.pem")),
    );
    assert!(accepted(&deployment, &current_cert, &current_key));

    // An operator revokes the host: its session ends within 5 s, its agent
    // is refused from then on and says why.
    let revoked = deployment.mfctl(&["hosts", "revoke", HOST]);
    assert!(revoked.success, "{}", revoked.stderr);
    assert!(
        revoked
            .stdout
            .contains("mfctl token create --host-id renewing.example.com"),
        "{}",
        revoked.stdout
    );
    let at = Instant::now();
    wait_for("the session to end", Duration::from_secs(5), || {
        Ok(deployment.coordinator.metric("mf_agents_connected")? == 0.0)
    })?;
    assert!(at.elapsed() < Duration::from_secs(5));
    wait_for("the agent to say why", Duration::from_secs(30), || {
        Ok(read(&log).contains("has revoked this agent's certificate"))
    })?;
    // Kept across a restart (the deny-list is stored).
    deployment.coordinator.kill9();
    deployment.coordinator.restart()?;
    assert!(
        !accepted(&deployment, &current_cert, &current_key),
        "revoked after a restart"
    );
    let shown = deployment.mfctl(&["hosts", "show", HOST]);
    assert!(shown.stdout.contains("revoked at"), "{}", shown.stdout);

    // The way back: a token for the host, enroll again (the agent stopped:
    // it holds the state directory).
    agent.kill9();
    let for_it = deployment.token(&["--host-id", HOST])?;
    let again = deployment.enroll(&for_it, &state, &root, &[]);
    assert!(again.success, "{}", again.stderr);
    agent = run(&state)?;
    wait_for("the host back", Duration::from_secs(30), || {
        connected(&deployment)
    })?;

    // Expired while the coordinator was down: the agent cannot renew, its
    // certificate expires, and it says what to do; then the same way back.
    deployment.coordinator.kill9();
    let expiry = expires_at_ms(&state);
    wait_for("the certificate to expire", Duration::from_secs(40), || {
        Ok(now_ms() > expiry + 1000)
    })?;
    deployment.coordinator.restart()?;
    wait_for(
        "the agent to say it expired",
        Duration::from_secs(60),
        || Ok(read(&log).contains("this agent's certificate has expired")),
    )?;
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"agent\",reason=\"expired_certificate\"}",
        1.0,
    )?;
    assert!(!connected(&deployment)?);
    agent.kill9();
    let for_it = deployment.token(&["--host-id", HOST])?;
    let again = deployment.enroll(&for_it, &state, &root, &[]);
    assert!(again.success, "{}", again.stderr);
    let _agent = run(&state)?;
    wait_for(
        "the host back after expiry",
        Duration::from_secs(30),
        || connected(&deployment),
    )?;
    Ok(())
}

/// A renewal waits while a migration holds a snapshot: the state directory
/// is on /var, which a rollback's merge rewinds, and would bring back a
/// certificate revoked by the renewal. Once the snapshot is gone (here by a
/// rollback) the renewal happens, before the certificate expires.
#[test]
fn a_renewal_waits_while_a_snapshot_is_held() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--agent-cert-lifetime", "60s"])?;
    let root = host_root(
        &deployment.path("root"),
        HostOs::Rhel79,
        "held",
        "example.com",
    );
    mf_e2e::set_scenario(
        &root,
        &format!(
            "failures = [\"first-boot-failure\"]\n{}",
            mf_e2e::LEAPP_READY
        ),
    );
    let state = root.join("var/lib/mf-agent");
    let token = deployment.token(&[])?;
    let enrolled = deployment.enroll(&token, &state, &root, &[]);
    assert!(enrolled.success, "{}", enrolled.stderr);
    let first = read(&state.join("agent.pem"));
    let first_expiry = expires_at_ms(&state);
    let renew_by = first_expiry - 15_000; // 75% of 60 s
    let _machine = mf_e2e::Machine::start(&state, &root, &deployment.path("held.log"));
    let id = "held.example.com";
    wait_for("the agent", Duration::from_secs(20), || {
        Ok(deployment.hosts("connected=true")?.len() == 1)
    })?;
    let migrate = deployment.mfctl(&[
        "migrate",
        id,
        "--target",
        "rhel-8.10",
        "--on-failure",
        "hold",
    ]);
    assert!(migrate.success, "{}", migrate.stderr);
    let job_state = || -> Result<String> {
        let shown = deployment.mfctl(&["hosts", "show", id, "-o", "json"]);
        let shown: serde_json::Value = serde_json::from_str(&shown.stdout)?;
        Ok(shown["job"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    wait_for(
        "the job held with its snapshot",
        Duration::from_secs(30),
        || Ok(job_state()? == "held"),
    )?;
    // Past the latest renewal point, the certificate is the first one still.
    wait_for(
        "the renewal window to pass",
        Duration::from_secs(60),
        || Ok(now_ms() > renew_by + 2000),
    )?;
    assert_eq!(
        read(&state.join("agent.pem")),
        first,
        "renewed while a snapshot was held"
    );
    let rollback = deployment.mfctl(&["hosts", "rollback", id]);
    assert!(rollback.success, "{}", rollback.stderr);
    wait_for("the rollback", Duration::from_secs(30), || {
        Ok(job_state()? == "rolled-back")
    })?;
    wait_for("the renewal, now", Duration::from_secs(10), || {
        Ok(read(&state.join("agent.pem")) != first)
    })?;
    assert!(
        now_ms() < first_expiry,
        "renewed before the first certificate expired"
    );
    wait_for(
        "the renewed agent connected",
        Duration::from_secs(20),
        || Ok(deployment.hosts("connected=true")?.len() == 1),
    )?;
    Ok(())
}

/// The coordinator renews its own server certificate, for the same names,
/// once less than `--server-cert-renew-before` is left (here: at once), and
/// clients keep connecting.
#[test]
fn the_coordinator_renews_its_own_server_certificate() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--server-cert-renew-before", "400d"])?;
    assert!(
        deployment
            .coordinator
            .log_text()
            .contains("the coordinator's server certificate was renewed"),
        "{}",
        deployment.coordinator.log_text()
    );
    let listed = deployment.mfctl(&["hosts", "list"]);
    assert!(listed.success, "{}", listed.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(deployment.pki.join("coordinator-key.pem"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!deployment.pki.join("coordinator-key.pem.next").exists());
    let expiry = deployment
        .coordinator
        .metric("mf_certificate_expiry_timestamp_seconds{certificate=\"coordinator\"}")?;
    assert!(
        expiry > now_ms() as f64 / 1000.0 + 300.0 * 86_400.0,
        "{expiry}"
    );
    Ok(())
}

/// An agent that dials the coordinator by a name its certificate does not
/// carry says so, with the fix, instead of looping on "connection closed".
#[test]
fn an_agent_dialing_a_name_the_coordinator_certificate_lacks_says_so() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let init = mf_e2e::run(
        "mfctl",
        &[
            "pki",
            "init",
            "--dir",
            pki.to_str().unwrap(),
            "--name",
            "localhost",
        ],
        &[],
    );
    assert!(init.success, "{}", init.stderr);
    let coordinator = mf_e2e::Coordinator::start(
        &dir.path().join("data"),
        &pki,
        &dir.path().join("coordinator.log"),
    )?;
    let by_name = |address: &str| address.replace("127.0.0.1", "localhost");
    let env = [
        ("MF_COORDINATOR", by_name(&coordinator.admin_address())),
        ("MF_PKI_DIR", pki.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let token = mf_e2e::run("mfctl", &["token", "create"], &env);
    assert!(token.success, "{}", token.stderr);
    let root = host_root(
        &dir.path().join("root"),
        HostOs::Rhel79,
        "named",
        "example.com",
    );
    let state = dir.path().join("state");
    let enrolled = mf_e2e::run(
        "mf-agent",
        &[
            "enroll",
            "--coordinator",
            &by_name(&coordinator.agent_address()),
            "--ca",
            pki.join("ca.pem").to_str().unwrap(),
            "--token",
            token.stdout.trim(),
            "--state-dir",
            state.to_str().unwrap(),
            "--host-root",
            root.to_str().unwrap(),
        ],
        &[],
    );
    assert!(enrolled.success, "{}", enrolled.stderr);
    // Then the same coordinator by its address, which its certificate does not name.
    let enrollment = state.join("enrollment.toml");
    let text = std::fs::read_to_string(&enrollment)?;
    std::fs::write(
        &enrollment,
        text.replace(
            &by_name(&coordinator.agent_address()),
            &coordinator.agent_address(),
        ),
    )?;
    let log = dir.path().join("agent.log");
    let _agent = Daemon::spawn(
        "mf-agent",
        &[
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--host-root",
            root.to_str().unwrap(),
        ],
        &log,
    )?;
    wait_for("the agent to say why", Duration::from_secs(30), || {
        Ok(read(&log).contains("the coordinator's certificate is not valid for the name"))
    })?;
    Ok(())
}
