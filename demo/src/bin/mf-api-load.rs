//! Portal load for `scripts/bench-api`: N concurrent clients of the REST API,
//! each with its own bearer token, paging through every host and reading
//! single hosts until told to stop, then the latency of each kind of call.
//!
//! `mf-api-load keys DIR` writes an ES256 key and the JWKS the coordinator
//! reads; `mf-api-load run ...` signs the clients' tokens with that key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes DIR/key.p8 (ES256) and DIR/jwks.json.
    Keys { dir: PathBuf },
    /// Runs the clients until DIR/stop exists, then prints the latencies.
    Run {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        audience: String,
        /// The file whose existence ends the run.
        #[arg(long)]
        stop: PathBuf,
    },
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn keys(dir: &std::path::Path) -> Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot make a key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("cannot read the key"))?;
    let point = pair.public_key().as_ref();
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("key.p8"), pkcs8.as_ref())?;
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "bench", "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string())?;
    Ok(())
}

struct Client {
    port: u16,
    tls: tokio_rustls::TlsConnector,
    token: String,
}

impl Client {
    /// One keep-alive connection, reused for every call of this client.
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// GETs `path` with the client's token; the body of a 2xx.
    async fn get(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        path: &str,
    ) -> Result<Bytes> {
        sender.ready().await?;
        let request = hyper::Request::get(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = response.into_body().collect().await?.to_bytes();
        if status == hyper::StatusCode::TOO_MANY_REQUESTS {
            return Err(Busy(retry_after.unwrap_or(1)).into());
        }
        if !status.is_success() {
            bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

/// A 429: the seconds to wait.
#[derive(Debug)]
struct Busy(u64);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "busy: retry after {} s", self.0)
    }
}

impl std::error::Error for Busy {}

/// The string value of the first `"key":"..."` in a JSON body: the load
/// reads only the cursor and one id, so that parsing the pages does not take
/// the CPU the coordinator is measured on.
fn first_string(body: &[u8], key: &str) -> Option<String> {
    let needle = format!("\"{key}\":\"");
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&needle)? + needle.len();
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_string())
}

/// One client: page through every host, read one host, again, until stop.
async fn client(client: Arc<Client>, stop: PathBuf) -> Result<(Vec<f64>, Vec<f64>, usize, usize)> {
    let mut pages = Vec::new();
    let mut singles = Vec::new();
    let mut sweeps = 0;
    let mut busy = 0;
    let mut sender = client.connect().await?;
    'outer: loop {
        let mut cursor: Option<String> = None;
        let mut ids = Vec::new();
        loop {
            if stop.exists() {
                break 'outer;
            }
            let path = match &cursor {
                None => "/v1/hosts?limit=500".to_string(),
                Some(c) => format!("/v1/hosts?limit=500&cursor={c}"),
            };
            let started = Instant::now();
            let page = match client.get(&mut sender, &path).await {
                Ok(page) => page,
                Err(e) => match e.downcast_ref::<Busy>() {
                    // As a portal would: wait as told, then ask again.
                    Some(Busy(seconds)) => {
                        busy += 1;
                        tokio::time::sleep(std::time::Duration::from_secs(*seconds)).await;
                        continue;
                    }
                    None => return Err(e),
                },
            };
            pages.push(started.elapsed().as_secs_f64() * 1000.0);
            ids.extend(first_string(&page, "id"));
            match first_string(&page, "next_cursor") {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for id in &ids {
            let started = Instant::now();
            match client.get(&mut sender, &format!("/v1/hosts/{id}")).await {
                Ok(_) => singles.push(started.elapsed().as_secs_f64() * 1000.0),
                Err(e) => match e.downcast_ref::<Busy>() {
                    Some(Busy(seconds)) => {
                        busy += 1;
                        tokio::time::sleep(std::time::Duration::from_secs(*seconds)).await;
                    }
                    None => return Err(e),
                },
            }
        }
        sweeps += 1;
    }
    Ok((pages, singles, sweeps, busy))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_arguments)]
async fn run(
    port: u16,
    ca: PathBuf,
    keys: PathBuf,
    clients: usize,
    issuer: String,
    audience: String,
    stop: PathBuf,
) -> Result<()> {
    let pkcs8 = std::fs::read(keys.join("key.p8")).context("key.p8")?;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("bench".into());
        let claims = json!({
            "iss": issuer, "aud": audience, "sub": format!("portal-{i}"),
            "groups": ["migration-viewers"], "exp": now + 4 * 3600,
        });
        let token = jsonwebtoken::encode(&header, &claims, &key)?;
        let c = Arc::new(Client {
            port,
            tls: tls.clone(),
            token,
        });
        tasks.push(tokio::spawn(client(c, stop.clone())));
    }
    let (mut pages, mut singles, mut sweeps, mut busy) = (Vec::new(), Vec::new(), 0, 0);
    for task in tasks {
        let (p, s, n, b) = task.await??;
        pages.extend(p);
        singles.extend(s);
        sweeps += n;
        busy += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    for (name, list) in [
        ("page of 500 hosts", &mut pages),
        ("one host", &mut singles),
    ] {
        list.sort_by(f64::total_cmp);
        println!(
            "{name:<20} {:>7} calls  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            list.len(),
            percentile(list, 50.0),
            percentile(list, 99.0),
            list.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "{clients} clients, {seconds:.0} s: {sweeps} sweeps of the whole fleet, {:.0} calls/s, \
         {busy} answered 429 (retried after Retry-After)",
        (pages.len() + singles.len()) as f64 / seconds
    );
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Keys { dir } => keys(&dir),
        Command::Run {
            port,
            ca,
            keys,
            clients,
            issuer,
            audience,
            stop,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(port, ca, keys, clients, issuer, audience, stop)),
    }
}
