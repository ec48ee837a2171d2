//! The REST API: routes, and the conversion between JSON and the domain.

pub mod admin;
mod auth;
pub mod body;
mod caller;
pub mod cors;
pub mod dataset;
pub mod disconnect;
pub mod error;
pub mod fallback;
mod feedback;
pub(crate) mod folders;
pub mod identity;
mod openapi;
pub mod ops;
mod seeds;
pub mod series;
pub mod series_access;

use actix_web::web;

pub use openapi::ApiDoc;

/// Every route of the API. Each area registers its own routes here; `api_doc` is this
/// server's OpenAPI document ([`ApiDoc::for_server`]).
pub fn routes(config: &mut web::ServiceConfig, api_doc: utoipa::openapi::OpenApi) {
    seeds::routes(config);
    folders::routes(config);
    feedback::routes(config);
    dataset::routes(config);
    series::routes(config);
    admin::routes(config);
    ops::routes(config);
    openapi::routes(config, api_doc);
}
