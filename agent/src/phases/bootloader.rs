//! What the boot loader will boot next, read and repaired with `grubby` (on
//! EL7 and EL8+ alike), never by guessing file names: leapp's entry is the one
//! titled `RHEL-Upgrade-Initramfs` with the kernel `/boot/vmlinuz-upgrade.<arch>`,
//! a `menuentry` in grub.cfg on EL7 and a `<machine-id>-upgrade.<arch>.conf`
//! BLS file on EL8.

use crate::host::Host;

pub const UPGRADE_TITLE: &str = "RHEL-Upgrade-Initramfs";
const UPGRADE_KERNEL_PREFIX: &str = "/boot/vmlinuz-upgrade.";
/// Left by the upgrade initramfs when the package upgrade failed.
pub const UPGRADE_FAILED: &str = "/root/tmp_leapp_py3/.leapp_upgrade_failed";

/// The entry that boots when nobody is at the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultEntry {
    pub kernel: String,
    pub title: String,
}

impl DefaultEntry {
    /// leapp's upgrade entry, by its title or its kernel.
    pub fn is_upgrade(&self) -> bool {
        self.title == UPGRADE_TITLE || self.kernel.starts_with(UPGRADE_KERNEL_PREFIX)
    }
}

impl std::fmt::Display for DefaultEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({})", self.title, self.kernel)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootLoaderError {
    #[error("cannot run {command}: {reason}")]
    CannotRun { command: String, reason: String },
    #[error("{command} exited {status}: {stderr}")]
    Exited {
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("leapp's upgrade entry is still the default after {0}")]
    StillUpgrade(String),
}

fn grubby(host: &dyn Host, args: &[&str]) -> Result<String, BootLoaderError> {
    let argv: Vec<&str> = std::iter::once("grubby")
        .chain(args.iter().copied())
        .collect();
    let command = argv.join(" ");
    let output = host.run(&argv).map_err(|e| BootLoaderError::CannotRun {
        command: command.clone(),
        reason: e.to_string(),
    })?;
    if output.status != 0 {
        return Err(BootLoaderError::Exited {
            command,
            status: output.status,
            stderr: output.stderr.trim().to_string(),
        });
    }
    Ok(output.stdout.trim().to_string())
}

pub fn default_entry(host: &dyn Host) -> Result<DefaultEntry, BootLoaderError> {
    Ok(DefaultEntry {
        kernel: grubby(host, &["--default-kernel"])?,
        title: grubby(host, &["--default-title"])?,
    })
}

/// Removes leapp's entry when it is the default (as leapp's own
/// removeupgradebootentry does), and checks it is gone. Returns what it did.
pub fn remove_upgrade_entry(host: &dyn Host) -> Result<Option<String>, BootLoaderError> {
    let entry = default_entry(host)?;
    if !entry.is_upgrade() {
        return Ok(None);
    }
    let command = format!("grubby --remove-kernel {}", entry.kernel);
    grubby(host, &["--remove-kernel", &entry.kernel])?;
    let now = default_entry(host)?;
    if now.is_upgrade() {
        return Err(BootLoaderError::StillUpgrade(command));
    }
    Ok(Some(format!(
        "removed leapp's upgrade entry; the default is now {now}"
    )))
}

/// Whether the last upgrade failed in its initramfs while its entry is still
/// the default: a reboot would run the failed upgrade again.
pub fn failed_upgrade_pending(host: &dyn Host) -> Option<DefaultEntry> {
    if host.read_file(UPGRADE_FAILED).is_err() {
        return None;
    }
    default_entry(host).ok().filter(DefaultEntry::is_upgrade)
}
