//! `/openapi.json`, generated from the handlers' annotations, and Swagger UI at `/swagger-ui/`.

use actix_web::web;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nachet backend",
        description = "Seed identification and DICOM series predictions."
    ),
    paths(
        super::seeds::health,
        super::seeds::model_endpoints_metadata,
        super::seeds::get_user_id,
        super::seeds::seeds,
        super::seeds::inf,
    )
)]
pub struct ApiDoc;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}
