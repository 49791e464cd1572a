//! What happens when the emulated machine boots: the actions queued for the
//! next boot (an LVM merge, a hypervisor revert), then the boot loader's
//! default entry (leapp's runs the upgrade initramfs, then the new system,
//! where FirstBoot runs after the agent has started), a new boot id. A
//! machine set to never return stays down; one whose upgrade initramfs failed
//! waits in the emergency shell for someone at the console.

use super::bootloader;
use super::lvm;
use super::profile::{rhel_kernel, rhel_release_files};
use super::results;
use super::scenario::{Failure, Package, Scenario};
use super::state::{BootAction, MachineState};
use super::tree::Tree;

/// The emulated rpm database: on /var like the real one, so an LVM merge of
/// /var rolls the packages back too.
const RPM_DB: &str = "/var/lib/rpm/Packages.mf-sim.json";
pub const UPGRADE_FAILED: &str = "/root/tmp_leapp_py3/.leapp_upgrade_failed";
pub const LEAPP_RESUME: &str = "/etc/systemd/system/leapp_resume.service";

pub fn installed(tree: &Tree, scenario: &Scenario) -> Vec<Package> {
    tree.read(RPM_DB)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| scenario.packages.clone())
}

pub fn set_installed(tree: &Tree, packages: &[Package]) {
    let _ = tree.write(
        RPM_DB,
        serde_json::to_string_pretty(packages)
            .unwrap_or_default()
            .as_bytes(),
    );
}

/// Replaces (or adds) a package by name.
pub fn install(tree: &Tree, scenario: &Scenario, package: Package, replacing: &[&str]) {
    let mut packages = installed(tree, scenario);
    packages.retain(|p| p.name != package.name && !replacing.contains(&p.name.as_str()));
    packages.push(package);
    set_installed(tree, &packages);
}

/// Boots the machine if a reboot is pending. Returns false if it stays down.
/// What boots is the boot loader's default entry (or the one picked at the
/// console for this boot): leapp's entry runs the upgrade initramfs.
pub fn boot_if_pending(tree: &Tree, scenario: &Scenario) -> bool {
    let mut state = MachineState::load(tree);
    if state.down {
        return false;
    }
    if !state.reboot_pending {
        return true;
    }
    state.reboot_pending = false;
    state.boots += 1;
    if scenario.fails(Failure::NeverReturns) {
        state.down = true;
        state.save(tree);
        return false;
    }
    for action in std::mem::take(&mut state.at_boot) {
        match action {
            BootAction::MergeSnapshots => lvm::merge_at_boot(tree, scenario, &mut state),
            BootAction::RestoreMachine { name } => {
                if let Some(files) = state.machine_snapshots.get(&name).cloned() {
                    for path in tree.list().into_iter().filter(|p| !p.starts_with("/proc/")) {
                        let _ = tree.remove(&path);
                    }
                    for (path, content) in files {
                        let _ = tree.write(&path, content.as_bytes());
                    }
                }
            }
        }
    }
    let once = state.boot_once.take();
    let mut entry = bootloader::entries(tree)
        .into_iter()
        .find(|e| Some(&e.id) == once.as_ref())
        .or_else(|| bootloader::default(tree));
    if entry.as_ref().is_some_and(bootloader::Entry::is_upgrade) {
        let target = state.leapp_target.clone().unwrap_or_default();
        if !upgrade_initramfs(tree, scenario, &target) {
            // The emergency shell: the upgrade entry is still the default,
            // so the machine never comes back by itself.
            state.down = true;
            state.emergency_shell = true;
            state.save(tree);
            return false;
        }
        state.leapp_target = None;
        // The initramfs reboots into the upgraded system.
        entry = bootloader::default(tree);
        state.first_boot_due_unix_ms =
            Some(now_ms() + (scenario.durations.first_boot_seconds * 1000.0) as i64);
    }
    // A revert that took the new system away took its FirstBoot with it.
    if tree.read(LEAPP_RESUME).is_err() {
        state.first_boot_due_unix_ms = None;
    }
    if let Some(entry) = entry {
        let _ = tree.write(
            "/proc/sys/kernel/osrelease",
            format!("{}\n", entry.release()).as_bytes(),
        );
    }
    let _ = tree.write(
        "/proc/sys/kernel/random/boot_id",
        format!("{}\n", uuid()).as_bytes(),
    );
    let _ = tree.write("/proc/uptime", b"14.20 25.01\n");
    state.save(tree);
    true
}

/// The boot loader an installed system has, for trees that hold none.
pub fn ensure_bootloader(tree: &Tree) {
    let (name, version) = os_name(tree);
    let major = version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(7);
    bootloader::ensure(tree, major, &name, &version);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// leapp_resume.service, ordered after multi-user.target: FirstBoot runs
/// beside whatever else starts (the agent) and removes the unit when done.
/// Called before every look at the machine; finishes FirstBoot once due.
pub fn run_first_boot_if_due(tree: &Tree, scenario: &Scenario) {
    let mut state = MachineState::load(tree);
    let Some(due) = state.first_boot_due_unix_ms else {
        return;
    };
    if now_ms() < due {
        return;
    }
    state.first_boot_due_unix_ms = None;
    state.save(tree);
    let source = tree
        .read(SOURCE_MARK)
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let target = current_version(tree);
    let run_id = super::random_id();
    let failed = scenario.fails(Failure::FirstBootFailure);
    results::append(
        tree,
        results::leapp(
            "upgrade",
            !failed,
            &["upgrade", "--resume"],
            &source,
            &target,
            &run_id,
            "FirstBoot",
        ),
    );
    if !failed {
        let _ = tree.remove(LEAPP_RESUME);
    }
    let _ = tree.remove(SOURCE_MARK);
}

/// Where the emulation remembers the source version across the upgrade
/// (real leapp keeps it in its database).
const SOURCE_MARK: &str = "/var/lib/leapp/.mf-sim-source-version";

/// The RHEL-Upgrade-Initramfs boot: leapp removes its boot entry, upgrades the
/// packages, and the machine reboots into the new system, where
/// leapp_resume.service will run FirstBoot. False when the package upgrade
/// fails: the failure flag is left and the machine stops in the emergency
/// shell before the entry is gone.
fn upgrade_initramfs(tree: &Tree, scenario: &Scenario, target: &str) -> bool {
    let source = current_version(tree);
    let run_id = super::random_id();
    let record = |success: bool, phase: &str| {
        results::append(
            tree,
            results::leapp(
                "upgrade",
                success,
                &["upgrade", "--resume"],
                &source,
                target,
                &run_id,
                phase,
            ),
        );
    };
    let (Some((os_release, redhat_release)), Some(kernel)) =
        (rhel_release_files(target), rhel_kernel(target))
    else {
        let _ = tree.write(UPGRADE_FAILED, b"");
        record(false, "InitRamStart");
        return false;
    };
    if scenario.fails(Failure::InitramfsFailure) {
        let _ = tree.write(UPGRADE_FAILED, b"");
        record(false, "RPMUpgrade");
        return false;
    }
    bootloader::remove_kernel(tree, bootloader::UPGRADE_KERNEL);
    let _ = tree.remove(bootloader::UPGRADE_KERNEL);
    let _ = tree.remove(bootloader::UPGRADE_INITRD);
    let _ = tree.write("/etc/os-release", os_release.as_bytes());
    let _ = tree.write("/etc/redhat-release", redhat_release.as_bytes());
    let _ = tree.write("/etc/system-release", redhat_release.as_bytes());
    let _ = tree.write(&format!("/boot/vmlinuz-{kernel}"), b"kernel image\n");
    let _ = tree.write(&format!("/boot/initramfs-{kernel}.img"), b"initramfs\n");
    let major: u32 = target
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let (name, version) = os_name(tree);
    bootloader::install_kernel(tree, kernel, major, &name, &version);
    let (version, release) = kernel
        .trim_end_matches(".x86_64")
        .split_once('-')
        .unwrap_or((kernel, ""));
    install(
        tree,
        scenario,
        Package::new("kernel", version, release, "x86_64"),
        &[],
    );
    // The next hop's leapp-upgrade-elXtoelY is not installed by the upgrade:
    // the old one stays, an el7 package on an el8 system.
    record(true, "RPMUpgrade");
    record(true, "Finalization");
    let _ = tree.write(SOURCE_MARK, source.as_bytes());
    let _ = tree.write(
        LEAPP_RESUME,
        b"[Unit]\nDescription=Temporary Leapp service which resumes execution after reboot\n\
          After=multi-user.target\n\n[Service]\nType=oneshot\nExecStart=/root/tmp_leapp_py3/leapp3 upgrade --resume\n",
    );
    true
}

/// `NAME` and `VERSION` of os-release, as a kernel entry's title shows them.
pub fn os_name(tree: &Tree) -> (String, String) {
    let text =
        String::from_utf8_lossy(&tree.read("/etc/os-release").unwrap_or_default()).into_owned();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("NAME"), field("VERSION"))
}

/// At the console of a host stopped in the upgrade initramfs: pick the
/// previous system's entry in the GRUB menu for one boot. The upgrade entry
/// stays the default, as it would.
pub fn console_boot_previous(tree: &Tree) -> Result<String, String> {
    let mut state = MachineState::load(tree);
    let previous = bootloader::previous(tree).ok_or("the boot menu has no other entry")?;
    state.down = false;
    state.emergency_shell = false;
    state.reboot_pending = true;
    state.boot_once = Some(previous.id.clone());
    state.save(tree);
    Ok(previous.title)
}

fn current_version(tree: &Tree) -> String {
    let text =
        String::from_utf8_lossy(&tree.read("/etc/os-release").unwrap_or_default()).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

fn uuid() -> String {
    let hex = super::random_id();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
