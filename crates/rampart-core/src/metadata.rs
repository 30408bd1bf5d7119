//! TUF 1.0 metadata types, strict parsing and the canonical bytes signatures cover.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TufError;
use crate::keys::Key;

/// The role types of TUF metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleType {
    Root,
    Timestamp,
    Snapshot,
    Targets,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::Root => "root",
            RoleType::Timestamp => "timestamp",
            RoleType::Snapshot => "snapshot",
            RoleType::Targets => "targets",
        }
    }
}

/// Names that only top-level roles may carry.
pub const TOP_LEVEL_ROLE_NAMES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// One signature of a metadata envelope (`sig` is hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// Fields every signed body carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Common {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
}

/// The keys and threshold of one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_snapshot: Option<bool>,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, RoleKeys>,
}

impl Root {
    pub fn consistent_snapshot(&self) -> bool {
        self.consistent_snapshot.unwrap_or(false)
    }

    /// The keys and threshold of a top-level role; parsing guarantees all four exist.
    pub fn role(&self, role: RoleType) -> &RoleKeys {
        &self.roles[role.as_str()]
    }
}

/// A metadata file as described by timestamp or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<IndexMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
}

impl Timestamp {
    pub fn snapshot_meta(&self) -> &MetaFile {
        &self.meta["snapshot.json"]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
}

/// A target file: its length, hashes and free-form `custom` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

/// A delegation from one targets role to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// TAP 15 succinct hash-bin delegations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccinctRoles {
    pub keyids: Vec<String>,
    pub threshold: u32,
    pub bit_length: u32,
    pub name_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, Key>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(flatten)]
    pub common: Common,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
}

/// A signed body that knows its role type and can check its own invariants.
pub trait SignedBody: DeserializeOwned + Serialize {
    const TYPE: RoleType;
    fn common(&self) -> &Common;
    /// Checks invariants serde cannot express.
    fn validate(&self, role: &str) -> Result<(), TufError>;
}

fn malformed(role: &str, reason: impl Into<String>) -> TufError {
    TufError::Malformed {
        role: role.to_string(),
        reason: reason.into(),
    }
}

fn validate_role_keys(
    role: &str,
    who: &str,
    keyids: &[String],
    threshold: u32,
) -> Result<(), TufError> {
    if threshold < 1 {
        return Err(malformed(
            role,
            format!("{who} threshold must be at least 1"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in keyids {
        if !seen.insert(k) {
            return Err(malformed(role, format!("{who} lists key id {k} twice")));
        }
    }
    Ok(())
}

fn validate_meta_file(role: &str, name: &str, m: &MetaFile) -> Result<(), TufError> {
    if m.version < 1 {
        return Err(malformed(role, format!("meta {name} has version 0")));
    }
    if let Some(h) = &m.hashes
        && h.is_empty()
    {
        return Err(malformed(
            role,
            format!("meta {name} has an empty hashes object"),
        ));
    }
    Ok(())
}

impl SignedBody for Root {
    const TYPE: RoleType = RoleType::Root;
    fn common(&self) -> &Common {
        &self.common
    }
    fn validate(&self, role: &str) -> Result<(), TufError> {
        for r in TOP_LEVEL_ROLE_NAMES {
            let keys = self
                .roles
                .get(r)
                .ok_or_else(|| malformed(role, format!("roles lacks {r}")))?;
            validate_role_keys(role, r, &keys.keyids, keys.threshold)?;
        }
        if self.roles.len() != 4 {
            return Err(malformed(
                role,
                "roles must list exactly root, timestamp, snapshot and targets",
            ));
        }
        Ok(())
    }
}

impl SignedBody for Timestamp {
    const TYPE: RoleType = RoleType::Timestamp;
    fn common(&self) -> &Common {
        &self.common
    }
    fn validate(&self, role: &str) -> Result<(), TufError> {
        let m = self
            .meta
            .get("snapshot.json")
            .ok_or_else(|| malformed(role, "meta lacks snapshot.json"))?;
        validate_meta_file(role, "snapshot.json", m)
    }
}

impl SignedBody for Snapshot {
    const TYPE: RoleType = RoleType::Snapshot;
    fn common(&self) -> &Common {
        &self.common
    }
    fn validate(&self, role: &str) -> Result<(), TufError> {
        for (name, m) in &self.meta {
            validate_meta_file(role, name, m)?;
        }
        Ok(())
    }
}

impl SignedBody for Targets {
    const TYPE: RoleType = RoleType::Targets;
    fn common(&self) -> &Common {
        &self.common
    }
    fn validate(&self, role: &str) -> Result<(), TufError> {
        for (path, t) in &self.targets {
            if t.hashes.is_empty() {
                return Err(malformed(role, format!("target {path:?} has no hashes")));
            }
        }
        let Some(d) = &self.delegations else {
            return Ok(());
        };
        match (&d.roles, &d.succinct_roles) {
            (Some(_), Some(_)) => {
                return Err(malformed(
                    role,
                    "delegations has both roles and succinct_roles",
                ));
            }
            (None, None) => {
                return Err(malformed(
                    role,
                    "delegations has neither roles nor succinct_roles",
                ));
            }
            _ => {}
        }
        if let Some(roles) = &d.roles {
            let mut names = std::collections::BTreeSet::new();
            for r in roles {
                if TOP_LEVEL_ROLE_NAMES.contains(&r.name.as_str()) {
                    return Err(malformed(
                        role,
                        format!("delegated role may not be named {:?}", r.name),
                    ));
                }
                if !names.insert(&r.name) {
                    return Err(malformed(
                        role,
                        format!("delegated role {:?} appears twice", r.name),
                    ));
                }
                if r.paths.is_some() == r.path_hash_prefixes.is_some() {
                    return Err(malformed(
                        role,
                        format!(
                            "delegated role {:?} needs exactly one of paths and path_hash_prefixes",
                            r.name
                        ),
                    ));
                }
                validate_role_keys(role, &r.name, &r.keyids, r.threshold)?;
            }
        }
        if let Some(s) = &d.succinct_roles {
            if !(1..=32).contains(&s.bit_length) {
                return Err(malformed(role, "succinct_roles bit_length must be 1..=32"));
            }
            validate_role_keys(role, "succinct_roles", &s.keyids, s.threshold)?;
        }
        Ok(())
    }
}

/// Parsed metadata: the typed body, its signatures, and the raw `signed` value signatures cover.
#[derive(Debug, Clone)]
pub struct Metadata<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
    /// Canonical JSON of the `signed` object exactly as received (unknown fields included).
    pub canonical_signed: Vec<u8>,
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    signed: &'a serde_json::value::RawValue,
    signatures: Vec<Signature>,
}

#[derive(Deserialize)]
struct TypeProbe {
    #[serde(rename = "_type")]
    type_: Option<Value>,
}

/// Checks the `expires` string form TUF requires: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_expires(role: &str, expires: &str) -> Result<i64, TufError> {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::PrimitiveDateTime::parse(expires, &format)
        .map(|t| t.assume_utc().unix_timestamp())
        .map_err(|_| {
            malformed(
                role,
                format!("expires {expires:?} is not YYYY-MM-DDTHH:MM:SSZ"),
            )
        })
}

/// Formats a Unix time as a TUF `expires` string.
pub fn format_expires(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&format)
        .expect("fixed format always formats")
}

impl<T: SignedBody> Metadata<T> {
    /// Parses and validates metadata bytes for role `role` (a name, used in errors).
    pub fn from_bytes(role: &str, bytes: &[u8]) -> Result<Self, TufError> {
        let env: RawEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| malformed(role, format!("not a TUF envelope: {e}")))?;
        let raw = env.signed.get();
        let wrong_type = |found: String| TufError::WrongType {
            expected: T::TYPE.as_str().to_string(),
            found,
        };
        let signed: T = match serde_json::from_str::<T>(raw) {
            Ok(t) => t,
            Err(e) => {
                // Say "wrong type" rather than "malformed" when the body is another role's.
                return Err(match serde_json::from_str::<TypeProbe>(raw) {
                    Ok(TypeProbe {
                        type_: Some(Value::String(t)),
                    }) if t != T::TYPE.as_str() => wrong_type(t),
                    Ok(TypeProbe { type_: None }) => wrong_type(String::new()),
                    _ => malformed(role, e.to_string()),
                });
            }
        };
        if signed.common().type_ != T::TYPE.as_str() {
            return Err(wrong_type(signed.common().type_.clone()));
        }
        let common = signed.common();
        let major = common.spec_version.split('.').collect::<Vec<_>>();
        if major.len() < 2
            || major.len() > 3
            || major[0] != "1"
            || major.iter().any(|p| p.parse::<u32>().is_err())
        {
            return Err(TufError::UnsupportedSpecVersion {
                role: role.to_string(),
                found: common.spec_version.clone(),
            });
        }
        if common.version < 1 {
            return Err(malformed(role, "version must be at least 1"));
        }
        parse_expires(role, &common.expires)?;
        let mut seen = std::collections::BTreeSet::new();
        for s in &env.signatures {
            if !seen.insert(&s.keyid) {
                return Err(malformed(
                    role,
                    format!("two signatures carry key id {}", s.keyid),
                ));
            }
        }
        signed.validate(role)?;
        // Signatures cover the canonical form. Rampart's repositories (and many others) already
        // send it, and then the received bytes are used as they are; otherwise re-serialize.
        let canonical_signed = if crate::cjson::is_canonical(raw.as_bytes()) {
            raw.as_bytes().to_vec()
        } else {
            let value: Value =
                serde_json::from_str(raw).map_err(|e| malformed(role, e.to_string()))?;
            crate::cjson::value_to_canonical_bytes(&value)
                .map_err(|e| malformed(role, e.to_string()))?
        };
        Ok(Metadata {
            signed,
            signatures: env.signatures,
            canonical_signed,
        })
    }

    pub fn version(&self) -> u64 {
        self.signed.common().version
    }

    /// Unix time at which this metadata expires.
    pub fn expires_unix(&self) -> i64 {
        parse_expires("", &self.signed.common().expires).expect("validated at parse")
    }

    pub fn is_expired(&self, now_unix: i64) -> bool {
        now_unix >= self.expires_unix()
    }
}

/// Serializes an envelope as sorted compact JSON (plus a final newline): canonical JSON where no
/// string holds a control character, so clients can verify the received `signed` bytes without
/// re-serializing them.
pub fn envelope_bytes<T: Serialize>(signed: &T, signatures: &[Signature]) -> Vec<u8> {
    let v = serde_json::json!({ "signatures": signatures, "signed": signed });
    let mut out = crate::cjson::to_sorted_json_bytes(&v).expect("metadata holds no floats");
    out.push(b'\n');
    out
}
