//! Reading a request body by hand, for routes that must decide before the body is read
//! (`/inf` waits for its turn first) or that keep it without copying: the declared length
//! checked against the limit, the body read into one buffer of that length, JSON parsed
//! into a serde type with the failing field named.

use actix_web::http::header;
use actix_web::mime;
use actix_web::{HttpRequest, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;

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
pub async fn read(
    mut payload: web::Payload,
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

/// Parses a JSON body into `T`, which may borrow from it; a failure names the field.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
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
    }
}
