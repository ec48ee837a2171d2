//! The DICOMweb client: [`DicomWebSource`] (see the [crate documentation](crate)).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dicom_files::{
    InstanceIdentity, MAX_IDENTITY_PREFIX, THROUGH_INSTANCE_NUMBER, identify_instance,
};
use dicom_series::ports::{
    Archive, DicomCredentials, DicomServer, DicomSource, FetchError, InstanceListing,
    SeriesArchive, SeriesKey, SeriesListing,
};
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use telemetry::WithTraceContext;

use crate::multipart::{self, Event, MultipartParser, boundary_of};

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

    pub(crate) fn request(&self, server: &DicomServer, url: &str, accept: &str) -> RequestBuilder {
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
}

#[async_trait]
impl DicomSource for DicomWebSource {
    async fn find_series(
        &self,
        server: &DicomServer,
        series: &SeriesKey,
    ) -> Result<Option<SeriesListing>, FetchError> {
        let found = self
            .series_search(
                server,
                &series.study_instance_uid,
                Some(&series.series_instance_uid),
            )
            .await?;
        Ok(found
            .into_iter()
            .find(|s| s.series_instance_uid == series.series_instance_uid))
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
pub(crate) async fn answer_excerpt(mut response: Response) -> String {
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

pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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
                        if let Some(identity) = prefix.push(&data, THROUGH_INSTANCE_NUMBER) {
                            let identity = identity.map_err(|e| ctx.part_unreadable(parts, &e))?;
                            archive
                                .begin_instance(naming(identity), *size)
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
                            .end(THROUGH_INSTANCE_NUMBER)
                            .map_err(|e| ctx.part_unreadable(parts, &e))?;
                        archive
                            .begin_instance(naming(identity), size)
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

/// What names an instance's entry, from its header.
fn naming(identity: InstanceIdentity) -> InstanceListing {
    InstanceListing {
        sop_instance_uid: identity.sop_instance_uid,
        instance_number: identity.instance_number,
        modality: identity.modality,
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

#[cfg(test)]
mod tests {
    use super::*;

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
