//! After the reboot of a step: does the host run what the step was to give?
//! Conversion: RHEL of the same version, the last conversion activity a
//! success. Upgrade: `/etc/redhat-release` shows the target, the kernel is the
//! target's, leapp_resume.service is gone, no `.leapp_upgrade_failed`, and the
//! last upgrade activity is a success recorded at FirstBoot. While
//! leapp_resume.service is still installed FirstBoot is running (it starts
//! after the agent): that is "not yet", which the executor asks again.

use serde_json::Value;

use crate::command::{Step, Tool};
use crate::facts;
use crate::host::Host;

const RESULTS: &str = "/etc/migration-results";
use super::bootloader::UPGRADE_FAILED;
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

/// Why a host does not run what its step was to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotVerified {
    #[error("the operating system is unknown")]
    UnknownOs,
    #[error("the host runs {id} {version}, not RHEL {target}{}{}", if *.initramfs_failed {
        " (the upgrade failed in its initramfs: .leapp_upgrade_failed is present)"
    } else {
        ""
    }, if *.upgrade_entry_default {
        "; leapp's RHEL-Upgrade-Initramfs entry is still the boot default, so a plain reboot would \
         run the failed upgrade again: roll back (which removes it)"
    } else {
        ""
    })]
    WrongOs {
        id: String,
        version: String,
        target: String,
        initramfs_failed: bool,
        upgrade_entry_default: bool,
    },
    #[error("/etc/redhat-release says {0:?}")]
    WrongRelease(String),
    #[error("no {0} activity in /etc/migration-results")]
    NoActivity(&'static str),
    #[error("the last conversion activity is not a success")]
    ConversionFailed,
    #[error("the running kernel {kernel} is not an el{major} kernel")]
    WrongKernel { kernel: String, major: u32 },
    #[error("leapp_resume.service is still installed: FirstBoot is running")]
    FirstBootPending,
    #[error(
        "FirstBoot failed: the last upgrade activity in /etc/migration-results is a failure at FirstBoot"
    )]
    FirstBootFailed,
    #[error(".leapp_upgrade_failed is present")]
    UpgradeFailedMarker,
    #[error("the last upgrade activity is not a success at FirstBoot ({0:?})")]
    UpgradeNotAtFirstBoot(Option<String>),
}

/// What the host runs, when it is what the step was to give.
pub fn run(host: &dyn Host, step: &Step) -> Result<String, NotVerified> {
    let facts = facts::collect(host, &Default::default());
    let os = facts.os.as_ref().ok_or(NotVerified::UnknownOs)?;
    let kernel = facts.kernel.clone().unwrap_or_default();
    let release = host
        .read_to_string("/etc/redhat-release")
        .unwrap_or_default();
    let target = step.to.version();
    if os.id != "rhel" || os.version != target {
        return Err(NotVerified::WrongOs {
            id: os.id.clone(),
            version: os.version.clone(),
            target,
            initramfs_failed: host.read_file(UPGRADE_FAILED).is_ok(),
            upgrade_entry_default: super::bootloader::default_entry(host)
                .is_ok_and(|e| e.is_upgrade()),
        });
    }
    if !release.contains(&format!("release {target}")) {
        return Err(NotVerified::WrongRelease(release.trim().to_string()));
    }
    match step.tool {
        Tool::Convert2rhel => {
            let activity =
                last_activity(host, "conversion").ok_or(NotVerified::NoActivity("conversion"))?;
            if activity.get("success").and_then(Value::as_bool) != Some(true) {
                return Err(NotVerified::ConversionFailed);
            }
            Ok(format!("RHEL {} (kernel {kernel})", os.version))
        }
        Tool::Leapp => {
            let major = step.to.major;
            if !kernel.contains(&format!(".el{major}")) {
                return Err(NotVerified::WrongKernel { kernel, major });
            }
            let last = last_activity(host, "upgrade");
            let at_first_boot = |a: &Value| {
                a.pointer("/env/LEAPP_CURRENT_PHASE")
                    .and_then(Value::as_str)
                    == Some("FirstBoot")
            };
            if last
                .as_ref()
                .is_some_and(|a| at_first_boot(a) && a.get("success") != Some(&Value::Bool(true)))
            {
                return Err(NotVerified::FirstBootFailed);
            }
            if host.read_file(LEAPP_RESUME).is_ok() {
                return Err(NotVerified::FirstBootPending);
            }
            if host.read_file(UPGRADE_FAILED).is_ok() {
                return Err(NotVerified::UpgradeFailedMarker);
            }
            let activity =
                last_activity(host, "upgrade").ok_or(NotVerified::NoActivity("upgrade"))?;
            let phase = activity
                .pointer("/env/LEAPP_CURRENT_PHASE")
                .and_then(Value::as_str);
            if activity.get("success").and_then(Value::as_bool) != Some(true)
                || phase != Some("FirstBoot")
            {
                return Err(NotVerified::UpgradeNotAtFirstBoot(
                    phase.map(str::to_string),
                ));
            }
            Ok(format!("RHEL {} (kernel {kernel})", os.version))
        }
    }
}
