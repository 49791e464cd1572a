//! Enrollment: the key is generated here and never leaves the host; the
//! coordinator gets a CSR and a bootstrap token and returns a certificate.

use mf_proto::v1::EnrollRequest;
use mf_proto::v1::agent_service_client::AgentServiceClient;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::identity::Identity;
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

pub async fn enroll(params: EnrollParams) -> Result<Identity, EnrollError> {
    let key = KeyPair::generate()?;
    let mut request = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, params.host_id.clone());
    request.distinguished_name = name;
    let csr = request.serialize_request(&key)?;

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
            csr_der: csr.der().to_vec(),
        })
        .await
        .map_err(|status| EnrollError::Refused(transport::describe_status(&status)))?
        .into_inner();
    Ok(Identity {
        host_id: response.host_id,
        coordinator: params.coordinator,
        key_pem: key.serialize_pem(),
        cert_pem: response.certificate_pem,
        ca_pem: params.ca_pem,
    })
}
