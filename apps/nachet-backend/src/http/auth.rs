//! Bearer tokens: reading them from a request and comparing them with a secret.

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

/// The token of `Authorization: Bearer <token>`, if there is a non-empty one. The scheme's
/// name is case-insensitive (RFC 9110), so `bearer` is as good as `Bearer`.
pub fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares digests, so the time taken says nothing about the secret.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            let request = actix_web::test::TestRequest::default()
                .insert_header((AUTHORIZATION, header))
                .to_http_request();
            assert_eq!(bearer_token(&request), Some("abc"), "{header}");
        }
        for header in ["Basic abc", "Bearer ", "Bearerabc"] {
            let request = actix_web::test::TestRequest::default()
                .insert_header((AUTHORIZATION, header))
                .to_http_request();
            assert_eq!(bearer_token(&request), None, "{header}");
        }
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}
