//! Command safety against a real mf-agent process. The coordinator never sends
//! a bad command, so a fake coordinator (a real tonic server with the
//! deployment's own server certificate, requiring the agent's client
//! certificate) takes over the agent's coordinator address and sends crafted
//! ones: for another host, expired, replayed, malformed, while busy, twice.
//! Then the agent is killed with SIGKILL in the middle of a phase.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ring::signature::Ed25519KeyPair;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Result;
use mf_e2e::{Daemon, Deployment, HostOs, agent_binary, host_root, set_scenario};
use mf_proto::v1 as pb;
use mf_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// One agent session as the test sees it.
struct Session {
    hello: pb::Hello,
    to_agent: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
    from_agent: mpsc::Receiver<pb::AgentMessage>,
    /// The coordinator's command key, which the fake holds here.
    signer: Arc<Ed25519KeyPair>,
}

/// A coordinator with the real server certificate (issued by the CA) and,
/// in this test, the real command key too.
struct Fake {
    sessions: mpsc::Sender<Session>,
    signer: Arc<Ed25519KeyPair>,
}

fn signed(mut message: pb::CoordinatorMessage, key: &Ed25519KeyPair) -> pb::CoordinatorMessage {
    if let Some(pb::coordinator_message::Body::Command(c)) = message.body.as_mut() {
        c.signature = key
            .sign(&mf_proto::command_signed_bytes(c))
            .as_ref()
            .to_vec();
    }
    message
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Fake {
    async fn enroll(
        &self,
        _: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        Err(Status::unimplemented("fake coordinator"))
    }

    async fn renew(
        &self,
        _: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        Err(Status::unimplemented("fake coordinator"))
    }

    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(hello)),
            }) => hello,
            other => {
                return Err(Status::invalid_argument(format!(
                    "expected hello, got {other:?}"
                )));
            }
        };
        let (to_agent, rx) = mpsc::channel(16);
        to_agent
            .send(Ok(pb::CoordinatorMessage {
                body: Some(pb::coordinator_message::Body::Welcome(pb::Welcome {
                    host_id: "fake".into(),
                    heartbeat_interval_seconds: 30,
                })),
            }))
            .await
            .unwrap();
        let (forward, from_agent) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if forward.send(message).await.is_err() {
                    break;
                }
            }
        });
        self.sessions
            .send(Session {
                hello,
                to_agent,
                from_agent,
                signer: Arc::clone(&self.signer),
            })
            .await
            .unwrap();
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn precheck(
    id: &str,
    host: &str,
    sequence: u64,
    expires_unix_ms: i64,
    target: &str,
) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        body: Some(pb::coordinator_message::Body::Command(pb::Command {
            command_id: id.into(),
            host_id: host.into(),
            sequence,
            expires_unix_ms,
            // As an older coordinator sent it: the expiry by its clock only.
            valid_for_ms: 0,
            signature: Vec::new(),
            phase: Some(pb::command::Phase::Precheck(pb::Precheck {
                tool: pb::MigrationTool::Leapp.into(),
                target_version: target.into(),
            })),
        })),
    }
}

impl Session {
    /// Sends a command signed with the coordinator's command key.
    async fn send(&self, message: pb::CoordinatorMessage) {
        self.send_as_is(signed(message, &self.signer)).await;
    }

    async fn send_as_is(&self, message: pb::CoordinatorMessage) {
        self.to_agent.send(Ok(message)).await.unwrap();
    }

    /// The next command update, skipping heartbeats and facts.
    async fn update(&mut self) -> pb::CommandUpdate {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.from_agent.recv())
                .await
                .expect("an update in time")
                .expect("the session is open");
            if let Some(pb::agent_message::Body::CommandUpdate(update)) = message.body {
                return update;
            }
        }
    }

    async fn expect(
        &mut self,
        id: &str,
        state: pb::CommandState,
        detail: &str,
    ) -> pb::CommandUpdate {
        let update = self.update().await;
        assert_eq!(update.command_id, id, "{update:?}");
        assert_eq!(update.state, i32::from(state), "{update:?}");
        assert!(
            update.detail.contains(detail),
            "{id}: {:?} lacks {detail:?}",
            update.detail
        );
        update
    }
}

async fn next_session(sessions: &mut mpsc::Receiver<Session>) -> Session {
    tokio::time::timeout(Duration::from_secs(30), sessions.recv())
        .await
        .expect("the agent connects in time")
        .expect("a session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_every_unsafe_command_and_survives_sigkill_mid_phase() -> Result<()> {
    use pb::CommandState::{Interrupted, Refused, Started, Succeeded};

    // Enroll for real, then put the fake coordinator where the agent connects.
    let mut deployment = Deployment::new()?;
    let root = host_root(
        &deployment.path("root"),
        HostOs::Rhel79,
        "guarded",
        "example.com",
    );
    set_scenario(
        &root,
        "[[packages]]\nname = \"leapp\"\nversion = \"0.17.0\"\nrelease = \"1.el7_9\"\narch = \"noarch\"\n\
         [[packages]]\nname = \"leapp-upgrade-el7toel8\"\nversion = \"0.20.0\"\nrelease = \"2.el7_9\"\narch = \"noarch\"\n\
         [durations]\nprecheck_seconds = 2.0\n",
    );
    let state = deployment.path("state");
    let token = deployment.token(&[])?;
    assert!(deployment.enroll(&token, &state, &root, &[]).success);
    deployment.coordinator.kill9();

    let pki = &deployment.pki;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            std::fs::read(pki.join("coordinator.pem"))?,
            std::fs::read(pki.join("coordinator-key.pem"))?,
        ))
        .client_ca_root(Certificate::from_pem(std::fs::read(pki.join("ca.pem"))?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (sessions_tx, mut sessions) = mpsc::channel(4);
    tokio::spawn(
        Server::builder()
            .tls_config(tls)?
            .add_service(AgentServiceServer::new(Fake {
                sessions: sessions_tx,
                signer: Arc::new(
                    Ed25519KeyPair::from_pkcs8(&std::fs::read(
                        pki.join("command-signing-key.der"),
                    )?)
                    .map_err(|e| anyhow::anyhow!("command key: {e}"))?,
                ),
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let enrollment = state.join("enrollment.toml");
    let text = std::fs::read_to_string(&enrollment)?;
    let original = deployment.coordinator.agent_address();
    std::fs::write(
        &enrollment,
        text.replace(&original, &format!("127.0.0.1:{}", address.port())),
    )?;

    let args = [
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--host-root",
        root.to_str().unwrap(),
    ];
    let log = deployment.path("agent.log");
    let mut agent = Daemon::spawn(agent_binary(&root), &args, &log)?;
    let mut s = next_session(&mut sessions).await;
    assert_eq!(s.hello.last_sequence, 0);
    let me = "guarded.example.com";
    let soon = now_ms() + 600_000;

    s.send(precheck(
        "other",
        "someone-else.example.com",
        1,
        soon,
        "8.10",
    ))
    .await;
    s.expect(
        "other",
        Refused,
        "this command is for host someone-else.example.com",
    )
    .await;
    s.send(precheck("stale", me, 1, now_ms() - 1, "8.10")).await;
    s.expect("stale", Refused, "expired").await;
    let mut no_phase = precheck("no-phase", me, 1, soon, "8.10");
    if let Some(pb::coordinator_message::Body::Command(c)) = no_phase.body.as_mut() {
        c.phase = None;
    }
    s.send(no_phase).await;
    s.expect("no-phase", Refused, "malformed command: no phase")
        .await;
    // A peer with the CA's server certificate but not the command key is not
    // obeyed: an unsigned command, and one signed by another key.
    s.send_as_is(precheck("unsigned", me, 1, soon, "8.10"))
        .await;
    s.expect("unsigned", Refused, "the command is not signed")
        .await;
    let rng = ring::rand::SystemRandom::new();
    let other = Ed25519KeyPair::from_pkcs8(
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .as_ref(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    s.send_as_is(signed(precheck("foreign", me, 1, soon, "8.10"), &other))
        .await;
    s.expect("foreign", Refused, "pinned at enrollment").await;
    s.send(precheck("inject", me, 1, soon, "8.10 --debug; reboot"))
        .await;
    s.expect("inject", Refused, "MAJOR.MINOR").await;

    s.send(precheck("good", me, 5, soon, "8.10")).await;
    s.expect("good", Started, "precheck").await;
    s.send(precheck("second", me, 6, soon, "8.10")).await;
    s.expect("second", Refused, "busy with command good").await;
    let done = s
        .expect(
            "good",
            Succeeded,
            "leapp preupgrade --target 8.10 --report-schema 1.2.0 exited 0",
        )
        .await;

    s.send(precheck("replay", me, 5, soon, "8.10")).await;
    s.expect("replay", Refused, "replayed command").await;
    s.send(precheck("good", me, 5, soon, "8.10")).await;
    let again = s.update().await;
    assert_eq!(again, done, "a duplicate gets the recorded outcome");

    // SIGKILL in the middle of a phase; the restarted agent reports it
    // interrupted in its hello and does not run it again.
    s.send(precheck("long", me, 7, soon, "8.10")).await;
    s.expect("long", Started, "precheck").await;
    agent.kill9();
    let mut agent = Daemon::spawn(agent_binary(&root), &args, &log)?;
    let mut s = next_session(&mut sessions).await;
    assert_eq!(s.hello.last_sequence, 7);
    let last = s
        .hello
        .last_update
        .clone()
        .expect("the interrupted command");
    assert_eq!(
        (last.command_id.as_str(), last.state),
        ("long", i32::from(Interrupted))
    );
    s.send(precheck("long", me, 7, soon, "8.10")).await;
    let again = s.update().await;
    assert_eq!(
        again.state,
        i32::from(Interrupted),
        "the interrupted phase must not run again: {again:?}"
    );
    // A fresh command runs: the killed run's lock file was stale, not held.
    s.send(precheck("after", me, 8, soon, "8.10")).await;
    s.expect("after", Started, "precheck").await;
    s.expect("after", Succeeded, "exited 0").await;
    agent.kill9();
    Ok(())
}
