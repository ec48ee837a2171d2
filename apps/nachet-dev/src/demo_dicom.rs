//! A DICOMweb server of one synthetic MR series (not a patient), the development machine's
//! stand-in for an organization's PACS: QIDO-RS study and series searches, and WADO-RS
//! retrieval of the series as `multipart/related`, which is all the backend asks of a
//! DICOM server. The series is built in memory at start (24 instances of
//! 64 x 64, a few hundred kilobytes).

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use actix_web::{HttpResponse, web};
use anyhow::Context;
use dicom_files::synthetic::SyntheticSeries;
use dicom_series::ports::DicomCredentials;
use dicom_series::{Organization, OrganizationRepository};
use nachet_backend::Settings;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// The organization the demo series belongs to.
pub const DEMO_ORGANIZATION: &str = "demo";
pub const DEMO_STUDY_UID: &str = "2.25.112233445566778899001122334455667788";
pub const DEMO_SERIES_UID: &str = "2.25.112233445566778899001122334455667788.1";
pub const DEMO_PATIENT_ID: &str = "DEMO";
const DEMO_INSTANCES: usize = 24;
const BOUNDARY: &str = "nachet-demo-dicom-boundary";

/// The demo series' instances, in order, with what the searches answer.
struct Demo {
    series: SyntheticSeries,
    /// (SOP Instance UID, Part-10 bytes).
    instances: Vec<(String, Vec<u8>)>,
}

/// The running server.
pub struct DemoDicomServer {
    url: String,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl DemoDicomServer {
    /// Serves the demo series on 127.0.0.1:`port` (0: a free port).
    pub async fn start(port: u16) -> anyhow::Result<DemoDicomServer> {
        let demo = tokio::task::spawn_blocking(|| -> anyhow::Result<Demo> {
            let mut series = SyntheticSeries::new("MR", DEMO_INSTANCES)
                .with_uids(DEMO_STUDY_UID, DEMO_SERIES_UID);
            series.patient_id = DEMO_PATIENT_ID.into();
            series.patient_name = "Demo^Synthetic".into();
            series.series_description = "synthetic demo MR series (not a patient)".into();
            let instances = (0..series.len())
                .map(|i| Ok((series.sop_instance_uid(i), series.instance_bytes(i)?)))
                .collect::<Result<_, dicom_files::synthetic::SyntheticError>>()?;
            Ok(Demo { series, instances })
        })
        .await??;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let demo = web::Data::new(demo);
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(demo.clone())
                .route("/dicom-web/studies", web::get().to(studies))
                .route("/dicom-web/studies/{study}/series", web::get().to(series))
                .route(
                    "/dicom-web/studies/{study}/series/{series}",
                    web::get().to(retrieve_series),
                )
        })
        .workers(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(root = %format!("{url}/dicom-web"), study = DEMO_STUDY_UID, series = DEMO_SERIES_UID, "demo DICOMweb server started (a synthetic series, not a patient)");
        Ok(DemoDicomServer { url, handle, task })
    }

    /// The DICOMweb root (`http://127.0.0.1:port/dicom-web`).
    pub fn root(&self) -> String {
        format!("{}/dicom-web", self.url)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Records the organization `demo` at `root` in the settings' database, once.
pub async fn register_demo_organization(settings: &Settings, root: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            settings.data_dir.display()
        )
    })?;
    let store = sql_store::SqlStore::connect(settings.database.url.expose_secret())
        .await
        .context("cannot open the database (setting database.url)")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    if let Some(existing) = store.find_organization_by_name(DEMO_ORGANIZATION).await? {
        if existing.dicom_server.root != root {
            tracing::warn!(recorded = %existing.dicom_server.root, serving = %root, "the organization `demo` points at another DICOM server: set [development] dicom_port to its port, or start on a fresh data folder");
        }
        return Ok(());
    }
    let organization = Organization::new(
        DEMO_ORGANIZATION,
        root,
        DicomCredentials::None,
        chrono::Utc::now(),
    )?;
    match store.create_organization(&organization).await {
        Ok(()) => {
            tracing::info!(id = %organization.id, %root, "organization `demo` recorded");
            Ok(())
        }
        // Another process recorded it meanwhile.
        Err(dicom_series::CreateOrganizationError::DuplicateName(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn attribute(vr: &str, value: impl Into<Value>) -> Value {
    json!({ "vr": vr, "Value": [value.into()] })
}

fn dicom_json(items: Vec<Value>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/dicom+json")
        .json(items)
}

#[derive(serde::Deserialize)]
struct StudyQuery {
    #[serde(rename = "PatientID")]
    patient_id: Option<String>,
}

async fn studies(demo: web::Data<Demo>, query: web::Query<StudyQuery>) -> HttpResponse {
    let matches = query
        .patient_id
        .as_deref()
        .is_none_or(|id| id.is_empty() || id == "*" || id == demo.series.patient_id);
    if !matches {
        return dicom_json(Vec::new());
    }
    let s = &demo.series;
    dicom_json(vec![json!({
        "0020000D": attribute("UI", s.study_instance_uid.as_str()),
        "00100020": attribute("LO", s.patient_id.as_str()),
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": s.patient_name}]},
        "00080020": attribute("DA", "20240101"),
        "00081030": attribute("LO", "synthetic demo study"),
        "00080061": attribute("CS", s.modality.as_deref().unwrap_or("OT")),
        "00201206": attribute("IS", 1),
        "00201208": attribute("IS", s.len()),
    })])
}

async fn series(demo: web::Data<Demo>, path: web::Path<String>) -> HttpResponse {
    let s = &demo.series;
    if *path != s.study_instance_uid {
        return dicom_json(Vec::new());
    }
    dicom_json(vec![json!({
        "0020000E": attribute("UI", s.series_instance_uid.as_str()),
        "00080060": attribute("CS", s.modality.as_deref().unwrap_or("OT")),
        "00200011": attribute("IS", 1),
        "0008103E": attribute("LO", s.series_description.as_str()),
        "00201209": attribute("IS", s.len()),
        "00080021": attribute("DA", "20240101"),
    })])
}

fn is_the_series(demo: &Demo, study: &str, series: &str) -> bool {
    study == demo.series.study_instance_uid && series == demo.series.series_instance_uid
}

fn multipart<'a>(parts: impl Iterator<Item = &'a [u8]>) -> HttpResponse {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {}\r\n\r\n",
                part.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    HttpResponse::Ok()
        .content_type(format!(
            "multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"
        ))
        .body(body)
}

fn not_found(what: &str) -> HttpResponse {
    HttpResponse::NotFound().body(format!(
        "no {what} here: this server holds only the demo series"
    ))
}

async fn retrieve_series(demo: web::Data<Demo>, path: web::Path<(String, String)>) -> HttpResponse {
    let (study, series) = path.into_inner();
    if !is_the_series(&demo, &study, &series) {
        return not_found("such series");
    }
    multipart(demo.instances.iter().map(|(_, bytes)| bytes.as_slice()))
}
