//! What answers a request that matches no route: 405 with `Allow` when the path is one of
//! the API's with another method, else 404; both with a JSON `{"error"}` body. The API's
//! paths and methods are read from the OpenAPI document, so that the two cannot drift.

use actix_web::http::StatusCode;
use actix_web::http::header::ALLOW;
use actix_web::{HttpRequest, HttpResponse};
use utoipa::OpenApi;

use super::error::error_response;

/// A path template of the API (`/api/studies/series/{series_id}`) and its methods.
struct Route {
    segments: Vec<Segment>,
    methods: Vec<&'static str>,
}

enum Segment {
    Literal(String),
    Parameter,
}

impl Route {
    fn parameters(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Parameter))
            .count()
    }

    fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        parts.len() == self.segments.len()
            && parts
                .iter()
                .zip(&self.segments)
                .all(|(part, segment)| match segment {
                    Segment::Literal(text) => part == text,
                    Segment::Parameter => !part.is_empty(),
                })
    }
}

/// The API's routes, from its OpenAPI document.
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn from_openapi() -> Self {
        let document = super::ApiDoc::openapi();
        Self(
            document
                .paths
                .paths
                .iter()
                .map(|(template, item)| Route {
                    segments: template
                        .trim_end_matches('/')
                        .split('/')
                        .map(|s| {
                            if s.starts_with('{') && s.ends_with('}') {
                                Segment::Parameter
                            } else {
                                Segment::Literal(s.to_owned())
                            }
                        })
                        .collect(),
                    methods: [
                        ("GET", item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("DELETE", item.delete.is_some()),
                        ("PATCH", item.patch.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(method, present)| present.then_some(method))
                    .collect(),
                })
                .collect(),
        )
    }

    /// The answer to a request no route took.
    pub fn answer(&self, request: &HttpRequest) -> HttpResponse {
        let path = request.path();
        // A literal path wins over a template it also matches (`/api/studies/series/predict`
        // is not the series `predict`), as the router decides.
        let matching: Vec<&Route> = self.0.iter().filter(|route| route.matches(path)).collect();
        let fewest_parameters = matching.iter().map(|r| r.parameters()).min();
        let allowed: Vec<&str> = matching
            .iter()
            .filter(|route| Some(route.parameters()) == fewest_parameters)
            .flat_map(|route| route.methods.iter().copied())
            .collect();
        if allowed.is_empty() {
            return error_response(
                StatusCode::NOT_FOUND,
                &format!("no route {path}: the API is described at /openapi.json"),
                None,
            );
        }
        let allow = allowed.join(", ");
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{} is not a method of {path}: use {allow}",
                request.method()
            ),
            None,
        );
        response.headers_mut().insert(
            ALLOW,
            allow.parse().expect("method names are valid header text"),
        );
        response
    }
}
