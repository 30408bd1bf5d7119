//! Rampart's release fields, carried in each target's `custom.rampart`, and the device-side
//! decision whether a verified target may be installed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Digest of a document attached to a release (SBOM, provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRef {
    /// Target path of the document in the same repository.
    pub path: String,
    pub sha256: String,
    pub length: u64,
    /// Media type, e.g. `application/vnd.cyclonedx+json`.
    pub media_type: String,
}

/// What Rampart records about a firmware image in its target's `custom.rampart` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Hardware compatibility ids the image may be installed on.
    pub hardware_ids: Vec<String>,
    /// Semantic version shown to people.
    pub version: String,
    /// Monotonic anti-rollback counter: a device never installs a lower one than it runs.
    pub security_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<DocumentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<DocumentRef>,
    /// The C2SP tlog-proof showing the release's statement is in the transparency log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_proof: Option<DocumentRef>,
}

/// Why release information is malformed or a release must not be installed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "target has no custom.rampart release information; it was not added by `rampart release add`"
    )]
    Missing,
    #[error("custom.rampart is malformed: {0}")]
    Malformed(String),
    #[error("version {0:?} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])")]
    BadVersion(String),
    #[error("release lists no hardware ids; pass at least one --hw")]
    NoHardware,
    #[error("hardware id {0:?} may only use letters, digits, '.', '_', ':' and '-' (1-64 bytes)")]
    BadHardwareId(String),
    #[error(
        "release is for hardware {allowed:?}, not for this device's {device:?} (wrong software installation)"
    )]
    WrongHardware {
        allowed: Vec<String>,
        device: String,
    },
    #[error(
        "release security version {offered} is below the installed {installed} (anti-rollback)"
    )]
    SecurityRollback { offered: u64, installed: u64 },
}

impl ReleaseInfo {
    /// Checks the fields a release must have well-formed.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        semver::Version::parse(&self.version)
            .map_err(|_| ReleaseError::BadVersion(self.version.clone()))?;
        if self.hardware_ids.is_empty() {
            return Err(ReleaseError::NoHardware);
        }
        for hw in &self.hardware_ids {
            let ok = !hw.is_empty()
                && hw.len() <= 64
                && hw
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
            if !ok {
                return Err(ReleaseError::BadHardwareId(hw.clone()));
            }
        }
        Ok(())
    }

    /// The `custom` object of a target carrying this release.
    pub fn to_custom(&self) -> Value {
        serde_json::json!({ "rampart": self })
    }

    /// Reads release information from a target's `custom` object.
    pub fn from_custom(custom: Option<&Value>) -> Result<ReleaseInfo, ReleaseError> {
        let v = custom
            .and_then(|c| c.get("rampart"))
            .ok_or(ReleaseError::Missing)?;
        let info: ReleaseInfo = serde_json::from_value(v.clone())
            .map_err(|e| ReleaseError::Malformed(e.to_string()))?;
        info.validate()?;
        Ok(info)
    }

    /// The device-side gate after TUF verification: the image must be built for this hardware
    /// and must not lower the security version the device already runs.
    pub fn check_installable(
        &self,
        device_hardware_id: &str,
        installed_security_version: u64,
    ) -> Result<(), ReleaseError> {
        if !self.hardware_ids.iter().any(|h| h == device_hardware_id) {
            return Err(ReleaseError::WrongHardware {
                allowed: self.hardware_ids.clone(),
                device: device_hardware_id.to_string(),
            });
        }
        if self.security_version < installed_security_version {
            return Err(ReleaseError::SecurityRollback {
                offered: self.security_version,
                installed: installed_security_version,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ReleaseInfo {
        ReleaseInfo {
            hardware_ids: vec!["board-a".into()],
            version: "1.2.3".into(),
            security_version: 5,
            sbom: None,
            provenance: None,
            tlog_proof: None,
        }
    }

    #[test]
    fn round_trips_through_custom() {
        let i = info();
        assert_eq!(ReleaseInfo::from_custom(Some(&i.to_custom())).unwrap(), i);
    }

    #[test]
    fn rejects_bad_semver_and_hardware() {
        let mut i = info();
        i.version = "1.2".into();
        assert!(matches!(i.validate(), Err(ReleaseError::BadVersion(_))));
        let mut i = info();
        i.hardware_ids = vec!["bad id".into()];
        assert!(matches!(i.validate(), Err(ReleaseError::BadHardwareId(_))));
    }
}
