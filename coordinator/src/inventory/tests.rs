use super::*;
use mf_core::command::CommandPhase;
use mf_core::job::OnFailure;
use mf_core::path::{Target, Tool};
use mf_core::precheck::Readiness;
use mf_core::selector::Selector;
use std::collections::HashMap;

pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        Self { _dir: dir, path }
    }

    /// The data directory as a crash would leave it now (sled's own
    /// background flush is off in these tests: only what the inventory
    /// flushed is there), for a coordinator started again on it.
    pub(super) fn crash_image(&self) -> Self {
        let image = crate::store::crash_image(&self.path);
        let path = image.path().to_path_buf();
        Self { _dir: image, path }
    }

    pub(super) fn start(&self) -> (Inventory, tokio::task::JoinHandle<()>, Metrics) {
        self.start_with(Settings::default())
    }

    pub(super) fn start_with(
        &self,
        settings: Settings,
    ) -> (Inventory, tokio::task::JoinHandle<()>, Metrics) {
        let metrics = Metrics::new().expect("metrics");
        let store = Store::open_with(&self.path, false).expect("store");
        let (inventory, task) =
            Inventory::start(store, metrics.clone(), settings).expect("inventory");
        (inventory, task, metrics)
    }
}

pub(super) fn facts(os: &str, version: &str, app: &str) -> Facts {
    Facts {
        os: Some(mf_core::facts::OsInfo {
            id: os.into(),
            name: os.into(),
            version: version.into(),
        }),
        labels: [("app".to_string(), app.to_string())].into(),
        ..Facts::default()
    }
}

pub(super) async fn enroll(inventory: &Inventory, host: &str, serial: &str) {
    enroll_until(inventory, host, serial, i64::MAX).await;
}

/// Enrolls `host` with a certificate valid until `not_after` (unix ms).
pub(super) async fn enroll_until(inventory: &Inventory, host: &str, serial: &str, not_after: i64) {
    let hash = [7u8; 32];
    inventory
        .create_token(
            hash,
            NewToken {
                host_id: Some(host.into()),
                ttl: std::time::Duration::from_secs(3600),
                uses: 1,
            },
        )
        .await
        .expect("token");
    inventory
        .enroll(NewEnrollment {
            token_hash: hash,
            host_id: host.into(),
            cert_serial: serial.into(),
            cert_not_after_unix_ms: not_after,
        })
        .await
        .expect("inventory")
        .expect("enrolled");
}

/// The host's job, which the test knows is there.
pub(super) async fn job_of(inventory: &Inventory, host: &str) -> mf_core::job::Job {
    inventory
        .get(host.into())
        .await
        .expect("get")
        .expect("host")
        .job
        .expect("job")
}

fn session(host: &str, serial: &str, f: Facts) -> (NewSession, SessionEnd) {
    let (session, replaced, _commands) = session_with_commands(host, serial, f, 0);
    (session, replaced)
}

pub(super) fn session_with_commands(
    host: &str,
    serial: &str,
    f: Facts,
    last_sequence: u64,
) -> (NewSession, SessionEnd, mpsc::Receiver<Box<AgentCommand>>) {
    let replaced = SessionEnd::default();
    let (commands, rx) = mpsc::channel(16);
    (
        NewSession {
            host_id: host.into(),
            cert_serial: serial.into(),
            cert_issued_unix_ms: 0,
            peer: "127.0.0.1:1".into(),
            facts: f,
            end: replaced.clone(),
            last_sequence,
            last_update: None,
            clock_skew_ms: Some(0),
            commands,
        },
        replaced,
        rx,
    )
}

/// After a restore, a certificate issued since the backup (a renewal the
/// records lost) is the host's; one issued before it and unknown is stale.
#[tokio::test]
async fn a_restored_store_takes_certificates_issued_after_its_backup() {
    let fixture = Fixture::new();
    let backup_at = 1_800_000_000_000;
    {
        let (inventory, task, _metrics) = fixture.start();
        enroll(&inventory, "web-1", "aa").await;
        drop(inventory);
        task.await.expect("stopped");
    }
    Store::open(&fixture.path)
        .and_then(|s| s.set_restored_from(backup_at))
        .expect("marked");
    let settings = Settings::default();
    let revocations = settings.revocations.clone();
    let (inventory, _task, _metrics) = fixture.start_with(settings);

    let (mut older, _) = session("web-1", "bb", Facts::default());
    older.cert_issued_unix_ms = backup_at - 1;
    assert!(matches!(
        inventory.connect(older).await,
        Err(InventoryError::StaleCertificate(_))
    ));
    let (mut renewed, _) = session("web-1", "cc", Facts::default());
    renewed.cert_issued_unix_ms = backup_at + 1;
    inventory
        .connect(renewed)
        .await
        .expect("taken as the host's");
    assert!(
        revocations.contains("aa"),
        "the certificate it replaced goes"
    );
    let host = inventory
        .get("web-1".into())
        .await
        .expect("get")
        .expect("host");
    assert_eq!(host.record.cert_serial, "cc");
    let audit = inventory.audit_entries().await.expect("audit");
    assert!(
        audit.iter().any(|e| e.verb == "adopt-certificate"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn only_enrolled_hosts_with_their_current_certificate_connect() {
    let fixture = Fixture::new();
    let (inventory, _task, metrics) = fixture.start();
    let (unknown, _) = session("ghost", "01", Facts::default());
    assert!(matches!(
        inventory.connect(unknown).await,
        Err(InventoryError::NotEnrolled(_))
    ));

    enroll(&inventory, "web-1", "aa").await;
    let (stale, _) = session("web-1", "bb", Facts::default());
    assert!(matches!(
        inventory.connect(stale).await,
        Err(InventoryError::StaleCertificate(_))
    ));
    let (good, _) = session("web-1", "aa", facts("centos", "7.9", "billing"));
    inventory.connect(good).await.expect("connects");
    assert_eq!(metrics.agents_connected.get(), 1);
    assert_eq!(metrics.hosts.with_label_values(&["centos", "7.9"]).get(), 1);
    assert_eq!(
        metrics
            .hosts
            .with_label_values(&["unknown", "unknown"])
            .get(),
        0
    );
}

#[tokio::test]
async fn a_newer_session_replaces_the_older_and_stale_messages_are_ignored() {
    let fixture = Fixture::new();
    let (inventory, _task, metrics) = fixture.start();
    enroll(&inventory, "web-1", "aa").await;
    let (first, first_replaced) = session("web-1", "aa", facts("centos", "7.9", "a"));
    let first_id = inventory.connect(first).await.expect("first");
    let (second, second_replaced) = session("web-1", "aa", facts("centos", "7.9", "b"));
    let second_id = inventory.connect(second).await.expect("second");
    assert_eq!(first_replaced.reason(), Some(EndReason::Replaced));
    assert!(!second_replaced.is_ended());
    assert_eq!(metrics.agents_connected.get(), 1);

    // The old session's late facts and its disconnect change nothing.
    inventory
        .facts("web-1".into(), first_id, facts("rhel", "7.9", "stale"))
        .await;
    inventory.disconnect("web-1".into(), first_id).await;
    let view = inventory
        .get("web-1".into())
        .await
        .expect("get")
        .expect("host");
    assert!(view.connected);
    assert_eq!(view.record.facts.expect("facts").labels["app"], "b");

    inventory.disconnect("web-1".into(), second_id).await;
    let view = inventory
        .get("web-1".into())
        .await
        .expect("get")
        .expect("host");
    assert!(!view.connected);
    assert_eq!(metrics.agents_connected.get(), 0);
}

#[tokio::test]
async fn selectors_filter_on_facts_and_labels() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    for (host, serial, f) in [
        ("a", "01", facts("centos", "7.9", "billing")),
        ("b", "02", facts("rhel", "8.10", "billing")),
        ("c", "03", facts("rhel", "7.9", "payroll")),
    ] {
        enroll(&inventory, host, serial).await;
        let (s, _) = session(host, serial, f);
        inventory.connect(s).await.expect("connect");
    }
    let ids = |views: Vec<HostView>| views.into_iter().map(|v| v.record.id).collect::<Vec<_>>();
    let select = |text: &str| Selector::parse(text).expect("selector");
    assert_eq!(
        ids(inventory.list(select("app=billing")).await.expect("list")),
        ["a", "b"]
    );
    assert_eq!(
        ids(inventory
            .list(select("os=rhel,version=7.9"))
            .await
            .expect("list")),
        ["c"]
    );
    assert_eq!(
        ids(inventory
            .list(select("os notin (rhel),connected=true"))
            .await
            .expect("list")),
        ["a"]
    );
    assert_eq!(
        ids(inventory
            .list(select("connected=false"))
            .await
            .expect("list")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn enrolled_hosts_and_their_facts_survive_a_restart() {
    let fixture = Fixture::new();
    {
        let (inventory, task, _) = fixture.start();
        enroll(&inventory, "db-1", "0a").await;
        let (s, _) = session("db-1", "0a", facts("ol", "7.9", "erp"));
        let id = inventory.connect(s).await.expect("connect");
        inventory.disconnect("db-1".into(), id).await;
        drop(inventory);
        task.await
            .expect("inventory task ends when its handles are gone");
    }
    let (inventory, _task, metrics) = fixture.start();
    let view = inventory
        .get("db-1".into())
        .await
        .expect("get")
        .expect("host survived");
    assert!(!view.connected);
    assert_eq!(view.record.facts.expect("facts").os.expect("os").id, "ol");
    assert!(view.record.last_seen_unix_ms > 0);
    assert_eq!(metrics.hosts.with_label_values(&["ol", "7.9"]).get(), 1);
}

pub(super) fn update(
    command: &AgentCommand,
    state: UpdateState,
    findings: Vec<mf_core::finding::Finding>,
) -> CommandUpdate {
    CommandUpdate {
        command_id: command.id.clone(),
        sequence: command.sequence,
        state,
        detail: format!("{state:?}"),
        findings,
        finished_unix_ms: 0,
    }
}

fn blocker() -> mf_core::finding::Finding {
    mf_core::finding::Finding {
        source: mf_core::finding::Source::Leapp,
        key: "d35f".into(),
        severity: mf_core::finding::Severity::High,
        blocking: true,
        title: "Missing required answers in the answer file".into(),
        summary: String::new(),
        remediations: Vec::new(),
    }
}

pub(super) async fn recv(rx: &mut mpsc::Receiver<Box<AgentCommand>>) -> AgentCommand {
    *tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("a command in time")
        .expect("a command")
}

#[tokio::test]
async fn a_precheck_is_planned_sent_and_its_outcome_recorded() {
    let fixture = Fixture::new();
    let (inventory, _task, metrics) = fixture.start();
    for (host, serial) in [("c7", "01"), ("r7", "02"), ("r8", "03"), ("r76", "04")] {
        enroll(&inventory, host, serial).await;
    }
    let (s1, _, mut c7) = session_with_commands("c7", "01", facts("centos", "7.9", "a"), 0);
    inventory.connect(s1).await.expect("c7");
    let (s2, _, mut r7) = session_with_commands("r7", "02", facts("rhel", "7.9", "a"), 0);
    inventory.connect(s2).await.expect("r7");
    let (s3, _, _r8) = session_with_commands("r8", "03", facts("rhel", "8.10", "a"), 0);
    inventory.connect(s3).await.expect("r8");
    let (s4, _, _r76) = session_with_commands("r76", "04", facts("rhel", "7.6", "a"), 0);
    inventory.connect(s4).await.expect("r76");

    let summary = inventory
        .precheck(Selector::default(), "rhel-8.10".parse().expect("target"))
        .await
        .expect("precheck");
    assert_eq!(summary.dispatched, 2);
    let reasons: Vec<(&str, &str)> = summary
        .refused
        .iter()
        .map(|(h, r)| (h.as_str(), r.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(h, r)| *h == "r8" && r.contains("already runs RHEL 8.10"))
    );
    assert!(
        reasons
            .iter()
            .any(|(h, r)| *h == "r76" && r.contains("updated to 7.9"))
    );

    // The next step of each host, with a fresh sequence.
    let convert = recv(&mut c7).await;
    let step = |tool, major, minor| {
        CommandPhase::Precheck(mf_core::path::Step {
            tool,
            to: Target { major, minor },
        })
    };
    assert_eq!(
        (&convert.phase, convert.sequence),
        (&step(Tool::Convert2rhel, 7, 9), 1)
    );
    let upgrade = recv(&mut r7).await;
    assert_eq!(upgrade.phase, step(Tool::Leapp, 8, 10));

    inventory
        .command_update("c7".into(), update(&convert, UpdateState::Started, vec![]))
        .await;
    inventory
        .command_update(
            "c7".into(),
            update(&convert, UpdateState::Succeeded, vec![]),
        )
        .await;
    inventory
        .command_update(
            "r7".into(),
            update(&upgrade, UpdateState::Succeeded, vec![blocker()]),
        )
        .await;
    // An update about another host's command changes nothing.
    inventory
        .command_update("c7".into(), update(&upgrade, UpdateState::Failed, vec![]))
        .await;

    let report = inventory
        .readiness(Selector::default())
        .await
        .expect("report");
    let readiness: Vec<(&str, Option<Readiness>)> = report
        .hosts
        .iter()
        .map(|h| {
            (
                h.id.as_str(),
                h.precheck.as_ref().map(PrecheckRecord::readiness),
            )
        })
        .collect();
    assert_eq!(
        readiness,
        [
            ("c7", Some(Readiness::Ready)),
            ("r7", Some(Readiness::Blocked)),
            ("r76", None),
            ("r8", None)
        ]
    );
    assert_eq!(report.findings.len(), 1);
    assert_eq!(
        (
            report.findings[0].key.as_str(),
            report.findings[0].host_count
        ),
        ("d35f", 1)
    );
    // The readiness gauge is exported whole at each tick.
    inventory.tick().await.expect("tick");
    assert_eq!(
        metrics
            .hosts_by_readiness
            .with_label_values(&["blocked"])
            .get(),
        1
    );
    assert_eq!(
        metrics
            .finding_hosts
            .with_label_values(&[
                "leapp",
                "d35f",
                "Missing required answers in the answer file",
                "true",
            ])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_precheck_for_a_disconnected_host_is_delivered_when_it_connects() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    enroll(&inventory, "away", "0a").await;
    let (s, _, _rx) = session_with_commands("away", "0a", facts("rhel", "7.9", "a"), 0);
    let id = inventory.connect(s).await.expect("connect");
    inventory.disconnect("away".into(), id).await;

    let summary = inventory
        .precheck(Selector::default(), "rhel-8.10".parse().expect("target"))
        .await
        .expect("ok");
    assert_eq!((summary.dispatched, summary.queued), (0, 1));

    // Back, having accepted nothing: it gets the pre-check.
    let (s, _, mut rx) = session_with_commands("away", "0a", facts("rhel", "7.9", "a"), 0);
    inventory.connect(s).await.expect("reconnect");
    let command = recv(&mut rx).await;
    // Back again, having accepted it: it is not sent twice.
    let (s, _, mut rx) =
        session_with_commands("away", "0a", facts("rhel", "7.9", "a"), command.sequence);
    inventory.connect(s).await.expect("reconnect");
    // A later request is handled after the batch that connected it, and
    // after whatever that batch sent: the channel holds all it will.
    inventory.get("away".into()).await.expect("get");
    assert!(
        matches!(
            rx.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty)
        ),
        "the accepted command was sent again"
    );
}

#[tokio::test]
async fn an_outcome_missed_while_away_arrives_with_the_hello_and_survives_a_restart() {
    let fixture = Fixture::new();
    {
        let (inventory, task, _) = fixture.start();
        enroll(&inventory, "h", "0b").await;
        let (s, _, mut rx) = session_with_commands("h", "0b", facts("rhel", "7.9", "a"), 0);
        inventory.connect(s).await.expect("connect");
        inventory
            .precheck(Selector::default(), "rhel-8.10".parse().expect("target"))
            .await
            .expect("ok");
        let command = recv(&mut rx).await;
        let (mut s, _, _rx) =
            session_with_commands("h", "0b", facts("rhel", "7.9", "a"), command.sequence);
        s.last_update = Some(update(&command, UpdateState::Succeeded, vec![blocker()]));
        inventory.connect(s).await.expect("reconnect");
        drop(inventory);
        task.await.expect("inventory ends");
    }
    let (inventory, _task, _) = fixture.start();
    let view = inventory.get("h".into()).await.expect("get").expect("host");
    let precheck = view.precheck.expect("recorded");
    assert_eq!(precheck.readiness(), Readiness::Blocked);
    assert_eq!(view.record.last_sequence, precheck.sequence);
}

pub(super) fn ok(command: &AgentCommand) -> CommandUpdate {
    update(command, UpdateState::Succeeded, vec![])
}

#[tokio::test]
async fn a_job_walks_every_phase_and_resumes_after_a_restart() {
    let fixture = Fixture::new();
    let job_id;
    let reboot;
    let crashed;
    {
        let (inventory, _task, _) = fixture.start();
        enroll(&inventory, "r7", "01").await;
        let (s, _, mut rx) = session_with_commands("r7", "01", facts("rhel", "7.9", "a"), 0);
        inventory.connect(s).await.expect("connect");
        let job = inventory
            .migrate(NewJob {
                host_id: "r7".into(),
                target: "rhel-8.10".parse().expect("target"),
                on_failure: OnFailure::Rollback,
                requested_by: "test".into(),
            })
            .await
            .expect("migrate");
        job_id = job.id.clone();
        assert_eq!(job.steps.len(), 1);
        let conflict = inventory
            .migrate(NewJob {
                host_id: "r7".into(),
                target: "rhel-8.10".parse().expect("target"),
                on_failure: OnFailure::Rollback,
                requested_by: "test".into(),
            })
            .await;
        assert!(
            matches!(conflict, Err(InventoryError::Conflict(_))),
            "{conflict:?}"
        );

        let mut phases = Vec::new();
        for _ in 0..3 {
            let command = recv(&mut rx).await;
            phases.push(command.phase.clone());
            inventory.command_update("r7".into(), ok(&command)).await;
        }
        reboot = recv(&mut rx).await;
        assert_eq!(reboot.phase, CommandPhase::Reboot);
        assert!(
            matches!(phases[1], CommandPhase::Snapshot { ref job_id } if job_id.starts_with("job-"))
        );
        // The coordinator dies here, with the reboot sent and not yet answered.
        crashed = fixture.crash_image();
    }
    let (inventory, _task, metrics) = crashed.start();
    let view = inventory
        .get("r7".into())
        .await
        .expect("get")
        .expect("host");
    let job = view.job.expect("the job survived");
    assert_eq!(
        (job.id.as_str(), job.phase, job.state),
        (
            job_id.as_str(),
            mf_core::job::JobPhase::Reboot,
            mf_core::job::JobState::Running
        )
    );
    assert_eq!(metrics.jobs.with_label_values(&["running"]).get(), 1);

    // The agent comes back from its reboot: the hello carries the outcome.
    let (mut s, _, mut rx) =
        session_with_commands("r7", "01", facts("rhel", "8.10", "a"), reboot.sequence);
    s.last_update = Some(ok(&reboot));
    inventory.connect(s).await.expect("reconnect");
    let verify = recv(&mut rx).await;
    assert!(matches!(verify.phase, CommandPhase::Verify(_)));
    assert!(verify.sequence > reboot.sequence);
    inventory.command_update("r7".into(), ok(&verify)).await;
    let commit = recv(&mut rx).await;
    assert_eq!(commit.phase, CommandPhase::Commit);
    inventory.command_update("r7".into(), ok(&commit)).await;
    let job = inventory
        .get("r7".into())
        .await
        .expect("get")
        .expect("host")
        .job
        .expect("job");
    assert_eq!(job.state, mf_core::job::JobState::Succeeded);
    assert!(
        job.timeline
            .iter()
            .any(|t| t.text.contains("reboot succeeded")),
        "{:#?}",
        job.timeline
    );
    assert_eq!(metrics.jobs.with_label_values(&["succeeded"]).get(), 1);
}

#[tokio::test]
async fn a_held_job_takes_an_operators_rollback_and_impossible_jobs_are_refused() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    enroll(&inventory, "h", "01").await;
    let (s, _, mut rx) = session_with_commands("h", "01", facts("rhel", "7.9", "a"), 0);
    inventory.connect(s).await.expect("connect");
    let invalid = inventory
        .migrate(NewJob {
            host_id: "h".into(),
            target: "rhel-7.9".parse().expect("target"),
            on_failure: OnFailure::Hold,
            requested_by: "test".into(),
        })
        .await;
    assert!(
        matches!(invalid, Err(InventoryError::Invalid(ref e)) if e.contains("already runs")),
        "{invalid:?}"
    );
    let missing = inventory
        .migrate(NewJob {
            host_id: "nope".into(),
            target: "rhel-8.10".parse().expect("target"),
            on_failure: OnFailure::Hold,
            requested_by: "test".into(),
        })
        .await;
    assert!(matches!(missing, Err(InventoryError::UnknownHost(_))));

    inventory
        .migrate(NewJob {
            host_id: "h".into(),
            target: "rhel-8.10".parse().expect("target"),
            on_failure: OnFailure::Hold,
            requested_by: "test".into(),
        })
        .await
        .expect("migrate");
    for _ in 0..2 {
        let command = recv(&mut rx).await;
        inventory.command_update("h".into(), ok(&command)).await;
    }
    let execute = recv(&mut rx).await;
    assert!(matches!(execute.phase, CommandPhase::Execute(_)));
    assert!(matches!(
        inventory.job_action("h".into(), JobAction::Rollback).await,
        Err(InventoryError::Conflict(_))
    ));
    inventory
        .command_update("h".into(), update(&execute, UpdateState::Failed, vec![]))
        .await;
    let job = inventory
        .get("h".into())
        .await
        .expect("get")
        .expect("host")
        .job
        .expect("job");
    assert_eq!(job.state, mf_core::job::JobState::Held);
    let job = inventory
        .job_action("h".into(), JobAction::Rollback)
        .await
        .expect("rollback");
    assert_eq!(job.phase, mf_core::job::JobPhase::Rollback);
    assert_eq!(recv(&mut rx).await.phase, CommandPhase::Rollback);
}

/// Answers every command of a job with success until its commit; returns the
/// phases seen.
pub(super) async fn run_job(
    inventory: &Inventory,
    host: &str,
    rx: &mut mpsc::Receiver<Box<AgentCommand>>,
) -> Vec<CommandPhase> {
    let mut phases = Vec::new();
    loop {
        let command = recv(rx).await;
        phases.push(command.phase.clone());
        inventory.command_update(host.into(), ok(&command)).await;
        if command.phase == CommandPhase::Commit {
            return phases;
        }
    }
}

pub(super) type Agents = HashMap<String, mpsc::Receiver<Box<AgentCommand>>>;

/// Enrolls and connects RHEL 7.9 hosts, each (id, app); their command queues.
pub(super) async fn connect_rhel79(inventory: &Inventory, hosts: &[(&str, &str)]) -> Agents {
    let mut agents = HashMap::new();
    for (i, (host, app)) in hosts.iter().enumerate() {
        enroll(inventory, host, &format!("0{i}")).await;
        let (s, _, rx) =
            session_with_commands(host, &format!("0{i}"), facts("rhel", "7.9", app), 0);
        inventory.connect(s).await.expect("connect");
        agents.insert(host.to_string(), rx);
    }
    agents
}

/// Pre-checks every host for RHEL 8.10; `agents` answer that they passed.
pub(super) async fn precheck_passes(inventory: &Inventory, agents: &mut Agents) {
    inventory
        .precheck(Selector::default(), "rhel-8.10".parse().expect("target"))
        .await
        .expect("precheck");
    for (host, rx) in agents.iter_mut() {
        let command = recv(rx).await;
        inventory.command_update(host.clone(), ok(&command)).await;
    }
}

/// Records the wave and starts it.
async fn start_wave(inventory: &Inventory, spec: mf_core::wave::spec::WaveSpec) {
    let name = spec.name.clone();
    inventory
        .create_wave(spec, CreateMode::Record)
        .await
        .expect("created");
    inventory
        .wave_action(name, WaveAction::Start)
        .await
        .expect("started");
}

pub(super) fn wave_spec(name: &str, budgets: &[&str]) -> mf_core::wave::spec::WaveSpec {
    mf_core::wave::spec::SpecInput {
        name: name.into(),
        selector: "os=rhel".into(),
        target: "rhel-8.10".into(),
        batches: "100%".into(),
        budgets: budgets.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
    .check()
    .expect("spec")
}

#[tokio::test]
async fn a_wave_starts_hosts_under_its_budget_and_resumes_exactly_after_a_restart() {
    let fixture = Fixture::new();
    let hosts = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")];
    let (inventory, task, _) = fixture.start();
    let mut agents = connect_rhel79(&inventory, &hosts).await;
    // A blocked host and one that is away are left out, with their reasons.
    enroll(&inventory, "blocked", "10").await;
    let (s, _, mut blocked) = session_with_commands("blocked", "10", facts("rhel", "7.9", "a"), 0);
    inventory.connect(s).await.expect("connect");
    enroll(&inventory, "away", "11").await;
    let (s, _, mut away) = session_with_commands("away", "11", facts("rhel", "7.9", "b"), 0);
    let away_session = inventory.connect(s).await.expect("connect");
    precheck_passes(&inventory, &mut agents).await;
    let command = recv(&mut blocked).await;
    inventory
        .command_update(
            "blocked".into(),
            update(&command, UpdateState::Succeeded, vec![blocker()]),
        )
        .await;
    let command = recv(&mut away).await;
    inventory.command_update("away".into(), ok(&command)).await;
    inventory.disconnect("away".into(), away_session).await;

    let plan = inventory
        .create_wave(wave_spec("w1", &["app=1"]), CreateMode::Record)
        .await
        .expect("created");
    assert_eq!(
        plan.stages,
        [
            vec!["a1".to_string()],
            vec!["a2".into(), "b1".into(), "b2".into()]
        ]
    );
    let excluded: HashMap<&str, &str> = plan
        .excluded
        .iter()
        .map(|(h, r)| (h.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        excluded.get("blocked"),
        Some(&"blocked at pre-check: Missing required answers in the answer file")
    );
    assert_eq!(excluded.get("away"), Some(&"unreachable: not connected"));
    let again = inventory
        .create_wave(wave_spec("w2", &[]), CreateMode::Record)
        .await;
    assert!(
        matches!(again, Err(InventoryError::Conflict(_))),
        "{again:?}"
    );
    // A host of the wave is the wave's to migrate.
    let direct = inventory
        .migrate(NewJob {
            host_id: "a2".into(),
            target: "rhel-8.10".parse().expect("target"),
            on_failure: OnFailure::Rollback,
            requested_by: "test".into(),
        })
        .await;
    assert!(
        matches!(&direct, Err(InventoryError::Conflict(m)) if m.contains("is in wave w1")),
        "{direct:?}"
    );

    // Nothing starts before `start`; then the canary alone.
    let why = inventory
        .wave_why("w1".into(), "a1".into())
        .await
        .expect("why");
    assert!(why.reason.contains("not been started"), "{}", why.reason);
    inventory
        .wave_action("w1".into(), WaveAction::Start)
        .await
        .expect("start");
    let a1 = agents.get_mut("a1").expect("a1");
    let phases = run_job(&inventory, "a1", a1).await;
    assert_eq!(phases.len(), 6, "{phases:?}");
    // Stage 2: one host per application at a time.
    let first_a2 = recv(agents.get_mut("a2").expect("a2")).await;
    let first_b1 = recv(agents.get_mut("b1").expect("b1")).await;
    assert!(matches!(first_a2.phase, CommandPhase::Precheck(_)));
    assert!(matches!(first_b1.phase, CommandPhase::Precheck(_)));
    let why = inventory
        .wave_why("w1".into(), "b2".into())
        .await
        .expect("why");
    assert_eq!(
        why.reason,
        "waiting: the budget app=1 is full for app b, held by b1"
    );

    // The coordinator dies with a2 and b1 in flight.
    let crashed = fixture.crash_image();
    drop((inventory, task));
    let (inventory, task, metrics) = crashed.start();
    let status = inventory.wave_status("w1".into()).await.expect("status");
    assert_eq!(status.state, mf_core::wave::status::WaveState::Running);
    assert_eq!(
        status
            .counts
            .get(&mf_core::wave::status::HostStatus::Running),
        Some(&2)
    );
    assert_eq!(
        status
            .counts
            .get(&mf_core::wave::status::HostStatus::Succeeded),
        Some(&1)
    );
    let why = inventory
        .wave_why("w1".into(), "b2".into())
        .await
        .expect("why");
    assert!(
        why.reason.contains("held by b1"),
        "budgets rebuilt: {}",
        why.reason
    );
    // The agents come back; each gets its pending command again, nobody a new job.
    let mut rxs = HashMap::new();
    for (i, (host, app)) in hosts.iter().enumerate() {
        let (s, _, rx) =
            session_with_commands(host, &format!("0{i}"), facts("rhel", "7.9", app), 0);
        inventory.connect(s).await.expect("reconnect");
        rxs.insert(host.to_string(), rx);
    }
    let a2 = recv(rxs.get_mut("a2").expect("a2")).await;
    assert_eq!(
        (a2.id.as_str(), a2.sequence),
        (first_a2.id.as_str(), first_a2.sequence)
    );
    inventory.command_update("a2".into(), ok(&a2)).await;
    run_job(&inventory, "a2", rxs.get_mut("a2").expect("a2")).await;
    let b1 = recv(rxs.get_mut("b1").expect("b1")).await;
    assert_eq!(b1.id, first_b1.id);
    inventory.command_update("b1".into(), ok(&b1)).await;
    run_job(&inventory, "b1", rxs.get_mut("b1").expect("b1")).await;
    run_job(&inventory, "b2", rxs.get_mut("b2").expect("b2")).await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let status = inventory.wave_status("w1".into()).await.expect("status");
            if status.state == mf_core::wave::status::WaveState::Completed {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the wave completes");
    assert_eq!(
        status
            .counts
            .get(&mf_core::wave::status::HostStatus::Succeeded),
        Some(&4)
    );
    assert!(
        rxs.get_mut("a1").expect("a1").try_recv().is_err(),
        "a1 ran twice"
    );
    assert_eq!(
        metrics
            .wave_hosts
            .with_label_values(&["w1", "succeeded"])
            .get(),
        4
    );
    // A finished wave is over: no action moves it, and it frees its hosts
    // (a new wave takes them, none left out for being in w1).
    let refused = inventory.wave_action("w1".into(), WaveAction::Pause).await;
    assert!(
        matches!(refused, Err(InventoryError::Conflict(_))),
        "{refused:?}"
    );
    let next = inventory
        .create_wave(wave_spec("w2", &[]), CreateMode::DryRun)
        .await
        .expect("planned");
    assert!(
        next.excluded
            .iter()
            .all(|(_, reason)| !reason.contains("w1")),
        "{:?}",
        next.excluded
    );
    let planned: Vec<&String> = next.stages.iter().flatten().collect();
    for host in ["a1", "a2", "b1", "b2"] {
        assert!(planned.iter().any(|h| *h == host), "{host}: {planned:?}");
    }
    // A wave that is over can be deleted, and stays deleted after a restart.
    inventory.delete_wave("w1".into()).await.expect("deleted");
    let crashed_again = crashed.crash_image();
    drop((inventory, task));
    let (inventory, _task, _) = crashed_again.start();
    let gone = inventory.wave_status("w1".into()).await;
    assert!(
        matches!(gone, Err(InventoryError::UnknownWave(_))),
        "{gone:?}"
    );
    assert!(inventory.list_waves().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_held_host_is_retried_from_the_wave_and_a_pending_one_skipped() {
    let fixture = Fixture::new();
    let clock = crate::clock::ManualClock::at(1_793_620_800_000);
    let (inventory, _task, _) = fixture.start_with(Settings {
        reboot_timeout: std::time::Duration::from_secs(4 * 3600),
        clock: std::sync::Arc::new(clock.clone()),
        ..Settings::default()
    });
    let mut agents = connect_rhel79(&inventory, &[("a1", "a"), ("b1", "b"), ("c1", "c")]).await;
    precheck_passes(&inventory, &mut agents).await;
    let spec = mf_core::wave::spec::SpecInput {
        name: "w".into(),
        selector: "os=rhel".into(),
        target: "rhel-8.10".into(),
        batches: "100%".into(),
        max_parallel: 1,
        on_failure: Some(OnFailure::Hold),
        stage_errors: "1".into(),
        total_errors: "1".into(),
        ..Default::default()
    }
    .check()
    .expect("spec");
    start_wave(&inventory, spec).await;
    // The canary's reboot never comes back and it is held: a failure, within
    // the budget. (A failed change is not retried: the agent only rolls it back.)
    let a1 = agents.get_mut("a1").expect("a1");
    for _ in 0..3 {
        let command = recv(a1).await;
        inventory.command_update("a1".into(), ok(&command)).await;
    }
    let reboot = recv(a1).await;
    assert_eq!(reboot.phase, CommandPhase::Reboot);
    clock.advance(std::time::Duration::from_secs(5 * 3600));
    inventory.tick().await.expect("tick");
    let why = inventory
        .wave_why("w".into(), "a1".into())
        .await
        .expect("why");
    assert_eq!(
        why.state,
        mf_core::wave::status::HostStatus::Failed,
        "{}",
        why.reason
    );
    // The operator retries it from the wave: the job sends its reboot again.
    inventory
        .wave_host_action("w".into(), "a1".into(), HostAction::Retry)
        .await
        .expect("retry");
    let again = recv(a1).await;
    assert_eq!(again.phase, CommandPhase::Reboot);
    assert!(again.sequence > reboot.sequence);
    inventory.command_update("a1".into(), ok(&again)).await;
    run_job(&inventory, "a1", a1).await;
    // One host at a time: b1 runs, c1 waits and is skipped.
    let first_b1 = recv(agents.get_mut("b1").expect("b1")).await;
    inventory.command_update("b1".into(), ok(&first_b1)).await;
    let skipped = inventory
        .wave_host_action("w".into(), "c1".into(), HostAction::Skip)
        .await
        .expect("skip");
    assert_eq!(
        skipped
            .counts
            .get(&mf_core::wave::status::HostStatus::Skipped),
        Some(&1)
    );
    let refused = inventory
        .wave_host_action("w".into(), "b1".into(), HostAction::Skip)
        .await;
    assert!(
        matches!(&refused, Err(InventoryError::Conflict(m)) if m.contains("has not started")),
        "{refused:?}"
    );
    run_job(&inventory, "b1", agents.get_mut("b1").expect("b1")).await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let status = inventory.wave_status("w".into()).await.expect("status");
            if status.state == mf_core::wave::status::WaveState::Completed {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the wave completes");
    assert_eq!(
        status
            .counts
            .get(&mf_core::wave::status::HostStatus::Succeeded),
        Some(&2)
    );
    assert!(
        agents.get_mut("c1").expect("c1").try_recv().is_err(),
        "a skipped host got a command"
    );
}

#[tokio::test]
async fn a_dry_run_plans_a_canary_by_selector_and_records_nothing() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    let mut agents = connect_rhel79(&inventory, &[("a1", "a"), ("a2", "a"), ("b1", "b")]).await;
    precheck_passes(&inventory, &mut agents).await;
    let spec = |canary_selector: &str| {
        mf_core::wave::spec::SpecInput {
            name: "w".into(),
            selector: "os=rhel".into(),
            target: "rhel-8.10".into(),
            canary_selector: canary_selector.into(),
            batches: "100%".into(),
            ..Default::default()
        }
        .check()
        .expect("spec")
    };
    let plan = inventory
        .create_wave(spec("app=b"), CreateMode::DryRun)
        .await
        .expect("planned");
    assert_eq!(
        plan.stages,
        [vec!["b1".to_string()], vec!["a1".into(), "a2".into()]]
    );
    assert!(plan.dry_run, "a dry run says it recorded nothing");
    assert!(plan.eta_unix_ms.is_some());
    assert!(inventory.list_waves().await.expect("list").is_empty());
    let none = inventory
        .create_wave(spec("app=zzz"), CreateMode::DryRun)
        .await;
    assert!(
        matches!(&none, Err(InventoryError::Conflict(m)) if m.contains("matches none")),
        "{none:?}"
    );
    // Nothing was taken: the hosts are free for a recorded wave.
    inventory
        .create_wave(spec("app=b"), CreateMode::Record)
        .await
        .expect("recorded");
    assert_eq!(inventory.list_waves().await.expect("list").len(), 1);
    // A host of an unfinished wave is not deleted: the wave still acts on it.
    let refused = inventory.delete_host("b1".into()).await;
    assert!(
        matches!(&refused, Err(InventoryError::Conflict(m)) if m.contains("is in wave w, which is not over")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_second_precheck_never_reaches_a_host_with_one_in_flight() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    enroll(&inventory, "r7", "01").await;
    let (s, _, mut rx) = session_with_commands("r7", "01", facts("rhel", "7.9", "a"), 0);
    inventory.connect(s).await.expect("connect");
    let target: Target = "rhel-8.10".parse().expect("target");
    let first = inventory
        .precheck(Selector::default(), target)
        .await
        .expect("first");
    assert_eq!(first.dispatched, 1);
    let command = recv(&mut rx).await;
    inventory
        .command_update("r7".into(), update(&command, UpdateState::Started, vec![]))
        .await;

    // Run again before the first finished: nothing is sent, and the refusal says why.
    let second = inventory
        .precheck(Selector::default(), target)
        .await
        .expect("second");
    assert_eq!(second.dispatched, 0);
    assert!(
        second
            .refused
            .iter()
            .any(|(h, why)| h == "r7" && why.contains("already in flight")),
        "{:?}",
        second.refused
    );
    assert!(
        rx.try_recv().is_err(),
        "no second pre-check reached the agent"
    );

    // The first one's outcome is the host's readiness.
    inventory.command_update("r7".into(), ok(&command)).await;
    let view = inventory
        .get("r7".into())
        .await
        .expect("get")
        .expect("host");
    let precheck = view.precheck.expect("precheck");
    assert_eq!(precheck.command_id, command.id);
    assert_eq!(precheck.readiness(), Readiness::Ready);

    // Once it is over, a new pre-check goes out.
    let third = inventory
        .precheck(Selector::default(), target)
        .await
        .expect("third");
    assert_eq!(third.dispatched, 1);
    assert!(matches!(
        recv(&mut rx).await.phase,
        CommandPhase::Precheck(_)
    ));
}

/// Host h (RHEL 7.9) enrolled, connected and migrating to 8.10 under the
/// hold policy: the receiver of its agent's commands.
async fn migrating_host(inventory: &Inventory) -> mpsc::Receiver<Box<AgentCommand>> {
    enroll(inventory, "h", "01").await;
    let (s, _, rx) = session_with_commands("h", "01", facts("rhel", "7.9", "a"), 0);
    inventory.connect(s).await.expect("connect");
    inventory
        .migrate(NewJob {
            host_id: "h".into(),
            target: "rhel-8.10".parse().expect("target"),
            on_failure: OnFailure::Hold,
            requested_by: "test".into(),
        })
        .await
        .expect("migrate");
    rx
}

#[tokio::test]
async fn a_retry_the_agent_would_refuse_is_refused_up_front_with_the_command_that_works() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    let mut rx = migrating_host(&inventory).await;
    for _ in 0..4 {
        let command = recv(&mut rx).await;
        inventory.command_update("h".into(), ok(&command)).await;
    }
    let verify = recv(&mut rx).await;
    assert!(matches!(verify.phase, CommandPhase::Verify(_)));
    inventory
        .command_update("h".into(), update(&verify, UpdateState::Failed, vec![]))
        .await;
    let refused = inventory.job_action("h".into(), JobAction::Retry).await;
    match refused {
        Err(InventoryError::Conflict(why)) => {
            assert!(why.contains("verify failed and changed the host"), "{why}");
            assert!(why.contains("mfctl hosts rollback h"), "{why}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(rx.try_recv().is_err(), "nothing was sent to the agent");
    let job = inventory
        .job_action("h".into(), JobAction::Rollback)
        .await
        .expect("the rollback that works");
    assert_eq!(job.phase, mf_core::job::JobPhase::Rollback);
    assert_eq!(recv(&mut rx).await.phase, CommandPhase::Rollback);
}

#[tokio::test]
async fn a_host_is_deleted_only_when_nothing_acts_on_it_and_stays_deleted() {
    let fixture = Fixture::new();
    let (inventory, task, metrics) = fixture.start();
    let mut rx = migrating_host(&inventory).await;
    let precheck = recv(&mut rx).await;
    let refused = inventory.delete_host("h".into()).await;
    assert!(
        matches!(refused, Err(InventoryError::Conflict(ref e)) if e.contains("let it end, or roll it back")),
        "{refused:?}"
    );
    // A pre-check that blocks ends the job: nothing acts on the host any more.
    inventory
        .command_update(
            "h".into(),
            update(&precheck, UpdateState::Succeeded, vec![blocker()]),
        )
        .await;
    let view = inventory.delete_host("h".into()).await.expect("deleted");
    assert_eq!(view.record.id, "h");
    assert!(inventory.get("h".into()).await.expect("get").is_none());
    assert_eq!(metrics.agents_connected.get(), 0);
    assert!(matches!(
        inventory.delete_host("h".into()).await,
        Err(InventoryError::UnknownHost(_))
    ));
    let crashed = fixture.crash_image();
    drop((inventory, task));
    let (inventory, _task, _) = crashed.start();
    assert!(
        inventory.get("h".into()).await.expect("get").is_none(),
        "the deletion was durable"
    );
}

#[tokio::test]
async fn the_earliest_agent_certificate_expiry_follows_enrollments_and_deletions() {
    let fixture = Fixture::new();
    let (inventory, _task, metrics) = fixture.start();
    let earliest = || {
        metrics
            .certificate_expiry
            .with_label_values(&["agents-earliest"])
            .get()
    };
    enroll_until(&inventory, "a", "01", 5_000_000).await;
    enroll_until(&inventory, "b", "02", 3_000_000).await;
    enroll_until(&inventory, "c", "03", 9_000_000).await;
    assert_eq!(earliest(), 3_000.0, "the earliest of the three, in seconds");
    // Re-enrolled: b's old certificate is replaced by a later one.
    enroll_until(&inventory, "b", "04", 7_000_000).await;
    assert_eq!(earliest(), 5_000.0);
    inventory.delete_host("a".into()).await.expect("deleted");
    assert_eq!(earliest(), 7_000.0);
}

#[tokio::test]
async fn a_renewed_certificate_replaces_the_old_one_once_in_use_and_a_revoked_host_is_refused() {
    let fixture = Fixture::new();
    let revocations = crate::revocation::Revocations::default();
    let (inventory, _task, _) = fixture.start_with(Settings {
        revocations: revocations.clone(),
        ..Settings::default()
    });
    let connect = |serial: &'static str| {
        let inventory = inventory.clone();
        async move {
            let (s, _) = session("h", serial, facts("rhel", "7.9", "a"));
            inventory.connect(s).await
        }
    };
    enroll(&inventory, "h", "01").await;
    connect("01").await.expect("the enrolled certificate");
    let renewal = |presented: &str, issued: &str| Renewal {
        host_id: "h".into(),
        presented_serial: presented.into(),
        issued_serial: issued.into(),
        issued_not_after_unix_ms: 1,
    };
    inventory.renew(renewal("01", "02")).await.expect("renewed");
    // Until the new one is used, the old one still opens a session.
    connect("01")
        .await
        .expect("the old one, before the new one is in use");
    assert!(!revocations.contains("01"));
    connect("02").await.expect("the renewed one");
    assert!(
        revocations.contains("01"),
        "revoked once the new one is in use"
    );
    assert!(matches!(
        connect("01").await,
        Err(InventoryError::StaleCertificate(_))
    ));
    // Only a certificate the host holds may renew.
    assert!(matches!(
        inventory.renew(renewal("99", "03")).await,
        Err(InventoryError::StaleCertificate(_))
    ));
    let view = inventory.revoke_host("h".into()).await.expect("revoked");
    assert!(view.record.revoked_unix_ms > 0);
    assert!(!view.connected, "its session ended");
    assert!(revocations.contains("02"));
    assert!(matches!(
        connect("02").await,
        Err(InventoryError::Revoked(_))
    ));
    assert!(matches!(
        inventory.renew(renewal("02", "04")).await,
        Err(InventoryError::Revoked(_))
    ));
    // A second revocation is no error and changes nothing.
    let again = inventory.revoke_host("h".into()).await.expect("again");
    assert_eq!(again.record.revoked_unix_ms, view.record.revoked_unix_ms);
}

/// `wave cancel --rollback`: a host the wave left held after a failed change
/// is rolled back; one that succeeded and one still running are sent
/// nothing more, and the cancelled wave frees its hosts.
#[tokio::test]
async fn cancelling_a_wave_with_rollback_rolls_back_its_held_hosts_only() {
    let fixture = Fixture::new();
    let (inventory, _task, _) = fixture.start();
    let hosts = [("ok1", "a"), ("bad", "a"), ("later", "a")];
    let mut agents = connect_rhel79(&inventory, &hosts).await;
    precheck_passes(&inventory, &mut agents).await;
    let spec = mf_core::wave::spec::SpecInput {
        name: "w".into(),
        selector: "os=rhel".into(),
        target: "rhel-8.10".into(),
        canary: "0".into(),
        batches: "100%".into(),
        max_parallel: 2,
        stage_errors: "100%".into(),
        total_errors: "100%".into(),
        on_failure: Some(OnFailure::Hold),
        ..Default::default()
    }
    .check()
    .expect("spec");
    start_wave(&inventory, spec).await;
    // Two start (max-parallel 2); which two is the scheduler's choice.
    let mut started = Vec::new();
    for (host, rx) in agents.iter_mut() {
        if let Ok(Some(command)) =
            tokio::time::timeout(std::time::Duration::from_millis(500), rx.recv()).await
        {
            started.push((host.clone(), *command));
        }
    }
    assert_eq!(started.len(), 2, "{started:?}");
    let (good, good_first) = started[0].clone();
    let (held, held_first) = started[1].clone();
    let third = hosts
        .iter()
        .map(|(h, _)| h.to_string())
        .find(|h| *h != good && *h != held)
        .expect("a third host");
    // One goes all the way, which lets the third start (left running); the
    // other fails its execute and is held.
    inventory
        .command_update(good.clone(), ok(&good_first))
        .await;
    run_job(&inventory, &good, agents.get_mut(&good).expect("rx")).await;
    let third_first = recv(agents.get_mut(&third).expect("rx")).await;
    assert!(matches!(third_first.phase, CommandPhase::Precheck(_)));
    inventory
        .command_update(held.clone(), ok(&held_first))
        .await;
    let snapshot = recv(agents.get_mut(&held).expect("rx")).await;
    inventory.command_update(held.clone(), ok(&snapshot)).await;
    let execute = recv(agents.get_mut(&held).expect("rx")).await;
    assert!(matches!(execute.phase, CommandPhase::Execute(_)));
    inventory
        .command_update(held.clone(), update(&execute, UpdateState::Failed, vec![]))
        .await;
    let job = job_of(&inventory, &held).await;
    assert_eq!(job.state, mf_core::job::JobState::Held, "{job:?}");

    inventory
        .wave_action("w".into(), WaveAction::Cancel { rollback: true })
        .await
        .expect("cancelled");
    let rollback = recv(agents.get_mut(&held).expect("rx")).await;
    assert_eq!(rollback.phase, CommandPhase::Rollback, "{rollback:?}");
    // A later request is handled after all the cancel sent.
    inventory.get(good.clone()).await.expect("sync");
    for host in [&good, &third] {
        assert!(
            agents.get_mut(host).expect("rx").try_recv().is_err(),
            "{host} was sent something"
        );
    }
    let good_job = job_of(&inventory, &good).await;
    assert_eq!(good_job.state, mf_core::job::JobState::Succeeded);
    // Cancelled, the wave frees its hosts: none is left out for being in it.
    let next = inventory
        .create_wave(wave_spec("w2", &[]), CreateMode::DryRun)
        .await
        .expect("planned");
    assert!(
        next.excluded.iter().all(|(_, why)| !why.contains("wave w")),
        "{:?}",
        next.excluded
    );
}
