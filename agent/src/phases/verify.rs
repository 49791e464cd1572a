//! After the reboot of a step: does the host run what the step was to give?
//! Conversion: RHEL of the same version, the last conversion activity a
//! success. Upgrade: `/etc/redhat-release` shows the target, the kernel is the
//! target's, leapp_resume.service is gone, no `.leapp_upgrade_failed`, and the
//! last upgrade activity is a success recorded at FirstBoot.

use serde_json::Value;

use crate::command::{Step, Tool};
use crate::facts;
use crate::host::Host;

const RESULTS: &str = "/etc/migration-results";
const UPGRADE_FAILED: &str = "/root/tmp_leapp_py3/.leapp_upgrade_failed";
const LEAPP_RESUME: &str = "/etc/systemd/system/leapp_resume.service";

fn last_activity(host: &dyn Host, activity: &str) -> Option<Value> {
    let results: Value = serde_json::from_slice(&host.read_file(RESULTS).ok()?).ok()?;
    results
        .get("activities")?
        .as_array()?
        .iter()
        .rev()
        .find(|a| a.get("activity").and_then(Value::as_str) == Some(activity))
        .cloned()
}

pub fn run(host: &dyn Host, step: &Step) -> Result<String, String> {
    let facts = facts::collect(host, &Default::default());
    let os = facts.os.as_ref().ok_or("the operating system is unknown")?;
    let kernel = facts.kernel.clone().unwrap_or_default();
    let release = host
        .read_to_string("/etc/redhat-release")
        .unwrap_or_default();
    let target = step.to.version();
    if os.id != "rhel" || os.version != target {
        let failed = if host.read_file(UPGRADE_FAILED).is_ok() {
            " (the upgrade failed in its initramfs: .leapp_upgrade_failed is present)"
        } else {
            ""
        };
        return Err(format!(
            "the host runs {} {}, not RHEL {}{failed}",
            os.id, os.version, target
        ));
    }
    if !release.contains(&format!("release {target}")) {
        return Err(format!("/etc/redhat-release says {:?}", release.trim()));
    }
    match step.tool {
        Tool::Convert2rhel => {
            let activity = last_activity(host, "conversion")
                .ok_or("no conversion activity in /etc/migration-results")?;
            if activity.get("success").and_then(Value::as_bool) != Some(true) {
                return Err("the last conversion activity is not a success".into());
            }
            Ok(format!("RHEL {} (kernel {kernel})", os.version))
        }
        Tool::Leapp => {
            let major = step.to.major;
            if !kernel.contains(&format!(".el{major}")) {
                return Err(format!(
                    "the running kernel {kernel} is not an el{major} kernel"
                ));
            }
            if host.read_file(LEAPP_RESUME).is_ok() {
                return Err(
                    "leapp_resume.service is still installed: FirstBoot did not finish".into(),
                );
            }
            if host.read_file(UPGRADE_FAILED).is_ok() {
                return Err(".leapp_upgrade_failed is present".into());
            }
            let activity = last_activity(host, "upgrade")
                .ok_or("no upgrade activity in /etc/migration-results")?;
            let phase = activity
                .pointer("/env/LEAPP_CURRENT_PHASE")
                .and_then(Value::as_str);
            if activity.get("success").and_then(Value::as_bool) != Some(true)
                || phase != Some("FirstBoot")
            {
                return Err(format!(
                    "the last upgrade activity is not a success at FirstBoot ({phase:?})"
                ));
            }
            Ok(format!("RHEL {} (kernel {kernel})", os.version))
        }
    }
}
