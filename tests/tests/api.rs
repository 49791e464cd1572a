//! The REST API as a portal uses it: a real coordinator started with
//! `--api-listen` and an `[oidc]` provider whose keys the test holds (an RSA
//! key from the fixtures, an EC key made here), real agents on emulated
//! RHEL 7.9 hosts, and a real HTTPS client. Tokens are signed like an SSO
//! provider signs them; a group claim makes an application owner.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mf_e2e::http::{Answer, ApiClient, Credentials};
use mf_e2e::receiver::{Mode, Receiver};
use mf_e2e::{Deployment, Machine, fixture, wait_for};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

const ISSUER: &str = "https://sso.test/realms/corp";
const AUDIENCE: &str = "migration-factory";

/// The test's OIDC provider: the fixture's RSA key (kid test-rsa-1) and an
/// EC P-256 key made now (kid test-ec-1), both in the JWKS file the
/// coordinator reads.
struct Provider {
    rsa: EncodingKey,
    ec: EncodingKey,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new P-256 key: its PKCS#8 and its JWK.
fn ec_key(kid: &str) -> (Vec<u8>, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap()
        .as_ref()
        .to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (pkcs8, jwk)
}

impl Provider {
    /// Writes the JWKS and the coordinator's config (OIDC, grants and the
    /// self-service rules given) into `dir`; returns the config's path.
    fn new(dir: &Path, top: &str, self_service: &str) -> Result<(Self, String)> {
        let rsa_jwks: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("oidc/jwks-rsa.json"))?)?;
        let (ec_pkcs8, ec_jwk) = ec_key("test-ec-1");
        let mut keys = rsa_jwks["keys"].as_array().unwrap().clone();
        keys.push(ec_jwk);
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, json!({ "keys": keys }).to_string())?;
        let config = dir.join("coordinator.toml");
        std::fs::write(
            &config,
            format!(
                "{top}[oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
                 jwks_file = \"{}\"\nname_claim = \"preferred_username\"\n\
                 [[oidc.grants]]\nclaim = \"groups\"\nvalue = \"app-billing-owners\"\n\
                 role = \"operator\"\nscope = \"app=billing\"\n\
                 [[oidc.grants]]\nclaim = \"groups\"\nvalue = \"auditors\"\nrole = \"viewer\"\n\
                 [[oidc.grants]]\nclaim = \"groups\"\nvalue = \"migration-admins\"\nrole = \"admin\"\n\
                 [self_service]\n{self_service}",
                jwks.display()
            ),
        )?;
        let rsa_pem = std::fs::read(fixture("oidc/rsa-key.pem"))?;
        Ok((
            Self {
                rsa: EncodingKey::from_rsa_pem(&rsa_pem)?,
                ec: EncodingKey::from_ec_der(&ec_pkcs8),
            },
            config.display().to_string(),
        ))
    }

    /// A token for `user` in `groups`, RS256 by default; `edit` changes the
    /// claims before signing.
    fn token(&self, user: &str, groups: &[&str], edit: impl FnOnce(&mut Value)) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": format!("id-{user}"),
            "preferred_username": user, "groups": groups,
            "iat": now, "exp": now + 600,
        });
        edit(&mut claims);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-rsa-1".into());
        jsonwebtoken::encode(&header, &claims, &self.rsa).unwrap()
    }

    fn es256(&self, user: &str, groups: &[&str]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": format!("id-{user}"),
            "preferred_username": user, "groups": groups, "exp": now + 600,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("test-ec-1".into());
        jsonwebtoken::encode(&header, &claims, &self.ec).unwrap()
    }
}

/// A deployment with the API on, three RHEL 7.9 machines (b1 and b2 of
/// billing, c1 of crm) with their application pinned by an admin.
struct Portal {
    deployment: Deployment,
    provider: Provider,
    api: ApiClient,
    _machines: Vec<Machine>,
    _dir: tempfile::TempDir,
}

fn portal(top: &str, self_service: &str, machines: &[(&str, &str)]) -> Result<Portal> {
    let dir = tempfile::tempdir()?;
    let (provider, config) = Provider::new(dir.path(), top, self_service)?;
    let deployment =
        Deployment::with_coordinator_flags(&["--config", &config, "--api-listen", "127.0.0.1:0"])?;
    let port = deployment.coordinator.api_port.expect("the API listens");
    let api = ApiClient::new(port, &deployment.pki)?;
    let token = deployment.token(&["--uses", &machines.len().to_string()])?;
    let started = machines
        .iter()
        .map(|(name, app)| deployment.rhel79_machine(&token, name, app, ""))
        .collect::<Result<Vec<_>>>()?;
    wait_for("the machines to connect", Duration::from_secs(30), || {
        let list = deployment.hosts("connected=true")?;
        Ok(list.len() == machines.len() && list.iter().all(|h| !h["facts"].is_null()))
    })?;
    for (name, app) in machines {
        let pinned = deployment.mfctl(&[
            "hosts",
            "label",
            &format!("{name}.example.com"),
            &format!("app={app}"),
        ]);
        assert!(pinned.success, "{}", pinned.stderr);
    }
    Ok(Portal {
        deployment,
        provider,
        api,
        _machines: started,
        _dir: dir,
    })
}

fn problem(answer: &Answer, status: u16, detail: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json"),
        "{answer:?}"
    );
    let text = answer.body["detail"].as_str().unwrap_or_default();
    assert!(text.contains(detail), "{detail:?} not in {answer:?}");
    assert_eq!(answer.body["status"], status);
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

/// Pre-checks a host through the API and waits for its verdict.
fn precheck(portal: &Portal, who: &Credentials, host: &str) -> Result<()> {
    let asked = portal.api.post(
        &format!("/v1/hosts/{host}/precheck"),
        who,
        &json!({"target": "rhel-8.10"}),
    )?;
    assert_eq!(asked.status, 202, "{asked:?}");
    wait_for(&format!("{host} ready"), Duration::from_secs(60), || {
        Ok(portal.api.get(&format!("/v1/hosts/{host}"), who)?.body["readiness"] == "ready")
    })
}

fn waves(deployment: &Deployment) -> Result<Vec<Value>> {
    let ran = deployment.mfctl(&["wave", "list", "-o", "json"]);
    if !ran.success {
        bail!("wave list: {}", ran.stderr);
    }
    Ok(serde_json::from_str(&ran.stdout)?)
}

#[test]
fn an_owner_sees_their_hosts_launches_once_follows_and_is_refused_elsewhere() -> Result<()> {
    let portal = portal(
        "",
        "budgets = [\"app=1\"]\nmax_parallel = 2\n",
        &[("b1", "billing"), ("b2", "billing"), ("c1", "crm")],
    )?;
    let (api, deployment) = (&portal.api, &portal.deployment);
    let owner = Credentials::Bearer(portal.provider.token(
        "alice",
        &["app-billing-owners"],
        |_| {},
    ));

    // Nobody: refused with a challenge, and the document is public to no one.
    let anonymous = api.get("/v1/hosts", &Credentials::None)?;
    problem(&anonymous, 401, "bearer token");
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer error=\"invalid_token\"")),
        "{anonymous:?}"
    );

    // The owner's hosts, a page at a time; the other application's stay out.
    let all = api.get("/v1/hosts", &owner)?;
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(ids(&all), ["b1.example.com", "b2.example.com"]);
    assert_eq!(all.body["items"][0]["readiness"], "unknown");
    let first = api.get("/v1/hosts?limit=1", &owner)?;
    assert_eq!(ids(&first), ["b1.example.com"]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = api.get(&format!("/v1/hosts?limit=1&cursor={cursor}"), &owner)?;
    assert_eq!(ids(&second), ["b2.example.com"]);
    assert!(second.body["next_cursor"].is_null(), "{second:?}");
    let selected = api.get("/v1/hosts?selector=app%3Dcrm", &owner)?;
    assert!(ids(&selected).is_empty(), "a selector never widens a scope");
    problem(
        &api.get("/v1/hosts?selector=app%20in%20(", &owner)?,
        400,
        "",
    );
    problem(&api.get("/v1/hosts?limit=0", &owner)?, 400, "limit 0");
    problem(&api.get("/v1/hosts?colour=red", &owner)?, 400, "colour");
    problem(
        &api.get("/v1/hosts/c1.example.com", &owner)?,
        403,
        "outside the scope",
    );
    problem(
        &api.get("/v1/hosts/nothing.example.com", &owner)?,
        404,
        "nothing.example.com",
    );

    // Pre-checks asked through the API; readiness follows.
    precheck(&portal, &owner, "b1.example.com")?;
    precheck(&portal, &owner, "b2.example.com")?;
    let b1 = api.get("/v1/hosts/b1.example.com", &owner)?;
    assert_eq!(
        (
            b1.body["readiness"].as_str(),
            b1.body["precheck_target"].as_str()
        ),
        (Some("ready"), Some("rhel-8.10"))
    );
    assert!(b1.body["before_relaunching"].as_array().unwrap().is_empty());

    // Bad bodies change nothing.
    let before = waves(deployment)?.len();
    let raw = |body: &[u8]| api.call("POST", "/v1/migrations", &owner, &[], Some(body));
    problem(&raw(b"{\"target\": ")?, 400, "");
    problem(
        &raw(br#"{"selector": "app=billing", "target": "rhel-8.10", "when": "now"}"#)?,
        422,
        "unknown field `when`",
    );
    problem(&raw(&vec![b' '; 70 * 1024])?, 413, "over 65536 bytes");
    problem(
        &raw(br#"{"selector": "app in (", "target": "rhel-8.10"}"#)?,
        400,
        "",
    );
    problem(
        &raw(br#"{"host_id": "c1.example.com", "target": "rhel-8.10"}"#)?,
        403,
        "outside the scope",
    );
    assert_eq!(waves(deployment)?.len(), before, "nothing was created");

    // The launch, retried by a portal: one request, one wave.
    let launch = json!({"selector": "app=billing", "target": "rhel-8.10"});
    let key = [("idempotency-key", "portal-order-4711")];
    let body = launch.to_string();
    let launched = api.call(
        "POST",
        "/v1/migrations",
        &owner,
        &key,
        Some(body.as_bytes()),
    )?;
    assert_eq!(launched.status, 202, "{launched:?}");
    let id = launched.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        launched.header("location"),
        Some(format!("/v1/migrations/{id}").as_str())
    );
    assert_eq!(
        launched.body["policy"],
        json!(["budget app=1", "at most 2 hosts at once"])
    );
    let again = api.call(
        "POST",
        "/v1/migrations",
        &owner,
        &key,
        Some(body.as_bytes()),
    )?;
    assert_eq!(
        (again.status, again.body["id"].as_str()),
        (202, Some(id.as_str())),
        "{again:?}"
    );
    let other = json!({"selector": "app=billing", "target": "rhel-9.6"}).to_string();
    problem(
        &api.call(
            "POST",
            "/v1/migrations",
            &owner,
            &key,
            Some(other.as_bytes()),
        )?,
        422,
        "Idempotency-Key was used",
    );
    let requests: Vec<Value> = waves(deployment)?
        .into_iter()
        .filter(|w| w["name"].as_str().is_some_and(|n| n.starts_with("req-")))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");

    // Followed to the end: both hosts, one at a time (budget app=1).
    wait_for("the request to complete", Duration::from_secs(180), || {
        Ok(api.get(&format!("/v1/migrations/{id}"), &owner)?.body["state"] == "completed")
    })?;
    let done = api.get(&format!("/v1/migrations/{id}"), &owner)?;
    assert_eq!(done.body["hosts"], json!({"succeeded": 2}), "{done:?}");
    for host in done.body["followed"].as_array().unwrap() {
        assert_eq!(host["migration"]["state"], "succeeded", "{host}");
        assert!(host["timeline"].as_array().unwrap().len() >= 3, "{host}");
    }
    problem(
        &api.call("DELETE", &format!("/v1/migrations/{id}"), &owner, &[], None)?,
        409,
        "",
    );

    // A viewer by another group, with an ES256 token: reads all, changes nothing.
    let auditor = Credentials::Bearer(portal.provider.es256("victor", &["auditors"]));
    assert_eq!(ids(&api.get("/v1/hosts", &auditor)?).len(), 3);
    problem(
        &api.post(
            "/v1/migrations",
            &auditor,
            &json!({"host_id": "c1.example.com", "target": "rhel-8.10"}),
        )?,
        403,
        "viewer role",
    );

    // Tokens refused, each with its cause.
    let p = &portal.provider;
    let refused = |token: String, cause: &str| -> Result<()> {
        problem(
            &api.get("/v1/hosts", &Credentials::Bearer(token))?,
            401,
            cause,
        );
        Ok(())
    };
    refused(
        p.token("alice", &["app-billing-owners"], |c| {
            c["exp"] = json!(c["iat"].as_u64().unwrap() - 3600);
        }),
        "expired",
    )?;
    refused(
        p.token("alice", &["app-billing-owners"], |c| {
            c["aud"] = json!("another-app")
        }),
        "another audience",
    )?;
    refused(
        p.token("alice", &["app-billing-owners"], |c| {
            c["nbf"] = json!(c["iat"].as_u64().unwrap() + 3600);
        }),
        "not valid yet",
    )?;
    let (stranger_key, _) = ec_key("test-ec-1");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("someone-elses".into());
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"iss": ISSUER, "aud": AUDIENCE, "preferred_username": "mallory",
                "groups": ["app-billing-owners"], "exp": now + 600}),
        &EncodingKey::from_ec_der(&stranger_key),
    )?;
    refused(forged, "unknown key")?;
    refused(p.token("bob", &["staff"], |_| {}), "no grant")?;
    assert!(
        deployment
            .coordinator
            .metric("mf_refused_handshakes_total{listener=\"api\",reason=\"bad_token\"}")?
            >= 5.0
    );

    // An operator certificate works here too, for the whole fleet.
    let read = |name: &str| std::fs::read_to_string(deployment.pki.join(name)).unwrap();
    let operator = Credentials::Certificate {
        cert: read("operator.pem"),
        key: read("operator-key.pem"),
    };
    assert_eq!(ids(&api.get("/v1/hosts", &operator)?).len(), 3);

    // Webhooks are for unscoped admins: the owner is refused, the admin's
    // certificate registers one and sees the secret once.
    problem(
        &api.post(
            "/v1/webhooks",
            &owner,
            &json!({"url": "https://hooks.example.com/mf"}),
        )?,
        403,
        "manage-webhooks",
    );
    let hook = api.post(
        "/v1/webhooks",
        &operator,
        &json!({"url": "https://hooks.example.com/mf", "events": ["dev.migration-factory.wave.completed"]}),
    )?;
    assert_eq!(hook.status, 201, "{hook:?}");
    assert!(
        hook.body["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let hooks = api.get("/v1/webhooks", &operator)?;
    assert_eq!(hooks.body.as_array().map(Vec::len), Some(1), "{hooks:?}");
    assert!(hooks.body[0].get("secret").is_none(), "{hooks:?}");
    problem(
        &api.post("/v1/webhooks", &operator, &json!({"url": "gopher://x/"}))?,
        400,
        "http://",
    );
    let id = hook.body["id"].as_str().unwrap();
    let removed = api.call(
        "DELETE",
        &format!("/v1/webhooks/{id}"),
        &operator,
        &[],
        None,
    )?;
    assert_eq!(removed.status, 200, "{removed:?}");
    problem(
        &api.call(
            "DELETE",
            &format!("/v1/webhooks/{id}"),
            &operator,
            &[],
            None,
        )?,
        404,
        "no webhook",
    );

    // The owner's actions are in the audit under their SSO name.
    let audit = deployment.mfctl(&["audit", "list", "--operator", "sso:alice", "-o", "json"]);
    assert!(audit.success, "{}", audit.stderr);
    assert!(audit.stdout.contains("run-wave"), "{}", audit.stdout);
    assert!(audit.stdout.contains("precheck"), "{}", audit.stdout);

    // The document served is the one committed.
    let served = api.get("/v1/openapi.json", &owner)?;
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(fixture(
        "../../coordinator/openapi.json",
    ))?)?;
    assert!(
        served.body == committed,
        "the served document differs from coordinator/openapi.json"
    );
    Ok(())
}

#[test]
fn a_request_outside_the_window_says_when_it_starts_and_is_cancelled_before() -> Result<()> {
    // A window that opens in two hours and lasts one.
    let now_hour = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() / 3600;
    let (start, end) = ((now_hour + 2) % 24, (now_hour + 3) % 24);
    let portal = portal(
        "",
        &format!("windows = [\"{start:02}:00-{end:02}:00 UTC\"]\n"),
        &[("b1", "billing")],
    )?;
    let api = &portal.api;
    let owner = Credentials::Bearer(portal.provider.token(
        "alice",
        &["app-billing-owners"],
        |_| {},
    ));
    precheck(&portal, &owner, "b1.example.com")?;
    let launched = api.post(
        "/v1/migrations",
        &owner,
        &json!({"host_id": "b1.example.com", "target": "rhel-8.10"}),
    )?;
    assert_eq!(launched.status, 202, "{launched:?}");
    let id = launched.body["id"].as_str().unwrap().to_string();
    assert_eq!(launched.body["state"], "running", "{launched:?}");
    assert!(
        launched.body["waiting_because"]
            .as_str()
            .is_some_and(|w| w.contains("maintenance window")),
        "{launched:?}"
    );
    let expected = launched.body["expected_start"].as_str().unwrap();
    assert!(
        expected.contains(&format!("T{start:02}:00:00")),
        "{expected} is the window's opening"
    );
    assert_eq!(launched.body["hosts"], json!({"pending": 1}));

    let cancelled = api.call("DELETE", &format!("/v1/migrations/{id}"), &owner, &[], None)?;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.body["state"], "cancelled");
    // Nothing ran on the host.
    let host = api.get("/v1/hosts/b1.example.com", &owner)?;
    assert!(host.body["migration"].is_null(), "{host:?}");
    problem(
        &api.get("/v1/migrations/req-0000000000000000000000", &owner)?,
        404,
        "",
    );
    Ok(())
}

/// The leapp inhibitor the emulated tool raises for a missing answer.
const MISSING_ANSWER: &str = "d35f6c6b1b1fa6924ef442e3670d90fa92f0d54b";

/// A CentOS 7.9 machine whose kernel is i686, which convert2rhel does not
/// take: its facts alone make it a rebuild.
fn i686_machine(deployment: &Deployment, token: &str, name: &str) -> Result<Machine> {
    let root = mf_e2e::host_root(
        &deployment.path(&format!("roots/{name}")),
        mf_e2e::HostOs::Centos79,
        name,
        "example.com",
    );
    std::fs::write(
        root.join("proc/sys/kernel/osrelease"),
        "3.10.0-1160.el7.i686\n",
    )?;
    let state = root.join("var/lib/mf-agent");
    let enrolled = deployment.enroll(token, &state, &root, &[]);
    if !enrolled.success {
        bail!("enroll {name}: {}", enrolled.stderr);
    }
    Ok(Machine::start_with(
        &state,
        &root,
        &deployment.path(&format!("{name}.log")),
        &[],
    ))
}

#[test]
fn no_in_place_path_or_a_finding_the_site_names_reads_rebuild_everywhere() -> Result<()> {
    let portal = portal(
        &format!("rebuild_findings = [\"{MISSING_ANSWER}\"]\n"),
        "",
        &[("b1", "billing")],
    )?;
    let (api, deployment) = (&portal.api, &portal.deployment);
    // A second machine the answer file blocks: leapp's inhibitor, which this
    // site says no change on the host lifts.
    let token = deployment.token(&["--uses", "2"])?;
    let _stuck = deployment.rhel79_machine(
        &token,
        "stuck",
        "billing",
        &format!(
            "[[findings]]\nkey = \"{MISSING_ANSWER}\"\n\
             title = \"Missing required answers in the answer file\"\nseverity = \"high\"\n\
             blocking = true\n"
        ),
    )?;
    let _legacy = i686_machine(deployment, &token, "legacy")?;
    wait_for("three machines", Duration::from_secs(30), || {
        let list = deployment.hosts("connected=true")?;
        Ok(list.len() == 3 && list.iter().all(|h| !h["facts"].is_null()))
    })?;
    for host in ["stuck", "legacy"] {
        let pinned = deployment.mfctl(&[
            "hosts",
            "label",
            &format!("{host}.example.com"),
            "app=billing",
        ]);
        assert!(pinned.success, "{}", pinned.stderr);
    }
    let owner = Credentials::Bearer(portal.provider.token(
        "alice",
        &["app-billing-owners"],
        |_| {},
    ));

    // The platform alone: no pre-check needed.
    let legacy = api.get("/v1/hosts/legacy.example.com", &owner)?;
    assert_eq!(legacy.body["readiness"], "rebuild", "{legacy:?}");
    assert!(
        legacy.body["readiness_reason"]
            .as_str()
            .is_some_and(|r| r.contains("convert2rhel does not take i686")),
        "{legacy:?}"
    );
    // The finding: blocked for leapp, rebuild for this site.
    let asked = api.post(
        "/v1/hosts/stuck.example.com/precheck",
        &owner,
        &json!({"target": "rhel-8.10"}),
    )?;
    assert_eq!(asked.status, 202, "{asked:?}");
    wait_for("stuck to be judged", Duration::from_secs(60), || {
        Ok(api.get("/v1/hosts/stuck.example.com", &owner)?.body["readiness"] != "unknown")
    })?;
    let stuck = api.get("/v1/hosts/stuck.example.com", &owner)?;
    assert_eq!(stuck.body["readiness"], "rebuild", "{stuck:?}");
    assert!(
        stuck.body["readiness_reason"].as_str().is_some_and(
            |r| r.starts_with("Missing required answers in the answer file: the site holds it")
        ),
        "{stuck:?}"
    );
    precheck(&portal, &owner, "b1.example.com")?;

    // The same verdicts in mfctl's report and in the metrics.
    let ran = deployment.mfctl(&["report", "readiness", "-o", "json"]);
    assert!(ran.success, "{}", ran.stderr);
    let report: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!(
        (
            report["summary"]["rebuild"].as_u64(),
            report["summary"]["ready"].as_u64()
        ),
        (Some(2), Some(1)),
        "{report:#}"
    );
    let table = deployment.mfctl(&["report", "readiness"]);
    assert!(table.stdout.contains("2 to rebuild"), "{}", table.stdout);
    assert!(
        table.stdout.contains("hosts to rebuild"),
        "{}",
        table.stdout
    );
    let rebuild = "mf_hosts_by_readiness{readiness=\"rebuild\"}";
    wait_for(
        "two hosts to rebuild in the gauge",
        Duration::from_secs(15),
        || Ok(deployment.coordinator.metric(rebuild)? == 2.0),
    )?;
    Ok(())
}

/// The whole API fuzzed from its own OpenAPI document by schemathesis
/// (installed by `scripts/install-schemathesis`), as an unscoped admin and
/// as a scoped owner: no answer is a 5xx, every answer's status, content
/// type, headers and body conform to the document, and data the document
/// forbids is refused.
#[test]
fn the_api_fuzzed_from_its_document_never_fails_and_always_conforms() -> Result<()> {
    let installer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-schemathesis");
    let installed = std::process::Command::new(&installer).output()?;
    if !installed.status.success() {
        bail!(
            "cannot install schemathesis: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
    }
    let schemathesis = String::from_utf8(installed.stdout)?.trim().to_string();
    let portal = portal(
        "",
        "",
        &[("b1", "billing"), ("b2", "billing"), ("c1", "crm")],
    )?;
    let port = portal.deployment.coordinator.api_port.unwrap();
    let ca = portal.deployment.pki.join("ca.pem");
    for (who, groups) in [
        ("root", "migration-admins"),
        ("alice", "app-billing-owners"),
    ] {
        let token = portal.provider.token(who, &[groups], |c| {
            // Long enough for the whole run.
            c["exp"] = json!(c["iat"].as_u64().unwrap() + 3600);
        });
        let ran = std::process::Command::new(&schemathesis)
            .args([
                "run",
                &format!("https://127.0.0.1:{port}/v1/openapi.json"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,negative_data_rejection",
                "--header",
                &format!("Authorization: Bearer {token}"),
                "--tls-verify",
                ca.to_str().unwrap(),
                "--max-examples",
                "40",
                "--seed",
                "20261130",
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "30",
                "--no-color",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()?;
        let output = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success(),
            "schemathesis as {who} found failures:\n{output}\n{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(output.contains("passed"), "{output}");
        // What it tried, for the record (`cargo test -- --nocapture`).
        if let Some(line) = output.lines().find(|l| l.contains(" generated, ")) {
            eprintln!("schemathesis as {who}: {}", line.trim());
        }
    }
    // Still serving, and still answering as before.
    let owner = Credentials::Bearer(portal.provider.token(
        "alice",
        &["app-billing-owners"],
        |_| {},
    ));
    assert_eq!(portal.api.get("/v1/hosts", &owner)?.status, 200);
    Ok(())
}

/// The shell lines of the ```sh blocks of the README's self-service section,
/// comments and blank lines dropped, in order.
fn readme_lines() -> Result<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let heading = "## Self-service for application owners\n";
    let start = readme
        .find(heading)
        .ok_or_else(|| anyhow::anyhow!("no self-service section"))?;
    let body = &readme[start + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in body.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if in_sh && !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            lines.push(line.to_string());
        }
    }
    Ok(lines)
}

/// The README's curl walkthrough, run as written by bash with curl and jq
/// against a real coordinator. Where it names what only a real site has, the
/// walk puts its own: the SSO's token endpoint (the test's provider signs the
/// token), the coordinator's address, the receiver's URL.
#[test]
fn the_readme_self_service_walk_runs_as_written() -> Result<()> {
    let portal = portal(
        "",
        "budgets = [\"app=1\"]\n",
        &[("web-01", "billing"), ("web-02", "billing")],
    )?;
    let deployment = &portal.deployment;
    let receiver = Receiver::start(Mode::Accept)?;
    let port = deployment.coordinator.api_port.unwrap();
    let token = portal
        .provider
        .token("alice", &["app-billing-owners"], |_| {});
    let mut script = String::from("set -euo pipefail\n");
    let lines = readme_lines()?;
    assert!(lines.len() >= 8, "{lines:?}");
    for line in &lines {
        let line = if line.starts_with("TOKEN=") {
            format!("TOKEN={token}")
        } else if line.starts_with("API=") {
            format!("API=https://localhost:{port}")
        } else {
            line.replace(
                "https://automation.example.com/hooks/mf",
                &format!("http://127.0.0.1:{}/hooks/mf", receiver.port),
            )
        };
        script.push_str(&line);
        script.push('\n');
    }
    let mfctl_dir = mf_e2e::bin("mfctl").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        mfctl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ran = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(deployment.dir.path())
        .env("PATH", path)
        .env("MF_COORDINATOR", deployment.coordinator.admin_address())
        .env("MF_PKI_DIR", &deployment.pki)
        .output()?;
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "the walk failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    // What it printed: the owner's two hosts, web-01 ready, a request with
    // the site's rules, then its progress; the webhook's secret.
    for said in [
        r#"{"id":"web-01.example.com","readiness":"unknown","readiness_reason":null}"#,
        r#""readiness": "ready""#,
        r#""policy": ["#,
        r#""budget app=1""#,
        "whsec_",
    ] {
        assert!(stdout.contains(said), "{said:?} not in:\n{stdout}");
    }
    let request: Value = serde_json::from_str(&std::fs::read_to_string(
        deployment.dir.path().join("request.json"),
    )?)?;
    let id = request["id"].as_str().unwrap().to_string();
    let owner = Credentials::Bearer(token);
    wait_for("the request to complete", Duration::from_secs(120), || {
        Ok(portal
            .api
            .get(&format!("/v1/migrations/{id}"), &owner)?
            .body["state"]
            == "completed")
    })?;
    // The receiver the walk registered gets what happens next.
    let asked = portal.api.post(
        "/v1/hosts/web-02.example.com/precheck",
        &owner,
        &json!({"target": "rhel-9.6"}),
    )?;
    assert_eq!(asked.status, 202, "{asked:?}");
    wait_for(
        "a pre-check event at the receiver",
        Duration::from_secs(60),
        || {
            Ok(receiver.received().iter().any(|r| {
                serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|e| e["type"] == "dev.migration-factory.precheck.finished")
            }))
        },
    )?;
    Ok(())
}
