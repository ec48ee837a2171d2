//! [`SeedStore`]: the seed species.

use async_trait::async_trait;
use datastore::{Seed, SeedStore, StoreError};
use sea_orm::{EntityTrait, QueryOrder};

use crate::SqlStore;
use crate::entities::seed;
use crate::error::store_error;

#[async_trait]
impl SeedStore for SqlStore {
    /// Ordered by name.
    async fn list_seeds(&self) -> Result<Vec<Seed>, StoreError> {
        let rows = seed::Entity::find()
            .order_by_asc(seed::Column::Name)
            .all(self.connection())
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| Seed {
                id: row.id,
                name: row.name,
            })
            .collect())
    }
}
