//! The real host: files under a root directory (`/` in production, a prepared
//! tree in tests), commands run on the machine itself.

use std::io::{ErrorKind, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{CommandOutput, FsUsage, Hardware, Host, HostError, Reboot, io_error};

/// Longer than any tool should run: leapp's upgrade of a large host takes
/// hours; one still running after this is stuck, and is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

#[derive(Debug, Clone)]
pub struct RootedHost {
    root: PathBuf,
    timeout: Duration,
}

impl RootedHost {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            timeout: COMMAND_TIMEOUT,
        }
    }

    /// The same host, killing commands that run longer than `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
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
        let io = |source: std::io::Error| HostError::Io {
            path: (*program).into(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a stuck tool goes with
            // everything it started.
            .process_group(0)
            .spawn()
            .map_err(|source| match source.kind() {
                ErrorKind::NotFound => HostError::CommandNotFound {
                    command: (*program).into(),
                },
                _ => io(source),
            })?;
        // Both pipes are drained while it runs, so that a tool writing more
        // than a pipe holds never blocks on us.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(io)? {
                break status;
            }
            if Instant::now() >= deadline {
                if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(HostError::TimedOut {
                    command: argv.join(" "),
                    after: self.timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = |reader: std::thread::JoinHandle<Vec<u8>>| {
            String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned()
        };
        Ok(CommandOutput {
            status: status.code().unwrap_or(-1),
            stdout: text(stdout),
            stderr: text(stderr),
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

    /// Small programs standing in for the tools, run for real on this
    /// machine through the host the agent ships with.
    fn stub(dir: &Path, name: &str, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("mode");
        path.display().to_string()
    }

    #[test]
    fn a_tool_s_exit_code_and_both_outputs_come_back_in_the_c_locale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = stub(
            dir.path(),
            "tool",
            "echo \"args: $*\"; echo \"LC_ALL=$LC_ALL\"; echo oops >&2; exit 3",
        );
        let ran = RootedHost::new("/")
            .run(&[&tool, "analyze", "--no-rpm-va"])
            .expect("ran");
        assert_eq!(ran.status, 3);
        assert_eq!(ran.stdout, "args: analyze --no-rpm-va\nLC_ALL=C\n");
        assert_eq!(ran.stderr, "oops\n");
        // More than a pipe holds, on both streams at once: nothing blocks.
        let loud = stub(
            dir.path(),
            "loud",
            "head -c 300000 /dev/zero | tr '\\0' o; head -c 300000 /dev/zero | tr '\\0' e >&2",
        );
        let ran = RootedHost::new("/").run(&[&loud]).expect("ran");
        assert_eq!((ran.stdout.len(), ran.stderr.len()), (300_000, 300_000));
        assert!(matches!(
            RootedHost::new("/").run(&["/nonexistent/leapp", "upgrade"]),
            Err(HostError::CommandNotFound { .. })
        ));
    }

    #[test]
    fn the_snapshot_hook_gets_its_action_and_environment() {
        use crate::phases::snapshot::{self, Provider, SnapshotConfig};
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("hook.log");
        let hook = stub(
            dir.path(),
            "hook",
            &format!(
                "echo \"$1 $MF_ACTION $MF_HOST_ID $MF_JOB_ID $MF_SNAPSHOT\" >> {}",
                log.display()
            ),
        );
        let config = SnapshotConfig {
            provider: Provider::AgentCommand,
            command: Some(hook),
            ..SnapshotConfig::default()
        };
        let host = RootedHost::new("/");
        let (set, said) = snapshot::take(&host, &config, "web-01", "job-42").expect("taken");
        assert!(said.contains("took snapshot mf-job-42"), "{said}");
        snapshot::remove(&host, &set, "web-01").expect("removed");
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "take take web-01 job-42 mf-job-42\nremove remove web-01 job-42 mf-job-42\n"
        );
        // A hook that fails says so, with its exit code.
        let failing = stub(dir.path(), "failing", "echo no room >&2; exit 4");
        let config = SnapshotConfig {
            command: Some(failing),
            ..config
        };
        let err = snapshot::take(&host, &config, "web-01", "job-43").expect_err("failed");
        assert!(
            matches!(err, snapshot::SnapshotError::Exited { status: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_tool_that_hangs_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let child_pid = dir.path().join("child.pid");
        let stuck = stub(
            dir.path(),
            "stuck",
            &format!("sleep 60 & echo $! > {}; wait", child_pid.display()),
        );
        let host = RootedHost::new("/").with_timeout(Duration::from_millis(500));
        let started = Instant::now();
        let err = host.run(&[&stuck, "upgrade"]).expect_err("killed");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it waited for the tool"
        );
        assert!(
            matches!(err, HostError::TimedOut { ref command, .. } if command.ends_with("stuck upgrade")),
            "{err}"
        );
        // The tool's own child went with it (gone, or a zombie awaiting its reaper).
        let pid = std::fs::read_to_string(&child_pid).expect("pid");
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
                .flatten();
            if matches!(state, None | Some('Z')) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sleep {pid} still runs: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
