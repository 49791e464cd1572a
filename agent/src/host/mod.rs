//! The agent's one view of its machine. Facts (and later phases) reach the host
//! only through [`Host`], so the same agent logic runs on a real machine, on a
//! prepared directory tree, and on a simulated host.

mod rooted;
mod simulated;

pub use rooted::RootedHost;
pub use simulated::{SimHostSpec, SimProfile, SimulatedHost};

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
}

/// A machine the agent reads and acts on. Paths are absolute paths as seen on
/// the host (`/etc/os-release`); commands are argv vectors, never shell strings.
pub trait Host: Send + Sync + 'static {
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError>;
    fn run(&self, argv: &[&str]) -> Result<CommandOutput, HostError>;
    fn filesystem(&self, path: &str) -> Result<FsUsage, HostError>;
    fn hardware(&self) -> Hardware;

    fn read_to_string(&self, path: &str) -> Result<String, HostError> {
        let bytes = self.read_file(path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
