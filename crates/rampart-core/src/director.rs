//! The Uptane-style **director**: per-device targets metadata, and the device-side checks that
//! make a device install only what both the director and the image repository sign.
//!
//! The director is a second TUF repository of a single role. A device pins the director's root
//! (a TUF `root.json`) at provisioning; the `targets` role of that root is held by the server's
//! online key. For each device the server signs a targets metadata file (`_type: targets`)
//! that lists what this one device should install, copied from the image repository's
//! target entries, and binds it to the device with `custom.rampart_director.device_id` (on the
//! whole metadata and on each target).
//!
//! The device accepts director metadata only if ([`DirectorTrust::verify_targets`]):
//!
//! * it meets the threshold of the `targets` role of the pinned (possibly rotated) director root,
//! * it has not expired, and the director root has not expired,
//! * its version is not below the version the device last accepted (replay / rollback),
//! * it is bound to this device's id (metadata meant for another device is refused),
//!
//! and installs a director target only if ([`check_agreement`]) the image repository, verified
//! separately by the TUF client, lists the same target path with the same length and the same
//! hashes (and release information, when the director repeats it), built for the device's
//! hardware. A compromised director key alone can therefore only choose among releases the
//! image repository's offline keys signed; it cannot introduce firmware.
//!
//! Director root rotation works as in TUF: `N+1.root.json` must be signed by the thresholds of
//! both root N and root N+1 ([`DirectorTrust::update_root`], the same code as
//! [`TrustedSet::update_root`]).
//!
//! Pure: callers pass bytes and the current time.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::delegation::validate_target_path;
use crate::error::TufError;
use crate::metadata::{
    Common, Metadata, RoleType, Root, Signature, SignedBody, TargetFile, envelope_bytes,
    format_expires,
};
use crate::release::{ReleaseError, ReleaseInfo};
use crate::trusted::TrustedSet;
use crate::verify::verify_threshold;

/// Key of Rampart's director data inside a `custom` object.
pub const DIRECTOR_CUSTOM_KEY: &str = "rampart_director";

/// Spec version written into director metadata.
const SPEC_VERSION: &str = "1.0.31";

/// Longest device id accepted in a binding, in bytes.
const MAX_DEVICE_ID_LEN: usize = 256;

/// The device a piece of director metadata is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBinding {
    pub device_id: String,
}

/// The metadata-level `custom` object of director targets metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorCustom {
    pub rampart_director: DeviceBinding,
}

/// The signed body of one device's director targets metadata: TUF targets metadata with a
/// `custom` object binding it to the device, and no delegations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorTargets {
    #[serde(flatten)]
    pub common: Common,
    pub targets: BTreeMap<String, TargetFile>,
    pub custom: DirectorCustom,
    /// Only read to refuse it: director metadata never delegates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Value>,
}

impl DirectorTargets {
    /// The device this metadata is bound to.
    pub fn device_id(&self) -> &str {
        &self.custom.rampart_director.device_id
    }
}

fn malformed(reason: impl Into<String>) -> TufError {
    TufError::Malformed {
        role: "director targets".into(),
        reason: reason.into(),
    }
}

impl SignedBody for DirectorTargets {
    const TYPE: RoleType = RoleType::Targets;
    fn common(&self) -> &Common {
        &self.common
    }
    fn validate(&self, _role: &str) -> Result<(), TufError> {
        if self.delegations.is_some() {
            return Err(malformed("director metadata may not delegate"));
        }
        let id = self.device_id();
        if id.is_empty() || id.len() > MAX_DEVICE_ID_LEN {
            return Err(malformed(format!(
                "custom.{DIRECTOR_CUSTOM_KEY}.device_id must be 1 to {MAX_DEVICE_ID_LEN} bytes"
            )));
        }
        for (path, t) in &self.targets {
            validate_target_path(path)?;
            if t.hashes.is_empty() {
                return Err(malformed(format!("target {path:?} has no hashes")));
            }
        }
        Ok(())
    }
}

/// Why director metadata, or a director target, was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectorError {
    #[error(
        "director root refused: {0}; the device keeps its pinned director root (re-provision it or ask the operator to publish a correctly signed rotation)"
    )]
    Root(TufError),
    #[error(
        "director root version {version} expired at {expires}; the operator must publish a new director root (N+1.root.json signed by the old and new root keys)"
    )]
    RootExpired { version: u64, expires: String },
    #[error("director targets metadata refused: {0}")]
    Metadata(TufError),
    #[error(
        "director targets metadata expired at {expires}; the server signs a fresh copy on every request, so check this device's clock and the server's director key"
    )]
    Expired { expires: String },
    #[error(
        "director targets metadata is bound to device {found:?}, not to this device {expected:?}; refusing metadata meant for another device"
    )]
    WrongDevice { expected: String, found: String },
    #[error(
        "director target {target:?} carries no custom.{DIRECTOR_CUSTOM_KEY}.device_id binding; refusing it"
    )]
    Unbound { target: String },
    #[error(
        "director targets version {offered} is below version {accepted} this device already accepted (replayed or rolled-back metadata); refusing it"
    )]
    Rollback { accepted: u64, offered: u64 },
    #[error(
        "director target {target:?} is not in the image repository's signed targets; refusing it (the director alone cannot introduce firmware; report this to the fleet operator)"
    )]
    NotInImageRepo { target: String },
    #[error(
        "the director and the image repository disagree about {target:?}: {mismatch}; refusing to install it (report this to the fleet operator)"
    )]
    Disagreement { target: String, mismatch: Mismatch },
    #[error("release information of {target:?}: {source}")]
    Release {
        target: String,
        #[source]
        source: ReleaseError,
    },
}

/// How a director target differs from the image repository's entry for the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Length {
        director: u64,
        image: u64,
    },
    /// A hash algorithm's value differs, or one side lists an algorithm the other does not.
    Hash {
        algorithm: String,
        director: Option<String>,
        image: Option<String>,
    },
    /// The director repeats release information that differs from the image repository's.
    ReleaseInfo,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not listed)".into());
        match self {
            Mismatch::Length { director, image } => write!(
                f,
                "the director says {director} bytes, the image repository {image} bytes"
            ),
            Mismatch::Hash {
                algorithm,
                director,
                image,
            } => write!(
                f,
                "{algorithm} is {} in the director, {} in the image repository",
                or_none(director),
                or_none(image)
            ),
            Mismatch::ReleaseInfo => write!(
                f,
                "the release information (custom.rampart) differs from the image repository's"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server side: building the per-device metadata
// ---------------------------------------------------------------------------------------------

/// The `custom` object of a director target: the image repository's `custom` object (when it is
/// one) plus the device binding.
fn bound_custom(image_custom: Option<&Value>, device_id: &str) -> Value {
    let mut map = match image_custom {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    map.insert(
        DIRECTOR_CUSTOM_KEY.to_string(),
        serde_json::json!({ "device_id": device_id }),
    );
    Value::Object(map)
}

/// Builds the signed body of `device_id`'s director targets metadata: `version` (the device's
/// assignment version; never lower than a previous one), expiring at `expires_unix`, listing
/// each `(target path, image repository entry)` with its length and hashes copied and its
/// `custom` bound to the device.
pub fn build_targets(
    device_id: &str,
    version: u64,
    expires_unix: i64,
    assigned: &[(String, TargetFile)],
) -> DirectorTargets {
    let targets = assigned
        .iter()
        .map(|(path, image)| {
            (
                path.clone(),
                TargetFile {
                    length: image.length,
                    hashes: image.hashes.clone(),
                    custom: Some(bound_custom(image.custom.as_ref(), device_id)),
                },
            )
        })
        .collect();
    DirectorTargets {
        common: Common {
            type_: RoleType::Targets.as_str().to_string(),
            spec_version: SPEC_VERSION.to_string(),
            version,
            expires: format_expires(expires_unix),
        },
        targets,
        custom: DirectorCustom {
            rampart_director: DeviceBinding {
                device_id: device_id.to_string(),
            },
        },
        delegations: None,
    }
}

/// The bytes a signer signs: the canonical JSON of the body.
pub fn signing_bytes(body: &DirectorTargets) -> Vec<u8> {
    crate::cjson::to_canonical_bytes(body).expect("director metadata holds no floats")
}

/// The metadata file a device fetches: the body and its signatures.
pub fn envelope(body: &DirectorTargets, signatures: &[Signature]) -> Vec<u8> {
    envelope_bytes(body, signatures)
}

/// Checks that a director root suits a server holding the one online key `online_key_id`:
/// the root is well formed, signed by its own root threshold, and lists that key for the
/// `targets` role with a threshold of 1 (the server signs alone).
pub fn check_director_root(root_bytes: &[u8], online_key_id: &str) -> Result<Root, DirectorError> {
    let trust = TrustedSet::new(root_bytes, 0).map_err(DirectorError::Root)?;
    let root = trust.root().signed.clone();
    let targets = root.role(RoleType::Targets);
    if !targets.keyids.iter().any(|k| k == online_key_id) {
        return Err(DirectorError::Root(malformed_root(format!(
            "the targets role does not list the online key {online_key_id}; use the online key given to `rampart director init`"
        ))));
    }
    if targets.threshold != 1 {
        return Err(DirectorError::Root(malformed_root(format!(
            "the targets role has threshold {}, but the server signs with one online key; use threshold 1",
            targets.threshold
        ))));
    }
    Ok(root)
}

fn malformed_root(reason: String) -> TufError {
    TufError::Malformed {
        role: "director root".into(),
        reason,
    }
}

// ---------------------------------------------------------------------------------------------
// Device side: verifying director metadata
// ---------------------------------------------------------------------------------------------

/// A device's trust in the director: its pinned root, moved forward only by valid rotations.
#[derive(Debug, Clone)]
pub struct DirectorTrust {
    trusted: TrustedSet,
}

impl DirectorTrust {
    /// Starts from the pinned director root, which must be signed by its own root threshold.
    pub fn new(root_bytes: &[u8]) -> Result<Self, DirectorError> {
        // TrustedSet's clock is only used for later roles; expiry is checked per call here.
        let trusted = TrustedSet::new(root_bytes, 0).map_err(DirectorError::Root)?;
        Ok(DirectorTrust { trusted })
    }

    /// The trusted director root.
    pub fn root(&self) -> &Metadata<Root> {
        self.trusted.root()
    }

    /// Accepts director root version N+1: signed by the root threshold of root N and of
    /// itself (TUF root rotation). Returns the new version.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<u64, DirectorError> {
        self.trusted
            .update_root(bytes)
            .map(Metadata::version)
            .map_err(DirectorError::Root)
    }

    /// Verifies `device_id`'s director targets metadata at time `now_unix`, given the version
    /// the device last accepted (`None` before the first one).
    pub fn verify_targets(
        &self,
        bytes: &[u8],
        device_id: &str,
        accepted_version: Option<u64>,
        now_unix: i64,
    ) -> Result<Metadata<DirectorTargets>, DirectorError> {
        let root = self.trusted.root();
        if root.is_expired(now_unix) {
            return Err(DirectorError::RootExpired {
                version: root.version(),
                expires: root.signed.common.expires.clone(),
            });
        }
        let md = Metadata::<DirectorTargets>::from_bytes("director targets", bytes)
            .map_err(DirectorError::Metadata)?;
        let role = root.signed.role(RoleType::Targets);
        verify_threshold(
            "director targets",
            &md,
            &root.signed.keys,
            &role.keyids,
            role.threshold,
        )
        .map_err(DirectorError::Metadata)?;
        if md.is_expired(now_unix) {
            return Err(DirectorError::Expired {
                expires: md.signed.common.expires.clone(),
            });
        }
        if let Some(accepted) = accepted_version
            && md.version() < accepted
        {
            return Err(DirectorError::Rollback {
                accepted,
                offered: md.version(),
            });
        }
        let wrong = |found: &str| DirectorError::WrongDevice {
            expected: device_id.to_string(),
            found: found.to_string(),
        };
        if md.signed.device_id() != device_id {
            return Err(wrong(md.signed.device_id()));
        }
        for (path, target) in &md.signed.targets {
            let bound = target
                .custom
                .as_ref()
                .and_then(|c| c.get(DIRECTOR_CUSTOM_KEY))
                .and_then(|b| b.get("device_id"))
                .and_then(Value::as_str)
                .ok_or_else(|| DirectorError::Unbound {
                    target: path.clone(),
                })?;
            if bound != device_id {
                return Err(wrong(bound));
            }
        }
        Ok(md)
    }
}

/// The lower-case form of a hash map, for comparison.
fn lower(hashes: &IndexMap<String, String>) -> BTreeMap<&str, String> {
    hashes
        .iter()
        .map(|(a, h)| (a.as_str(), h.to_ascii_lowercase()))
        .collect()
}

/// Full verification of one director target against the image repository's verified entry
/// for the same path (`None`: the image repository does not list it). The length and the
/// hashes must be identical; release information the director repeats must equal the image
/// repository's; and when `device_hardware_id` is given and the image entry carries release
/// information, the release must be built for that hardware.
pub fn check_target_agreement(
    path: &str,
    director: &TargetFile,
    image: Option<&TargetFile>,
    device_hardware_id: Option<&str>,
) -> Result<(), DirectorError> {
    let image = image.ok_or_else(|| DirectorError::NotInImageRepo {
        target: path.to_string(),
    })?;
    let disagree = |mismatch| DirectorError::Disagreement {
        target: path.to_string(),
        mismatch,
    };
    if director.length != image.length {
        return Err(disagree(Mismatch::Length {
            director: director.length,
            image: image.length,
        }));
    }
    let (d, i) = (lower(&director.hashes), lower(&image.hashes));
    for algorithm in d.keys().chain(i.keys()) {
        let (dh, ih) = (d.get(algorithm), i.get(algorithm));
        if dh != ih {
            return Err(disagree(Mismatch::Hash {
                algorithm: (*algorithm).to_string(),
                director: dh.cloned(),
                image: ih.cloned(),
            }));
        }
    }
    let image_release = image.custom.as_ref().and_then(|c| c.get("rampart"));
    let director_release = director.custom.as_ref().and_then(|c| c.get("rampart"));
    if director_release.is_some() && director_release != image_release {
        return Err(disagree(Mismatch::ReleaseInfo));
    }
    if let (Some(hardware), Some(_)) = (device_hardware_id, image_release) {
        let release_error = |source| DirectorError::Release {
            target: path.to_string(),
            source,
        };
        let info = ReleaseInfo::from_custom(image.custom.as_ref()).map_err(release_error)?;
        // The security version is the caller's (installed state); only the hardware here.
        info.check_installable(hardware, 0).map_err(release_error)?;
    }
    Ok(())
}

/// Full verification of every director target (see [`check_target_agreement`]), given the
/// image repository's verified entries for those paths.
pub fn check_agreement(
    director: &DirectorTargets,
    image: &BTreeMap<String, TargetFile>,
    device_hardware_id: Option<&str>,
) -> Result<(), DirectorError> {
    for (path, target) in &director.targets {
        check_target_agreement(path, target, image.get(path), device_hardware_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;
    use crate::metadata::RoleKeys;

    const NOW: i64 = 1_750_000_000;
    const DAY: i64 = 86_400;

    /// An Ed25519 test key: its TUF key and a signing function.
    struct TestKey {
        pair: ring::signature::Ed25519KeyPair,
        key: Key,
    }

    impl TestKey {
        fn new(seed: u8) -> TestKey {
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
            use ring::signature::KeyPair as _;
            let key =
                Key::from_public_bytes(crate::keys::Scheme::Ed25519, pair.public_key().as_ref())
                    .unwrap();
            TestKey { pair, key }
        }
        fn id(&self) -> String {
            self.key.key_id()
        }
        fn sign(&self, canonical: &[u8]) -> Signature {
            Signature {
                keyid: self.id(),
                sig: hex::encode(self.pair.sign(canonical).as_ref()),
            }
        }
    }

    fn root(version: u64, root_keys: &[&TestKey], online: &TestKey, expires: i64) -> Root {
        let mut keys = BTreeMap::new();
        for k in root_keys.iter().chain([&online]) {
            keys.insert(k.id(), k.key.clone());
        }
        let role = |ids: Vec<String>| RoleKeys {
            keyids: ids,
            threshold: 1,
        };
        let root_ids: Vec<String> = root_keys.iter().map(|k| k.id()).collect();
        let mut roles = BTreeMap::new();
        roles.insert("root".to_string(), role(root_ids));
        for r in ["targets", "snapshot", "timestamp"] {
            roles.insert(r.to_string(), role(vec![online.id()]));
        }
        Root {
            common: Common {
                type_: "root".into(),
                spec_version: SPEC_VERSION.into(),
                version,
                expires: format_expires(expires),
            },
            consistent_snapshot: None,
            keys,
            roles,
        }
    }

    fn signed<T: Serialize>(body: &T, signers: &[&TestKey]) -> Vec<u8> {
        let canonical = crate::cjson::to_canonical_bytes(body).unwrap();
        let sigs: Vec<Signature> = signers.iter().map(|k| k.sign(&canonical)).collect();
        envelope_bytes(body, &sigs)
    }

    fn image_target(data: &[u8], hw: &str) -> TargetFile {
        let info = ReleaseInfo {
            hardware_ids: vec![hw.into()],
            version: "1.0.0".into(),
            security_version: 1,
            sbom: None,
            provenance: None,
            tlog_proof: None,
        };
        TargetFile {
            length: data.len() as u64,
            hashes: IndexMap::from([(
                "sha256".to_string(),
                hex::encode(crate::verify::digest("sha256", data).unwrap()),
            )]),
            custom: Some(info.to_custom()),
        }
    }

    struct Setup {
        root_key: TestKey,
        online: TestKey,
        trust: DirectorTrust,
    }

    fn setup() -> Setup {
        let root_key = TestKey::new(1);
        let online = TestKey::new(2);
        let bytes = signed(
            &root(1, &[&root_key], &online, NOW + 365 * DAY),
            &[&root_key],
        );
        let trust = DirectorTrust::new(&bytes).unwrap();
        Setup {
            root_key,
            online,
            trust,
        }
    }

    fn director_bytes(
        signer: &TestKey,
        device: &str,
        version: u64,
        expires: i64,
        assigned: &[(String, TargetFile)],
    ) -> Vec<u8> {
        let body = build_targets(device, version, expires, assigned);
        let sig = signer.sign(&signing_bytes(&body));
        envelope(&body, &[sig])
    }

    fn assigned() -> Vec<(String, TargetFile)> {
        vec![(
            "1.0.0/fw.img".to_string(),
            image_target(b"firmware", "board-a"),
        )]
    }

    #[test]
    fn accepts_metadata_signed_by_the_online_key_for_this_device() {
        let s = setup();
        let bytes = director_bytes(&s.online, "dev-1", 3, NOW + DAY, &assigned());
        let md = s
            .trust
            .verify_targets(&bytes, "dev-1", Some(2), NOW)
            .unwrap();
        assert_eq!(md.version(), 3);
        let image: BTreeMap<_, _> = assigned().into_iter().collect();
        check_agreement(&md.signed, &image, Some("board-a")).unwrap();
        // The same version again (a re-signed copy) is fine.
        s.trust
            .verify_targets(&bytes, "dev-1", Some(3), NOW)
            .unwrap();
    }

    #[test]
    fn refuses_metadata_signed_by_another_key() {
        let s = setup();
        let bytes = director_bytes(&s.root_key, "dev-1", 1, NOW + DAY, &assigned());
        assert!(matches!(
            s.trust.verify_targets(&bytes, "dev-1", None, NOW),
            Err(DirectorError::Metadata(TufError::ThresholdNotMet { .. }))
        ));
    }

    #[test]
    fn refuses_metadata_for_another_device() {
        let s = setup();
        let bytes = director_bytes(&s.online, "dev-2", 1, NOW + DAY, &assigned());
        let err = s
            .trust
            .verify_targets(&bytes, "dev-1", None, NOW)
            .unwrap_err();
        assert_eq!(
            err,
            DirectorError::WrongDevice {
                expected: "dev-1".into(),
                found: "dev-2".into()
            }
        );
        // A target bound to another device inside metadata bound to this one.
        let mut body = build_targets("dev-1", 1, NOW + DAY, &assigned());
        let t = body.targets.get_mut("1.0.0/fw.img").unwrap();
        t.custom = Some(bound_custom(None, "dev-2"));
        let sig = s.online.sign(&signing_bytes(&body));
        let bytes = envelope(&body, &[sig]);
        assert!(matches!(
            s.trust.verify_targets(&bytes, "dev-1", None, NOW),
            Err(DirectorError::WrongDevice { .. })
        ));
        // A target with no binding at all.
        let mut body = build_targets("dev-1", 1, NOW + DAY, &assigned());
        body.targets.get_mut("1.0.0/fw.img").unwrap().custom = None;
        let sig = s.online.sign(&signing_bytes(&body));
        assert!(matches!(
            s.trust
                .verify_targets(&envelope(&body, &[sig]), "dev-1", None, NOW),
            Err(DirectorError::Unbound { .. })
        ));
    }

    #[test]
    fn refuses_a_version_below_the_accepted_one() {
        let s = setup();
        let bytes = director_bytes(&s.online, "dev-1", 4, NOW + DAY, &assigned());
        assert_eq!(
            s.trust
                .verify_targets(&bytes, "dev-1", Some(5), NOW)
                .unwrap_err(),
            DirectorError::Rollback {
                accepted: 5,
                offered: 4
            }
        );
    }

    #[test]
    fn refuses_expired_metadata_and_an_expired_root() {
        let s = setup();
        let bytes = director_bytes(&s.online, "dev-1", 1, NOW - 1, &assigned());
        assert!(matches!(
            s.trust.verify_targets(&bytes, "dev-1", None, NOW),
            Err(DirectorError::Expired { .. })
        ));
        let bytes = director_bytes(&s.online, "dev-1", 1, NOW + 400 * DAY, &assigned());
        assert!(matches!(
            s.trust
                .verify_targets(&bytes, "dev-1", None, NOW + 366 * DAY),
            Err(DirectorError::RootExpired { version: 1, .. })
        ));
    }

    #[test]
    fn refuses_delegating_director_metadata() {
        let s = setup();
        let mut body =
            serde_json::to_value(build_targets("dev-1", 1, NOW + DAY, &assigned())).unwrap();
        body["delegations"] = serde_json::json!({"keys": {}, "roles": []});
        let canonical = crate::cjson::value_to_canonical_bytes(&body).unwrap();
        let bytes = envelope_bytes(&body, &[s.online.sign(&canonical)]);
        let err = s
            .trust
            .verify_targets(&bytes, "dev-1", None, NOW)
            .unwrap_err();
        assert!(
            matches!(&err, DirectorError::Metadata(TufError::Malformed { reason, .. }) if reason.contains("may not delegate")),
            "{err}"
        );
    }

    #[test]
    fn agreement_refuses_a_target_the_image_repository_lacks_or_describes_differently() {
        let director = build_targets("dev-1", 1, NOW + DAY, &assigned());
        let empty = BTreeMap::new();
        assert_eq!(
            check_agreement(&director, &empty, None).unwrap_err(),
            DirectorError::NotInImageRepo {
                target: "1.0.0/fw.img".into()
            }
        );

        let other = image_target(b"other firmware", "board-a");
        let image = BTreeMap::from([("1.0.0/fw.img".to_string(), other.clone())]);
        assert!(matches!(
            check_agreement(&director, &image, None),
            Err(DirectorError::Disagreement {
                mismatch: Mismatch::Length { .. },
                ..
            })
        ));

        let mut same_length = image_target(b"FIRMWARE", "board-a");
        let image = BTreeMap::from([("1.0.0/fw.img".to_string(), same_length.clone())]);
        let err = check_agreement(&director, &image, None).unwrap_err();
        assert!(
            matches!(&err, DirectorError::Disagreement { mismatch: Mismatch::Hash { algorithm, .. }, .. } if algorithm == "sha256"),
            "{err}"
        );
        assert!(err.to_string().contains("1.0.0/fw.img"), "{err}");

        // An extra algorithm on one side is a disagreement too.
        let mut right = image_target(b"firmware", "board-a");
        right.hashes.insert(
            "sha512".into(),
            hex::encode(crate::verify::digest("sha512", b"firmware").unwrap()),
        );
        let image = BTreeMap::from([("1.0.0/fw.img".to_string(), right)]);
        assert!(matches!(
            check_agreement(&director, &image, None),
            Err(DirectorError::Disagreement {
                mismatch: Mismatch::Hash { .. },
                ..
            })
        ));

        // Release information the director repeats must be the image repository's.
        same_length = image_target(b"firmware", "board-b");
        let image = BTreeMap::from([("1.0.0/fw.img".to_string(), same_length)]);
        assert!(matches!(
            check_agreement(&director, &image, None),
            Err(DirectorError::Disagreement {
                mismatch: Mismatch::ReleaseInfo,
                ..
            })
        ));
    }

    #[test]
    fn agreement_checks_the_hardware_of_the_image_repositorys_release() {
        let director = build_targets("dev-1", 1, NOW + DAY, &assigned());
        let image: BTreeMap<_, _> = assigned().into_iter().collect();
        assert!(matches!(
            check_agreement(&director, &image, Some("board-b")),
            Err(DirectorError::Release {
                source: ReleaseError::WrongHardware { .. },
                ..
            })
        ));
    }

    #[test]
    fn root_rotation_needs_both_thresholds() {
        let mut s = setup();
        let new_root_key = TestKey::new(3);
        let new_online = TestKey::new(4);
        let v2 = root(2, &[&new_root_key], &new_online, NOW + 365 * DAY);
        // Signed by the new key only: refused.
        let only_new = signed(&v2, &[&new_root_key]);
        assert!(matches!(
            s.trust.clone().update_root(&only_new),
            Err(DirectorError::Root(TufError::ThresholdNotMet { .. }))
        ));
        // Signed by the old key only: refused.
        let only_old = signed(&v2, &[&s.root_key]);
        assert!(matches!(
            s.trust.clone().update_root(&only_old),
            Err(DirectorError::Root(TufError::ThresholdNotMet { .. }))
        ));
        // Skipping a version: refused.
        let v3 = root(3, &[&new_root_key], &new_online, NOW + 365 * DAY);
        assert!(matches!(
            s.trust
                .clone()
                .update_root(&signed(&v3, &[&s.root_key, &new_root_key])),
            Err(DirectorError::Root(TufError::BadVersion { .. }))
        ));
        assert_eq!(
            s.trust
                .update_root(&signed(&v2, &[&s.root_key, &new_root_key]))
                .unwrap(),
            2
        );
        // The new online key now signs; the old one no longer does.
        let bytes = director_bytes(&new_online, "dev-1", 1, NOW + DAY, &assigned());
        s.trust.verify_targets(&bytes, "dev-1", None, NOW).unwrap();
        let bytes = director_bytes(&s.online, "dev-1", 1, NOW + DAY, &assigned());
        assert!(matches!(
            s.trust.verify_targets(&bytes, "dev-1", None, NOW),
            Err(DirectorError::Metadata(TufError::ThresholdNotMet { .. }))
        ));
    }

    #[test]
    fn server_side_root_check_wants_the_online_key_alone_on_targets() {
        let s = setup();
        let bytes = signed(
            &root(1, &[&s.root_key], &s.online, NOW + DAY),
            &[&s.root_key],
        );
        check_director_root(&bytes, &s.online.id()).unwrap();
        assert!(matches!(
            check_director_root(&bytes, &s.root_key.id()),
            Err(DirectorError::Root(TufError::Malformed { .. }))
        ));
    }
}
