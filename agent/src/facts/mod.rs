//! Collects the facts of a host through the [`Host`] interface. A fact that
//! cannot be read or parsed becomes unknown with a reason, never a crash.

mod os;

use std::collections::BTreeMap;

use serde::Serialize;

pub use os::OsInfo;

use crate::host::{Host, HostError};

/// Filesystems whose free space decides whether a migration can start.
pub const WATCHED_FILESYSTEMS: [&str; 3] = ["/", "/var", "/boot"];

/// Package names reported with their versions; `leapp-upgrade-*` is matched by prefix.
const KEY_PACKAGES: [&str; 3] = ["kernel", "convert2rhel", "leapp"];
const KEY_PACKAGE_PREFIX: &str = "leapp-upgrade";

/// Free-space changes smaller than this do not make facts worth re-sending.
const FREE_SPACE_GRANULARITY: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub os: Option<OsInfo>,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub machine_id: Option<String>,
    pub boot_id: Option<String>,
    pub uptime_seconds: Option<u64>,
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub filesystems: Vec<Filesystem>,
    pub package_count: Option<u64>,
    pub packages: BTreeMap<String, String>,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub unknown: Vec<UnknownFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownFact {
    pub fact: String,
    pub reason: String,
}

impl Facts {
    /// Whether `other` differs in anything but the noise of a running system
    /// (uptime, and free space moving by less than the granularity).
    pub fn materially_differs(&self, other: &Facts) -> bool {
        self.comparable() != other.comparable()
    }

    fn comparable(&self) -> Facts {
        let mut copy = self.clone();
        copy.uptime_seconds = None;
        copy.unknown.retain(|u| u.fact != "uptime_seconds");
        for fs in &mut copy.filesystems {
            fs.free_bytes /= FREE_SPACE_GRANULARITY;
        }
        copy
    }
}

/// Gathers every fact; `labels` are the operator's, from the agent's configuration.
pub fn collect(host: &dyn Host, labels: &BTreeMap<String, String>) -> Facts {
    let mut unknown = Vec::new();
    let mut known = |fact: &str, result: Result<String, String>| -> Option<String> {
        result
            .map_err(|reason| {
                unknown.push(UnknownFact {
                    fact: fact.to_string(),
                    reason,
                })
            })
            .ok()
    };

    let os = collect_os(host);
    let os = match os {
        Ok(os) => Some(os),
        Err(reason) => {
            known("os", Err(reason));
            None
        }
    };
    let kernel = known("kernel", first_line(host, "/proc/sys/kernel/osrelease"));
    let arch = known(
        "arch",
        kernel
            .as_deref()
            .and_then(arch_from_kernel_release)
            .map(str::to_string)
            .ok_or_else(|| "kernel release names no architecture".to_string()),
    );
    let hostname = known(
        "hostname",
        first_line(host, "/proc/sys/kernel/hostname")
            .or_else(|_| first_line(host, "/etc/hostname")),
    );
    let fqdn = known("fqdn", fqdn(host, hostname.as_deref()));
    let machine_id = known("machine_id", first_line(host, "/etc/machine-id"));
    let boot_id = known(
        "boot_id",
        first_line(host, "/proc/sys/kernel/random/boot_id"),
    );
    let uptime_seconds = known("uptime_seconds", uptime(host)).and_then(|s| s.parse().ok());

    let hardware = host.hardware();
    if hardware.cpus.is_none() {
        known("cpus", Err("the system did not report its CPUs".into()));
    }
    if hardware.memory_bytes.is_none() {
        known(
            "memory_bytes",
            Err("the system did not report its memory".into()),
        );
    }

    let mut filesystems = Vec::new();
    for path in WATCHED_FILESYSTEMS {
        match host.filesystem(path) {
            Ok(usage) => filesystems.push(Filesystem {
                path: path.to_string(),
                free_bytes: usage.free_bytes,
                total_bytes: usage.total_bytes,
            }),
            Err(e) => {
                known(&format!("filesystem {path}"), Err(e.to_string()));
            }
        }
    }

    let (package_count, packages) = match packages(host) {
        Ok((count, packages)) => (Some(count), packages),
        Err(reason) => {
            known("packages", Err(reason));
            (None, BTreeMap::new())
        }
    };

    Facts {
        os,
        kernel,
        arch,
        hostname,
        fqdn,
        machine_id,
        boot_id,
        uptime_seconds,
        cpus: hardware.cpus,
        memory_bytes: hardware.memory_bytes,
        filesystems,
        package_count,
        packages,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: labels.clone(),
        unknown,
    }
}

fn first_line(host: &dyn Host, path: &str) -> Result<String, String> {
    let text = host.read_to_string(path).map_err(|e| e.to_string())?;
    text.lines()
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("{path}: empty"))
}

fn collect_os(host: &dyn Host) -> Result<OsInfo, String> {
    let text = host
        .read_to_string("/etc/os-release")
        .map_err(|e| e.to_string())?;
    let fields = os::parse_os_release(&text).map_err(|e| format!("/etc/os-release: {e}"))?;
    os::identify(&fields, |path| first_line(host, path).ok())
        .map_err(|e| format!("/etc/os-release: {e}"))
}

/// EL kernels end in their architecture: `3.10.0-1160.el7.x86_64`.
fn arch_from_kernel_release(release: &str) -> Option<&'static str> {
    ["x86_64", "aarch64", "ppc64le", "s390x", "i686"]
        .into_iter()
        .find(|arch| release.ends_with(&format!(".{arch}")))
}

/// What `hostname -f` gives with files-first name resolution: the hostname if
/// already qualified, else the first qualified alias of it in `/etc/hosts`.
fn fqdn(host: &dyn Host, hostname: Option<&str>) -> Result<String, String> {
    let hostname = hostname.ok_or("hostname is unknown")?;
    if hostname.contains('.') {
        return Ok(hostname.to_string());
    }
    let hosts = host
        .read_to_string("/etc/hosts")
        .map_err(|e| e.to_string())?;
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .map(|line| line.split_whitespace().skip(1).collect::<Vec<_>>())
        .filter(|names| names.contains(&hostname))
        .find_map(|names| {
            names
                .into_iter()
                .find(|n| n.starts_with(&format!("{hostname}.")))
                .map(str::to_string)
        })
        .ok_or_else(|| format!("/etc/hosts has no qualified name for {hostname}"))
}

fn uptime(host: &dyn Host) -> Result<String, String> {
    let line = first_line(host, "/proc/uptime")?;
    let seconds = line.split_whitespace().next().unwrap_or_default();
    seconds
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| format!("{}", s as u64))
        .ok_or_else(|| format!("/proc/uptime: cannot parse {line:?}"))
}

const RPM_QUERY_FORMAT: &str = "%{NAME}\\t%{VERSION}-%{RELEASE}.%{ARCH}\\n";

fn packages(host: &dyn Host) -> Result<(u64, BTreeMap<String, String>), String> {
    let output = host
        .run(&["rpm", "-qa", "--queryformat", RPM_QUERY_FORMAT])
        .map_err(|e| match e {
            HostError::CommandNotFound { .. } => "rpm is not installed".to_string(),
            other => other.to_string(),
        })?;
    if output.status != 0 {
        return Err(format!(
            "rpm -qa exited {}: {}",
            output.status,
            output.stderr.trim()
        ));
    }
    parse_rpm_query(&output.stdout)
}

/// Parses `NAME\tVERSION-RELEASE.ARCH` lines. Several versions of one package
/// (installed kernels) are listed together, sorted.
fn parse_rpm_query(stdout: &str) -> Result<(u64, BTreeMap<String, String>), String> {
    let mut count = 0u64;
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let (name, evra) = line
            .split_once('\t')
            .ok_or_else(|| format!("rpm output line {line:?} is not NAME<TAB>VERSION"))?;
        count += 1;
        if KEY_PACKAGES.contains(&name) || name.starts_with(KEY_PACKAGE_PREFIX) {
            found
                .entry(name.to_string())
                .or_default()
                .push(evra.to_string());
        }
    }
    let packages = found
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort();
            (name, versions.join(", "))
        })
        .collect();
    Ok((count, packages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::RootedHost;

    #[test]
    fn an_empty_tree_gives_unknown_facts_with_reasons() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let facts = collect(&RootedHost::new(dir.path()), &BTreeMap::new());
        assert!(facts.os.is_none());
        let unknown: Vec<&str> = facts.unknown.iter().map(|u| u.fact.as_str()).collect();
        for fact in [
            "os",
            "kernel",
            "arch",
            "hostname",
            "fqdn",
            "machine_id",
            "boot_id",
            "packages",
        ] {
            assert!(unknown.contains(&fact), "{fact} missing from {unknown:?}");
        }
        let os_reason = &facts
            .unknown
            .iter()
            .find(|u| u.fact == "os")
            .expect("os")
            .reason;
        assert!(os_reason.contains("/etc/os-release"), "{os_reason}");
        Ok(())
    }

    #[test]
    fn a_garbled_os_release_is_unknown_not_a_crash() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("etc"))?;
        std::fs::write(
            dir.path().join("etc/os-release"),
            b"\xff\xfe garbage without equals",
        )?;
        let facts = collect(&RootedHost::new(dir.path()), &BTreeMap::new());
        assert!(facts.os.is_none());
        assert!(
            facts
                .unknown
                .iter()
                .any(|u| u.fact == "os" && u.reason.contains("KEY=value"))
        );
        Ok(())
    }

    #[test]
    fn rpm_output_is_parsed_and_kernels_are_listed_together() {
        let out = "kernel\t3.10.0-1160.el7.x86_64\nbash\t4.2.46-34.el7.x86_64\n\
                   kernel\t3.10.0-1062.el7.x86_64\nleapp-upgrade-el7toel8\t0.20.0-2.el7_9.noarch\n";
        let (count, packages) = parse_rpm_query(out).expect("parses");
        assert_eq!(count, 4);
        assert_eq!(
            packages["kernel"],
            "3.10.0-1062.el7.x86_64, 3.10.0-1160.el7.x86_64"
        );
        assert!(packages.contains_key("leapp-upgrade-el7toel8"));
        assert!(!packages.contains_key("bash"));
        assert!(parse_rpm_query("no tab here\n").is_err());
    }
}
