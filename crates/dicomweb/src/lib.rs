//! The DICOMweb [`DicomSource`]: the series' metadata (WADO-RS; QIDO-RS where a server has
//! no metadata) to list its instances, WADO-RS to retrieve the whole series in one streamed
//! request (contract 2.2).
//!
//! Listing reads each instance's SOP Instance UID, InstanceNumber and Modality from the
//! series' metadata (`.../series/{uid}/metadata`, DICOM JSON: Orthanc answers it 2-3 times
//! faster than the QIDO-RS instance search, which reads every instance for its default
//! attributes anyway), or, when the server answers that with 404, 405, 406 or 501, from a
//! QIDO-RS instance search; it parses the answer item by item as it arrives (memory is the
//! listing, not the answer); for an
//! instance the answer gives no InstanceNumber or Modality for, the instance's own header
//! is read instead (a WADO-RS request of that instance, dropped as soon as its first bytes
//! name them: [`dicom_files::identify_instance`]).
//!
//! Retrieval writes each part of the `multipart/related` answer straight into its entry of
//! the [`SeriesArchive`] as its bytes arrive ([`multipart`] parses the body incrementally):
//! a part's first bytes are held only until they say which instance it is (its SOP
//! Instance UID, read from its header in any transfer syntax the `dicom` crate reads), so
//! memory does not grow with an instance or the series. The archive refuses an instance
//! that was not listed or comes twice, and finishes only with every listed one. On any
//! error the archive is dropped, which removes what was written.
//!
//! Error classes ([`FetchError`]): connection refused or reset, timeouts, 408, 429 and 5xx,
//! and a body without Content-Length that ends before the closing delimiter (the connection
//! dropped) are `Transient`; 401, 403, 404 and other 4xx, a body that is not
//! multipart/related or whose declared length ends before the closing delimiter, parts that
//! are not DICOM or cannot be read, and a series that differs from its listing are `Permanent`;
//! an archive that cannot be written is `Transient`. Messages name the server, the study and the series.
//!
//! Timeouts ([`DicomWebOptions`]): a connect timeout, and an idle read timeout that applies
//! to each read (a series can be gigabytes, so there is no total timeout on retrieval).
//! The client does not ask for gzip (Orthanc would spend ~30 ms of CPU per instance on it).
//! It asks for the instances in their stored transfer syntax ([`WADO_ACCEPT`]), so that
//! each entry is byte for byte the instance the server stores (falling back to the default
//! transfer syntax only if the server answers 406).
//!
//! Every request carries the W3C trace context of the current span (`traceparent`: a job
//! attempt's, or the radiologist's request for a search; see the `telemetry` crate).

pub mod multipart;
mod search;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dicom_files::{
    InstanceIdentity, MAX_IDENTITY_PREFIX, THROUGH_INSTANCE_NUMBER, THROUGH_SOP_INSTANCE_UID,
    identify_instance,
};
use dicom_series::ports::{
    Archive, DicomCredentials, DicomServer, DicomSource, FetchError, InstanceListing,
    SeriesArchive, SeriesKey,
};
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use telemetry::WithTraceContext;

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
/// A part's first bytes are tried as a header once this many have come, then at each
/// doubling (and at the part's end).
const FIRST_IDENTITY_TRY: usize = 4 * 1024;
/// Instances whose header is read at once when the listing lacks their InstanceNumber or
/// Modality.
const HEADER_READS_AT_ONCE: usize = 4;
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
        let request = self
            .client
            .get(url)
            .header(ACCEPT, accept)
            .with_trace_context();
        match &server.credentials {
            DicomCredentials::None => request,
            DicomCredentials::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            DicomCredentials::Bearer { token } => request.bearer_auth(token.expose_secret()),
        }
    }

    /// Sends a WADO-RS request (asking for the stored transfer syntax, the default one on
    /// 406) and checks its status and Content-Type. Returns the answer, its boundary, and
    /// whether it is delimited by the connection's close (no Content-Length).
    async fn wado(
        &self,
        ctx: &Context,
        server: &DicomServer,
        url: &str,
    ) -> Result<(Response, String, bool), FetchError> {
        let mut response = self
            .request(server, url, WADO_ACCEPT)
            .send()
            .await
            .map_err(|e| ctx.transport_error("WADO-RS", &e))?;
        if response.status() == StatusCode::NOT_ACCEPTABLE {
            tracing::info!(server = %ctx.server, "transfer-syntax=* refused (406): asking for the default transfer syntax");
            response = self
                .request(server, url, WADO_ACCEPT_DEFAULT_SYNTAX)
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
        Ok((response, boundary, close_delimited))
    }

    /// Retrieves the series (one WADO-RS request) into `archive` and finishes it.
    async fn download_into(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        archive: SeriesArchive,
    ) -> Result<Archive, FetchError> {
        let ctx = Context::new(server, series);
        let url = series_url(&server.root, series);
        let (response, boundary, close_delimited) = self.wado(&ctx, server, &url).await?;

        // The network side stays here; parsing and writing run on a blocking thread, fed
        // through a bounded channel (backpressure: at most CHANNEL_CHUNKS chunks in flight).
        let (sender, receiver) = tokio::sync::mpsc::channel::<Feed>(CHANNEL_CHUNKS);
        let writer = tokio::task::spawn_blocking({
            let ctx = ctx.clone();
            move || write_parts(&ctx, receiver, &boundary, archive, close_delimited)
        });
        let network_error = feed(&ctx, "WADO-RS", response, sender).await;
        let written = writer
            .await
            .map_err(|e| FetchError::Transient(format!("the instance writer failed: {e}")))?;
        match network_error {
            // The writer saw the feed stop without its end and dropped its archive.
            Some(e) => Err(e),
            None => written,
        }
    }

    /// Reads the InstanceNumber and Modality of one instance from its header: the first
    /// bytes of its WADO-RS answer, the rest never read.
    async fn header_of(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        sop_instance_uid: &str,
    ) -> Result<InstanceIdentity, FetchError> {
        let ctx = Context::new(server, series);
        let url = format!(
            "{}/instances/{sop_instance_uid}",
            series_url(&server.root, series)
        );
        let (mut response, boundary, _) = self.wado(&ctx, server, &url).await?;
        let malformed = |e: multipart::MultipartError| {
            FetchError::Permanent(format!(
                "the WADO-RS answer of {} for instance {sop_instance_uid} is not usable multipart/related: {e}",
                ctx.describe()
            ))
        };
        let mut parser = MultipartParser::new(&boundary).map_err(malformed)?;
        let mut events = Vec::new();
        let mut prefix = PartPrefix::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| ctx.transport_error("WADO-RS", &e))?;
            let (bytes, end) = match &chunk {
                Some(bytes) => (&bytes[..], false),
                None => (&[][..], true),
            };
            parser.feed(bytes, &mut events).map_err(malformed)?;
            for event in events.drain(..) {
                let identity = match event {
                    Event::Begin(_) => None,
                    Event::Data(data) => prefix.push(&data, THROUGH_INSTANCE_NUMBER),
                    Event::End => Some(prefix.end(THROUGH_INSTANCE_NUMBER)),
                };
                if let Some(identity) = identity {
                    let identity = identity.map_err(|e| ctx.unreadable(&e))?;
                    if identity.sop_instance_uid != sop_instance_uid {
                        return Err(FetchError::Permanent(format!(
                            "{} sent instance {} when asked for instance {sop_instance_uid}",
                            ctx.describe(),
                            identity.sop_instance_uid
                        )));
                    }
                    return Ok(identity);
                }
            }
            if end {
                parser.finish().map_err(malformed)?;
                return Err(FetchError::Permanent(format!(
                    "{} sent no part for instance {sop_instance_uid}",
                    ctx.describe()
                )));
            }
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
        let url = series_url(&server.root, series);
        // The series' metadata (WADO-RS) first: Orthanc answers it 2-3 times faster than the
        // QIDO-RS instance search, whose default attributes make it read every instance anyway.
        // A server without it (404, 405, 406, 501) is asked QIDO-RS.
        let metadata = self
            .request(server, &format!("{url}/metadata"), QIDO_ACCEPT)
            .timeout(self.options.search_timeout)
            .send()
            .await
            .map_err(|e| ctx.transport_error("WADO-RS metadata", &e))?;
        let (what, response) = if matches!(
            metadata.status(),
            StatusCode::NOT_FOUND
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::NOT_ACCEPTABLE
                | StatusCode::NOT_IMPLEMENTED
        ) {
            let search = self
                .request(server, &format!("{url}/instances"), QIDO_ACCEPT)
                .query(&[("includefield", "00200013"), ("includefield", "00080060")])
                .timeout(self.options.search_timeout)
                .send()
                .await
                .map_err(|e| ctx.transport_error("QIDO-RS", &e))?;
            ("QIDO-RS", search)
        } else {
            ("WADO-RS metadata", metadata)
        };
        let response = ctx.check_status(what, response).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let mut listing = self.read_listing(&ctx, what, response).await?;
        self.complete_from_headers(server, series, &mut listing)
            .await?;
        Ok(listing)
    }

    async fn retrieve_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        archive: SeriesArchive,
    ) -> Result<Archive, FetchError> {
        self.download_into(server, series, archive).await
    }
}

impl DicomWebSource {
    /// Parses a QIDO-RS instance list as it arrives (on a blocking thread, fed through a
    /// bounded channel like the retrieval), keeping only each instance's listing: memory is
    /// the listing, never the answer (15 MB of DICOM JSON for 10,000 instances from Orthanc).
    async fn read_listing(
        &self,
        ctx: &Context,
        what: &str,
        response: Response,
    ) -> Result<Vec<InstanceListing>, FetchError> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Feed>(CHANNEL_CHUNKS);
        let parser = tokio::task::spawn_blocking(move || {
            read_listing(std::io::BufReader::new(FeedReader::new(receiver)))
        });
        let network_error = feed(ctx, what, response, sender).await;
        let parsed = parser
            .await
            .map_err(|e| FetchError::Transient(format!("the listing parser failed: {e}")))?;
        match (network_error, parsed) {
            // The parser saw the feed stop without its end.
            (Some(e), _) => Err(e),
            (None, Ok(listing)) => Ok(listing),
            (None, Err(e)) => Err(FetchError::Permanent(format!(
                "{} answered {what} with a body that is not a DICOM JSON instance list: {e}",
                ctx.describe()
            ))),
        }
    }

    /// Fills in the InstanceNumber and Modality the listing lacks from the instances' own
    /// headers (a few instances at a time).
    async fn complete_from_headers(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
        listing: &mut [InstanceListing],
    ) -> Result<(), FetchError> {
        let lacking: Vec<usize> = (0..listing.len())
            .filter(|&i| listing[i].instance_number.is_none() || listing[i].modality.is_none())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            server = %server.root, instances = lacking.len(),
            "the listing lacks InstanceNumber or Modality: reading those instances' headers"
        );
        let headers: Vec<(usize, Result<InstanceIdentity, FetchError>)> =
            futures::stream::iter(lacking)
                .map(|i| {
                    let uid = listing[i].sop_instance_uid.clone();
                    async move { (i, self.header_of(server, series, &uid).await) }
                })
                .buffer_unordered(HEADER_READS_AT_ONCE)
                .collect()
                .await;
        for (i, header) in headers {
            let header = header?;
            let item = &mut listing[i];
            item.instance_number = item.instance_number.or(header.instance_number);
            item.modality = item.modality.take().or(header.modality);
        }
        Ok(())
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

    /// An instance of the WADO-RS answer (part `part`) that is not one the DICOM parser can
    /// read: permanent.
    fn part_unreadable(&self, part: usize, error: &dicom_files::IdentityError) -> FetchError {
        FetchError::Permanent(format!(
            "part {part} of the WADO-RS answer of {} is {}",
            self.describe(),
            match error {
                dicom_files::IdentityError::NotPart10(_) => error.to_string(),
                dicom_files::IdentityError::Unreadable { .. } => format!("unusable: {error}"),
            }
        ))
    }

    fn unreadable(&self, error: &dicom_files::IdentityError) -> FetchError {
        FetchError::Permanent(format!(
            "{} sent an instance that is {error}",
            self.describe()
        ))
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

/// A part's first bytes, held until they say which instance the part is.
struct PartPrefix {
    bytes: Vec<u8>,
    next_try: usize,
}

impl PartPrefix {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            next_try: FIRST_IDENTITY_TRY,
        }
    }

    /// Adds the next bytes; the instance's identity once they tell it.
    fn push(
        &mut self,
        data: &[u8],
        through: dicom_files::Tag,
    ) -> Option<Result<InstanceIdentity, dicom_files::IdentityError>> {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() < self.next_try.min(MAX_IDENTITY_PREFIX) {
            return None;
        }
        self.next_try = self.bytes.len().saturating_mul(2);
        identify_instance(&self.bytes, false, through).transpose()
    }

    /// The part is complete: its identity, or why it has none.
    fn end(
        &mut self,
        through: dicom_files::Tag,
    ) -> Result<InstanceIdentity, dicom_files::IdentityError> {
        identify_instance(&self.bytes, true, through)
            .transpose()
            .unwrap_or_else(|| {
                Err(dicom_files::IdentityError::NotPart10(
                    "no identity in a complete instance".into(),
                ))
            })
    }
}

/// Where the part being received is.
enum Part {
    None,
    /// Its first bytes, its Content-Length.
    Identifying(PartPrefix, Option<u64>),
    /// Its entry is open in the archive.
    Writing,
}

/// Parses the multipart body fed through `receiver` and writes each part into its entry of
/// `archive` as it arrives, then finishes the archive. Blocking. On any error, including a
/// feed that stops without [`Feed::End`], the archive is dropped, which removes its file.
fn write_parts(
    ctx: &Context,
    mut receiver: tokio::sync::mpsc::Receiver<Feed>,
    boundary: &str,
    mut archive: SeriesArchive,
    close_delimited: bool,
) -> Result<Archive, FetchError> {
    let malformed = |e: multipart::MultipartError| {
        FetchError::Permanent(format!(
            "the WADO-RS answer of {} is not usable multipart/related: {e}",
            ctx.describe()
        ))
    };
    let archive_error = |e: dicom_series::ports::ArchiveError| match FetchError::from(e) {
        FetchError::Permanent(m) => FetchError::Permanent(format!("{}: {m}", ctx.describe())),
        transient => transient,
    };
    let mut parser = MultipartParser::new(boundary).map_err(malformed)?;
    let mut events = Vec::new();
    let mut part = Part::None;
    let mut parts = 0usize;
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
                Event::Begin(headers) => {
                    parts += 1;
                    part = Part::Identifying(PartPrefix::new(), headers.content_length);
                }
                Event::Data(data) => match &mut part {
                    Part::Writing => archive.write(&data).map_err(archive_error)?,
                    Part::Identifying(prefix, size) => {
                        if let Some(identity) = prefix.push(&data, THROUGH_SOP_INSTANCE_UID) {
                            let identity = identity.map_err(|e| ctx.part_unreadable(parts, &e))?;
                            archive
                                .begin_instance(&identity.sop_instance_uid, *size)
                                .map_err(archive_error)?;
                            archive.write(&prefix.bytes).map_err(archive_error)?;
                            part = Part::Writing;
                        }
                    }
                    Part::None => {}
                },
                Event::End => {
                    if let Part::Identifying(mut prefix, size) =
                        std::mem::replace(&mut part, Part::None)
                    {
                        let identity = prefix
                            .end(THROUGH_SOP_INSTANCE_UID)
                            .map_err(|e| ctx.part_unreadable(parts, &e))?;
                        archive
                            .begin_instance(&identity.sop_instance_uid, size)
                            .map_err(archive_error)?;
                        archive.write(&prefix.bytes).map_err(archive_error)?;
                    }
                    part = Part::None;
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
    if parts == 0 {
        return Err(FetchError::Permanent(format!(
            "{} sent no instance (WADO-RS) for study {} series {}: the series is empty or does not exist there",
            ctx.server, ctx.study, ctx.series
        )));
    }
    archive.finish().map_err(archive_error)
}

/// One item of a QIDO-RS answer: only the attributes used are kept (serde skips the others
/// without building them).
#[derive(serde::Deserialize)]
struct QidoItem {
    #[serde(rename = "00080018")]
    sop_instance_uid: Option<QidoAttribute>,
    #[serde(rename = "00200013")]
    instance_number: Option<QidoAttribute>,
    #[serde(rename = "00080060")]
    modality: Option<QidoAttribute>,
}

#[derive(serde::Deserialize)]
struct QidoAttribute {
    #[serde(rename = "Value", default)]
    value: Vec<serde_json::Value>,
}

/// Parses a QIDO-RS answer (DICOM JSON model, PS3.18 F.2): SOP Instance UID (00080018),
/// Instance Number (00200013, a number or a numeric string) and Modality (00080060).
pub fn parse_listing(body: &[u8]) -> Result<Vec<InstanceListing>, String> {
    read_listing(body)
}

/// [`parse_listing`] from a reader, item by item: memory is the listing, not the answer. An
/// answer of nothing but white space is an empty listing.
pub fn read_listing(mut reader: impl std::io::BufRead) -> Result<Vec<InstanceListing>, String> {
    loop {
        let buffer = reader.fill_buf().map_err(|e| e.to_string())?;
        if buffer.is_empty() {
            return Ok(Vec::new());
        }
        let blanks = buffer
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        let more = blanks == buffer.len();
        reader.consume(blanks);
        if !more {
            break;
        }
    }
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let Listing(listing) = serde::Deserialize::deserialize(&mut deserializer)
        .and_then(|listing| deserializer.end().map(|()| listing))
        .map_err(|e| e.to_string())?;
    Ok(listing)
}

/// A QIDO-RS instance list, each item reduced to its [`InstanceListing`] as it is read.
struct Listing(Vec<InstanceListing>);

impl<'de> serde::Deserialize<'de> for Listing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = Listing;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of DICOM JSON instances")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut items: A,
            ) -> Result<Listing, A::Error> {
                let mut listing = Vec::with_capacity(items.size_hint().unwrap_or(0));
                while let Some(item) = items.next_element::<QidoItem>()? {
                    let index = listing.len();
                    listing.push(item.into_listing(index).map_err(serde::de::Error::custom)?);
                }
                Ok(Listing(listing))
            }
        }
        deserializer.deserialize_seq(Items)
    }
}

impl QidoItem {
    /// The item at `index` of the answer as a listing.
    fn into_listing(self, index: usize) -> Result<InstanceListing, String> {
        let first =
            |attribute: Option<QidoAttribute>| attribute.and_then(|a| a.value.into_iter().next());
        let sop_instance_uid = first(self.sop_instance_uid)
            .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("item {index} has no SOP Instance UID (00080018)"))?;
        let instance_number = first(self.instance_number).and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let modality = first(self.modality)
            .and_then(|v| v.as_str().map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty());
        Ok(InstanceListing {
            sop_instance_uid,
            instance_number,
            modality,
        })
    }
}

/// Sends `response`'s body, chunk by chunk, to the blocking consumer at the other end of
/// `sender`, then [`Feed::End`] if the body arrived whole; stops early if the consumer has
/// stopped on an error of its own. The network error that cut the body, if one did (the
/// consumer then sees the feed stop without its end).
async fn feed(
    ctx: &Context,
    what: &str,
    response: Response,
    sender: tokio::sync::mpsc::Sender<Feed>,
) -> Option<FetchError> {
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                if sender.send(Feed::Chunk(chunk)).await.is_err() {
                    return None; // the consumer stopped on an error of its own
                }
            }
            Err(e) => return Some(ctx.transport_error(what, &e)),
        }
    }
    let _ = sender.send(Feed::End).await;
    None
}

/// A blocking [`std::io::Read`] over the chunks a network task feeds: ends at
/// [`Feed::End`]; a feed that stops without it is an error (the answer was cut).
struct FeedReader {
    receiver: tokio::sync::mpsc::Receiver<Feed>,
    chunk: Bytes,
    ended: bool,
}

impl FeedReader {
    fn new(receiver: tokio::sync::mpsc::Receiver<Feed>) -> Self {
        Self {
            receiver,
            chunk: Bytes::new(),
            ended: false,
        }
    }
}

impl std::io::Read for FeedReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() && !self.ended {
            match self.receiver.blocking_recv() {
                Some(Feed::Chunk(chunk)) => self.chunk = chunk,
                Some(Feed::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the answer stopped before its end",
                    ));
                }
            }
        }
        let n = buffer.len().min(self.chunk.len());
        buffer[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
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
    fn a_listing_is_read_as_it_arrives_and_a_cut_answer_is_an_error() {
        let item = |i: usize| {
            format!(
                r#"{{"00080018": {{"vr": "UI", "Value": ["1.2.{i}"]}}, "00200013": {{"vr": "IS", "Value": [{i}]}}, "00081190": {{"vr": "UR", "Value": ["http://h/{i}"]}}}}"#
            )
        };
        let body = format!("  [{}]\n", (0..500).map(item).collect::<Vec<_>>().join(","));
        // Fed in 7-byte chunks, as a network might.
        let feed = |body: &str, end: bool| {
            let (sender, receiver) = tokio::sync::mpsc::channel::<Feed>(body.len() + 1);
            for chunk in body.as_bytes().chunks(7) {
                sender
                    .try_send(Feed::Chunk(Bytes::copy_from_slice(chunk)))
                    .unwrap();
            }
            if end {
                sender.try_send(Feed::End).unwrap();
            }
            std::io::BufReader::new(FeedReader::new(receiver))
        };
        let listing = read_listing(feed(&body, true)).unwrap();
        assert_eq!(listing.len(), 500);
        assert_eq!(listing[499].sop_instance_uid, "1.2.499");
        assert_eq!(listing[499].instance_number, Some(499));
        assert!(read_listing(feed(" \n ", true)).unwrap().is_empty());
        let cut = read_listing(feed(&body[..body.len() / 2], false)).unwrap_err();
        assert!(cut.contains("stopped before its end"), "{cut}");
        let trailing = read_listing(feed("[] []", true)).unwrap_err();
        assert!(trailing.contains("trailing"), "{trailing}");
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
