//! Prometheus metrics: one registry per coordinator (no global state), served
//! in the classic text format on its own listener with `/metrics` and `/healthz`.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const ENROLLMENT_RESULTS: [&str; 8] = [
    "ok",
    "bad_request",
    "unknown_token",
    "expired_token",
    "exhausted_token",
    "wrong_host",
    "already_enrolled",
    "rate_limited",
];
const STREAM_KINDS: [(&str, &str); 6] = [
    ("in", "hello"),
    ("in", "facts"),
    ("in", "heartbeat"),
    ("in", "command_update"),
    ("out", "welcome"),
    ("out", "command"),
];

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

/// Every metric the coordinator exports.
pub struct Families {
    registry: Registry,
    pub agents_connected: IntGauge,
    pub store_writable: IntGauge,
    pub store_failures: prometheus::IntCounter,
    pub revoked_certificates: IntGauge,
    pub audit_entries: IntGauge,
    pub hosts_clock_skewed: IntGauge,
    pub clock_skew_max_seconds: prometheus::Gauge,
    pub hosts: IntGaugeVec,
    pub enrollments: IntCounterVec,
    pub refused_handshakes: IntCounterVec,
    pub stream_messages: IntCounterVec,
    pub sessions_closed: IntCounterVec,
    pub store_flush_seconds: Histogram,
    pub commands: IntCounterVec,
    pub phase_duration_seconds: HistogramVec,
    pub hosts_by_readiness: IntGaugeVec,
    pub finding_hosts: IntGaugeVec,
    pub jobs: IntGaugeVec,
    pub wave_hosts: IntGaugeVec,
    pub wave_stage: IntGaugeVec,
    pub wave_stages: IntGaugeVec,
    pub wave_budget_in_use: IntGaugeVec,
    pub wave_budget_full: IntGaugeVec,
    pub wave_halts: IntCounterVec,
    pub wave_dispatch_latency_seconds: Histogram,
    pub certificate_expiry: prometheus::GaugeVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_lag_seconds: prometheus::GaugeVec,
    pub webhook_pending_events: IntGaugeVec,
    pub webhook_events_expired: prometheus::IntCounter,
}

impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.inner
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let agents_connected = IntGauge::new("mf_agents_connected", "Agents with an open session")?;
        let store_writable = IntGauge::new(
            "mf_store_writable",
            "1 while the coordinator can write its store; 0 while a write failed (it refuses changes)",
        )?;
        store_writable.set(1);
        let store_failures = prometheus::IntCounter::new(
            "mf_store_failures_total",
            "Times the coordinator found it could not write its store (ENOSPC, EIO)",
        )?;
        let hosts_clock_skewed = IntGauge::new(
            "mf_hosts_clock_skewed",
            "Connected hosts whose clock is off by more than max_clock_skew: they are sent no work",
        )?;
        let clock_skew_max_seconds = prometheus::Gauge::new(
            "mf_clock_skew_max_seconds",
            "The largest clock skew among connected hosts, either way (seconds)",
        )?;
        let audit_entries = IntGauge::new(
            "mf_audit_entries",
            "Entries in the audit chain: the head a log collector can compare with its copy",
        )?;
        let revoked_certificates = IntGauge::new(
            "mf_revoked_certificates",
            "Certificates on the deny-list the TLS listeners check at every handshake",
        )?;
        let hosts = IntGaugeVec::new(
            Opts::new("mf_hosts", "Enrolled hosts by operating system and version"),
            &["os", "version"],
        )?;
        let enrollments = IntCounterVec::new(
            Opts::new("mf_enrollments_total", "Enrollment attempts by result"),
            &["result"],
        )?;
        let refused_handshakes = IntCounterVec::new(
            Opts::new(
                "mf_refused_handshakes_total",
                "Connections or calls refused while authenticating the peer, by listener and reason",
            ),
            &["listener", "reason"],
        )?;
        let stream_messages = IntCounterVec::new(
            Opts::new(
                "mf_stream_messages_total",
                "Agent session messages by direction and kind",
            ),
            &["direction", "kind"],
        )?;
        let sessions_closed = IntCounterVec::new(
            Opts::new(
                "mf_agent_sessions_closed_total",
                "Agent sessions the coordinator closed for misbehaving, by reason",
            ),
            &["reason"],
        )?;
        let store_flush_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "mf_store_flush_seconds",
                "Time to make a batch of writes durable",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        let commands = IntCounterVec::new(
            Opts::new(
                "mf_commands_total",
                "Agent commands by phase and state (requested, then the agent's updates)",
            ),
            &["phase", "state"],
        )?;
        let phase_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "mf_phase_duration_seconds",
                "Time from a phase's start to its outcome, by phase and outcome",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
            ]),
            &["phase", "outcome"],
        )?;
        let hosts_by_readiness = IntGaugeVec::new(
            Opts::new(
                "mf_hosts_by_readiness",
                "Hosts by readiness: their latest pre-check's outcome, unknown before one, or rebuild (no in-place path), as of the last tick (5 s)",
            ),
            &["readiness"],
        )?;
        let finding_hosts = IntGaugeVec::new(
            Opts::new(
                "mf_finding_hosts",
                "Hosts whose latest pre-check reported a finding, by source, key (with its title) and blocking",
            ),
            &["source", "key", "title", "blocking"],
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new(
                "mf_jobs",
                "Hosts by the state of their latest migration job",
            ),
            &["state"],
        )?;
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let wave_hosts = gauge(
            "mf_wave_hosts",
            "Hosts of each wave by state (pending, running, or how they ended)",
            &["wave", "state"],
        )?;
        let wave_stage = gauge(
            "mf_wave_stage",
            "The stage each wave is at (1 is the canary)",
            &["wave"],
        )?;
        let wave_stages = gauge("mf_wave_stages", "Stages of each wave", &["wave"])?;
        let wave_budget_in_use = gauge(
            "mf_wave_budget_in_use",
            "Hosts taking a slot of a wave's disruption budget, by budget label",
            &["wave", "label"],
        )?;
        let wave_budget_full = gauge(
            "mf_wave_budget_full_values",
            "Label values whose disruption budget is full, by wave and budget label",
            &["wave", "label"],
        )?;
        let wave_halts = IntCounterVec::new(
            Opts::new(
                "mf_wave_halts_total",
                "Waves halted by an error budget, by wave and reason",
            ),
            &["wave", "reason"],
        )?;
        let wave_dispatch_latency_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "mf_wave_dispatch_latency_seconds",
                "Time from a wave's decision to start a host to its command handed to the agent's session (the decision is made durable in between)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("mf_build_info", "Version of the running coordinator"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Known series start at zero so that rate() works from the first scrape.
        for result in ENROLLMENT_RESULTS {
            enrollments.with_label_values(&[result]);
        }
        for (direction, kind) in STREAM_KINDS {
            stream_messages.with_label_values(&[direction, kind]);
        }
        for reason in ["rate_limited", "slow_reader"] {
            sessions_closed.with_label_values(&[reason]);
        }
        for listener in ["agent", "admin"] {
            for reason in [
                "no_certificate",
                "unknown_ca",
                "wrong_role",
                "timeout",
                "busy",
            ] {
                refused_handshakes.with_label_values(&[listener, reason]);
            }
        }
        registry.register(Box::new(agents_connected.clone()))?;
        registry.register(Box::new(store_writable.clone()))?;
        registry.register(Box::new(store_failures.clone()))?;
        registry.register(Box::new(revoked_certificates.clone()))?;
        registry.register(Box::new(audit_entries.clone()))?;
        registry.register(Box::new(hosts_clock_skewed.clone()))?;
        registry.register(Box::new(clock_skew_max_seconds.clone()))?;
        registry.register(Box::new(hosts.clone()))?;
        registry.register(Box::new(enrollments.clone()))?;
        registry.register(Box::new(refused_handshakes.clone()))?;
        registry.register(Box::new(stream_messages.clone()))?;
        registry.register(Box::new(sessions_closed.clone()))?;
        registry.register(Box::new(store_flush_seconds.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(phase_duration_seconds.clone()))?;
        registry.register(Box::new(hosts_by_readiness.clone()))?;
        registry.register(Box::new(finding_hosts.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(wave_hosts.clone()))?;
        registry.register(Box::new(wave_stage.clone()))?;
        registry.register(Box::new(wave_stages.clone()))?;
        registry.register(Box::new(wave_budget_in_use.clone()))?;
        registry.register(Box::new(wave_budget_full.clone()))?;
        registry.register(Box::new(wave_halts.clone()))?;
        registry.register(Box::new(wave_dispatch_latency_seconds.clone()))?;
        for state in [
            "running",
            "succeeded",
            "blocked",
            "failed",
            "rolled-back",
            "held",
        ] {
            jobs.with_label_values(&[state]);
        }
        for readiness in ["ready", "blocked", "error", "unknown", "rebuild"] {
            hosts_by_readiness.with_label_values(&[readiness]);
        }
        registry.register(Box::new(build_info))?;
        let certificate_expiry = prometheus::GaugeVec::new(
            Opts::new(
                "mf_certificate_expiry_timestamp_seconds",
                "When a certificate expires (unix seconds): the CA, the coordinator's own, and \
                 the earliest of the enrolled agents'",
            ),
            &["certificate"],
        )?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "mf_webhook_deliveries_total",
                "Event deliveries to webhooks, by webhook and result (ok: a 2xx answer; failed: \
                 anything else, retried with backoff)",
            ),
            &["webhook", "result"],
        )?;
        let webhook_lag_seconds = prometheus::GaugeVec::new(
            Opts::new(
                "mf_webhook_lag_seconds",
                "Age of the oldest event a webhook has not taken (0 when it is caught up)",
            ),
            &["webhook"],
        )?;
        let webhook_pending_events = gauge(
            "mf_webhook_pending_events",
            "Events recorded after the last one a webhook took",
            &["webhook"],
        )?;
        let webhook_events_expired = prometheus::IntCounter::new(
            "mf_webhook_events_expired_total",
            "Events dropped undelivered after the outbox's retention (7 days)",
        )?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        registry.register(Box::new(webhook_lag_seconds.clone()))?;
        registry.register(Box::new(webhook_pending_events.clone()))?;
        registry.register(Box::new(webhook_events_expired.clone()))?;
        // process_cpu_seconds_total, process_resident_memory_bytes, open and
        // max fds, start time: the standard families every exporter has.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            inner: Arc::new(Families {
                registry,
                agents_connected,
                store_writable,
                store_failures,
                revoked_certificates,
                audit_entries,
                hosts_clock_skewed,
                clock_skew_max_seconds,
                hosts,
                enrollments,
                refused_handshakes,
                stream_messages,
                sessions_closed,
                store_flush_seconds,
                commands,
                phase_duration_seconds,
                hosts_by_readiness,
                finding_hosts,
                jobs,
                wave_hosts,
                wave_stage,
                wave_stages,
                wave_budget_in_use,
                wave_budget_full,
                wave_halts,
                wave_dispatch_latency_seconds,
                certificate_expiry,
                webhook_deliveries,
                webhook_lag_seconds,
                webhook_pending_events,
                webhook_events_expired,
            }),
        })
    }

    pub fn refused(&self, listener: &str, reason: &str) {
        self.refused_handshakes
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

impl Metrics {
    /// Zeroes what the inventory counts from its state, before it loads its
    /// state again (after a storage failure): it counts everything afresh.
    pub fn reset_inventory_gauges(&self) {
        self.agents_connected.set(0);
        self.hosts_clock_skewed.set(0);
        for family in [
            &self.hosts,
            &self.hosts_by_readiness,
            &self.finding_hosts,
            &self.jobs,
            &self.wave_hosts,
            &self.wave_stage,
            &self.wave_stages,
            &self.wave_budget_in_use,
            &self.wave_budget_full,
        ] {
            family.reset();
        }
    }
}

/// Serves `/metrics` and `/healthz` until `shutdown`; `/healthz` answers 503
/// with the cause while the store cannot be written.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    storage: crate::storage_health::StorageHealth,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.render() {
                        Ok(text) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                            text,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let cause = storage.cause();
                async move {
                    match cause {
                        None => (StatusCode::OK, "ok\n".to_string()),
                        Some(cause) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not serving: cannot write the store: {cause}\n"),
                        ),
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
