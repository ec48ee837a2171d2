//! The verified dataset, out as a ZIP (`annotations.json` in COCO format, then
//! `images/...`), streamed as it is written: `GET /dataset` for the caller's own pictures,
//! `GET /api/admin/dataset` for everyone's (admin token). See `docs/dataset.md`.

use std::io::{self, Write};
use std::sync::Arc;

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, get, web};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use dataset_zip::ZipSink;
use datastore::DatasetFilter;
use inference::{DatasetService, InferenceService};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;
use uuid::Uuid;

use super::admin::Admin;
use super::caller::Caller;
use super::error::{ApiError, ErrorBody};

/// Chunks of the archive in flight between the writer and the connection.
const CHUNKS_IN_FLIGHT: usize = 8;
/// The writer's buffer: the size of a chunk.
const CHUNK_BYTES: usize = 256 * 1024;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(own_dataset).service(whole_dataset);
}

/// Which verified pictures: `GET /dataset` (the caller's own).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DatasetQuery {
    /// Pictures taken at or after this time (RFC 3339, or a date: midnight UTC; empty: no bound).
    #[param(schema_with = time_or_date)]
    from: Option<String>,
    /// Pictures taken before this time (RFC 3339, or a date: midnight UTC; empty: no bound).
    #[param(schema_with = time_or_date)]
    to: Option<String>,
    /// One folder (its `picture_set_id`).
    folder: Option<Uuid>,
}

/// Which verified pictures: `GET /api/admin/dataset` (everyone's, or one user's).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WholeDatasetQuery {
    /// Pictures taken at or after this time (RFC 3339, or a date: midnight UTC; empty: no bound).
    #[param(schema_with = time_or_date)]
    from: Option<String>,
    /// Pictures taken before this time (RFC 3339, or a date: midnight UTC; empty: no bound).
    #[param(schema_with = time_or_date)]
    to: Option<String>,
    /// One folder (its `picture_set_id`).
    folder: Option<Uuid>,
    /// One user, by email.
    user: Option<String>,
}

/// A bound as the query takes it: an RFC 3339 time, a date, or empty.
fn time_or_date() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let string = |format| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(format)))
    };
    AnyOfBuilder::new()
        .item(string(KnownFormat::DateTime))
        .item(string(KnownFormat::Date))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        )
        .build()
        .into()
}

/// The caller's verified pictures and their COCO annotations, as a ZIP.
#[utoipa::path(
    params(DatasetQuery),
    responses(
        (status = 200, content_type = "application/zip", description = "annotations.json (COCO), then images/"),
        (status = 400, body = ErrorBody, description = "A date that does not parse"),
        (status = 401, body = ErrorBody, description = "No valid identity"),
    )
)]
#[get("/dataset")]
pub async fn own_dataset(
    dataset: web::Data<DatasetService>,
    caller: Caller,
    query: web::Query<DatasetQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = filter(Some(caller.id), query.folder, query.from, query.to)?;
    Ok(stream_export(dataset.into_inner(), filter))
}

/// Everyone's verified pictures (or one user's) and their COCO annotations, as a ZIP.
#[utoipa::path(
    params(WholeDatasetQuery),
    responses(
        (status = 200, content_type = "application/zip", description = "annotations.json (COCO), then images/"),
        (status = 400, body = ErrorBody, description = "A date that does not parse"),
        (status = 401, body = ErrorBody, description = "No or a wrong admin token"),
        (status = 404, body = ErrorBody, description = "No user of that email"),
    ),
    security(("bearer" = []))
)]
#[get("/api/admin/dataset")]
pub async fn whole_dataset(
    _admin: Admin,
    dataset: web::Data<DatasetService>,
    users: web::Data<InferenceService>,
    query: web::Query<WholeDatasetQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let user_id = match &query.user {
        Some(email) => Some(users.existing_user(email).await?),
        None => None,
    };
    let filter = filter(user_id, query.folder, query.from, query.to)?;
    Ok(stream_export(dataset.into_inner(), filter))
}

fn filter(
    user_id: Option<Uuid>,
    folder_id: Option<Uuid>,
    from: Option<String>,
    to: Option<String>,
) -> Result<DatasetFilter, ApiError> {
    // An empty bound (a form's empty field) is no bound.
    let bound = |field: &str, text: Option<String>| {
        text.filter(|t| !t.trim().is_empty())
            .map(|t| time(field, &t))
            .transpose()
    };
    Ok(DatasetFilter {
        user_id,
        folder_id,
        from: bound("from", from)?,
        to: bound("to", to)?,
    })
}

/// RFC 3339, or a date (midnight UTC).
pub fn time(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|date| {
            date.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{field}: \"{text}\" is neither an RFC 3339 time nor a date like 2026-12-01"
            ))
        })
}

/// Runs the export on a blocking thread (the ZIP writer blocks) and answers with the
/// archive as it is written; at most [`CHUNKS_IN_FLIGHT`] chunks wait for a slow client.
fn stream_export(dataset: Arc<DatasetService>, filter: DatasetFilter) -> HttpResponse {
    let (chunks, receiver) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let out = io::BufWriter::with_capacity(CHUNK_BYTES, ChannelWriter(chunks.clone()));
        let mut sink = ZipSink::new(out);
        match runtime.block_on(dataset.export(filter, &mut sink)) {
            Ok(summary) => tracing::info!(?summary, "dataset exported"),
            Err(error) => {
                tracing::error!(%error, "the dataset export failed; the client gets a truncated archive");
                let _ = futures::executor::block_on(
                    chunks.send(Err(io::Error::other(error.to_string()))),
                );
            }
        }
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let name = format!("nachet-dataset-{}.zip", Utc::now().format("%Y%m%dT%H%M%SZ"));
    HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        })
        .streaming(body)
}

/// The archive's bytes into the answer's channel; blocks while the client is behind.
struct ChannelWriter(mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        futures::executor::block_on(self.0.send(Ok(Bytes::copy_from_slice(buf))))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
