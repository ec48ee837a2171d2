//! `dicomweb::parse_listing`: a QIDO-RS answer (DICOM JSON) from a DICOM server.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: nachet_fuzz::CappedAllocator = nachet_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    if let Ok(listing) = dicomweb::parse_listing(data) {
        for instance in listing {
            let uid = &instance.sop_instance_uid;
            assert!(
                !uid.is_empty() && uid.trim() == uid,
                "SOP Instance UID {uid:?}"
            );
        }
    }
});
