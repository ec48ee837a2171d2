//! `CheckedPicture::from_data_url` then `decode` and a crop: the `image` of `/inf`, a data
//! URL from outside, its header, base64 and picture header checked, the picture decoded
//! (png, jpeg, webp, tiff, bmp) and a crop of it encoded.
//!
//! The first byte chooses how the rest is used: as the whole data URL (its header, type
//! and base64 are fuzzed), or as a picture's bytes, put in a data URL of one of the
//! accepted types (the decoders are fuzzed: mutated base64 would seldom be a picture).
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use inference::{CheckedPicture, NormalizedBox, PictureLimits};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: nachet_fuzz::CappedAllocator = nachet_fuzz::CappedAllocator;

/// Small, so that no input takes seconds to decode (the service allows more).
const LIMITS: PictureLimits = PictureLimits {
    max_pixels: 4_000_000,
};

/// Modes 0 to 4: the picture's bytes as this type; mode 5: the input is the data URL.
const TYPES: [&str; 5] = ["png", "jpeg", "webp", "tiff", "bmp"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let url = match TYPES.get(usize::from(mode) % (TYPES.len() + 1)) {
        Some(subtype) => format!("data:image/{subtype};base64,{}", BASE64.encode(rest)),
        // A JSON request body is text: the data URL is always a string.
        None => match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
    };
    let Ok(picture) = CheckedPicture::from_data_url(&url.into(), &LIMITS) else {
        return;
    };
    assert!(
        u64::from(picture.width) * u64::from(picture.height) <= LIMITS.max_pixels,
        "{picture:?} passed its header check over the pixel limit"
    );
    assert_eq!(picture.sha256.len(), 64);
    if let Ok(pixels) = picture.decode(&LIMITS) {
        assert_eq!(
            (pixels.width(), pixels.height()),
            (picture.width, picture.height),
            "the decoded picture is the size its header said"
        );
        let middle = NormalizedBox {
            top_x: 0.25,
            top_y: 0.25,
            bottom_x: 0.75,
            bottom_y: 0.75,
        };
        pixels
            .crop_base64(&middle, Default::default())
            .expect("a decoded picture's crop encodes");
    }
});
