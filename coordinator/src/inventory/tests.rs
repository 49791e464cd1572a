use super::*;
use crate::store::TokenRecord;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        Self { _dir: dir, path }
    }

    fn start(&self) -> (Inventory, tokio::task::JoinHandle<()>, Metrics) {
        let metrics = Metrics::new().expect("metrics");
        let store = Store::open(&self.path).expect("store");
        let (inventory, task) = Inventory::start(store, metrics.clone()).expect("inventory");
        (inventory, task, metrics)
    }
}

fn facts(os: &str, version: &str, app: &str) -> Facts {
    Facts {
        os: Some(facts::OsInfo {
            id: os.into(),
            name: os.into(),
            version: version.into(),
        }),
        labels: [("app".to_string(), app.to_string())].into(),
        ..Facts::default()
    }
}

async fn enroll(inventory: &Inventory, host: &str, serial: &str) {
    let hash = [7u8; 32];
    inventory
        .create_token(
            hash,
            TokenRecord {
                host_id: Some(host.into()),
                created_unix_ms: 0,
                expires_unix_ms: i64::MAX,
                uses: 1,
                uses_left: 1,
            },
        )
        .await
        .expect("token");
    inventory
        .enroll(NewEnrollment {
            token_hash: hash,
            host_id: host.into(),
            cert_serial: serial.into(),
            cert_not_after_unix_ms: i64::MAX,
        })
        .await
        .expect("inventory")
        .expect("enrolled");
}

fn session(host: &str, serial: &str, f: Facts) -> (NewSession, CancellationToken) {
    let replaced = CancellationToken::new();
    (
        NewSession {
            host_id: host.into(),
            cert_serial: serial.into(),
            peer: "127.0.0.1:1".into(),
            facts: f,
            replaced: replaced.clone(),
        },
        replaced,
    )
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
    assert!(first_replaced.is_cancelled());
    assert!(!second_replaced.is_cancelled());
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
