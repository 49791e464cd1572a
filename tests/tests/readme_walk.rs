//! The README walked as a new operator walks it: every command of "The
//! demo", "Deploying by hand" (steps 1 to 8) and "Simulating a fleet", read
//! from README.md itself and run in the README's order against the real
//! binaries. ("Install on a fleet" is walked from the installed RPMs by
//! `packaging.rs`; `./scripts/test` is what runs this walk.)
//!
//! Where the README names what only a real site has, the walk puts its own in
//! its place, and `SITE` says which and why; where a README command is meant
//! to be refused at that point of the walk, `REFUSED` says so and checks the
//! reason. Any other command must succeed: a README line that stops working
//! fails this test.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mf_e2e::{
    Daemon, HostOs, LEAPP_READY, Machine, agent_binary, bin, host_root, set_scenario, wait_for,
};
use serde_json::Value;

const LEAPP_8: &str = "[[packages]]\nname = \"leapp\"\nversion = \"0.18.0\"\nrelease = \"1.el8_10\"\narch = \"noarch\"\n\
                       [[packages]]\nname = \"leapp-upgrade-el8toel9\"\nversion = \"0.21.0\"\nrelease = \"1.el8_10\"\narch = \"noarch\"\n";

/// The machines the README's host names stand for. db-01's upgrade fails
/// in FirstBoot, so that its job is held for the operator as step 7 shows;
/// web-17..19 are the RHEL 7.9 hosts step 8's wave selects.
fn fleet() -> Vec<(&'static str, HostOs, String)> {
    let el7 = LEAPP_READY.to_string();
    vec![
        ("web-01", HostOs::Rhel79, el7.clone()),
        (
            "db-01",
            HostOs::Rhel8,
            format!("failures = [\"first-boot-failure\"]\n{LEAPP_8}"),
        ),
        ("old-01", HostOs::Rhel79, el7.clone()),
        ("old-02", HostOs::Rhel79, el7.clone()),
        ("web-17", HostOs::Rhel79, el7.clone()),
        ("web-18", HostOs::Rhel79, el7.clone()),
        ("web-19", HostOs::Rhel79, el7),
    ]
}

/// README commands refused at their point of the walk, with a word of the
/// reason the refusal must give.
const REFUSED: [(&str, i32, &str); 2] = [
    // db-01 is held after a failed verification: only a rollback may follow.
    (
        "mfctl hosts retry db-01.example.com",
        4,
        "mfctl hosts rollback",
    ),
    // web-17 waits for its window; nothing failed that could be retried.
    (
        "mfctl wave retry rhel8-wave1 web-17.example.com",
        4,
        "web-17",
    ),
];

/// What some README commands must print at their point of the walk, beyond
/// succeeding.
const SAYS: [(&str, &str); 5] = [
    (
        "mfctl hosts delete old-01.example.com",
        "deleted host old-01.example.com",
    ),
    (
        "mfctl hosts revoke old-02.example.com",
        "revoked the certificate of host old-02.example.com",
    ),
    (
        "mfctl migrate web-01.example.com --target rhel-8.10 --wait",
        "succeeded",
    ),
    ("mfctl wave why rhel8-wave1 web-17.example.com", "window"),
    ("mfctl report readiness -o wide", "6 hosts: 4 ready"),
];

/// The shell lines of the ```sh blocks of `## section` (its `###` parts
/// included), comments dropped and continued lines joined.
fn sh_lines(readme: &str, section: &str) -> Vec<String> {
    let heading = format!("## {section}\n");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("no section {section:?} in README.md"));
    let body = &readme[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in body.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh || line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let line = line.split(" # ").next().unwrap_or_default().trim();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        lines.push(std::mem::take(&mut pending).trim().to_string());
    }
    lines
}

/// The words of a command line as a POSIX shell splits them: quotes, and
/// `$VAR` expanded from `env` (also inside double quotes).
fn words(line: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ') => words.extend(word.take()),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.get_or_insert_default().push(c),
            (_, '$') => {
                let mut name = String::new();
                while let Some(n) = chars.next_if(|n| n.is_ascii_alphanumeric() || *n == '_') {
                    name.push(n);
                }
                let value = env.get(&name).cloned().unwrap_or_default();
                word.get_or_insert_default().push_str(&value);
            }
            (_, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// A command run to its end.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

struct Walk {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    /// What the README names and the walk's own in its place.
    site: Vec<(String, String)>,
    daemons: Vec<Daemon>,
    machines: Vec<Machine>,
    ran: Vec<String>,
}

impl Walk {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The README's addresses of the coordinator become the ports it bound.
    fn coordinator_serves(&mut self, (agent, admin, metrics): (u16, u16, u16)) -> Result<()> {
        for (readme, port) in [
            ("127.0.0.1:7443", agent),
            ("coordinator.example.com:7443", agent),
            ("127.0.0.1:7444", admin),
            ("coordinator.example.com:7444", admin),
            ("127.0.0.1:9464", metrics),
        ] {
            self.site.push((readme.into(), format!("127.0.0.1:{port}")));
        }
        wait_for("the coordinator", Duration::from_secs(20), || {
            Ok(mf_e2e::http_get(metrics, "/healthz").is_ok_and(|(s, _)| s.contains("200")))
        })
    }

    fn substituted(&self, line: &str) -> String {
        self.site
            .iter()
            .fold(line.to_string(), |line, (readme, ours)| {
                line.replace(readme, ours)
            })
    }

    fn command(&self, words: &[String]) -> Command {
        let mut command = Command::new(bin(&words[0]));
        command.args(&words[1..]).stdin(Stdio::null());
        for var in ["MF_COORDINATOR", "MF_PKI_DIR", "MF_ENROLL_TOKEN"] {
            command.env_remove(var);
        }
        command.envs(&self.env);
        command
    }

    fn run(&self, words: &[String]) -> Result<Ran> {
        let out = self
            .command(words)
            .output()
            .with_context(|| format!("{words:?}"))?;
        Ok(Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// A watch runs until interrupted: the walk reads its first screen and
    /// stops it, as an operator's Ctrl-C would.
    fn first_screen(&self, words: &[String]) -> Result<String> {
        let mut child = self.command(words).stdout(Stdio::piped()).spawn()?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut buffer = [0u8; 4096];
        let n = stdout.read(&mut buffer)?;
        child.kill()?;
        child.wait()?;
        Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
    }

    fn hosts(&self) -> Result<Vec<Value>> {
        let ran = self.run(&["mfctl", "hosts", "list", "-o", "json"].map(String::from))?;
        if ran.code != Some(0) {
            bail!("hosts list: {}", ran.stderr);
        }
        Ok(serde_json::from_str(&ran.stdout)?)
    }

    fn job_state(&self, host: &str) -> Result<String> {
        let ran = self.run(&["mfctl", "hosts", "show", host, "-o", "json"].map(String::from))?;
        let shown: Value = serde_json::from_str(&ran.stdout)?;
        Ok(shown["job"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// One README line, run as the README means it.
    fn step(&mut self, line: &str) -> Result<()> {
        let line = self.substituted(line);
        self.ran.push(line.clone());
        if let Some(assignments) = line.strip_prefix("export ") {
            for assignment in words(assignments, &self.env) {
                let (name, value) = assignment.split_once('=').context("export NAME=VALUE")?;
                self.env.insert(name.to_string(), value.to_string());
            }
            return Ok(());
        }
        if let Some((name, command)) = line.split_once("=$(") {
            let command = command.strip_suffix(')').context("NAME=$(command)")?;
            let ran = self.run(&words(command, &self.env))?;
            if ran.code != Some(0) {
                bail!("{line}: {}", ran.stderr);
            }
            self.env
                .insert(name.to_string(), ran.stdout.trim().to_string());
            return Ok(());
        }
        let words = words(&line, &self.env);
        match (words[0].as_str(), words.get(1).map(String::as_str)) {
            ("mf-coordinator", _) => {
                let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                let log = self.path("coordinator.log");
                let mut daemon = Daemon::spawn("mf-coordinator", &args, &log)?;
                let ports = mf_e2e::serving_ports(&log, || daemon.exited())?;
                self.daemons.push(daemon);
                self.coordinator_serves(ports)
            }
            // "Enroll and run each agent": every machine of the walk's fleet.
            ("mf-agent", Some("enroll")) => {
                for (name, _, _) in fleet() {
                    let root = self.path(&format!("roots/{name}"));
                    let mut words = self.for_machine(&words, name);
                    words[0] = agent_binary(&root).to_string();
                    words.extend(["--host-root".into(), root.display().to_string()]);
                    let ran = self.run(&words)?;
                    if ran.code != Some(0) {
                        bail!("{line} on {name}: {}", ran.stderr);
                    }
                }
                Ok(())
            }
            ("mf-agent", Some("run")) => {
                for (name, _, _) in fleet() {
                    let root = self.path(&format!("roots/{name}"));
                    let words = self.for_machine(&words, name);
                    let state = words
                        .iter()
                        .position(|w| w == "--state-dir")
                        .map(|i| PathBuf::from(&words[i + 1]))
                        .context("--state-dir")?;
                    let rest: Vec<&str> = words[2..]
                        .iter()
                        .map(String::as_str)
                        .filter(|w| *w != "--state-dir" && Path::new(w) != state)
                        .collect();
                    let log = self.path(&format!("{name}.log"));
                    self.machines
                        .push(Machine::start_with(&state, &root, &log, &rest));
                }
                let count = fleet().len();
                wait_for("every machine connected", Duration::from_secs(60), || {
                    let hosts = self.hosts()?;
                    Ok(hosts.len() == count
                        && hosts
                            .iter()
                            .all(|h| h["connected"] == true && !h["facts"].is_null()))
                })
            }
            ("mf-sim", Some("fleet")) => {
                let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                self.daemons
                    .push(Daemon::spawn("mf-sim", &args, &self.path("fleet.log"))?);
                let before = fleet().len() - 1; // old-01 was deleted in step 5 (old-02 is revoked)
                wait_for("the simulated fleet", Duration::from_secs(60), || {
                    Ok(self.hosts()?.len() == before + SIMULATED)
                })
            }
            ("mfctl", _) if words.iter().any(|w| w == "--watch") => {
                let screen = self.first_screen(&words)?;
                if screen.trim().is_empty() {
                    bail!("{line}: nothing shown");
                }
                Ok(())
            }
            ("mfctl", _) => {
                self.before(&line)?;
                let ran = self.run(&words)?;
                let refused = REFUSED.iter().find(|(readme, _, _)| line == *readme);
                match refused {
                    Some((_, code, reason))
                        if ran.code != Some(*code) || !ran.stderr.contains(reason) =>
                    {
                        bail!(
                            "{line}: expected a refusal ({code}, naming {reason:?}), got {:?}: {}{}",
                            ran.code,
                            ran.stdout,
                            ran.stderr
                        );
                    }
                    Some(_) => {}
                    None if ran.code != Some(0) => {
                        bail!("{line}: exit {:?}\n{}{}", ran.code, ran.stdout, ran.stderr)
                    }
                    None => {}
                }
                let says = SAYS.iter().find(|(readme, _)| line == *readme);
                if let Some((_, text)) = says.filter(|(_, text)| !ran.stdout.contains(text)) {
                    bail!("{line}: does not say {text:?}:\n{}", ran.stdout);
                }
                Ok(())
            }
            _ => bail!("the walk does not know how to run: {line}"),
        }
    }

    /// The README's agent command on one machine: its own state directory
    /// and the CA where the walk keeps it.
    fn for_machine(&self, words: &[String], name: &str) -> Vec<String> {
        words
            .iter()
            .map(|w| match w.as_str() {
                "/var/lib/mf-agent" => self
                    .path(&format!("roots/{name}/var/lib/mf-agent"))
                    .display()
                    .to_string(),
                "/etc/mf-agent/ca.pem" => self.path("pki/ca.pem").display().to_string(),
                _ => w.clone(),
            })
            .collect()
    }

    /// What an operator waits for before a line, where the README's order
    /// alone does not say it.
    fn before(&self, line: &str) -> Result<()> {
        if line.starts_with("mfctl hosts retry db-01") {
            wait_for("db-01's job to be held", Duration::from_secs(120), || {
                Ok(self.job_state("db-01.example.com")? == "held")
            })?;
        }
        Ok(())
    }
}

/// How many simulated hosts "Simulating a fleet" starts in the walk.
const SIMULATED: usize = 20;

/// A daily window twelve hours from now: closed whenever the walk runs, so
/// that the wave of step 8 waits for it as the README's Saturday night
/// window would on a weekday.
fn closed_window() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hour = (now / 3600 + 12) % 24;
    format!("{hour:02}:00-{:02}:00 UTC", (hour + 1) % 24)
}

#[test]
fn a_new_operator_walks_the_readme() -> Result<()> {
    let readme = std::fs::read_to_string("../README.md")?;
    let dir = tempfile::tempdir()?;
    for (name, os, scenario) in fleet() {
        let root = host_root(
            &dir.path().join(format!("roots/{name}")),
            os,
            name,
            "example.com",
        );
        set_scenario(&root, &scenario);
    }
    let at = |path: &str| dir.path().join(path).display().to_string();
    // What the README names and the walk's own in its place, and why.
    let site: Vec<(String, String)> = vec![
        // Files the packages would own live in the walk's directory.
        ("/etc/mf-coordinator/pki".into(), at("pki")),
        ("/var/lib/mf-coordinator".into(), at("data")),
        // Tests may use loopback only: the site's addresses become 127.0.0.1.
        ("--name 10.0.0.5".into(), "--name 127.0.0.1".into()),
        // The coordinator binds ports of its own choosing; once it serves,
        // the walk reads them from its log and the README's addresses of it
        // become those (see `Walk::coordinator_serves`).
        ("0.0.0.0:7443".into(), "127.0.0.1:0".into()),
        (
            "--admin-listen 127.0.0.1:7444".into(),
            "--admin-listen 127.0.0.1:0".into(),
        ),
        (
            "--metrics-listen 127.0.0.1:9464".into(),
            "--metrics-listen 127.0.0.1:0".into(),
        ),
        // A window closed now, whatever the day (see closed_window).
        ("sat 22:00-sun 06:00 Europe/Paris".into(), closed_window()),
        // An operator's own directory, not the working directory.
        ("./alice".into(), at("alice")),
        // A fleet of 20 simulated hosts rather than 11,500.
        ("--hosts 11500".into(), format!("--hosts {SIMULATED}")),
        (
            "--ca pki/ca.pem".into(),
            format!("--ca {}", at("pki/ca.pem")),
        ),
    ];
    let mut walk = Walk {
        dir,
        env: BTreeMap::new(),
        site,
        daemons: Vec::new(),
        machines: Vec::new(),
        ran: Vec::new(),
    };

    demo(&readme)?;

    let deploying = sh_lines(&readme, "Deploying by hand");
    let simulating = sh_lines(&readme, "Simulating a fleet");
    assert!(deploying.len() >= 30, "{deploying:#?}");
    let started = std::time::Instant::now();
    for line in deploying.iter().chain(&simulating) {
        eprintln!("{:>6.1}s  {line}", started.elapsed().as_secs_f64());
        walk.step(line).with_context(|| {
            format!(
                "README line: {line}\nran before it:\n{}",
                walk.ran.join("\n")
            )
        })?;
    }

    // What the walk left is what the README says it does.
    assert_eq!(walk.job_state("web-01.example.com")?, "succeeded");
    let hosts = walk.hosts()?;
    assert!(
        !hosts.iter().any(|h| h["id"] == "old-01.example.com"),
        "deleted in step 5"
    );
    let old02 = hosts
        .iter()
        .find(|h| h["id"] == "old-02.example.com")
        .unwrap();
    assert!(
        old02["revoked"].is_string() && old02["connected"] == false,
        "revoked in step 5: {old02}"
    );
    let web01 = hosts
        .iter()
        .find(|h| h["id"] == "web-01.example.com")
        .unwrap();
    assert_eq!(web01["labels"]["app"], "billing", "{web01}");
    let waves = walk.run(&["mfctl", "wave", "list", "-o", "json"].map(String::from))?;
    assert_eq!(waves.stdout.trim(), "[]", "deleted at the end of step 8");
    drop(walk.machines);
    drop(walk.daemons);
    Ok(())
}

/// "The demo": its first command (the binary cargo builds, in debug here),
/// then the two mfctl commands with the address and PKI the demo prints.
fn demo(readme: &str) -> Result<()> {
    let lines = sh_lines(readme, "The demo");
    assert_eq!(
        lines.first().map(String::as_str),
        Some("cargo run --release --bin mf-demo -- --keep"),
        "{lines:#?}"
    );
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("demo.log");
    let mut demo = Daemon::spawn("mf-demo", &["--keep"], &log)?;
    let mut env = BTreeMap::new();
    wait_for("the demo to keep running", Duration::from_secs(240), || {
        let text = std::fs::read_to_string(&log)?;
        for line in text.lines() {
            if let Some((name, value)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|a| a.split_once('='))
            {
                env.insert(name.to_string(), value.to_string());
            }
        }
        Ok(env.contains_key("MF_PKI_DIR"))
    })?;
    for line in &lines[1..] {
        let words = words(line, &env);
        let ran = Command::new(bin(&words[0]))
            .args(&words[1..])
            .envs(&env)
            .output()?;
        let stdout = String::from_utf8_lossy(&ran.stdout);
        if !ran.status.success() {
            bail!("{line}: {}", String::from_utf8_lossy(&ran.stderr));
        }
        if let Some(host) = line.strip_prefix("mfctl hosts show ") {
            assert!(stdout.contains(host), "{stdout}");
        } else {
            assert!(stdout.contains(" hosts, "), "{stdout}");
        }
    }
    demo.kill9();
    Ok(())
}

#[test]
fn the_walk_reads_the_shell_as_a_shell_does() {
    let env = BTreeMap::from([("TOKEN".to_string(), "t0k".to_string())]);
    assert_eq!(
        words(
            r#"a --x "sat 22:00 UTC" 'k in (a,b)' --token "$TOKEN" $TOKEN"#,
            &env
        ),
        [
            "a",
            "--x",
            "sat 22:00 UTC",
            "k in (a,b)",
            "--token",
            "t0k",
            "t0k"
        ]
    );
    let readme = "## S\n```sh\n# comment\nmfctl a \\\n  --b c   # why\n```\n```text\nnot run\n```\n## T\n```sh\nother\n```\n";
    assert_eq!(sh_lines(readme, "S"), ["mfctl a --b c"]);
}
