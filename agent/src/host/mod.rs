//! The agent's one view of its machine. Facts and phases reach the host only
//! through [`Host`], so the same agent logic runs on a real machine, on a
//! prepared directory tree, and on the emulated host of the `mf-sim` crate
//! (which is not compiled into the agent we ship).

mod rooted;

pub use rooted::{RootedHost, machine_hardware, statvfs};

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Space on the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// What asking for a reboot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// The machine is going down: this process will be stopped and the agent
    /// will start again on the next boot.
    Requested,
    /// The (emulated) machine has already rebooted; the agent goes on as if
    /// it had just started.
    Completed,
}

/// Facts that come from the machine itself rather than from its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hardware {
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an absolute path inside the host")]
    BadPath { path: String },
    #[error("command {command:?} not found on the host")]
    CommandNotFound { command: String },
    #[error("command {command:?} cannot run: {reason}")]
    CommandUnavailable { command: String, reason: String },
    #[error(
        "command {command:?} was still running after {} and was killed",
        crate::host::seconds(*after)
    )]
    TimedOut {
        command: String,
        after: std::time::Duration,
    },
}

fn seconds(after: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(after.as_secs())).to_string()
}

/// Maps a host path (`/etc/os-release`) into `root`, refusing relative paths
/// and `..`, so that a path can never leave the tree.
pub fn resolve(root: &std::path::Path, path: &str) -> Result<std::path::PathBuf, HostError> {
    use std::path::{Component, Path};
    let relative = Path::new(path)
        .strip_prefix("/")
        .map_err(|_| HostError::BadPath { path: path.into() })?;
    if relative.as_os_str().is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(HostError::BadPath { path: path.into() });
    }
    Ok(root.join(relative))
}

/// An I/O failure on a host path, with not-found told apart.
pub fn io_error(path: &str, source: std::io::Error) -> HostError {
    match source.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound { path: path.into() },
        _ => HostError::Io {
            path: path.into(),
            source,
        },
    }
}

/// A machine the agent reads and acts on. Paths are absolute paths as seen on
/// the host (`/etc/os-release`); commands are argv vectors, never shell strings.
pub trait Host: Send + Sync + 'static {
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError>;
    fn write_file(&self, path: &str, content: &[u8]) -> Result<(), HostError>;
    /// Removes a file; a file that does not exist is not an error.
    fn remove_file(&self, path: &str) -> Result<(), HostError>;
    /// The permission bits of a file (`0o600`...), for files that must not
    /// be readable by others (credentials).
    fn file_mode(&self, path: &str) -> Result<u32, HostError>;
    fn run(&self, argv: &[&str]) -> Result<CommandOutput, HostError>;
    /// Every file under `dir` (not directories; links listed, not followed),
    /// as host paths, sorted.
    fn list_files(&self, dir: &str) -> Result<Vec<String>, HostError>;
    /// Runs a site's own program (a snapshot hook) with extra environment.
    fn run_with_env(&self, argv: &[&str], env: &[(&str, &str)])
    -> Result<CommandOutput, HostError>;
    fn filesystem(&self, path: &str) -> Result<FsUsage, HostError>;
    fn hardware(&self) -> Hardware;
    fn reboot(&self) -> Result<Reboot, HostError>;

    fn read_to_string(&self, path: &str) -> Result<String, HostError> {
        let bytes = self.read_file(path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
