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
        super::ops::ready,
        super::ops::prometheus_metrics,
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
        super::series::retry,
        super::series::find_studies,
        super::series::study_series,
        super::series::jobs,
        super::admin::add_organization,
        super::admin::list_organizations,
        super::admin::pipelines,
        super::admin::reload,
    ),
    modifiers(&BearerAuth, &BodyRefusals)
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

/// What every route that reads a JSON body may answer before its handler runs: 400 (not
/// JSON, or not the body's shape), 413 (over `server.max_body_bytes`), 415 (not sent as
/// JSON). Added here once rather than on each route.
struct BodyRefusals;

impl utoipa::Modify for BodyRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::ResponseBuilder;
        use utoipa::openapi::content::ContentBuilder;
        use utoipa::openapi::schema::Ref;
        let refusal = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if operation.request_body.is_none() {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "The body is not JSON, or not of the body's shape"),
                    (
                        "413",
                        "The body is over the size limit (server.max_body_bytes)",
                    ),
                    (
                        "415",
                        "The body is not sent as JSON (Content-Type: application/json)",
                    ),
                ] {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| refusal(description).into());
                }
            }
        }
    }
}

impl ApiDoc {
    /// The document of this server: the generated one, with what only its settings know
    /// (the model types a prediction may name).
    pub fn for_server(model_types: &[String]) -> utoipa::openapi::OpenApi {
        use utoipa::openapi::{RefOr, Schema};
        let mut doc = Self::openapi();
        let property = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("PredictBody"))
            .and_then(|body| match body {
                RefOr::T(Schema::Object(body)) => body.properties.get_mut("modelType"),
                _ => None,
            });
        match property {
            Some(RefOr::T(Schema::Object(model_type))) => {
                model_type.enum_values =
                    Some(model_types.iter().map(|t| t.as_str().into()).collect());
            }
            _ => unreachable!("PredictBody has a modelType string"),
        }
        doc
    }
}

pub fn routes(config: &mut web::ServiceConfig, api_doc: utoipa::openapi::OpenApi) {
    config.service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", api_doc));
}
