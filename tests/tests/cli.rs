//! mfctl refuses bad input with the reason and changes nothing, checked over
//! the real binary: a token for zero hosts, a URL given as the coordinator's
//! name.

use anyhow::Result;
use mf_e2e::{Deployment, run};

#[test]
fn a_token_for_no_host_is_refused_at_the_command_line() -> Result<()> {
    let deployment = Deployment::new()?;
    let ran = deployment.mfctl(&["token", "create", "--uses", "0"]);
    assert!(!ran.success, "{}", ran.stdout);
    assert_eq!(ran.code, Some(2), "a usage error: {}", ran.stderr);
    assert!(ran.stderr.contains("--uses"), "{}", ran.stderr);
    let ran = deployment.mfctl(&["token", "create", "--uses", "1"]);
    assert!(ran.success, "one use is fine: {}", ran.stderr);
    Ok(())
}

#[test]
fn pki_init_refuses_a_url_as_a_name_and_writes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    let ran = run(
        "mfctl",
        &[
            "pki",
            "init",
            "--dir",
            pki.to_str().unwrap_or_default(),
            "--name",
            "https://coordinator.example.com",
        ],
        &[],
    );
    assert!(!ran.success, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("is not a DNS name or an IP address"),
        "{}",
        ran.stderr
    );
    assert!(!pki.join("ca.pem").exists() && !pki.join("ca-key.pem").exists());
    Ok(())
}
