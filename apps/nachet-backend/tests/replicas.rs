//! Many replicas, one database (issue 12, item 5): three `nachet-backend` processes on one
//! Postgres database and one Azurite prefix, behind nginx (round robin), the DICOM workers of
//! all three claiming jobs. Under `/inf` load and a run of series predictions, the replica
//! holding a job in the middle of its work is killed with SIGKILL; then:
//!
//! - no accepted request is lost: every `/inf` answered 200 is stored and readable through
//!   the survivors (requests cut by the kill get 502 from nginx: counted apart);
//! - every series ends `completed`;
//! - each run is delivered to the ML app at most once more per crash of a replica that held
//!   its job (the bound below), measured;
//! - the dead replica's job is taken over once its lease runs out (the time is measured);
//! - the survivors' `/metrics` agree with the database and with nginx's access log;
//! - a catalogue switch made on one survivor reaches the other (each replica polls the
//!   version chosen for all of them, recorded in the database, every
//!   `catalogue_poll_seconds`).
//!
//! Needs `TEST_DATABASE_URL`, `TEST_AZURITE_*`, `TEST_ORTHANC_URL` (`deploy/run-tests.sh`
//! sets them) and nginx (`deploy/services.sh install` installs it). The measurements are
//! printed (`cargo nextest run -p nachet-backend --test replicas --no-capture`).

mod replicas_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use catalogue_store::{CatalogueSettings, FernetCipher};
use dicom_files::synthetic::SyntheticSeries;
use pipeline::{CatalogueDocument, CatalogueVersions, validate_document};
use replicas_support::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const REPLICAS: usize = 3;
const SERIES: usize = 6;
const INSTANCES: usize = 8;
const INF_CLIENTS: usize = 3;
const PIPELINE: &str = "seeds";
const FIRST_VERSION: &str = "1.0.0";
const SECOND_VERSION: &str = "1.0.1";
const SEED_PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/examples/seed-photo-1310_1.png"
);
const SEED_PHOTO_DIMS: [u32; 2] = [638, 559];
/// Generous bounds for waits (CI machines are slow and shared); what was measured is printed.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SERIES_TIMEOUT: Duration = Duration::from_secs(60);

/// The processes of the test, killed when it ends, failed or not; on a failure, the end of
/// every log is printed.
struct Cluster {
    replicas: Vec<Replica>,
    nginx: Option<Nginx>,
}

impl Cluster {
    fn nginx(&self) -> &Nginx {
        self.nginx.as_ref().expect("nginx is started")
    }

    fn by_pid(&mut self, pid: u32) -> Option<&mut Replica> {
        self.replicas.iter_mut().find(|r| r.pid == pid)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for replica in &self.replicas {
                eprintln!(
                    "---- replica {} (pid {}, port {}), last lines of {}:\n{}",
                    replica.index,
                    replica.pid,
                    replica.port,
                    replica.log.display(),
                    tail(&replica.log, 30)
                );
            }
            if let Some(nginx) = &self.nginx {
                eprintln!("---- nginx error log:\n{}", nginx.error_log_tail(30));
            }
        }
        // Each replica and nginx are killed by their own Drop.
        self.replicas.clear();
        self.nginx = None;
    }
}

/// The blob settings of the test's Azurite prefix.
fn blob_settings(prefix: &str) -> blob_store::BlobSettings {
    let azurite = test_support::azurite_settings();
    blob_store::BlobSettings::Azure {
        account: azurite.account,
        access_key: SecretString::from(azurite.key),
        container: azurite.container,
        endpoint: Some(azurite.endpoint),
        prefix: Some(prefix.to_owned()),
    }
}

/// The catalogue versions under the test's prefix, as the replicas read them.
fn catalogue_versions(prefix: &str, key: &SecretString) -> CatalogueVersions {
    CatalogueSettings {
        container: None,
        version: None,
        decryption_key: Some(key.clone()),
    }
    .versions(&blob_settings(prefix))
    .unwrap()
}

/// A catalogue of one pipeline `seeds` (detector + classifier) at `models_url`; its
/// description names the version.
fn catalogue_document(version: &str, models_url: &str) -> CatalogueDocument {
    let model = |name: &str, kind: &str, task: &str| {
        json!({
            "model_name": name, "kind": kind, "task": task,
            "endpoint": format!("{models_url}/score"), "api_key": MODELS_KEY,
            "content_type": "application/json",
            "deployment_platform": reference_models::ROUTING_HEADER,
            "version": "1", "dataset_description": "", "accuracy": null
        })
    };
    serde_json::from_value(json!({
        "version": version,
        "date": "2026-12-02",
        "pipelines": [{
            "pipeline_name": PIPELINE,
            "models": [reference_models::SEED_DETECTOR, reference_models::SEED_CLASSIFIER],
            "default": true,
            "version": version,
            "description": format!("catalogue {version}"),
            "dataset_description": "", "accuracy": null
        }],
        "models": [
            model(reference_models::SEED_DETECTOR, "seed_detector", "object-detection"),
            model(reference_models::SEED_CLASSIFIER, "classifier", "classification"),
        ]
    }))
    .unwrap()
}

/// One `/inf` as a client saw it.
#[derive(Debug)]
struct InfOutcome {
    status: u16,
    user: String,
    inference_id: Option<String>,
    picture_id: Option<String>,
    finished: Instant,
    error: Option<String>,
}

/// A seed technician posting the seed photo to `/inf` through nginx until told to stop.
async fn inf_client(
    http: reqwest::Client,
    url: String,
    email: String,
    user: String,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> Vec<InfOutcome> {
    let photo = std::fs::read(SEED_PHOTO).unwrap();
    let body = serde_json::to_vec(&json!({
        "model_name": PIPELINE,
        "image": format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(photo)
        ),
        "imageDims": SEED_PHOTO_DIMS,
        "folder_name": "replicas",
        "container_name": user,
        "user_id": user,
    }))
    .unwrap();
    let body = bytes::Bytes::from(body);
    let mut outcomes = Vec::new();
    while !stop.load(Ordering::SeqCst) && outcomes.len() < 500 {
        let answer = http
            .post(format!("{url}/inf"))
            .header(IDENTITY_HEADER, &email)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let outcome = match answer {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap_or_default();
                if status == 200 {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                // The picture's blob key is `{user}/{folder}/{picture_id}.{ext}`.
                let picture_id = parsed["filename"]
                    .as_str()
                    .and_then(|f| f.rsplit('/').next())
                    .and_then(|f| f.split('.').next())
                    .map(str::to_owned);
                InfOutcome {
                    status,
                    user: user.clone(),
                    inference_id: parsed["inference_id"].as_str().map(str::to_owned),
                    picture_id,
                    finished: Instant::now(),
                    error: (status != 200).then(|| text.chars().take(300).collect()),
                }
            }
            Err(e) => InfOutcome {
                status: 0,
                user: user.clone(),
                inference_id: None,
                picture_id: None,
                finished: Instant::now(),
                error: Some(e.to_string()),
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}

async fn json_of(answer: reqwest::Response) -> (u16, Value) {
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn running_version(http: &reqwest::Client, replica_url: &str) -> Option<String> {
    let answer = http
        .get(format!("{replica_url}/api/admin/pipelines"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .ok()?;
    let (_, body) = json_of(answer).await;
    body["running"]["version"].as_str().map(str::to_owned)
}

async fn metrics_of(http: &reqwest::Client, replica: &Replica) -> Vec<Sample> {
    let answer = http
        .get(format!("{}/metrics", replica.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    parse_metrics(&answer.text().await.unwrap())
}

/// Answers per status that nginx logged as given by the replica on `port` for the requests
/// `which` selects.
fn logged_by(
    log: &[AccessEntry],
    port: u16,
    which: impl Fn(&AccessEntry) -> bool,
) -> BTreeMap<u16, u64> {
    let mut counts = BTreeMap::new();
    for entry in log
        .iter()
        .filter(|e| e.upstream_port() == Some(port) && which(e))
    {
        if let Some(status) = entry.upstream_status {
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    counts
}

/// The counter `nachet_http_requests_total` of one route and method, per status.
fn counted_by(samples: &[Sample], route: &str, method: &str) -> BTreeMap<u16, u64> {
    samples
        .iter()
        .filter(|s| {
            s.name == "nachet_http_requests_total"
                && s.labels.get("route").map(String::as_str) == Some(route)
                && s.labels.get("method").map(String::as_str) == Some(method)
        })
        .map(|s| (s.labels["status"].parse().unwrap(), s.value as u64))
        .collect()
}

fn is_status_callback(entry: &AccessEntry) -> bool {
    entry.method == "PUT"
        && entry.uri.starts_with("/api/studies/series/")
        && entry.uri.ends_with("/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_database_lose_nothing_when_one_is_killed_mid_job() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    nginx_binary(); // fails at once, with how to install it, when nginx is missing

    // 1. What the replicas use: model servers, an ML app, series in Orthanc.
    let models = reference_models::start(reference_models::Options::new(MODELS_KEY))
        .await
        .unwrap();
    let ml_app = StubMlApp::start().await;
    let series: Vec<SyntheticSeries> = (0..SERIES)
        .map(|_| SyntheticSeries::new("MR", INSTANCES))
        .collect();
    futures::future::join_all(series.iter().map(upload_to_orthanc)).await;

    // 2. Two catalogue versions, encrypted, under a fresh prefix.
    let key = FernetCipher::generate_key();
    let prefix = format!("replicas-{}", test_support::unique_suffix());
    let versions = catalogue_versions(&prefix, &key);
    for version in [FIRST_VERSION, SECOND_VERSION] {
        let document = catalogue_document(version, &models.url);
        versions
            .publish(&validate_document(document, None).unwrap())
            .await
            .unwrap();
    }

    // 3. Three replicas on one database and one blob prefix, nginx in front.
    let shared = Shared {
        database_url: test_support::fresh_postgres_database().await,
        blob_prefix: prefix.clone(),
        catalogue_version: FIRST_VERSION.into(),
        catalogue_key: key.expose_secret().to_owned(),
        ml_app_url: ml_app.url.clone(),
    };
    let mut cluster = Cluster {
        replicas: (0..REPLICAS)
            .map(|i| Replica::spawn(i, &shared, dir.path()))
            .collect(),
        nginx: None,
    };
    for replica in &mut cluster.replicas {
        replica.wait_ready(&http, START_TIMEOUT).await;
    }
    let ports: Vec<u16> = cluster.replicas.iter().map(|r| r.port).collect();
    cluster.nginx = Some(Nginx::start(dir.path(), &ports).await);
    let front = cluster.nginx().url.clone();
    ml_app.report_to(&front);
    let db = Database::connect(&shared.database_url).await;
    let ready_after = test_started.elapsed();

    // Everything below goes through nginx, as a deployment's clients do.
    let organization = format!("org-{}", test_support::unique_suffix());
    let (status, body) = json_of(
        http.post(format!("{front}/api/admin/organizations"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "name": organization,
                "dicomwebRoot": format!("{}/dicom-web", test_support::orthanc_url()),
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let radiologist = radiologist_token(&organization);
    let mut technicians = Vec::new();
    for i in 0..INF_CLIENTS {
        let email = format!("tech{i}@replicas.test");
        let (status, body) = json_of(
            http.post(format!("{front}/get-user-id"))
                .header(IDENTITY_HEADER, &email)
                .json(&json!({ "email": "" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        technicians.push((email, body["user_id"].as_str().unwrap().to_owned()));
    }

    // 4. /inf load, and the series predictions.
    let stop_load = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = technicians
        .iter()
        .map(|(email, user)| {
            tokio::spawn(inf_client(
                http.clone(),
                front.clone(),
                email.clone(),
                user.clone(),
                stop_load.clone(),
                answered.clone(),
            ))
        })
        .collect();
    // The series start once the load is under way.
    poll(
        "/inf answered under load",
        START_TIMEOUT,
        Duration::from_millis(50),
        || async { (answered.load(Ordering::SeqCst) >= INF_CLIENTS).then_some(()) },
    )
    .await;

    // The first series to reach the ML app is held there (its answer not yet given): the
    // worker that sent it is in the middle of its job, between "the ML app has the series"
    // and "the submission is recorded" — the worst moment to die.
    ml_app.hold_next();
    let mut runs = BTreeMap::new(); // series id -> run id
    for s in &series {
        let (status, body) = json_of(
            http.post(format!("{front}/api/studies/series/predict"))
                .bearer_auth(&radiologist)
                .json(&json!({
                    "organization": organization,
                    "studyInstanceUid": s.study_instance_uid,
                    "seriesInstanceUid": s.series_instance_uid,
                    "modelType": MODEL,
                }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["decision"], "queued", "{body}");
        runs.insert(
            body["seriesId"].as_str().unwrap().to_owned(),
            body["runId"].as_str().unwrap().to_owned(),
        );
    }

    let held = poll(
        "a series reaching the ML app",
        SERIES_TIMEOUT,
        Duration::from_millis(20),
        || async { ml_app.held() },
    )
    .await;
    let holder = poll(
        "the job of the held series, claimed by a worker",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            db.jobs()
                .await
                .into_iter()
                .find(|j| j.series_id.to_string() == held.series_id)
                .and_then(|j| j.lease_owner)
        },
    )
    .await;
    let dead_pid: u32 = holder
        .split('-')
        .rev()
        .nth(1)
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the lease owner {holder:?}"));
    let victim = cluster
        .by_pid(dead_pid)
        .unwrap_or_else(|| panic!("the lease owner {holder:?} names no replica (pid {dead_pid})"));
    let (victim_index, victim_port) = (victim.index, victim.port);
    assert!(victim.is_alive());
    victim.kill();
    let killed_at = Instant::now();

    // What the dead replica held when it died (nothing it held can change any more).
    let held_at_death: Vec<JobRow> = db
        .jobs()
        .await
        .into_iter()
        .filter(|j| owned_by(j, dead_pid))
        .collect();
    assert!(
        held_at_death
            .iter()
            .any(|j| j.series_id.to_string() == held.series_id),
        "the killed replica held the job of the held series: {held_at_death:?}"
    );
    let crashed_runs: BTreeSet<String> =
        held_at_death.iter().map(|j| j.run_id.to_string()).collect();

    // Each of its jobs is taken over once its lease has run out.
    let mut reclaimed: BTreeMap<String, Duration> = BTreeMap::new();
    while reclaimed.len() < held_at_death.len() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(LEASE_SECONDS * 10),
            "the dead replica's jobs were not taken over within {} s of its death: {:?}",
            LEASE_SECONDS * 10,
            db.jobs().await
        );
        let now = db.jobs().await;
        for job in &held_at_death {
            let still_dead = now
                .iter()
                .any(|j| j.run_id == job.run_id && owned_by(j, dead_pid));
            if !still_dead {
                reclaimed
                    .entry(job.run_id.to_string())
                    .or_insert_with(|| killed_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The ML app, slower than the lease, now answers and reports the series it was holding.
    ml_app.release();

    // 5. Every series ends completed.
    for id in runs.keys() {
        let done = poll(
            &format!("series {id} completed"),
            SERIES_TIMEOUT,
            Duration::from_millis(100),
            || async {
                let (status, body) = json_of(
                    http.get(format!("{front}/api/studies/series/{id}"))
                        .bearer_auth(&radiologist)
                        .send()
                        .await
                        .ok()?,
                )
                .await;
                (status == 200
                    && matches!(
                        body["state"].as_str(),
                        Some("completed" | "failed" | "not_supported")
                    ))
                .then_some(body)
            },
        )
        .await;
        assert_eq!(done["state"], "completed", "series {id}: {done}");
        assert_eq!(done["runId"].as_str(), Some(runs[id].as_str()), "{done}");
        assert_eq!(done["result"]["stub"], true, "{done}");
    }
    let series_done_after = killed_at.elapsed();

    // A catalogue switch on one survivor reaches the other.
    let survivors: Vec<usize> = (0..REPLICAS).filter(|&i| i != victim_index).collect();
    let (a, b) = (
        &cluster.replicas[survivors[0]],
        &cluster.replicas[survivors[1]],
    );
    assert_eq!(
        running_version(&http, &b.url).await.as_deref(),
        Some(FIRST_VERSION)
    );
    let (status, body) = json_of(
        http.post(format!("{}/api/admin/pipelines/reload", a.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "version": SECOND_VERSION }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let switched_at = Instant::now();
    poll(
        "the other survivor running the version switched to",
        Duration::from_secs(CATALOGUE_POLL_SECONDS * 10),
        Duration::from_millis(50),
        || async {
            (running_version(&http, &b.url).await.as_deref() == Some(SECOND_VERSION)).then_some(())
        },
    )
    .await;
    let switch_seen_after = switched_at.elapsed();

    // The load stops once the survivors have served it for a while after the kill.
    poll(
        "/inf answered after the kill",
        SERIES_TIMEOUT,
        Duration::from_millis(100),
        || async { (killed_at.elapsed() > Duration::from_secs(LEASE_SECONDS * 2)).then_some(()) },
    )
    .await;
    stop_load.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for client in load {
        outcomes.extend(client.await.unwrap());
    }
    // Every delivery reported (the held one's report included).
    poll(
        "every delivery reported",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { (ml_app.reports().len() == ml_app.deliveries().len()).then_some(()) },
    )
    .await;

    // ---- no accepted request lost ----
    let accepted: Vec<&InfOutcome> = outcomes.iter().filter(|o| o.status == 200).collect();
    let cut: Vec<&InfOutcome> = outcomes.iter().filter(|o| o.status == 502).collect();
    let other: Vec<&InfOutcome> = outcomes
        .iter()
        .filter(|o| o.status != 200 && o.status != 502)
        .collect();
    let errors = |outcomes: &[&InfOutcome]| -> Vec<(u16, String)> {
        outcomes
            .iter()
            .map(|o| (o.status, o.error.clone().unwrap_or_default()))
            .collect()
    };
    assert!(
        other.is_empty(),
        "answers other than 200 and 502: {:?}",
        errors(&other)
    );
    assert!(
        cut.len() <= INF_CLIENTS,
        "{} requests failed with 502, more than the {INF_CLIENTS} that can have been in flight \
         on the killed replica: {:?}",
        cut.len(),
        errors(&cut)
    );
    let after_kill = accepted.iter().filter(|o| o.finished > killed_at).count();
    let before_kill = accepted.len() - after_kill;
    assert!(
        after_kill >= INF_CLIENTS,
        "the survivors answered only {after_kill} /inf after the kill"
    );
    for outcome in &accepted {
        let (inference_id, picture_id) = (
            outcome.inference_id.as_deref().unwrap(),
            outcome.picture_id.as_deref().unwrap(),
        );
        let email = &technicians
            .iter()
            .find(|(_, u)| *u == outcome.user)
            .unwrap()
            .0;
        let (status, body) = json_of(
            http.post(format!("{front}/get-picture"))
                .header(IDENTITY_HEADER, email)
                .json(&json!({ "container_name": outcome.user, "picture_id": picture_id }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "picture {picture_id}: {body}");
        assert_eq!(
            body["inference"]["inference_id"].as_str(),
            Some(inference_id),
            "picture {picture_id}"
        );
        assert!(
            body["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("data:image/png;base64,")),
            "picture {picture_id} has its image"
        );
    }
    // A request cut by the kill may have been stored before its answer was lost.
    let stored = db.count("inferences").await as usize;
    assert!(
        (accepted.len()..=accepted.len() + cut.len()).contains(&stored),
        "{stored} inferences stored for {} answered 200 and {} cut",
        accepted.len(),
        cut.len()
    );
    // Each stored inference has its picture and its result document (a cut request may
    // have left its blobs without rows: nothing else may).
    let blobs = blob_store::open(&blob_settings(&prefix)).unwrap();
    let keys: Vec<datastore::BlobKey> = datastore::BlobStore::list(&blobs, "")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.key)
        .collect();
    let inference_blobs = keys
        .iter()
        .filter(|k| !k.to_string().starts_with("pipelines/"))
        .count();
    assert!(
        (2 * stored..=2 * (stored + cut.len())).contains(&inference_blobs),
        "{inference_blobs} blobs for {stored} stored inferences ({} cut)",
        cut.len()
    );

    // ---- each run delivered at most once more per crash of a replica holding its job ----
    // The bound: a run's series reaches the ML app at most 1 + c times, where c is the
    // number of replicas that died while holding the run's job. A worker sends only while it
    // holds the job's lease (checked just before sending), and records the submission right
    // after the ML app's answer; a crash between the two is the only way a run is sent again
    // (once its lease runs out, by whichever worker claims it), unless the ML app reported
    // meanwhile (the run is then over and is not sent again). Here c = 1 for the runs the
    // killed replica held, 0 for the others.
    assert!(ml_app.refused().is_empty(), "{:?}", ml_app.refused());
    let delivered = ml_app.deliveries_per_run();
    for (series_id, run_id) in &runs {
        let n = delivered
            .get(&(series_id.clone(), run_id.clone()))
            .copied()
            .unwrap_or(0);
        let crashes = usize::from(crashed_runs.contains(run_id));
        assert!(
            (1..=1 + crashes).contains(&n),
            "series {series_id} run {run_id} was delivered {n} times; the bound is 1 + {crashes}"
        );
    }
    assert_eq!(
        delivered.len(),
        runs.len(),
        "deliveries of runs never asked for: {delivered:?}"
    );
    let total: usize = delivered.values().sum();
    let duplicates = total - runs.len();
    let max = delivered.values().copied().max().unwrap_or(0);
    let reports = ml_app.reports();
    assert!(
        reports.iter().all(|r| matches!(r.status, Some(200 | 409))),
        "a report was not taken (200) or refused as late (409): {reports:?}"
    );

    // ---- the survivors' metrics agree with the database and with nginx ----
    let log = cluster.nginx().access_log();
    let logged_200 = log
        .iter()
        .filter(|e| e.method == "POST" && e.uri == "/inf" && e.status == 200)
        .count();
    assert_eq!(
        logged_200,
        accepted.len(),
        "nginx logged as many /inf answered 200 as the clients got"
    );
    let by_state = db.series_by_state().await;
    assert_eq!(
        by_state,
        BTreeMap::from([("completed".to_owned(), SERIES as i64)])
    );
    for &i in &survivors {
        let replica = &cluster.replicas[i];
        let samples = metrics_of(&http, replica).await;
        for (state, count) in &by_state {
            assert_eq!(
                sample(&samples, "nachet_series", &[("state", state)]),
                Some(*count as f64),
                "replica {i}: series {state}"
            );
        }
        assert_eq!(
            sample(
                &samples,
                "nachet_catalogue_info",
                &[("version", SECOND_VERSION)]
            ),
            Some(1.0),
            "replica {i} reports the catalogue version it runs"
        );
        let inf = counted_by(&samples, "/inf", "POST");
        assert!(
            inf.get(&200).copied().unwrap_or(0) > 0,
            "replica {i} answered /inf: {inf:?}"
        );
        assert_eq!(
            inf,
            logged_by(&log, replica.port, |e| e.method == "POST"
                && e.uri == "/inf"),
            "replica {i}: /inf answers counted in its metrics and logged by nginx"
        );
        assert_eq!(
            counted_by(&samples, "/api/studies/series/{series_id}/status", "PUT"),
            logged_by(&log, replica.port, is_status_callback),
            "replica {i}: status callbacks counted in its metrics and logged by nginx"
        );
        let timed = sample(
            &samples,
            "nachet_http_request_duration_seconds_count",
            &[("route", "/inf"), ("method", "POST")],
        );
        assert_eq!(
            timed,
            Some(inf.values().sum::<u64>() as f64),
            "replica {i}: every /inf answer timed"
        );
    }
    let cut_on_victim = log
        .iter()
        .filter(|e| e.upstream_port() == Some(victim_port) && e.status == 502)
        .count();

    eprintln!(
        "many replicas: {REPLICAS} replicas ready {:.1} s after the start; replica {victim_index} \
         (pid {dead_pid}) killed holding {} job(s); taken over {:?} after the kill (lease {LEASE_SECONDS} s); \
         {SERIES} series completed {:.1} s after the kill; deliveries to the ML app: {total} for \
         {} runs, {duplicates} duplicate(s), at most {max} per run (bound: 1 + crashes while \
         holding the run's job); /inf: {} answered 200 ({before_kill} before the kill, {after_kill} after), {} cut by \
         the kill (502; nginx logged {cut_on_victim} 502 from the killed replica), {stored} \
         stored; catalogue switch seen by the other survivor after {:.2} s (poll \
         {CATALOGUE_POLL_SECONDS} s); whole test {:.1} s",
        ready_after.as_secs_f64(),
        held_at_death.len(),
        reclaimed.values().collect::<Vec<_>>(),
        series_done_after.as_secs_f64(),
        runs.len(),
        accepted.len(),
        cut.len(),
        switch_seen_after.as_secs_f64(),
        test_started.elapsed().as_secs_f64(),
    );
    drop(cluster);
    ml_app.stop().await;
    models.stop().await;
    // Passed: what it stored goes (on a failure it stays, to be looked at).
    for key in &keys {
        datastore::BlobStore::delete(&blobs, key).await.unwrap();
    }
    db.drop_database(&shared.database_url).await;
}

#[test]
fn the_metrics_and_access_log_readers_read_what_they_are_given() {
    let samples = parse_metrics(
        "# HELP nachet_http_requests HTTP requests\n\
         nachet_http_requests_total{route=\"/api/studies/series/{series_id}/status\",method=\"PUT\",status=\"409\"} 3\n\
         nachet_catalogue_info{version=\"a\\\"b,c}\"} 1\n\
         nachet_inf_working 2\n# EOF\n",
    );
    let status_route = [("route", "/api/studies/series/{series_id}/status")];
    assert_eq!(
        counted_by(&samples, status_route[0].1, "PUT"),
        [(409, 3)].into()
    );
    assert_eq!(
        sample(&samples, "nachet_http_requests_total", &status_route),
        Some(3.0)
    );
    assert_eq!(
        sample(&samples, "nachet_catalogue_info", &[("version", "a\"b,c}")]),
        Some(1.0)
    );
    assert_eq!(sample(&samples, "nachet_inf_working", &[]), Some(2.0));
    assert_eq!(sample(&samples, "nachet_inf_working", &[("x", "y")]), None);

    let retried = AccessEntry::parse("POST|/inf|200|127.0.0.1:1, 127.0.0.1:2|502, 200").unwrap();
    assert_eq!(
        (
            retried.upstream_port(),
            retried.upstream_status,
            retried.tried.len()
        ),
        (Some(2), Some(200), 2)
    );
    let cut = AccessEntry::parse("POST|/inf|502|127.0.0.1:1|502").unwrap();
    assert_eq!((cut.status, cut.upstream_port()), (502, Some(1)));
    assert!(AccessEntry::parse("not a line").is_none());
}
