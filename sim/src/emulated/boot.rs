//! What happens when the emulated machine boots: the actions queued for the
//! next boot (the leapp upgrade initramfs and FirstBoot, an LVM merge), the
//! newest kernel in /boot, a new boot id. A machine set to never return stays
//! down.

use super::lvm;
use super::profile::{rhel_kernel, rhel_release_files};
use super::results::{self, Activity};
use super::scenario::{Failure, Package, Scenario};
use super::state::{BootAction, MachineState};
use super::tree::Tree;

/// The emulated rpm database: on /var like the real one, so an LVM merge of
/// /var rolls the packages back too.
const RPM_DB: &str = "/var/lib/rpm/Packages.mf-sim.json";
pub const UPGRADE_FAILED: &str = "/root/tmp_leapp_py3/.leapp_upgrade_failed";
pub const UPGRADE_BOOT_ENTRY: &str = "/boot/loader/entries/RHEL-Upgrade-Initramfs.conf";
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
            BootAction::LeappUpgrade { target } => upgrade_initramfs(tree, scenario, &target),
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
    // The newest installed kernel boots.
    if let Some(kernel) = tree
        .list()
        .into_iter()
        .filter_map(|p| p.strip_prefix("/boot/vmlinuz-").map(str::to_string))
        .max()
    {
        let _ = tree.write(
            "/proc/sys/kernel/osrelease",
            format!("{kernel}\n").as_bytes(),
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

/// The RHEL-Upgrade-Initramfs boot: the package upgrade, then the reboot into
/// the new system, where leapp_resume.service runs FirstBoot and removes itself.
fn upgrade_initramfs(tree: &Tree, scenario: &Scenario, target: &str) {
    let _ = tree.remove(UPGRADE_BOOT_ENTRY);
    let _ = tree.remove("/boot/initramfs-upgrade.x86_64.img");
    let source = current_version(tree);
    let run_id = super::random_id();
    let activity = |success: bool, phase: &str| Activity {
        activity: "upgrade",
        success,
        source_os: format!("Red Hat Enterprise Linux {source}"),
        target_os: format!("Red Hat Enterprise Linux {target}"),
        run_id: &run_id,
        extra: serde_json::json!({"env": {"LEAPP_CURRENT_PHASE": phase}}),
    };
    let (Some((os_release, redhat_release)), Some(kernel)) =
        (rhel_release_files(target), rhel_kernel(target))
    else {
        return;
    };
    if scenario.fails(Failure::InitramfsFailure) {
        // The transaction failed in the initramfs; the one-shot boot entry is
        // gone, so the machine comes back on its old system, marked.
        let _ = tree.write(UPGRADE_FAILED, b"");
        results::append(tree, activity(false, "InitRamStart"));
        return;
    }
    let _ = tree.write("/etc/os-release", os_release.as_bytes());
    let _ = tree.write("/etc/redhat-release", redhat_release.as_bytes());
    let _ = tree.write(&format!("/boot/vmlinuz-{kernel}"), b"kernel image\n");
    let _ = tree.write(&format!("/boot/initramfs-{kernel}.img"), b"initramfs\n");
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
    if target == "8.10" {
        install(
            tree,
            scenario,
            Package::new("leapp-upgrade-el8toel9", "0.21.0", "5.el8_10", "noarch"),
            &["leapp-upgrade-el7toel8"],
        );
    }
    // FirstBoot runs from leapp_resume.service, which then removes itself.
    let _ = tree.write(
        LEAPP_RESUME,
        b"[Unit]\nDescription=Temporary Leapp service which resumes execution after reboot\n",
    );
    results::append(tree, activity(true, "FirstBoot"));
    let _ = tree.remove(LEAPP_RESUME);
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
