//! The domain crate stays free of I/O frameworks: no web framework, ORM, HTTP client,
//! storage SDK or DICOM parser among its dependencies (ARCHITECTURE.md).

const FORBIDDEN: &[&str] = &[
    "actix",
    "axum",
    "hyper",
    "reqwest",
    "sea-orm",
    "sqlx",
    "diesel",
    "object_store",
    "azure",
    "dicom",
    "zip",
    "tempfile",
    "tokio-util",
];

#[test]
fn the_domain_depends_on_no_io_framework() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("the crate's manifest");
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        for forbidden in FORBIDDEN {
            assert!(
                !name.starts_with(forbidden) || name == "dicom-series",
                "dicom-series depends on {name}: the domain reaches the outside only through its ports"
            );
        }
    }
}
