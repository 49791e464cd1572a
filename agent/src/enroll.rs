//! Enrollment: the key is generated here and never leaves the host; the
//! coordinator gets a CSR and a bootstrap token and returns a certificate.

use mf_proto::v1::agent_service_client::AgentServiceClient;
use mf_proto::v1::{EnrollRequest, EnrollResponse};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::identity::{Identity, Validity};
use mf_proto::transport::{self, ConnectError, MAX_MESSAGE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot reach the coordinator at {address}: {source}")]
    Unreachable {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the coordinator refused the enrollment: {0}")]
    Refused(String),
    #[error("cannot create the key or request: {0}")]
    Crypto(#[from] rcgen::Error),
}

/// What enrolling needs to know.
#[derive(Debug, Clone)]
pub struct EnrollParams {
    pub coordinator: String,
    pub ca_pem: String,
    pub token: String,
    pub host_id: String,
}

/// A new key, made here, and a request for a certificate of it.
pub(crate) fn key_and_request(host_id: &str) -> Result<(KeyPair, Vec<u8>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut request = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, host_id);
    request.distinguished_name = name;
    let csr = request.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// The validity of a certificate just received, by this host's clock.
pub(crate) fn validity_of(response: &EnrollResponse) -> Validity {
    Validity {
        received_unix_ms: crate::command::now_unix_ms(),
        lifetime_seconds: response.lifetime_seconds,
        not_after_unix_ms: response.not_after_unix_ms,
    }
}

pub async fn enroll(params: EnrollParams) -> Result<Identity, EnrollError> {
    let (key, csr) = key_and_request(&params.host_id)?;

    let channel = transport::endpoint(&params.coordinator, &params.ca_pem, None)?
        .connect()
        .await
        .map_err(|source| EnrollError::Unreachable {
            address: params.coordinator.clone(),
            source,
        })?;
    let response = AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .enroll(EnrollRequest {
            token: params.token.clone(),
            host_id: params.host_id.clone(),
            csr_der: csr,
        })
        .await
        .map_err(|status| EnrollError::Refused(transport::describe_status(&status)))?
        .into_inner();
    let validity = validity_of(&response);
    Ok(Identity {
        host_id: response.host_id,
        coordinator: params.coordinator,
        key_pem: key.serialize_pem(),
        cert_pem: response.certificate_pem,
        ca_pem: params.ca_pem,
        validity,
        command_key: response.command_public_key,
    })
}
