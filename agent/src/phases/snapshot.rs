//! Snapshots before a change, and what becomes of them: LVM snapshots of the
//! system volumes sized against the volume group's free space plus an archive
//! of /boot (not on LVM); a site's hook (`COMMAND take|revert|remove` with the
//! host and job in its environment, trusted by its exit code), typically a
//! hypervisor snapshot; or none, where the host's configuration allows it.
//! Revert restores /boot and merges every snapshot (the merge completes at the
//! next boot); commit removes them.

use serde::Deserialize;

use crate::host::{Host, HostError};
use crate::migration::SnapshotSet;

/// How this host protects a change, from its configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    pub provider: Provider,
    /// `vg/lv` to snapshot; empty means every volume that is not a snapshot.
    pub volumes: Vec<String>,
    /// Each snapshot's size, in percent of its origin's.
    pub size_percent: u32,
    /// Where the /boot archive goes on the host.
    pub backup_dir: String,
    /// The hook of the `command` provider: an absolute path on the host.
    pub command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Lvm,
    AgentCommand,
    /// No snapshot: only where the operator configured it for this host.
    None,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Lvm,
            volumes: Vec::new(),
            size_percent: 20,
            backup_dir: "/var/lib/mf-agent".into(),
            command: None,
        }
    }
}

/// The agent's LVM reports: no headings, `:`-separated, sizes in bytes.
pub const LVS: [&str; 9] = [
    "lvs",
    "--noheadings",
    "--separator",
    ":",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,lv_name,lv_size,lv_attr,origin",
];
pub const VGS: [&str; 9] = [
    "vgs",
    "--noheadings",
    "--separator",
    ":",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,vg_free",
];
const MIB: u64 = 1 << 20;

/// One line of `lvs`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lv {
    vg: String,
    name: String,
    size: u64,
    attr: String,
    origin: String,
}

impl Lv {
    fn is_snapshot(&self) -> bool {
        self.attr.starts_with('s') || self.attr.starts_with('S')
    }

    /// The fifth attribute character is `I` for an invalid (overflowed) snapshot.
    fn is_invalid(&self) -> bool {
        self.attr.chars().nth(4) == Some('I')
    }

    fn path(&self) -> String {
        format!("{}/{}", self.vg, self.name)
    }
}

/// Why a snapshot could not be taken, reverted, checked or removed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{command}: {source}")]
    CannotRun {
        command: String,
        #[source]
        source: HostError,
    },
    #[error("{command} exited {status}: {stderr}")]
    Exited {
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("{tool}: {what} in {line:?}")]
    Unreadable {
        tool: &'static str,
        what: &'static str,
        line: String,
    },
    #[error("no logical volume to snapshot (is the system on LVM?)")]
    NoVolumes,
    #[error("volume group {vg} has {free_mib} MiB free; the snapshots need {needed_mib} MiB")]
    NoRoom {
        vg: String,
        free_mib: u64,
        needed_mib: u64,
    },
    #[error("cannot back up /boot: {0}")]
    BootBackup(Box<SnapshotError>),
    #[error("the snapshot hook must be an absolute path, not {0:?}")]
    RelativeHook(String),
    #[error("the command snapshot provider needs `command` in the agent's configuration")]
    NoHook,
    #[error("there is no snapshot to revert to")]
    NothingToRevert,
    #[error("snapshot {0} is missing: cannot roll back")]
    Missing(String),
    #[error("snapshot {0} is invalid (it overflowed): cannot roll back")]
    Overflowed(String),
    #[error("snapshot {0} has not merged")]
    NotMerged(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NotRemoved(Vec<SnapshotError>),
    #[error("the /boot archive {0} lists no kernel and no boot loader: /boot was left as it is")]
    BootArchiveUnusable(String),
    #[error(transparent)]
    BootLoader(#[from] super::bootloader::BootLoaderError),
    #[error(transparent)]
    Host(#[from] HostError),
}

fn run(host: &dyn Host, argv: &[&str]) -> Result<String, SnapshotError> {
    let command = || argv.join(" ");
    let output = host.run(argv).map_err(|source| SnapshotError::CannotRun {
        command: command(),
        source,
    })?;
    if output.status != 0 {
        return Err(SnapshotError::Exited {
            command: command(),
            status: output.status,
            stderr: output.stderr.trim().to_string(),
        });
    }
    Ok(output.stdout)
}

fn unreadable(tool: &'static str, what: &'static str, line: &str) -> SnapshotError {
    SnapshotError::Unreadable {
        tool,
        what,
        line: line.to_string(),
    }
}

fn volumes(host: &dyn Host) -> Result<Vec<Lv>, SnapshotError> {
    let stdout = run(host, &LVS)?;
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.trim().split(':').collect();
            match fields.as_slice() {
                [vg, name, size, attr, origin] => Ok(Lv {
                    vg: (*vg).into(),
                    name: (*name).into(),
                    size: size
                        .parse()
                        .map_err(|_| unreadable("lvs", "bad size", line))?,
                    attr: (*attr).into(),
                    origin: (*origin).into(),
                }),
                _ => Err(unreadable("lvs", "cannot read", line)),
            }
        })
        .collect()
}

fn free_space(host: &dyn Host) -> Result<Vec<(String, u64)>, SnapshotError> {
    run(host, &VGS)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (vg, free) = line
                .trim()
                .split_once(':')
                .ok_or_else(|| unreadable("vgs", "cannot read", line))?;
            Ok((
                vg.to_string(),
                free.parse()
                    .map_err(|_| unreadable("vgs", "bad size", line))?,
            ))
        })
        .collect()
}

/// What the snapshots would need and what the volume groups have, for the
/// pre-check: (volume group, needed, free) per group.
pub fn capacity(
    host: &dyn Host,
    config: &SnapshotConfig,
) -> Result<Vec<(String, u64, u64)>, SnapshotError> {
    let all = volumes(host)?;
    let chosen = choose(&all, config);
    if chosen.is_empty() {
        return Err(SnapshotError::NoVolumes);
    }
    Ok(free_space(host)?
        .into_iter()
        .map(|(vg, free)| {
            let needed = chosen
                .iter()
                .filter(|lv| lv.vg == vg)
                .map(|lv| snapshot_size(lv, config))
                .sum();
            (vg, needed, free)
        })
        .collect())
}

fn choose<'a>(all: &'a [Lv], config: &SnapshotConfig) -> Vec<&'a Lv> {
    all.iter()
        .filter(|lv| !lv.is_snapshot())
        .filter(|lv| config.volumes.is_empty() || config.volumes.contains(&lv.path()))
        .collect()
}

fn snapshot_size(lv: &Lv, config: &SnapshotConfig) -> u64 {
    (lv.size / 100 * u64::from(config.size_percent.clamp(1, 100))).div_ceil(MIB) * MIB
}

/// Takes the snapshot set for `job_id`. On any failure, what was created is
/// removed again and the host is as before.
pub fn take(
    host: &dyn Host,
    config: &SnapshotConfig,
    host_id: &str,
    job_id: &str,
) -> Result<(SnapshotSet, String), SnapshotError> {
    if config.provider == Provider::AgentCommand {
        let command = hook(config)?;
        let name = format!("mf-{job_id}");
        run_hook(host, &command, "take", host_id, job_id, &name)?;
        return Ok((
            SnapshotSet::AgentCommand {
                command: command.clone(),
                name: name.clone(),
            },
            format!("{command} took snapshot {name}"),
        ));
    }
    if config.provider == Provider::None {
        return Ok((
            SnapshotSet::None,
            "no snapshot: this host's configuration allows migrating without one".into(),
        ));
    }
    let all = volumes(host)?;
    let chosen = choose(&all, config);
    for (vg, needed, free) in capacity(host, config)? {
        if needed > free {
            return Err(SnapshotError::NoRoom {
                vg,
                free_mib: free / MIB,
                needed_mib: needed / MIB,
            });
        }
    }
    let suffix: String = job_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let mut created: Vec<String> = Vec::new();
    for lv in &chosen {
        let name = format!("{}_mf_{suffix}", lv.name);
        let size_arg = format!("{}m", snapshot_size(lv, config) / MIB);
        let origin = lv.path();
        if let Err(e) = run(
            host,
            &["lvcreate", "-s", "-n", &name, "-L", &size_arg, &origin],
        ) {
            remove_volumes(host, &created);
            return Err(e);
        }
        created.push(format!("{}/{name}", lv.vg));
    }
    let boot_backup = format!(
        "{}/boot-{suffix}.tar.gz",
        config.backup_dir.trim_end_matches('/')
    );
    if let Err(e) = run(host, &["tar", "-czf", &boot_backup, "-C", "/boot", "."]) {
        remove_volumes(host, &created);
        return Err(SnapshotError::BootBackup(Box::new(e)));
    }
    let detail = format!(
        "snapshots {} and /boot in {boot_backup}",
        created.join(", ")
    );
    Ok((
        SnapshotSet::Lvm {
            volumes: created,
            boot_backup,
        },
        detail,
    ))
}

fn remove_volumes(host: &dyn Host, volumes: &[String]) -> Vec<SnapshotError> {
    volumes
        .iter()
        .filter_map(|v| run(host, &["lvremove", "-y", v]).err())
        .collect()
}

fn hook(config: &SnapshotConfig) -> Result<String, SnapshotError> {
    match config.command.as_deref() {
        Some(path) if path.starts_with('/') => Ok(path.to_string()),
        Some(path) => Err(SnapshotError::RelativeHook(path.to_string())),
        None => Err(SnapshotError::NoHook),
    }
}

/// `COMMAND ACTION` with the host, the job and the snapshot in its environment.
fn run_hook(
    host: &dyn Host,
    command: &str,
    action: &str,
    host_id: &str,
    job_id: &str,
    name: &str,
) -> Result<String, SnapshotError> {
    let env = [
        ("MF_ACTION", action),
        ("MF_HOST_ID", host_id),
        ("MF_JOB_ID", job_id),
        ("MF_SNAPSHOT", name),
    ];
    let output = host
        .run_with_env(&[command, action], &env)
        .map_err(|source| SnapshotError::CannotRun {
            command: format!("{command} {action}"),
            source,
        })?;
    if output.status != 0 {
        return Err(SnapshotError::Exited {
            command: format!("{command} {action}"),
            status: output.status,
            stderr: output.stderr.trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// The job id a hook snapshot was named for.
fn job_of(name: &str) -> &str {
    name.strip_prefix("mf-").unwrap_or(name)
}

/// Reverts to the snapshot set: for LVM restores /boot and starts the merge
/// of every snapshot; for a hook asks it to revert. The caller reboots.
pub fn revert(host: &dyn Host, set: &SnapshotSet, host_id: &str) -> Result<(), SnapshotError> {
    if let SnapshotSet::AgentCommand { command, name } = set {
        return run_hook(host, command, "revert", host_id, job_of(name), name).map(|_| ());
    }
    let SnapshotSet::Lvm {
        volumes: names,
        boot_backup,
    } = set
    else {
        return Err(SnapshotError::NothingToRevert);
    };
    let current = volumes(host)?;
    for name in names {
        match current.iter().find(|lv| &lv.path() == name) {
            None => return Err(SnapshotError::Missing(name.clone())),
            Some(lv) if lv.is_invalid() => return Err(SnapshotError::Overflowed(name.clone())),
            Some(_) => {}
        }
    }
    restore_boot(host, boot_backup)?;
    for name in names {
        run(host, &["lvconvert", "--merge", name])?;
    }
    Ok(())
}

/// Makes /boot what the archive holds: tar extracts over /boot and deletes
/// nothing, so the kernels and boot entries the step added are removed first
/// (an archive that lists no kernel or no boot loader is refused rather than
/// trusted to empty /boot). Then leapp's entry must not be the default.
fn restore_boot(host: &dyn Host, archive: &str) -> Result<(), SnapshotError> {
    let listing = run(host, &["tar", "-tzf", archive])?;
    let kept: std::collections::BTreeSet<String> = listing
        .lines()
        .map(|m| m.trim().trim_start_matches("./").trim_end_matches('/'))
        .filter(|m| !m.is_empty())
        .map(|m| format!("/boot/{m}"))
        .collect();
    let has = |prefix: &str| kept.iter().any(|p| p.starts_with(prefix));
    if !has("/boot/vmlinuz-") || !(has("/boot/grub2/") || has("/boot/loader/")) {
        return Err(SnapshotError::BootArchiveUnusable(archive.to_string()));
    }
    for path in host.list_files("/boot")? {
        if !kept.contains(&path) && path != archive {
            host.remove_file(&path)?;
        }
    }
    run(host, &["tar", "-xzf", archive, "-C", "/boot"])?;
    super::bootloader::remove_upgrade_entry(host)?;
    Ok(())
}

/// After the reboot of a revert: every snapshot has merged away.
pub fn merged(host: &dyn Host, set: &SnapshotSet) -> Result<(), SnapshotError> {
    let SnapshotSet::Lvm { volumes: names, .. } = set else {
        return Ok(());
    };
    let current = volumes(host)?;
    match names
        .iter()
        .find(|n| current.iter().any(|lv| &lv.path() == *n))
    {
        Some(left) => Err(SnapshotError::NotMerged(left.clone())),
        None => Ok(()),
    }
}

/// Keeps the change: removes the snapshots and the /boot archive.
pub fn remove(host: &dyn Host, set: &SnapshotSet, host_id: &str) -> Result<String, SnapshotError> {
    if let SnapshotSet::AgentCommand { command, name } = set {
        return run_hook(host, command, "remove", host_id, job_of(name), name)
            .map(|_| format!("{command} removed {name}"));
    }
    let SnapshotSet::Lvm {
        volumes: names,
        boot_backup,
    } = set
    else {
        return Ok("no snapshot to remove".into());
    };
    let failures = remove_volumes(host, names);
    if !failures.is_empty() {
        return Err(SnapshotError::NotRemoved(failures));
    }
    host.remove_file(boot_backup)?;
    Ok(format!("removed {}", names.join(", ")))
}
