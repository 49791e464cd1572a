//! Events out, as a receiver sees them: a real coordinator delivering to a
//! real HTTP receiver in the test, which is down first (503), then up, then
//! holds a request while the coordinator is killed with SIGKILL. Every event
//! arrives signed, in order, with stable ids, and none is lost.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use mf_e2e::receiver::{Mode, Received, Receiver};
use mf_e2e::{Deployment, wait_for};
use serde_json::Value;

/// Checks a delivery's signature as a receiver following the Standard
/// Webhooks scheme does, with its own HMAC.
fn signed_by(received: &Received, secret: &str) -> bool {
    let (Some(id), Some(timestamp), Some(signature)) = (
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
        received.header("webhook-signature"),
    ) else {
        return false;
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(&received.body);
    let Some(mac) = signature
        .strip_prefix("v1,")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return false;
    };
    ring::hmac::verify(&key, &message, &mac).is_ok()
}

fn event(received: &Received) -> Value {
    serde_json::from_slice(&received.body).unwrap()
}

/// The ids of the events accepted so far.
fn accepted_ids(receiver: &Receiver) -> Vec<u64> {
    receiver
        .received()
        .iter()
        .filter(|r| r.accepted)
        .map(|r| event(r)["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn events_arrive_signed_in_order_after_an_outage_and_a_kill_9_loses_none() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("coordinator.toml");
    std::fs::write(&config, "webhook_retry_max_interval = \"300ms\"\n")?;
    let mut deployment =
        Deployment::with_coordinator_flags(&["--config", config.to_str().unwrap()])?;
    let receiver = Receiver::start(Mode::Refuse)?;
    let url = format!("http://127.0.0.1:{}/hooks/mf", receiver.port);

    let added = deployment.mfctl(&["webhook", "add", &url, "-o", "json"]);
    assert!(added.success, "{}", added.stderr);
    let added: Value = serde_json::from_str(&added.stdout)?;
    let secret = added["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{added}");
    // Bad registrations change nothing.
    let again = deployment.mfctl(&["webhook", "add", &url]);
    assert!(
        !again.success && again.stderr.contains("already delivers"),
        "{}",
        again.stderr
    );
    let bad = deployment.mfctl(&["webhook", "add", "ftp://x/", "--event", "nothing"]);
    assert!(
        !bad.success && bad.stderr.contains("http://"),
        "{}",
        bad.stderr
    );
    let unknown = deployment.mfctl(&[
        "webhook",
        "add",
        "https://x.example/",
        "--event",
        "job.done",
    ]);
    assert!(
        !unknown.success && unknown.stderr.contains("unknown event type"),
        "{}",
        unknown.stderr
    );

    // Things happen while the receiver is down: enrollments, pre-checks, a wave.
    let token = deployment.token(&["--uses", "2"])?;
    let _a = deployment.rhel79_machine(&token, "a1", "billing", "")?;
    let _b = deployment.rhel79_machine(&token, "b1", "crm", "")?;
    wait_for("two machines", Duration::from_secs(30), || {
        let list = deployment.hosts("connected=true")?;
        Ok(list.len() == 2 && list.iter().all(|h| !h["facts"].is_null()))
    })?;
    let checked = deployment.mfctl(&[
        "precheck",
        "-l",
        "os=rhel",
        "--target",
        "rhel-8.10",
        "--wait",
    ]);
    assert!(checked.success, "{}", checked.stderr);
    for args in [
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
        ],
        vec!["wave", "start", "w"],
    ] {
        let ran = deployment.mfctl(&args);
        assert!(ran.success, "{}", ran.stderr);
    }
    wait_for("the wave to complete", Duration::from_secs(90), || {
        let ran = deployment.mfctl(&["wave", "status", "w", "-o", "json"]);
        Ok(serde_json::from_str::<Value>(&ran.stdout)?["state"] == "completed")
    })?;
    // Refused and retried (the retries come with backoff: waited for, not
    // assumed), nothing taken.
    let failed = format!(
        "mf_webhook_deliveries_total{{result=\"failed\",webhook=\"{}\"}}",
        added["id"].as_str().unwrap()
    );
    wait_for(
        "deliveries refused and retried",
        Duration::from_secs(20),
        || Ok(deployment.coordinator.metric(&failed)? >= 2.0),
    )?;
    assert!(accepted_ids(&receiver).is_empty());
    let listed = deployment.mfctl(&["webhook", "list", "-o", "json"]);
    let listed: Value = serde_json::from_str(&listed.stdout)?;
    let behind = listed[0]["pending_events"].as_u64().unwrap();
    assert!(behind >= 10, "{listed}");
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once: {listed}"
    );

    // The receiver comes back: everything arrives, in order, signed.
    receiver.set_mode(Mode::Accept);
    wait_for("every event", Duration::from_secs(30), || {
        Ok(accepted_ids(&receiver).len() as u64 >= behind)
    })?;
    let accepted: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|r| r.accepted)
        .collect();
    let ids = accepted_ids(&receiver);
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "in order, no gap"
    );
    let mut types = BTreeSet::new();
    for received in &accepted {
        assert!(
            signed_by(received, &secret),
            "a bad signature on {received:?}"
        );
        assert_eq!(
            received.header("content-type"),
            Some("application/cloudevents+json; charset=utf-8")
        );
        let event = event(received);
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"].as_str(), received.header("webhook-id"));
        types.insert(event["type"].as_str().unwrap().to_string());
    }
    for kind in [
        "dev.migration-factory.host.enrolled",
        "dev.migration-factory.precheck.finished",
        "dev.migration-factory.job.state-changed",
        "dev.migration-factory.wave.completed",
    ] {
        assert!(types.contains(kind), "no {kind} in {types:?}");
    }
    let completed = accepted
        .iter()
        .map(event)
        .find(|e| e["type"] == "dev.migration-factory.wave.completed")
        .unwrap();
    assert_eq!(completed["subject"], "w");
    assert_eq!(completed["data"]["hosts"]["succeeded"], 2, "{completed}");
    // A signature with another secret does not verify.
    assert!(!signed_by(
        &accepted[0],
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ));

    // A kill -9 while a delivery is in flight: the event comes again after
    // the restart, with the same id, and nothing after it is lost.
    receiver.set_mode(Mode::Hold);
    let before = receiver.received().len();
    let checked = deployment.mfctl(&["precheck", "-l", "os=rhel", "--target", "rhel-9.6"]);
    assert!(checked.success, "{}", checked.stderr);
    wait_for("a delivery in flight", Duration::from_secs(30), || {
        Ok(receiver.received().len() > before)
    })?;
    let held = event(&receiver.received()[before])["id"]
        .as_str()
        .unwrap()
        .to_string();
    deployment.coordinator.kill9();
    receiver.set_mode(Mode::Accept);
    deployment.coordinator.restart()?;
    wait_for("the held event again", Duration::from_secs(30), || {
        Ok(accepted_ids(&receiver).contains(&held.parse()?))
    })?;
    // The pre-checks finish after the restart too; all of it arrives.
    wait_for("the pre-checks' events", Duration::from_secs(60), || {
        let ran = deployment.mfctl(&["webhook", "list", "-o", "json"]);
        let listed: Value = serde_json::from_str(&ran.stdout)?;
        let finished = receiver
            .received()
            .iter()
            .filter(|r| r.accepted)
            .map(event)
            .filter(|e| {
                e["type"] == "dev.migration-factory.precheck.finished"
                    && e["data"]["target"] == "rhel-9.6"
            })
            .count();
        Ok(finished >= 2 && listed[0]["pending_events"] == 0)
    })?;
    let ids: BTreeSet<u64> = accepted_ids(&receiver).into_iter().collect();
    let last = *ids.last().unwrap();
    assert_eq!(ids, (1..=last).collect(), "no event lost across the kill");
    Ok(())
}
