//! [`OrganizationRepository`] on SQL.

use async_trait::async_trait;
use dicom_series::ports::{DicomCredentials, DicomServer};
use dicom_series::{
    CreateOrganizationError, Organization, OrganizationId, OrganizationName,
    OrganizationRepository, StoreError,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr};
use secrecy::{ExposeSecret, SecretString};

use super::db_error;
use crate::SqlStore;
use crate::connection::stored_time;
use crate::entities::dicom_organization as row;

fn to_row(organization: &Organization) -> row::Model {
    let (kind, username, secret) = match &organization.dicom_server.credentials {
        DicomCredentials::None => ("none", None, None),
        DicomCredentials::Basic { username, password } => (
            "basic",
            Some(username.clone()),
            Some(password.expose_secret().to_string()),
        ),
        DicomCredentials::Bearer { token } => {
            ("bearer", None, Some(token.expose_secret().to_string()))
        }
    };
    row::Model {
        id: organization.id.0,
        name: organization.name.to_string(),
        dicom_root: organization.dicom_server.root.clone(),
        credentials_kind: kind.to_string(),
        credentials_username: username,
        credentials_secret: secret,
        created_at: stored_time(organization.created_at),
    }
}

fn from_row(row: row::Model) -> Result<Organization, StoreError> {
    let broken = |what: &str| {
        StoreError(format!(
            "organization {} has {what} in the database",
            row.id
        ))
    };
    let secret = || {
        row.credentials_secret
            .clone()
            .map(SecretString::from)
            .ok_or_else(|| broken("credentials without their secret"))
    };
    let credentials = match row.credentials_kind.as_str() {
        "none" => DicomCredentials::None,
        "basic" => DicomCredentials::Basic {
            username: row
                .credentials_username
                .clone()
                .ok_or_else(|| broken("basic credentials without a username"))?,
            password: secret()?,
        },
        "bearer" => DicomCredentials::Bearer { token: secret()? },
        other => return Err(broken(&format!("unknown credentials kind {other:?}"))),
    };
    let name = OrganizationName::parse(&row.name)
        .map_err(|e| broken(&format!("an invalid name ({e})")))?;
    Ok(Organization {
        id: OrganizationId(row.id),
        name,
        dicom_server: DicomServer {
            root: row.dicom_root,
            credentials,
        },
        created_at: row.created_at,
    })
}

#[async_trait]
impl OrganizationRepository for SqlStore {
    async fn create_organization(
        &self,
        organization: &Organization,
    ) -> Result<(), CreateOrganizationError> {
        let active: row::ActiveModel = to_row(organization).into();
        match row::Entity::insert(active)
            .exec_without_returning(self.connection())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => Err(
                    CreateOrganizationError::DuplicateName(organization.name.to_string()),
                ),
                _ => Err(db_error(e).into()),
            },
        }
    }

    async fn find_organization(
        &self,
        id: OrganizationId,
    ) -> Result<Option<Organization>, StoreError> {
        row::Entity::find_by_id(id.0)
            .one(self.connection())
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn find_organization_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, StoreError> {
        row::Entity::find()
            .filter(row::Column::Name.eq(name))
            .one(self.connection())
            .await
            .map_err(db_error)?
            .map(from_row)
            .transpose()
    }

    async fn organization_names(&self) -> Result<Vec<String>, StoreError> {
        row::Entity::find()
            .select_only()
            .column(row::Column::Name)
            .order_by_asc(row::Column::Name)
            .into_tuple::<String>()
            .all(self.connection())
            .await
            .map_err(db_error)
    }
}
