//! The files of an emulated host: in memory (for `mf-agent sim`) or a real
//! directory (for a real `mf-agent run --host-root DIR` in tests).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mf_agent::host::{HostError, io_error};

#[derive(Debug)]
pub enum Tree {
    Memory(Mutex<BTreeMap<String, Vec<u8>>>),
    Directory(PathBuf),
}

impl Tree {
    pub fn memory(files: BTreeMap<String, Vec<u8>>) -> Self {
        Tree::Memory(Mutex::new(files))
    }

    pub fn resolve(root: &Path, path: &str) -> Result<PathBuf, HostError> {
        mf_agent::host::resolve(root, path)
    }

    fn lock(
        files: &Mutex<BTreeMap<String, Vec<u8>>>,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock leaves a consistent map: writes are single inserts.
        files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>, HostError> {
        match self {
            Tree::Memory(files) => Self::lock(files)
                .get(path)
                .cloned()
                .ok_or_else(|| HostError::NotFound { path: path.into() }),
            Tree::Directory(root) => {
                std::fs::read(Self::resolve(root, path)?).map_err(|e| io_error(path, e))
            }
        }
    }

    /// Every file path of the tree (host paths, sorted), except the
    /// emulation's own `/.mf-sim`.
    pub fn list(&self) -> Vec<String> {
        let mut paths: Vec<String> = match self {
            Tree::Memory(files) => Self::lock(files).keys().cloned().collect(),
            Tree::Directory(root) => {
                let mut found = Vec::new();
                let mut stack = vec![root.clone()];
                while let Some(dir) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for entry in entries.flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if let Ok(relative) = path.strip_prefix(root) {
                            found.push(format!("/{}", relative.display()));
                        }
                    }
                }
                found
            }
        };
        paths.retain(|p| !p.starts_with("/.mf-sim/"));
        paths.sort();
        paths
    }

    pub fn write(&self, path: &str, content: &[u8]) -> Result<(), HostError> {
        match self {
            Tree::Memory(files) => {
                Self::lock(files).insert(path.to_string(), content.to_vec());
                Ok(())
            }
            Tree::Directory(root) => {
                let full = Self::resolve(root, path)?;
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io_error(path, e))?;
                }
                std::fs::write(full, content).map_err(|e| io_error(path, e))
            }
        }
    }

    /// A file's permission bits: the real ones over a directory; in memory
    /// every file is 0600 (the emulated fleet's files are root's own).
    pub fn mode(&self, path: &str) -> Result<u32, HostError> {
        use std::os::unix::fs::PermissionsExt;
        match self {
            Tree::Memory(files) => Self::lock(files)
                .get(path)
                .map(|_| 0o600)
                .ok_or_else(|| HostError::NotFound { path: path.into() }),
            Tree::Directory(root) => std::fs::metadata(Self::resolve(root, path)?)
                .map(|m| m.permissions().mode() & 0o7777)
                .map_err(|e| io_error(path, e)),
        }
    }

    pub fn remove(&self, path: &str) -> Result<(), HostError> {
        match self {
            Tree::Memory(files) => {
                Self::lock(files).remove(path);
                Ok(())
            }
            Tree::Directory(root) => match std::fs::remove_file(Self::resolve(root, path)?) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(path, e)),
            },
        }
    }
}

/// A tool's lock file (`/var/run/leapp.pid`...), removed when the run ends.
pub struct LockFile<'a> {
    tree: &'a Tree,
    path: &'static str,
}

impl<'a> LockFile<'a> {
    /// None when the lock is held by another run. A lock whose process is
    /// gone (the run was killed) is stale and taken over, as the tools do.
    pub fn acquire(tree: &'a Tree, path: &'static str) -> Option<Self> {
        if let Ok(content) = tree.read(path) {
            let pid = String::from_utf8_lossy(&content).trim().parse::<u32>().ok();
            let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return None;
            }
        }
        tree.write(path, format!("{}\n", std::process::id()).as_bytes())
            .ok()?;
        Some(Self { tree, path })
    }
}

impl Drop for LockFile<'_> {
    fn drop(&mut self) {
        let _ = self.tree.remove(self.path);
    }
}
