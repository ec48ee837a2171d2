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
mod search;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dicom_series::ports::{
    DicomCredentials, DicomServer, DicomSource, FetchError, InstanceListing, RetrievedInstance,
    SeriesKey,
};
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;

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
/// Body chunks in flight between the network and the writer thread.
const CHANNEL_CHUNKS: usize = 8;

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

    /// Sends the WADO-RS request and writes the parts into `dir`, reading each one's
    /// header as soon as it is complete (on error, removes what it wrote). Returns the
    /// instances in the order received.
    async fn download_parts(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        dir: &Path,
    ) -> Result<Vec<RetrievedInstance>, FetchError> {
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
        // Without a Content-Length (Orthanc answers `Connection: close`), a connection that
        // drops looks like the end of the body: the truncated multipart is then the only sign,
        // and retrying may well succeed.
        let close_delimited = response.content_length().is_none();

        // The network side stays here; parsing and writing run on a blocking thread, fed
        // through a bounded channel (backpressure: at most CHANNEL_CHUNKS chunks in flight).
        let (sender, receiver) = tokio::sync::mpsc::channel::<Feed>(CHANNEL_CHUNKS);
        let writer = tokio::task::spawn_blocking({
            let ctx = ctx.clone();
            let dir = dir.to_path_buf();
            move || write_parts(&ctx, receiver, &boundary, &dir, close_delimited)
        });
        let mut body = response.bytes_stream();
        let mut network_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    if sender.send(Feed::Chunk(chunk)).await.is_err() {
                        break; // the writer stopped on an error of its own
                    }
                }
                Err(e) => {
                    network_error = Some(ctx.transport_error("WADO-RS", &e));
                    break;
                }
            }
        }
        if network_error.is_none() {
            let _ = sender.send(Feed::End).await;
        }
        drop(sender);
        let written = writer
            .await
            .map_err(|e| FetchError::Transient(format!("the instance writer failed: {e}")))?;
        match network_error {
            // The writer saw the feed stop without its end and removed its files.
            Some(e) => Err(e),
            None => written,
        }
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
        let (instances, listing) = tokio::join!(
            self.download_parts(server, series, dir),
            self.list_instances(server, series)
        );
        let instances = instances?;
        let result = listing.and_then(|listing| compare_with_listing(&ctx, &listing, &instances));
        if let Err(e) = result {
            let paths: Vec<PathBuf> = instances.into_iter().map(|i| i.path).collect();
            remove_all(&paths).await;
            return Err(e);
        }
        Ok(instances)
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
#[derive(Clone)]
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

/// What the network side hands the writer.
enum Feed {
    Chunk(Bytes),
    /// The body ended normally.
    End,
}

/// Parses the multipart body fed through `receiver` and writes each part to `{n:06}.dcm`
/// (n from 1) in `dir`, reading its header as soon as it is complete. Blocking. On any
/// error, including a feed that stops without [`Feed::End`], removes every file it wrote.
fn write_parts(
    ctx: &Context,
    receiver: tokio::sync::mpsc::Receiver<Feed>,
    boundary: &str,
    dir: &Path,
    close_delimited: bool,
) -> Result<Vec<RetrievedInstance>, FetchError> {
    let mut written: Vec<PathBuf> = Vec::new();
    let result = write_parts_into(ctx, receiver, boundary, dir, close_delimited, &mut written);
    if result.is_err() {
        for path in &written {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), "cannot remove a partial instance file: {e}");
            }
        }
    }
    result
}

fn write_parts_into(
    ctx: &Context,
    mut receiver: tokio::sync::mpsc::Receiver<Feed>,
    boundary: &str,
    dir: &Path,
    close_delimited: bool,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<RetrievedInstance>, FetchError> {
    let malformed = |e: multipart::MultipartError| {
        FetchError::Permanent(format!(
            "the WADO-RS answer of {} is not usable multipart/related: {e}",
            ctx.describe()
        ))
    };
    let io_error = |path: &Path, e: std::io::Error| {
        tracing::warn!(path = %path.display(), error = %e, "cannot write a retrieved instance");
        let file = path.file_name().map_or("".into(), |f| f.to_string_lossy());
        FetchError::Transient(format!(
            "cannot write instance file {file} to the scratch folder: {}",
            dicom_series::io_reason(&e)
        ))
    };
    let mut parser = MultipartParser::new(boundary).map_err(malformed)?;
    let mut events = Vec::new();
    let mut current: Option<(std::io::BufWriter<std::fs::File>, u64)> = None;
    let mut instances = Vec::new();
    loop {
        let chunk = match receiver.blocking_recv() {
            Some(Feed::Chunk(chunk)) => chunk,
            Some(Feed::End) => break,
            None => {
                return Err(FetchError::Transient(
                    "the WADO-RS answer stopped before its end".to_string(),
                ));
            }
        };
        parser.feed(&chunk, &mut events).map_err(malformed)?;
        for event in events.drain(..) {
            match event {
                Event::Begin(_) => {
                    let path = dir.join(format!("{:06}.dcm", written.len() + 1));
                    let file = std::fs::File::create(&path).map_err(|e| io_error(&path, e))?;
                    written.push(path);
                    current = Some((
                        std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
                        0,
                    ));
                }
                Event::Data(data) => {
                    if let (Some((writer, size)), Some(path)) = (current.as_mut(), written.last()) {
                        writer.write_all(&data).map_err(|e| io_error(path, e))?;
                        *size += data.len() as u64;
                    }
                }
                Event::End => {
                    if let (Some((mut writer, size)), Some(path)) = (current.take(), written.last())
                    {
                        // Working files: flushed, not synced (a crash restarts the job).
                        writer.flush().map_err(|e| io_error(path, e))?;
                        drop(writer);
                        instances.push(instance_of(ctx, path, size, written.len())?);
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
    if instances.is_empty() {
        return Err(FetchError::Permanent(format!(
            "{} sent no instance (WADO-RS) for study {} series {}: the series is empty or does not exist there",
            ctx.server, ctx.study, ctx.series
        )));
    }
    Ok(instances)
}

/// Checks that the file of part `part` is Part-10 and reads its header.
fn instance_of(
    ctx: &Context,
    path: &Path,
    size: u64,
    part: usize,
) -> Result<RetrievedInstance, FetchError> {
    let header = dicom_files::read_instance_header(path).map_err(|e| {
        FetchError::Permanent(format!(
            "part {part} of the WADO-RS answer of {} is not a usable DICOM instance: {e}",
            ctx.describe()
        ))
    })?;
    Ok(RetrievedInstance {
        path: path.to_path_buf(),
        sop_instance_uid: header.sop_instance_uid,
        modality: header.modality,
        instance_number: header.instance_number,
        size,
    })
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

/// The instances received must be exactly the ones listed.
fn compare_with_listing(
    ctx: &Context,
    listing: &[InstanceListing],
    instances: &[RetrievedInstance],
) -> Result<(), FetchError> {
    let listed: HashSet<&str> = listing
        .iter()
        .map(|l| l.sop_instance_uid.as_str())
        .collect();
    let received: HashSet<&str> = instances
        .iter()
        .map(|i| i.sop_instance_uid.as_str())
        .collect();
    if listing.len() == instances.len() && listed == received {
        return Ok(());
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

/// One item of a QIDO-RS answer: only the two attributes used are kept (serde skips the
/// others without building them), so memory is the body plus the listing.
#[derive(serde::Deserialize)]
struct QidoItem {
    #[serde(rename = "00080018")]
    sop_instance_uid: Option<QidoAttribute>,
    #[serde(rename = "00200013")]
    instance_number: Option<QidoAttribute>,
}

#[derive(serde::Deserialize)]
struct QidoAttribute {
    #[serde(rename = "Value", default)]
    value: Vec<serde_json::Value>,
}

/// Parses a QIDO-RS answer (DICOM JSON model, PS3.18 F.2): SOP Instance UID (00080018)
/// and Instance Number (00200013, a number or a numeric string).
pub fn parse_listing(body: &[u8]) -> Result<Vec<InstanceListing>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let items: Vec<QidoItem> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let first = |attribute: Option<QidoAttribute>| {
                attribute.and_then(|a| a.value.into_iter().next())
            };
            let sop_instance_uid = first(item.sop_instance_uid)
                .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("item {index} has no SOP Instance UID (00080018)"))?;
            let instance_number = first(item.instance_number).and_then(|v| match v {
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
