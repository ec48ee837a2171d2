//! What operators watch: `/ready` says what is not ready, `/metrics` counts by route
//! pattern.

mod common;
mod series_support;

use blob_store::BlobSettings;
use common::{Blobs, Db, settings, start, start_with};
use secrecy::SecretString;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_metrics_on_the_embedded_default() {
    let t = start(Db::Sqlite, Blobs::LocalDisk).await;
    let ready = t.http.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["ready"], true);

    for _ in 0..2 {
        t.http.get(t.url("/health")).send().await.unwrap();
    }
    let unknown = format!("/api/studies/series/{}", uuid::Uuid::new_v4());
    let answer = t.http.get(t.url(&unknown)).send().await.unwrap();
    assert_eq!(answer.status(), 404);
    // Every answer, errors included, names its request as the logs do.
    let id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let other = t.http.get(t.url("/health")).send().await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), id);
    t.http.get(t.url("/no/such/path")).send().await.unwrap();

    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for expected in [
        r#"nachet_http_requests_total{route="/health",method="GET",status="200"} 3"#,
        r#"nachet_http_requests_total{route="/api/studies/series/{series_id}",method="GET",status="404"} 1"#,
        r#"nachet_http_requests_total{route="(no route)",method="GET",status="404"} 1"#,
        r#"nachet_http_request_duration_seconds_count{route="/health",method="GET"} 3"#,
        "nachet_inf_working 0",
        "nachet_inf_waiting 0",
        r#"nachet_catalogue_info{version=""#,
    ] {
        assert!(text.contains(expected), "{expected} is not in:\n{text}");
    }
    // A path is never a label: the label set stays bounded however many ids are asked.
    assert!(!text.contains(&unknown), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_blob_storage_that_does_not_answer() {
    let (mut settings, dir) = settings(Db::Sqlite, Blobs::LocalDisk).await;
    // Azurite behind a proxy that stops once the backend has started.
    let azurite = test_support::azurite_settings();
    let upstream: std::net::SocketAddr = azurite
        .endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = series_support::FaultProxy::start(upstream).await;
    settings.blob = BlobSettings::Azure {
        account: azurite.account.clone(),
        access_key: SecretString::from(azurite.key),
        container: azurite.container,
        endpoint: Some(format!("http://{}/{}", proxy.addr, azurite.account)),
        prefix: Some(format!("ready-{}", test_support::unique_suffix())),
    };
    let t = start_with(settings, dir).await;
    assert_eq!(
        t.http.get(t.url("/ready")).send().await.unwrap().status(),
        200
    );
    proxy.stop();
    let started = std::time::Instant::now();
    let ready = t.http.get(t.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    let not_ready = body["notReady"].as_array().unwrap();
    assert_eq!(not_ready.len(), 1, "{body}");
    assert!(
        not_ready[0].as_str().unwrap().starts_with("blob storage:"),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the probe must answer"
    );
    // Liveness stays instant and fine.
    assert_eq!(
        t.http.get(t.url("/health")).send().await.unwrap().status(),
        200
    );
}
