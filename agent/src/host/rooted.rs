//! The real host: files under a root directory (`/` in production, a prepared
//! tree in tests), commands run on the machine itself.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{CommandOutput, FsUsage, Hardware, Host, HostError, Reboot, io_error};

#[derive(Debug, Clone)]
pub struct RootedHost {
    root: PathBuf,
}

impl RootedHost {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    fn resolve(&self, path: &str) -> Result<PathBuf, HostError> {
        super::resolve(&self.root, path)
    }
}

impl Host for RootedHost {
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        std::fs::read(self.resolve(path)?).map_err(|source| io_error(path, source))
    }

    fn run(&self, argv: &[&str]) -> Result<CommandOutput, HostError> {
        self.run_with_env(argv, &[])
    }

    fn file_mode(&self, path: &str) -> Result<u32, HostError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.resolve(path)?)
            .map(|m| m.permissions().mode() & 0o7777)
            .map_err(|source| io_error(path, source))
    }

    fn list_files(&self, dir: &str) -> Result<Vec<String>, HostError> {
        let top = self.resolve(dir)?;
        let mut found = Vec::new();
        let mut stack = vec![top];
        while let Some(current) = stack.pop() {
            let entries = std::fs::read_dir(&current)
                .map_err(|source| io_error(&current.display().to_string(), source))?;
            for entry in entries {
                let entry = entry.map_err(|source| io_error(dir, source))?;
                // file_type does not follow links: a link is listed, never followed out of the tree.
                let kind = entry.file_type().map_err(|source| io_error(dir, source))?;
                let path = entry.path();
                if kind.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(&self.root) {
                    found.push(format!("/{}", relative.display()));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn run_with_env(
        &self,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<CommandOutput, HostError> {
        let (program, args) = argv.split_first().ok_or(HostError::CommandUnavailable {
            command: String::new(),
            reason: "empty command line".into(),
        })?;
        if !self.is_real_root() {
            // A tree that is not the running system has no programs we could
            // scope to it; pretending would report the wrong machine's packages.
            return Err(HostError::CommandUnavailable {
                command: (*program).into(),
                reason: format!(
                    "host root {} is not the running system",
                    self.root.display()
                ),
            });
        }
        let output = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .envs(env.iter().copied())
            .output()
            .map_err(|source| match source.kind() {
                ErrorKind::NotFound => HostError::CommandNotFound {
                    command: (*program).into(),
                },
                _ => HostError::Io {
                    path: (*program).into(),
                    source,
                },
            })?;
        Ok(CommandOutput {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    fn filesystem(&self, path: &str) -> Result<FsUsage, HostError> {
        statvfs(&self.resolve(path)?, path)
    }

    /// CPUs and memory always describe the machine the agent runs on, also for
    /// a prepared tree: a tree has no hardware of its own.
    fn hardware(&self) -> Hardware {
        machine_hardware()
    }

    /// `systemctl reboot`, only on the running system.
    fn reboot(&self) -> Result<Reboot, HostError> {
        let output = self.run(&["systemctl", "reboot"])?;
        if output.status != 0 {
            return Err(HostError::CommandUnavailable {
                command: "systemctl reboot".into(),
                reason: format!("exited {}: {}", output.status, output.stderr.trim()),
            });
        }
        Ok(Reboot::Requested)
    }

    fn write_file(&self, path: &str, content: &[u8]) -> Result<(), HostError> {
        let full = self.resolve(path)?;
        std::fs::write(&full, content).map_err(|source| io_error(path, source))
    }

    fn remove_file(&self, path: &str) -> Result<(), HostError> {
        match std::fs::remove_file(self.resolve(path)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(path, source)),
        }
    }
}

/// Space of the filesystem holding `full`; `path` names it in errors.
pub fn statvfs(full: &Path, path: &str) -> Result<FsUsage, HostError> {
    let stat =
        rustix::fs::statvfs(full).map_err(|errno| io_error(path, std::io::Error::from(errno)))?;
    Ok(FsUsage {
        free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// CPUs and memory of the machine this process runs on.
pub fn machine_hardware() -> Hardware {
    let Ok(mut system) = sysinfo::System::new() else {
        return Hardware::default();
    };
    system.refresh_memory();
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    Hardware {
        cpus: u32::try_from(system.cpus().len()).ok().filter(|n| *n > 0),
        memory_bytes: Some(system.total_memory()).filter(|m| *m > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_root() {
        let host = RootedHost::new("/tmp/somewhere");
        for bad in ["etc/os-release", "/etc/../../secret", "/etc/..", ""] {
            assert!(
                matches!(host.resolve(bad), Err(HostError::BadPath { .. })),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(
            host.resolve("/etc/os-release").ok(),
            Some(PathBuf::from("/tmp/somewhere/etc/os-release"))
        );
    }

    #[test]
    fn commands_are_refused_for_a_tree_that_is_not_the_system() {
        let host = RootedHost::new("/tmp/somewhere");
        assert!(matches!(
            host.run(&["rpm", "-qa"]),
            Err(HostError::CommandUnavailable { .. })
        ));
    }

    #[test]
    fn missing_files_are_not_found() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let host = RootedHost::new(dir.path());
        assert!(matches!(
            host.read_file("/etc/os-release"),
            Err(HostError::NotFound { .. })
        ));
        Ok(())
    }
}
