//! The distributions of a fleet still to migrate, as files and packages: what
//! a simulated host of each profile looks like on day one.

use std::collections::BTreeMap;

use super::scenario::{Package, Scenario, ScenarioFinding, Space};
use mf_agent::host::FsUsage;

/// The operating systems of a realistic fleet still to migrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimProfile {
    Centos79,
    Oracle79,
    Rhel79,
    Rhel810,
    Rocky810,
}

impl SimProfile {
    pub const ALL: [SimProfile; 5] = [
        SimProfile::Centos79,
        SimProfile::Oracle79,
        SimProfile::Rhel79,
        SimProfile::Rhel810,
        SimProfile::Rocky810,
    ];

    pub fn kernel_release(self) -> &'static str {
        match self {
            SimProfile::Centos79 => "3.10.0-1160.119.1.el7.x86_64",
            SimProfile::Oracle79 => "3.10.0-1160.118.1.0.1.el7.x86_64",
            SimProfile::Rhel79 => "3.10.0-1160.125.1.el7.x86_64",
            SimProfile::Rhel810 | SimProfile::Rocky810 => "4.18.0-553.el8_10.x86_64",
        }
    }

    /// `/etc/os-release` as each distribution ships it.
    pub fn os_release(self) -> &'static str {
        match self {
            SimProfile::Centos79 => concat!(
                "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\n",
                "VERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\nANSI_COLOR=\"0;31\"\n",
                "CPE_NAME=\"cpe:/o:centos:centos:7\"\nHOME_URL=\"https://www.centos.org/\"\n",
                "BUG_REPORT_URL=\"https://bugs.centos.org/\"\n\nCENTOS_MANTISBT_PROJECT=\"CentOS-7\"\n",
                "CENTOS_MANTISBT_PROJECT_VERSION=\"7\"\nREDHAT_SUPPORT_PRODUCT=\"centos\"\n",
                "REDHAT_SUPPORT_PRODUCT_VERSION=\"7\"\n\n"
            ),
            SimProfile::Oracle79 => concat!(
                "NAME=\"Oracle Linux Server\"\nVERSION=\"7.9\"\nID=\"ol\"\nID_LIKE=\"fedora\"\n",
                "VARIANT=\"Server\"\nVARIANT_ID=\"server\"\nVERSION_ID=\"7.9\"\n",
                "PRETTY_NAME=\"Oracle Linux Server 7.9\"\nANSI_COLOR=\"0;31\"\n",
                "CPE_NAME=\"cpe:/o:oracle:linux:7:9:server\"\nHOME_URL=\"https://linux.oracle.com/\"\n",
                "BUG_REPORT_URL=\"https://bugzilla.oracle.com/\"\n\n",
                "ORACLE_BUGZILLA_PRODUCT=\"Oracle Linux 7\"\nORACLE_BUGZILLA_PRODUCT_VERSION=7.9\n",
                "ORACLE_SUPPORT_PRODUCT=\"Oracle Linux\"\nORACLE_SUPPORT_PRODUCT_VERSION=7.9\n"
            ),
            SimProfile::Rhel79 => concat!(
                "NAME=\"Red Hat Enterprise Linux Server\"\nVERSION=\"7.9 (Maipo)\"\nID=\"rhel\"\n",
                "ID_LIKE=\"fedora\"\nVARIANT=\"Server\"\nVARIANT_ID=\"server\"\nVERSION_ID=\"7.9\"\n",
                "PRETTY_NAME=\"Red Hat Enterprise Linux\"\nANSI_COLOR=\"0;31\"\n",
                "CPE_NAME=\"cpe:/o:redhat:enterprise_linux:7.9:GA:server\"\n",
                "HOME_URL=\"https://www.redhat.com/\"\nBUG_REPORT_URL=\"https://bugzilla.redhat.com/\"\n\n",
                "REDHAT_BUGZILLA_PRODUCT=\"Red Hat Enterprise Linux 7\"\n",
                "REDHAT_BUGZILLA_PRODUCT_VERSION=7.9\nREDHAT_SUPPORT_PRODUCT=\"Red Hat Enterprise Linux\"\n",
                "REDHAT_SUPPORT_PRODUCT_VERSION=\"7.9\"\n"
            ),
            SimProfile::Rhel810 => concat!(
                "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"8.10 (Ootpa)\"\nID=\"rhel\"\n",
                "ID_LIKE=\"fedora\"\nVERSION_ID=\"8.10\"\nPLATFORM_ID=\"platform:el8\"\n",
                "PRETTY_NAME=\"Red Hat Enterprise Linux 8.10 (Ootpa)\"\nANSI_COLOR=\"0;31\"\n",
                "CPE_NAME=\"cpe:/o:redhat:enterprise_linux:8::baseos\"\nHOME_URL=\"https://www.redhat.com/\"\n",
                "BUG_REPORT_URL=\"https://issues.redhat.com/\"\n\n",
                "REDHAT_BUGZILLA_PRODUCT=\"Red Hat Enterprise Linux 8\"\nREDHAT_BUGZILLA_PRODUCT_VERSION=8.10\n",
                "REDHAT_SUPPORT_PRODUCT=\"Red Hat Enterprise Linux\"\nREDHAT_SUPPORT_PRODUCT_VERSION=\"8.10\"\n"
            ),
            SimProfile::Rocky810 => concat!(
                "NAME=\"Rocky Linux\"\nVERSION=\"8.10 (Green Obsidian)\"\nID=\"rocky\"\n",
                "ID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.10\"\nPLATFORM_ID=\"platform:el8\"\n",
                "PRETTY_NAME=\"Rocky Linux 8.10 (Green Obsidian)\"\nANSI_COLOR=\"0;32\"\n",
                "LOGO=\"fedora-logo-icon\"\nCPE_NAME=\"cpe:/o:rocky:rocky:8:GA\"\n",
                "HOME_URL=\"https://rockylinux.org/\"\nBUG_REPORT_URL=\"https://bugs.rockylinux.org/\"\n",
                "SUPPORT_END=\"2029-05-31\"\nROCKY_SUPPORT_PRODUCT=\"Rocky-Linux-8\"\n",
                "ROCKY_SUPPORT_PRODUCT_VERSION=\"8.10\"\nREDHAT_SUPPORT_PRODUCT=\"Rocky Linux\"\n",
                "REDHAT_SUPPORT_PRODUCT_VERSION=\"8.10\"\n"
            ),
        }
    }

    /// The distribution's release files (path, content).
    fn release_files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            SimProfile::Centos79 => &[
                (
                    "/etc/centos-release",
                    "CentOS Linux release 7.9.2009 (Core)\n",
                ),
                (
                    "/etc/redhat-release",
                    "CentOS Linux release 7.9.2009 (Core)\n",
                ),
            ],
            SimProfile::Oracle79 => &[
                ("/etc/oracle-release", "Oracle Linux Server release 7.9\n"),
                (
                    "/etc/redhat-release",
                    "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n",
                ),
            ],
            SimProfile::Rhel79 => &[(
                "/etc/redhat-release",
                "Red Hat Enterprise Linux Server release 7.9 (Maipo)\n",
            )],
            SimProfile::Rhel810 => &[(
                "/etc/redhat-release",
                "Red Hat Enterprise Linux release 8.10 (Ootpa)\n",
            )],
            SimProfile::Rocky810 => &[
                (
                    "/etc/rocky-release",
                    "Rocky Linux release 8.10 (Green Obsidian)\n",
                ),
                (
                    "/etc/redhat-release",
                    "Rocky Linux release 8.10 (Green Obsidian)\n",
                ),
            ],
        }
    }

    /// Installed packages that matter to a migration: (name, version, release, arch).
    fn key_packages(self) -> &'static [(&'static str, &'static str, &'static str, &'static str)] {
        match self {
            SimProfile::Centos79 => &[
                ("kernel", "3.10.0", "1160.119.1.el7", "x86_64"),
                ("convert2rhel", "2.1.0", "1.el7", "noarch"),
            ],
            SimProfile::Oracle79 => &[
                ("kernel", "3.10.0", "1160.118.1.0.1.el7", "x86_64"),
                ("convert2rhel", "2.0.0", "1.el7", "noarch"),
            ],
            SimProfile::Rhel79 => &[
                ("kernel", "3.10.0", "1160.125.1.el7", "x86_64"),
                ("leapp", "0.17.0", "1.el7_9", "noarch"),
                ("leapp-upgrade-el7toel8", "0.20.0", "2.el7_9", "noarch"),
            ],
            SimProfile::Rhel810 => &[
                ("kernel", "4.18.0", "553.el8_10", "x86_64"),
                ("leapp", "0.18.0", "1.el8_10", "noarch"),
                ("leapp-upgrade-el8toel9", "0.21.0", "5.el8_10", "noarch"),
            ],
            SimProfile::Rocky810 => &[
                ("kernel", "4.18.0", "553.el8_10", "x86_64"),
                ("convert2rhel", "2.1.0", "1.el8", "noarch"),
            ],
        }
    }
}

/// os-release and redhat-release of the RHEL releases a migration ends on.
pub fn rhel_release_files(version: &str) -> Option<(String, String)> {
    let (os_release, release) = match version {
        "7.9" => (
            SimProfile::Rhel79.os_release().to_string(),
            "Red Hat Enterprise Linux Server release 7.9 (Maipo)",
        ),
        "8.10" => (
            SimProfile::Rhel810.os_release().to_string(),
            "Red Hat Enterprise Linux release 8.10 (Ootpa)",
        ),
        "9.4" | "9.6" | "9.8" => (
            format!(
                "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"{version} (Plow)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\n\
                 VERSION_ID=\"{version}\"\nPLATFORM_ID=\"platform:el9\"\n\
                 PRETTY_NAME=\"Red Hat Enterprise Linux {version} (Plow)\"\nANSI_COLOR=\"0;31\"\n\
                 CPE_NAME=\"cpe:/o:redhat:enterprise_linux:9::baseos\"\nHOME_URL=\"https://www.redhat.com/\"\n\
                 REDHAT_SUPPORT_PRODUCT=\"Red Hat Enterprise Linux\"\nREDHAT_SUPPORT_PRODUCT_VERSION=\"{version}\"\n"
            ),
            match version {
                "9.4" => "Red Hat Enterprise Linux release 9.4 (Plow)",
                "9.6" => "Red Hat Enterprise Linux release 9.6 (Plow)",
                _ => "Red Hat Enterprise Linux release 9.8 (Plow)",
            },
        ),
        "10.0" => (
            "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"10.0 (Coughlan)\"\nID=\"rhel\"\n\
             ID_LIKE=\"centos fedora\"\nVERSION_ID=\"10.0\"\nPLATFORM_ID=\"platform:el10\"\n\
             PRETTY_NAME=\"Red Hat Enterprise Linux 10.0 (Coughlan)\"\nANSI_COLOR=\"0;31\"\n\
             CPE_NAME=\"cpe:/o:redhat:enterprise_linux:10::baseos\"\n\
             REDHAT_SUPPORT_PRODUCT=\"Red Hat Enterprise Linux\"\nREDHAT_SUPPORT_PRODUCT_VERSION=\"10.0\"\n"
                .to_string(),
            "Red Hat Enterprise Linux release 10.0 (Coughlan)",
        ),
        _ => return None,
    };
    Some((os_release, format!("{release}\n")))
}

/// The kernel a RHEL release boots after a migration step lands on it.
pub fn rhel_kernel(version: &str) -> Option<&'static str> {
    match version {
        "7.9" => Some("3.10.0-1160.125.1.el7.x86_64"),
        "8.10" => Some("4.18.0-553.el8_10.x86_64"),
        "9.4" => Some("5.14.0-427.13.1.el9_4.x86_64"),
        "9.6" => Some("5.14.0-570.12.1.el9_6.x86_64"),
        "9.8" => Some("5.14.0-611.5.1.el9_8.x86_64"),
        "10.0" => Some("6.12.0-55.9.1.el10_0.x86_64"),
        _ => None,
    }
}

/// The `upgrade_paths.json` a leapp-repository package installs (RHEL
/// paths of its default flavour, as the packages of late 2026 ship them).
pub fn upgrade_paths_of(package: &str) -> Option<&'static str> {
    match package {
        "leapp-upgrade-el7toel8" => Some(
            r#"{"rhel": {"default": {"7.9": ["8.10"], "7": ["8.10"]}, "saphana": {"7.9": ["8.10"], "7": ["8.10"]}}}"#,
        ),
        "leapp-upgrade-el8toel9" => Some(
            r#"{"rhel": {"default": {"8.10": ["9.6", "9.8"], "8": ["9.6", "9.8"]}, "saphana": {"8.10": ["9.6"], "8": ["9.6"]}}}"#,
        ),
        "leapp-upgrade-el9toel10" => {
            Some(r#"{"rhel": {"default": {"9.6": ["10.0"], "9": ["10.0"]}}}"#)
        }
        _ => None,
    }
}

/// What differs from one simulated host to the next.
#[derive(Debug, Clone)]
pub struct SimHostSpec {
    pub profile: SimProfile,
    pub hostname: String,
    pub domain: String,
    pub machine_id: String,
    pub boot_id: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Packages besides the key ones, as an installed system has hundreds.
    pub other_packages: u32,
    /// Free and total bytes of `/`, `/var` and `/boot`.
    pub filesystems: BTreeMap<String, FsUsage>,
    pub uptime_seconds: u64,
    /// What the migration tools' pre-checks will find on this host.
    pub findings: Vec<ScenarioFinding>,
    /// Failures to inject in its migration.
    pub failures: Vec<super::scenario::Failure>,
    /// A site snapshot hook installed on it.
    pub hook: Option<super::scenario::Hook>,
}

impl SimHostSpec {
    /// A plain host of `profile` for tests: room to spare everywhere, no
    /// findings, no failures, boot id `boot-0`.
    pub fn example(profile: SimProfile) -> Self {
        let fs = FsUsage {
            free_bytes: 10 << 30,
            total_bytes: 20 << 30,
        };
        Self {
            profile,
            hostname: "h".into(),
            domain: "example.com".into(),
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            boot_id: "boot-0".into(),
            cpus: 2,
            memory_bytes: 4 << 30,
            other_packages: 3,
            filesystems: mf_agent::facts::WATCHED_FILESYSTEMS
                .iter()
                .map(|p| (p.to_string(), fs))
                .collect(),
            uptime_seconds: 100,
            findings: Vec::new(),
            failures: Vec::new(),
            hook: None,
        }
    }
}

/// The initial files and the scenario of a simulated host.
pub fn build(spec: &SimHostSpec) -> (BTreeMap<String, Vec<u8>>, Scenario) {
    let fqdn = format!("{}.{}", spec.hostname, spec.domain);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut put = |path: &str, content: String| {
        files.insert(path.to_string(), content.into_bytes());
    };
    put("/etc/os-release", spec.profile.os_release().to_string());
    for (path, content) in spec.profile.release_files() {
        put(path, (*content).to_string());
    }
    // A link to the distribution's own release file on a real system.
    if let Some((_, content)) = spec.profile.release_files().first() {
        put("/etc/system-release", (*content).to_string());
    }
    put("/etc/hostname", format!("{}\n", spec.hostname));
    put(
        "/etc/hosts",
        format!(
            "127.0.0.1   localhost localhost.localdomain\n10.20.0.1   {fqdn} {}\n",
            spec.hostname
        ),
    );
    put("/etc/machine-id", format!("{}\n", spec.machine_id));
    put("/proc/sys/kernel/hostname", format!("{}\n", spec.hostname));
    put(
        "/proc/sys/kernel/osrelease",
        format!("{}\n", spec.profile.kernel_release()),
    );
    put(
        &format!("/boot/vmlinuz-{}", spec.profile.kernel_release()),
        "kernel image\n".into(),
    );
    put(
        &format!("/boot/initramfs-{}.img", spec.profile.kernel_release()),
        "initramfs\n".into(),
    );
    put(
        "/proc/sys/kernel/random/boot_id",
        format!("{}\n", spec.boot_id),
    );
    put(
        "/proc/uptime",
        format!(
            "{}.42 {}.17\n",
            spec.uptime_seconds,
            spec.uptime_seconds * 3
        ),
    );
    // How the site reaches RHEL content: credentials for convert2rhel (the
    // file it reads by itself), an RHSM registration on RHEL.
    put(
        "/etc/convert2rhel.ini",
        "[subscription_manager]\nactivation_key = sim-fleet\norg = 1234567\n".into(),
    );
    if matches!(spec.profile, SimProfile::Rhel79 | SimProfile::Rhel810) {
        put(
            "/etc/pki/consumer/cert.pem",
            "-----BEGIN CERTIFICATE-----\n(simulated RHSM consumer)\n-----END CERTIFICATE-----\n"
                .into(),
        );
    }
    if let Some(hook) = &spec.hook {
        put(&hook.path, "#!/bin/sh\n# site snapshot hook\n".into());
    }
    let scenario = Scenario {
        packages: spec
            .profile
            .key_packages()
            .iter()
            .map(|(n, v, r, a)| Package::new(n, v, r, a))
            .collect(),
        other_packages: spec.other_packages,
        findings: spec.findings.clone(),
        failures: spec.failures.clone(),
        hook: spec.hook.clone(),
        filesystems: spec
            .filesystems
            .iter()
            .map(|(path, fs)| {
                (
                    path.clone(),
                    Space {
                        free_bytes: fs.free_bytes,
                        total_bytes: fs.total_bytes,
                    },
                )
            })
            .collect(),
        cpus: Some(spec.cpus),
        memory_bytes: Some(spec.memory_bytes),
        ..Scenario::default()
    };
    (files, scenario)
}
