//! Who calls the radiologist's routes: a bearer JWT, verified here, names the user, the
//! organizations they belong to and whether they are an administrator
//! ([`dicom_series::Member`]); the use cases then limit every call to those organizations.
//!
//! `[series.access]` of the configuration:
//!
//! - `mode = "development"`: no token; every caller is `user`, a member of every
//!   organization (`nachet-dev`'s choice; the app says so at start);
//! - `mode = "jwt"`: `Authorization: Bearer <JWT>`, signed either with a shared secret
//!   (`hs256_secret`, HS256) or with a key of the JWKS document at `jwks_url` (RS256, ES256
//!   and their kin), fetched at the first call, kept `jwks_refresh_seconds`, and fetched
//!   again at once (at most every 10 s) when a token names a key it does not hold — so a
//!   rotated key works as soon as the identity provider publishes it. `exp` is required;
//!   `issuer` and `audience` are checked when set. The claims read are configurable
//!   (`user_claim`, `organizations_claim` — med-image-scanner's tokens carry
//!   `organization` —, `roles_claim`, `admin_role`); the organizations and roles claims
//!   may be one string or a list.
//!
//! The ML app's status callback keeps its own per-app tokens (`super::series`).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use dicom_series::{Member, Membership};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::admin::admin_token_check;
use super::auth::bearer_token;
use super::error::ApiError;

/// A token naming an unknown key fetches the JWKS again, but not more often than this.
const JWKS_REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The algorithms a JWKS key may sign with.
const JWKS_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// `[series.access]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SeriesAccessSettings {
    /// No authentication: every caller is `user`, member of every organization.
    Development {
        #[serde(default = "development_user")]
        user: String,
    },
    /// A verified bearer JWT.
    Jwt(JwtSettings),
}

fn development_user() -> String {
    "developer".to_owned()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The shared secret of HS256 tokens. Exactly one of this and `jwks_url`.
    #[serde(default)]
    pub hs256_secret: Option<SecretString>,
    /// The identity provider's JWKS document (RS256, ES256, ...).
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// `iss` must be this, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `aud` must hold this, when set.
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default = "default_organizations_claim")]
    pub organizations_claim: String,
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    #[serde(default = "default_admin_role")]
    pub admin_role: String,
    /// Clock difference allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_user_claim() -> String {
    "sub".to_owned()
}
fn default_organizations_claim() -> String {
    "organization".to_owned()
}
fn default_roles_claim() -> String {
    "roles".to_owned()
}
fn default_admin_role() -> String {
    "admin".to_owned()
}
fn default_leeway() -> u64 {
    30
}

/// How callers of the radiologist's routes are known, built once from the settings.
pub struct SeriesAccess {
    mode: Mode,
}

enum Mode {
    Development(Member),
    Jwt(Box<JwtVerifier>),
}

impl SeriesAccess {
    pub fn new(settings: &SeriesAccessSettings) -> Result<Self, String> {
        let mode = match settings {
            SeriesAccessSettings::Development { user } => {
                Mode::Development(Member::development(user))
            }
            SeriesAccessSettings::Jwt(jwt) => Mode::Jwt(Box::new(JwtVerifier::new(jwt)?)),
        };
        Ok(Self { mode })
    }

    /// The development identity's user, when that is the mode.
    pub fn development_user(&self) -> Option<&str> {
        match &self.mode {
            Mode::Development(member) => Some(&member.user),
            Mode::Jwt(_) => None,
        }
    }

    /// The caller of `request`.
    pub async fn member(&self, token: Option<&str>) -> Result<Member, ApiError> {
        match &self.mode {
            Mode::Development(member) => Ok(member.clone()),
            Mode::Jwt(verifier) => {
                let token = token.ok_or_else(|| {
                    unauthorized("send your access token as Authorization: Bearer <JWT>")
                })?;
                verifier.verify(token).await
            }
        }
    }
}

/// 401, with `WWW-Authenticate: Bearer` (as every 401 of the API).
fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::unauthorized(message)
}

/// The caller of a radiologist's route.
pub struct SeriesCaller(pub Member);

impl FromRequest for SeriesCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let access = request.app_data::<web::Data<SeriesAccess>>().cloned();
        let token = bearer_token(request).map(str::to_owned);
        Box::pin(async move {
            let access = access.expect("SeriesAccess is registered with the app");
            access.member(token.as_deref()).await.map(SeriesCaller)
        })
    }
}

/// An administrator of organizations and jobs: the admin token, or (mode jwt) a caller
/// whose token carries the admin role.
pub struct SeriesAdmin;

impl FromRequest for SeriesAdmin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let by_token = admin_token_check(request);
        let access = request.app_data::<web::Data<SeriesAccess>>().cloned();
        let token = bearer_token(request).map(str::to_owned);
        Box::pin(async move {
            let refused = match by_token {
                Ok(()) => return Ok(SeriesAdmin),
                Err(refused) => refused,
            };
            let Some(access) = access else {
                return Err(refused);
            };
            match (&access.mode, token) {
                // A bearer token that is not the admin token may be a user's JWT.
                (Mode::Jwt(_), Some(token)) => {
                    let member = access.member(Some(&token)).await?;
                    if member.admin {
                        Ok(SeriesAdmin)
                    } else {
                        Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "this needs the admin role, which your token does not carry",
                        ))
                    }
                }
                _ => Err(refused),
            }
        })
    }
}

/// Verifies tokens and reads their claims.
struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    user_claim: String,
    organizations_claim: String,
    roles_claim: String,
    admin_role: String,
    leeway: u64,
}

enum Keys {
    Secret(DecodingKey),
    Jwks(Jwks),
}

impl JwtVerifier {
    fn new(settings: &JwtSettings) -> Result<Self, String> {
        let keys = match (&settings.hs256_secret, &settings.jwks_url) {
            (Some(secret), None) if !secret.expose_secret().is_empty() => {
                Keys::Secret(DecodingKey::from_secret(secret.expose_secret().as_bytes()))
            }
            (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Keys::Jwks(Jwks::new(
                    url.clone(),
                    Duration::from_secs(settings.jwks_refresh_seconds.max(1)),
                )?)
            }
            (None, Some(url)) => {
                return Err(format!(
                    "series.access.jwks_url {url:?} is not an http(s) URL"
                ));
            }
            _ => {
                return Err(
                    "series.access (mode jwt) needs exactly one of hs256_secret and jwks_url"
                        .into(),
                );
            }
        };
        Ok(Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            user_claim: settings.user_claim.clone(),
            organizations_claim: settings.organizations_claim.clone(),
            roles_claim: settings.roles_claim.clone(),
            admin_role: settings.admin_role.clone(),
            leeway: settings.leeway_seconds,
        })
    }

    async fn verify(&self, token: &str) -> Result<Member, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("the access token is not a JWT: {e}")))?;
        let key = match &self.keys {
            Keys::Secret(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(unauthorized(format!(
                        "the access token is signed with {:?}; this server takes HS256",
                        header.alg
                    )));
                }
                key.clone()
            }
            Keys::Jwks(jwks) => {
                if !JWKS_ALGORITHMS.contains(&header.alg) {
                    return Err(unauthorized(format!(
                        "the access token is signed with {:?}; this server takes RS256, ES256 and their kin",
                        header.alg
                    )));
                }
                jwks.key(header.kid.as_deref()).await?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| {
                unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired".to_owned(),
                    ErrorKind::ImmatureSignature => "the access token is not valid yet".to_owned(),
                    ErrorKind::InvalidSignature => {
                        "the access token's signature does not verify".to_owned()
                    }
                    ErrorKind::InvalidIssuer => "the access token is of another issuer".to_owned(),
                    ErrorKind::InvalidAudience => {
                        "the access token is for another audience".to_owned()
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the access token has no {claim} claim")
                    }
                    _ => format!("the access token is not valid: {e}"),
                })
            })?
            .claims;
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                unauthorized(format!(
                    "the access token names no user (claim {:?})",
                    self.user_claim
                ))
            })?;
        let roles = strings(claims.get(&self.roles_claim));
        Ok(Member {
            user: user.to_owned(),
            organizations: Membership::Only(strings(claims.get(&self.organizations_claim))),
            admin: roles.contains(&self.admin_role),
        })
    }
}

/// A claim that is one string or a list of strings.
fn strings(claim: Option<&Value>) -> BTreeSet<String> {
    match claim {
        Some(Value::String(one)) => BTreeSet::from([one.clone()]),
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// The keys of a JWKS document, fetched when needed.
struct Jwks {
    url: String,
    refresh: Duration,
    client: reqwest::Client,
    held: RwLock<HeldKeys>,
    /// One fetch at a time; the others wait for its keys.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct HeldKeys {
    keys: Vec<(Option<String>, DecodingKey)>,
    fetched_at: Option<Instant>,
}

impl HeldKeys {
    fn find(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let found = match kid {
            Some(kid) => self.keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
            // A token without `kid` is verified by the only key, if there is only one.
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        };
        found.map(|(_, key)| key.clone())
    }

    fn older_than(&self, age: Duration) -> bool {
        self.fetched_at.is_none_or(|at| at.elapsed() >= age)
    }
}

impl Jwks {
    fn new(url: String, refresh: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the JWKS client: {e}"))?;
        Ok(Self {
            url,
            refresh,
            client,
            held: RwLock::new(HeldKeys::default()),
            fetching: Mutex::new(()),
        })
    }

    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, ApiError> {
        {
            let held = self.held.read().await;
            if !held.older_than(self.refresh)
                && let Some(key) = held.find(kid)
            {
                return Ok(key);
            }
        }
        // Stale keys, or a key we do not hold (rotated in?): fetch, unless fetched just now.
        let _fetching = self.fetching.lock().await;
        let refetch = {
            let held = self.held.read().await;
            held.older_than(self.refresh)
                || (held.find(kid).is_none() && held.older_than(JWKS_REFETCH_AT_MOST_EVERY))
        };
        if refetch {
            match self.fetch().await {
                Ok(keys) => {
                    *self.held.write().await = HeldKeys {
                        keys,
                        fetched_at: Some(Instant::now()),
                    };
                }
                Err(reason) => {
                    let held = self.held.read().await;
                    // Keep verifying with the keys we have, if any.
                    if let Some(key) = held.find(kid) {
                        tracing::warn!(url = %self.url, "could not refresh the JWKS ({reason}); the keys fetched before are used");
                        return Ok(key);
                    }
                    tracing::warn!(url = %self.url, "could not fetch the JWKS: {reason}");
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the identity provider's keys cannot be fetched; try again later",
                    ));
                }
            }
        }
        self.held.read().await.find(kid).ok_or_else(|| {
            unauthorized(match kid {
                Some(kid) => format!("the access token is signed with key {kid:?}, which the identity provider does not publish"),
                None => "the access token names no key (kid) and the identity provider publishes several".to_owned(),
            })
        })
    }

    async fn fetch(&self) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|e| e.to_string())?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push((jwk.common.key_id.clone(), key)),
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, "a JWKS key cannot be used: {e}")
                }
            }
        }
        tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS");
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn access() -> SeriesAccess {
        let settings: SeriesAccessSettings = serde_json::from_value(json!({
            "mode": "jwt", "hs256_secret": "s3cret", "issuer": "idp", "roles_claim": "groups"
        }))
        .unwrap();
        SeriesAccess::new(&settings).unwrap()
    }

    fn signed(secret: &str, alg: Algorithm, claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut claims =
            json!({"sub": "alice", "iss": "idp", "exp": chrono::Utc::now().timestamp() + 600});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    #[tokio::test]
    async fn hs256_tokens_name_the_user_their_organizations_and_roles() {
        let access = access();
        let member = access
            .member(Some(&signed(
                "s3cret",
                Algorithm::HS256,
                claims(json!({"organization": "Hospital A", "groups": ["admin"]})),
            )))
            .await
            .unwrap();
        assert_eq!(member.user, "alice");
        assert_eq!(
            member.organizations,
            Membership::Only(BTreeSet::from(["Hospital A".to_string()]))
        );
        assert!(member.admin);
        let member = access
            .member(Some(&signed("s3cret", Algorithm::HS256, claims(json!({})))))
            .await
            .unwrap();
        assert_eq!(member.organizations, Membership::Only(BTreeSet::new()));
        assert!(!member.admin);
    }

    #[tokio::test]
    async fn each_bad_token_is_refused_with_what_was_wrong() {
        let access = access();
        let now = chrono::Utc::now().timestamp();
        let cases = [
            (None, "send your access token"),
            (Some("not.a.jwt".to_string()), "not a JWT"),
            (
                Some(signed("other", Algorithm::HS256, claims(json!({})))),
                "signature does not verify",
            ),
            (
                Some(signed("s3cret", Algorithm::HS384, claims(json!({})))),
                "this server takes HS256",
            ),
            (
                Some(signed(
                    "s3cret",
                    Algorithm::HS256,
                    claims(json!({"exp": now - 600})),
                )),
                "has expired",
            ),
            (
                Some(signed(
                    "s3cret",
                    Algorithm::HS256,
                    claims(json!({"iss": "other"})),
                )),
                "another issuer",
            ),
            (
                Some(signed(
                    "s3cret",
                    Algorithm::HS256,
                    json!({"sub": "alice", "iss": "idp"}),
                )),
                "no exp claim",
            ),
            (
                Some(signed(
                    "s3cret",
                    Algorithm::HS256,
                    claims(json!({"sub": ""})),
                )),
                "names no user",
            ),
        ];
        for (token, expected) in cases {
            let error = access.member(token.as_deref()).await.unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert!(
                error.message.contains(expected),
                "{token:?}: {}",
                error.message
            );
        }
    }

    #[test]
    fn jwt_settings_need_exactly_one_key_source() {
        for settings in [
            json!({"mode": "jwt"}),
            json!({"mode": "jwt", "hs256_secret": "a", "jwks_url": "https://idp/jwks"}),
            json!({"mode": "jwt", "jwks_url": "idp/jwks"}),
        ] {
            let parsed: SeriesAccessSettings = serde_json::from_value(settings.clone()).unwrap();
            assert!(SeriesAccess::new(&parsed).is_err(), "{settings}");
        }
    }
}
