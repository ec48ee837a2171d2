//! Organizations: who owns a DICOM server, and how to reach it.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::ids::OrganizationId;
use crate::ports::{DicomCredentials, DicomServer};

/// An organization's name: trimmed, 1 to 200 characters, and never shaped like a UUID, so
/// that "id or name" in a request always means one thing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrganizationName(String);

impl OrganizationName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(name: &str) -> Result<Self, InvalidOrganization> {
        let name = name.trim();
        if name.is_empty() {
            return Err(InvalidOrganization("the name is empty".into()));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidOrganization(format!(
                "the name is longer than {} characters",
                Self::MAX_CHARS
            )));
        }
        if uuid::Uuid::parse_str(name).is_ok() {
            return Err(InvalidOrganization(format!(
                "the name {name:?} looks like an id; requests name an organization by id or by name, so a name must not be a UUID"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidOrganization(
                "the name contains control characters".into(),
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrganizationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid organization: {0}")]
pub struct InvalidOrganization(pub String);

/// An organization and its DICOM server.
#[derive(Clone, Debug)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: OrganizationName,
    pub dicom_server: DicomServer,
    pub created_at: DateTime<Utc>,
}

impl Organization {
    /// Checks what an administrator gave: the name (see [`OrganizationName`]), the DICOMweb
    /// root (an `http://` or `https://` URL), and credentials that a server could accept.
    pub fn new(
        name: &str,
        dicom_root: &str,
        credentials: DicomCredentials,
        now: DateTime<Utc>,
    ) -> Result<Self, InvalidOrganization> {
        let name = OrganizationName::parse(name)?;
        let root = dicom_root.trim().trim_end_matches('/');
        if !(root.starts_with("http://") || root.starts_with("https://")) {
            return Err(InvalidOrganization(format!(
                "the DICOM server root {dicom_root:?} is not an http(s) URL (the DICOMweb root, e.g. https://pacs.example.org/dicom-web)"
            )));
        }
        if root.chars().any(char::is_whitespace) {
            return Err(InvalidOrganization(format!(
                "the DICOM server root {dicom_root:?} contains spaces"
            )));
        }
        check_credentials(&credentials)?;
        Ok(Self {
            id: OrganizationId::new(),
            name,
            dicom_server: DicomServer {
                root: root.to_string(),
                credentials,
            },
            created_at: now,
        })
    }
}

fn check_credentials(credentials: &DicomCredentials) -> Result<(), InvalidOrganization> {
    match credentials {
        DicomCredentials::None => Ok(()),
        DicomCredentials::Basic { username, password } => {
            if username.is_empty() {
                Err(InvalidOrganization(
                    "basic credentials need a username".into(),
                ))
            } else if username.contains(':') {
                // RFC 7617: the first colon separates username and password.
                Err(InvalidOrganization(
                    "a basic-credentials username cannot contain ':'".into(),
                ))
            } else if password.expose_secret().is_empty() {
                Err(InvalidOrganization(
                    "basic credentials need a password".into(),
                ))
            } else {
                Ok(())
            }
        }
        DicomCredentials::Bearer { token } => {
            let token: &str = token.expose_secret();
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                Err(InvalidOrganization(
                    "a bearer token must be non-empty and without spaces".into(),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The kind of credentials, for answers that must never carry the secret itself.
pub fn credentials_kind(credentials: &DicomCredentials) -> &'static str {
    match credentials {
        DicomCredentials::None => "none",
        DicomCredentials::Basic { .. } => "basic",
        DicomCredentials::Bearer { .. } => "bearer",
    }
}

/// Builds basic credentials from plain strings.
pub fn basic_credentials(username: &str, password: &str) -> DicomCredentials {
    DicomCredentials::Basic {
        username: username.to_string(),
        password: SecretString::from(password.to_string()),
    }
}

/// Builds bearer credentials from a plain string.
pub fn bearer_credentials(token: &str) -> DicomCredentials {
    DicomCredentials::Bearer {
        token: SecretString::from(token.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn a_valid_organization_keeps_a_trimmed_name_and_root() {
        let org = Organization::new(
            "  Hospital A ",
            "https://pacs.example.org/dicom-web/",
            basic_credentials("reader", "s3cret"),
            now(),
        )
        .unwrap();
        assert_eq!(org.name.as_str(), "Hospital A");
        assert_eq!(org.dicom_server.root, "https://pacs.example.org/dicom-web");
        assert_eq!(credentials_kind(&org.dicom_server.credentials), "basic");
    }

    #[test]
    fn a_folder_is_not_a_dicom_server() {
        let error = Organization::new(
            "demo",
            "/var/lib/nachet/dicom",
            DicomCredentials::None,
            now(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("not an http(s) URL"), "{error}");
    }

    #[test]
    fn bad_organizations_are_refused_with_the_reason() {
        let cases = [
            ("", "https://x", DicomCredentials::None, "empty"),
            (
                "5f0e2a52-52b4-4c1c-9d5e-1f5c3b1f0a11",
                "https://x",
                DicomCredentials::None,
                "looks like an id",
            ),
            (
                "a",
                "pacs.example.org",
                DicomCredentials::None,
                "not an http(s) URL",
            ),
            ("a", "https://x", basic_credentials("", "p"), "username"),
            ("a", "https://x", basic_credentials("a:b", "p"), "':'"),
            ("a", "https://x", basic_credentials("a", ""), "password"),
            ("a", "https://x", bearer_credentials(""), "bearer"),
        ];
        for (name, root, credentials, reason) in cases {
            let err = Organization::new(name, root, credentials, now()).unwrap_err();
            assert!(
                err.to_string().contains(reason),
                "{name:?} {root:?}: {err} should mention {reason}"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let org =
            Organization::new("a", "https://x", basic_credentials("u", "hunter2"), now()).unwrap();
        assert!(!format!("{org:?}").contains("hunter2"));
        let org =
            Organization::new("a", "https://x", bearer_credentials("tok-123"), now()).unwrap();
        assert!(!format!("{org:?}").contains("tok-123"));
    }
}
