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

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

pub use openapi::ApiDoc;

use crate::seeds::SeedServices;

/// Everything the routes take, built by the areas' wiring (`crate::seeds`, `crate::series`,
/// `crate::catalogue`) in `crate::start`.
#[derive(Clone)]
pub struct Services {
    pub seeds: SeedServices,
    pub series: web::Data<series::SeriesApi>,
    pub series_access: web::Data<series_access::SeriesAccess>,
    pub identity: web::Data<identity::IdentitySettings>,
    pub admin: web::Data<admin::AdminApi>,
    pub admin_token: web::Data<admin::AdminToken>,
    pub ops: web::Data<ops::Ops>,
    pub cors: cors::CorsPolicy,
    /// This server's OpenAPI document ([`ApiDoc::for_server`]).
    pub api_doc: utoipa::openapi::OpenApi,
    /// Largest request body, in bytes.
    pub body_limit: usize,
}

/// The HTTP server on `listener`: every route, the middleware (outermost first: CORS, the
/// request log with its request id, metrics), and the JSON 404/405 for the rest.
pub fn serve(listener: TcpListener, services: Services) -> std::io::Result<Server> {
    let fallback = web::Data::new(fallback::Routes::from_openapi());
    let server = HttpServer::new(move || {
        let s = services.clone();
        App::new()
            .wrap(actix_web::middleware::from_fn(ops::observe))
            .wrap(tracing_actix_web::TracingLogger::default())
            .app_data(s.ops)
            .app_data(s.seeds.inference)
            .app_data(s.seeds.work)
            .app_data(s.seeds.admission)
            .app_data(s.seeds.folders)
            .app_data(s.seeds.feedback)
            .app_data(s.seeds.dataset)
            .app_data(web::Data::new(body::BodyLimit(s.body_limit)))
            .app_data(s.identity)
            .app_data(s.admin)
            .app_data(s.admin_token)
            .app_data(s.series)
            .app_data(s.series_access)
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                error::ApiError::bad_request(format!("the query is not valid: {e}")).into()
            }))
            .configure(|config| routes(config, s.api_doc))
            .app_data(fallback.clone())
            .default_service(web::to(
                |request: actix_web::HttpRequest, routes: web::Data<fallback::Routes>| async move {
                    routes.answer(&request)
                },
            ))
            // Outermost, so that every answer carries CORS headers, errors included.
            .wrap(s.cors.middleware())
    })
    .on_connect(disconnect::on_connect)
    .listen(listener)?
    .run();
    Ok(server)
}

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
