//! Where the backend's settings come from, in one place for every program that reads them
//! (the server, `nachet-dev`, `nachet-catalogue`): the defaults in `default.toml` (this
//! crate's folder), then the TOML file named by `NACHET_CONFIG`, then `NACHET__*`
//! environment variables (`__` separates sections: `NACHET__SERVER__PORT=9000`).
//!
//! Each program deserializes the part it needs into its own types; the defaults are written
//! only here. A setting a deployment must give (a catalogue version, the ML app) has no
//! default: the server names what is missing when it starts.

use serde::de::DeserializeOwned;

/// The defaults every program starts from.
pub const DEFAULTS: &str = include_str!("../default.toml");

/// The variable naming a TOML file laid over the defaults.
pub const CONFIG_FILE_ENV: &str = "NACHET_CONFIG";

/// Defaults, then `overlay` (a program's own TOML, e.g. the development stand-ins'), then
/// the file named by `NACHET_CONFIG`, then `NACHET__*` variables.
pub fn load<T: DeserializeOwned>(overlay: Option<&str>) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(overlay) = overlay {
        builder = builder.add_source(config::File::from_str(overlay, config::FileFormat::Toml));
    }
    if let Ok(path) = std::env::var(CONFIG_FILE_ENV) {
        builder = builder.add_source(config::File::with_name(&path).required(true));
    }
    builder
        .add_source(
            config::Environment::with_prefix("NACHET")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?
        .try_deserialize()
}

/// The defaults with the given TOML documents over them, in order, and nothing from the
/// environment (tests, and programs that build settings in code).
pub fn layered<T: DeserializeOwned>(documents: &[&str]) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    for document in documents {
        builder = builder.add_source(config::File::from_str(document, config::FileFormat::Toml));
    }
    builder.build()?.try_deserialize()
}
