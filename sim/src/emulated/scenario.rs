//! What an emulated host is like and what will happen on it: its packages, the
//! findings its tools raise, the tool versions, and failures to inject. Read
//! from `<host-root>/.mf-sim/scenario.toml` for a directory, built from the
//! fleet plan for `mf-agent sim`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where the scenario of a host-root directory lives.
pub const SCENARIO_PATH: &str = "/.mf-sim/scenario.toml";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Installed packages the agent looks for (kernel, convert2rhel, leapp...).
    pub packages: Vec<Package>,
    /// How many other packages `rpm -qa` lists.
    pub other_packages: u32,
    /// Findings the tools' pre-checks raise.
    pub findings: Vec<ScenarioFinding>,
    /// Failures to inject.
    pub failures: Vec<Failure>,
    /// A file of the tree written verbatim as the tool's report instead of one
    /// built from `findings`.
    pub report_file: Option<String>,
    /// Free and total bytes per mount point; a directory tree otherwise reports
    /// the real space of the directory.
    pub filesystems: BTreeMap<String, Space>,
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    /// How long the tools take.
    pub durations: Durations,
    /// The LVM layout; the default is a standard RHEL install.
    pub lvm: Lvm,
    /// A site's snapshot hook (a hypervisor snapshot) installed on the host.
    pub hook: Option<Hook>,
}

/// A snapshot hook at `path`: `take`, `revert` and `remove` act on a snapshot
/// of the whole machine, as a hypervisor's would; `fail` lists actions that
/// exit 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hook {
    pub path: String,
    pub fail: Vec<String>,
}

/// One volume group and its logical volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lvm {
    pub volume_group: String,
    /// Free space in the volume group, for snapshots.
    pub free_bytes: u64,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    pub mount: String,
    pub size_bytes: u64,
}

impl Default for Lvm {
    fn default() -> Self {
        let gib = |n: u64| n << 30;
        Self {
            volume_group: "rhel".into(),
            free_bytes: gib(12),
            volumes: vec![
                Volume {
                    name: "root".into(),
                    mount: "/".into(),
                    size_bytes: gib(20),
                },
                Volume {
                    name: "var".into(),
                    mount: "/var".into(),
                    size_bytes: gib(10),
                },
            ],
        }
    }
}

/// Seconds each tool run takes on this host (0: at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Durations {
    /// convert2rhel analyze, leapp preupgrade.
    pub precheck_seconds: f64,
    /// convert2rhel convert, leapp upgrade (before the reboot).
    pub execute_seconds: f64,
    /// leapp_resume.service's FirstBoot, counted from the boot into the new
    /// system; the agent starts before it ends.
    pub first_boot_seconds: f64,
}

impl Durations {
    /// Blocks for the pre-check's duration (the tools run off the async runtime).
    pub fn precheck(&self) {
        sleep(self.precheck_seconds);
    }

    pub fn execute(&self) {
        sleep(self.execute_seconds);
    }
}

fn sleep(seconds: f64) {
    if seconds > 0.0 && seconds.is_finite() {
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds.min(3600.0)));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub release: String,
    pub arch: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// A finding as the scenario states it; each tool writes it in its own format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFinding {
    /// leapp: the entry's stable key. convert2rhel: `ACTION_ID::MESSAGE_ID`.
    pub key: String,
    pub title: String,
    #[serde(default)]
    pub summary: String,
    /// info, low, medium or high.
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub blocking: bool,
    #[serde(default)]
    pub hint: Option<String>,
    /// leapp: an actor error rather than a finding (group `error` in report
    /// schema 1.2.0, dropped from schema 1.1.0).
    #[serde(default)]
    pub error: bool,
    /// leapp: the dialog (`section.option`) whose answer in the answerfile
    /// makes this finding go away (`leapp answer --section section.option=...`).
    #[serde(default)]
    pub answer: Option<String>,
    /// convert2rhel: actions that depend on this finding's action, and are
    /// skipped (result `SKIP`) when it fails.
    #[serde(default)]
    pub skips: Vec<String>,
}

fn default_severity() -> String {
    "medium".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// An action (convert2rhel) or an actor (leapp) of the pre-check raises:
    /// the tool still writes its report, with `UNEXPECTED_ERROR` (convert2rhel)
    /// or an error entry (leapp), and fails.
    AnalysisCrash,
    /// The tool stops before any check runs (a traceback, exit 1, no report).
    ToolCrash,
    /// convert2rhel fails before its point of no return and its own rollback
    /// fails too: exit 1, no report, the host part-changed.
    RollbackFailure,
    /// convert2rhel fails before its point of no return and undoes its changes.
    ConversionBeforePonr,
    /// convert2rhel fails after its point of no return: the system is half converted.
    ConversionAfterPonr,
    /// The package upgrade fails in the upgrade initramfs: the machine stops
    /// in the emergency shell with `/root/tmp_leapp_py3/.leapp_upgrade_failed`
    /// and the upgrade entry still the default, until someone at the console
    /// boots the previous entry (`mf-sim console boot-previous`).
    InitramfsFailure,
    /// FirstBoot on the new system fails: its upgrade activity is recorded
    /// as a failure and leapp_resume.service stays (its removal never ran).
    FirstBootFailure,
    /// The machine never comes back from its next reboot.
    NeverReturns,
    /// The LVM snapshots overflow during the change and become invalid.
    SnapshotOverflow,
}

impl Scenario {
    pub fn fails(&self, failure: Failure) -> bool {
        self.failures.contains(&failure)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }
}

impl Package {
    pub fn new(name: &str, version: &str, release: &str, arch: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            release: release.into(),
            arch: arch.into(),
        }
    }

    pub fn evra(&self) -> String {
        format!("{}-{}.{}", self.version, self.release, self.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_is_a_valid_scenario() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("### Emulated host roots")
            .nth(1)
            .expect("README has its emulated host roots");
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README has a toml block");
        let scenario = Scenario::parse(block).expect("the README's scenario parses");
        assert!(scenario.fails(Failure::AnalysisCrash));
        assert_eq!(scenario.findings.len(), 1);
        assert_eq!(scenario.durations.precheck_seconds, 2.0);
    }

    #[test]
    fn a_scenario_file_parses_and_refuses_typos() {
        let scenario = Scenario::parse(
            r#"
            other_packages = 400
            failures = ["analysis-crash"]
            [[packages]]
            name = "leapp-upgrade-el7toel8"
            version = "0.20.0"
            release = "2.el7_9"
            arch = "noarch"
            [[findings]]
            key = "abc"
            title = "Missing required answers in the answer file"
            blocking = true
            severity = "high"
            [filesystems."/var"]
            free_bytes = 1024
            total_bytes = 4096
            [durations]
            precheck_seconds = 1.5
            "#,
        )
        .expect("parses");
        assert!(scenario.fails(Failure::AnalysisCrash));
        assert_eq!(scenario.findings[0].severity, "high");
        assert_eq!(scenario.filesystems["/var"].free_bytes, 1024);
        assert_eq!(scenario.durations.precheck_seconds, 1.5);
        assert!(Scenario::parse("findngs = []").is_err());
    }
}
