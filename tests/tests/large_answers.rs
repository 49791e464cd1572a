//! Answers that grow with the fleet stay readable past gRPC's 4 MiB message
//! limit: eight real agents whose pre-checks each report 150 long findings
//! make a readiness report of about 5 MB, which the coordinator sends in
//! parts (each under the limit) and mfctl puts back together.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use mf_e2e::{Deployment, HostOs, Peer, wait_for};
use mf_proto::transport::MAX_MESSAGE_BYTES;
use mf_proto::v1 as pb;
use prost::Message;
use serde_json::Value;

const HOSTS: usize = 8;
const FINDINGS: usize = 150;

fn scenario() -> String {
    let mut text = String::from(mf_e2e::LEAPP_READY);
    let summary = "A long explanation of what leapp found and why it matters. ".repeat(65);
    for i in 0..FINDINGS {
        text.push_str(&format!(
            "[[findings]]\nkey = \"finding-{i:03}\"\ntitle = \"Finding number {i} about a package\"\n\
             summary = \"{summary}\"\nseverity = \"low\"\nblocking = false\nhint = \"Change it.\"\n"
        ));
    }
    text
}

#[test]
fn a_readiness_report_above_the_message_limit_arrives_whole() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", &HOSTS.to_string()])?;
    let scenario = scenario();
    let agents = (0..HOSTS)
        .map(|n| {
            let name = format!("big-{n}");
            deployment.start_agent(&token, &name, HostOs::Rhel79, Some(&scenario), &[])
        })
        .collect::<Result<Vec<_>>>()?;
    wait_for("every host connected", Duration::from_secs(30), || {
        let hosts = deployment.hosts("connected=true")?;
        Ok(hosts.len() == HOSTS && hosts.iter().all(|h| !h["facts"].is_null()))
    })?;

    // What failed with "encoded message length too large" before.
    let ran = deployment.mfctl(&["precheck", "--target", "rhel-8.10", "--wait", "-o", "json"]);
    assert!(ran.success, "{}", ran.stderr);
    let document: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!(
        document["readiness"]["summary"]["ready"],
        HOSTS,
        "{} bytes; precheck {}; summary {}",
        ran.stdout.len(),
        document["precheck"],
        document["readiness"]["summary"]
    );
    let findings = document["readiness"]["findings"].as_array().unwrap();
    assert!(findings.len() >= FINDINGS, "{}", findings.len());

    // The same answer read by a plain gRPC client with the default 4 MiB
    // limit: more than the limit in all, every part under it.
    let runtime = tokio::runtime::Runtime::new()?;
    let parts: Vec<pb::ReadinessReport> = runtime.block_on(async {
        let channel = deployment
            .channel(&deployment.coordinator.admin_address(), Peer::Operator)
            .await?;
        let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
        let mut stream = admin
            .readiness(pb::ReadinessRequest {
                selector: String::new(),
                counts_only: false,
            })
            .await?
            .into_inner();
        let mut parts = Vec::new();
        while let Some(part) = stream.message().await? {
            parts.push(part);
        }
        anyhow::Ok(parts)
    })?;
    let sizes: Vec<usize> = parts.iter().map(Message::encoded_len).collect();
    let total: usize = sizes.iter().sum();
    eprintln!("readiness: {total} bytes in parts of {sizes:?}");
    assert!(total > MAX_MESSAGE_BYTES, "{total} bytes in {sizes:?}");
    assert!(sizes.iter().all(|s| *s < MAX_MESSAGE_BYTES), "{sizes:?}");
    let hosts: usize = parts.iter().map(|p| p.hosts.len()).sum();
    assert_eq!(hosts, HOSTS);
    assert!(parts.iter().flat_map(|p| &p.hosts).all(|h| {
        h.precheck
            .as_ref()
            .is_some_and(|p| p.findings.len() == FINDINGS)
    }));
    assert_eq!(
        parts[0].counts.as_ref().map(|c| c.ready),
        Some(HOSTS as u32)
    );

    // The hosts list (one host per message) and a host's whole record too.
    let listed = deployment.mfctl(&["hosts", "list", "-o", "json"]);
    assert!(listed.success, "{}", listed.stderr);
    assert!(
        listed.stdout.len() > MAX_MESSAGE_BYTES,
        "{}",
        listed.stdout.len()
    );
    let report = deployment.mfctl(&["report", "readiness"]);
    assert!(report.success, "{}", report.stderr);
    assert!(
        report
            .stdout
            .starts_with(&format!("{HOSTS} hosts: {HOSTS} ready")),
        "{}",
        report.stdout
    );
    drop(agents);
    Ok(())
}
