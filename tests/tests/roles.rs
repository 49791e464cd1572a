//! Operators as people, over the real binaries: each makes a key, an admin
//! signs it with a role (and a scope); every admin verb is tried by every
//! role, a scoped operator tries hosts inside and outside its scope, a role
//! changes without a new certificate, and a revoked operator is refused at
//! the next connection.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use mf_e2e::{Deployment, HostOs, Ran, run, wait_for};

/// An operator's own PKI directory: their key, their certificate, the CA.
fn person(deployment: &Deployment, name: &str, role: &str, scope: &str) -> PathBuf {
    let dir = deployment.path(&format!("people/{name}"));
    let requested = run(
        "mfctl",
        &[
            "operator",
            "request",
            "--name",
            name,
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(requested.success, "{}", requested.stderr);
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join("operator.pem");
    let added = deployment.mfctl(&[
        "operator",
        "add",
        name,
        "--role",
        role,
        "--scope",
        scope,
        "--csr",
        csr.to_str().unwrap(),
        "--out",
        cert.to_str().unwrap(),
    ]);
    assert!(added.success, "{name}: {}", added.stderr);
    std::fs::copy(deployment.pki.join("ca.pem"), dir.join("ca.pem")).unwrap();
    dir
}

fn as_person(deployment: &Deployment, dir: &Path, args: &[&str]) -> Ran {
    run(
        "mfctl",
        args,
        &[
            ("MF_COORDINATOR", &deployment.coordinator.admin_address()),
            ("MF_PKI_DIR", dir.to_str().unwrap()),
        ],
    )
}

fn denied(ran: &Ran) -> bool {
    ran.stderr.contains("PermissionDenied")
}

#[test]
fn every_verb_is_checked_against_every_role_and_scope() -> Result<()> {
    let deployment = Deployment::new()?;
    let token = deployment.token(&["--uses", "4"])?;
    let mut agents = Vec::new();
    for name in ["billing-1", "crm-1", "spare-1", "spare-2"] {
        // What the agent says does not put a host into a scope.
        let run = ["--label", "app=billing"];
        agents.push(deployment.start_agent(&token, name, HostOs::Rhel79, None, &run)?);
    }
    wait_for("four agents", Duration::from_secs(30), || {
        Ok(deployment.hosts("connected=true")?.len() == 4)
    })?;
    // The PKI's operator is the admin until the first operator is added,
    // and stays one after.
    let vera = person(&deployment, "vera", "viewer", "");
    let otto = person(&deployment, "otto", "operator", "");
    let ada = person(&deployment, "ada", "admin", "");
    let bill = person(&deployment, "bill", "operator", "app=billing");
    let pinned = deployment.mfctl(&["hosts", "label", "billing-1.example.com", "app=billing"]);
    assert!(pinned.success, "{}", pinned.stderr);

    let backup_file = deployment.path("roles-backup.jsonl");
    let backup = backup_file.to_str().unwrap();
    // (command, least role, whether a scoped operator may do it).
    let verbs: Vec<(Vec<&str>, &str, bool)> = vec![
        (vec!["hosts", "list"], "viewer", true),
        (
            vec!["hosts", "show", "billing-1.example.com"],
            "viewer",
            true,
        ),
        (vec!["report", "readiness"], "viewer", true),
        (vec!["wave", "list"], "viewer", true),
        (vec!["operator", "whoami"], "viewer", true),
        (vec!["precheck", "--target", "rhel-8.10"], "operator", true),
        (
            vec!["migrate", "billing-1.example.com", "--target", "rhel-8.10"],
            "operator",
            true,
        ),
        (
            vec!["hosts", "retry", "billing-1.example.com"],
            "operator",
            true,
        ),
        (
            vec![
                "wave",
                "create",
                "w",
                "-l",
                "os=rhel",
                "--target",
                "rhel-8.10",
                "--dry-run",
            ],
            "operator",
            true,
        ),
        (vec!["token", "create"], "admin", false),
        (
            vec!["hosts", "label", "crm-1.example.com", "tier=1"],
            "admin",
            false,
        ),
        (vec!["operator", "list"], "admin", false),
        (vec!["backup", backup], "admin", false),
    ];
    let rank = |role: &str| {
        ["viewer", "operator", "admin"]
            .iter()
            .position(|r| *r == role)
    };
    let people = [
        ("vera", &vera, "viewer", false),
        ("otto", &otto, "operator", false),
        ("ada", &ada, "admin", false),
        ("bill", &bill, "operator", true),
    ];
    for (name, dir, role, scoped) in &people {
        for (args, needs, scopable) in &verbs {
            let ran = as_person(&deployment, dir, args);
            // The next person's backup needs the name free again.
            let _ = std::fs::remove_file(&backup_file);
            let allowed = rank(role) >= rank(needs) && (!scoped || *scopable);
            assert_eq!(
                !denied(&ran),
                allowed,
                "{name} ({role}{}) mfctl {}: {}{}",
                if *scoped { ", scoped" } else { "" },
                args.join(" "),
                ran.stdout,
                ran.stderr
            );
            if !allowed {
                assert_eq!(ran.code, Some(4), "{}", ran.stderr);
            }
        }
    }

    // A scoped operator sees and acts on its scope only, whatever agents say.
    let listed = as_person(&deployment, &bill, &["hosts", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout)?;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["billing-1.example.com"]);
    for args in [
        vec!["hosts", "show", "crm-1.example.com"],
        vec!["migrate", "crm-1.example.com", "--target", "rhel-8.10"],
        vec!["hosts", "rollback", "crm-1.example.com"],
    ] {
        let ran = as_person(&deployment, &bill, &args);
        assert!(
            denied(&ran) && ran.stderr.contains("outside the scope of operator bill"),
            "{args:?}: {}",
            ran.stderr
        );
    }
    let readiness = as_person(&deployment, &bill, &["report", "readiness", "-o", "json"]);
    let readiness: serde_json::Value = serde_json::from_str(&readiness.stdout)?;
    assert_eq!(readiness["summary"]["hosts"], 1, "{readiness}");
    let plan = as_person(
        &deployment,
        &bill,
        &[
            "wave",
            "create",
            "wb",
            "-l",
            "os=rhel",
            "--target",
            "rhel-8.10",
            "--dry-run",
            "-o",
            "json",
        ],
    );
    assert!(!plan.stdout.contains("crm-1"), "{}", plan.stdout);

    // Only admins delete and revoke hosts.
    for (dir, host) in [
        (&otto, "spare-1.example.com"),
        (&bill, "spare-1.example.com"),
    ] {
        assert!(denied(&as_person(
            &deployment,
            dir,
            &["hosts", "delete", host]
        )));
        assert!(denied(&as_person(
            &deployment,
            dir,
            &["hosts", "revoke", host]
        )));
    }
    assert!(
        as_person(
            &deployment,
            &ada,
            &["hosts", "delete", "spare-1.example.com"]
        )
        .success
    );
    assert!(
        as_person(
            &deployment,
            &ada,
            &["hosts", "revoke", "spare-2.example.com"]
        )
        .success
    );

    // A role changes in the store, with the same certificate.
    assert!(denied(&as_person(
        &deployment,
        &vera,
        &["precheck", "--target", "rhel-8.10"]
    )));
    let set = as_person(
        &deployment,
        &ada,
        &["operator", "set", "vera", "--role", "operator"],
    );
    assert!(set.success, "{}", set.stderr);
    assert!(!denied(&as_person(
        &deployment,
        &vera,
        &["precheck", "--target", "rhel-8.10"]
    )));

    // A revoked operator is refused from the next connection on.
    let revoked = as_person(&deployment, &ada, &["operator", "revoke", "otto"]);
    assert!(revoked.success, "{}", revoked.stderr);
    let refused = as_person(&deployment, &otto, &["hosts", "list"]);
    assert!(!refused.success, "{}", refused.stdout);
    deployment.coordinator.expect_metric_at_least(
        "mf_refused_handshakes_total{listener=\"admin\",reason=\"revoked_certificate\"}",
        1.0,
    )?;
    // The last admin cannot be revoked or demoted: nobody could add one.
    assert!(as_person(&deployment, &ada, &["operator", "revoke", "admin"]).success);
    let last = as_person(&deployment, &ada, &["operator", "revoke", "ada"]);
    assert!(
        !last.success && last.stderr.contains("last admin"),
        "{}",
        last.stderr
    );
    // The PKI's operator, revoked, is refused too.
    assert!(!deployment.mfctl(&["hosts", "list"]).success);
    let listed = as_person(&deployment, &ada, &["operator", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout)?;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "admin", "bill", "otto", "vera"]);

    // Every change and every refusal is in the audit chain, which holds.
    let audit = as_person(&deployment, &ada, &["audit", "list", "-o", "json"]);
    assert!(audit.success, "{}", audit.stderr);
    let audit: serde_json::Value = serde_json::from_str(&audit.stdout)?;
    let entries = audit.as_array().unwrap();
    let has = |operator: &str, verb: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["operator"] == operator
                && e["verb"] == verb
                && e["outcome"].as_str().unwrap().starts_with(outcome)
        })
    };
    assert!(has("admin", "manage-operators", "ok"), "{audit:#}");
    assert!(has(
        "bill",
        "create-token",
        "refused: operator bill has the operator role"
    ));
    assert!(has(
        "vera",
        "precheck",
        "refused: operator vera has the viewer role"
    ));
    assert!(has("ada", "revoke-host", "ok"));
    assert!(has("otto", "migrate", "ok") || has("otto", "migrate", "failed"));
    assert!(has(
        "bill",
        "migrate",
        "refused: host crm-1.example.com is outside"
    ));
    let verified = as_person(&deployment, &ada, &["audit", "verify"]);
    assert!(
        verified.success && verified.stdout.contains("the audit chain holds"),
        "{}{}",
        verified.stdout,
        verified.stderr
    );
    let exported = as_person(&deployment, &ada, &["audit", "export"]);
    assert_eq!(exported.stdout.lines().count(), entries.len());
    for line in exported.stdout.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        assert_eq!(entry["hash"].as_str().map(str::len), Some(64));
    }
    // A scoped operator reads only their own entries.
    let own = as_person(&deployment, &bill, &["audit", "list", "-o", "json"]);
    let own: serde_json::Value = serde_json::from_str(&own.stdout)?;
    assert!(
        own.as_array()
            .unwrap()
            .iter()
            .all(|e| e["operator"] == "bill"),
        "{own:#}"
    );
    // The job's timeline names who asked.
    let shown = as_person(
        &deployment,
        &ada,
        &["hosts", "show", "billing-1.example.com", "-o", "json"],
    );
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout)?;
    let created = shown["job"]["timeline"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(created.starts_with("job created by "), "{shown:#}");
    drop(agents);
    Ok(())
}

/// An operator renews their own certificate: mfctl warns a month ahead,
/// `operator renew` makes a new key here and writes the new certificate
/// where mfctl reads it, and the coordinator takes it.
#[test]
fn an_operator_renews_their_own_certificate() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--operator-cert-lifetime", "1h"])?;
    let rita = person(&deployment, "rita", "viewer", "");
    let before = std::fs::read_to_string(rita.join("operator.pem"))?;
    let key_before = std::fs::read_to_string(rita.join("operator-key.pem"))?;
    let listed = as_person(&deployment, &rita, &["hosts", "list"]);
    assert!(listed.success, "{}", listed.stderr);
    assert!(
        listed
            .stderr
            .contains("warning: your operator certificate expires at")
            && listed.stderr.contains("mfctl operator renew"),
        "{}",
        listed.stderr
    );
    let renewed = as_person(&deployment, &rita, &["operator", "renew"]);
    assert!(renewed.success, "{}", renewed.stderr);
    assert!(
        renewed
            .stdout
            .contains("renewed the certificate of operator rita"),
        "{}",
        renewed.stdout
    );
    assert_ne!(std::fs::read_to_string(rita.join("operator.pem"))?, before);
    assert_ne!(
        std::fs::read_to_string(rita.join("operator-key.pem"))?,
        key_before
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rita.join("operator-key.pem"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let me = as_person(&deployment, &rita, &["operator", "whoami", "-o", "json"]);
    assert!(me.success, "{}", me.stderr);
    let me: serde_json::Value = serde_json::from_str(&me.stdout)?;
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("rita"), Some("viewer"))
    );
    // The renewal is in the audit, under the operator.
    let audit = deployment.mfctl(&["audit", "list", "--operator", "rita", "-o", "json"]);
    assert!(
        audit.stdout.contains("renew-own-certificate"),
        "{}",
        audit.stdout
    );
    Ok(())
}

/// A wave past the site's blast radius (here: more than 5 in parallel)
/// starts only when a second, different admin starts it too; an operator's
/// start counts as the first, never the second.
#[test]
fn a_wave_past_the_blast_radius_needs_two_admins() -> Result<()> {
    let deployment = Deployment::with_coordinator_flags(&["--blast-radius-max-parallel", "5"])?;
    // Two RHEL 7.9 hosts ready for 8.10, one for each wave.
    let token = deployment.token(&["--uses", "2"])?;
    let mut agents = Vec::new();
    for app in ["a", "b"] {
        let label = format!("app={app}");
        let name = format!("host-{app}");
        let run = ["--label", label.as_str()];
        agents.push(deployment.start_agent(
            &token,
            &name,
            HostOs::Rhel79,
            Some(mf_e2e::LEAPP_READY),
            &run,
        )?);
    }
    wait_for("two agents", Duration::from_secs(30), || {
        Ok(deployment.hosts("connected=true")?.len() == 2)
    })?;
    let prechecked = deployment.mfctl(&["precheck", "--target", "rhel-8.10", "--wait"]);
    assert!(prechecked.success, "{}", prechecked.stderr);
    let ada = person(&deployment, "ada", "admin", "");
    let otto = person(&deployment, "otto", "operator", "");
    let small = as_person(
        &deployment,
        &otto,
        &[
            "wave",
            "create",
            "small",
            "-l",
            "app=a",
            "--target",
            "rhel-8.10",
            "--max-parallel",
            "5",
        ],
    );
    assert!(small.success, "{}", small.stderr);
    let started = as_person(&deployment, &otto, &["wave", "start", "small"]);
    assert!(
        started.success,
        "within the limits, one start: {}",
        started.stderr
    );

    let big = as_person(
        &deployment,
        &otto,
        &[
            "wave",
            "create",
            "big",
            "-l",
            "app=b",
            "--target",
            "rhel-8.10",
            "--max-parallel",
            "50",
        ],
    );
    assert!(big.success, "{}", big.stderr);
    let first = as_person(&deployment, &otto, &["wave", "start", "big", "-o", "json"]);
    assert!(first.success, "{}", first.stderr);
    let first: serde_json::Value = serde_json::from_str(&first.stdout)?;
    assert_eq!(first["state"], "created", "{first:#}");
    assert!(
        first["waiting"]
            .as_str()
            .unwrap_or_default()
            .contains("otto asked to start it"),
        "{first:#}"
    );
    let again = as_person(&deployment, &otto, &["wave", "start", "big"]);
    assert!(
        !again.success && again.stderr.contains("different admin"),
        "{}",
        again.stderr
    );
    let second = as_person(&deployment, &ada, &["wave", "start", "big", "-o", "json"]);
    assert!(second.success, "{}", second.stderr);
    let second: serde_json::Value = serde_json::from_str(&second.stdout)?;
    assert_ne!(second["state"], "created", "{second:#}");
    drop(agents);
    Ok(())
}
