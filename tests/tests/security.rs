//! Every path into the coordinator is authenticated: each refusal the issue
//! names gets a test against the real coordinator process, and each asserts
//! the specific reason, not just "some error".

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use mf_e2e::{Deployment, HostOs, host_root, run};
use mf_proto::transport;
use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_client::AdminServiceClient;
use mf_proto::v1::agent_service_client::AgentServiceClient;
use tonic::Code;

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Enrolls one agent and returns its state dir.
fn enrolled_agent(deployment: &Deployment, name: &str) -> std::path::PathBuf {
    let token = deployment.token(&[]).unwrap();
    let root = host_root(
        &deployment.path(&format!("root-{name}")),
        HostOs::Rhel8,
        name,
        "example.com",
    );
    let state = deployment.path(&format!("state-{name}"));
    let ran = deployment.enroll(&token, &state, &root, &[]);
    assert!(ran.success, "{}", ran.stderr);
    state
}

fn hello() -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            facts: Some(pb::Facts::default()),
            ..pb::Hello::default()
        })),
    }
}

async fn open_session(
    deployment: &Deployment,
    identity: Option<(&str, &str)>,
) -> Result<tonic::Streaming<pb::CoordinatorMessage>, tonic::Status> {
    open_session_with(deployment, identity, hello()).await
}

async fn open_session_with(
    deployment: &Deployment,
    identity: Option<(&str, &str)>,
    first: pb::AgentMessage,
) -> Result<tonic::Streaming<pb::CoordinatorMessage>, tonic::Status> {
    let ca = read(deployment.pki.join("ca.pem"));
    let channel = transport::endpoint(&deployment.coordinator.agent_address(), &ca, identity)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let outbound = tokio_stream_once(first);
    AgentServiceClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .session(outbound)
        .await
        .map(tonic::Response::into_inner)
}

fn tokio_stream_once(
    message: pb::AgentMessage,
) -> impl tokio_stream::Stream<Item = pb::AgentMessage> {
    tokio_stream::iter(vec![message])
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() -> Result<()> {
    let deployment = Deployment::new()?;
    let other = deployment.path("other-pki");
    assert!(
        run(
            "mfctl",
            &["pki", "init", "--dir", other.to_str().unwrap()],
            &[]
        )
        .success
    );
    let ca = deployment.pki.join("ca.pem");
    let (cert, key) = (other.join("operator.pem"), other.join("operator-key.pem"));
    let ran = deployment.mfctl(&[
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "hosts",
        "list",
    ]);
    assert!(!ran.success);
    // TLS 1.3: the client sees only a transport failure, worded by timing;
    // the coordinator's own count says exactly why.
    assert!(
        ran.stderr.contains("transport error") && ran.stderr.contains("hint:"),
        "{}",
        ran.stderr
    );
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"admin\",reason=\"unknown_ca\"}",
        1.0,
    )?;
    Ok(())
}

#[tokio::test]
async fn no_client_certificate_is_refused_on_both_listeners() -> Result<()> {
    let deployment = Deployment::new()?;
    let ca = read(deployment.pki.join("ca.pem"));

    // Admin: the TLS layer requires a certificate.
    let channel = transport::endpoint(&deployment.coordinator.admin_address(), &ca, None)?
        .connect()
        .await?;
    let status = AdminServiceClient::new(channel)
        .get_host(pb::GetHostRequest {
            host_id: "x".into(),
        })
        .await
        .expect_err("no certificate must be refused");
    // TLS 1.3: depending on timing the client reads the alert or only a closed
    // connection; the coordinator's count below gives the reason either way.
    let text = transport::describe_status(&status);
    assert!(text.contains("transport error"), "{text}");
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"admin\",reason=\"no_certificate\"}",
        1.0,
    )?;

    // Agent: TLS lets it in (to enroll), the session refuses it.
    let status = open_session(&deployment, None)
        .await
        .expect_err("a session needs a certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("a client certificate is required"),
        "{status:?}"
    );
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"agent\",reason=\"no_certificate\"}",
        1.0,
    )?;
    Ok(())
}

#[test]
fn an_agent_certificate_is_refused_on_the_admin_listener() -> Result<()> {
    let deployment = Deployment::new()?;
    let state = enrolled_agent(&deployment, "intruder");
    let (cert, key) = (state.join("agent.pem"), state.join("agent-key.pem"));
    let ran = deployment.mfctl(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "hosts",
        "list",
    ]);
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("PermissionDenied")
            && ran
                .stderr
                .contains("agent intruder.example.com cannot use the admin API"),
        "{}",
        ran.stderr
    );
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"admin\",reason=\"wrong_role\"}",
        1.0,
    )?;
    Ok(())
}

#[tokio::test]
async fn an_operator_certificate_is_refused_on_the_agent_listener() -> Result<()> {
    let deployment = Deployment::new()?;
    let cert = read(deployment.pki.join("operator.pem"));
    let key = read(deployment.pki.join("operator-key.pem"));
    let status = open_session(&deployment, Some((&cert, &key)))
        .await
        .expect_err("an operator cannot pose as an agent");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("operator admin cannot open an agent session"),
        "{status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_enrolled_agent_opens_its_session_and_is_welcomed_by_its_own_id() -> Result<()> {
    // The positive counterpart of the refusals above, through the same client code.
    let deployment = Deployment::new()?;
    let state = enrolled_agent(&deployment, "good");
    let (cert, key) = (
        read(state.join("agent.pem")),
        read(state.join("agent-key.pem")),
    );
    let mut inbound = open_session(&deployment, Some((&cert, &key))).await?;
    let first = inbound.message().await?.expect("a welcome");
    match first.body {
        Some(pb::coordinator_message::Body::Welcome(welcome)) => {
            assert_eq!(welcome.host_id, "good.example.com")
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    Ok(())
}

#[test]
fn expired_used_up_and_unknown_tokens_are_refused() -> Result<()> {
    let deployment = Deployment::new()?;
    let root = host_root(
        &deployment.path("root"),
        HostOs::Centos7,
        "t1",
        "example.com",
    );

    let short = deployment.token(&["--ttl", "1s"])?;
    std::thread::sleep(Duration::from_millis(1500));
    let ran = deployment.enroll(&short, &deployment.path("s1"), &root, &[]);
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("Unauthenticated")
            && ran.stderr.contains("the bootstrap token has expired"),
        "{}",
        ran.stderr
    );

    let once = deployment.token(&["--uses", "1"])?;
    let ran = deployment.enroll(&once, &deployment.path("s2"), &root, &[]);
    assert!(ran.success, "{}", ran.stderr);
    let ran = deployment.enroll(
        &once,
        &deployment.path("s3"),
        &root,
        &["--host-id", "another"],
    );
    assert!(!ran.success);
    assert!(
        ran.stderr.contains("the bootstrap token has no uses left"),
        "{}",
        ran.stderr
    );
    assert!(
        !deployment.path("s3").join("agent.pem").exists(),
        "a refused enrollment wrote an identity"
    );

    let forged = format!("mfbt_{}", "0".repeat(64));
    let ran = deployment.enroll(
        &forged,
        &deployment.path("s4"),
        &root,
        &["--host-id", "third"],
    );
    assert!(
        ran.stderr.contains("unknown bootstrap token"),
        "{}",
        ran.stderr
    );
    let ran = deployment.enroll(
        "garbage",
        &deployment.path("s5"),
        &root,
        &["--host-id", "fourth"],
    );
    assert!(
        ran.stderr.contains("the bootstrap token is malformed"),
        "{}",
        ran.stderr
    );

    // None of the refused hosts entered the inventory.
    let ids: Vec<String> = deployment
        .hosts("")?
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["t1.example.com"]);
    let metric = |result: &str| {
        deployment
            .coordinator
            .metric(&format!("mf_enrollments_total{{result=\"{result}\"}}"))
    };
    assert_eq!(metric("expired_token")?, 1.0);
    assert_eq!(metric("exhausted_token")?, 1.0);
    assert_eq!(metric("unknown_token")?, 2.0);
    assert_eq!(metric("ok")?, 1.0);
    Ok(())
}

#[test]
fn an_enrolled_host_id_is_only_taken_again_with_a_token_for_it() -> Result<()> {
    let deployment = Deployment::new()?;
    let root = host_root(
        &deployment.path("root"),
        HostOs::Rhel7,
        "dup",
        "example.com",
    );
    let first = deployment.enroll(&deployment.token(&[])?, &deployment.path("a"), &root, &[]);
    assert!(first.success, "{}", first.stderr);

    let second = deployment.enroll(&deployment.token(&[])?, &deployment.path("b"), &root, &[]);
    assert!(!second.success);
    assert!(
        second.stderr.contains("AlreadyExists")
            && second
                .stderr
                .contains("host dup.example.com is already enrolled"),
        "{}",
        second.stderr
    );

    let bound = deployment.token(&["--host-id", "other.example.com"])?;
    let wrong = deployment.enroll(&bound, &deployment.path("c"), &root, &[]);
    assert!(
        wrong
            .stderr
            .contains("the bootstrap token was created for host other.example.com"),
        "{}",
        wrong.stderr
    );

    let for_it = deployment.token(&["--host-id", "dup.example.com"])?;
    let again = deployment.enroll(&for_it, &deployment.path("d"), &root, &[]);
    assert!(again.success, "{}", again.stderr);
    Ok(())
}

#[tokio::test]
async fn a_re_enrolled_host_s_old_certificate_is_refused() -> Result<()> {
    let deployment = Deployment::new()?;
    let old = enrolled_agent(&deployment, "moved");
    let for_it = deployment.token(&["--host-id", "moved.example.com"])?;
    let root = deployment.path("root-moved");
    let new = deployment.path("state-moved-again");
    assert!(deployment.enroll(&for_it, &new, &root, &[]).success);

    // The re-enrollment revoked the old certificate: refused at the handshake.
    let (cert, key) = (read(old.join("agent.pem")), read(old.join("agent-key.pem")));
    open_session(&deployment, Some((&cert, &key)))
        .await
        .expect_err("old certificate");
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"agent\",reason=\"revoked_certificate\"}",
        1.0,
    )?;

    let (cert, key) = (read(new.join("agent.pem")), read(new.join("agent-key.pem")));
    assert!(open_session(&deployment, Some((&cert, &key))).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn invalid_and_oversized_reports_are_refused_and_change_nothing() -> Result<()> {
    let deployment = Deployment::new()?;
    let state = enrolled_agent(&deployment, "liar");
    let (cert, key) = (
        read(state.join("agent.pem")),
        read(state.join("agent-key.pem")),
    );
    let hello_with = |facts: pb::Facts| pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            facts: Some(facts),
            ..pb::Hello::default()
        })),
    };

    let invalid = pb::Facts {
        labels: [("bad key".to_string(), "x".to_string())].into(),
        ..pb::Facts::default()
    };
    let status = open_session_with(&deployment, Some((&cert, &key)), hello_with(invalid))
        .await
        .expect_err("invalid facts");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("label bad key=x is not a valid label"),
        "{status:?}"
    );

    let oversized = pb::Facts {
        kernel: "x".repeat(2 * 1024 * 1024),
        ..pb::Facts::default()
    };
    let status = open_session_with(&deployment, Some((&cert, &key)), hello_with(oversized))
        .await
        .expect_err("oversized message");
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(status.message().contains("too large"), "{status:?}");

    let hosts = deployment.hosts("")?;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["connected"], false);
    assert!(
        hosts[0]["facts"].is_null(),
        "a refused report was stored: {:?}",
        hosts[0]
    );
    Ok(())
}

#[tokio::test]
async fn a_csr_asking_to_be_a_ca_gets_a_plain_client_leaf() -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    use x509_parser::prelude::*;

    let deployment = Deployment::new()?;
    let token = deployment.token(&[])?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["coordinator.example.com".to_string()])?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .subject_alt_names
        .push(SanType::URI("mf://operator/root".try_into()?));
    let csr = params.serialize_request(&key)?;

    let ca = read(deployment.pki.join("ca.pem"));
    let channel = transport::endpoint(&deployment.coordinator.agent_address(), &ca, None)?
        .connect()
        .await?;
    let response = AgentServiceClient::new(channel)
        .enroll(pb::EnrollRequest {
            token,
            host_id: "greedy.example.com".into(),
            csr_der: csr.der().to_vec(),
        })
        .await?
        .into_inner();
    let (_, pem) = parse_x509_pem(response.certificate_pem.as_bytes())?;
    let cert = pem.parse_x509()?;
    let constraints = cert
        .basic_constraints()?
        .expect("basic constraints present");
    assert!(!constraints.value.ca, "the issued certificate is a CA");
    let san = cert.subject_alternative_name()?.expect("SAN present");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::URI("mf://agent/greedy.example.com")]
    );
    let eku = cert.extended_key_usage()?.expect("EKU present");
    assert!(eku.value.client_auth && !eku.value.server_auth);
    Ok(())
}

/// Tokens are listed by id (never themselves), revoked, capped by the
/// site's policy, checked before anything is signed, and every enrollment
/// attempt is in the audit with the peer's address.
#[test]
fn tokens_are_listed_revoked_and_capped_and_enrollments_audited() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--token-max-uses", "50"])?;
    let capped = deployment.mfctl(&["token", "create", "--uses", "51"]);
    assert_eq!(capped.code, Some(4), "{}", capped.stderr);
    assert!(
        capped.stderr.contains("at most 50 uses"),
        "{}",
        capped.stderr
    );
    let token = deployment.token(&["--uses", "2"])?;
    let listed = deployment.mfctl(&["token", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert!(
        !listed.to_string().contains(token.trim()),
        "the token itself is never shown"
    );
    assert_eq!(listed[0]["uses_left"], 2);

    let root = mf_e2e::host_root(
        &deployment.path("root-a"),
        mf_e2e::HostOs::Rhel79,
        "tok-a",
        "example.com",
    );
    assert!(
        deployment
            .enroll(&token, &deployment.path("a"), &root, &[])
            .success
    );
    let revoked = deployment.mfctl(&["token", "revoke", &id[..8]]);
    assert!(revoked.success, "{}", revoked.stderr);
    let root = mf_e2e::host_root(
        &deployment.path("root-b"),
        mf_e2e::HostOs::Rhel79,
        "tok-b",
        "example.com",
    );
    let refused = deployment.enroll(&token, &deployment.path("b"), &root, &[]);
    assert!(
        !refused.success && refused.stderr.contains("unknown bootstrap token"),
        "{}",
        refused.stderr
    );
    // Refused before anything was signed: the refusal is counted, and the
    // enrollments are audited with where they came from.
    deployment
        .coordinator
        .expect_metric_at_least("mf_enrollments_total{result=\"unknown_token\"}", 1.0)?;
    let audit = deployment.mfctl(&["audit", "list", "-o", "json"]);
    let audit: serde_json::Value = serde_json::from_str(&audit.stdout)?;
    let enrollments: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verb"] == "enroll")
        .map(|e| {
            (
                e["operator"].as_str().unwrap(),
                e["arguments"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(enrollments.len(), 2, "{audit:#}");
    assert!(
        enrollments[0].0.starts_with("agent at 127.0.0.1:"),
        "{enrollments:?}"
    );
    assert_eq!(enrollments[0].1, "host_id=tok-a.example.com");
    assert_eq!(enrollments[0].2, "ok");
    assert!(
        enrollments[1]
            .2
            .starts_with("refused: unknown bootstrap token")
    );
    Ok(())
}

/// A host whose clock is two days ahead: the coordinator measures the skew
/// from the agent's hello, shows it, counts it, and sends the host no work
/// (the pre-check's error in readiness says why).
#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_clock_is_off_is_shown_counted_and_sent_no_work() -> Result<()> {
    let deployment = Deployment::new()?;
    let state = enrolled_agent(&deployment, "skewed");
    let (cert, key) = (
        read(state.join("agent.pem")),
        read(state.join("agent-key.pem")),
    );
    let two_days_ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        + 2 * 86_400_000;
    let hello = pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            facts: Some(pb::Facts {
                os: Some(pb::OsInfo {
                    id: "rhel".into(),
                    name: "Red Hat Enterprise Linux".into(),
                    version: "8.10".into(),
                }),
                ..pb::Facts::default()
            }),
            agent_time_unix_ms: two_days_ahead,
            ..pb::Hello::default()
        })),
    };
    let ca = read(deployment.pki.join("ca.pem"));
    let channel = transport::endpoint(
        &deployment.coordinator.agent_address(),
        &ca,
        Some((&cert, &key)),
    )?
    .connect()
    .await?;
    let (to_coordinator, outbound) = tokio::sync::mpsc::channel(4);
    to_coordinator.send(hello).await?;
    let mut inbound = AgentServiceClient::new(channel)
        .session(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await?
        .into_inner();
    assert!(inbound.message().await?.is_some(), "welcomed");

    let shown = deployment.mfctl(&["hosts", "show", "skewed.example.com", "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout)?;
    let skew = shown["clock_skew_seconds"].as_f64().unwrap_or_default();
    assert!((172_790.0..172_810.0).contains(&skew), "{shown:#}");
    let text = deployment.mfctl(&["hosts", "show", "skewed.example.com"]);
    assert!(
        text.stdout.contains("2days ahead of the coordinator"),
        "{}",
        text.stdout
    );

    let precheck = deployment.mfctl(&["precheck", "--target", "rhel-9.6", "-o", "json"]);
    let precheck: serde_json::Value = serde_json::from_str(&precheck.stdout)?;
    let reason = precheck["refused"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("its clock is 2days ahead of ours"),
        "{precheck:#}"
    );
    let readiness = deployment.mfctl(&["report", "readiness", "-o", "json"]);
    let readiness: serde_json::Value = serde_json::from_str(&readiness.stdout)?;
    assert_eq!(readiness["hosts"][0]["readiness"], "error", "{readiness:#}");
    assert!(
        readiness["hosts"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("max_clock_skew"),
        "{readiness:#}"
    );
    let migrate = deployment.mfctl(&["migrate", "skewed.example.com", "--target", "rhel-9.6"]);
    assert_eq!(migrate.code, Some(4), "{}", migrate.stderr);
    assert!(
        migrate.stderr.contains("its clock is"),
        "{}",
        migrate.stderr
    );
    mf_e2e::wait_for("the skew counted", Duration::from_secs(15), || {
        Ok(deployment.coordinator.metric("mf_hosts_clock_skewed")? == 1.0)
    })?;
    drop(to_coordinator);
    Ok(())
}

/// Guessing tokens is slow and each guess cheap (threat model 6): past its
/// refusals a source is refused before its token is read, signed for,
/// looked up or audited, even with a good token (which stays unspent), while
/// other sources enroll; past the total, every source waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_flood_is_rate_limited_per_source_and_in_total() -> Result<()> {
    use std::collections::BTreeMap;

    let deployment = Deployment::with_coordinator_flags(&[
        "--enroll-refusals-per-source",
        "5",
        "--enroll-refusals-total",
        "40",
    ])?;
    let good = deployment.token(&["--uses", "1"])?;
    let ca = read(deployment.pki.join("ca.pem"));
    let address = deployment.coordinator.agent_address();
    // Sources told apart by the local address the client binds (127/8 is all loopback).
    let from = |ip: String| {
        let endpoint = transport::endpoint(&address, &ca, None)
            .map(|e| e.local_address(Some(ip.parse().unwrap())));
        async move { anyhow::Ok(AgentServiceClient::new(endpoint?.connect().await?)) }
    };
    let request = |token: &str, host: &str| -> Result<pb::EnrollRequest> {
        let (_, csr) = csr_for(host)?;
        Ok(pb::EnrollRequest {
            token: token.to_string(),
            host_id: host.to_string(),
            csr_der: csr,
        })
    };

    let mut attacker = from("127.0.0.1".into()).await?;
    let mut codes = BTreeMap::new();
    let mut limited = String::new();
    for n in 0..200 {
        let guess = format!("mfbt_{n:064x}");
        let status = attacker
            .enroll(request(&guess, "guess.example.com")?)
            .await
            .expect_err("a guessed token");
        *codes.entry(format!("{:?}", status.code())).or_insert(0) += 1;
        if status.code() == Code::ResourceExhausted {
            limited = status.message().to_string();
        }
    }
    assert_eq!(
        codes,
        BTreeMap::from([
            ("ResourceExhausted".to_string(), 195),
            ("Unauthenticated".to_string(), 5)
        ])
    );
    assert!(
        limited
            .starts_with("too many refused enrollments from 127.0.0.1 (5 a minute): try again in "),
        "{limited}"
    );

    // The good token from the flooding source: refused unread, not spent.
    let status = attacker
        .enroll(request(&good, "good.example.com")?)
        .await
        .expect_err("the source is limited");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let tokens = deployment.mfctl(&["token", "list", "-o", "json"]);
    let tokens: serde_json::Value = serde_json::from_str(&tokens.stdout)?;
    assert_eq!(tokens[0]["uses_left"], 1, "{tokens}");
    // Another source is not slowed by it.
    let mut colleague = from("127.0.0.2".into()).await?;
    let enrolled = colleague
        .enroll(request(&good, "good.example.com")?)
        .await?
        .into_inner();
    assert_eq!(enrolled.host_id, "good.example.com");

    // Seven more sources use up the total (5 + 7 x 5 = 40): then an address
    // never seen before is refused too, with the reason.
    for last in 3..10u8 {
        let ip = format!("127.0.0.{last}");
        let mut client = from(ip.clone()).await?;
        for n in 0..5 {
            let status = client
                .enroll(request(
                    &format!("mfbt_{:064x}", 1000 + n),
                    "g.example.com",
                )?)
                .await
                .expect_err("guessed");
            assert_eq!(status.code(), Code::Unauthenticated, "{ip}: {status:?}");
        }
    }
    let status = from("127.0.0.10".into())
        .await?
        .enroll(request(&good, "late.example.com")?)
        .await
        .expect_err("the total is used up");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("(40 a minute from all sources)"),
        "{status:?}"
    );

    // Counted by reason; the audit holds each refusal that was read and one
    // line per limit that engaged, not one per attempt of the flood.
    let metric = |result: &str| {
        deployment
            .coordinator
            .metric(&format!("mf_enrollments_total{{result=\"{result}\"}}"))
    };
    assert_eq!(metric("unknown_token")?, 40.0);
    assert_eq!(metric("rate_limited")?, 197.0);
    assert_eq!(metric("ok")?, 1.0);
    let audit = deployment.mfctl(&["audit", "list", "-o", "json"]);
    let audit: serde_json::Value = serde_json::from_str(&audit.stdout)?;
    let outcomes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verb"] == "enroll")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    let limits: Vec<&&str> = outcomes
        .iter()
        .filter(|o| o.contains("too many refused enrollments"))
        .collect();
    assert_eq!(outcomes.len(), 40 + 2 + 1, "{outcomes:#?}");
    assert_eq!(limits.len(), 2, "{limits:#?}");
    Ok(())
}

/// A key and a CSR naming `host`.
fn csr_for(host: &str) -> Result<(rcgen::KeyPair, Vec<u8>)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}
