//! Bearer tokens from the site's OpenID Connect provider: checked against
//! its keys (a JWKS file, or the provider's `jwks_uri` over HTTPS, read again
//! when a token names a key it lacks and at least hourly, so that a key
//! rotation needs no restart), its issuer and our audience, then
//! mapped to a role and scope by the site's grants, the same `Access` an
//! operator certificate resolves to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use mf_core::access::{Access, Role};
use mf_core::selector::Selector;

/// The keys are read again for an unknown key at most this often, so that
/// tokens naming made-up keys cannot make us fetch them on every request.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// Keys older than this are read again (a key the provider withdrew stops
/// being accepted within the hour).
const KEYS_LIVE: Duration = Duration::from_secs(3600);
/// A bearer token longer than this is refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// `[oidc]` in the coordinator's file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer, exactly as its tokens say it (`iss`).
    pub issuer: String,
    /// What tokens for this API carry in `aud`.
    pub audience: String,
    /// The provider's keys: its `jwks_uri` document saved to a file, or
    pub jwks_file: Option<PathBuf>,
    /// its `jwks_uri` itself (https://; http:// only on loopback).
    pub jwks_url: Option<String>,
    /// The claim that names the user in the audit (default `sub`).
    #[serde(default)]
    pub name_claim: Option<String>,
    /// Clock tolerance on `exp` and `nbf`, e.g. "60s" (the default).
    #[serde(default)]
    pub leeway: Option<String>,
    /// Claims to roles and scopes; the first grant that matches wins.
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
}

/// One grant: a token whose `claim` is (or, for a list, contains) `value`
/// gets `role`, within `scope` if one is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    pub claim: String,
    pub value: String,
    pub role: String,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    claim: String,
    value: String,
    role: Role,
    scope: Option<Selector>,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error("oidc.grants: role {0:?} is not viewer, operator or admin")]
    Role(String),
    #[error("oidc.grants: scope {scope:?}: {reason}")]
    Scope { scope: String, reason: String },
    #[error("oidc.leeway: {0}")]
    Leeway(String),
    #[error("oidc.jwks_file {path}: {reason}")]
    Jwks { path: String, reason: String },
    #[error("oidc: {0} must not be empty")]
    Empty(&'static str),
    #[error("oidc: give jwks_file or jwks_url, one of them")]
    KeySource,
    #[error("oidc.jwks_url {0:?}: use https:// (http:// only on loopback)")]
    KeyUrl(String),
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    File(PathBuf),
    Url(String, Arc<rustls::ClientConfig>),
}

impl KeySource {
    async fn read(&self) -> Result<JwkSet, OidcSetupError> {
        match self {
            KeySource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_jwks(&path))
                    .await
                    .map_err(|e| OidcSetupError::Jwks {
                        path: String::new(),
                        reason: e.to_string(),
                    })?
            }
            KeySource::Url(url, tls) => {
                let error = |reason: String| OidcSetupError::Jwks {
                    path: url.clone(),
                    reason,
                };
                let answer = crate::http_client::get(tls, url).await.map_err(error)?;
                if answer.status != 200 {
                    return Err(error(format!("answered {}", answer.status)));
                }
                serde_json::from_slice(&answer.body).map_err(|e| error(e.to_string()))
            }
        }
    }
}

/// Whether a JWKS URL is one we fetch keys from: https, or http on loopback.
fn key_url_allowed(url: &str) -> bool {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        _ => false,
    }
}

/// Why a token is refused: each names its cause for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token is signed with {0}: this API accepts RS256 and ES256")]
    Algorithm(String),
    #[error("the token names no key (kid) and the provider has several")]
    NoKeyId,
    #[error("the token is signed by an unknown key (kid {0:?})")]
    UnknownKey(String),
    #[error("the token's signature does not verify with the provider's key {0:?}")]
    Signature(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is for another audience: this API is {0:?}")]
    Audience(String),
    #[error("the token is from another issuer: this API trusts {0:?}")]
    Issuer(String),
    #[error("the token lacks the {0:?} claim")]
    MissingClaim(String),
    #[error("no grant of this site matches the token ({0})")]
    NoGrant(String),
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
}

/// The provider as this coordinator trusts it.
#[derive(Debug)]
pub struct Oidc {
    issuer: String,
    audience: String,
    name_claim: String,
    leeway: Duration,
    grants: Vec<Grant>,
    source: KeySource,
    /// The keys and when they were read; `None` before the first read.
    keys: RwLock<(JwkSet, Option<Instant>)>,
}

fn read_jwks(path: &std::path::Path) -> Result<JwkSet, OidcSetupError> {
    let error = |reason: String| OidcSetupError::Jwks {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| error(e.to_string()))
}

impl Oidc {
    /// Checks the settings and reads the keys once: a coordinator that
    /// could not check tokens does not start.
    pub fn load(config: &OidcConfig) -> Result<Arc<Self>, OidcSetupError> {
        if config.issuer.trim().is_empty() {
            return Err(OidcSetupError::Empty("issuer"));
        }
        if config.audience.trim().is_empty() {
            return Err(OidcSetupError::Empty("audience"));
        }
        let grants = config
            .grants
            .iter()
            .map(|g| {
                let role: Role = g
                    .role
                    .parse()
                    .map_err(|_| OidcSetupError::Role(g.role.clone()))?;
                let scope = match g.scope.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(text) => {
                        Some(Selector::parse(text).map_err(|e| OidcSetupError::Scope {
                            scope: text.to_string(),
                            reason: e.to_string(),
                        })?)
                    }
                };
                Ok(Grant {
                    claim: g.claim.clone(),
                    value: g.value.clone(),
                    role,
                    scope,
                })
            })
            .collect::<Result<Vec<_>, OidcSetupError>>()?;
        let leeway = match &config.leeway {
            None => Duration::from_secs(60),
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| OidcSetupError::Leeway(e.to_string()))?,
        };
        // A file is read now: a coordinator that cannot check tokens does not
        // start. A URL is fetched by `refresh` (the SSO may be down a while).
        let (source, keys) = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), None) => (KeySource::File(path.clone()), Some(read_jwks(path)?)),
            (None, Some(url)) if key_url_allowed(url) => (
                KeySource::Url(url.clone(), crate::http_client::system_roots()),
                None,
            ),
            (None, Some(url)) => return Err(OidcSetupError::KeyUrl(url.clone())),
            _ => return Err(OidcSetupError::KeySource),
        };
        let loaded = keys.as_ref().map(|_| Instant::now());
        Ok(Arc::new(Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            name_claim: config.name_claim.clone().unwrap_or_else(|| "sub".into()),
            leeway,
            grants,
            source,
            keys: RwLock::new((keys.unwrap_or(JwkSet { keys: Vec::new() }), loaded)),
        }))
    }

    /// Reads the keys again; on failure the ones held stay.
    pub async fn refresh(&self) -> Result<(), OidcSetupError> {
        let read = self.source.read().await;
        let mut keys = self.keys.write().await;
        keys.1 = Some(Instant::now());
        keys.0 = read?;
        Ok(())
    }

    /// The key a token names, reading the keys again when it is not there
    /// (at most every [`RELOAD_AT_MOST_EVERY`]) or when they are older than
    /// [`KEYS_LIVE`].
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, TokenRefused> {
        let find = |set: &JwkSet| -> Result<Option<Jwk>, TokenRefused> {
            match kid {
                Some(kid) => Ok(set.find(kid).cloned()),
                None if set.keys.len() == 1 => Ok(set.keys.first().cloned()),
                None => Err(TokenRefused::NoKeyId),
            }
        };
        let age = |read: Option<Instant>| read.map_or(Duration::MAX, |r| r.elapsed());
        let stale = {
            let keys = self.keys.read().await;
            let age = age(keys.1);
            match find(&keys.0)? {
                Some(key) if age < KEYS_LIVE => return Ok(key),
                Some(_) => true,
                None => age >= RELOAD_AT_MOST_EVERY,
            }
        };
        if stale && let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "cannot read the OIDC keys again; keeping those held");
        }
        let keys = self.keys.read().await;
        find(&keys.0)?.ok_or_else(|| TokenRefused::UnknownKey(kid.unwrap_or_default().to_string()))
    }

    /// Who the token says the caller is, and what this site grants them.
    pub async fn verify(&self, token: &str) -> Result<Access, TokenRefused> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRefused::TooLong);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenRefused::Malformed(e.to_string()))?;
        let algorithm = header.alg;
        if !matches!(algorithm, Algorithm::RS256 | Algorithm::ES256) {
            return Err(TokenRefused::Algorithm(format!("{algorithm:?}")));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        // The key's type decides the algorithm, never the token alone.
        let fits = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => algorithm == Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) => {
                algorithm == Algorithm::ES256 && ec.curve == EllipticCurve::P256
            }
            _ => false,
        };
        if !fits {
            return Err(TokenRefused::Signature(kid));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| TokenRefused::Signature(kid.clone()))?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| self.refusal(e.into_kind(), &kid))?;
        self.access(&data.claims)
    }

    fn refusal(&self, kind: ErrorKind, kid: &str) -> TokenRefused {
        match kind {
            ErrorKind::ExpiredSignature => TokenRefused::Expired,
            ErrorKind::ImmatureSignature => TokenRefused::NotYetValid,
            ErrorKind::InvalidAudience => TokenRefused::Audience(self.audience.clone()),
            ErrorKind::InvalidIssuer => TokenRefused::Issuer(self.issuer.clone()),
            ErrorKind::MissingRequiredClaim(claim) => TokenRefused::MissingClaim(claim),
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::Crypto(_) => TokenRefused::Signature(kid.to_string()),
            other => TokenRefused::Malformed(format!("{other:?}")),
        }
    }

    /// The first grant whose claim holds its value decides role and scope.
    fn access(&self, claims: &Map<String, Value>) -> Result<Access, TokenRefused> {
        let name = match claims.get(&self.name_claim) {
            Some(Value::String(name)) if !name.is_empty() && name.len() <= 256 => name,
            _ => return Err(TokenRefused::MissingClaim(self.name_claim.clone())),
        };
        let holds = |claim: &str, value: &str| match claims.get(claim) {
            Some(Value::String(s)) => s == value,
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
            _ => false,
        };
        let grant = self
            .grants
            .iter()
            .find(|g| holds(&g.claim, &g.value))
            .ok_or_else(|| TokenRefused::NoGrant(format!("{} {name}", self.name_claim)))?;
        Ok(Access {
            name: format!("sso:{name}"),
            role: grant.role,
            scope: grant.scope.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    /// A P-256 key, its JWKS and a way to sign claims with it.
    struct Provider {
        pkcs8: Vec<u8>,
        kid: String,
        _dir: tempfile::TempDir,
        jwks: PathBuf,
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn provider(kid: &str) -> Provider {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key")
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("pair");
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).expect("write");
        Provider {
            pkcs8,
            kid: kid.into(),
            _dir: dir,
            jwks: path,
        }
    }

    impl Provider {
        fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8))
                .expect("sign")
        }

        fn oidc(&self) -> Arc<Oidc> {
            Oidc::load(&OidcConfig {
                issuer: "https://sso.example".into(),
                audience: "mf".into(),
                jwks_file: Some(self.jwks.clone()),
                jwks_url: None,
                name_claim: None,
                leeway: Some("30s".into()),
                grants: vec![
                    GrantConfig {
                        claim: "groups".into(),
                        value: "app-billing-owners".into(),
                        role: "operator".into(),
                        scope: Some("app=billing".into()),
                    },
                    GrantConfig {
                        claim: "groups".into(),
                        value: "migration-admins".into(),
                        role: "admin".into(),
                        scope: None,
                    },
                ],
            })
            .expect("load")
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    }

    fn claims(groups: &[&str], exp_in: i64) -> Value {
        serde_json::json!({
            "iss": "https://sso.example", "aud": "mf", "sub": "alice",
            "exp": now() + exp_in, "groups": groups,
        })
    }

    #[tokio::test]
    async fn a_group_claim_becomes_a_scoped_operator_and_the_first_grant_wins() {
        let provider = provider("k1");
        let oidc = provider.oidc();
        let owner = oidc
            .verify(&provider.sign(&claims(&["staff", "app-billing-owners"], 300)))
            .await
            .expect("verified");
        assert_eq!(owner.name, "sso:alice");
        assert_eq!(owner.role, Role::Operator);
        assert_eq!(
            owner.scope.map(|s| s.to_string()).as_deref(),
            Some("app=billing")
        );
        let both = oidc
            .verify(&provider.sign(&claims(&["migration-admins", "app-billing-owners"], 300)))
            .await
            .expect("verified");
        assert_eq!(
            both.role,
            Role::Operator,
            "the first grant in the file wins"
        );
        assert_eq!(
            oidc.verify(&provider.sign(&claims(&["staff"], 300))).await,
            Err(TokenRefused::NoGrant("sub alice".into()))
        );
    }

    #[tokio::test]
    async fn every_bad_token_is_refused_with_its_cause() {
        let provider = provider("k1");
        let oidc = provider.oidc();
        let groups = ["app-billing-owners"];
        // Expired beyond the leeway, and within it.
        assert_eq!(
            oidc.verify(&provider.sign(&claims(&groups, -120))).await,
            Err(TokenRefused::Expired)
        );
        assert!(
            oidc.verify(&provider.sign(&claims(&groups, -10)))
                .await
                .is_ok()
        );
        let mut early = claims(&groups, 600);
        early["nbf"] = Value::from(now() + 300);
        assert_eq!(
            oidc.verify(&provider.sign(&early)).await,
            Err(TokenRefused::NotYetValid)
        );
        let mut other = claims(&groups, 300);
        other["aud"] = Value::from("someone-else");
        assert_eq!(
            oidc.verify(&provider.sign(&other)).await,
            Err(TokenRefused::Audience("mf".into()))
        );
        let mut issuer = claims(&groups, 300);
        issuer["iss"] = Value::from("https://evil.example");
        assert!(matches!(
            oidc.verify(&provider.sign(&issuer)).await,
            Err(TokenRefused::Issuer(_))
        ));
        // Another provider's key under the same kid: the signature fails;
        // under a kid we do not know: an unknown key.
        let stranger = self::provider("k1");
        assert_eq!(
            oidc.verify(&stranger.sign(&claims(&groups, 300))).await,
            Err(TokenRefused::Signature("k1".into()))
        );
        let unknown = self::provider("k9");
        assert_eq!(
            oidc.verify(&unknown.sign(&claims(&groups, 300))).await,
            Err(TokenRefused::UnknownKey("k9".into()))
        );
        // HS256 with the public key as a secret: the classic confusion.
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(&groups, 300),
            &EncodingKey::from_secret(b"x"),
        )
        .expect("sign");
        assert_eq!(
            oidc.verify(&forged).await,
            Err(TokenRefused::Algorithm("HS256".into()))
        );
        assert!(matches!(
            oidc.verify("not-a-token").await,
            Err(TokenRefused::Malformed(_))
        ));
        let mut nameless = claims(&groups, 300);
        nameless.as_object_mut().expect("object").remove("sub");
        assert_eq!(
            oidc.verify(&provider.sign(&nameless)).await,
            Err(TokenRefused::MissingClaim("sub".into()))
        );
        assert_eq!(
            oidc.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)).await,
            Err(TokenRefused::TooLong)
        );
    }

    #[tokio::test]
    async fn a_rotated_key_is_read_from_the_file_without_a_restart() {
        let old = provider("k1");
        let oidc = old.oidc();
        let new = provider("k2");
        std::fs::copy(&new.jwks, &old.jwks).expect("rotate");
        // Read again at most every ten seconds: pretend the last read is old.
        oidc.keys.write().await.1 = Instant::now().checked_sub(RELOAD_AT_MOST_EVERY);
        let access = oidc
            .verify(&new.sign(&claims(&["migration-admins"], 300)))
            .await
            .expect("the new key is found");
        assert_eq!(access.role, Role::Admin);
        assert!(access.scope.is_none());
    }

    #[test]
    fn bad_settings_are_refused_at_load() {
        let provider = provider("k1");
        let mut config = OidcConfig {
            issuer: "https://sso.example".into(),
            audience: "mf".into(),
            jwks_file: Some(provider.jwks.clone()),
            jwks_url: None,
            name_claim: None,
            leeway: None,
            grants: vec![GrantConfig {
                claim: "groups".into(),
                value: "x".into(),
                role: "superuser".into(),
                scope: None,
            }],
        };
        assert!(matches!(Oidc::load(&config), Err(OidcSetupError::Role(_))));
        config.grants[0].role = "viewer".into();
        config.grants[0].scope = Some("app in (".into());
        assert!(matches!(
            Oidc::load(&config),
            Err(OidcSetupError::Scope { .. })
        ));
        config.grants[0].scope = None;
        config.jwks_file = Some("/nonexistent/jwks.json".into());
        assert!(matches!(
            Oidc::load(&config),
            Err(OidcSetupError::Jwks { .. })
        ));
        config.jwks_url = Some("https://sso.example/jwks".into());
        assert!(matches!(
            Oidc::load(&config),
            Err(OidcSetupError::KeySource)
        ));
        config.jwks_file = None;
        config.jwks_url = Some("http://sso.example/jwks".into());
        assert!(matches!(
            Oidc::load(&config),
            Err(OidcSetupError::KeyUrl(_))
        ));
    }

    /// The provider's `jwks_uri` served over HTTP on loopback: fetched at
    /// the first token (the coordinator starts without it), and again when
    /// the provider rotates its key.
    #[tokio::test]
    async fn keys_come_from_the_providers_jwks_uri_and_follow_a_rotation() {
        let first = provider("k1");
        let second = provider("k2");
        let served = Arc::new(std::sync::Mutex::new(
            std::fs::read_to_string(&first.jwks).expect("jwks"),
        ));
        let body = Arc::clone(&served);
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = body.lock().map(|b| b.clone()).unwrap_or_default();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let oidc = Oidc::load(&OidcConfig {
            issuer: "https://sso.example".into(),
            audience: "mf".into(),
            jwks_file: None,
            jwks_url: Some(format!("http://127.0.0.1:{port}/jwks")),
            name_claim: None,
            leeway: None,
            grants: vec![GrantConfig {
                claim: "groups".into(),
                value: "migration-admins".into(),
                role: "admin".into(),
                scope: None,
            }],
        })
        .expect("load");
        let admins = ["migration-admins"];
        assert!(
            oidc.verify(&first.sign(&claims(&admins, 300)))
                .await
                .is_ok()
        );
        // Rotated: k2 is served; a token signed with it is checked against
        // the keys read again (past the rate limit).
        *served.lock().expect("lock") = std::fs::read_to_string(&second.jwks).expect("jwks");
        oidc.keys.write().await.1 = Instant::now().checked_sub(RELOAD_AT_MOST_EVERY);
        assert!(
            oidc.verify(&second.sign(&claims(&admins, 300)))
                .await
                .is_ok()
        );
        // Within the rate limit an unknown key is refused without a fetch.
        let third = provider("k3");
        assert_eq!(
            oidc.verify(&third.sign(&claims(&admins, 300))).await,
            Err(TokenRefused::UnknownKey("k3".into()))
        );
    }
}
