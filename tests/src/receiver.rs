//! A webhook receiver for the tests: a real HTTP/1.1 server on loopback that
//! records what it accepted, and can refuse (503) or hold requests unanswered
//! on command, as a receiver that is down or stuck would.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// 503, as a receiver that is down behind its load balancer.
    Refuse,
    /// Reads the request and never answers.
    Hold,
}

/// One request: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub accepted: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Shared {
    mode: Option<Mode>,
    received: Vec<Received>,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(mode: Mode) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Mutex::new(Shared {
            mode: Some(mode),
            received: Vec::new(),
        }));
        let state = Arc::clone(&shared);
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            port,
            shared,
            _runtime: runtime,
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).mode = Some(mode);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .received
            .clone()
    }
}

async fn answer(
    state: Arc<Mutex<Shared>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mode = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .mode
        .unwrap_or(Mode::Accept);
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .received
        .push(Received {
            headers,
            body,
            accepted: mode == Mode::Accept,
        });
    match mode {
        Mode::Accept => hyper::Response::new(Full::new(Bytes::from_static(b"ok"))),
        Mode::Refuse => {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"down")));
            *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
            response
        }
        Mode::Hold => std::future::pending().await,
    }
}
