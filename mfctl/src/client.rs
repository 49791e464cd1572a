//! mfctl's connection to the admin API: where it is and which certificate to
//! present, from flags or the environment, and the calls with readable errors.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use mf_proto::transport::{self, MAX_MESSAGE_BYTES};
use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

use crate::exit::{self, ExitCode};
use mf_pki::PkiPaths;

pub type AdminClient = AdminServiceClient<Channel>;

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Admin listener of the coordinator: HOST:PORT or https://HOST:PORT.
    #[arg(long, global = true, env = "MF_COORDINATOR", hide_env_values = true)]
    pub coordinator: Option<String>,
    /// PKI directory holding ca.pem, operator.pem and operator-key.pem.
    #[arg(long, global = true, env = "MF_PKI_DIR", hide_env_values = true)]
    pub pki_dir: Option<PathBuf>,
    /// CA certificate (overrides the PKI directory's).
    #[arg(long, global = true, env = "MF_CA", hide_env_values = true)]
    pub ca: Option<PathBuf>,
    /// Operator certificate (overrides the PKI directory's).
    #[arg(long, global = true, env = "MF_CERT", hide_env_values = true)]
    pub cert: Option<PathBuf>,
    /// Operator key (overrides the PKI directory's).
    #[arg(long, global = true, env = "MF_KEY", hide_env_values = true)]
    pub key: Option<PathBuf>,
}

impl ConnectArgs {
    fn file(
        &self,
        explicit: &Option<PathBuf>,
        from_pki: impl Fn(&PkiPaths) -> PathBuf,
        what: &str,
    ) -> Result<String> {
        let path = explicit
            .clone()
            .or_else(|| self.pki_dir.as_ref().map(|d| from_pki(&PkiPaths::new(d))))
            .ok_or_else(|| anyhow!("no {what}: give --pki-dir (MF_PKI_DIR) or --{what}"))?;
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Where the operator's certificate and key are: (cert, key).
    pub fn operator_files(&self) -> Result<(PathBuf, PathBuf)> {
        let path = |explicit: &Option<PathBuf>, from_pki: fn(&PkiPaths) -> PathBuf, what: &str| {
            explicit
                .clone()
                .or_else(|| self.pki_dir.as_ref().map(|d| from_pki(&PkiPaths::new(d))))
                .ok_or_else(|| anyhow!("no {what}: give --pki-dir (MF_PKI_DIR) or --{what}"))
        };
        Ok((
            path(&self.cert, PkiPaths::operator_cert, "cert")?,
            path(&self.key, PkiPaths::operator_key, "key")?,
        ))
    }

    pub async fn admin(&self) -> Result<AdminClient> {
        let address = self
            .coordinator
            .clone()
            .ok_or_else(|| anyhow!("no coordinator: give --coordinator or set MF_COORDINATOR"))?;
        let ca = self.file(&self.ca, PkiPaths::ca_cert, "ca")?;
        let cert = self.file(&self.cert, PkiPaths::operator_cert, "cert")?;
        let key = self.file(&self.key, PkiPaths::operator_key, "key")?;
        warn_near_expiry(&cert);
        connect(&address, &ca, &cert, &key).await
    }
}

/// Operators renew their certificate themselves: mfctl says so a month ahead.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

fn warn_near_expiry(cert_pem: &str) {
    let Ok(not_after) = mf_pki::not_after_unix_ms(cert_pem) else {
        return;
    };
    let left_ms = not_after - crate::output::now_unix_ms();
    if left_ms < i64::try_from(EXPIRY_WARNING.as_millis()).unwrap_or(i64::MAX) {
        let when = crate::output::timestamp(not_after).unwrap_or_default();
        if left_ms <= 0 {
            eprintln!(
                "warning: your operator certificate expired at {when}: ask an admin for a new one \
                 (mfctl operator request, then operator add)"
            );
        } else {
            eprintln!(
                "warning: your operator certificate expires at {when}: renew it now with \
                 `mfctl operator renew`"
            );
        }
    }
}

pub async fn connect(address: &str, ca: &str, cert: &str, key: &str) -> Result<AdminClient> {
    let connected = transport::endpoint(address, ca, Some((cert, key)))?
        .timeout(Duration::from_secs(60))
        .connect()
        .await;
    let channel = match connected {
        Ok(channel) => channel,
        Err(e) if causes(&e).contains("Connection refused") => {
            return Err(exit::with_code(
                ExitCode::Unavailable,
                format!(
                    "nothing listens at {address}: is the coordinator running, and is this its \
                     admin address (mf-coordinator --admin-listen)?"
                ),
            ));
        }
        Err(e) => {
            return Err(exit::with_code(
                ExitCode::Unavailable,
                format!(
                    "cannot connect to the coordinator at {address}: {}",
                    causes(&e)
                ),
            ));
        }
    };
    Ok(AdminServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// An error and its causes on one line.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The coordinator's answer, or the transport's reason when it never answered.
/// With TLS 1.3 a refused client certificate shows up only as a transport
/// failure on the first call (an alert, a closed connection or a broken pipe,
/// depending on timing), so those get a hint.
pub fn refused(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        return exit::with_code(
            ExitCode::Unavailable,
            "the server at this address does not serve the admin API: is it the coordinator's \
             agent port (--agent-listen) rather than its admin port (--admin-listen)?",
        );
    }
    let text = transport::describe_status(&status);
    let hint = if text.contains("transport error") {
        "\nhint: the connection failed during the call; the coordinator does this when it \
         refuses the client certificate (check that --cert/--key were issued by its CA)"
    } else {
        ""
    };
    exit::with_code(
        exit::for_status(status.code()),
        format!("the coordinator refused the request: {text}{hint}"),
    )
}

pub async fn create_token(
    admin: &mut AdminClient,
    host_id: Option<String>,
    ttl: Duration,
    uses: u32,
) -> Result<pb::CreateTokenResponse> {
    admin
        .create_token(pb::CreateTokenRequest {
            host_id: host_id.unwrap_or_default(),
            ttl_seconds: ttl.as_secs().max(1),
            uses,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(refused)
}

pub async fn list_hosts(admin: &mut AdminClient, selector: &str) -> Result<Vec<pb::Host>> {
    let stream = admin
        .list_hosts(pb::ListHostsRequest {
            selector: selector.to_string(),
            ..Default::default()
        })
        .await
        .map_err(refused)?
        .into_inner();
    parts(stream).await
}

pub async fn get_host(admin: &mut AdminClient, host_id: &str) -> Result<pb::Host> {
    admin
        .get_host(pb::GetHostRequest {
            host_id: host_id.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(refused)
}

pub async fn revoke_host(admin: &mut AdminClient, host_id: &str) -> Result<pb::Host> {
    admin
        .revoke_host(pb::GetHostRequest {
            host_id: host_id.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(refused)
}

pub async fn delete_host(admin: &mut AdminClient, host_id: &str) -> Result<pb::Host> {
    admin
        .delete_host(pb::GetHostRequest {
            host_id: host_id.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(refused)
}

/// Every part of a streamed answer.
pub async fn parts<T>(stream: tonic::Streaming<T>) -> Result<Vec<T>> {
    let mut stream = stream;
    let mut parts = Vec::new();
    while let Some(part) = stream.message().await.map_err(refused)? {
        parts.push(part);
    }
    Ok(parts)
}

/// The readiness report, put together from its parts.
pub async fn readiness(admin: &mut AdminClient, selector: &str) -> Result<pb::ReadinessReport> {
    let stream = admin
        .readiness(pb::ReadinessRequest {
            selector: selector.to_string(),
            counts_only: false,
        })
        .await
        .map_err(refused)?
        .into_inner();
    Ok(merge_readiness(parts(stream).await?))
}

/// Only the counts: what a wait polls.
pub async fn readiness_counts(
    admin: &mut AdminClient,
    selector: &str,
) -> Result<pb::ReadinessCounts> {
    let stream = admin
        .readiness(pb::ReadinessRequest {
            selector: selector.to_string(),
            counts_only: true,
        })
        .await
        .map_err(refused)?
        .into_inner();
    Ok(merge_readiness(parts(stream).await?)
        .counts
        .unwrap_or_default())
}

pub async fn create_wave(admin: &mut AdminClient, spec: pb::WaveSpec) -> Result<pb::WavePlan> {
    let stream = admin.create_wave(spec).await.map_err(refused)?.into_inner();
    Ok(merge_plan(parts(stream).await?))
}

pub async fn plan_wave(admin: &mut AdminClient, name: &str) -> Result<pb::WavePlan> {
    let stream = admin
        .plan_wave(pb::WaveRef {
            name: name.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    Ok(merge_plan(parts(stream).await?))
}

pub async fn list_operators(admin: &mut AdminClient) -> Result<Vec<pb::Operator>> {
    let stream = admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    parts(stream).await
}

pub async fn list_waves(admin: &mut AdminClient) -> Result<Vec<pb::WaveStatus>> {
    let stream = admin
        .list_waves(pb::ListWavesRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    parts(stream).await
}

/// Counts from the first part; hosts and findings over all parts.
fn merge_readiness(parts: Vec<pb::ReadinessReport>) -> pb::ReadinessReport {
    let mut parts = parts.into_iter();
    let mut report = parts.next().unwrap_or_default();
    for part in parts {
        report.hosts.extend(part.hosts);
        report.findings.extend(part.findings);
    }
    report
}

/// The first part's fields; each stage's hosts and the exclusions over all parts.
fn merge_plan(parts: Vec<pb::WavePlan>) -> pb::WavePlan {
    let mut parts = parts.into_iter();
    let mut plan = parts.next().unwrap_or_default();
    for part in parts {
        for (stage, more) in plan.stages.iter_mut().zip(part.stages) {
            stage.hosts.extend(more.hosts);
        }
        plan.excluded.extend(part.excluded);
    }
    plan
}

pub async fn job_action(
    admin: &mut AdminClient,
    host_id: &str,
    action: pb::JobAction,
) -> Result<pb::Job> {
    admin
        .job_action(pb::JobActionRequest {
            host_id: host_id.to_string(),
            action: action.into(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(refused)
}
