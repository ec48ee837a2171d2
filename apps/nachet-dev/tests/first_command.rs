//! The README's first command, as a newcomer runs it: the `nachet-dev` binary in an empty
//! folder serves `/inf` with the reference models and predicts the demo series through the
//! stand-in DICOMweb server and ML app. (This test also makes nextest build the binary that
//! `deploy/schemathesis.sh` runs.)

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_backend_serves_inf_and_predicts_the_demo_series() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut process = Process(
        Command::new(env!("CARGO_BIN_EXE_nachet-dev"))
            .current_dir(dir.path())
            .env_remove("NACHET_CONFIG")
            .env("NACHET__SERVER__PORT", port.to_string())
            .env("NACHET__DEVELOPMENT__DICOM_PORT", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(answer) = http.get(format!("{url}/ready")).send().await
            && answer.status() == 200
        {
            break;
        }
        if let Some(status) = process.0.try_wait().unwrap() {
            panic!(
                "nachet-dev exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("log")).unwrap()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let user: Value = http
        .post(format!("{url}/get-user-id"))
        .json(&json!({"email": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["user_id"].as_str().unwrap();
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/seed-photo-1310_1.png"
    ))
    .unwrap();
    let answer = http
        .post(format!("{url}/inf"))
        .json(&json!({
            "model_name": nachet_dev::DEFAULT_PIPELINE, "imageDims": [638, 559],
            "folder_name": "General", "container_name": user, "user_id": user,
            "image": format!("data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&photo)),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let result: Value = answer.json().await.unwrap();
    assert!(!result["boxes"].as_array().unwrap().is_empty(), "{result}");

    let predict: Value = http
        .post(format!("{url}/api/studies/series/predict"))
        .json(&json!({
            "organization": "demo", "modelType": "brain_tumor_classification",
            "studyInstanceUid": nachet_dev::demo_dicom::DEMO_STUDY_UID,
            "seriesInstanceUid": nachet_dev::demo_dicom::DEMO_SERIES_UID,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = predict["seriesId"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let series: Value = http
            .get(format!("{url}/api/studies/series/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if series["state"] == "completed" {
            assert_eq!(series["result"]["referenceModel"], true, "{series}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{series}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
