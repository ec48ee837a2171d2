//! The radiologist's routes against Orthanc with access by organization: callers carry an
//! ES256 JWT whose key the backend fetches from a JWKS document served by this test (and
//! rotated during it); a study's series with their states; a patient's studies; the jobs
//! list and a retry.

mod series_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_files::synthetic::{SyntheticSeries, new_uid};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use series_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(60);

/// Two P-256 key pairs made for this test (private keys in PKCS#8, public as JWK x/y).
const KEY_1: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzz9y5oclwNNJ0LKZ
WVQzyQKSESZt0Fz0va9+aWJ1j1yhRANCAASyjLZwz6zmM3xZhVQPhcLXJfJ9ttmu
AeEGQsA12vskxjG/NNZXB9TreyT03pYjN3izYoqQ7IMKSRilq42s3biW
-----END PRIVATE KEY-----
";
const KEY_1_XY: (&str, &str) = (
    "soy2cM-s5jN8WYVUD4XC1yXyfbbZrgHhBkLANdr7JMY",
    "Mb801lcH1Ot7JPTeliM3eLNiipDsgwpJGKWrjazduJY",
);
const KEY_2: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgV/9AuFtb8WqREMUp
gUC76k8GyJzFLm9X0DbHm9l5O1ahRANCAAS7qxESGbtlmbyXkVBhGopVm4sBQySK
BGGxhT6CxFbThGFJsPvA2YaadKKnym0MNW5ql+INhYlJ4uMbS0W3cWx/
-----END PRIVATE KEY-----
";
const KEY_2_XY: (&str, &str) = (
    "u6sREhm7ZZm8l5FQYRqKVZuLAUMkigRhsYU-gsRW04Q",
    "YUmw-8DZhpp0oqfKbQw1bmqX4g2FiUni4xtLRbdxbH8",
);

fn jwk(kid: &str, (x, y): (&str, &str)) -> Value {
    json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": x, "y": y})
}

/// A JWKS document served over HTTP, replaceable while it runs.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
}

impl JwksServer {
    async fn start(document: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let document = Arc::new(Mutex::new(document));
        let served = document.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let body = served.lock().unwrap().to_string();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { url, document }
    }

    fn publish(&self, document: Value) {
        *self.document.lock().unwrap() = document;
    }
}

/// A token of `user`, member of `organizations`, signed with `key` under `kid`, expiring
/// `expires_in` seconds from now (negative: expired).
fn token(
    key: &str,
    kid: &str,
    user: &str,
    organizations: &[&str],
    admin: bool,
    expires_in: i64,
) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user,
        "organization": organizations,
        "roles": if admin { vec!["admin"] } else { vec![] },
        "iat": now,
        "exp": now + expires_in,
    });
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&pkcs8_der(key))).unwrap()
}

/// The DER bytes of a PEM private key.
fn pkcs8_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// Polls series `id` as `token`'s holder until the ML app has it.
async fn wait_submitted(http: &reqwest::Client, h: &Harness, token: &str, id: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let url = h.url(&format!("/api/studies/series/{id}"));
        let (status, series) = call(http, reqwest::Method::GET, url, Some(token), None).await;
        assert_eq!(status, 200, "{series}");
        if series["submittedAt"].is_string() {
            return series;
        }
        assert!(start.elapsed() < WAIT, "not submitted in time: {series}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_sees_and_drives_only_their_organizations_series() {
    let jwks = JwksServer::start(json!({"keys": [jwk("k1", KEY_1_XY)]})).await;
    // The ML app takes the series and never reports: the test reports in its place.
    let mut settings = fast_series();
    let port = free_port();
    external_ml_app(&mut settings, &format!("http://127.0.0.1:{port}"));
    settings.access = serde_json::from_value(json!({
        "mode": "jwt",
        "jwks_url": jwks.url,
        "jwks_refresh_seconds": 1,
    }))
    .unwrap();
    let h = start(Db::Sqlite, settings).await;
    let _ml_app = reference_ml_app::start(
        reference_ml_app::Options::new(h.backend.url().to_owned(), CALLBACK_TOKEN)
            .with_port(port)
            .without_callbacks(),
    )
    .await
    .unwrap();
    let api = h.client();
    let http = reqwest::Client::new();
    let ours = api.add_organization(&orthanc_dicomweb()).await;
    let theirs = api.add_organization(&orthanc_dicomweb()).await;
    let unnamed = api.add_organization(&orthanc_dicomweb()).await;

    // A study of three series, of a patient of its own.
    let patient = format!("P-{}", test_support::unique_suffix());
    let study = new_uid();
    let mut series = Vec::new();
    for modality in ["MR", "CT", "MR"] {
        let mut s = SyntheticSeries::new(modality, 2).with_uids(study.clone(), new_uid());
        s.patient_id = patient.clone();
        series.push(uploaded(s).await);
    }
    let study_url = |org: &str| h.url(&format!("/api/studies/{study}/series?organization={org}"));
    let predict_body = |org: &str, s: &SyntheticSeries| {
        json!({"organization": org, "studyInstanceUid": s.study_instance_uid,
               "seriesInstanceUid": s.series_instance_uid, "modelType": MODEL})
    };

    let alice = token(KEY_1, "k1", "alice", &[&ours, "ghost-org"], false, 600);
    let bob = token(KEY_1, "k1", "bob", &[&theirs], false, 600);
    let admin = token(KEY_1, "k1", "root", &[], true, 600);
    let expired = token(KEY_1, "k1", "alice", &[&ours], false, -3600);
    let forged = token(KEY_2, "k1", "alice", &[&ours], false, 600);

    // Refused, each with its status, and nothing changed.
    use reqwest::Method;
    for (who, token, expected) in [
        ("no token", None, 401),
        ("expired", Some(expired.as_str()), 401),
        ("signed with the wrong key", Some(forged.as_str()), 401),
        ("another organization's member", Some(bob.as_str()), 403),
    ] {
        let (status, answer) = call(&http, Method::GET, study_url(&ours), token, None).await;
        assert_eq!(status, expected, "{who}: {answer}");
        let (status, answer) = call(
            &http,
            Method::POST,
            h.url("/api/studies/series/predict"),
            token,
            Some(predict_body(&ours, &series[0])),
        )
        .await;
        assert_eq!(status, expected, "{who}: {answer}");
        assert!(!answer.to_string().contains(&unnamed), "{who}: {answer}");
    }
    let (status, answer) = call(&http, Method::GET, study_url(&ours), Some(&expired), None).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("the access token has expired"))
    );
    // Naming an organization one is not a member of is 403 whether it exists or not; only
    // one's own unknown names are 404.
    let (status, _) = call(
        &http,
        Method::GET,
        study_url("no-such-org"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &http,
        Method::GET,
        study_url("ghost-org"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, jobs) = call(&http, Method::GET, h.url("/api/jobs"), Some(&admin), None).await;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs["jobs"], json!([]), "a refused call recorded something");

    // Alice's study: three series, never predicted.
    let (status, listed) = call(&http, Method::GET, study_url(&ours), Some(&alice), None).await;
    assert_eq!(status, 200, "{listed}");
    let states: Vec<&str> = listed["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["not_started"; 3]);
    assert_eq!(listed["series"][0]["numberOfInstances"], 2);
    let ct = listed["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seriesInstanceUid"] == series[1].series_instance_uid.as_str())
        .unwrap();
    assert_eq!(ct["modality"], "CT");

    // One completed, one in progress, one never predicted.
    let mut ids = Vec::new();
    for s in &series[..2] {
        let (status, answer) = call(
            &http,
            Method::POST,
            h.url("/api/studies/series/predict"),
            Some(&alice),
            Some(predict_body(&ours, s)),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["seriesId"].as_str().unwrap().to_owned());
    }
    let sent = wait_submitted(&http, &h, &alice, &ids[0]).await;
    let (status, _) = api
        .report(
            &ids[0],
            Some(CALLBACK_TOKEN),
            json!({"status": "completed", "modelType": MODEL, "runId": sent["runId"], "result": {"output": []}}),
        )
        .await;
    assert_eq!(status, 200);
    wait_submitted(&http, &h, &alice, &ids[1]).await;
    let (_, listed) = call(&http, Method::GET, study_url(&ours), Some(&alice), None).await;
    let by_uid = |uid: &str| {
        listed["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["seriesInstanceUid"] == uid)
            .cloned()
            .unwrap()
    };
    let first = by_uid(&series[0].series_instance_uid);
    assert_eq!(
        (first["state"].as_str(), first["seriesId"].as_str()),
        (Some("completed"), Some(ids[0].as_str()))
    );
    assert_eq!(first["result"], json!({"output": []}));
    assert_eq!(
        by_uid(&series[1].series_instance_uid)["state"],
        "in_progress"
    );
    let third = by_uid(&series[2].series_instance_uid);
    assert_eq!(
        (third["state"].as_str(), &third["seriesId"]),
        (Some("not_started"), &Value::Null)
    );

    // Another organization's member: the series is not found, the study refused.
    let series_url = h.url(&format!("/api/studies/series/{}", ids[0]));
    let (status, _) = call(&http, Method::GET, series_url.clone(), Some(&bob), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&http, Method::GET, series_url, Some(&alice), None).await;
    assert_eq!(status, 200);
    let retry_url = h.url(&format!("/api/studies/series/{}/retry", ids[0]));
    let (status, _) = call(&http, Method::POST, retry_url.clone(), Some(&bob), None).await;
    assert_eq!(status, 404);
    // A completed series is not retried.
    let (status, answer) = call(&http, Method::POST, retry_url, Some(&alice), None).await;
    assert_eq!(status, 409, "{answer}");

    // The patient's studies.
    let studies_url = |org: &str| {
        h.url(&format!(
            "/api/studies?patientId={patient}&organization={org}"
        ))
    };
    let (status, found) = call(&http, Method::GET, studies_url(&ours), Some(&alice), None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["studies"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["studies"][0]["studyInstanceUid"], study.as_str());
    assert_eq!(found["studies"][0]["numberOfSeries"], 3);
    let (status, _) = call(&http, Method::GET, studies_url(&ours), Some(&bob), None).await;
    assert_eq!(status, 403);

    // Jobs: administrators only, filtered by state.
    let (status, _) = call(&http, Method::GET, h.url("/api/jobs"), Some(&alice), None).await;
    assert_eq!(status, 403);
    let (status, jobs) = call(
        &http,
        Method::GET,
        h.url("/api/jobs?state=completed"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs["jobs"][0]["seriesId"], ids[0].as_str());
    let (_, page) = call(
        &http,
        Method::GET,
        h.url("/api/jobs?limit=1"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (page["jobs"].as_array().unwrap().len(), &page["nextOffset"]),
        (1, &json!(1))
    );

    // The identity provider rotates its key: once the keys held are older than
    // jwks_refresh_seconds (1 s here), tokens of the new key work and the old one's no longer.
    jwks.publish(json!({"keys": [jwk("k2", KEY_2_XY)]}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = token(KEY_2, "k2", "alice", &[&ours], false, 600);
    let (status, answer) = call(&http, Method::GET, study_url(&ours), Some(&rotated), None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(&http, Method::GET, study_url(&ours), Some(&alice), None).await;
    assert_eq!(status, 401, "{answer}");

    h.stop().await;
}
