//! DICOM Part-10 files on disk, with the `dicom` crate.
//!
//! - [`read_instance_header`]: the identifying attributes of one instance (SOP Instance,
//!   Study and Series UIDs, Modality, InstanceNumber), read from the header only: parsing
//!   stops before the pixel data, so a 500 MB instance costs a few kilobytes of reading, and
//!   a value that declares more bytes than the file has is refused before the `dicom` crate
//!   would allocate them. [`read_instance_header_from`] does the same with bytes in memory.
//! - [`identify_instance`]: which instance the first bytes of a Part-10 stream are (SOP
//!   Instance UID, transfer syntax; Modality and InstanceNumber when asked), or that more
//!   bytes are needed: how a source names each instance of a WADO-RS answer as it arrives.
//!   Any transfer syntax the `dicom` crate reads is accepted, Deflated Explicit VR Little
//!   Endian included; an instance it cannot read is named with its transfer syntax.
//! - [`check_part10_prefix`] / [`is_part10`]: whether bytes or a file start like a DICOM
//!   Part-10 file (128-byte preamble, then `DICM`).
//! - [`synthetic`]: synthetic series written with the `dicom` crate, for tests, benchmarks
//!   and the development machine's demo series (`apps/nachet-dev`).

mod header;
pub mod synthetic;

pub use dicom::core::Tag;
pub use header::{
    DICM_MAGIC, Described, HeaderError, IdentityError, InstanceHeader, InstanceIdentity,
    MAX_IDENTITY_PREFIX, PART10_PREFIX_LEN, PREAMBLE_LEN, THROUGH_INSTANCE_NUMBER,
    THROUGH_SOP_INSTANCE_UID, check_part10_prefix, identify_instance, is_part10,
    read_instance_header, read_instance_header_from,
};
