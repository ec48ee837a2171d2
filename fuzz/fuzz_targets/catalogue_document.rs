//! The catalogue document an administrator uploads: `CatalogueDocument::parse` (the first
//! byte chooses JSON or YAML) and `validate_document`. A catalogue that validates is then
//! stored as publishing stores it (canonical JSON), and must open again as the same
//! catalogue: a version that can be published but not opened would stop the backend.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::{Catalogue, CatalogueDocument, DocumentFormat, validate_document};

#[global_allocator]
static ALLOCATOR: nachet_fuzz::CappedAllocator = nachet_fuzz::CappedAllocator;

fn stored_form(catalogue: &Catalogue) -> String {
    CatalogueDocument::from_catalogue(catalogue, &mut |_, plain| plain.to_owned()).to_json()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if which % 2 == 0 {
        DocumentFormat::Json
    } else {
        DocumentFormat::Yaml
    };
    let Ok(parsed) = CatalogueDocument::parse(text, format) else {
        return;
    };
    // Written back as the tools show it (this must never fail).
    let _ = parsed.document.to_text(format);
    let Ok(catalogue) = validate_document(parsed.document, None) else {
        return;
    };
    let stored = stored_form(&catalogue);
    let reopened = CatalogueDocument::from_json(&stored)
        .and_then(|document| validate_document(document, None))
        .unwrap_or_else(|e| {
            panic!("a valid catalogue does not open from its stored form: {e}\n{stored}")
        });
    assert_eq!(
        stored,
        stored_form(&reopened),
        "reopened as another catalogue"
    );
});
