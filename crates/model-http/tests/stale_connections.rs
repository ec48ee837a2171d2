//! A model server that closes idle keep-alive connections: the call that goes out on a
//! connection the server just closed is sent again, not failed (no 502 for the user).

use std::collections::BTreeSet;
use std::time::Duration;

use inference::ModelClient;
use model_http::HttpModelClient;
use pipeline::{ModelDefinition, ModelKind, ModelMetadata};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ANSWER: &str = r#"[{"label": "13 Ambrosia trifida", "score": 0.9}]"#;

/// Reads one HTTP request (head and a `Content-Length` body); `false` at end of stream.
async fn read_request(socket: &mut tokio::net::TcpStream) -> bool {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket.read(&mut buffer).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        data.extend_from_slice(&buffer[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                return true;
            }
        }
    }
}

/// Answers the first request of every connection with keep-alive, then reads the second
/// and closes the connection without answering, as a server whose idle timeout fired
/// just as the request arrived.
async fn closing_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/score", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                if !read_request(&mut socket).await {
                    return;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                let _ = read_request(&mut socket).await;
                // Dropped: closed without an answer.
            });
        }
    });
    url
}

#[tokio::test]
async fn a_call_on_a_connection_the_server_closed_is_sent_again() {
    let url = closing_server().await;
    let model = ModelDefinition {
        name: "swin".into(),
        version: "1".into(),
        kind: ModelKind::Classifier,
        endpoint: SecretString::from(url),
        api_key: SecretString::from("key".to_owned()),
        content_type: "application/json".into(),
        deployment_platform: "azureml-model-deployment".into(),
        timeout: Duration::from_secs(5),
        // No retries of its own: only the stale connection is sent again.
        retries: 0,
        reclassify_labels: BTreeSet::new(),
        crop_encoding: pipeline::CropEncoding::default(),
        metadata: ModelMetadata::default(),
    };
    let client = HttpModelClient::new();
    for call in 0..5 {
        let ranking = client
            .classify(&model, bytes::Bytes::from_static(b"QUJD"))
            .await;
        assert!(ranking.is_ok(), "call {call}: {ranking:?}");
    }
    assert!(
        client.stale_connection_retries() >= 4,
        "{} calls went out again",
        client.stale_connection_retries()
    );
}
