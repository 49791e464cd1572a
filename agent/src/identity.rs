//! The agent's enrolled identity on disk: its private key (never leaves the
//! host, mode 0600), the certificate the coordinator signed, the CA to trust,
//! and where the coordinator is.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const KEY_FILE: &str = "agent-key.pem";
const CERT_FILE: &str = "agent.pem";
const CA_FILE: &str = "ca.pem";
const ENROLLMENT_FILE: &str = "enrollment.toml";

/// Everything an enrolled agent needs to open its session.
#[derive(Clone)]
pub struct Identity {
    pub host_id: String,
    pub coordinator: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host_id", &self.host_id)
            .field("coordinator", &self.coordinator)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Enrollment {
    host_id: String,
    coordinator: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("state directory {0} holds no enrollment: run `mf-agent enroll` first")]
    NotEnrolled(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Identity {
    pub fn load(state_dir: &Path) -> Result<Self, IdentityError> {
        let enrollment_path = state_dir.join(ENROLLMENT_FILE);
        if !enrollment_path.exists() {
            return Err(IdentityError::NotEnrolled(state_dir.to_path_buf()));
        }
        let read = |name: &str| {
            let path = state_dir.join(name);
            std::fs::read_to_string(&path).map_err(io_error(&path))
        };
        let enrollment: Enrollment =
            toml::from_str(&read(ENROLLMENT_FILE)?).map_err(|e| IdentityError::Invalid {
                path: enrollment_path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            host_id: enrollment.host_id,
            coordinator: enrollment.coordinator,
            key_pem: read(KEY_FILE)?,
            cert_pem: read(CERT_FILE)?,
            ca_pem: read(CA_FILE)?,
        })
    }

    /// Writes every file, the key with mode 0600 from its creation on, and the
    /// enrollment record last so that a crash never leaves a half identity that
    /// `load` would accept.
    pub fn save(&self, state_dir: &Path) -> Result<(), IdentityError> {
        std::fs::create_dir_all(state_dir).map_err(io_error(state_dir))?;
        write_file(&state_dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        write_file(&state_dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_file(&state_dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        let enrollment = toml::to_string(&Enrollment {
            host_id: self.host_id.clone(),
            coordinator: self.coordinator.clone(),
        })
        .map_err(|e| IdentityError::Invalid {
            path: state_dir.join(ENROLLMENT_FILE),
            reason: e.to_string(),
        })?;
        write_file(
            &state_dir.join(ENROLLMENT_FILE),
            enrollment.as_bytes(),
            0o644,
        )
    }
}

/// Writes through a temporary file and a rename, so readers see old or new, never half.
fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(content).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_identity_round_trips_and_its_key_is_private() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let identity = Identity {
            host_id: "web-01.example.com".into(),
            coordinator: "127.0.0.1:7443".into(),
            key_pem: "KEY".into(),
            cert_pem: "CERT".into(),
            ca_pem: "CA".into(),
        };
        identity.save(dir.path())?;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Identity::load(dir.path())?;
        assert_eq!(loaded.host_id, identity.host_id);
        assert_eq!(loaded.key_pem, "KEY");
        Ok(())
    }

    #[test]
    fn an_empty_state_dir_is_not_enrolled() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::NotEnrolled(_))
        ));
        Ok(())
    }
}
