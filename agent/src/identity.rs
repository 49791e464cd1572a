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
    pub validity: Validity,
    /// The public key that signs commands (Ed25519), pinned at enrollment:
    /// the agent obeys only commands it signed.
    pub command_key: Vec<u8>,
}

/// When the certificate was received (by this host's clock) and how long it
/// lives; 0 when unknown (an identity from before renewal existed), which
/// makes the agent renew at once to learn it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    #[serde(default)]
    pub received_unix_ms: i64,
    #[serde(default)]
    pub lifetime_seconds: u64,
    /// As the coordinator wrote it in the certificate (its clock), for messages.
    #[serde(default)]
    pub not_after_unix_ms: i64,
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
    #[serde(default)]
    validity: Validity,
    /// Hex of the pinned command key; empty for an enrollment made before
    /// commands were signed (the first renewal pins it).
    #[serde(default)]
    command_public_key: String,
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
        finish_renewal(state_dir)?;
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
            validity: enrollment.validity,
            command_key: from_hex(&enrollment.command_public_key).ok_or_else(|| {
                IdentityError::Invalid {
                    path: enrollment_path.clone(),
                    reason: "command_public_key is not hex: enroll the agent again".into(),
                }
            })?,
        })
    }

    /// Writes every file, the key with mode 0600 from its creation on, and the
    /// enrollment record last so that a crash never leaves a half identity that
    /// `load` would accept. (A crash between the key and the certificate of a
    /// renewal leaves a pair that does not match: the next start finds it, see
    /// `load`, and the coordinator still accepts the previous certificate.)
    pub fn save(&self, state_dir: &Path) -> Result<(), IdentityError> {
        std::fs::create_dir_all(state_dir).map_err(io_error(state_dir))?;
        write_file(&state_dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        write_file(&state_dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_file(&state_dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        let enrollment = toml::to_string(&Enrollment {
            host_id: self.host_id.clone(),
            coordinator: self.coordinator.clone(),
            validity: self.validity,
            command_public_key: self
                .command_key
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
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

/// Bytes from lowercase or uppercase hex; `None` for anything else (a
/// pinned key read wrong would refuse every command with a wrong reason).
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Saves a renewed key and certificate so that a crash at any point leaves a
/// matching pair: both are written beside the current ones first, then moved
/// into place key first; `load` finishes a move a crash cut short.
pub fn save_renewed(identity: &Identity, state_dir: &Path) -> Result<(), IdentityError> {
    let next = |name: &str| state_dir.join(format!("{name}.next"));
    write_file(&next(KEY_FILE), identity.key_pem.as_bytes(), 0o600)?;
    write_file(&next(CERT_FILE), identity.cert_pem.as_bytes(), 0o644)?;
    finish_renewal(state_dir)?;
    identity.save(state_dir)
}

/// Completes (or drops) a renewal a crash interrupted: both new files
/// written means move both; a new certificate alone means its key was moved
/// already; a new key alone means its certificate never came, so the
/// current pair stands.
fn finish_renewal(state_dir: &Path) -> Result<(), IdentityError> {
    let (key, cert) = (state_dir.join(KEY_FILE), state_dir.join(CERT_FILE));
    let (next_key, next_cert) = (
        state_dir.join(format!("{KEY_FILE}.next")),
        state_dir.join(format!("{CERT_FILE}.next")),
    );
    match (next_key.exists(), next_cert.exists()) {
        (true, true) => {
            std::fs::rename(&next_key, &key).map_err(io_error(&key))?;
            std::fs::rename(&next_cert, &cert).map_err(io_error(&cert))
        }
        (false, true) => std::fs::rename(&next_cert, &cert).map_err(io_error(&cert)),
        (true, false) => std::fs::remove_file(&next_key).map_err(io_error(&next_key)),
        (false, false) => Ok(()),
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
            validity: Validity {
                received_unix_ms: 5,
                lifetime_seconds: 60,
                not_after_unix_ms: 65_000,
            },
            command_key: vec![0xab; 32],
        };
        identity.save(dir.path())?;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Identity::load(dir.path())?;
        assert_eq!(loaded.host_id, identity.host_id);
        assert_eq!(loaded.key_pem, "KEY");
        assert_eq!(loaded.validity, identity.validity);
        assert_eq!(loaded.command_key, identity.command_key);
        Ok(())
    }

    #[test]
    fn a_renewal_cut_short_anywhere_leaves_a_matching_pair()
    -> Result<(), Box<dyn std::error::Error>> {
        let old = Identity {
            host_id: "h".into(),
            coordinator: "127.0.0.1:1".into(),
            key_pem: "OLD KEY".into(),
            cert_pem: "OLD CERT".into(),
            ca_pem: "CA".into(),
            validity: Validity::default(),
            command_key: Vec::new(),
        };
        let pair = |dir: &Path| -> Result<(String, String), IdentityError> {
            let loaded = Identity::load(dir)?;
            Ok((loaded.key_pem, loaded.cert_pem))
        };
        // Where a crash may stop save_renewed, and what the next start loads.
        type Crash = fn(&Path) -> std::io::Result<()>;
        let cases: [(Crash, &str); 4] = [
            (
                |d| std::fs::write(d.join("agent-key.pem.next"), "NEW KEY"),
                "OLD",
            ),
            (
                |d| {
                    std::fs::write(d.join("agent-key.pem.next"), "NEW KEY")?;
                    std::fs::write(d.join("agent.pem.next"), "NEW CERT")
                },
                "NEW",
            ),
            (
                |d| {
                    std::fs::write(d.join("agent-key.pem"), "NEW KEY")?;
                    std::fs::write(d.join("agent.pem.next"), "NEW CERT")
                },
                "NEW",
            ),
            (|_| Ok(()), "OLD"),
        ];
        for (crash, expected) in cases {
            let dir = tempfile::tempdir()?;
            old.save(dir.path())?;
            crash(dir.path())?;
            let (key, cert) = pair(dir.path())?;
            assert_eq!(
                (key.as_str(), cert.as_str()),
                match expected {
                    "NEW" => ("NEW KEY", "NEW CERT"),
                    _ => ("OLD KEY", "OLD CERT"),
                }
            );
            assert!(!dir.path().join("agent-key.pem.next").exists());
            assert!(!dir.path().join("agent.pem.next").exists());
        }
        let dir = tempfile::tempdir()?;
        old.save(dir.path())?;
        let renewed = Identity {
            key_pem: "NEW KEY".into(),
            cert_pem: "NEW CERT".into(),
            ..old.clone()
        };
        save_renewed(&renewed, dir.path())?;
        assert_eq!(pair(dir.path())?, ("NEW KEY".into(), "NEW CERT".into()));
        Ok(())
    }

    #[test]
    fn a_damaged_pinned_key_is_an_error_not_a_shorter_key() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let identity = Identity {
            host_id: "h".into(),
            coordinator: "127.0.0.1:1".into(),
            key_pem: "K".into(),
            cert_pem: "C".into(),
            ca_pem: "CA".into(),
            validity: Validity::default(),
            command_key: vec![0x0f; 32],
        };
        identity.save(dir.path())?;
        assert_eq!(Identity::load(dir.path())?.command_key, vec![0x0f; 32]);
        let path = dir.path().join(ENROLLMENT_FILE);
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, text.replacen("0f0f", "0g0f", 1))?;
        let err = Identity::load(dir.path()).expect_err("damaged");
        assert!(
            err.to_string().contains("command_public_key is not hex"),
            "{err}"
        );
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
