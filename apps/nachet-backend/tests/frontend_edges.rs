//! The edges the browser meets before any route: CORS, and who the caller is.

mod common;

use common::*;
use nachet_backend::http::identity::{IdentitySettings, vouch_cookie_value};
use secrecy::SecretString;
use serde_json::{Value, json};

const FRONTEND: &str = "http://localhost:5173";

/// The preflight a browser sends before the frontend's every call.
async fn preflight(t: &TestBackend, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, t.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "access-control-allow-origin,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn cors_lets_the_frontend_in_and_no_one_else() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    for path in [
        "/get-user-id",
        "/inf",
        "/get-directories",
        "/seeds",
        "/no-such-route",
    ] {
        let allowed = preflight(&t, path, FRONTEND).await;
        assert!(
            allowed.status().is_success(),
            "{path}: {}",
            allowed.status()
        );
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            Some(FRONTEND)
        );
        assert_eq!(
            header(&allowed, "access-control-allow-credentials"),
            Some("true")
        );
        let methods = header(&allowed, "access-control-allow-methods").unwrap();
        for method in ["GET", "POST", "OPTIONS"] {
            assert!(methods.contains(method), "{methods}");
        }
        let headers = header(&allowed, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("content-type") && headers.contains("access-control-allow-origin")
        );

        let refused = preflight(&t, path, "http://evil.example").await;
        assert!(
            !refused.status().is_success(),
            "{path}: {}",
            refused.status()
        );
        assert_eq!(header(&refused, "access-control-allow-origin"), None);
    }

    // The real call, and an error answer: both carry the echoed origin.
    let ok = t
        .http
        .post(t.url("/get-user-id"))
        .header("Origin", FRONTEND)
        .json(&json!({"email": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some(FRONTEND));
    let refused = t
        .http
        .post(t.url("/get-directories"))
        .header("Origin", FRONTEND)
        .json(&json!({"container_name": "not a uuid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        header(&refused, "access-control-allow-origin"),
        Some(FRONTEND)
    );
    assert_eq!(
        header(&refused, "access-control-allow-credentials"),
        Some("true")
    );
    t.backend.stop().await;
}

const SECRET: &str = "the secret vouch and the backend share";

async fn behind_vouch() -> TestBackend {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    settings.identity = Some(IdentitySettings::Vouch {
        secret: SecretString::from(SECRET),
        cookie: "jxVouchCookie".into(),
    });
    start_with(settings, dir).await
}

async fn user_id_with_cookie(t: &TestBackend, cookie: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(t.url("/get-user-id"))
        .header("Cookie", format!("jxVouchCookie={cookie}"))
        .json(&json!({"email": ""}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

#[tokio::test]
async fn behind_vouch_the_cookie_says_who_and_nothing_else_does() {
    let t = behind_vouch().await;
    let claims = json!({"CustomClaims": {"email": "Analyst@CFIA.example"}, "exp": in_an_hour()});
    let (status, answer) = user_id_with_cookie(&t, &vouch_cookie_value(&claims, SECRET)).await;
    assert_eq!(status, 200, "{answer}");
    let analyst = answer["user_id"].as_str().unwrap().to_owned();
    let (_, again) = user_id_with_cookie(
        &t,
        &vouch_cookie_value(
            &json!({"email": "analyst@cfia.example", "exp": in_an_hour()}),
            SECRET,
        ),
    )
    .await;
    assert_eq!(
        again["user_id"],
        analyst.as_str(),
        "the standard email claim"
    );

    let expired =
        json!({"CustomClaims": {"email": "analyst@cfia.example"}, "exp": in_an_hour() - 7200});
    let cases = [
        (vouch_cookie_value(&expired, SECRET), "expired"),
        (vouch_cookie_value(&claims, "another secret"), "signed"),
        ("%%%".to_owned(), "base64"),
        (
            // A JWT that was never gzip-compressed.
            {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE.encode(b"eyJhbGciOiJIUzI1NiJ9.e30.sig")
            },
            "gzip",
        ),
    ];
    for (cookie, says) in cases {
        let (status, answer) = user_id_with_cookie(&t, &cookie).await;
        assert_eq!(status, 401, "{says}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{says}: {answer}"
        );
    }
    // No cookie; and the proxy header means nothing in this mode.
    let response = client_as("analyst@cfia.example")
        .post(t.url("/get-user-id"))
        .json(&json!({"email": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("www-authenticate").is_some());
    t.backend.stop().await;
}

#[tokio::test]
async fn behind_a_proxy_the_header_says_who() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let tech = t.user(TECH).await;
    let other = t.user("other@example.org").await;
    assert_ne!(tech, other);
    let response = reqwest::Client::new()
        .post(t.url("/get-user-id"))
        .json(&json!({"email": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains(IDENTITY_HEADER),
        "{answer}"
    );
    t.backend.stop().await;
}

#[tokio::test]
async fn the_embedded_default_is_one_development_user() {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    settings.identity = Some(IdentitySettings::Development {
        email: "developer@nachet.local".into(),
    });
    let t = start_with(settings, dir).await;
    let plain = reqwest::Client::new();
    let mut ids = Vec::new();
    for body in [
        json!({"email": ""}),
        json!({}),
        json!({"email": "developer@nachet.local"}),
    ] {
        let response = plain
            .post(t.url("/get-user-id"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{body}");
        let answer: Value = response.json().await.unwrap();
        ids.push(answer["user_id"].as_str().unwrap().to_owned());
    }
    assert!(ids.iter().all(|id| id == &ids[0]));
    let stranger = plain
        .post(t.url("/get-user-id"))
        .json(&json!({"email": "someone@else.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 403);
    t.backend.stop().await;
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_and_an_unknown_path_a_json_404() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/inf", "POST"),
        (reqwest::Method::PUT, "/seeds", "GET"),
        (reqwest::Method::DELETE, "/get-directories", "POST"),
        (reqwest::Method::POST, "/api/studies/series/0123", "GET"),
        (
            reqwest::Method::GET,
            "/api/studies/series/0123/status",
            "PUT",
        ),
        // A literal path is not the template beside it (`predict` is not a series id).
        (
            reqwest::Method::PATCH,
            "/api/studies/series/predict",
            "POST",
        ),
    ] {
        let response = t
            .http
            .request(method.clone(), t.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(header(&response, "allow"), Some(allow), "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(allow), "{body}");
    }
    let response = t.http.get(t.url("/no/such/route")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("/no/such/route"),
        "{body}"
    );
    t.backend.stop().await;
}
