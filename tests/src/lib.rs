//! Harness for end-to-end tests: runs the real `mf-coordinator`, `mf-agent` and
//! `mfctl` binaries (built by `cargo build --workspace --bins`, which
//! `scripts/test` does first) in a temporary workspace on loopback ports, and
//! builds host roots from the project's own fixtures in `tests/fixtures`.

#![allow(clippy::unwrap_used)] // test harness: a failed setup step should stop the test loudly

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod http;
pub mod receiver;

/// What an emulated RHEL 7.9 host needs for leapp's pre-upgrade to pass:
/// leapp's packages (scenario TOML; `set_scenario` gives the room on /var
/// and /boot).
pub const LEAPP_READY: &str = "[[packages]]\nname = \"leapp\"\nversion = \"0.17.0\"\nrelease = \"1.el7_9\"\narch = \"noarch\"\n\
     [[packages]]\nname = \"leapp-upgrade-el7toel8\"\nversion = \"0.20.0\"\nrelease = \"2.el7_9\"\narch = \"noarch\"\n";

/// A file of the project's own fixtures (`tests/fixtures/`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Path of a workspace binary next to the test executable's directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test does)",
        path.display()
    );
    path
}

/// Cargo's target directory (`target/`, or `CARGO_TARGET_DIR`): the test
/// executable lives in its `debug/deps`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The agent binary for a host root: `mf-sim`, the real agent over the
/// emulated host, when the root holds a scenario file; the shipped `mf-agent`
/// otherwise (a plain tree it reads facts from).
pub fn agent_binary(root: &Path) -> &'static str {
    if root.join(".mf-sim/scenario.toml").exists() {
        "mf-sim"
    } else {
        "mf-agent"
    }
}

/// Polls `check` until it returns true, failing with `what` after `timeout`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_error = None;
    while start.elapsed() < timeout {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {timeout:?} waiting for {what} (last error: {last_error:?})")
}

/// The loopback ports (agent, admin, metrics) a coordinator started on port
/// 0 bound, read from its "serving" log line: no port is chosen before the
/// coordinator binds it, so none can be taken in between. `exited` says
/// whether the process is gone (its log then says why).
pub fn serving_ports(
    log: &Path,
    mut exited: impl FnMut() -> Result<Option<std::process::ExitStatus>>,
) -> Result<(u16, u16, u16)> {
    let mut ports = None;
    wait_for("the coordinator to listen", Duration::from_secs(20), || {
        if let Some(status) = exited()? {
            bail!("the coordinator exited with {status}");
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.contains("mf-coordinator serving")) else {
            return Ok(false);
        };
        let port = |key: &str| -> Option<u16> {
            let start = line.find(&format!("{key}=127.0.0.1:"))? + key.len() + 11;
            let digits: String = line[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        ports = Some((
            port("agent_addr").context("agent_addr")?,
            port("admin_addr").context("admin_addr")?,
            port("metrics_addr").context("metrics_addr")?,
        ));
        Ok(true)
    })
    .with_context(|| {
        format!(
            "coordinator log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })?;
    ports.context("no addresses")
}

/// The REST API's port from the coordinator's "serving" line, if it is on.
pub fn api_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("mf-coordinator serving"))?;
    let start = line.find("api_addr=127.0.0.1:")? + "api_addr=127.0.0.1:".len();
    line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// A plain HTTP/1.0 GET on loopback; returns (status line, body).
pub fn http_get(port: u16, path: &str) -> Result<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

/// Output of a finished command, with both streams as text.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(output: Output) -> Self {
        Ran {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs a binary to completion.
pub fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new(bin(name));
    command.args(args).stdin(Stdio::null());
    for var in [
        "MF_COORDINATOR",
        "MF_PKI_DIR",
        "MF_CA",
        "MF_CERT",
        "MF_KEY",
        "MF_ENROLL_TOKEN",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap().into()
}

/// The operating systems the fixtures describe.
#[derive(Debug, Clone, Copy)]
pub enum HostOs {
    /// CentOS 7 os-release plus the centos-release of 7.1.1503.
    Centos7,
    /// RHEL 7.6 os-release (PRETTY_NAME is just "Red Hat Enterprise Linux").
    Rhel7,
    Rhel8,
    /// CentOS 7 with the release line of 7.9.2009, the last CentOS 7.
    Centos79,
    /// RHEL 7.9, the release leapp upgrades from.
    Rhel79,
}

/// Builds a host root the agent reads with `--host-root`.
pub fn host_root(dir: &Path, os: HostOs, hostname: &str, domain: &str) -> PathBuf {
    let (os_release, release, kernel): (&str, Option<(&str, &str)>, &str) = match os {
        HostOs::Centos7 => (
            "os-release/centos-7",
            Some(("etc/centos-release", "release/centos-release-7.1")),
            "3.10.0-229.el7.x86_64",
        ),
        HostOs::Rhel7 => ("os-release/rhel-7.6", None, "3.10.0-957.el7.x86_64"),
        HostOs::Rhel8 => ("os-release/rhel-8.10", None, "4.18.0-553.el8_10.x86_64"),
        HostOs::Centos79 => (
            "os-release/centos-7",
            Some(("etc/centos-release", "release/centos-release-7.9")),
            "3.10.0-1160.119.1.el7.x86_64",
        ),
        HostOs::Rhel79 => (
            "os-release/rhel-7.9",
            Some(("etc/redhat-release", "release/redhat-release-7.9")),
            "3.10.0-1160.125.1.el7.x86_64",
        ),
    };
    let write = |rel: &str, content: &[u8]| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    write(
        "etc/os-release",
        &std::fs::read(fixture(os_release)).unwrap(),
    );
    if let Some((rel, name)) = release {
        let content = std::fs::read(fixture(name)).unwrap();
        write(rel, &content);
        // A link to the distribution's release file on a real system.
        write("etc/system-release", &content);
    }
    write("etc/hostname", format!("{hostname}\n").as_bytes());
    write(
        "etc/hosts",
        format!("127.0.0.1 localhost\n127.0.1.1 {hostname}.{domain} {hostname}\n").as_bytes(),
    );
    write(
        "etc/machine-id",
        format!("{:0>32}\n", hostname.len()).as_bytes(),
    );
    write(
        "proc/sys/kernel/hostname",
        format!("{hostname}\n").as_bytes(),
    );
    write(
        "proc/sys/kernel/osrelease",
        format!("{kernel}\n").as_bytes(),
    );
    // The kernel installed in /boot: the emulated machine boots the newest.
    write(&format!("boot/vmlinuz-{kernel}"), b"kernel image\n");
    write(&format!("boot/initramfs-{kernel}.img"), b"initramfs\n");
    write(
        "proc/sys/kernel/random/boot_id",
        b"2d3c0e5e-1111-4222-8333-444455556666\n",
    );
    write("proc/uptime", b"86400.12 170000.00\n");
    // The site's way to RHEL content: convert2rhel's own credentials file
    // (0600, as it demands) and an RHSM registration.
    write(
        "etc/convert2rhel.ini",
        b"[subscription_manager]\nactivation_key = e2e\norg = 1234567\n",
    );
    std::fs::set_permissions(
        dir.join("etc/convert2rhel.ini"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    write(
        "etc/pki/consumer/cert.pem",
        b"(RHSM consumer certificate)\n",
    );
    for d in ["var", "boot"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    dir.to_path_buf()
}

/// Free and total space of the emulated filesystems a scenario does not
/// size itself: room enough for either tool.
const ROOMY_FILESYSTEMS: [(&str, u64, u64); 2] =
    [("/var", 10 << 30, 20 << 30), ("/boot", 500 << 20, 1 << 30)];

/// Makes a host root emulated: its tools are the emulation, driven by this
/// scenario (TOML, see `sim/src/emulated/scenario.rs`). The emulation reads
/// the real free space of the directory for a filesystem the scenario does
/// not size, which would make a test's outcome depend on the disk of the
/// machine running it (a CI machine with under 3 GiB free blocked leapp):
/// those it leaves out are given a fixed, roomy size.
pub fn set_scenario(root: &Path, scenario: &str) {
    let mut text = scenario.to_string();
    for (mount, free, total) in ROOMY_FILESYSTEMS {
        if !scenario.contains(&format!("[filesystems.\"{mount}\"]")) {
            text.push_str(&format!(
                "\n[filesystems.\"{mount}\"]\nfree_bytes = {free}\ntotal_bytes = {total}\n"
            ));
        }
    }
    let path = root.join(".mf-sim/scenario.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// One coordinator process and everything needed to restart it identically.
pub struct Coordinator {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    pub agent_port: u16,
    pub admin_port: u16,
    pub metrics_port: u16,
    /// The REST API's, when started with `--api-listen`.
    pub api_port: Option<u16>,
}

impl Coordinator {
    pub fn start(data_dir: &Path, pki_dir: &Path, log: &Path) -> Result<Self> {
        Self::start_with(data_dir, pki_dir, log, &[])
    }

    /// The same with more flags, e.g. `--reboot-timeout 3s`.
    /// The coordinator binds port 0 on loopback (the kernel picks free
    /// ports: no race with other tests) and says which in its log; a restart
    /// binds the same ones again.
    pub fn start_with(data_dir: &Path, pki_dir: &Path, log: &Path, extra: &[&str]) -> Result<Self> {
        let (agent_port, admin_port, metrics_port) = (0, 0, 0);
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--pki-dir".into(),
            pki_dir.display().to_string(),
            "--agent-listen".into(),
            format!("127.0.0.1:{agent_port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
        ];
        args.extend(extra.iter().map(ToString::to_string));
        let mut coordinator = Coordinator {
            child: None,
            args,
            log: log.to_path_buf(),
            agent_port,
            admin_port,
            metrics_port,
            api_port: None,
        };
        coordinator.spawn()?;
        Ok(coordinator)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(bin("mf-coordinator"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        if self.metrics_port == 0 {
            self.learn_ports()?;
        }
        let port = self.metrics_port;
        let child = self.child.as_mut().unwrap();
        wait_for(
            "the coordinator to serve /healthz",
            Duration::from_secs(20),
            || {
                if let Some(status) = child.try_wait()? {
                    bail!("the coordinator exited with {status}");
                }
                Ok(http_get(port, "/healthz").is_ok_and(|(status, _)| status.contains("200")))
            },
        )
        .with_context(|| format!("coordinator log:\n{}", self.log_text()))
    }

    /// Reads the addresses the coordinator bound from its "serving" line,
    /// and makes a restart bind them again.
    fn learn_ports(&mut self) -> Result<()> {
        let child = self.child.as_mut().unwrap();
        let (agent, admin, metrics) = serving_ports(&self.log, || Ok(child.try_wait()?))?;
        (self.agent_port, self.admin_port, self.metrics_port) = (agent, admin, metrics);
        self.api_port = api_port(&self.log);
        for (flag, port) in [
            ("--agent-listen", agent),
            ("--admin-listen", admin),
            ("--metrics-listen", metrics),
            ("--api-listen", self.api_port.unwrap_or_default()),
        ] {
            if let Some(i) = self.args.iter().position(|a| a == flag) {
                self.args[i + 1] = format!("127.0.0.1:{port}");
            }
        }
        Ok(())
    }

    pub fn admin_address(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    pub fn agent_address(&self) -> String {
        format!("127.0.0.1:{}", self.agent_port)
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn restart(&mut self) -> Result<()> {
        self.spawn()
    }

    pub fn metrics(&self) -> Result<String> {
        let (status, body) = http_get(self.metrics_port, "/metrics")?;
        if !status.contains("200") {
            bail!("/metrics answered {status}");
        }
        Ok(body)
    }

    /// The value of one sample, e.g. `mf_agents_connected` or
    /// `mf_enrollments_total{result="ok"}`; 0 when absent.
    pub fn metric(&self, sample: &str) -> Result<f64> {
        let text = self.metrics()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().unwrap_or(f64::NAN))
            .unwrap_or(0.0))
    }
}

impl Coordinator {
    /// Waits (a few seconds at most) for a counter to reach `minimum`: the
    /// coordinator counts a refused handshake just after it closes the socket,
    /// and a client's channel may try a second handshake before giving up.
    pub fn expect_metric_at_least(&self, sample: &str, minimum: f64) -> Result<()> {
        let mut seen = f64::NAN;
        wait_for(
            &format!("{sample} >= {minimum}"),
            Duration::from_secs(5),
            || {
                seen = self.metric(sample)?;
                Ok(seen >= minimum)
            },
        )
        .with_context(|| format!("{sample} stayed at {seen}"))
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A long-running child process killed when dropped.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn spawn(name: &str, args: &[&str], log: &Path) -> Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(bin(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self { child })
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A host: its emulated root and its agent process, restarted when the host
/// reboots. A watcher plays the machine: when the agent asks the emulated
/// host to reboot, the process is killed (SIGKILL, as a reboot would) and
/// started again, and the restarted agent's host boots.
pub struct Machine {
    child: Arc<Mutex<Option<Child>>>,
    stop: Arc<AtomicBool>,
    reboots: Arc<AtomicUsize>,
    watcher: Option<std::thread::JoinHandle<()>>,
    args: Vec<String>,
    log: PathBuf,
    root: PathBuf,
}

fn spawn_agent(root: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(bin(agent_binary(root)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn reboot_pending(root: &Path) -> bool {
    std::fs::read(root.join(".mf-sim/state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["reboot_pending"] == true)
}

impl Machine {
    /// Runs `mf-sim run --state-dir STATE --host-root ROOT` for this host (the
    /// real agent over the emulated host; `mf-agent` for a plain tree).
    pub fn start(state: &Path, root: &Path, log: &Path) -> Self {
        Self::start_with(state, root, log, &[])
    }

    /// The same with more arguments for `run`, e.g. `--label app=a`.
    pub fn start_with(state: &Path, root: &Path, log: &Path, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--host-root".into(),
            root.display().to_string(),
        ];
        args.extend(extra.iter().map(ToString::to_string));
        let child = Arc::new(Mutex::new(Some(spawn_agent(root, &args, log))));
        let stop = Arc::new(AtomicBool::new(false));
        let reboots = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (child, stop, reboots) =
                (Arc::clone(&child), Arc::clone(&stop), Arc::clone(&reboots));
            let (args, log, root) = (args.clone(), log.to_path_buf(), root.to_path_buf());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if reboot_pending(&root) {
                        let mut slot = child.lock().unwrap();
                        if let Some(mut old) = slot.take() {
                            let _ = old.kill();
                            let _ = old.wait();
                        }
                        *slot = Some(spawn_agent(&root, &args, &log));
                        drop(slot);
                        reboots.fetch_add(1, Ordering::Relaxed);
                        // The new agent boots the host, which clears the flag.
                        let started = Instant::now();
                        while reboot_pending(&root) && started.elapsed() < Duration::from_secs(10) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            child,
            stop,
            reboots,
            watcher: Some(watcher),
            args,
            log: log.to_path_buf(),
            root: root.to_path_buf(),
        }
    }

    pub fn reboots(&self) -> usize {
        self.reboots.load(Ordering::Relaxed)
    }

    /// Whether the emulated machine is stopped (never came back from its
    /// reboot, or waits in the upgrade initramfs's emergency shell).
    pub fn is_down(&self) -> bool {
        std::fs::read(self.root.join(".mf-sim/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["down"] == true)
    }

    /// At the machine's console: boot the previous entry once
    /// (`mf-sim console boot-previous`); the watcher starts its agent.
    pub fn console_boot_previous(&self) -> Ran {
        run(
            "mf-sim",
            &[
                "console",
                "boot-previous",
                "--host-root",
                self.root.to_str().unwrap(),
            ],
            &[],
        )
    }

    /// SIGKILL of the agent process alone (the host stays up).
    pub fn kill_agent(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_agent(&self) {
        let mut slot = self.child.lock().unwrap();
        if slot.is_none() {
            *slot = Some(spawn_agent(&self.root, &self.args, &self.log));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        self.kill_agent();
    }
}

/// The records of a host's agent journal (`var/lib/mf-agent/journal.jsonl`
/// under its root), as JSON; none when it has none yet.
pub fn journal(root: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(root.join("var/lib/mf-agent/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Who a test's own gRPC client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Operator,
    Anonymous,
}

/// A temporary deployment: PKI, coordinator and helpers to run mfctl against it.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub pki: PathBuf,
    pub coordinator: Coordinator,
}

impl Deployment {
    pub fn new() -> Result<Self> {
        Self::with_coordinator_flags(&[])
    }

    /// A deployment whose coordinator runs with more flags.
    pub fn with_coordinator_flags(extra: &[&str]) -> Result<Self> {
        Self::with_data_dir(None, extra)
    }

    /// The same, its store in `data_dir` (e.g. on a file system the test
    /// made) rather than beside the PKI.
    pub fn with_data_dir(data_dir: Option<PathBuf>, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        let init = run(
            "mfctl",
            &["pki", "init", "--dir", pki.to_str().unwrap()],
            &[],
        );
        if !init.success {
            bail!("mfctl pki init failed: {}", init.stderr);
        }
        let coordinator = Coordinator::start_with(
            &data_dir.unwrap_or_else(|| dir.path().join("data")),
            &pki,
            &dir.path().join("coordinator.log"),
            extra,
        )?;
        Ok(Self {
            dir,
            pki,
            coordinator,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A gRPC channel to `address` over TLS with this deployment's CA, as its
    /// operator or without a client certificate.
    pub async fn channel(&self, address: &str, peer: Peer) -> Result<tonic::transport::Channel> {
        let read = |name: &str| std::fs::read_to_string(self.pki.join(name));
        let ca = read("ca.pem")?;
        let (cert, key) = (read("operator.pem")?, read("operator-key.pem")?);
        let client = match peer {
            Peer::Operator => Some((cert.as_str(), key.as_str())),
            Peer::Anonymous => None,
        };
        Ok(mf_proto::transport::endpoint(address, &ca, client)?
            .connect()
            .await?)
    }

    /// A host of this deployment, `NAME.example.com`: its tree under
    /// `roots/NAME` (emulated when a scenario is given), enrolled with
    /// `token` into `state/NAME`, and its agent running with `run_args`
    /// (e.g. `--label app=a`), logging to `NAME.log`.
    pub fn start_agent(
        &self,
        token: &str,
        name: &str,
        os: HostOs,
        scenario: Option<&str>,
        run_args: &[&str],
    ) -> Result<Daemon> {
        let root = host_root(
            &self.path(&format!("roots/{name}")),
            os,
            name,
            "example.com",
        );
        if let Some(scenario) = scenario {
            set_scenario(&root, scenario);
        }
        let state = self.path(&format!("state/{name}"));
        let enrolled = self.enroll(token, &state, &root, &[]);
        if !enrolled.success {
            bail!("enroll {name}: {}", enrolled.stderr);
        }
        let mut args = vec![
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--host-root",
            root.to_str().unwrap(),
        ];
        args.extend_from_slice(run_args);
        Daemon::spawn(
            agent_binary(&root),
            &args,
            &self.path(&format!("{name}.log")),
        )
    }

    /// Runs mfctl as the operator of this deployment.
    pub fn mfctl(&self, args: &[&str]) -> Ran {
        run(
            "mfctl",
            args,
            &[
                ("MF_COORDINATOR", &self.coordinator.admin_address()),
                ("MF_PKI_DIR", self.pki.to_str().unwrap()),
            ],
        )
    }

    /// A fresh token, from `mfctl token create` with extra flags.
    pub fn token(&self, extra: &[&str]) -> Result<String> {
        let mut args = vec!["token", "create"];
        args.extend_from_slice(extra);
        let ran = self.mfctl(&args);
        if !ran.success {
            bail!("mfctl token create failed: {}", ran.stderr);
        }
        Ok(ran.stdout.trim().to_string())
    }

    /// Runs `enroll` (of `mf-sim` or `mf-agent`, see [`agent_binary`]) for a host root.
    pub fn enroll(&self, token: &str, state: &Path, root: &Path, extra: &[&str]) -> Ran {
        let ca = self.pki.join("ca.pem");
        let coordinator = self.coordinator.agent_address();
        let mut args = vec![
            "enroll",
            "--coordinator",
            &coordinator,
            "--ca",
            ca.to_str().unwrap(),
            "--token",
            token,
            "--state-dir",
            state.to_str().unwrap(),
            "--host-root",
            root.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(agent_binary(root), &args, &[])
    }

    /// A RHEL 7.9 machine that leapp's pre-upgrade passes (unless
    /// `scenario`, written first in its scenario file, says otherwise),
    /// enrolled with `token` and running with the label `app=APP`.
    pub fn rhel79_machine(
        &self,
        token: &str,
        name: &str,
        app: &str,
        scenario: &str,
    ) -> Result<Machine> {
        let root = host_root(
            &self.path(&format!("roots/{name}")),
            HostOs::Rhel79,
            name,
            "example.com",
        );
        // Top-level keys first: TOML puts keys after a table header inside it.
        set_scenario(&root, &format!("{scenario}{LEAPP_READY}"));
        let state = root.join("var/lib/mf-agent");
        let enrolled = self.enroll(token, &state, &root, &[]);
        if !enrolled.success {
            bail!("enroll {name}: {}", enrolled.stderr);
        }
        let label = format!("app={app}");
        Ok(Machine::start_with(
            &state,
            &root,
            &self.path(&format!("{name}.log")),
            &["--label", &label],
        ))
    }

    /// `mfctl hosts list -o json` as parsed JSON.
    pub fn hosts(&self, selector: &str) -> Result<Vec<serde_json::Value>> {
        let ran = self.mfctl(&["hosts", "list", "--selector", selector, "-o", "json"]);
        if !ran.success {
            bail!("mfctl hosts list failed: {}", ran.stderr);
        }
        Ok(serde_json::from_str(&ran.stdout)?)
    }
}

/// `promtool check metrics` over an exposition; promtool is installed by
/// scripts/test (Debian's prometheus package).
pub fn promtool_check(body: &str) -> Result<()> {
    let promtool = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("promtool"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("promtool not found: run scripts/test, which installs it")
        })?;
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Checks that every metric the Grafana dashboard in `packaging/grafana`
/// queries is a family of `body` (a live /metrics): the dashboard cannot
/// drift from the code. Metric names are the `mf_...` and `process_...`
/// identifiers of each query, without histogram suffixes.
pub fn dashboard_check(body: &str) -> Result<()> {
    let families: std::collections::BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/migration-factory.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                bail!("a target without expr in {}", path.display());
            };
            used.extend(metric_names(expr));
        }
    }
    if used.len() < 15 {
        bail!("the dashboard covers little: {used:?}");
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !families.contains(n.as_str()))
        .collect();
    if !missing.is_empty() {
        bail!("the dashboard queries metrics /metrics does not have: {missing:?}");
    }
    Ok(())
}

fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("mf_") || w.starts_with("process_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(scenario: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        set_scenario(dir.path(), scenario);
        std::fs::read_to_string(dir.path().join(".mf-sim/scenario.toml")).unwrap()
    }

    #[test]
    fn a_scenario_that_sizes_no_filesystem_gets_roomy_ones() {
        let text = written(LEAPP_READY);
        let scenario: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            scenario["filesystems"]["/var"]["free_bytes"].as_integer(),
            Some(10 << 30)
        );
        assert_eq!(
            scenario["filesystems"]["/boot"]["free_bytes"].as_integer(),
            Some(500 << 20)
        );
        assert_eq!(scenario["packages"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_filesystem_the_scenario_sizes_is_kept_as_it_says() {
        let text = written("[filesystems.\"/var\"]\nfree_bytes = 1024\ntotal_bytes = 2048\n");
        let scenario: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            scenario["filesystems"]["/var"]["free_bytes"].as_integer(),
            Some(1024)
        );
        assert_eq!(
            scenario["filesystems"]["/boot"]["free_bytes"].as_integer(),
            Some(500 << 20)
        );
    }
}
