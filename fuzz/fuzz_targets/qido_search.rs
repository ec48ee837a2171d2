//! `dicomweb::parse_series`: a QIDO-RS series search answer (DICOM JSON) from a DICOM server.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: nachet_fuzz::CappedAllocator = nachet_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    if let Ok(series) = dicomweb::parse_series(data) {
        for one in series {
            let uid = &one.series_instance_uid;
            assert!(
                !uid.is_empty() && uid.trim() == uid,
                "Series Instance UID {uid:?}"
            );
        }
    }
});
