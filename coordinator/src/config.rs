//! The coordinator's settings from flags or a TOML file (flags win). Loading
//! reads that file and nothing else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mf_core::rate::PerMinute;
use serde::Deserialize;

use crate::deadline::ConnectionDeadlines;
use crate::service::enroll_limit::EnrollLimits;
use crate::tls::ListenerLimits;

pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// An agent sends a heartbeat every 30 s and a few updates a minute when it
/// works; 120 leaves room for bursts (a reconnection's hello and facts, a
/// migration's quick phases) and still stops a flood at once.
pub const DEFAULT_AGENT_MESSAGES: PerMinute = PerMinute(120);
/// Real automation waits up to four hours for an upgrade's reboots.
pub const DEFAULT_REBOOT_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("missing setting {0}: give --{1} or {0} in the config file")]
    Missing(&'static str, &'static str),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
}

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub pki_dir: Option<PathBuf>,
    pub agent_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub metrics_listen: Option<String>,
    /// The REST API for portals (HTTPS; bearer tokens or operator
    /// certificates), e.g. "0.0.0.0:8443"; off unless given.
    pub api_listen: Option<String>,
    /// The OpenID Connect provider whose tokens the REST API accepts.
    pub oidc: Option<crate::api::oidc::OidcConfig>,
    /// The rules of migrations that application owners request.
    pub self_service: Option<crate::api::policy::SelfServiceConfig>,
    /// Host records the REST API may read a second, across every caller
    /// (default 10000): past it, calls wait their turn.
    pub api_reads_per_second: Option<u32>,
    /// Keys of findings that no change on the host lifts: a host with one
    /// blocking is `rebuild`, not `blocked`.
    pub rebuild_findings: Option<Vec<String>>,
    /// The longest wait between two attempts at delivering an event to a
    /// webhook, e.g. "5m" (the default).
    pub webhook_retry_max_interval: Option<String>,
    /// e.g. "30s"
    pub heartbeat_interval: Option<String>,
    /// A reboot with no outcome after this holds its job, e.g. "4h".
    pub reboot_timeout: Option<String>,
    /// How long agent certificates live, e.g. "30d"; agents renew theirs
    /// between half and three quarters of it.
    pub agent_cert_lifetime: Option<String>,
    /// The longest a bootstrap token may live, e.g. "7d" (default 30d).
    pub token_max_ttl: Option<String>,
    /// The most enrollments one token may allow (default 10000).
    pub token_max_uses: Option<u32>,
    /// A host whose clock is off by more than this is sent no work, e.g. "5m".
    pub max_clock_skew: Option<String>,
    /// How long operators' certificates live, e.g. "365d".
    pub operator_cert_lifetime: Option<String>,
    /// The coordinator renews its own server certificate when less than this
    /// is left, e.g. "30d".
    pub server_cert_renew_before: Option<String>,
    /// Waves over this many hosts start only with a second admin's start.
    pub blast_radius_hosts: Option<usize>,
    /// Waves with a higher max-parallel: the same.
    pub blast_radius_max_parallel: Option<u32>,
    /// Waves whose error budgets exceed this percentage: the same.
    pub blast_radius_error_percent: Option<u32>,
    /// Refused enrollments allowed a minute from one address (default 30).
    pub enroll_refusals_per_source: Option<u32>,
    /// Refused enrollments allowed a minute from all addresses (default 600).
    pub enroll_refusals_total: Option<u32>,
    /// TLS handshakes in progress at once from one address (default 128).
    pub handshakes_per_source: Option<usize>,
    /// A connection must start HTTP/2 this soon after its handshake ("10s").
    pub preface_timeout: Option<String>,
    /// A connection without a client certificate is closed after this ("60s").
    pub unauthenticated_connection_lifetime: Option<String>,
    /// Messages one agent may send a minute (default 120); past it, its
    /// session is closed.
    pub agent_messages_per_minute: Option<u32>,
    /// An agent that takes nothing off the wire this long while something
    /// waits for it is disconnected ("30s").
    pub agent_stall_timeout: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            // toml's own rendering: the line, the column and the offending text.
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Fills what the flags left out from the file, then checks every value.
    pub fn resolve(self, flags: FileConfig) -> Result<CoordinatorConfig, ConfigError> {
        let addr = |name: &'static str, flag: &'static str, value: Option<String>| {
            let text = value.ok_or(ConfigError::Missing(name, flag))?;
            text.parse::<SocketAddr>()
                .map_err(|e| ConfigError::Invalid(name, format!("{text:?}: {e}")))
        };
        let duration = |name: &'static str, value: Option<String>, default: Duration| match value {
            Some(text) => humantime::parse_duration(&text)
                .map_err(|e| ConfigError::Invalid(name, e.to_string())),
            None => Ok(default),
        };
        let heartbeat_interval = duration(
            "heartbeat_interval",
            flags.heartbeat_interval.or(self.heartbeat_interval),
            DEFAULT_HEARTBEAT,
        )?;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&heartbeat_interval) {
            return Err(ConfigError::Invalid(
                "heartbeat_interval",
                "must be between 1s and 1h".into(),
            ));
        }
        let reboot_timeout = duration(
            "reboot_timeout",
            flags.reboot_timeout.or(self.reboot_timeout),
            DEFAULT_REBOOT_TIMEOUT,
        )?;
        let agent_cert_lifetime = duration(
            "agent_cert_lifetime",
            flags.agent_cert_lifetime.or(self.agent_cert_lifetime),
            mf_pki::AGENT_VALIDITY,
        )?;
        // Short lifetimes are for tests and drills; above 825 days no client
        // would accept a certificate anyway.
        if !(Duration::from_secs(10)..=Duration::from_secs(825 * 86_400))
            .contains(&agent_cert_lifetime)
        {
            return Err(ConfigError::Invalid(
                "agent_cert_lifetime",
                "must be between 10s and 825 days".into(),
            ));
        }
        let defaults = crate::service::admin::TokenPolicy::default();
        let token_policy = crate::service::admin::TokenPolicy {
            max_ttl: duration(
                "token_max_ttl",
                flags.token_max_ttl.or(self.token_max_ttl),
                defaults.max_ttl,
            )?,
            max_uses: flags
                .token_max_uses
                .or(self.token_max_uses)
                .unwrap_or(defaults.max_uses),
        };
        if token_policy.max_uses == 0 || token_policy.max_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "token_max_uses/token_max_ttl",
                "must be above 0".into(),
            ));
        }
        let max_clock_skew = duration(
            "max_clock_skew",
            flags.max_clock_skew.or(self.max_clock_skew),
            Duration::from_secs(300),
        )?;
        let operator_cert_lifetime = duration(
            "operator_cert_lifetime",
            flags.operator_cert_lifetime.or(self.operator_cert_lifetime),
            mf_pki::OPERATOR_VALIDITY,
        )?;
        let server_cert_renew_before = duration(
            "server_cert_renew_before",
            flags
                .server_cert_renew_before
                .or(self.server_cert_renew_before),
            Duration::from_secs(30 * 86_400),
        )?;
        let blast_radius = mf_core::wave::blast::BlastRadius {
            max_hosts: flags.blast_radius_hosts.or(self.blast_radius_hosts),
            max_parallel: flags
                .blast_radius_max_parallel
                .or(self.blast_radius_max_parallel),
            max_error_percent: flags
                .blast_radius_error_percent
                .or(self.blast_radius_error_percent),
        };
        let limit_defaults = EnrollLimits::default();
        let enroll_limits = EnrollLimits {
            per_source: PerMinute(
                flags
                    .enroll_refusals_per_source
                    .or(self.enroll_refusals_per_source)
                    .unwrap_or(limit_defaults.per_source.0),
            ),
            total: PerMinute(
                flags
                    .enroll_refusals_total
                    .or(self.enroll_refusals_total)
                    .unwrap_or(limit_defaults.total.0),
            ),
        };
        if enroll_limits.per_source.0 == 0 || enroll_limits.total.0 == 0 {
            return Err(ConfigError::Invalid(
                "enroll_refusals_per_source/enroll_refusals_total",
                "must be above 0 (a limit of 0 would refuse every enrollment)".into(),
            ));
        }
        let listener_defaults = ListenerLimits::default();
        let listener_limits = ListenerLimits {
            handshakes: listener_defaults.handshakes,
            handshakes_per_source: flags
                .handshakes_per_source
                .or(self.handshakes_per_source)
                .unwrap_or(listener_defaults.handshakes_per_source),
            deadlines: ConnectionDeadlines {
                preface: duration(
                    "preface_timeout",
                    flags.preface_timeout.or(self.preface_timeout),
                    listener_defaults.deadlines.preface,
                )?,
                unauthenticated: duration(
                    "unauthenticated_connection_lifetime",
                    flags
                        .unauthenticated_connection_lifetime
                        .or(self.unauthenticated_connection_lifetime),
                    listener_defaults.deadlines.unauthenticated,
                )?,
            },
        };
        if listener_limits.handshakes_per_source == 0
            || listener_limits.deadlines.preface.is_zero()
            || listener_limits.deadlines.unauthenticated.is_zero()
        {
            return Err(ConfigError::Invalid(
                "handshakes_per_source/preface_timeout/unauthenticated_connection_lifetime",
                "must be above 0".into(),
            ));
        }
        let agent_messages_per_minute = PerMinute(
            flags
                .agent_messages_per_minute
                .or(self.agent_messages_per_minute)
                .unwrap_or(DEFAULT_AGENT_MESSAGES.0),
        );
        if agent_messages_per_minute.0 < 10 {
            return Err(ConfigError::Invalid(
                "agent_messages_per_minute",
                "must be at least 10 (an agent sends a few a minute when busy)".into(),
            ));
        }
        let agent_stall_timeout = duration(
            "agent_stall_timeout",
            flags.agent_stall_timeout.or(self.agent_stall_timeout),
            Duration::from_secs(30),
        )?;
        if agent_stall_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "agent_stall_timeout",
                "must be above 0".into(),
            ));
        }
        let api_listen = match flags.api_listen.or(self.api_listen) {
            None => None,
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|e| ConfigError::Invalid("api_listen", format!("{text:?}: {e}")))?,
            ),
        };
        let self_service = crate::api::policy::SelfServicePolicy::new(
            flags.self_service.or(self.self_service).unwrap_or_default(),
        )
        .map_err(|e| ConfigError::Invalid("self_service", e.to_string()))?;
        let rebuild_findings = flags
            .rebuild_findings
            .or(self.rebuild_findings)
            .unwrap_or_default();
        if let Some(bad) = rebuild_findings
            .iter()
            .find(|k| k.trim().is_empty() || k.len() > 256)
        {
            return Err(ConfigError::Invalid(
                "rebuild_findings",
                format!("{bad:?} is not a finding key (1 to 256 characters)"),
            ));
        }
        let webhook_delivery = crate::webhooks::delivery::DeliverySettings {
            max_interval: duration(
                "webhook_retry_max_interval",
                flags
                    .webhook_retry_max_interval
                    .or(self.webhook_retry_max_interval),
                crate::webhooks::delivery::DeliverySettings::default().max_interval,
            )?,
        };
        if webhook_delivery.max_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid(
                "webhook_retry_max_interval",
                "must be at least 100ms".into(),
            ));
        }
        let api_reads_per_second = flags
            .api_reads_per_second
            .or(self.api_reads_per_second)
            .unwrap_or(crate::api::budget::DEFAULT_PER_SECOND);
        if api_reads_per_second < 1000 {
            return Err(ConfigError::Invalid(
                "api_reads_per_second",
                "must be at least 1000 (a page of hosts costs up to 500)".into(),
            ));
        }
        Ok(CoordinatorConfig {
            api_reads_per_second,
            webhook_delivery,
            rebuild: mf_core::readiness::RebuildRules {
                findings: rebuild_findings.into_iter().collect(),
            },
            api_listen,
            oidc: flags.oidc.or(self.oidc),
            self_service,
            data_dir: flags
                .data_dir
                .or(self.data_dir)
                .ok_or(ConfigError::Missing("data_dir", "data-dir"))?,
            pki_dir: flags
                .pki_dir
                .or(self.pki_dir)
                .ok_or(ConfigError::Missing("pki_dir", "pki-dir"))?,
            agent_listen: addr(
                "agent_listen",
                "agent-listen",
                flags.agent_listen.or(self.agent_listen),
            )?,
            admin_listen: addr(
                "admin_listen",
                "admin-listen",
                flags.admin_listen.or(self.admin_listen),
            )?,
            metrics_listen: addr(
                "metrics_listen",
                "metrics-listen",
                flags.metrics_listen.or(self.metrics_listen),
            )?,
            heartbeat_interval,
            reboot_timeout,
            agent_cert_lifetime,
            token_policy,
            max_clock_skew,
            operator_cert_lifetime,
            server_cert_renew_before,
            blast_radius,
            enroll_limits,
            listener_limits,
            agent_messages_per_minute,
            agent_stall_timeout,
        })
    }
}

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// The REST API's listener; `None`: no REST API.
    pub api_listen: Option<SocketAddr>,
    pub api_reads_per_second: u32,
    pub oidc: Option<crate::api::oidc::OidcConfig>,
    pub self_service: crate::api::policy::SelfServicePolicy,
    /// What makes a host `rebuild` besides its platform.
    pub rebuild: mf_core::readiness::RebuildRules,
    pub webhook_delivery: crate::webhooks::delivery::DeliverySettings,
    pub data_dir: PathBuf,
    pub pki_dir: PathBuf,
    pub agent_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub heartbeat_interval: Duration,
    pub reboot_timeout: Duration,
    pub agent_cert_lifetime: Duration,
    pub token_policy: crate::service::admin::TokenPolicy,
    pub max_clock_skew: Duration,
    pub operator_cert_lifetime: Duration,
    pub server_cert_renew_before: Duration,
    pub blast_radius: mf_core::wave::blast::BlastRadius,
    pub enroll_limits: EnrollLimits,
    pub listener_limits: ListenerLimits,
    pub agent_messages_per_minute: PerMinute,
    pub agent_stall_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_missing_settings_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let file: FileConfig = toml::from_str(
            "data_dir = \"/var/lib/mf\"\npki_dir = \"/etc/mf/pki\"\nagent_listen = \"0.0.0.0:7443\"\n\
             admin_listen = \"127.0.0.1:7444\"\nmetrics_listen = \"127.0.0.1:9464\"\n",
        )?;
        let flags = FileConfig {
            agent_listen: Some("127.0.0.1:1".into()),
            ..FileConfig::default()
        };
        let config = file.resolve(flags)?;
        assert_eq!(config.agent_listen, "127.0.0.1:1".parse()?);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/mf"));
        assert_eq!(config.heartbeat_interval, DEFAULT_HEARTBEAT);

        let err = FileConfig::default()
            .resolve(FileConfig::default())
            .expect_err("incomplete");
        assert!(err.to_string().contains("--data-dir"), "{err}");
        Ok(())
    }

    #[test]
    fn the_packaged_example_is_valid() -> Result<(), Box<dyn std::error::Error>> {
        let file: FileConfig =
            toml::from_str(include_str!("../../packaging/config/coordinator.toml"))?;
        let config = file.resolve(FileConfig::default())?;
        assert_eq!(config.agent_listen, "0.0.0.0:7443".parse()?);
        assert_eq!(config.enroll_limits, EnrollLimits::default());
        Ok(())
    }

    /// The REST API's part of the example is commented out; uncommented it
    /// must be a valid configuration too.
    #[test]
    fn the_packaged_api_example_is_valid_once_uncommented() -> Result<(), Box<dyn std::error::Error>>
    {
        let example = include_str!("../../packaging/config/coordinator.toml");
        let start = example
            .find("# rebuild_findings")
            .ok_or("no rebuild_findings example")?;
        let uncommented: String = example[start..]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let file: FileConfig = toml::from_str(&format!("{}{uncommented}", &example[..start]))?;
        let config = file.resolve(FileConfig::default())?;
        assert_eq!(config.api_listen, Some("0.0.0.0:8443".parse()?));
        assert_eq!(config.rebuild.findings.len(), 1);
        let oidc = config.oidc.ok_or("no [oidc]")?;
        assert_eq!(
            (oidc.grants.len(), oidc.audience.as_str()),
            (2, "migration-factory")
        );
        assert_eq!(
            config.self_service.describe().first().map(String::as_str),
            Some("window sat 22:00-sun 06:00 Europe/Paris")
        );
        Ok(())
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("data_dri = \"x\"").is_err());
        let flags = FileConfig {
            data_dir: Some("d".into()),
            pki_dir: Some("p".into()),
            agent_listen: Some("nonsense".into()),
            admin_listen: Some("127.0.0.1:2".into()),
            metrics_listen: Some("127.0.0.1:3".into()),
            ..FileConfig::default()
        };
        let err = FileConfig::default()
            .resolve(flags)
            .expect_err("bad address");
        assert!(err.to_string().contains("agent_listen"), "{err}");

        let no_enrollments = FileConfig {
            data_dir: Some("d".into()),
            pki_dir: Some("p".into()),
            agent_listen: Some("127.0.0.1:1".into()),
            admin_listen: Some("127.0.0.1:2".into()),
            metrics_listen: Some("127.0.0.1:3".into()),
            enroll_refusals_per_source: Some(0),
            ..FileConfig::default()
        };
        let err = FileConfig::default()
            .resolve(no_enrollments)
            .expect_err("a limit of 0");
        assert!(err.to_string().contains("enroll_refusals"), "{err}");
    }
}
