//! The coordinator's PKI: creating the CA and the coordinator's and operators'
//! certificates, signing agent certificates from CSRs, and telling who a
//! verified peer certificate belongs to. Roles live in a URI SAN:
//! `mf://agent/<host-id>` or `mf://operator/<name>`.

mod files;
pub mod token;

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

pub use files::{
    FilesError, OperatorRequest, Owner, PkiFiles, PkiPaths, csr_der, key_and_request,
    replace_key_and_cert,
};

/// The key that signs every command sent to agents (Ed25519): not the TLS
/// key, so that a server certificate alone, even one the CA issued, cannot
/// make an agent act.
pub struct CommandSigner {
    key: ring::signature::Ed25519KeyPair,
}

impl std::fmt::Debug for CommandSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandSigner { .. }")
    }
}

impl CommandSigner {
    /// A new key as PKCS#8 DER (what the PKI directory stores).
    pub fn generate() -> Result<Vec<u8>, PkiError> {
        let rng = ring::rand::SystemRandom::new();
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|der| der.as_ref().to_vec())
            .map_err(|_| PkiError::CommandKey("cannot generate the command key".into()))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, PkiError> {
        ring::signature::Ed25519KeyPair::from_pkcs8(der)
            .map(|key| Self { key })
            .map_err(|e| PkiError::CommandKey(format!("the command key is not valid: {e}")))
    }

    /// What agents pin (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.key.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).as_ref().to_vec()
    }
}

const AGENT_URI_PREFIX: &str = "mf://agent/";
const OPERATOR_URI_PREFIX: &str = "mf://operator/";

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The coordinator's and operators' certificates from `pki init`.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// An operator certificate's lifetime (from `mfctl operator add`).
pub const OPERATOR_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// An agent certificate's lifetime unless the coordinator is told otherwise:
/// short, because agents renew their own.
pub const AGENT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// Tolerates clocks a little behind ours on freshly issued certificates.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the certificate signing request is invalid: {0}")]
    BadCsr(rcgen::Error),
    #[error("{0}")]
    Files(#[from] files::FilesError),
    #[error(
        "{0:?} is not a DNS name or an IP address: give the coordinator's name as clients \
         dial it, e.g. coordinator.example.com or 10.0.0.5 (no scheme, port or path)"
    )]
    BadName(String),
    #[error("{0}")]
    CommandKey(String),
}

/// A host name as certificates carry it: 1-253 bytes of dot-separated labels
/// of letters, digits and '-', none starting or ending with '-'.
fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Who a verified client certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRole {
    Agent { host_id: String },
    Operator { name: String },
}

impl std::fmt::Display for PeerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerRole::Agent { host_id } => write!(f, "agent {host_id}"),
            PeerRole::Operator { name } => write!(f, "operator {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error("the client certificate names no Migration Factory role")]
    NoRole,
    #[error("the client certificate names more than one role")]
    Ambiguous,
}

/// A verified client certificate: whom it speaks for, and which certificate it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub role: PeerRole,
    pub serial_hex: String,
    /// When our CA issued it (its notBefore is backdated by an hour for
    /// clients whose clocks lag; this undoes that).
    pub issued_unix_ms: i64,
}

/// Reads role and serial from a certificate the TLS layer has already verified.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, RoleError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| RoleError::Unparsable)?;
    Ok(PeerIdentity {
        role: role_of(&parsed)?,
        serial_hex: hex(parsed.raw_serial()),
        issued_unix_ms: (parsed.validity().not_before.timestamp() + BACKDATE.as_secs() as i64)
            .saturating_mul(1000),
    })
}

/// A certificate's serial number as lowercase hex, the form revocations use.
pub fn serial_hex(cert: &CertificateDer<'_>) -> Result<String, RoleError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| RoleError::Unparsable)?;
    Ok(hex(parsed.raw_serial()))
}

/// When a PEM certificate expires (Unix milliseconds).
pub fn not_after_unix_ms(cert_pem: &str) -> Result<i64, RoleError> {
    let der =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| RoleError::Unparsable)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|_| RoleError::Unparsable)?;
    Ok(parsed.validity().not_after.timestamp().saturating_mul(1000))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the role from a certificate the TLS layer has already verified.
pub fn peer_role(cert: &CertificateDer<'_>) -> Result<PeerRole, RoleError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| RoleError::Unparsable)?;
    role_of(&parsed)
}

fn role_of(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Result<PeerRole, RoleError> {
    let san = parsed
        .subject_alternative_name()
        .map_err(|_| RoleError::Unparsable)?
        .ok_or(RoleError::NoRole)?;
    let mut roles = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => {
                if let Some(host_id) = uri.strip_prefix(AGENT_URI_PREFIX) {
                    Some(PeerRole::Agent {
                        host_id: host_id.to_string(),
                    })
                } else {
                    uri.strip_prefix(OPERATOR_URI_PREFIX)
                        .map(|name| PeerRole::Operator {
                            name: name.to_string(),
                        })
                }
            }
            _ => None,
        });
    let role = roles.next().ok_or(RoleError::NoRole)?;
    if roles.next().is_some() {
        return Err(RoleError::Ambiguous);
    }
    Ok(role)
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pem { .. }")
    }
}

/// An issued agent certificate.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub pem: String,
    pub serial_hex: String,
    pub not_after_unix_ms: i64,
}

/// The CA, loaded for signing.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority { .. }")
    }
}

impl CertificateAuthority {
    /// Creates a new CA key and self-signed certificate.
    pub fn generate() -> Result<(Self, Pem), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        // A unique name per installation: two PKIs must never look like one
        // issuer to a verifier building a chain by name.
        let id: String = token::random_bytes::<4>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        params.distinguished_name = name(&format!("Migration Factory CA {id}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok((
            Self {
                issuer: Issuer::new(params, key),
                cert_pem: pem.cert.clone(),
            },
            pem,
        ))
    }

    pub fn load(pem: &Pem) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&pem.key)?;
        let issuer = Issuer::from_ca_cert_pem(&pem.cert, key)?;
        Ok(Self {
            issuer,
            cert_pem: pem.cert.clone(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The coordinator's server certificate for DNS names and IP addresses.
    pub fn issue_server(&self, names: &[String]) -> Result<Pem, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("mf-coordinator");
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) if valid_dns_name(n) => Ok(SanType::DnsName(n.as_str().try_into()?)),
                Err(_) => Err(PkiError::BadName(n.clone())),
            })
            .collect::<Result<_, PkiError>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_leaf(params, &key, LEAF_VALIDITY).map(|cert| Pem {
            cert: cert.pem,
            key: key.serialize_pem(),
        })
    }

    /// A new certificate (and key) for the coordinator, for the same names
    /// as `current`: what it renews itself with.
    pub fn renew_server(&self, current_pem: &str) -> Result<Pem, PkiError> {
        let der = CertificateDer::from_pem_slice(current_pem.as_bytes())
            .map_err(|e| PkiError::BadName(format!("the current certificate: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| PkiError::BadName(format!("the current certificate: {e}")))?;
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            Some((*dns).to_string())
                        }
                        x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .ok()
                                .map(|o| IpAddr::from(o).to_string()),
                            16 => <[u8; 16]>::try_from(*ip)
                                .ok()
                                .map(|o| IpAddr::from(o).to_string()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return Err(PkiError::BadName(
                "the current certificate names nothing".into(),
            ));
        }
        self.issue_server(&names)
    }

    /// A client certificate for an operator (mfctl).
    pub fn issue_operator(&self, operator: &str) -> Result<Pem, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(operator);
        params.subject_alt_names = vec![SanType::URI(
            format!("{OPERATOR_URI_PREFIX}{operator}").try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, &key, LEAF_VALIDITY).map(|cert| Pem {
            cert: cert.pem,
            key: key.serialize_pem(),
        })
    }

    /// Signs an operator's certificate from our template for a key made where
    /// the person is (only the CSR's public key is used).
    pub fn issue_operator_for(
        &self,
        operator: &str,
        csr_der: &[u8],
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        if operator.is_empty()
            || operator.len() > 64
            || !operator
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            return Err(PkiError::BadName(operator.to_string()));
        }
        let csr =
            CertificateSigningRequestParams::from_der(&csr_der.into()).map_err(PkiError::BadCsr)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(operator);
        params.subject_alt_names = vec![SanType::URI(
            format!("{OPERATOR_URI_PREFIX}{operator}").try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, &csr.public_key, lifetime)
    }

    /// Signs an agent certificate from our own template. Only the CSR's public
    /// key is used (after its signature is verified): whatever names, CA flag or
    /// usages the CSR asks for are ignored.
    pub fn issue_agent(
        &self,
        host_id: &str,
        csr_der: &[u8],
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let csr =
            CertificateSigningRequestParams::from_der(&csr_der.into()).map_err(PkiError::BadCsr)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(host_id);
        params.subject_alt_names = vec![SanType::URI(
            format!("{AGENT_URI_PREFIX}{host_id}").try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, &csr.public_key, lifetime)
    }

    fn sign_leaf(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial()?;
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        set_validity(&mut params, lifetime);
        let not_after_unix_ms =
            i64::try_from(params.not_after.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(IssuedCert {
            pem: cert.pem(),
            serial_hex,
            not_after_unix_ms,
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Migration Factory");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

/// 16 random bytes, top bit clear so the DER integer stays positive.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = token::random_bytes::<16>();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod renewal_tests {
    use super::*;

    #[test]
    fn a_renewed_server_certificate_names_what_the_old_one_named() {
        let (ca, _) = CertificateAuthority::generate().expect("ca");
        let names = vec![
            "coordinator.example.com".to_string(),
            "127.0.0.1".to_string(),
        ];
        let old = ca.issue_server(&names).expect("issued");
        let new = ca.renew_server(&old.cert).expect("renewed");
        assert_ne!(new.key, old.key, "a new key");
        let der = CertificateDer::from_pem_slice(new.cert.as_bytes()).expect("pem");
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parses");
        let text = format!("{:?}", parsed.subject_alternative_name());
        assert!(
            text.contains("coordinator.example.com") && text.contains("127, 0, 0, 1"),
            "{text}"
        );
    }
}
