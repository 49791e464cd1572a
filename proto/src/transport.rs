//! Client transport settings both ends agree on: the coordinator's CA is the
//! only trust root, a client certificate is presented when there is one, and
//! messages are bounded. Used by the agent and by mfctl.

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

/// Messages larger than this are refused in both directions.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("coordinator address {0:?} must be HOST:PORT or https://HOST:PORT")]
    BadAddress(String),
    #[error(
        "coordinator address {0:?}: the coordinator speaks TLS only, use https://HOST:PORT or HOST:PORT"
    )]
    NotTls(String),
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
    if address.starts_with("http://") {
        return Err(ConnectError::NotTls(address.into()));
    }
    // `https://host:port/` as a browser would write it is the same place.
    let bare = address.strip_prefix("https://").unwrap_or(address);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let (host, port) = bare
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
        for bad in [
            "localhost",
            ":7443",
            "host:notaport",
            "host:70000",
            "https://host",
            "https://host:7443/path",
        ] {
            assert!(
                matches!(endpoint(bad, "", None), Err(ConnectError::BadAddress(_))),
                "{bad} accepted"
            );
        }
        assert!(matches!(
            endpoint("http://host:7443", "", None),
            Err(ConnectError::NotTls(_))
        ));
    }

    #[test]
    fn an_https_url_names_the_same_place_as_host_and_port() {
        for good in [
            "coordinator.example.com:7444",
            "https://coordinator.example.com:7444",
            "https://coordinator.example.com:7444/",
            "[::1]:7444",
            "https://[::1]:7444/",
        ] {
            let endpoint = endpoint(good, "", None).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(endpoint.uri().port_u16(), Some(7444), "{good}");
        }
    }
}
