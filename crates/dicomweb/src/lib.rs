//! The DICOMweb [`DicomSource`]: QIDO-RS to list a series' instances, WADO-RS to retrieve
//! the whole series in one streamed request (contract 2.2).
//!
//! Retrieval writes each part of the `multipart/related` answer to its own file as its
//! bytes arrive ([`multipart`] parses the body incrementally), so memory does not grow with
//! an instance or the series. Then each file is checked to be DICOM Part-10 and its header
//! read (Modality, InstanceNumber; no pixel data), and the instances received are compared
//! with the QIDO-RS listing (requested beside the download): the same SOP Instance UIDs, as
//! many. On any error every file written is removed.
//!
//! Error classes ([`FetchError`]): connection refused or reset, timeouts, 408, 429 and 5xx,
//! and a body without Content-Length that ends before the closing delimiter (the connection
//! dropped) are `Transient`; 401, 403, 404 and other 4xx, a body that is not
//! multipart/related or whose declared length ends before the closing delimiter, parts that
//! are not DICOM, and a series that differs from its listing are `Permanent`. Messages name the server, the study and the series.
//!
//! Timeouts ([`DicomWebOptions`]): a connect timeout, and an idle read timeout that applies
//! to each read (a series can be gigabytes, so there is no total timeout on retrieval).
//! The client does not ask for gzip (Orthanc would spend ~30 ms of CPU per instance on it).
//! It asks for the instances in their stored transfer syntax ([`WADO_ACCEPT`]), so that
//! each file is byte for byte the instance the server stores (falling back to the default
//! transfer syntax only if the server answers 406).

pub mod multipart;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use dicom_series::ports::{
    DicomCredentials, DicomServer, DicomSource, FetchError, InstanceListing, RetrievedInstance,
    SeriesKey,
};
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;

use crate::multipart::{Event, MultipartParser, boundary_of};

/// The Accept header of QIDO-RS.
pub const QIDO_ACCEPT: &str = "application/dicom+json";
/// The Accept header of WADO-RS: the instances as stored (`transfer-syntax=*`). Without
/// it a server must transcode to Explicit VR Little Endian (PS3.18 8.7.3.5): the bytes
/// would not be the stored ones, and Orthanc answers 500 for a series it cannot
/// decompress (JPEG 2000).
pub const WADO_ACCEPT: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
/// The Accept header used when a server refuses [`WADO_ACCEPT`] with 406.
pub const WADO_ACCEPT_DEFAULT_SYNTAX: &str = "multipart/related; type=\"application/dicom\"";
/// Buffer of each instance file being written.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Timeouts of a [`DicomWebSource`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DicomWebOptions {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of an answer (headers or body), reset after each read.
    pub read_timeout: Duration,
    /// Total time of a QIDO-RS search (small answers).
    pub search_timeout: Duration,
}

impl Default for DicomWebOptions {
    fn default() -> Self {
        DicomWebOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            search_timeout: Duration::from_secs(120),
        }
    }
}

/// See the [crate documentation](crate). Cheap to clone (shares one HTTP client).
#[derive(Clone, Debug)]
pub struct DicomWebSource {
    client: reqwest::Client,
    options: DicomWebOptions,
}

impl DicomWebSource {
    pub fn new(options: DicomWebOptions) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()?;
        Ok(DicomWebSource { client, options })
    }

    pub fn options(&self) -> &DicomWebOptions {
        &self.options
    }

    fn request(&self, server: &DicomServer, url: &str, accept: &str) -> RequestBuilder {
        let request = self.client.get(url).header(ACCEPT, accept);
        match &server.credentials {
            DicomCredentials::None => request,
            DicomCredentials::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            DicomCredentials::Bearer { token } => request.bearer_auth(token.expose_secret()),
        }
    }

    /// Sends the WADO-RS request and writes the parts into `dir` (on error, removes what it
    /// wrote). Returns the files in the order received.
    async fn download_parts(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, FetchError> {
        let ctx = Context::new(server, series);
        let url = series_url(&server.root, series);
        let mut response = self
            .request(server, &url, WADO_ACCEPT)
            .send()
            .await
            .map_err(|e| ctx.transport_error("WADO-RS", &e))?;
        if response.status() == StatusCode::NOT_ACCEPTABLE {
            tracing::info!(server = %ctx.server, "transfer-syntax=* refused (406): asking for the default transfer syntax");
            response = self
                .request(server, &url, WADO_ACCEPT_DEFAULT_SYNTAX)
                .send()
                .await
                .map_err(|e| ctx.transport_error("WADO-RS", &e))?;
        }
        let response = ctx.check_status("WADO-RS", response).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let boundary = boundary_of(&content_type).map_err(|e| {
            FetchError::Permanent(format!("{} answered WADO-RS with {e}", ctx.describe()))
        })?;
        let mut written = Vec::new();
        let result = write_parts(&ctx, response, &boundary, dir, &mut written).await;
        if result.is_err() {
            remove_all(&written).await;
        }
        result.map(|()| written)
    }
}

#[async_trait]
impl DicomSource for DicomWebSource {
    async fn list_instances(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
    ) -> Result<Vec<InstanceListing>, FetchError> {
        let ctx = Context::new(server, series);
        let url = format!("{}/instances", series_url(&server.root, series));
        let response = self
            .request(server, &url, QIDO_ACCEPT)
            .query(&[("includefield", "00200013")])
            .timeout(self.options.search_timeout)
            .send()
            .await
            .map_err(|e| ctx.transport_error("QIDO-RS", &e))?;
        let response = ctx.check_status("QIDO-RS", response).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ctx.transport_error("QIDO-RS", &e))?;
        parse_listing(&body).map_err(|e| {
            FetchError::Permanent(format!(
                "{} answered QIDO-RS with a body that is not a DICOM JSON instance list: {e}",
                ctx.describe()
            ))
        })
    }

    async fn retrieve_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        dir: &Path,
    ) -> Result<Vec<RetrievedInstance>, FetchError> {
        let ctx = Context::new(server, series);
        // The listing runs beside the download: a server may take a while to list a large
        // series (Orthanc: about 1 s for 1,000 instances).
        let (files, listing) = tokio::join!(
            self.download_parts(server, series, dir),
            self.list_instances(server, series)
        );
        let files = files?;
        let result = match listing {
            Ok(listing) => self.check_files(series, &ctx, &files, &listing).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            remove_all(&files).await;
        }
        result
    }
}

impl DicomWebSource {
    /// Reads each file's header, then compares the instances with the QIDO-RS listing.
    async fn check_files(
        &self,
        series: &SeriesKey,
        ctx: &Context,
        files: &[PathBuf],
        listing: &[InstanceListing],
    ) -> Result<Vec<RetrievedInstance>, FetchError> {
        if files.is_empty() {
            return Err(FetchError::Permanent(format!(
                "{} sent no instance (WADO-RS) for study {} series {}: the series is empty or does not exist there",
                ctx.server, series.study_instance_uid, series.series_instance_uid
            )));
        }
        let instances = tokio::task::spawn_blocking({
            let files = files.to_vec();
            move || read_headers(files)
        })
        .await
        .map_err(|e| FetchError::Transient(format!("reading the instance headers failed: {e}")))?
        .map_err(|(file, message)| {
            FetchError::Permanent(format!(
                "part {} of the WADO-RS answer of {} is not a usable DICOM instance: {message}",
                file + 1,
                ctx.describe()
            ))
        })?;
        compare_with_listing(ctx, listing, instances)
    }
}

/// `{root}/studies/{study}/series/{series}`.
fn series_url(root: &str, series: &SeriesKey) -> String {
    format!(
        "{}/studies/{}/series/{}",
        root.trim_end_matches('/'),
        series.study_instance_uid,
        series.series_instance_uid
    )
}

/// Names the server and series in messages.
struct Context {
    server: String,
    study: String,
    series: String,
}

impl Context {
    fn new(server: &DicomServer, series: &SeriesKey) -> Self {
        Context {
            server: format!("the DICOM server at {}", server.root.trim_end_matches('/')),
            study: series.study_instance_uid.clone(),
            series: series.series_instance_uid.clone(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (study {} series {})",
            self.server, self.study, self.series
        )
    }

    fn transport_error(&self, what: &str, error: &reqwest::Error) -> FetchError {
        let detail = error_chain(error);
        if error.is_builder() {
            FetchError::Permanent(format!(
                "{what} request to {} cannot be built (check the DICOMweb root URL): {detail}",
                self.server
            ))
        } else if error.is_timeout() {
            FetchError::Transient(format!("{what} to {} timed out: {detail}", self.describe()))
        } else if error.is_connect() {
            FetchError::Transient(format!("cannot connect to {}: {detail}", self.server))
        } else {
            FetchError::Transient(format!(
                "{what} to {} failed in transit: {detail}",
                self.describe()
            ))
        }
    }

    /// Passes 2xx; turns every other status into an error with the server's answer.
    async fn check_status(&self, what: &str, response: Response) -> Result<Response, FetchError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let answer = answer_excerpt(response).await;
        let message = match status {
            StatusCode::NOT_FOUND => format!(
                "{} answered {what} with 404 for study {} series {}: the series does not exist there{answer}",
                self.server, self.study, self.series
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "{} answered {what} with {status} for study {} series {}: check the organization's DICOM server credentials{answer}",
                self.server, self.study, self.series
            ),
            _ => format!(
                "{} answered {what} with {status} for study {} series {}{answer}",
                self.server, self.study, self.series
            ),
        };
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(FetchError::Transient(message))
        } else {
            Err(FetchError::Permanent(message))
        }
    }
}

/// `: "<first 300 characters of the body>"`, or nothing.
async fn answer_excerpt(mut response: Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < 300 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        .trim()
        .to_string();
    if text.is_empty() {
        String::new()
    } else {
        format!(" (answer: {text:?})")
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Streams the multipart body into `{n:06}.dcm` files (n from 1), pushing each file's path
/// onto `written` as soon as it is created.
async fn write_parts(
    ctx: &Context,
    response: Response,
    boundary: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), FetchError> {
    let malformed = |e: multipart::MultipartError| {
        FetchError::Permanent(format!(
            "the WADO-RS answer of {} is not usable multipart/related: {e}",
            ctx.describe()
        ))
    };
    let mut parser = MultipartParser::new(boundary).map_err(malformed)?;
    // Without a Content-Length (Orthanc answers `Connection: close`), a connection that
    // drops looks like the end of the body: the truncated multipart is then the only sign,
    // and retrying may well succeed.
    let close_delimited = response.content_length().is_none();
    let mut body = response.bytes_stream();
    let mut events = Vec::new();
    let mut current: Option<tokio::io::BufWriter<tokio::fs::File>> = None;
    let io_error = |path: &Path, e: std::io::Error| {
        FetchError::Transient(format!("cannot write {}: {e}", path.display()))
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.transport_error("WADO-RS", &e))?;
        parser.feed(&chunk, &mut events).map_err(malformed)?;
        for event in events.drain(..) {
            match event {
                Event::Begin(_) => {
                    let path = dir.join(format!("{:06}.dcm", written.len() + 1));
                    let file = tokio::fs::File::create(&path)
                        .await
                        .map_err(|e| io_error(&path, e))?;
                    written.push(path);
                    current = Some(tokio::io::BufWriter::with_capacity(
                        WRITE_BUFFER_BYTES,
                        file,
                    ));
                }
                Event::Data(data) => {
                    if let (Some(writer), Some(path)) = (current.as_mut(), written.last()) {
                        writer
                            .write_all(&data)
                            .await
                            .map_err(|e| io_error(path, e))?;
                    }
                }
                Event::End => {
                    if let (Some(mut writer), Some(path)) = (current.take(), written.last()) {
                        // Working files: flushed, not synced (a crash restarts the job).
                        writer.flush().await.map_err(|e| io_error(path, e))?;
                    }
                }
            }
        }
    }
    parser.finish().map_err(|e| match e {
        multipart::MultipartError::Truncated(_) if close_delimited => {
            FetchError::Transient(format!(
                "the connection to {} closed before the WADO-RS answer was complete ({e})",
                ctx.describe()
            ))
        }
        e => malformed(e),
    })?;
    Ok(())
}

async fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        if let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot remove a partial instance file: {e}");
        }
    }
}

/// Checks and reads each file's header; on the first failure, its index and the reason.
fn read_headers(files: Vec<PathBuf>) -> Result<Vec<RetrievedInstance>, (usize, String)> {
    files
        .into_iter()
        .enumerate()
        .map(|(index, path)| {
            let header =
                dicom_files::read_instance_header(&path).map_err(|e| (index, e.to_string()))?;
            let size = std::fs::metadata(&path)
                .map_err(|e| (index, format!("cannot read {}: {e}", path.display())))?
                .len();
            Ok(RetrievedInstance {
                path,
                sop_instance_uid: header.sop_instance_uid,
                modality: header.modality,
                instance_number: header.instance_number,
                size,
            })
        })
        .collect()
}

/// The instances received must be exactly the ones listed.
fn compare_with_listing(
    ctx: &Context,
    listing: &[InstanceListing],
    instances: Vec<RetrievedInstance>,
) -> Result<Vec<RetrievedInstance>, FetchError> {
    let listed: HashSet<&str> = listing
        .iter()
        .map(|l| l.sop_instance_uid.as_str())
        .collect();
    let received: HashSet<&str> = instances
        .iter()
        .map(|i| i.sop_instance_uid.as_str())
        .collect();
    if listing.len() == instances.len() && listed == received {
        return Ok(instances);
    }
    let mut missing: Vec<&str> = listed.difference(&received).copied().collect();
    let mut unexpected: Vec<&str> = received.difference(&listed).copied().collect();
    missing.sort_unstable();
    unexpected.sort_unstable();
    let sample = |uids: &[&str]| uids.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    Err(FetchError::Permanent(format!(
        "{} listed {} instances (QIDO-RS) but sent {} (WADO-RS); {} listed and not sent [{}], {} sent and not listed [{}]",
        ctx.describe(),
        listing.len(),
        instances.len(),
        missing.len(),
        sample(&missing),
        unexpected.len(),
        sample(&unexpected),
    )))
}

/// Parses a QIDO-RS answer (DICOM JSON model, PS3.18 F.2): SOP Instance UID (00080018)
/// and Instance Number (00200013, a number or a numeric string).
pub fn parse_listing(body: &[u8]) -> Result<Vec<InstanceListing>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let items = value.as_array().ok_or("the answer is not a JSON array")?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let first = |tag: &str| {
                item.get(tag)
                    .and_then(|attribute| attribute.get("Value"))
                    .and_then(|values| values.get(0))
            };
            let sop_instance_uid = first("00080018")
                .and_then(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("item {index} has no SOP Instance UID (00080018)"))?;
            let instance_number = first("00200013").and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            });
            Ok(InstanceListing {
                sop_instance_uid,
                instance_number,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_from_dicom_json() {
        let body = br#"[
            {"00080018": {"vr": "UI", "Value": ["1.2.3.1"]}, "00200013": {"vr": "IS", "Value": [7]}},
            {"00080018": {"vr": "UI", "Value": ["1.2.3.2"]}, "00200013": {"vr": "IS", "Value": [" 8 "]}},
            {"00080018": {"vr": "UI", "Value": ["1.2.3.3"]}, "00200013": {"vr": "IS"}},
            {"00080018": {"vr": "UI", "Value": ["1.2.3.4"]}}
        ]"#;
        let listing = parse_listing(body).unwrap();
        let numbers: Vec<_> = listing.iter().map(|l| l.instance_number).collect();
        assert_eq!(numbers, vec![Some(7), Some(8), None, None]);
        assert_eq!(listing[3].sop_instance_uid, "1.2.3.4");
        assert!(parse_listing(b"").unwrap().is_empty());
        assert!(parse_listing(b"[]").unwrap().is_empty());
        assert!(parse_listing(b"{}").is_err());
        assert!(parse_listing(br#"[{"00200013": {"vr": "IS", "Value": [1]}}]"#).is_err());
    }

    #[test]
    fn series_urls_tolerate_a_trailing_slash() {
        let key = SeriesKey {
            study_instance_uid: "1.2".into(),
            series_instance_uid: "1.2.3".into(),
        };
        assert_eq!(
            series_url("http://h/dicom-web/", &key),
            "http://h/dicom-web/studies/1.2/series/1.2.3"
        );
        assert_eq!(
            series_url("http://h/dicom-web", &key),
            "http://h/dicom-web/studies/1.2/series/1.2.3"
        );
    }
}
