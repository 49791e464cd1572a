//! What a monitoring stack and an operator's tools see of a running
//! coordinator: the standard gRPC health service on both listeners and
//! server reflection on the admin listener, asked by a real gRPC client over
//! mTLS; the process and certificate families in /metrics. (The Grafana
//! dashboard is checked against the /metrics of a coordinator that ran a
//! wave: `tests/waves.rs`.)

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use mf_e2e::{Deployment, Peer};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn health(channel: tonic::transport::Channel, service: &str) -> Result<ServingStatus> {
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(answer.status)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer_a_grpc_client() -> Result<()> {
    let deployment = Deployment::new()?;
    let agent_listener = deployment.coordinator.agent_address();
    let admin_listener = deployment.coordinator.admin_address();

    // The agent listener: no certificate needed, as for enrollment.
    let anonymous = deployment.channel(&agent_listener, Peer::Anonymous).await?;
    assert_eq!(health(anonymous.clone(), "").await?, ServingStatus::Serving);
    assert_eq!(
        health(anonymous, "mf.v1.AgentService").await?,
        ServingStatus::Serving
    );

    // The admin listener: the operators' alone, health and reflection too.
    let operator = deployment.channel(&admin_listener, Peer::Operator).await?;
    assert_eq!(
        health(operator.clone(), "mf.v1.AdminService").await?,
        ServingStatus::Serving
    );
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(operator)
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    let answer = answers.message().await?.context("no reflection answer")?;
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        anyhow::bail!("not a list of services: {answer:?}");
    };
    let services: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "mf.v1.AdminService",
        "mf.v1.AgentService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(name), "{name} not in {services:?}");
    }
    Ok(())
}

#[test]
fn process_and_certificate_expiry_families_are_exported() -> Result<()> {
    let deployment = Deployment::new()?;
    let body = deployment.coordinator.metrics()?;
    mf_e2e::promtool_check(&body)?;
    let families: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "mf_certificate_expiry_timestamp_seconds",
    ] {
        assert!(families.contains(family), "{family} missing");
    }
    for certificate in ["ca", "coordinator"] {
        let expiry = deployment.coordinator.metric(&format!(
            "mf_certificate_expiry_timestamp_seconds{{certificate=\"{certificate}\"}}"
        ))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        assert!(expiry > now + 86400.0, "{certificate} expires at {expiry}");
    }

    Ok(())
}

/// Every alerting rule fires on the series it is for, with its labels and
/// text, and stays quiet on healthy ones: `promtool test rules` over
/// `packaging/prometheus-alerts.test.yml`, which must name every rule.
#[test]
fn every_alert_rule_is_tested_and_fires_as_its_test_says() -> Result<()> {
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let rules = std::fs::read_to_string(packaging.join("prometheus-alerts.yml"))?;
    let tests = std::fs::read_to_string(packaging.join("prometheus-alerts.test.yml"))?;
    let named = |text: &str, key: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
            .map(|name| name.trim().to_string())
            .collect()
    };
    let alerts = named(&rules, "alert:");
    assert!(alerts.len() >= 10, "{alerts:?}");
    assert_eq!(alerts, named(&tests, "alertname:"), "a rule without a test");
    let ran = std::process::Command::new("promtool")
        .args(["test", "rules", "prometheus-alerts.test.yml"])
        .current_dir(&packaging)
        .output()
        .context("promtool (scripts/test installs it)")?;
    assert!(
        ran.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    Ok(())
}
