//! One agent per state directory: `mf-agent run` holds an exclusive lock on
//! `STATE_DIR/lock` for as long as it runs, so that a second one is refused
//! instead of replacing the live session (same identity) and interleaving the
//! same journal. The kernel releases the lock when the process ends, however
//! it ends (SIGKILL included), so a crash never leaves it behind.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another mf-agent runs on {dir} (pid {pid}): one agent per state directory; stop it first"
    )]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while the agent runs; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<Self, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = state_dir.join("lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held {
                    dir: state_dir.to_path_buf(),
                    pid: pid.trim().to_string(),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        // Who holds it, for the next one's message.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_agent_on_the_same_state_dir_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StateLock::acquire(dir.path()).expect("first");
        let refused = StateLock::acquire(dir.path()).expect_err("second");
        let text = refused.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("one agent"),
            "{text}"
        );
        drop(first);
        StateLock::acquire(dir.path()).expect("free again");
    }
}
