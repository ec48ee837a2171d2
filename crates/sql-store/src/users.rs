//! [`UserStore`]: users by email.

use async_trait::async_trait;
use chrono::Utc;
use datastore::{StoreError, User, UserStore};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter};
use uuid::Uuid;

use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::user;
use crate::error::store_error;

fn to_user(row: user::Model) -> User {
    User {
        id: row.id,
        email: row.email,
        registered_at: row.registered_at,
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = user::Entity::find()
            .filter(user::Column::Email.eq(email))
            .one(self.connection())
            .await
            .map_err(store_error)?;
        Ok(row.map(to_user))
    }

    async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = user::Entity::find_by_id(id)
            .one(self.connection())
            .await
            .map_err(store_error)?;
        Ok(row.map(to_user))
    }

    /// Insert-if-absent, then read: of concurrent registrations of one email, one inserts
    /// and all return that row.
    async fn register(&self, email: &str) -> Result<User, StoreError> {
        let candidate = user::Model {
            id: Uuid::new_v4(),
            email: email.to_owned(),
            registered_at: stored_time(Utc::now()),
        };
        user::Entity::insert(candidate.into_active_model())
            .on_conflict_do_nothing_on([user::Column::Email])
            .exec_without_returning(self.connection())
            .await
            .map_err(store_error)?;
        self.find_by_email(email).await?.ok_or_else(|| {
            StoreError::Database(format!(
                "the user {email:?} vanished right after registration"
            ))
        })
    }
}
