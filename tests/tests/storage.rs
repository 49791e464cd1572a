//! Storage faults, on a real file system that fills up: the coordinator's
//! data directory on a 16 MiB tmpfs the test mounts (the test runs as root,
//! as CI does). When a write fails the coordinator refuses changes with the
//! real cause (reads go on), reports NOT_SERVING (`/healthz`, gRPC health)
//! and counts it; once space is freed it goes on by itself, its agents
//! reconnect, and what it then writes survives a kill -9.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mf_e2e::{Deployment, HostOs, Peer, http_get, wait_for};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(at)?;
        let ran = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .context("cannot run mount")?;
        if !ran.status.success() {
            bail!(
                "cannot mount a tmpfs for the storage test (it needs root, as CI has): {}",
                String::from_utf8_lossy(&ran.stderr)
            );
        }
        Ok(Self {
            mount: at.to_path_buf(),
        })
    }

    /// Writes zeros until the file system is full; the filler's path.
    fn fill(&self) -> Result<PathBuf> {
        let path = self.mount.join("filler");
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                if e.raw_os_error() == Some(28) {
                    return Ok(path);
                }
                return Err(e.into());
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

async fn grpc_health(deployment: &Deployment) -> Result<i32> {
    let channel = deployment
        .channel(&deployment.coordinator.admin_address(), Peer::Operator)
        .await?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(answer.status)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_makes_the_coordinator_read_only_and_it_recovers_by_itself() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let disk = SmallDisk::mount(&scratch.path().join("small"), "16m")?;
    let data = scratch.path().join("small/data");
    let mut deployment = Deployment::with_data_dir(Some(data), &[])?;
    let kept = deployment.token(&["--uses", "5"])?;
    let _agent = deployment.start_agent(&kept, "disk-1", HostOs::Rhel79, None, &[])?;
    wait_for("the agent", Duration::from_secs(20), || {
        Ok(deployment.hosts("connected=true")?.len() == 1)
    })?;
    let hellos = "mf_stream_messages_total{direction=\"in\",kind=\"hello\"}";
    let hellos_before = deployment.coordinator.metric(hellos)?;

    // The disk fills up; changes go on until one cannot be made durable.
    let filler = disk.fill()?;
    let mut refused = None;
    for _ in 0..200 {
        let ran = deployment.mfctl(&["token", "create"]);
        if !ran.success {
            refused = Some(ran);
            break;
        }
    }
    let refused = refused.context("no change was refused on a full disk")?;
    assert!(
        refused.stderr.contains("cannot write its store")
            && refused
                .stderr
                .contains("(No space left on device (os error 28))"),
        "{}",
        refused.stderr
    );
    // From now on every change is refused at once with the cause, reads go
    // on, and the coordinator says it is not serving.
    for read in [
        vec!["token", "list"],
        vec!["hosts", "list"],
        vec!["audit", "verify"],
    ] {
        let ran = deployment.mfctl(&read);
        assert!(ran.success, "reads still work: {read:?}: {}", ran.stderr);
    }
    for change in [
        vec!["token", "create"],
        vec!["precheck", "--target", "rhel-8.10"],
        vec!["backup", "/tmp/never-written.jsonl"],
    ] {
        let ran = deployment.mfctl(&change);
        assert!(
            !ran.success && ran.stderr.contains("No space left on device"),
            "{change:?}: {}",
            ran.stderr
        );
    }
    let (status, body) = http_get(deployment.coordinator.metrics_port, "/healthz")?;
    assert!(status.contains("503"), "{status}");
    assert!(body.contains("No space left on device"), "{body}");
    assert_eq!(
        grpc_health(&deployment).await?,
        ServingStatus::NotServing as i32
    );
    assert_eq!(deployment.coordinator.metric("mf_store_writable")?, 0.0);
    assert_eq!(
        deployment.coordinator.metric("mf_store_failures_total")?,
        1.0
    );

    // Space comes back: the coordinator goes on by itself.
    std::fs::remove_file(filler)?;
    wait_for(
        "the store to take writes again",
        Duration::from_secs(30),
        || {
            Ok(http_get(deployment.coordinator.metrics_port, "/healthz")?
                .0
                .contains("200"))
        },
    )?;
    assert_eq!(
        grpc_health(&deployment).await?,
        ServingStatus::Serving as i32
    );
    assert_eq!(deployment.coordinator.metric("mf_store_writable")?, 1.0);
    // Its agent was asked to reconnect and say where it is.
    wait_for("the agent back", Duration::from_secs(30), || {
        Ok(deployment.hosts("connected=true")?.len() == 1
            && deployment.coordinator.metric(hellos)? > hellos_before)
    })?;
    let after = deployment.token(&["--uses", "3"])?;
    // What it writes now survives a crash.
    deployment.coordinator.kill9();
    deployment.coordinator.restart()?;
    let listed = deployment.mfctl(&["token", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout)?;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["uses_left"] == 3),
        "the token made after the recovery: {listed:#}"
    );
    drop(after);
    Ok(())
}
