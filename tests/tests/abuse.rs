//! The agent listener under abuse, over real processes on loopback (every
//! flood bounded in count and time): connections that never speak HTTP/2 or
//! never enroll are closed, a flood of idle connections and bad enrollments
//! leaves enrolled agents connected and operators answered, an agent over
//! its message rate is cut off, and one that stops reading is disconnected
//! and gets what it missed when it comes back.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mf_e2e::{Deployment, HostOs, Peer, wait_for};
use mf_proto::transport;
use mf_proto::v1 as pb;
use mf_proto::v1::admin_service_client::AdminServiceClient;
use mf_proto::v1::agent_service_client::AgentServiceClient;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::Code;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TCP connection to the agent listener from `source` (127/8 is all loopback).
async fn tcp_from(deployment: &Deployment, source: &str) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse()?)?;
    Ok(socket
        .connect(deployment.coordinator.agent_address().parse()?)
        .await?)
}

/// A TLS session with the agent listener, without a client certificate.
async fn tls_from(
    deployment: &Deployment,
    source: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = read(deployment.pki.join("ca.pem"));
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tcp_from(deployment, source).await?;
    Ok(connector
        .connect(rustls::pki_types::ServerName::try_from("127.0.0.1")?, tcp)
        .await?)
}

/// Reads until the peer closes; how long that took.
async fn closed_after(
    stream: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Err(_) => bail!("still open after {within:?}"),
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_never_speak_http2_or_never_enroll_are_closed() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&[
        "--preface-timeout",
        "1s",
        "--unauthenticated-connection-lifetime",
        "3s",
    ])?;
    // TLS, then silence: closed at the preface deadline.
    let mut silent = tls_from(&deployment, "127.0.0.1").await?;
    let took = closed_after(&mut silent, Duration::from_secs(10)).await?;
    assert!(took >= Duration::from_millis(900), "closed early: {took:?}");

    // TLS and HTTP/2 but no certificate and no call: closed at the end of
    // its lifetime, not at the preface deadline.
    let mut idle = tls_from(&deployment, "127.0.0.1").await?;
    idle.write_all(PREFACE).await?;
    let took = closed_after(&mut idle, Duration::from_secs(15)).await?;
    assert!(
        took >= Duration::from_millis(2_500),
        "closed early: {took:?}"
    );

    // An enrolled agent's connection lives on past both.
    let token = deployment.token(&[])?;
    let _agent = deployment.start_agent(&token, "steady", HostOs::Rhel79, None, &[])?;
    wait_for("the agent", Duration::from_secs(20), || {
        Ok(deployment.hosts("connected=true")?.len() == 1)
    })?;
    let hellos = "mf_stream_messages_total{direction=\"in\",kind=\"hello\"}";
    let before = deployment.coordinator.metric(hellos)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        deployment.coordinator.metric(hellos)?,
        before,
        "it reconnected"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_flood_enrolled_agents_stay_connected_and_operators_are_answered() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&[
        "--handshakes-per-source",
        "8",
        "--preface-timeout",
        "2s",
        "--enroll-refusals-per-source",
        "10",
    ])?;
    let token = deployment.token(&["--uses", "4"])?;
    let mut agents = Vec::new();
    for name in ["f1", "f2", "f3"] {
        agents.push(deployment.start_agent(&token, name, HostOs::Rhel79, None, &[])?);
    }
    wait_for("three agents", Duration::from_secs(30), || {
        Ok(deployment.hosts("connected=true")?.len() == 3)
    })?;
    let hellos = "mf_stream_messages_total{direction=\"in\",kind=\"hello\"}";
    let hellos_before = deployment.coordinator.metric(hellos)?;

    // 600 idle TCP connections from one address (more than the listener's
    // 512 handshake slots), 50 TLS sessions that never speak from another,
    // and bad enrollments from a third, for 8 s.
    let flood_ends = Instant::now() + Duration::from_secs(8);
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(tcp_from(&deployment, "127.0.0.5").await?);
    }
    let mut mute = Vec::new();
    for _ in 0..50 {
        mute.push(tls_from(&deployment, "127.0.0.6").await?);
    }
    let ca = read(deployment.pki.join("ca.pem"));
    let mut guessers = Vec::new();
    for worker in 0..4u64 {
        let endpoint = transport::endpoint(&deployment.coordinator.agent_address(), &ca, None)?
            .local_address(Some("127.0.0.7".parse()?));
        guessers.push(tokio::spawn(async move {
            let mut client = AgentServiceClient::new(endpoint.connect().await?);
            let mut attempts = 0u64;
            while Instant::now() < flood_ends {
                let guess = format!("mfbt_{:064x}", worker << 32 | attempts);
                let _ = client
                    .enroll(pb::EnrollRequest {
                        token: guess,
                        host_id: "guess.example.com".into(),
                        csr_der: Vec::new(),
                    })
                    .await;
                attempts += 1;
            }
            anyhow::Ok(attempts)
        }));
    }

    // A new host enrolls and connects meanwhile: the idle connections hold
    // their source's 8 slots, not the listener's 512.
    let joined = Instant::now();
    agents.push(deployment.start_agent(&token, "f4", HostOs::Rhel79, None, &[])?);
    wait_for("the new agent", Duration::from_secs(8), || {
        Ok(deployment.hosts("connected=true")?.len() == 4)
    })?;
    let joined = joined.elapsed();

    // Meanwhile the operator's calls answer promptly, every second.
    let mut admin = AdminServiceClient::new(
        deployment
            .channel(&deployment.coordinator.admin_address(), Peer::Operator)
            .await?,
    );
    let mut slowest = Duration::ZERO;
    while Instant::now() < flood_ends {
        let asked = Instant::now();
        let mut hosts = admin
            .list_hosts(pb::ListHostsRequest::default())
            .await?
            .into_inner();
        let mut count = 0;
        while let Some(host) = hosts.message().await? {
            count += usize::from(host.connected);
        }
        slowest = slowest.max(asked.elapsed());
        assert_eq!(count, 4, "an enrolled agent lost its session");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut attempts = 0;
    for guesser in guessers {
        attempts += guesser.await??;
    }
    drop((idle, mute));
    assert!(
        slowest < Duration::from_secs(1),
        "an operator call took {slowest:?} during the flood"
    );
    assert!(attempts > 100, "the flood was {attempts} attempts");
    // No agent had to reconnect (one hello more: the new one), and the
    // guesses were refused unread.
    assert_eq!(deployment.coordinator.metric(hellos)?, hellos_before + 1.0);
    let limited = deployment
        .coordinator
        .metric("mf_enrollments_total{result=\"rate_limited\"}")?;
    // All but the 10 refusals the source may have a minute (and the few the
    // four workers had in flight when the limit engaged).
    assert!(limited >= attempts as f64 - 14.0, "{limited} of {attempts}");
    println!(
        "{attempts} bad enrollments in 8 s, {limited} refused unread; slowest operator call \
         {slowest:?}; a new agent enrolled and connected in {joined:?}"
    );
    Ok(())
}

/// An enrolled identity's session opened by the test itself: hello, then
/// whatever the test sends.
async fn session_of(
    deployment: &Deployment,
    state: &std::path::Path,
    window: Option<u32>,
    messages: impl tokio_stream::Stream<Item = pb::AgentMessage> + Send + 'static,
) -> Result<tonic::Streaming<pb::CoordinatorMessage>, tonic::Status> {
    let ca = read(deployment.pki.join("ca.pem"));
    let (cert, key) = (
        read(state.join("agent.pem")),
        read(state.join("agent-key.pem")),
    );
    let endpoint = transport::endpoint(
        &deployment.coordinator.agent_address(),
        &ca,
        Some((&cert, &key)),
    )
    .unwrap()
    .initial_stream_window_size(window);
    let channel = endpoint.connect().await.unwrap();
    AgentServiceClient::new(channel)
        .session(messages)
        .await
        .map(tonic::Response::into_inner)
}

fn hello(last_sequence: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            agent_version: "test".into(),
            facts: Some(pb::Facts {
                os: Some(pb::OsInfo {
                    id: "rhel".into(),
                    name: "Red Hat Enterprise Linux".into(),
                    version: "7.9".into(),
                }),
                ..Default::default()
            }),
            last_sequence,
            ..Default::default()
        })),
    }
}

fn heartbeat() -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat::default())),
    }
}

/// Enrolls a host the test will speak for; its state dir.
fn identity(deployment: &Deployment, name: &str) -> Result<std::path::PathBuf> {
    let token = deployment.token(&["--host-id", &format!("{name}.example.com")])?;
    let root = mf_e2e::host_root(
        &deployment.path(&format!("roots/{name}")),
        HostOs::Rhel79,
        name,
        "example.com",
    );
    let state = deployment.path(&format!("state/{name}"));
    let ran = deployment.enroll(&token, &state, &root, &[]);
    if !ran.success {
        bail!("enroll {name}: {}", ran.stderr);
    }
    Ok(state)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_over_its_message_rate_is_cut_off_and_others_are_not() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--agent-messages-per-minute", "30"])?;
    let token = deployment.token(&[])?;
    let _steady = deployment.start_agent(&token, "steady", HostOs::Rhel79, None, &[])?;
    let noisy = identity(&deployment, "noisy")?;

    let flood = tokio_stream::iter(
        std::iter::once(hello(0)).chain(std::iter::repeat_with(heartbeat).take(500)),
    );
    let mut answers = session_of(&deployment, &noisy, None, flood).await?;
    let ended = loop {
        match answers.message().await {
            Ok(Some(_)) => {}
            Ok(None) => bail!("the session ended without a reason"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(
        ended.message().contains("more than 30 messages a minute"),
        "{ended:?}"
    );
    // Reconnecting does not refill its bucket: refused at once.
    let again = session_of(&deployment, &noisy, None, tokio_stream::iter([hello(0)])).await;
    let refused = match again {
        Err(status) => status,
        Ok(mut answers) => answers.message().await.expect_err("refused"),
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        deployment
            .coordinator
            .metric("mf_agent_sessions_closed_total{reason=\"rate_limited\"}")?
            >= 2.0
    );
    // The other agent was never touched.
    wait_for("the steady agent", Duration::from_secs(20), || {
        Ok(deployment
            .hosts("connected=true")?
            .iter()
            .any(|h| h["id"] == "steady.example.com"))
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_stops_reading_is_disconnected_and_gets_its_command_when_back() -> Result<()>
{
    let deployment = Deployment::with_coordinator_flags(&["--agent-stall-timeout", "2s"])?;
    let state = identity(&deployment, "deaf")?;
    // A window of 0: the agent's HTTP/2 layer lets nothing through to it,
    // as an agent stuck in a blocked read would.
    let (beats_tx, beats_rx) = tokio::sync::mpsc::channel(8);
    beats_tx.send(hello(0)).await?;
    let beating = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if beats_tx.send(heartbeat()).await.is_err() {
                break;
            }
        }
    });
    let deaf = session_of(
        &deployment,
        &state,
        Some(0),
        tokio_stream::wrappers::ReceiverStream::new(beats_rx),
    )
    .await?;
    wait_for("the deaf agent's session", Duration::from_secs(10), || {
        Ok(deployment.hosts("connected=true")?.len() == 1)
    })?;
    // A pre-check for it waits behind the welcome it never took.
    let asked = deployment.mfctl(&[
        "precheck",
        "--selector",
        "id=deaf.example.com",
        "--target",
        "rhel-8.10",
    ]);
    assert!(asked.success, "{}", asked.stderr);
    wait_for("the stall to be noticed", Duration::from_secs(15), || {
        Ok(deployment
            .coordinator
            .metric("mf_agent_sessions_closed_total{reason=\"slow_reader\"}")?
            >= 1.0)
    })?;
    wait_for("the session to end", Duration::from_secs(10), || {
        Ok(deployment.hosts("connected=true")?.is_empty())
    })?;
    drop(deaf);
    beating.abort();

    // Back, reading: the pre-check it missed is the first command it gets.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(hello(0)).await?;
    let mut answers = session_of(
        &deployment,
        &state,
        None,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )
    .await?;
    let command = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), answers.message())
            .await??
            .expect("open");
        if let Some(pb::coordinator_message::Body::Command(command)) = message.body {
            break command;
        }
    };
    assert!(
        matches!(command.phase, Some(pb::command::Phase::Precheck(_))),
        "{command:?}"
    );
    drop(tx);
    Ok(())
}
