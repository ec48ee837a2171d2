//! Who may act for which organization: every study, series, predict and result call is
//! made by a [`Member`], and acts only for the organizations the member belongs to.
//!
//! The HTTP edge learns the member from a verified token (or, in development, makes one up);
//! the rules live here, so that every use case applies the same ones:
//!
//! - naming an organization one does not belong to is refused as *forbidden*, whether it
//!   exists or not (the answer must not tell which names exist);
//! - a series of another organization is *not found*, like one that does not exist.

use std::collections::BTreeSet;

use crate::ids::OrganizationId;
use crate::organization::Organization;
use crate::repository::{OrganizationRepository, StoreError};

/// The caller of a radiologist's call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Who, as the token names them (for logs and records).
    pub user: String,
    pub organizations: Membership,
    /// Manages organizations and sees every job.
    pub admin: bool,
}

/// The organizations a member belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Every organization (the development identity).
    Every,
    /// These, each by name or by id (as the token says).
    Only(BTreeSet<String>),
}

impl Member {
    /// The development identity (`nachet-dev`): a member of every organization (not an
    /// administrator: administration takes the admin token).
    pub fn development(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            organizations: Membership::Every,
            admin: false,
        }
    }

    /// Whether the member belongs to `organization` (named by name, case-insensitively, or
    /// by id).
    pub fn belongs_to(&self, organization: &Organization) -> bool {
        match &self.organizations {
            Membership::Every => true,
            Membership::Only(names) => names.iter().any(|given| {
                let given = given.trim();
                given.eq_ignore_ascii_case(organization.name.as_str())
                    || given.eq_ignore_ascii_case(&organization.id.to_string())
            }),
        }
    }

    /// Whether the member could name `given` as one of their organizations (before it is
    /// looked up): a name or id they were given.
    pub fn may_name(&self, given: &str) -> bool {
        match &self.organizations {
            Membership::Every => true,
            Membership::Only(names) => names
                .iter()
                .any(|name| name.trim().eq_ignore_ascii_case(given.trim())),
        }
    }
}

/// Naming an organization the caller does not belong to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("you are not a member of organization {given:?}")]
pub struct NotAMember {
    pub given: String,
}

/// Why an organization named by a member cannot be acted for.
#[derive(Debug, thiserror::Error)]
pub enum OrganizationAccessError {
    #[error("{0}")]
    NotAMember(#[from] NotAMember),
    /// One of the member's own names that no organization has (never said of a name the
    /// member does not belong to).
    #[error("unknown organization {given:?}")]
    Unknown { given: String },
    #[error("the database is unavailable ({0}); ask again later")]
    Store(#[from] StoreError),
}

/// The organization `given` (a name or an id) if `member` belongs to it.
pub(crate) async fn organization_of(
    organizations: &dyn OrganizationRepository,
    member: &Member,
    given: &str,
) -> Result<Organization, OrganizationAccessError> {
    let given = given.trim();
    let found = match given.parse::<OrganizationId>() {
        Ok(id) => organizations.find_organization(id).await?,
        Err(_) => organizations.find_organization_by_name(given).await?,
    };
    match found {
        Some(organization) if member.belongs_to(&organization) => Ok(organization),
        None if member.may_name(given) => Err(OrganizationAccessError::Unknown {
            given: given.to_owned(),
        }),
        _ => Err(NotAMember {
            given: given.to_owned(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organization::Organization;
    use crate::ports::DicomCredentials;

    fn org(name: &str) -> Organization {
        Organization::new(
            name,
            "http://pacs.test/dicom-web",
            DicomCredentials::None,
            chrono::Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn a_member_belongs_to_the_organizations_named_by_name_or_id() {
        let a = org("Hospital A");
        let b = org("Clinic B");
        let member = Member {
            user: "u".into(),
            organizations: Membership::Only(BTreeSet::from(["hospital a".to_string()])),
            admin: false,
        };
        assert!(member.belongs_to(&a));
        assert!(!member.belongs_to(&b));
        assert!(member.may_name("Hospital A"));
        assert!(!member.may_name("Clinic B"));
        let by_id = Member {
            organizations: Membership::Only(BTreeSet::from([b.id.to_string()])),
            ..member
        };
        assert!(by_id.belongs_to(&b) && !by_id.belongs_to(&a));
        assert!(Member::development("dev").belongs_to(&a));
    }
}
