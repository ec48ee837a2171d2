//! Reading a request body by hand, for routes that must decide before the body is read
//! (`/inf` waits for its turn first) or that keep it without copying: the declared length
//! checked against the limit, the body read into one buffer of that length, JSON parsed
//! into a serde type with the failing field named. [`Json`] is the extractor every other
//! route reads its body with: the same checks, the same messages.

use std::fmt::Display;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev, mime, web};
use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::{Stream, StreamExt};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::error::ApiError;

/// The largest body accepted (`server.max_body_bytes`).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// The body's declared length (`Content-Length`), refused with 413 at once when over
/// `limit`; `None` when the body is sent chunked.
pub fn declared_length(request: &HttpRequest, limit: usize) -> Result<Option<usize>, ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?;
    if length > limit {
        return Err(ApiError::too_large(Some(length), limit));
    }
    Ok(Some(length))
}

/// 415 unless the body is declared as JSON (`application/json` or `+json`).
pub fn require_json(request: &HttpRequest) -> Result<(), ApiError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        });
    if json {
        Ok(())
    } else {
        Err(ApiError::not_json())
    }
}

/// The whole body, in one buffer sized from its declared length (no regrowth, no copy).
pub async fn read<E: Display>(
    mut payload: impl Stream<Item = Result<Bytes, E>> + Unpin,
    declared: Option<usize>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::with_capacity(declared.unwrap_or(64 * 1024));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(None, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON object into `T`, which may borrow from it; a failure names the field.
/// Anything but an object is refused (serde would take `[a, b]` for `{"x": a, "y": b}`).
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::bad_request(
                "the body is empty: send a JSON object",
            ));
        }
        Some(_) => return Err(ApiError::bad_request("the body is not a JSON object")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("the body is refused: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// A JSON request body of type `T`: 415 unless sent as JSON, 413 over
/// `server.max_body_bytes` (from the declared length when there is one), 400 naming the
/// field that does not fit `T` (duplicate keys refused).
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let limit = request
            .app_data::<web::Data<BodyLimit>>()
            .map_or(DEFAULT_LIMIT, |limit| limit.0);
        let declared = require_json(request).and_then(|()| declared_length(request, limit));
        let payload = payload.take();
        Box::pin(async move {
            let body = read(payload, declared?, limit).await?;
            parse_json(&body).map(Json)
        })
    }
}

/// The limit when the app sets none (tests that build a bare app).
const DEFAULT_LIMIT: usize = 2 * 1024 * 1024;

/// A count in a JSON body: a whole number from 0 to `u32::MAX`, written `7` or `7.0` (JSON
/// Schema's `integer` allows both; serde's `u32` only the first). Document the field with
/// `#[schema(value_type = u32)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WholeU32(pub u32);

impl<'de> Deserialize<'de> for WholeU32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        let whole = match number.as_u64() {
            Some(n) => u32::try_from(n).ok(),
            None => number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
                .map(|f| f as u32),
        };
        whole.map(WholeU32).ok_or_else(|| {
            D::Error::custom(format!(
                "{number} is not a whole number from 0 to {}",
                u32::MAX
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: Option<String>,
        #[allow(dead_code)]
        count: Option<u32>,
    }

    #[test]
    fn each_parse_failure_says_where() {
        let message = |text: &str| parse_json::<Body>(text.as_bytes()).unwrap_err().message;
        assert!(message("{").starts_with("the body is not valid JSON"));
        assert!(message(r#"{"name": "a"} x"#).starts_with("the body is not valid JSON"));
        assert!(
            message(r#"{"name": "a", "name": "b"}"#).contains("duplicate field `name`"),
            "a repeated key is refused, not the last one taken"
        );
        assert!(message(r#"{"count": "3"}"#).starts_with("count: invalid type: string"));
        assert!(message(r#"{"count": -1}"#).starts_with("count: invalid value"));
        assert!(parse_json::<Body>(br#"{"name": null, "other": 1}"#).is_ok());
        assert_eq!(message(r#"["a", 3]"#), "the body is not a JSON object");
        assert_eq!(message(" "), "the body is empty: send a JSON object");
    }

    #[test]
    fn a_whole_number_may_be_written_with_a_fraction_of_zero() {
        let whole = |text: &str| serde_json::from_str::<WholeU32>(text);
        assert_eq!(whole("7").unwrap(), WholeU32(7));
        assert_eq!(whole("7.0").unwrap(), WholeU32(7));
        assert_eq!(whole("4294967295").unwrap(), WholeU32(u32::MAX));
        for refused in ["7.5", "-1", "-1.0", "4294967296", "1e300", "\"7\""] {
            assert!(whole(refused).is_err(), "{refused} is not a count");
        }
        assert!(
            whole("7.5")
                .unwrap_err()
                .to_string()
                .contains("not a whole number")
        );
    }
}
