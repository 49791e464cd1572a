//! The packages as an operator receives them: the three RPMs that
//! `scripts/package` builds (run by `scripts/test` before the tests), read
//! with Debian's `rpm`, installed into a scratch root, their binaries run from
//! there; the agent is a static executable that runs in an empty chroot; the
//! units pass `systemd-analyze verify`, and the coordinator's sandbox scores
//! an exposure of 4.0 or less.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

const PACKAGES: [&str; 3] = ["mf-agent", "mf-coordinator", "mfctl"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rpm_file(name: &str) -> Result<PathBuf> {
    let dir = mf_e2e::target_dir().join("rpm");
    let found = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: run ./scripts/package first", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-0")) && n.ends_with(".rpm"))
        });
    found.with_context(|| format!("no {name} RPM in {}: run ./scripts/package", dir.display()))
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} exited {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn query(name: &str, args: &[&str]) -> Result<String> {
    let rpm = rpm_file(name)?;
    let mut all = vec!["-qp"];
    all.extend(args);
    all.push(rpm.to_str().unwrap());
    output("rpm", &all)
}

#[test]
fn each_rpm_installs_on_el7_el8_and_el9_with_its_files_and_scripts() -> Result<()> {
    for name in PACKAGES {
        // gzip: EL7's rpm 4.11 cannot read a zstd payload.
        assert_eq!(
            query(name, &["--qf", "%{PAYLOADCOMPRESSOR}"])?,
            "gzip",
            "{name}"
        );
        let license = query(name, &["--qf", "%{LICENSE}"])?;
        assert!(
            license.starts_with("Apache-2.0 AND ") && license.contains("MIT"),
            "{name}: {license}"
        );
        for requirement in query(name, &["--requires"])?.lines() {
            let known = requirement == "/bin/sh"
                || requirement == "shadow-utils"
                || requirement.starts_with("config(")
                || [
                    "rpmlib(CompressedFileNames)",
                    "rpmlib(FileDigests)",
                    "rpmlib(PayloadFilesHavePrefix)",
                ]
                .iter()
                .any(|r| requirement.starts_with(r));
            assert!(known, "{name} requires {requirement}, which EL7 may lack");
        }
        let files = query(name, &["-l"])?;
        assert!(
            files.lines().any(|f| f == format!("/usr/bin/{name}")),
            "{files}"
        );
        assert!(
            files
                .lines()
                .any(|f| f == format!("/usr/share/licenses/{name}/THIRD-PARTY-LICENSES.md")),
            "{files}"
        );
    }

    // Config files are marked config(noreplace): an upgrade keeps local edits.
    for (name, config, owner) in [
        (
            "mf-agent",
            "/etc/mf-agent/agent.toml",
            "root:root -rw-r--r--",
        ),
        (
            "mf-coordinator",
            "/etc/mf-coordinator/coordinator.toml",
            "root:mf-coordinator -rw-r-----",
        ),
    ] {
        let flags = query(
            name,
            &[
                "--qf",
                "[%{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms} %{FILENAMES}\n]",
            ],
        )?;
        let line = flags
            .lines()
            .find(|l| l.ends_with(config))
            .with_context(|| format!("{config} not in {name}"))?;
        assert!(line.starts_with("cn "), "{line}");
        assert!(line.contains(owner), "{line}");
    }
    let coordinator_files = query("mf-coordinator", &["-l"])?;
    for file in [
        "/usr/share/mf-coordinator/prometheus-alerts.yml",
        "/usr/share/mf-coordinator/grafana/migration-factory.json",
    ] {
        assert!(coordinator_files.contains(file), "{file} missing");
    }
    let agent_files = query("mf-agent", &["-l"])?;
    for file in [
        "/usr/lib/systemd/system/mf-agent.service",
        "/usr/lib/tmpfiles.d/mf-agent.conf",
    ] {
        assert!(agent_files.contains(file), "{file} missing");
    }
    let mfctl_files = query("mfctl", &["-l"])?;
    for file in [
        "/usr/share/bash-completion/completions/mfctl",
        "/usr/share/zsh/site-functions/_mfctl",
        "/usr/share/fish/vendor_completions.d/mfctl.fish",
        "/usr/share/man/man1/mfctl.1.gz",
        "/usr/share/man/man1/mfctl-wave-create.1.gz",
    ] {
        assert!(mfctl_files.contains(file), "{file} missing");
    }

    // The coordinator's package creates its service user; every scriptlet is
    // valid shell.
    let scripts = query("mf-coordinator", &["--scripts"])?;
    assert!(
        scripts
            .contains("useradd -r -g mf-coordinator -d /var/lib/mf-coordinator -s /sbin/nologin"),
        "{scripts}"
    );
    assert!(scripts.contains("systemd-tmpfiles --create /usr/lib/tmpfiles.d/mf-coordinator.conf"));
    for name in ["mf-agent", "mf-coordinator"] {
        let scripts = query(name, &["--scripts"])?;
        for script in scripts.split("scriptlet").skip(1) {
            let body = script.split_once(":\n").map_or("", |(_, b)| b);
            let checked = Command::new("sh")
                .args(["-n", "-c", body])
                .status()
                .context("sh -n")?;
            assert!(
                checked.success(),
                "{name}: a scriptlet is not valid shell:\n{body}"
            );
        }
    }

    // Installed into a scratch root (its scriptlets need the target system's
    // useradd and systemd, which a scratch root has not), the binaries run.
    let root = tempfile::tempdir()?;
    let root_path = root.path().to_str().unwrap();
    let mut install = vec!["--root", root_path, "-i", "--nodeps", "--noscripts"];
    let rpms: Vec<String> = PACKAGES
        .iter()
        .map(|n| rpm_file(n).map(|p| p.display().to_string()))
        .collect::<Result<_>>()?;
    install.extend(rpms.iter().map(String::as_str));
    output("rpm", &install)?;
    let installed = output("rpm", &["--root", root_path, "-qa"])?;
    for name in PACKAGES {
        assert!(installed.contains(name), "{installed}");
        let version = output(
            root.path()
                .join(format!("usr/bin/{name}"))
                .to_str()
                .unwrap(),
            &["--version"],
        )?;
        assert!(version.starts_with(&format!("{name} 0.1.0")), "{version}");
    }
    let completion = std::fs::read_to_string(
        root.path()
            .join("usr/share/bash-completion/completions/mfctl"),
    )?;
    assert!(completion.contains("precheck"));
    Ok(())
}

#[test]
fn the_agent_is_a_static_executable_that_runs_in_an_empty_chroot() -> Result<()> {
    let agent = mf_e2e::target_dir().join("x86_64-unknown-linux-musl/release/mf-agent");
    ensure!(
        agent.exists(),
        "{}: run ./scripts/package first",
        agent.display()
    );
    let program = agent.to_str().unwrap();
    let headers = output("readelf", &["-l", program])?;
    assert!(!headers.contains("INTERP"), "it asks for a dynamic loader");
    let dynamic = output("readelf", &["-d", program])?;
    assert!(
        !dynamic.contains("(NEEDED)"),
        "it needs shared libraries:\n{dynamic}"
    );

    // A root with nothing but the agent and a host tree to read: no libc.
    let jail = tempfile::tempdir()?;
    std::fs::copy(&agent, jail.path().join("mf-agent"))?;
    let host = jail.path().join("host");
    std::fs::create_dir_all(host.join("etc"))?;
    std::fs::copy(
        mf_e2e::fixture("os-release/rhel-7.9"),
        host.join("etc/os-release"),
    )?;
    std::fs::write(host.join("etc/hostname"), "jailed\n")?;
    let jail_path = jail.path().to_str().unwrap();
    let in_jail = |args: &[&str]| -> Result<String> {
        // chroot needs root; elsewhere a user namespace gives it.
        let mut argv = vec![jail_path, "/mf-agent"];
        argv.extend(args);
        if rustix::process::getuid().is_root() {
            output("chroot", &argv)
        } else {
            let mut all = vec!["--user", "--map-root-user", "chroot"];
            all.extend(argv);
            output("unshare", &all)
        }
    };
    let version = in_jail(&["--version"])?;
    assert!(version.starts_with("mf-agent 0.1.0"), "{version}");
    let facts: serde_json::Value =
        serde_json::from_str(&in_jail(&["facts", "--host-root", "/host"])?)?;
    assert_eq!(facts["os"]["id"], "rhel", "{facts:#}");
    assert_eq!(facts["os"]["version"], "7.9", "{facts:#}");
    Ok(())
}

#[test]
fn the_units_verify_and_the_coordinator_is_sandboxed() -> Result<()> {
    let binaries = mf_e2e::target_dir().join("x86_64-unknown-linux-musl/release");
    let units = tempfile::tempdir()?;
    for (unit, binary) in [
        ("mf-agent.service", "mf-agent"),
        ("mf-coordinator.service", "mf-coordinator"),
    ] {
        // The unit as shipped, pointed at the built binary: verify checks
        // that ExecStart exists.
        let text = std::fs::read_to_string(workspace().join("packaging/systemd").join(unit))?;
        let here = text.replace(
            &format!("/usr/bin/{binary}"),
            binaries.join(binary).to_str().unwrap(),
        );
        let path = units.path().join(unit);
        std::fs::write(&path, here)?;
        let verify = Command::new("systemd-analyze")
            .args(["verify", path.to_str().unwrap()])
            .output()
            .context("systemd-analyze (Debian package systemd)")?;
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
        // systemd 219 (EL7) does not know StateDirectory=: the package and
        // tmpfiles.d make the directories.
        assert!(
            !text.lines().any(|l| l.starts_with("StateDirectory")),
            "{unit}"
        );
    }
    let security = output(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            workspace()
                .join("packaging/systemd/mf-coordinator.service")
                .to_str()
                .unwrap(),
        ],
    )?;
    let exposure: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for mf-coordinator.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .context("no exposure line")?
        .parse()?;
    assert!(exposure <= 4.0, "exposure {exposure}:\n{security}");
    Ok(())
}

/// Kills a child process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_env(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} exited {}: {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The README's "Install on a fleet", from the installed files: the PKI made
/// for the service user by the installed mfctl, the installed coordinator
/// started from its packaged configuration, a token, the installed agent
/// enrolled through its packaged configuration's [enroll], then running
/// from it, its labels from that file. What a scratch root cannot do is left
/// out: the scriptlets (useradd, tmpfiles) and systemctl.
#[test]
fn the_install_walk_of_the_readme_works_from_the_installed_files() -> Result<()> {
    let root = tempfile::tempdir()?;
    let r = root.path();
    let rpms: Vec<String> = PACKAGES
        .iter()
        .map(|n| rpm_file(n).map(|p| p.display().to_string()))
        .collect::<Result<_>>()?;
    let mut install = vec![
        "--root",
        r.to_str().unwrap(),
        "-i",
        "--nodeps",
        "--noscripts",
    ];
    install.extend(rpms.iter().map(String::as_str));
    output("rpm", &install)?;
    let bin = |name: &str| r.join("usr/bin").join(name);
    let inside = |path: &str| r.join(path.trim_start_matches('/'));

    // mfctl pki init ... --owner mf-coordinator (here: whoever runs the test).
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(r)?;
    let owner = format!("{}:{}", me.uid(), me.gid());
    let pki = inside("/etc/mf-coordinator/pki");
    run_env(
        &bin("mfctl"),
        &[
            "pki",
            "init",
            "--dir",
            pki.to_str().unwrap(),
            "--name",
            "127.0.0.1",
            "--owner",
            &owner,
        ],
        &[],
    )?;

    // The packaged coordinator.toml, edited as a site would (here: into the
    // scratch root, on loopback ports the coordinator picks and logs).
    let config = inside("/etc/mf-coordinator/coordinator.toml");
    let packaged = std::fs::read_to_string(&config)?;
    let edited = packaged
        .replace(
            "/var/lib/mf-coordinator",
            inside("/var/lib/mf-coordinator").to_str().unwrap(),
        )
        .replace("/etc/mf-coordinator/pki", pki.to_str().unwrap())
        .replace("0.0.0.0:7443", "127.0.0.1:0")
        .replace("127.0.0.1:7444", "127.0.0.1:0")
        .replace("127.0.0.1:9464", "127.0.0.1:0");
    assert_ne!(
        edited, packaged,
        "the packaged config names these paths and ports"
    );
    std::fs::write(&config, edited)?;
    let log_path = r.join("coordinator.log");
    let log = std::fs::File::create(&log_path)?;
    let mut coordinator = Child(
        Command::new(bin("mf-coordinator"))
            .args(["--config", config.to_str().unwrap()])
            .stderr(log)
            .spawn()?,
    );
    let (agent_port, admin_port, metrics_port) =
        mf_e2e::serving_ports(&log_path, || Ok(coordinator.0.try_wait()?))?;
    mf_e2e::wait_for(
        "the installed coordinator",
        std::time::Duration::from_secs(20),
        || Ok(mf_e2e::http_get(metrics_port, "/healthz").is_ok_and(|(s, _)| s.contains("200"))),
    )?;
    let admin = format!("127.0.0.1:{admin_port}");
    let operator_env = [
        ("MF_COORDINATOR", admin.as_str()),
        ("MF_PKI_DIR", pki.to_str().unwrap()),
    ];
    let token = run_env(
        &bin("mfctl"),
        &["token", "create", "--ttl", "1h"],
        &operator_env,
    )?;

    // The agent: the CA beside its packaged agent.toml, whose [enroll],
    // state_dir and host_root a site sets.
    let tree = mf_e2e::host_root(
        &r.join("machine"),
        mf_e2e::HostOs::Rhel79,
        "walk",
        "example.com",
    );
    std::fs::copy(pki.join("ca.pem"), inside("/etc/mf-agent/ca.pem"))?;
    let agent_config = inside("/etc/mf-agent/agent.toml");
    let packaged = std::fs::read_to_string(&agent_config)?;
    let edited = packaged
        .replace(
            "coordinator.example.com:7443",
            &format!("127.0.0.1:{agent_port}"),
        )
        .replace(
            "\"/etc/mf-agent/ca.pem\"",
            &format!("{:?}", inside("/etc/mf-agent/ca.pem")),
        )
        .replace(
            "\"/var/lib/mf-agent\"",
            &format!("{:?}", inside("/var/lib/mf-agent")),
        )
        .replace("# host_root = \"/\"", &format!("host_root = {:?}", tree));
    assert_ne!(edited, packaged);
    std::fs::write(&agent_config, edited)?;
    let enrolled = run_env(
        &bin("mf-agent"),
        &["enroll", "--config", agent_config.to_str().unwrap()],
        &[("MF_ENROLL_TOKEN", token.trim())],
    )?;
    assert!(
        enrolled.contains("enrolled as walk.example.com"),
        "{enrolled}"
    );
    let log = std::fs::File::create(r.join("agent.log"))?;
    let _agent = Child(
        Command::new(bin("mf-agent"))
            .args(["run", "--config", agent_config.to_str().unwrap()])
            .stderr(log)
            .spawn()?,
    );
    mf_e2e::wait_for(
        "the installed agent to connect",
        std::time::Duration::from_secs(30),
        || {
            let listed = run_env(
                &bin("mfctl"),
                &[
                    "hosts",
                    "list",
                    "-l",
                    "app=billing,connected=true",
                    "-o",
                    "json",
                ],
                &operator_env,
            )?;
            Ok(listed.contains("walk.example.com"))
        },
    )?;
    Ok(())
}
