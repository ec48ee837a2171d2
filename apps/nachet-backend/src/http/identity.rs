//! Who is the caller: the email of the person behind a request, read at the HTTP edge.
//!
//! The Nachet frontend is served behind a login proxy, and the configuration says which:
//!
//! - `vouch`: the Vouch login proxy. Its cookie holds a JWT signed (HS256) with a secret
//!   shared with the backend, gzip-compressed, then URL-safe base64 encoded. The backend
//!   verifies the signature and the expiry itself, so a request that skips the proxy gets
//!   nothing it could not get by signing in.
//! - `header`: another authenticating proxy that puts the email in a header. The header is
//!   trusted only in this mode, because anyone can send it when no proxy strips it.
//! - `development`: no authentication at all; every request is the configured user. The
//!   app warns at start (`crate::start`).
//!
//! Every [`IdentityError`] is answered 401; its message says what was wrong and what to do.

use std::io::{Read, Write};

use actix_web::HttpRequest;
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

/// The name of Vouch's cookie when its configuration does not change it.
pub const DEFAULT_COOKIE: &str = "jxVouchCookie";

/// The only signing algorithm accepted: Vouch's default, and the one a shared secret allows.
const ALGORITHM: &str = "HS256";

/// A decompressed token larger than this is refused. A cookie is a few kilobytes, but gzip
/// can expand a small input a thousandfold: the limit keeps a crafted cookie from costing
/// the server megabytes per request.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// URL-safe base64 that accepts the value with or without `=` padding: Vouch pads (Go's
/// `base64.URLEncoding`), other tools often do not.
const COOKIE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn default_cookie() -> String {
    DEFAULT_COOKIE.to_owned()
}

/// How the backend learns who the caller is.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum IdentitySettings {
    /// No authentication: every request is this user (`nachet-dev`'s choice, for development).
    Development { email: String },
    /// Behind Vouch: `secret` is Vouch's `jwt.secret`; `cookie` is Vouch's `cookie.name`.
    Vouch {
        secret: SecretString,
        #[serde(default = "default_cookie")]
        cookie: String,
    },
    /// Behind another authenticating proxy, which puts the email in this header
    /// (e.g. `X-Forwarded-Email`).
    Header { header: String },
}

/// Why a request has no usable identity. Each message says what was wrong and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("no login cookie {cookie}: sign in through the login proxy")]
    MissingCookie { cookie: String },
    #[error(
        "the login cookie {cookie} is not URL-safe base64: sign in again through the login proxy"
    )]
    NotBase64 { cookie: String },
    #[error(
        "the login cookie {cookie} is not gzip-compressed: check that the login proxy \
         compresses its JWT (Vouch's jwt.compress), then sign in again"
    )]
    NotGzip { cookie: String },
    #[error(
        "the login cookie {cookie} does not hold a well-formed JWT: sign in again through the \
         login proxy"
    )]
    NotAJwt { cookie: String },
    /// The token's header names another algorithm than HS256, `none` (unsigned) included.
    #[error(
        "the login cookie {cookie} is not signed with HS256 (its header says alg {alg:?}): \
         unsigned or otherwise signed tokens are refused; sign in again through the login proxy"
    )]
    WrongAlgorithm { cookie: String, alg: String },
    /// Also what a token signed with another secret gives: the two cannot be told apart.
    #[error(
        "the login cookie {cookie} is not signed with the shared secret: check that the \
         backend's secret is the login proxy's JWT secret, then sign in again"
    )]
    BadSignature { cookie: String },
    #[error("the login cookie {cookie} has expired: sign in again")]
    Expired { cookie: String },
    #[error(
        "the login cookie {cookie} has no valid expiry time (exp): tokens that never expire \
         are refused; sign in again through the login proxy"
    )]
    NoExpiry { cookie: String },
    #[error(
        "the login cookie {cookie} names no email (CustomClaims.email, email or sub): \
         configure the login proxy to put the user's email in its JWT"
    )]
    NoEmail { cookie: String },
    #[error(
        "the header {header} is missing: reach the backend through the authenticating proxy, \
         which sets it"
    )]
    MissingHeader { header: String },
    #[error(
        "the header {header} does not hold one usable email (it is empty, repeated or not \
         plain ASCII): check the authenticating proxy's configuration"
    )]
    BadHeader { header: String },
    #[error("the development user's email is empty: set the identity's email in the configuration")]
    NoDevelopmentEmail,
}

impl IdentitySettings {
    /// The caller's email (trimmed, lower-case) according to the configured mode.
    pub fn email_of(&self, request: &HttpRequest) -> Result<String, IdentityError> {
        match self {
            Self::Development { email } => {
                normalized(email).ok_or(IdentityError::NoDevelopmentEmail)
            }
            Self::Vouch { secret, cookie } => vouch_email(request, cookie, secret),
            Self::Header { header } => header_email(request, header),
        }
    }
}

/// Trimmed and lower-cased, so one person is one user whatever the proxy's spelling;
/// `None` when nothing is left.
fn normalized(email: &str) -> Option<String> {
    let email = email.trim();
    (!email.is_empty()).then(|| email.to_lowercase())
}

/// The email in the header the authenticating proxy sets. Exactly one value is accepted:
/// two values mean a client sent its own and the proxy appended, so neither is trusted.
fn header_email(request: &HttpRequest, header: &str) -> Result<String, IdentityError> {
    let mut values = request.headers().get_all(header);
    let bad = || IdentityError::BadHeader {
        header: header.to_owned(),
    };
    let Some(value) = values.next() else {
        return Err(IdentityError::MissingHeader {
            header: header.to_owned(),
        });
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let value = value.to_str().map_err(|_| bad())?;
    normalized(value).ok_or_else(bad)
}

/// The email in Vouch's cookie, once the cookie is decoded and its JWT verified.
fn vouch_email(
    request: &HttpRequest,
    cookie: &str,
    secret: &SecretString,
) -> Result<String, IdentityError> {
    let cookie_name = || cookie.to_owned();
    // Percent-decoded: Vouch's base64 text has no `%`, so decoding leaves it as is, and a
    // client that percent-encodes the cookie (`=` as `%3D`, as actix's test requests do)
    // is read correctly too.
    let value = request
        .cookie(cookie)
        .filter(|c| !c.value().is_empty())
        .ok_or_else(|| IdentityError::MissingCookie {
            cookie: cookie_name(),
        })?;
    let compressed = COOKIE_BASE64
        .decode(value.value())
        .map_err(|_| IdentityError::NotBase64 {
            cookie: cookie_name(),
        })?;
    let token = gunzip(&compressed).map_err(|e| match e {
        Gunzip::NotGzip => IdentityError::NotGzip {
            cookie: cookie_name(),
        },
        Gunzip::NotText => IdentityError::NotAJwt {
            cookie: cookie_name(),
        },
    })?;
    let claims = verified_claims(&token, secret.expose_secret(), cookie)?;
    email_claim(&claims).ok_or(IdentityError::NoEmail {
        cookie: cookie_name(),
    })
}

/// Why a cookie's bytes are not a token.
enum Gunzip {
    /// Not gzip, or truncated.
    NotGzip,
    /// Gzip, but not text of a sensible size.
    NotText,
}

/// The gzip-compressed text, at most [`MAX_TOKEN_BYTES`] long.
fn gunzip(compressed: &[u8]) -> Result<String, Gunzip> {
    let mut text = Vec::new();
    GzDecoder::new(compressed)
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|_| Gunzip::NotGzip)?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(Gunzip::NotText);
    }
    String::from_utf8(text).map_err(|_| Gunzip::NotText)
}

/// The `alg` of a JWT's header, read by hand: `jsonwebtoken::decode_header` refuses `none`
/// and unknown names as malformed, and those must be told apart as unsigned tokens.
/// `None` when the token is not three segments with a JSON header.
fn header_alg(token: &str) -> Option<String> {
    let mut segments = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let alg = header.as_object()?.get("alg");
    Some(
        alg.and_then(Value::as_str)
            .unwrap_or("(missing)")
            .to_owned(),
    )
}

/// The claims of a token signed with `secret` in HS256 and not expired.
fn verified_claims(token: &str, secret: &str, cookie: &str) -> Result<Value, IdentityError> {
    let cookie = cookie.to_owned();
    let alg = header_alg(token).ok_or_else(|| IdentityError::NotAJwt {
        cookie: cookie.clone(),
    })?;
    if alg != ALGORITHM {
        return Err(IdentityError::WrongAlgorithm { cookie, alg });
    }

    let mut validation = Validation::new(Algorithm::HS256);
    // `exp` is required (the default): a token without it is refused as NoExpiry.
    validation.set_required_spec_claims(&["exp"]);
    // No leeway: Vouch itself checks `exp` without one, and the cookie's Max-Age is the
    // token's lifetime, so the two agree on when a session ends.
    validation.leeway = 0;
    // Vouch's `aud` is its list of domains; jsonwebtoken refuses any `aud` when none is
    // expected. The shared secret is what binds the token to this deployment.
    validation.validate_aud = false;

    let key = DecodingKey::from_secret(secret.as_bytes());
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature => IdentityError::BadSignature { cookie },
            ErrorKind::InvalidAlgorithm => IdentityError::WrongAlgorithm { cookie, alg },
            ErrorKind::ExpiredSignature => IdentityError::Expired { cookie },
            ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim)
                if claim == "exp" =>
            {
                IdentityError::NoExpiry { cookie }
            }
            _ => {
                tracing::debug!(error = %e, "login cookie refused as not a JWT");
                IdentityError::NotAJwt { cookie }
            }
        }),
    }
}

/// The first non-empty of `CustomClaims.email` (what Vouch copies from the identity
/// provider when configured to), the standard `email` claim, then `sub`.
fn email_claim(claims: &Value) -> Option<String> {
    let candidates = [
        claims.get("CustomClaims").and_then(|c| c.get("email")),
        claims.get("email"),
        claims.get("sub"),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(normalized)
}

/// Test support: the value of a login cookie exactly as Vouch makes it from `claims`:
/// signed in HS256 with `secret`, gzip-compressed, then URL-safe base64 with `=` padding
/// (Go's `base64.URLEncoding`). The app's integration tests sign in with it.
///
/// # Panics
///
/// When the claims cannot be serialized as JSON (never for a `serde_json::Value`).
pub fn vouch_cookie_value(claims: &Value, secret: &str) -> String {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a JSON value signs as a JWT");
    gzip_base64(&token)
}

/// Gzip then URL-safe base64 with padding, as Vouch wraps its JWT.
fn gzip_base64(token: &str) -> String {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(token.as_bytes())
        .expect("writing to memory does not fail");
    let compressed = encoder.finish().expect("writing to memory does not fail");
    general_purpose::URL_SAFE.encode(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::cookie::Cookie;
    use actix_web::test::TestRequest;
    use serde_json::json;

    const SECRET: &str = "the shared secret";

    fn vouch() -> IdentitySettings {
        IdentitySettings::Vouch {
            secret: SecretString::from(SECRET),
            cookie: DEFAULT_COOKIE.to_owned(),
        }
    }

    fn in_an_hour() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    /// The email Vouch mode reads from a request carrying `value` as its cookie.
    fn email_with_cookie(value: &str) -> Result<String, IdentityError> {
        let request = TestRequest::default()
            .cookie(Cookie::new(DEFAULT_COOKIE, value.to_owned()))
            .to_http_request();
        vouch().email_of(&request)
    }

    fn refused_with(error: fn(String) -> IdentityError) -> Result<String, IdentityError> {
        Err(error(DEFAULT_COOKIE.to_owned()))
    }

    /// A JWT with any header, and an empty signature, wrapped as Vouch wraps its tokens.
    fn unsigned_cookie(header: &Value, claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        gzip_base64(&format!("{}.{}.", part(header), part(claims)))
    }

    #[test]
    fn the_email_is_custom_claims_email() {
        // Shaped like a real Vouch token: `aud` is its domains, `username` and `sub` too.
        let claims = json!({
            "sub": "1234567890",
            "username": "someone",
            "CustomClaims": {"email": "  Jane.Doe@Inspection.GC.ca "},
            "PAccessToken": "",
            "PIdToken": "",
            "aud": "inspection.gc.ca",
            "iss": "Vouch",
            "exp": in_an_hour(),
        });
        let value = vouch_cookie_value(&claims, SECRET);
        assert_eq!(
            email_with_cookie(&value),
            Ok("jane.doe@inspection.gc.ca".to_owned())
        );
    }

    #[test]
    fn a_browser_cookie_header_is_read_as_is() {
        // A browser sends Vouch's value unencoded, `=` padding included, among other cookies.
        let claims = json!({"email": "a@b.ca", "exp": in_an_hour()});
        let value = vouch_cookie_value(&claims, SECRET);
        let header = format!("theme=dark; {DEFAULT_COOKIE}={value}; other=%zz");
        let request = TestRequest::default()
            .insert_header(("cookie", header))
            .to_http_request();
        assert_eq!(vouch().email_of(&request), Ok("a@b.ca".to_owned()));
    }

    #[test]
    fn the_email_falls_back_to_the_email_claim_then_sub() {
        let email =
            json!({"email": "A@B.ca", "sub": "c@d.ca", "CustomClaims": {}, "exp": in_an_hour()});
        let blank =
            json!({"email": "A@B.ca", "CustomClaims": {"email": "  "}, "exp": in_an_hour()});
        let sub = json!({"sub": "C@D.ca", "exp": in_an_hour()});
        for (claims, expected) in [(email, "a@b.ca"), (blank, "a@b.ca"), (sub, "c@d.ca")] {
            let value = vouch_cookie_value(&claims, SECRET);
            assert_eq!(
                email_with_cookie(&value),
                Ok(expected.to_owned()),
                "{claims}"
            );
        }
    }

    #[test]
    fn a_token_without_an_email_is_refused() {
        let value = vouch_cookie_value(&json!({"sub": " ", "exp": in_an_hour()}), SECRET);
        assert_eq!(
            email_with_cookie(&value),
            refused_with(|cookie| IdentityError::NoEmail { cookie })
        );
    }

    #[test]
    fn padding_is_optional() {
        // Compressed lengths differ with the email's, so some of these need padding.
        let mut padded = 0;
        for email in ["a@b.ca", "aa@b.ca", "aaa@b.ca"] {
            let value = vouch_cookie_value(&json!({"email": email, "exp": in_an_hour()}), SECRET);
            padded += usize::from(value.ends_with('='));
            let unpadded = value.trim_end_matches('=');
            assert_eq!(email_with_cookie(&value), Ok(email.to_owned()));
            assert_eq!(email_with_cookie(unpadded), Ok(email.to_owned()));
        }
        assert!(
            padded > 0,
            "Vouch pads its base64, so some cookies end with ="
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let an_hour_ago = chrono::Utc::now().timestamp() - 3600;
        let value = vouch_cookie_value(&json!({"email": "a@b.ca", "exp": an_hour_ago}), SECRET);
        let error = email_with_cookie(&value);
        assert_eq!(
            error,
            refused_with(|cookie| IdentityError::Expired { cookie })
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "the login cookie jxVouchCookie has expired: sign in again"
        );
    }

    #[test]
    fn a_token_that_never_expires_is_refused() {
        let value = vouch_cookie_value(&json!({"email": "a@b.ca"}), SECRET);
        assert_eq!(
            email_with_cookie(&value),
            refused_with(|cookie| IdentityError::NoExpiry { cookie })
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let claims = json!({"email": "a@b.ca", "exp": in_an_hour()});
        let value = vouch_cookie_value(&claims, "another secret");
        let error = email_with_cookie(&value);
        assert_eq!(
            error,
            refused_with(|cookie| IdentityError::BadSignature { cookie })
        );
        assert!(
            error
                .unwrap_err()
                .to_string()
                .starts_with("the login cookie jxVouchCookie is not signed with the shared secret")
        );
    }

    #[test]
    fn an_unsigned_token_is_refused_as_such() {
        let claims = json!({"email": "a@b.ca", "exp": in_an_hour()});
        let value = unsigned_cookie(&json!({"alg": "none", "typ": "JWT"}), &claims);
        let error = email_with_cookie(&value);
        assert_eq!(
            error,
            Err(IdentityError::WrongAlgorithm {
                cookie: DEFAULT_COOKIE.to_owned(),
                alg: "none".to_owned()
            })
        );
        assert!(error.unwrap_err().to_string().contains("\"none\""));
    }

    #[test]
    fn a_token_signed_with_another_algorithm_is_refused() {
        let claims = json!({"email": "a@b.ca", "exp": in_an_hour()});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            email_with_cookie(&gzip_base64(&token)),
            Err(IdentityError::WrongAlgorithm {
                cookie: DEFAULT_COOKIE.to_owned(),
                alg: "HS512".to_owned()
            })
        );
    }

    #[test]
    fn a_token_that_is_not_gzipped_is_refused() {
        let claims = json!({"email": "a@b.ca", "exp": in_an_hour()});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let error = email_with_cookie(&URL_SAFE_NO_PAD.encode(token));
        assert_eq!(
            error,
            refused_with(|cookie| IdentityError::NotGzip { cookie })
        );
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("is not gzip-compressed")
        );
    }

    #[test]
    fn a_cookie_that_is_not_base64_is_refused() {
        for value in ["%%%", "a+b/c"] {
            let error = email_with_cookie(value);
            assert_eq!(
                error,
                refused_with(|cookie| IdentityError::NotBase64 { cookie })
            );
            assert!(
                error
                    .unwrap_err()
                    .to_string()
                    .contains("is not URL-safe base64")
            );
        }
    }

    #[test]
    fn gzipped_text_that_is_not_a_jwt_is_refused() {
        for text in ["not a token", "a.b.c", "e30.e30"] {
            assert_eq!(
                email_with_cookie(&gzip_base64(text)),
                refused_with(|cookie| IdentityError::NotAJwt { cookie }),
                "{text}"
            );
        }
    }

    #[test]
    fn a_request_without_the_cookie_is_refused() {
        let request = TestRequest::default()
            .cookie(Cookie::new("another", "value"))
            .to_http_request();
        let error = vouch().email_of(&request);
        assert_eq!(
            error,
            refused_with(|cookie| IdentityError::MissingCookie { cookie })
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "no login cookie jxVouchCookie: sign in through the login proxy"
        );
    }

    #[test]
    fn the_cookie_name_is_configurable() {
        let settings = IdentitySettings::Vouch {
            secret: SecretString::from(SECRET),
            cookie: "VouchCookie".to_owned(),
        };
        let value = vouch_cookie_value(&json!({"email": "a@b.ca", "exp": in_an_hour()}), SECRET);
        let request = TestRequest::default()
            .cookie(Cookie::new("VouchCookie", value))
            .to_http_request();
        assert_eq!(settings.email_of(&request), Ok("a@b.ca".to_owned()));
    }

    #[test]
    fn header_mode_reads_the_header() {
        let settings = IdentitySettings::Header {
            header: "X-Forwarded-Email".to_owned(),
        };
        let request = TestRequest::default()
            .insert_header(("x-forwarded-email", " Jane@Example.CA "))
            .to_http_request();
        assert_eq!(
            settings.email_of(&request),
            Ok("jane@example.ca".to_owned())
        );
    }

    #[test]
    fn header_mode_refuses_a_missing_empty_or_repeated_header() {
        let header = "X-Forwarded-Email".to_owned();
        let settings = IdentitySettings::Header {
            header: header.clone(),
        };
        let missing = settings.email_of(&TestRequest::default().to_http_request());
        assert_eq!(
            missing,
            Err(IdentityError::MissingHeader {
                header: header.clone()
            })
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .starts_with("the header X-Forwarded-Email is missing: ")
        );

        let empty = TestRequest::default()
            .insert_header((header.as_str(), "  "))
            .to_http_request();
        let repeated = TestRequest::default()
            .append_header((header.as_str(), "a@b.ca"))
            .append_header((header.as_str(), "c@d.ca"))
            .to_http_request();
        for request in [empty, repeated] {
            assert_eq!(
                settings.email_of(&request),
                Err(IdentityError::BadHeader {
                    header: header.clone()
                })
            );
        }
    }

    #[test]
    fn vouch_mode_ignores_the_header() {
        let request = TestRequest::default()
            .insert_header(("X-Forwarded-Email", "a@b.ca"))
            .to_http_request();
        assert_eq!(
            vouch().email_of(&request),
            refused_with(|cookie| IdentityError::MissingCookie { cookie })
        );
    }

    #[test]
    fn development_mode_is_the_configured_user() {
        let settings = IdentitySettings::Development {
            email: "Dev@Example.ca".to_owned(),
        };
        let request = TestRequest::default().to_http_request();
        assert_eq!(settings.email_of(&request), Ok("dev@example.ca".to_owned()));

        let empty = IdentitySettings::Development {
            email: " ".to_owned(),
        };
        assert_eq!(
            empty.email_of(&request),
            Err(IdentityError::NoDevelopmentEmail)
        );
    }

    #[test]
    fn settings_are_read_from_configuration() {
        let settings: IdentitySettings =
            serde_json::from_value(json!({"mode": "vouch", "secret": "s"})).unwrap();
        let IdentitySettings::Vouch { secret, cookie } = &settings else {
            panic!("not vouch: {settings:?}");
        };
        assert_eq!(secret.expose_secret(), "s");
        assert_eq!(cookie, DEFAULT_COOKIE);
        assert!(
            !format!("{settings:?}").contains("\"s\""),
            "the secret is not printed"
        );

        let settings: IdentitySettings =
            serde_json::from_value(json!({"mode": "vouch", "secret": "s", "cookie": "c"})).unwrap();
        assert!(matches!(settings, IdentitySettings::Vouch { cookie, .. } if cookie == "c"));

        let settings: IdentitySettings =
            serde_json::from_value(json!({"mode": "header", "header": "X-Forwarded-Email"}))
                .unwrap();
        assert!(
            matches!(settings, IdentitySettings::Header { header } if header == "X-Forwarded-Email")
        );

        let settings: IdentitySettings =
            serde_json::from_value(json!({"mode": "development", "email": "dev@example.ca"}))
                .unwrap();
        assert!(
            matches!(settings, IdentitySettings::Development { email } if email == "dev@example.ca")
        );

        assert!(serde_json::from_value::<IdentitySettings>(json!({"mode": "vouch"})).is_err());
        assert!(serde_json::from_value::<IdentitySettings>(json!({"mode": "open"})).is_err());
    }
}
