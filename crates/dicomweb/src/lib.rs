//! The DICOMweb `DicomSource` (`DicomWebSource`): one series search (QIDO-RS) for the
//! series' number of instances and modality, then WADO-RS to retrieve the whole series in
//! one streamed request (contract 2.2).
//!
//! The instances are not listed one by one beforehand: on Orthanc (DICOMweb plugin 1.7)
//! that listing, whether the series' metadata or a QIDO-RS instance search, reads every
//! stored instance and costs two to three times the whole download. Each instance's SOP
//! Instance UID, InstanceNumber and Modality, which name its entry, are read from its own
//! first bytes instead, and the count from the series search is what the archive checks
//! it got.
//!
//! Retrieval writes each part of the `multipart/related` answer straight into its entry of
//! the `SeriesArchive` as its bytes arrive ([`multipart`] parses the body incrementally):
//! a part's first bytes are held only until they say which instance it is (its SOP
//! Instance UID, Modality and InstanceNumber, read from its header in any transfer syntax
//! the `dicom` crate reads), so memory does not grow with an instance or the series. The
//! archive refuses an instance that comes twice, and finishes only with as many as the
//! series search counts. On any error the archive is dropped, which removes what was
//! written.
//!
//! Error classes (`FetchError`): connection refused or reset, timeouts, 408, 429 and 5xx,
//! and a body without Content-Length that ends before the closing delimiter (the connection
//! dropped) are `Transient`; 401, 403, 404 and other 4xx, a body that is not
//! multipart/related or whose declared length ends before the closing delimiter, parts that
//! are not DICOM or cannot be read, and a series that differs from its count are `Permanent`;
//! an archive that cannot be written is `Transient`. Messages name the server, the study and the series.
//!
//! Timeouts (`DicomWebOptions`): a connect timeout, and an idle read timeout that applies
//! to each read (a series can be gigabytes, so there is no total timeout on retrieval).
//! The client does not ask for gzip (Orthanc would spend ~30 ms of CPU per instance on it).
//! It asks for the instances in their stored transfer syntax (`WADO_ACCEPT`), so that
//! each entry is byte for byte the instance the server stores (falling back to the default
//! transfer syntax only if the server answers 406).
//!
//! Every request carries the W3C trace context of the current span (`traceparent`: a job
//! attempt's, or the radiologist's request for a search; see the `telemetry` crate).
//!
//! Modules: `source` (the client and the retrieval), `search` (the study and series
//! searches), both behind the default feature `client`; [`multipart`] and [`qido`], the
//! parsers of outside bytes, with no I/O (what the fuzz targets build, without the HTTP
//! stack).

pub mod multipart;
pub mod qido;
#[cfg(feature = "client")]
mod search;
#[cfg(feature = "client")]
mod source;

pub use qido::{parse_series, parse_studies};
#[cfg(feature = "client")]
pub use source::{
    DicomWebOptions, DicomWebSource, QIDO_ACCEPT, WADO_ACCEPT, WADO_ACCEPT_DEFAULT_SYNTAX,
};
