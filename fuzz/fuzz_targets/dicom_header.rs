//! The DICOM header reader: `check_part10_prefix` and `read_instance_header_from` (what
//! `read_instance_header` does with a file's bytes), on bytes a DICOM server sent or a
//! folder held.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use dicom_files::{HeaderError, check_part10_prefix, read_instance_header_from};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: nachet_fuzz::CappedAllocator = nachet_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let prefix = check_part10_prefix(data);
    match read_instance_header_from(Cursor::new(data), Path::new("fuzz input")) {
        Ok(header) => {
            assert!(prefix.is_ok(), "read without a Part-10 prefix");
            for uid in [
                &header.sop_instance_uid,
                &header.study_instance_uid,
                &header.series_instance_uid,
            ] {
                assert!(!uid.is_empty(), "{header:?}");
            }
        }
        Err(HeaderError::NotPart10 { .. }) => assert!(prefix.is_err()),
        Err(_) => assert!(prefix.is_ok(), "parsed without a Part-10 prefix"),
    }
});
