use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use x509_parser::prelude::*;

use super::*;
use crate::Owner;

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

fn csr(params: CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    params.serialize_request(&key).expect("csr").der().to_vec()
}

#[test]
fn a_csr_asking_for_ca_and_extra_names_gets_a_plain_agent_leaf() {
    let (ca, _) = CertificateAuthority::generate().expect("ca");
    let mut greedy = CertificateParams::new(vec!["evil.example.com".to_string()]).expect("params");
    greedy.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    greedy
        .subject_alt_names
        .push(SanType::URI("mf://operator/root".try_into().expect("uri")));
    let issued = ca
        .issue_agent("web-01.example.com", &csr(greedy), AGENT_VALIDITY)
        .expect("issued");

    let der = der_of(&issued.pem);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    let constraints = cert.basic_constraints().expect("ok").expect("present");
    assert!(!constraints.value.ca, "issued certificate is a CA");
    let san = cert
        .subject_alternative_name()
        .expect("ok")
        .expect("present");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::URI("mf://agent/web-01.example.com")]
    );
    assert_eq!(
        peer_role(&der.clone().into()),
        Ok(PeerRole::Agent {
            host_id: "web-01.example.com".into()
        })
    );
}

#[test]
fn a_csr_with_a_forged_signature_is_refused() {
    let (ca, _) = CertificateAuthority::generate().expect("ca");
    let mut bytes = csr(CertificateParams::default());
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    assert!(matches!(
        ca.issue_agent("h", &bytes, AGENT_VALIDITY),
        Err(PkiError::BadCsr(_))
    ));
    assert!(matches!(
        ca.issue_agent("h", b"not der", AGENT_VALIDITY),
        Err(PkiError::BadCsr(_))
    ));
}

#[test]
fn operator_and_server_certificates_carry_their_roles() {
    let (ca, _) = CertificateAuthority::generate().expect("ca");
    let operator = ca.issue_operator("alice").expect("operator");
    assert_eq!(
        peer_role(&der_of(&operator.cert).into()),
        Ok(PeerRole::Operator {
            name: "alice".into()
        })
    );
    let server = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()])
        .expect("server");
    assert_eq!(
        peer_role(&der_of(&server.cert).into()),
        Err(RoleError::NoRole)
    );
}

#[test]
fn a_loaded_ca_signs_like_the_generated_one() {
    let (_, pem) = CertificateAuthority::generate().expect("ca");
    let loaded = CertificateAuthority::load(&pem).expect("loads");
    let issued = loaded
        .issue_agent("db-1", &csr(CertificateParams::default()), AGENT_VALIDITY)
        .expect("issued");
    let der = der_of(&issued.pem);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    let ca_der = der_of(&pem.cert);
    let (_, ca_cert) = parse_x509_certificate(&ca_der).expect("parses");
    assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
    assert_eq!(cert.issuer(), ca_cert.subject());
}

#[test]
fn an_agent_certificate_lives_the_lifetime_asked_and_its_serial_reads_back() {
    let (ca, _) = CertificateAuthority::generate().expect("ca");
    let lifetime = Duration::from_secs(20);
    let before = ::time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let issued = ca
        .issue_agent("h", &csr(CertificateParams::default()), lifetime)
        .expect("issued");
    let after = ::time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let not_after = not_after_unix_ms(&issued.pem).expect("not after");
    assert_eq!(not_after, issued.not_after_unix_ms / 1000 * 1000);
    assert!(
        (before + 19_000..=after + 21_000).contains(&not_after),
        "{not_after}"
    );
    let der = CertificateDer::from(der_of(&issued.pem));
    assert_eq!(serial_hex(&der).expect("serial"), issued.serial_hex);
    let identity = peer_identity(&der).expect("identity");
    assert_eq!(identity.serial_hex, issued.serial_hex);
    // When it was issued, not its backdated notBefore (to the second).
    assert!(
        (before - 1_000..=after + 1_000).contains(&identity.issued_unix_ms),
        "{} not in {before}..{after}",
        identity.issued_unix_ms
    );
}

#[test]
fn init_writes_private_keys_0600_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = PkiPaths::new(dir.path().join("pki"));
    PkiFiles::init(&paths, &["localhost".into()], "admin", None).expect("init");
    for key in [paths.ca_key(), paths.server_key(), paths.operator_key()] {
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    assert!(matches!(
        PkiFiles::init(&paths, &["localhost".into()], "admin", None),
        Err(PkiError::Files(FilesError::Exists(_)))
    ));
}

#[test]
fn names_that_are_not_dns_names_or_addresses_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = PkiPaths::new(dir.path().join("pki"));
    for bad in ["https://x", "host:7443", "a..b", "-a.example.com", "a/b"] {
        let err = PkiFiles::init(&paths, &[bad.to_string()], "root", None).expect_err(bad);
        assert!(
            err.to_string()
                .contains("is not a DNS name or an IP address"),
            "{bad}: {err}"
        );
        assert!(!paths.dir().exists(), "{bad}: nothing is written");
    }
    PkiFiles::init(
        &paths,
        &[
            "coordinator.example.com".into(),
            "10.0.0.5".into(),
            "::1".into(),
        ],
        "root",
        None,
    )
    .expect("good names");
}

#[test]
fn a_private_key_readable_by_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = PkiPaths::new(dir.path().join("pki"));
    PkiFiles::init(&paths, &["localhost".into()], "admin", None).expect("init");
    paths.load_server().expect("0600 keys load");
    std::fs::set_permissions(paths.server_key(), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let err = paths.load_server().expect_err("group-readable");
    let text = err.to_string();
    assert!(
        text.contains("coordinator-key.pem is readable by group or others (mode 0640)"),
        "{text}"
    );
    assert!(text.contains("chmod 600"), "{text}");
    let missing = PkiPaths::new(dir.path().join("nowhere"))
        .load_ca()
        .expect_err("missing");
    assert!(missing.to_string().contains("mfctl pki init"), "{missing}");
}

#[test]
fn an_owner_is_a_local_user_or_uid_gid_and_gets_the_coordinator_s_files() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/bash\nmf-coordinator:x:996:994::/var/lib/mf-coordinator:/sbin/nologin\n",
    )
    .expect("write");
    assert_eq!(
        crate::files::lookup_owner_in("mf-coordinator", &passwd).expect("found"),
        Owner { uid: 996, gid: 994 }
    );
    assert_eq!(
        crate::files::lookup_owner_in("12:34", &passwd).expect("numeric"),
        Owner { uid: 12, gid: 34 }
    );
    let err = crate::files::lookup_owner_in("nobody-here", &passwd).expect_err("unknown");
    assert!(err.to_string().contains("create the service user"), "{err}");

    // Chowning to oneself works for anyone: the files change hands as asked.
    let me = std::fs::metadata(dir.path()).expect("meta");
    let owner = Owner {
        uid: me.uid(),
        gid: me.gid(),
    };
    let paths = PkiPaths::new(dir.path().join("pki"));
    PkiFiles::init(&paths, &["localhost".into()], "admin", Some(owner)).expect("init");
    for path in [
        paths.dir().to_path_buf(),
        paths.ca_key(),
        paths.server_key(),
    ] {
        let meta = std::fs::metadata(&path).expect("meta");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (owner.uid, owner.gid),
            "{}",
            path.display()
        );
    }
}
