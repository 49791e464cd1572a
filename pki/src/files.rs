//! The PKI directory: where each certificate and key lives, written once by
//! `mfctl pki init` with private keys at mode 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{CertificateAuthority, Pem, PkiError};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already holds a CA; refusing to overwrite it")]
    Exists(PathBuf),
}

/// File names inside a PKI directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    dir: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("coordinator.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("coordinator-key.pem")
    }
    pub fn operator_cert(&self) -> PathBuf {
        self.dir.join("operator.pem")
    }
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join("operator-key.pem")
    }

    fn read_pem(&self, cert: PathBuf, key: PathBuf) -> Result<Pem, FilesError> {
        Ok(Pem {
            cert: read(&cert)?,
            key: read(&key)?,
        })
    }

    pub fn load_ca(&self) -> Result<Pem, FilesError> {
        self.read_pem(self.ca_cert(), self.ca_key())
    }

    pub fn load_server(&self) -> Result<Pem, FilesError> {
        self.read_pem(self.server_cert(), self.server_key())
    }
}

/// What `init` wrote.
#[derive(Debug)]
pub struct PkiFiles {
    pub written: Vec<PathBuf>,
}

impl PkiFiles {
    /// Creates the CA, the coordinator's certificate for `names` and one
    /// operator certificate. Refuses to touch a directory that has a CA.
    pub fn init(paths: &PkiPaths, names: &[String], operator: &str) -> Result<Self, PkiError> {
        if paths.ca_cert().exists() || paths.ca_key().exists() {
            return Err(FilesError::Exists(paths.dir().to_path_buf()).into());
        }
        // Everything is issued before anything is written: a refused name
        // leaves neither files nor a directory behind.
        let (ca, ca_pem) = CertificateAuthority::generate()?;
        let server = ca.issue_server(names)?;
        let operator = ca.issue_operator(operator)?;
        std::fs::create_dir_all(paths.dir()).map_err(|source| FilesError::Io {
            path: paths.dir().to_path_buf(),
            source,
        })?;
        let files = [
            (paths.ca_key(), ca_pem.key, 0o600),
            (paths.ca_cert(), ca_pem.cert, 0o644),
            (paths.server_key(), server.key, 0o600),
            (paths.server_cert(), server.cert, 0o644),
            (paths.operator_key(), operator.key, 0o600),
            (paths.operator_cert(), operator.cert, 0o644),
        ];
        let mut written = Vec::new();
        for (path, content, mode) in files {
            write_new(&path, content.as_bytes(), mode)?;
            written.push(path);
        }
        Ok(Self { written })
    }
}

pub(crate) fn read(path: &Path) -> Result<String, FilesError> {
    std::fs::read_to_string(path).map_err(|source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates a file that must not exist yet, with its final mode from the start.
fn write_new(path: &Path, content: &[u8], mode: u32) -> Result<(), FilesError> {
    let io = |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(content).map_err(io)?;
    file.sync_all().map_err(io)
}
