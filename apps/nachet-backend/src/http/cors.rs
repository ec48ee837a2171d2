//! Cross-origin calls from browsers (the Nachet frontend's development setup, contract 1.8).
//!
//! Only configured origins are allowed, each answered with its own origin (never `*`, which
//! browsers refuse on calls with credentials) and `Access-Control-Allow-Credentials: true`.
//! Every route answers its preflight; the frontend asks to send `Content-Type` and (oddly)
//! an `Access-Control-Allow-Origin` request header.

use std::time::Duration;

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderName};

/// Browsers may keep a preflight's answer this long.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The allowed origins, checked once at start.
#[derive(Clone, Debug)]
pub struct CorsPolicy {
    origins: Vec<String>,
}

impl CorsPolicy {
    /// Each origin is `scheme://host[:port]`, without a path; `*` is refused.
    pub fn new(origins: &[String]) -> anyhow::Result<Self> {
        for origin in origins {
            let well_formed = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/') && !rest.contains('*'));
            if !well_formed {
                anyhow::bail!(
                    "cors.allowed_origins: {origin:?} is not an origin like http://localhost:5173 (no path, no wildcard)"
                );
            }
        }
        Ok(Self {
            origins: origins.to_vec(),
        })
    }

    /// The middleware of one worker.
    pub fn middleware(&self) -> Cors {
        let mut cors = Cors::default()
            .allowed_methods(["GET", "POST", "PUT", "OPTIONS"])
            .allowed_headers([
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::AUTHORIZATION,
                HeaderName::from_static("access-control-allow-origin"),
            ])
            // A frontend may show it in an error report.
            .expose_headers([super::ops::REQUEST_ID])
            .supports_credentials()
            .max_age(PREFLIGHT_MAX_AGE.as_secs() as usize);
        for origin in &self.origins {
            cors = cors.allowed_origin(origin);
        }
        cors
    }
}
