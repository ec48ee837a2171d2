//! [`CatalogueRecorder`]: the pipelines and models of a catalogue, with stable ids.

use async_trait::async_trait;
use chrono::Utc;
use datastore::StoreError;
use pipeline::ports::{CatalogueRecorder, ChosenCatalogue, ChosenVersion, RecordCatalogueError};
use pipeline::{Catalogue, ModelDefinition, PipelineDefinition, RecordedIds};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
};
use uuid::Uuid;

use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::{catalogue_model, catalogue_pipeline, pipeline_model};
use crate::error::store_error;

#[async_trait]
impl CatalogueRecorder for SqlStore {
    /// One transaction: each model and pipeline is inserted, or updated in place when its
    /// (name, version) is already recorded (keeping its id), and each pipeline's models are
    /// recorded in call order.
    async fn record(&self, catalogue: &Catalogue) -> Result<RecordedIds, RecordCatalogueError> {
        let failed = |e: StoreError| RecordCatalogueError(e.to_string());
        let txn = self.begin_write().await.map_err(failed)?;
        match record_catalogue(&txn, catalogue).await {
            Ok(ids) => {
                txn.commit().await.map_err(|e| failed(store_error(e)))?;
                tracing::info!(
                    catalogue_version = catalogue.version(),
                    pipelines = ids.pipelines.len(),
                    models = ids.models.len(),
                    "recorded the catalogue"
                );
                Ok(ids)
            }
            Err(error) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(%rollback, "rolling back a failed catalogue record");
                }
                Err(failed(error))
            }
        }
    }
}

/// One row (`id` 1) of `catalogue_active`.
#[async_trait]
impl ChosenVersion for SqlStore {
    async fn chosen(&self) -> Result<Option<ChosenCatalogue>, RecordCatalogueError> {
        let failed = |e: sea_orm::DbErr| RecordCatalogueError(store_error(e).to_string());
        let query = Query::select()
            .columns([Alias::new("version"), Alias::new("configured_version")])
            .from(Alias::new("catalogue_active"))
            .and_where(Expr::col(Alias::new("id")).eq(1))
            .to_owned();
        let Some(row) = self.connection().query_one(&query).await.map_err(failed)? else {
            return Ok(None);
        };
        Ok(Some(ChosenCatalogue {
            version: row.try_get("", "version").map_err(failed)?,
            configured: row.try_get("", "configured_version").map_err(failed)?,
        }))
    }

    async fn choose(
        &self,
        version: &str,
        configured: Option<String>,
    ) -> Result<(), RecordCatalogueError> {
        let failed = |e: sea_orm::DbErr| RecordCatalogueError(store_error(e).to_string());
        let mut updated = vec![Alias::new("version"), Alias::new("chosen_at")];
        if configured.is_some() {
            updated.push(Alias::new("configured_version"));
        }
        let insert = Query::insert()
            .into_table(Alias::new("catalogue_active"))
            .columns([
                Alias::new("id"),
                Alias::new("version"),
                Alias::new("configured_version"),
                Alias::new("chosen_at"),
            ])
            .values_panic([
                1.into(),
                version.into(),
                configured.into(),
                stored_time(Utc::now()).into(),
            ])
            .on_conflict(
                OnConflict::column(Alias::new("id"))
                    .update_columns(updated)
                    .to_owned(),
            )
            .to_owned();
        self.connection().execute(&insert).await.map_err(failed)?;
        Ok(())
    }
}

async fn record_catalogue(
    txn: &DatabaseTransaction,
    catalogue: &Catalogue,
) -> Result<RecordedIds, StoreError> {
    let mut ids = RecordedIds::default();
    for model in catalogue.models() {
        let id = upsert_model(txn, model).await?;
        ids.models.insert(model.name.clone(), id);
    }
    for definition in catalogue.pipelines() {
        let id = upsert_pipeline(txn, catalogue.version(), definition).await?;
        pipeline_model::Entity::delete_many()
            .filter(pipeline_model::Column::PipelineId.eq(id))
            .exec(txn)
            .await
            .map_err(store_error)?;
        let rows = definition
            .models
            .iter()
            .zip(0_i32..)
            .map(|(name, position)| {
                let model_id = ids.models.get(name).copied().ok_or_else(|| {
                    // A validated catalogue names only its own models.
                    StoreError::Database(format!(
                        "pipeline {:?} names the unknown model {name:?}",
                        definition.name
                    ))
                })?;
                Ok(pipeline_model::Model {
                    pipeline_id: id,
                    position,
                    model_id,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        pipeline_model::Entity::insert_many(
            rows.into_iter().map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(txn)
        .await
        .map_err(store_error)?;
        ids.pipelines.insert(definition.name.clone(), id);
    }
    Ok(ids)
}

async fn upsert_model(
    txn: &DatabaseTransaction,
    model: &ModelDefinition,
) -> Result<Uuid, StoreError> {
    let metadata = serde_json::to_value(&model.metadata)
        .map_err(|e| StoreError::Database(format!("model {:?} metadata: {e}", model.name)))?;
    catalogue_model::Entity::insert(
        catalogue_model::Model {
            id: Uuid::new_v4(),
            name: model.name.clone(),
            version: model.version.clone(),
            kind: model.kind.as_str().to_owned(),
            metadata,
        }
        .into_active_model(),
    )
    .on_conflict(
        OnConflict::columns([
            catalogue_model::Column::Name,
            catalogue_model::Column::Version,
        ])
        .update_columns([
            catalogue_model::Column::Kind,
            catalogue_model::Column::Metadata,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(store_error)?;

    catalogue_model::Entity::find()
        .filter(catalogue_model::Column::Name.eq(model.name.as_str()))
        .filter(catalogue_model::Column::Version.eq(model.version.as_str()))
        .one(txn)
        .await
        .map_err(store_error)?
        .map(|row| row.id)
        .ok_or_else(|| {
            StoreError::Database(format!(
                "model {:?} version {:?} is missing right after its upsert",
                model.name, model.version
            ))
        })
}

async fn upsert_pipeline(
    txn: &DatabaseTransaction,
    catalogue_version: &str,
    definition: &PipelineDefinition,
) -> Result<Uuid, StoreError> {
    let metadata = serde_json::to_value(&definition.metadata).map_err(|e| {
        StoreError::Database(format!("pipeline {:?} metadata: {e}", definition.name))
    })?;
    catalogue_pipeline::Entity::insert(
        catalogue_pipeline::Model {
            id: Uuid::new_v4(),
            name: definition.name.clone(),
            version: definition.version.clone(),
            catalogue_version: catalogue_version.to_owned(),
            is_default: definition.default,
            metadata,
            created_at: stored_time(Utc::now()),
        }
        .into_active_model(),
    )
    .on_conflict(
        OnConflict::columns([
            catalogue_pipeline::Column::Name,
            catalogue_pipeline::Column::Version,
        ])
        .update_columns([
            catalogue_pipeline::Column::CatalogueVersion,
            catalogue_pipeline::Column::IsDefault,
            catalogue_pipeline::Column::Metadata,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(store_error)?;

    catalogue_pipeline::Entity::find()
        .filter(catalogue_pipeline::Column::Name.eq(definition.name.as_str()))
        .filter(catalogue_pipeline::Column::Version.eq(definition.version.as_str()))
        .one(txn)
        .await
        .map_err(store_error)?
        .map(|row| row.id)
        .ok_or_else(|| {
            StoreError::Database(format!(
                "pipeline {:?} version {:?} is missing right after its upsert",
                definition.name, definition.version
            ))
        })
}
