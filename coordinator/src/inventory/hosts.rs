//! The inventory task's hosts and their sessions: enrollment, the live
//! session of each host (a newer one replaces an older), facts and presence,
//! and what a selector sees of a host.

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::HostView;
use super::{
    AgentCommand, EndReason, EnrollRefusal, Facts, HostRecord, InventoryError, NewEnrollment,
    NewSession, Renewal, SessionEnd, SessionId, State, prechecks,
};
use crate::store::RevokedRecord;
use mf_core::selector::Selector;

/// The value a selector sees for `key` on a host: a few facts, else a label.
pub(super) fn selector_value<'a>(
    record: &'a HostRecord,
    connected: bool,
    key: &str,
) -> Option<&'a str> {
    let facts = record.facts.as_ref();
    let os = facts.and_then(|f| f.os.as_ref());
    match key {
        "id" => Some(record.id.as_str()),
        "connected" => Some(if connected { "true" } else { "false" }),
        "os" => os.map(|o| o.id.as_str()),
        "version" => os.map(|o| o.version.as_str()),
        "arch" => facts.map(|f| f.arch.as_str()).filter(|a| !a.is_empty()),
        "hostname" => facts.map(|f| f.hostname.as_str()).filter(|h| !h.is_empty()),
        // A label an admin pinned wins over the agent's.
        label => record
            .pinned_labels
            .get(label)
            .or_else(|| facts.and_then(|f| f.labels.get(label)))
            .map(String::as_str),
    }
}

/// Which part of a sorted list to answer: the hosts after `after` (an id),
/// at most `limit` of them; the default is all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub after: Option<String>,
    pub limit: Option<usize>,
    /// Without findings and job timelines.
    pub brief: bool,
}

/// Which hosts a request is about: its selector, within the asking
/// operator's scope (evaluated over pinned labels only).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub selector: Selector,
    pub scope: Option<Selector>,
}

impl From<Selector> for Selection {
    fn from(selector: Selector) -> Self {
        Self {
            selector,
            scope: None,
        }
    }
}

pub(super) struct LiveSession {
    pub(super) id: SessionId,
    pub(super) end: SessionEnd,
    pub(super) commands: mpsc::Sender<Box<AgentCommand>>,
}

pub(super) struct HostState {
    pub(super) record: HostRecord,
    pub(super) session: Option<LiveSession>,
}

impl HostState {
    /// Selects without copying the host: selectors run over the whole fleet.
    pub(super) fn matches(&self, selector: &Selector) -> bool {
        let connected = self.session.is_some();
        selector.matches(|k| selector_value(&self.record, connected, k))
    }

    pub(super) fn picked_by(&self, selection: &Selection) -> bool {
        self.matches(&selection.selector)
            && mf_core::access::in_scope(
                selection.scope.as_ref(),
                &self.record.id,
                &self.record.pinned_labels,
            )
    }

    /// Hands a command to the live session, if any; false if it could not.
    pub(super) fn deliver(&self, command: AgentCommand) -> bool {
        match &self.session {
            Some(session) => session.commands.try_send(Box::new(command)).is_ok(),
            None => false,
        }
    }
}

impl State {
    pub(super) fn enroll(
        &mut self,
        enrollment: NewEnrollment,
    ) -> Result<Result<(), EnrollRefusal>, InventoryError> {
        let record = HostRecord {
            id: enrollment.host_id.clone(),
            enrolled_unix_ms: self.now(),
            cert_serial: enrollment.cert_serial,
            cert_not_after_unix_ms: enrollment.cert_not_after_unix_ms,
            facts: None,
            last_seen_unix_ms: 0,
            last_peer: String::new(),
            last_sequence: 0,
            previous_cert_serial: None,
            revoked_unix_ms: 0,
            pinned_labels: Default::default(),
            clock_skew_ms: 0,
        };
        let previous =
            match self
                .store
                .enroll(&enrollment.token_hash, &record, record.enrolled_unix_ms)?
            {
                Ok(previous) => previous,
                Err(refusal) => return Ok(Err(refusal)),
            };
        let mut record = record;
        let reenrolled = previous.is_some();
        if let Some(old) = previous {
            // The store revoked them in the enrollment's transaction.
            for serial in old.accepted_serials() {
                self.revocations.insert(serial.to_string());
            }
            record.facts = old.facts;
            record.pinned_labels = old.pinned_labels;
            record.last_sequence = old.last_sequence;
        }
        let not_after = record.cert_not_after_unix_ms;
        match self.hosts.get_mut(&record.id) {
            Some(host) => {
                // The old certificate is no longer accepted: end its session.
                if let Some(session) = host.session.take() {
                    session.end.end(EndReason::EnrolledAgain);
                    self.metrics.agents_connected.dec();
                }
                host.record = record;
            }
            None => {
                self.count_os(None, 1);
                self.hosts.insert(
                    record.id.clone(),
                    HostState {
                        record,
                        session: None,
                    },
                );
            }
        }
        if reenrolled {
            // The replaced certificate may have been the earliest.
            self.export_agent_expiry();
        } else if self.earliest_agent_cert.is_none_or(|e| not_after < e) {
            self.set_agent_expiry(Some(not_after));
        }
        let data = serde_json::json!({"host_id": enrollment.host_id, "reenrolled": reenrolled});
        self.emit(super::kinds::HOST_ENROLLED, &enrollment.host_id, data);
        Ok(Ok(()))
    }

    /// The earliest agent certificate expiry, so that an alert fires weeks
    /// before a fleet enrolled together stops connecting together: computed
    /// over every host (at start, after a re-enrollment or a deletion).
    pub(super) fn export_agent_expiry(&mut self) {
        let earliest = self
            .hosts
            .values()
            .map(|h| h.record.cert_not_after_unix_ms)
            .min();
        self.set_agent_expiry(earliest);
    }

    fn set_agent_expiry(&mut self, earliest: Option<i64>) {
        self.earliest_agent_cert = earliest;
        let gauge = &self.metrics.certificate_expiry;
        match earliest {
            Some(at) => gauge
                .with_label_values(&["agents-earliest"])
                .set(at as f64 / 1000.0),
            None => {
                let _ = gauge.remove_label_values(&["agents-earliest"]);
            }
        }
    }

    /// Forgets a decommissioned host: its record, pre-check and job go (one
    /// store transaction, durable with this batch) and its session ends; its
    /// certificate then finds no host. Refused while its job is not over or an
    /// unfinished wave includes it: those still act on the machine.
    pub(super) fn delete_host(&mut self, host_id: &str) -> Result<HostView, InventoryError> {
        let Some(host) = self.hosts.get(host_id) else {
            return Err(InventoryError::UnknownHost(host_id.to_string()));
        };
        let view = self.view(host);
        if let Some(job) = self.jobs.in_progress(host_id) {
            return Err(InventoryError::Conflict(format!(
                "host {host_id} has job {} {} in {}: let it end, or roll it back \
                 (mfctl hosts rollback), before deleting the host",
                job.id,
                job.state.label(),
                job.phase.label()
            )));
        }
        if let Some(wave) = self.wave_of(host_id) {
            return Err(InventoryError::Conflict(format!(
                "host {host_id} is in wave {wave}, which is not over: cancel the wave or let it \
                 finish before deleting the host"
            )));
        }
        self.store.delete_host(host_id)?;
        let serials: Vec<String> = view.record.accepted_serials().map(str::to_string).collect();
        for serial in serials {
            self.revoke(&format!("agent {host_id}"), &serial, "host deleted");
        }
        let Some(host) = self.hosts.remove(host_id) else {
            return Ok(view);
        };
        if let Some(session) = host.session {
            session.end.end(EndReason::HostDeleted);
            self.metrics.agents_connected.dec();
        }
        self.count_os(host.record.facts.as_ref(), -1);
        let precheck = self.prechecks.remove(host_id);
        self.count_precheck(precheck.as_ref(), None);
        let job = self.jobs.remove(host_id);
        self.count_job(job.as_ref(), None);
        self.export_agent_expiry();
        Ok(view)
    }

    /// No longer accepts `serial` (of `subject`, "agent web-01" or
    /// "operator alice"): at the next handshake on either listener, and
    /// after a restart.
    pub(super) fn revoke(&mut self, subject: &str, serial: &str, reason: &str) {
        let record = RevokedRecord {
            serial: serial.to_string(),
            subject: subject.to_string(),
            reason: reason.to_string(),
            revoked_unix_ms: self.now(),
        };
        if let Err(e) = self.store.put_revoked(&record) {
            error!(subject, error = %e, "cannot store a revocation");
        }
        self.revocations.insert(record.serial);
        self.metrics.revoked_certificates.inc();
    }

    /// Takes a certificate issued after the restored backup as the host's;
    /// the ones the records knew were replaced by it, so they go.
    fn adopt_certificate(&mut self, host_id: &str, serial: &str) {
        let Some(host) = self.hosts.get_mut(host_id) else {
            return;
        };
        let replaced: Vec<String> = host.record.accepted_serials().map(str::to_string).collect();
        host.record.cert_serial = serial.to_string();
        host.record.previous_cert_serial = None;
        let record = host.record.clone();
        for old in replaced {
            self.revoke(
                &format!("agent {host_id}"),
                &old,
                "replaced after the backup the coordinator was restored from",
            );
        }
        warn!(
            host_id,
            serial, "took a certificate issued after the restored backup"
        );
        if let Err(e) = self.store.put_host(&record) {
            error!(host_id, error = %e, "cannot store an adopted certificate");
        }
        let note = crate::audit::NewAuditEntry {
            operator: format!("agent {host_id}"),
            role: "-".into(),
            verb: "adopt-certificate".into(),
            arguments: format!("serial={serial}"),
            outcome: "ok: issued after the restored backup".into(),
        };
        if let Err(e) = self.append_audit(note) {
            error!(host_id, error = %e, "cannot audit an adopted certificate");
        }
    }

    /// An operator revokes a host's certificate (a decommissioned or
    /// compromised machine): refused at its next handshake, its session ended
    /// now. The record stays, marked revoked, until the host enrolls again.
    pub(super) fn revoke_host(&mut self, host_id: &str) -> Result<HostView, InventoryError> {
        let now = self.now();
        let Some(host) = self.hosts.get_mut(host_id) else {
            return Err(InventoryError::UnknownHost(host_id.to_string()));
        };
        if host.record.revoked_unix_ms == 0 {
            host.record.revoked_unix_ms = now;
        }
        if let Some(session) = host.session.take() {
            session.end.end(EndReason::HostRevoked);
            self.metrics.agents_connected.dec();
        }
        let record = host.record.clone();
        self.store.put_host(&record)?;
        for serial in record.accepted_serials() {
            self.revoke(
                &format!("agent {host_id}"),
                serial,
                "revoked by an operator",
            );
        }
        self.wave_presence(host_id, Some(now));
        let host = self
            .hosts
            .get(host_id)
            .ok_or_else(|| InventoryError::UnknownHost(host_id.to_string()))?;
        Ok(self.view(host))
    }

    /// A renewal: the agent presented `renewal.presented_serial` and gets
    /// `renewal.issued`; the presented one stays accepted until the new one
    /// opens a session, any other one the host had goes.
    pub(super) fn renew(&mut self, renewal: Renewal) -> Result<(), InventoryError> {
        let host = self
            .hosts
            .get(&renewal.host_id)
            .ok_or_else(|| InventoryError::NotEnrolled(renewal.host_id.clone()))?;
        if host.record.revoked_unix_ms != 0 {
            return Err(InventoryError::Revoked(renewal.host_id));
        }
        if !host
            .record
            .accepted_serials()
            .any(|s| s == renewal.presented_serial)
        {
            return Err(InventoryError::StaleCertificate(renewal.host_id));
        }
        let superseded: Vec<String> = host
            .record
            .accepted_serials()
            .filter(|s| *s != renewal.presented_serial)
            .map(str::to_string)
            .collect();
        for serial in superseded {
            self.revoke(
                &format!("agent {}", renewal.host_id),
                &serial,
                "replaced by a renewal",
            );
        }
        let Some(host) = self.hosts.get_mut(&renewal.host_id) else {
            return Err(InventoryError::NotEnrolled(renewal.host_id));
        };
        host.record.previous_cert_serial = Some(renewal.presented_serial);
        host.record.cert_serial = renewal.issued_serial;
        host.record.cert_not_after_unix_ms = renewal.issued_not_after_unix_ms;
        let record = host.record.clone();
        self.store.put_host(&record)?;
        self.export_agent_expiry();
        Ok(())
    }

    pub(super) fn connect(&mut self, session: NewSession) -> Result<SessionId, InventoryError> {
        let id = self.next_session;
        let now = self.now();
        let host = self
            .hosts
            .get(&session.host_id)
            .ok_or_else(|| InventoryError::NotEnrolled(session.host_id.clone()))?;
        if host.record.revoked_unix_ms != 0 {
            return Err(InventoryError::Revoked(session.host_id));
        }
        if !host
            .record
            .accepted_serials()
            .any(|s| s == session.cert_serial)
        {
            // After a restore, a certificate the CA issued since the backup
            // (a renewal, a re-enrollment) is one the records lost, not a
            // stale one: taken as the host's. Older unknown ones stay refused.
            if self
                .restored_from_unix_ms
                .is_none_or(|backup| session.cert_issued_unix_ms < backup)
            {
                return Err(InventoryError::StaleCertificate(session.host_id));
            }
            self.adopt_certificate(&session.host_id, &session.cert_serial);
        }
        let Some(host) = self.hosts.get(&session.host_id) else {
            return Err(InventoryError::NotEnrolled(session.host_id));
        };
        // The renewed certificate is in use: the one it replaced goes.
        if session.cert_serial == host.record.cert_serial
            && let Some(previous) = host.record.previous_cert_serial.clone()
        {
            self.revoke(
                &format!("agent {}", session.host_id),
                &previous,
                "replaced by a renewal",
            );
            if let Some(host) = self.hosts.get_mut(&session.host_id) {
                host.record.previous_cert_serial = None;
            }
        }
        let Some(host) = self.hosts.get_mut(&session.host_id) else {
            return Err(InventoryError::NotEnrolled(session.host_id));
        };
        self.next_session += 1;
        match host.session.replace(LiveSession {
            id,
            end: session.end,
            commands: session.commands,
        }) {
            Some(old) => old.end.end(EndReason::Replaced),
            None => self.metrics.agents_connected.inc(),
        }
        host.record.last_peer = session.peer;
        host.record.last_seen_unix_ms = now;
        if let Some(skew) = session.clock_skew_ms {
            host.record.clock_skew_ms = skew;
        }
        // Sequences only grow, also when our data is older than the agent's journal.
        let known_sequence = host.record.last_sequence;
        host.record.last_sequence = host.record.last_sequence.max(session.last_sequence);
        self.wave_presence(&session.host_id, None);
        self.update_facts(&session.host_id, id, session.facts);
        // A pre-check recorded while the agent was away, and not yet accepted by it.
        let pending = self
            .prechecks
            .undelivered(&session.host_id, session.last_sequence, now)
            .map(|p| prechecks::precheck_command(&session.host_id, p));
        if let (Some(command), Some(host)) = (pending, self.hosts.get(&session.host_id)) {
            host.deliver(command);
        }
        // A journal older than what the agent acknowledged: its disk was
        // reverted (the rollback's merge rewinds /var). Judge it before
        // sending anything again.
        let os_now = self
            .hosts
            .get(&session.host_id)
            .and_then(|h| h.record.facts.as_ref())
            .and_then(|f| f.os.as_ref())
            .map(|o| format!("{} {}", o.id, o.version))
            .unwrap_or_default();
        self.journal_rewound(&session.host_id, session.last_sequence, os_now);
        // A journal ahead of every command we remember sending: our records
        // are older than the host (a restored backup). Nothing is sent again
        // from them.
        if session.last_sequence > known_sequence {
            warn!(
                host_id = %session.host_id,
                accepted = session.last_sequence,
                known = known_sequence,
                "the host accepted commands after the last one in this coordinator's records"
            );
            self.journal_ahead(&session.host_id, session.last_sequence, known_sequence);
        }
        // The running job's command, if the agent has not accepted it yet.
        let job_command = self
            .jobs
            .undelivered(&session.host_id, session.last_sequence);
        if let (Some(command), Some(host)) = (job_command, self.hosts.get(&session.host_id)) {
            host.deliver(command);
        }
        // Only then the outcome the agent journaled last: it may move a job on,
        // and what that sends goes out once, after the flush.
        if let Some(update) = session.last_update {
            self.apply_update(&session.host_id, update);
        }
        Ok(id)
    }

    pub(super) fn live(&mut self, host_id: &str, session: SessionId) -> Option<&mut HostState> {
        self.hosts
            .get_mut(host_id)
            .filter(|h| h.session.as_ref().is_some_and(|s| s.id == session))
    }

    pub(super) fn update_facts(&mut self, host_id: &str, session: SessionId, facts: Facts) {
        let now = self.now();
        let Some(host) = self.live(host_id, session) else {
            return;
        };
        let old = host.record.facts.replace(facts);
        host.record.last_seen_unix_ms = now;
        let record = host.record.clone();
        self.count_os(old.as_ref(), -1);
        self.count_os(record.facts.as_ref(), 1);
        // Not flushed: the agent sends its facts again on every new session.
        if let Err(e) = self.store.put_host(&record) {
            error!(host_id, error = %e, "cannot store facts");
        }
    }

    pub(super) fn disconnect(&mut self, host_id: &str, session: SessionId) {
        let now = self.now();
        let Some(host) = self.live(host_id, session) else {
            return;
        };
        host.session = None;
        host.record.last_seen_unix_ms = now;
        let record = host.record.clone();
        self.metrics.agents_connected.dec();
        self.wave_presence(host_id, Some(record.last_seen_unix_ms));
        if let Err(e) = self.store.put_host(&record) {
            error!(host_id, error = %e, "cannot store last-seen time");
        }
    }

    pub(super) fn count_os(&self, facts: Option<&Facts>, delta: i64) {
        let os = facts.and_then(|f| f.os.as_ref());
        let (id, version) = os.map_or(("unknown", "unknown"), |o| {
            (o.id.as_str(), o.version.as_str())
        });
        self.metrics
            .hosts
            .with_label_values(&[id, version])
            .add(delta);
    }
}
