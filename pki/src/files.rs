//! The PKI directory: where each certificate and key lives, written once by
//! `mfctl pki init` with private keys at mode 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{CertificateAuthority, CommandSigner, Pem, PkiError};

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
    #[error("{0} does not exist: create the PKI first with `mfctl pki init --dir DIR --name HOST`")]
    Missing(PathBuf),
    #[error(
        "{path} is readable by group or others (mode {mode:04o}): a private key must be mode 0600, \
         owned by the user the coordinator runs as (chmod 600 {path}; `mfctl pki init --owner USER` \
         sets both)"
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error(
        "no user {0:?} in /etc/passwd: create the service user first (the package does), or give UID:GID"
    )]
    NoSuchUser(String),
    #[error("{0}")]
    Invalid(String),
}

/// Who the coordinator's files belong to: the service user, so that the
/// packaged coordinator (User=mf-coordinator) can read its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// `USER` (a local user, as `useradd -r` makes service users: looked up
    /// in /etc/passwd) or `UID:GID`.
    pub fn lookup(spec: &str) -> Result<Self, FilesError> {
        Self::lookup_in(spec, Path::new("/etc/passwd"))
    }

    fn lookup_in(spec: &str, passwd: &Path) -> Result<Self, FilesError> {
        if let Some((uid, gid)) = spec.split_once(':')
            && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
        {
            return Ok(Self { uid, gid });
        }
        let text = std::fs::read_to_string(passwd).map_err(|source| FilesError::Io {
            path: passwd.to_path_buf(),
            source,
        })?;
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                match fields.as_slice() {
                    [name, _, uid, gid, ..] if *name == spec => Some(Self {
                        uid: uid.parse().ok()?,
                        gid: gid.parse().ok()?,
                    }),
                    _ => None,
                }
            })
            .next()
            .ok_or_else(|| FilesError::NoSuchUser(spec.to_string()))
    }
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

    /// The key that signs commands (Ed25519, PKCS#8 DER, 0600).
    pub fn command_key(&self) -> PathBuf {
        self.dir.join("command-signing-key.der")
    }

    /// The command key, created (0600) when a PKI made before it had none.
    pub fn load_or_create_command_key(&self) -> Result<CommandSigner, PkiError> {
        let path = self.command_key();
        if !path.exists() {
            write_new(&path, &CommandSigner::generate()?, 0o600)?;
        }
        let der = std::fs::read(&path).map_err(|source| FilesError::Io {
            path: path.clone(),
            source,
        })?;
        CommandSigner::from_pkcs8(&der)
    }

    fn read_pem(&self, cert: PathBuf, key: PathBuf) -> Result<Pem, FilesError> {
        Ok(Pem {
            cert: read(&cert)?,
            key: read_key(&key)?,
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
    /// With an owner, the directory and the coordinator's files (the CA and
    /// its own certificate and keys) are handed to it; the operator's stay
    /// with whoever ran init.
    pub fn init(
        paths: &PkiPaths,
        names: &[String],
        operator: &str,
        owner: Option<Owner>,
    ) -> Result<Self, PkiError> {
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
        write_new(&paths.command_key(), &CommandSigner::generate()?, 0o600)?;
        let mut written = vec![paths.command_key()];
        let files = [
            (paths.ca_key(), ca_pem.key, 0o600),
            (paths.ca_cert(), ca_pem.cert, 0o644),
            (paths.server_key(), server.key, 0o600),
            (paths.server_cert(), server.cert, 0o644),
            (paths.operator_key(), operator.key, 0o600),
            (paths.operator_cert(), operator.cert, 0o644),
        ];
        for (path, content, mode) in files {
            write_new(&path, content.as_bytes(), mode)?;
            written.push(path);
        }
        if let Some(owner) = owner {
            for path in [
                paths.dir().to_path_buf(),
                paths.command_key(),
                paths.ca_key(),
                paths.ca_cert(),
                paths.server_key(),
                paths.server_cert(),
            ] {
                std::os::unix::fs::chown(&path, Some(owner.uid), Some(owner.gid))
                    .map_err(|source| FilesError::Io { path, source })?;
            }
        }
        Ok(Self { written })
    }
}

/// What `mfctl operator request` wrote: the new key (0600, never sent) and
/// the request to give an admin.
#[derive(Debug)]
pub struct OperatorRequest {
    pub key: PathBuf,
    pub csr: PathBuf,
}

impl OperatorRequest {
    /// A key made here for operator `name` and its certificate request, as
    /// `DIR/operator-key.pem` and `DIR/NAME.csr`; refuses to overwrite a key.
    pub fn create(dir: &Path, name: &str) -> Result<Self, PkiError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, name);
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key)?;
        std::fs::create_dir_all(dir).map_err(|source| FilesError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let paths = PkiPaths::new(dir);
        let request = OperatorRequest {
            key: paths.operator_key(),
            csr: dir.join(format!("{name}.csr")),
        };
        write_new(&request.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&request.csr, csr.pem()?.as_bytes(), 0o644)?;
        Ok(request)
    }
}

/// A new key (PEM) and a request for it (DER), in memory: `operator renew`.
pub fn key_and_request(name: &str) -> Result<(String, Vec<u8>), PkiError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// Replaces a key and its certificate: both written beside the old ones
/// first (the key 0600), then moved into place, key first.
pub fn replace_key_and_cert(
    key_path: &Path,
    key_pem: &str,
    cert_path: &Path,
    cert_pem: &str,
) -> Result<(), FilesError> {
    let next = |path: &Path| path.with_extension("pem.next");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FilesError::Io { path, source }
    };
    let _ = std::fs::remove_file(next(key_path));
    let _ = std::fs::remove_file(next(cert_path));
    write_new(&next(key_path), key_pem.as_bytes(), 0o600)?;
    write_new(&next(cert_path), cert_pem.as_bytes(), 0o644)?;
    std::fs::rename(next(key_path), key_path).map_err(io(key_path))?;
    std::fs::rename(next(cert_path), cert_path).map_err(io(cert_path))
}

/// The DER of a PEM certificate request.
pub fn csr_der(pem: &str) -> Result<Vec<u8>, FilesError> {
    use rustls::pki_types::CertificateSigningRequestDer;
    use rustls::pki_types::pem::PemObject;
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| FilesError::Invalid(format!("not a PEM certificate request: {e}")))
}

#[cfg(test)]
pub(crate) fn lookup_owner_in(spec: &str, passwd: &Path) -> Result<Owner, FilesError> {
    Owner::lookup_in(spec, passwd)
}

pub(crate) fn read(path: &Path) -> Result<String, FilesError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => FilesError::Missing(path.to_path_buf()),
        _ => FilesError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// A private key, refused when group or others may read it.
fn read_key(path: &Path) -> Result<String, FilesError> {
    use std::os::unix::fs::PermissionsExt;
    let text = read(path)?;
    let mode = std::fs::metadata(path)
        .map_err(|source| FilesError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FilesError::KeyExposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(text)
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
