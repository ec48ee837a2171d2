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
        super::seeds::image_validation,
        super::folders::get_directories,
        super::folders::create_dir,
        super::folders::del,
        super::folders::get_picture,
        super::folders::delete_request,
        super::folders::delete_permanently,
        super::folders::delete_with_archive,
        super::folders::new_batch_import,
        super::folders::upload_picture,
        super::feedback::feedback_positive,
        super::feedback::feedback_negative,
        super::dataset::own_dataset,
        super::dataset::whole_dataset,
        super::series::predict,
        super::series::report_status,
        super::series::get_series,
        super::admin::add_organization,
        super::admin::list_organizations,
        super::admin::pipelines,
        super::admin::reload,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The `bearer` scheme of the admin API and the ML app's status callback.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}
