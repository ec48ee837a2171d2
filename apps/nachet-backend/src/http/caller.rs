//! The caller of a request: the identity the configuration trusts (see [`super::identity`]),
//! as a user of this backend, and the one ownership rule of every route that names a user.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use inference::{InferError, InferenceService};
use uuid::Uuid;

use super::error::ApiError;
use super::identity::IdentitySettings;

/// The user behind a request. Extracting it answers 401 when the request carries no valid
/// identity, and 403 when the identity is not a user here (and registration is off).
#[derive(Clone, Debug)]
pub struct Caller {
    pub id: Uuid,
    pub email: String,
}

impl Caller {
    /// A user named in a body (`user_id`, `userId`, `container_name`) must be the caller:
    /// a user reads and writes only their own storage.
    pub fn check_named(&self, field: &str, named: &str) -> Result<(), ApiError> {
        let id = Uuid::parse_str(named.trim()).map_err(|_| {
            ApiError::bad_request(format!(
                "{field}: \"{named}\" is not a user id (get yours from /get-user-id)"
            ))
        })?;
        if id != self.id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{field}: {id} is not your user id; you ({}) may only use your own (from /get-user-id)",
                    self.email
                ),
            ));
        }
        Ok(())
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = request.app_data::<web::Data<IdentitySettings>>().cloned();
        let service = request.app_data::<web::Data<InferenceService>>().cloned();
        let email = identity
            .ok_or_else(|| ApiError::internal("the identity settings are not wired"))
            .and_then(|identity| {
                identity
                    .email_of(request)
                    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
            });
        Box::pin(async move {
            let email = email?;
            let service =
                service.ok_or_else(|| ApiError::internal("the seed service is not wired"))?;
            let id = service.user_id(&email).await.map_err(|error| match error {
                InferError::UnknownEmail(_) => ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("{email} is not a user of this backend: ask an administrator to register you"),
                ),
                other => ApiError::from(other),
            })?;
            Ok(Caller { id, email })
        })
    }
}
