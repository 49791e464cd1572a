//! Client transport settings both ends agree on: the coordinator's CA is the
//! only trust root, a client certificate is presented when there is one, and
//! messages are bounded. Used by the agent and by mfctl.

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

/// Messages larger than this are refused in both directions.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("coordinator address {0:?} must be HOST:PORT")]
    BadAddress(String),
    #[error("cannot configure a connection to {address}: {source}")]
    Configure {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// An endpoint for `address` (`HOST:PORT`). With `client` (certificate, key) the
/// caller authenticates; an agent without one can only enroll.
pub fn endpoint(
    address: &str,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<Endpoint, ConnectError> {
    let (host, port) = address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .ok_or_else(|| ConnectError::BadAddress(address.into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    if let Some((cert, key)) = client {
        tls = tls.identity(TlsIdentity::from_pem(cert, key));
    }
    let configure = |source| ConnectError::Configure {
        address: address.into(),
        source,
    };
    let uri = if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(configure)?
        .tls_config(tls)
        .map_err(configure)?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true))
}

/// A status as an operator should read it: the server's message, or for
/// transport failures (unknown CA, TLS alert, refused connection) the cause.
pub fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_name_host_and_port() {
        for bad in ["localhost", ":7443", "host:notaport", "host:70000"] {
            assert!(
                matches!(endpoint(bad, "", None), Err(ConnectError::BadAddress(_))),
                "{bad} accepted"
            );
        }
    }
}
