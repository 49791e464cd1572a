//! `vgs`, `lvs`, `lvcreate -s`, `lvconvert --merge` and `lvremove`, over the
//! scenario's volume layout. A snapshot captures the files of its origin's
//! mount point; a merge restores them at the next boot, as LVM does when the
//! origin is in use.

use super::CommandOutput;
use super::scenario::{Failure, Scenario, Volume};
use super::state::{BootAction, MachineState, Snapshot};
use super::tree::Tree;

use super::succeeded as done;

/// LVM indents its messages by two spaces.
fn fail(status: i32, message: &str) -> CommandOutput {
    super::failed(status, &format!("  {message}"))
}

const REPORT_FLAGS: [&str; 6] = [
    "--noheadings",
    "--separator",
    ":",
    "--units",
    "b",
    "--nosuffix",
];

/// Paths of the tree that live on `volume`: under its mount point and not on
/// another volume's, nor on /boot (not LVM), /proc or /sys.
pub fn on_volume(path: &str, volume: &Volume, all: &[Volume]) -> bool {
    let under =
        |mount: &str| mount == "/" || path == mount || path.starts_with(&format!("{mount}/"));
    if ["/boot", "/proc", "/sys"].iter().any(|m| under(m)) || !under(&volume.mount) {
        return false;
    }
    // The most specific mount point containing the path owns it.
    !all.iter()
        .any(|other| other.mount.len() > volume.mount.len() && under(&other.mount))
}

fn parse_size(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let (number, unit) = lower.split_at(
        lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len()),
    );
    let n: u64 = number.parse().ok()?;
    let factor = match unit {
        "" | "m" => 1 << 20,
        "b" => 1,
        "k" => 1 << 10,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

pub fn run(tree: &Tree, scenario: &Scenario, program: &str, args: &[&str]) -> CommandOutput {
    let lvm = &scenario.lvm;
    let mut state = MachineState::load(tree);
    let used: u64 = state.snapshots.iter().map(|s| s.size_bytes).sum();
    match (program, args) {
        ("vgs", [flags @ .., "-o", "vg_name,vg_free"]) if flags == REPORT_FLAGS => done(format!(
            "  {}:{}\n",
            lvm.volume_group,
            lvm.free_bytes.saturating_sub(used)
        )),
        ("lvs", [flags @ .., "-o", "vg_name,lv_name,lv_size,lv_attr,origin"])
            if flags == REPORT_FLAGS =>
        {
            let mut out = String::new();
            for volume in &lvm.volumes {
                let has_snapshots = state.snapshots.iter().any(|s| s.origin == volume.name);
                let attr = if has_snapshots {
                    "owi-aos---"
                } else {
                    "-wi-ao----"
                };
                out.push_str(&format!(
                    "  {}:{}:{}:{attr}:\n",
                    lvm.volume_group, volume.name, volume.size_bytes
                ));
            }
            for snapshot in &state.snapshots {
                let state_char = if scenario.fails(Failure::SnapshotOverflow) {
                    'I'
                } else {
                    'a'
                };
                let kind = if snapshot.merging { 'S' } else { 's' };
                out.push_str(&format!(
                    "  {}:{}:{}:{kind}wi-{state_char}-s---:{}\n",
                    snapshot.vg, snapshot.name, snapshot.size_bytes, snapshot.origin
                ));
            }
            done(out)
        }
        ("lvcreate", ["-s", "-n", name, "-L", size, origin]) => {
            let Some((vg, lv)) = origin.split_once('/') else {
                return fail(3, &format!("Invalid logical volume name {origin}"));
            };
            let Some(volume) = lvm
                .volumes
                .iter()
                .find(|v| v.name == lv && vg == lvm.volume_group)
            else {
                return fail(5, &format!("Failed to find logical volume \"{origin}\""));
            };
            let Some(bytes) = parse_size(size) else {
                return fail(3, &format!("Invalid argument for --size: {size}"));
            };
            if state.snapshots.iter().any(|s| s.name == *name) {
                return fail(
                    5,
                    &format!("Logical Volume \"{name}\" already exists in volume group \"{vg}\""),
                );
            }
            if bytes > lvm.free_bytes.saturating_sub(used) {
                return fail(
                    5,
                    &format!(
                        "Volume group \"{vg}\" has insufficient free space: {bytes} bytes required."
                    ),
                );
            }
            let files = tree
                .list()
                .into_iter()
                .filter(|p| on_volume(p, volume, &lvm.volumes))
                .filter_map(|p| {
                    tree.read(&p)
                        .ok()
                        .map(|c| (p, String::from_utf8_lossy(&c).into_owned()))
                })
                .collect();
            state.snapshots.push(Snapshot {
                vg: vg.into(),
                name: (*name).into(),
                origin: lv.into(),
                size_bytes: bytes,
                merging: false,
                files,
            });
            state.save(tree);
            done(format!("  Logical volume \"{name}\" created.\n"))
        }
        ("lvconvert", ["--merge", target]) => {
            let name = target.rsplit('/').next().unwrap_or(target);
            let Some(snapshot) = state.snapshots.iter_mut().find(|s| s.name == name) else {
                return fail(5, &format!("Failed to find logical volume \"{target}\""));
            };
            if scenario.fails(Failure::SnapshotOverflow) {
                return fail(
                    5,
                    &format!("Unable to merge invalidated snapshot LV \"{name}\"."),
                );
            }
            snapshot.merging = true;
            let origin = format!("{}/{}", snapshot.vg, snapshot.origin);
            if !state.at_boot.contains(&BootAction::MergeSnapshots) {
                state.at_boot.push(BootAction::MergeSnapshots);
            }
            state.save(tree);
            done(format!(
                "  Delaying merge since origin is open.\n  Merging of snapshot {target} will occur on next activation of {origin}.\n"
            ))
        }
        ("lvremove", ["-y" | "-f", target]) => {
            let name = target.rsplit('/').next().unwrap_or(target);
            let before = state.snapshots.len();
            state.snapshots.retain(|s| s.name != name);
            if state.snapshots.len() == before {
                return fail(5, &format!("Failed to find logical volume \"{target}\""));
            }
            state.save(tree);
            done(format!(
                "  Logical volume \"{name}\" successfully removed.\n"
            ))
        }
        _ => fail(
            3,
            &format!("{program}: unsupported arguments: {}", args.join(" ")),
        ),
    }
}

/// At boot: merging snapshots put their origin's files back.
pub fn merge_at_boot(tree: &Tree, scenario: &Scenario, state: &mut MachineState) {
    let volumes = &scenario.lvm.volumes;
    for snapshot in state.snapshots.iter().filter(|s| s.merging) {
        let Some(volume) = volumes.iter().find(|v| v.name == snapshot.origin) else {
            continue;
        };
        for path in tree
            .list()
            .into_iter()
            .filter(|p| on_volume(p, volume, volumes))
        {
            let _ = tree.remove(&path);
        }
        for (path, content) in &snapshot.files {
            let _ = tree.write(path, content.as_bytes());
        }
    }
    state.snapshots.retain(|s| !s.merging);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_belong_to_the_most_specific_volume() {
        let volumes = super::super::scenario::Lvm::default().volumes;
        let (root, var) = (&volumes[0], &volumes[1]);
        assert!(on_volume("/etc/os-release", root, &volumes));
        assert!(!on_volume("/var/log/x", root, &volumes));
        assert!(on_volume("/var/log/x", var, &volumes));
        assert!(!on_volume("/boot/vmlinuz", root, &volumes));
        assert!(!on_volume("/proc/uptime", root, &volumes));
    }

    #[test]
    fn sizes_read_like_lvcreate() {
        assert_eq!(parse_size("2048m"), Some(2048 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1024b"), Some(1024));
        assert_eq!(parse_size("12x"), None);
    }
}
