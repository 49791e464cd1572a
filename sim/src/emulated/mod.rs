//! An emulated EL host: a file tree plus emulations of the commands the agent
//! runs (`rpm`, `convert2rhel`, `leapp`), answering with the real tools' argv
//! handling, exit codes, console lines and report files. It backs
//! `mf-sim fleet` (in memory) and `mf-sim run` over a directory, in the tests.

mod boot;
mod bootloader;
mod convert2rhel;
mod grubby;
mod hook;
mod leapp;
mod lvm;
pub mod profile;
mod results;
mod rpm;
pub mod scenario;
mod state;
mod tar;
mod tree;

use std::path::{Path, PathBuf};

pub use profile::{SimHostSpec, SimProfile};
pub use scenario::{
    Durations, Failure, Hook, Package, SCENARIO_PATH, Scenario, ScenarioFinding, Space,
};
use tree::Tree;

use mf_agent::host::{CommandOutput, FsUsage, Hardware, Host, HostError, Reboot};

#[derive(Debug)]
pub struct EmulatedHost {
    tree: Tree,
    scenario: Scenario,
    /// When FirstBoot ends (unix ms), while leapp_resume.service runs: kept
    /// here so that a look at the machine costs no read of its state file.
    first_boot_due: std::sync::Mutex<Option<i64>>,
    /// Whether the machine is running (false: down or in the emergency
    /// shell), for whoever plays its agent process in memory.
    power: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {reason}")]
    Scenario { path: PathBuf, reason: String },
    #[error("the emulated machine at {0} did not come back from its reboot")]
    Down(PathBuf),
}

impl EmulatedHost {
    /// A simulated host in memory, for `mf-agent sim`.
    pub fn simulated(spec: &SimHostSpec) -> Self {
        let (files, scenario) = profile::build(spec);
        Self::new(Tree::memory(files), scenario)
    }

    fn new(tree: Tree, scenario: Scenario) -> Self {
        boot::ensure_bootloader(&tree);
        // The files the declared leapp-repository package installs.
        if tree.read(leapp::UPGRADE_PATHS).is_err()
            && let Some(paths) = boot::installed(&tree, &scenario)
                .iter()
                .find_map(|p| profile::upgrade_paths_of(&p.name))
        {
            let _ = tree.write(leapp::UPGRADE_PATHS, paths.as_bytes());
        }
        let loaded = state::MachineState::load(&tree);
        Self {
            tree,
            scenario,
            first_boot_due: std::sync::Mutex::new(loaded.first_boot_due_unix_ms),
            power: tokio::sync::watch::Sender::new(!loaded.down),
        }
    }

    /// Lets leapp_resume.service finish FirstBoot once its time has come.
    fn background(&self) {
        let mut due = self
            .first_boot_due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if due.is_some_and(|at| at <= boot::now_ms()) {
            boot::run_first_boot_if_due(&self.tree, &self.scenario);
            *due = None;
        }
    }

    fn booted(&self) {
        let state = state::MachineState::load(&self.tree);
        *self
            .first_boot_due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state.first_boot_due_unix_ms;
        self.power.send_replace(!state.down);
    }

    /// Watches whether the machine runs: an in-memory fleet stops a host's
    /// agent when it goes down and starts it again when it comes back.
    pub fn power(&self) -> tokio::sync::watch::Receiver<bool> {
        self.power.subscribe()
    }

    /// At the console of a machine stopped in the upgrade initramfs's
    /// emergency shell: boots the previous system's entry once (the upgrade
    /// entry stays the default). Over a directory the boot happens when the
    /// agent starts next; in memory at once. Returns the entry's title.
    pub fn console_boot_previous(&self) -> Result<String, String> {
        let title = boot::console_boot_previous(&self.tree)?;
        if matches!(self.tree, Tree::Memory(_)) {
            boot::boot_if_pending(&self.tree, &self.scenario);
            self.booted();
        }
        Ok(title)
    }

    /// Whether the machine is stopped (never came back, or waits in the
    /// emergency shell).
    pub fn is_down(&self) -> bool {
        state::MachineState::load(&self.tree).down
    }

    /// The console action on a host-root directory, without opening it (a
    /// machine that is down cannot be opened).
    pub fn console_boot_previous_dir(root: &Path) -> Result<String, String> {
        boot::console_boot_previous(&Tree::Directory(root.to_path_buf()))
    }

    /// The same host with its scenario changed (durations, findings...).
    pub fn with_scenario(mut self, change: impl FnOnce(&mut Scenario)) -> Self {
        change(&mut self.scenario);
        self
    }

    /// A simulated host whose scenario injects `failures`.
    pub fn simulated_with_failures(spec: &SimHostSpec, failures: &[Failure]) -> Self {
        let mut host = Self::simulated(spec);
        host.scenario.failures = failures.to_vec();
        host
    }

    /// The emulation over a host-root directory, if it holds a scenario file.
    /// Never for `/`: a real system is never emulated.
    pub fn open_dir(root: &Path) -> Result<Option<Self>, OpenError> {
        if root == Path::new("/") {
            return Ok(None);
        }
        let tree = Tree::Directory(root.to_path_buf());
        let text = match tree.read(SCENARIO_PATH) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(HostError::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(OpenError::Scenario {
                    path: root.join(SCENARIO_PATH.trim_start_matches('/')),
                    reason: e.to_string(),
                });
            }
        };
        let scenario = Scenario::parse(&text).map_err(|reason| OpenError::Scenario {
            path: root.join(SCENARIO_PATH.trim_start_matches('/')),
            reason,
        })?;
        // The agent starting over a tree with a reboot pending is that reboot's
        // next boot (the test harness killed the agent to play it).
        if !boot::boot_if_pending(&tree, &scenario) {
            return Err(OpenError::Down(root.to_path_buf()));
        }
        Ok(Some(Self::new(tree, scenario)))
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The packages installed now (the emulated rpm database, seeded from
    /// the scenario).
    pub fn installed(&self) -> Vec<Package> {
        boot::installed(&self.tree, &self.scenario)
    }

    fn has_package(&self, name: &str) -> bool {
        self.installed().iter().any(|p| p.name == name)
    }

    /// `ID` and `VERSION_ID`-based version of the emulated OS, as the tools see it.
    fn os(&self) -> (String, String) {
        let text = self
            .tree
            .read("/etc/os-release")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let id = field("ID");
        let mut version = field("VERSION_ID");
        if !version.contains('.') {
            // CentOS 7: the minor version is in the release file.
            if let Ok(line) = self.tree.read("/etc/centos-release") {
                let line = String::from_utf8_lossy(&line);
                if let Some(full) = line
                    .split(" release ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                {
                    version = full.split('.').take(2).collect::<Vec<_>>().join(".");
                }
            }
        }
        (id, version)
    }
}

/// An emulated command that ended with exit 0.
fn succeeded(stdout: String) -> CommandOutput {
    CommandOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

/// An emulated command that failed with `status`, its message on stderr.
fn failed(status: i32, message: &str) -> CommandOutput {
    CommandOutput {
        status,
        stdout: String::new(),
        stderr: format!("{message}\n"),
    }
}

/// A random 32-hex-digit id, as the tools use for runs and entries.
fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

impl Host for EmulatedHost {
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        self.background();
        self.tree.read(path)
    }

    fn file_mode(&self, path: &str) -> Result<u32, HostError> {
        self.tree.mode(path)
    }

    fn list_files(&self, dir: &str) -> Result<Vec<String>, HostError> {
        self.background();
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        Ok(self
            .tree
            .list()
            .into_iter()
            .filter(|p| p.starts_with(&prefix))
            .collect())
    }

    fn write_file(&self, path: &str, content: &[u8]) -> Result<(), HostError> {
        self.tree.write(path, content)
    }

    fn remove_file(&self, path: &str) -> Result<(), HostError> {
        self.tree.remove(path)
    }

    fn run_with_env(
        &self,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<CommandOutput, HostError> {
        match (&self.scenario.hook, argv.split_first()) {
            (Some(hook), Some((program, args))) if *program == hook.path => {
                Ok(hook::run(&self.tree, hook, args, env))
            }
            _ => self.run(argv),
        }
    }

    fn run(&self, argv: &[&str]) -> Result<CommandOutput, HostError> {
        self.background();
        match argv.split_first() {
            Some((&"rpm", args)) => Ok(rpm::run(
                &self.installed(),
                self.scenario.other_packages,
                &self.os().1,
                args,
            )),
            Some((&"convert2rhel", args)) if self.has_package("convert2rhel") => {
                Ok(convert2rhel::run(self, args))
            }
            Some((&"leapp", args)) if self.has_package("leapp") => Ok(leapp::run(self, args)),
            Some((
                program @ (&"vgs" | &"lvs" | &"lvcreate" | &"lvconvert" | &"lvremove"),
                args,
            )) if !self.scenario.lvm.volumes.is_empty() => {
                Ok(lvm::run(&self.tree, &self.scenario, program, args))
            }
            Some((&"tar", args)) => Ok(tar::run(&self.tree, args)),
            Some((&"grubby", args)) => Ok(grubby::run(&self.tree, args)),
            Some((program, _)) => Err(HostError::CommandNotFound {
                command: (*program).into(),
            }),
            None => Err(HostError::CommandUnavailable {
                command: String::new(),
                reason: "empty command line".into(),
            }),
        }
    }

    fn filesystem(&self, path: &str) -> Result<FsUsage, HostError> {
        if let Some(space) = self.scenario.filesystems.get(path) {
            return Ok(FsUsage {
                free_bytes: space.free_bytes,
                total_bytes: space.total_bytes,
            });
        }
        match &self.tree {
            Tree::Directory(root) => {
                mf_agent::host::statvfs(&Tree::resolve(root, path).unwrap_or(root.clone()), path)
            }
            Tree::Memory(_) => Err(HostError::NotFound { path: path.into() }),
        }
    }

    /// In memory the machine reboots at once; over a directory the reboot is
    /// marked and happens when the agent process is started again (the test
    /// harness kills it, as a real reboot would).
    fn reboot(&self) -> Result<Reboot, HostError> {
        let mut state = state::MachineState::load(&self.tree);
        state.reboot_pending = true;
        state.save(&self.tree);
        match &self.tree {
            Tree::Memory(_) => {
                let up = boot::boot_if_pending(&self.tree, &self.scenario);
                self.booted();
                if up {
                    Ok(Reboot::Completed)
                } else {
                    Ok(Reboot::Requested)
                }
            }
            Tree::Directory(_) => Ok(Reboot::Requested),
        }
    }

    fn hardware(&self) -> Hardware {
        let real = match &self.tree {
            Tree::Directory(_) => mf_agent::host::machine_hardware(),
            Tree::Memory(_) => Hardware::default(),
        };
        Hardware {
            cpus: self.scenario.cpus.or(real.cpus),
            memory_bytes: self.scenario.memory_bytes.or(real.memory_bytes),
        }
    }
}

#[cfg(test)]
mod tests;
