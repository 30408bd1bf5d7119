//! Bad input to the trust core: malformed, oversized or wrongly typed metadata; signatures by
//! unknown keys; one key counted twice toward a threshold; expired metadata; version rollback;
//! root versions that skip; a snapshot that disagrees with targets; unsafe target paths; a target
//! whose length or hash differs.
//!
//! Each case must give a specific, typed `TufError` (asserted with `matches!`, never merely
//! `is_err()`), must not panic, and must leave the `TrustedSet` holding what it trusted before:
//! the in-memory equivalent of "nothing untrusted is written to the trusted metadata store",
//! since callers persist only what the set accepted.
//!
//! Metadata is built here from the `rampart_core::metadata` types and signed with Ed25519 keys
//! derived from fixed seeds, so every test is deterministic.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use rampart_core::cjson::to_canonical_bytes;
use rampart_core::delegation::validate_target_path;
use rampart_core::keys::KeyVal;
use rampart_core::metadata::{
    Common, DelegatedRole, Delegations, MetaFile, RoleKeys, Root, Signature, Snapshot, TargetFile,
    Targets, Timestamp, envelope_bytes, format_expires,
};
use rampart_core::verify::check_length_and_hashes;
use rampart_core::{Key, KeyError, Scheme, TrustedSet, TufError};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde_json::{Value, json};

const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;
const TARGET_PATH: &str = "fw/board-a.img";
const TARGET_DATA: &[u8] = b"firmware image";

// ---------------------------------------------------------------------------------------------
// Keys and signing
// ---------------------------------------------------------------------------------------------

/// An Ed25519 key pair from a fixed seed, with its TUF key and key id.
struct Signer {
    pair: Ed25519KeyPair,
    key: Key,
    id: String,
}

impl Signer {
    fn from_seed(seed: u8) -> Signer {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("32-byte seed");
        let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref())
            .expect("ed25519 public key");
        let id = key.key_id();
        Signer { pair, key, id }
    }

    fn sig_over(&self, message: &[u8]) -> Signature {
        Signature {
            keyid: self.id.clone(),
            sig: hex::encode(self.pair.sign(message).as_ref()),
        }
    }
}

/// Signs the canonical form of `signed` with each signer and wraps it in an envelope.
fn sign<T: Serialize>(signed: &T, signers: &[&Signer]) -> Vec<u8> {
    let canonical = to_canonical_bytes(signed).expect("no floats");
    let sigs: Vec<Signature> = signers.iter().map(|s| s.sig_over(&canonical)).collect();
    envelope_bytes(signed, &sigs)
}

/// An envelope written with plain `serde_json` (not canonical, may hold floats), for bodies that
/// cannot be signed canonically; the signatures are whatever the caller passes.
fn raw_envelope(signed: &Value, sigs: &[Signature]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "signed": signed, "signatures": sigs })).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn hashes(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
    pairs
        .iter()
        .map(|(a, h)| (a.to_string(), h.to_string()))
        .collect()
}

fn common(type_: &str, version: u64, expires: i64) -> Common {
    Common {
        type_: type_.into(),
        spec_version: "1.0.31".into(),
        version,
        expires: format_expires(expires),
    }
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A consistent four-role repository
// ---------------------------------------------------------------------------------------------

const ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// Keys and thresholds of the four top-level roles. Role `i`'s key `j` has seed `10 * (i + 1) + j`.
struct Repo {
    keys: BTreeMap<&'static str, Vec<Signer>>,
    thresholds: BTreeMap<&'static str, u32>,
}

impl Repo {
    /// One key per role, every threshold 1.
    fn new() -> Repo {
        Repo::with(1, [1, 1, 1, 1])
    }

    /// `keys_per_role` keys for each role; thresholds in the order root, timestamp, snapshot,
    /// targets.
    fn with(keys_per_role: u8, thresholds: [u32; 4]) -> Repo {
        let mut keys = BTreeMap::new();
        let mut ths = BTreeMap::new();
        for (i, role) in ROLES.into_iter().enumerate() {
            let base = 10 * (i as u8 + 1);
            keys.insert(
                role,
                (0..keys_per_role)
                    .map(|j| Signer::from_seed(base + j))
                    .collect(),
            );
            ths.insert(role, thresholds[i]);
        }
        Repo {
            keys,
            thresholds: ths,
        }
    }

    /// All keys of `role`.
    fn signers(&self, role: &str) -> Vec<&Signer> {
        self.keys[role].iter().collect()
    }

    fn root_md(&self, version: u64) -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for role in ROLES {
            for s in &self.keys[role] {
                keys.insert(s.id.clone(), s.key.clone());
            }
            roles.insert(
                role.to_string(),
                RoleKeys {
                    keyids: self.keys[role].iter().map(|s| s.id.clone()).collect(),
                    threshold: self.thresholds[role],
                },
            );
        }
        Root {
            common: common("root", version, NOW + 365 * DAY),
            consistent_snapshot: Some(true),
            keys,
            roles,
        }
    }

    /// A timestamp listing snapshot `snapshot_version` without length or hashes.
    fn timestamp_md(&self, version: u64, snapshot_version: u64) -> Timestamp {
        Timestamp {
            common: common("timestamp", version, NOW + DAY),
            meta: BTreeMap::from([(
                "snapshot.json".to_string(),
                MetaFile {
                    version: snapshot_version,
                    length: None,
                    hashes: None,
                },
            )]),
        }
    }

    /// A timestamp listing exactly the given snapshot bytes (length and sha256).
    fn timestamp_for(&self, version: u64, snapshot_version: u64, snapshot: &[u8]) -> Timestamp {
        let mut t = self.timestamp_md(version, snapshot_version);
        let m = t.meta.get_mut("snapshot.json").unwrap();
        m.length = Some(snapshot.len() as u64);
        m.hashes = Some(hashes(&[("sha256", &sha256_hex(snapshot))]));
        t
    }

    /// A snapshot listing `targets.json` at `targets_version` without length or hashes.
    fn snapshot_md(&self, version: u64, targets_version: u64) -> Snapshot {
        Snapshot {
            common: common("snapshot", version, NOW + 7 * DAY),
            meta: BTreeMap::from([(
                "targets.json".to_string(),
                MetaFile {
                    version: targets_version,
                    length: None,
                    hashes: None,
                },
            )]),
        }
    }

    /// Targets listing one firmware image.
    fn targets_md(&self, version: u64) -> Targets {
        Targets {
            common: common("targets", version, NOW + 30 * DAY),
            targets: BTreeMap::from([(
                TARGET_PATH.to_string(),
                TargetFile {
                    length: TARGET_DATA.len() as u64,
                    hashes: hashes(&[("sha256", &sha256_hex(TARGET_DATA))]),
                    custom: None,
                },
            )]),
            delegations: None,
        }
    }

    fn sign_as<T: Serialize>(&self, role: &str, body: &T) -> Vec<u8> {
        sign(body, &self.signers(role))
    }

    fn root_bytes(&self, version: u64) -> Vec<u8> {
        self.sign_as("root", &self.root_md(version))
    }
    fn timestamp_bytes(&self, version: u64, snapshot_version: u64) -> Vec<u8> {
        self.sign_as("timestamp", &self.timestamp_md(version, snapshot_version))
    }
    fn snapshot_bytes(&self, version: u64, targets_version: u64) -> Vec<u8> {
        self.sign_as("snapshot", &self.snapshot_md(version, targets_version))
    }
    fn targets_bytes(&self, version: u64) -> Vec<u8> {
        self.sign_as("targets", &self.targets_md(version))
    }

    /// A trusted set holding root v1 only.
    fn trusted(&self) -> TrustedSet {
        TrustedSet::new(&self.root_bytes(1), NOW).expect("root v1 is trusted")
    }

    /// A trusted set holding root v1 and timestamp v1 (listing snapshot v1).
    fn with_timestamp(&self) -> TrustedSet {
        let mut ts = self.trusted();
        ts.update_timestamp(&self.timestamp_bytes(1, 1))
            .expect("timestamp v1");
        ts
    }

    /// A trusted set holding root, timestamp and snapshot v1 (listing targets v1).
    fn with_snapshot(&self) -> TrustedSet {
        let mut ts = self.with_timestamp();
        ts.update_snapshot(&self.snapshot_bytes(1, 1), false)
            .expect("snapshot v1");
        ts
    }
}

/// The version of the trusted timestamp, if any.
fn ts_version(ts: &TrustedSet) -> Option<u64> {
    ts.timestamp().map(|m| m.version())
}

/// Feeds `bytes` as a new timestamp to a set that trusts timestamp v1, and checks that the
/// refused timestamp left timestamp v1 in place.
fn refuse_timestamp(repo: &Repo, bytes: &[u8]) -> TufError {
    let mut ts = repo.with_timestamp();
    let err = ts
        .update_timestamp(bytes)
        .expect_err("bad timestamp must be refused");
    assert_eq!(ts_version(&ts), Some(1), "trusted timestamp changed: {err}");
    err
}

/// Feeds `bytes` as targets to a set that trusts snapshot v1, and checks nothing was trusted.
fn refuse_targets(repo: &Repo, bytes: &[u8]) -> TufError {
    let mut ts = repo.with_snapshot();
    let err = ts
        .update_targets(bytes, false)
        .expect_err("bad targets must be refused");
    assert!(ts.targets("targets").is_none(), "targets trusted: {err}");
    err
}

/// Signs a JSON value as `role` would (canonical form), in a sorted envelope.
fn sign_value(repo: &Repo, role: &str, v: &Value) -> Vec<u8> {
    repo.sign_as(role, v)
}

// ---------------------------------------------------------------------------------------------
// Positive control
// ---------------------------------------------------------------------------------------------

#[test]
fn control_a_consistent_repository_is_accepted() {
    let repo = Repo::new();
    let mut ts = repo.with_snapshot();
    ts.update_targets(&repo.targets_bytes(1), false).unwrap();
    assert_eq!(ts.root().version(), 1);
    assert_eq!(ts_version(&ts), Some(1));
    assert_eq!(ts.snapshot().unwrap().version(), 1);
    assert_eq!(ts.targets("targets").unwrap().version(), 1);
}

// ---------------------------------------------------------------------------------------------
// Malformed and wrongly typed metadata
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_json_is_malformed() {
    let repo = Repo::new();
    let good = repo.timestamp_bytes(2, 1);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"{}");
    for bytes in [
        b"".to_vec(),
        b"not json".to_vec(),
        b"{\"signed\": ".to_vec(),
        good[..good.len() / 2].to_vec(),
        trailing,
        b"[]".to_vec(),
        b"{\"signed\":{}}".to_vec(),
        vec![0xff, 0xfe, 0x00],
    ] {
        let err = refuse_timestamp(&repo, &bytes);
        assert!(
            matches!(&err, TufError::Malformed { role, .. } if role == "timestamp"),
            "{:?}: {err:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn version_as_string_is_malformed() {
    let repo = Repo::new();
    let mut v = to_value(&repo.timestamp_md(2, 1));
    v["version"] = json!("2");
    let err = refuse_timestamp(&repo, &sign_value(&repo, "timestamp", &v));
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn missing_expires_is_malformed() {
    let repo = Repo::new();
    let mut v = to_value(&repo.timestamp_md(2, 1));
    v.as_object_mut().unwrap().remove("expires");
    let err = refuse_timestamp(&repo, &sign_value(&repo, "timestamp", &v));
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn expires_in_a_bad_format_is_malformed() {
    let repo = Repo::new();
    for expires in [
        "2030-01-01",
        "2030-01-01T00:00:00+00:00",
        "2030-01-01 00:00:00Z",
        "2030-13-01T00:00:00Z",
        "tomorrow",
        "",
    ] {
        let mut v = to_value(&repo.timestamp_md(2, 1));
        v["expires"] = json!(expires);
        let err = refuse_timestamp(&repo, &sign_value(&repo, "timestamp", &v));
        assert!(
            matches!(err, TufError::Malformed { .. }),
            "{expires}: {err:?}"
        );
    }
    // A number where a string belongs.
    let mut v = to_value(&repo.timestamp_md(2, 1));
    v["expires"] = json!(1_900_000_000);
    let err = refuse_timestamp(&repo, &sign_value(&repo, "timestamp", &v));
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn unsupported_spec_version_is_refused() {
    let repo = Repo::new();
    for spec in ["2.0", "2.0.0", "1", "1.x", "0.9.0", ""] {
        let mut t = repo.timestamp_md(2, 1);
        t.common.spec_version = spec.into();
        let err = refuse_timestamp(&repo, &repo.sign_as("timestamp", &t));
        assert!(
            matches!(&err, TufError::UnsupportedSpecVersion { found, .. } if found == spec),
            "{spec}: {err:?}"
        );
    }
}

#[test]
fn another_roles_metadata_is_wrong_type() {
    let repo = Repo::new();
    // A validly signed snapshot offered as the timestamp.
    let err = refuse_timestamp(&repo, &repo.snapshot_bytes(2, 1));
    assert!(
        matches!(&err, TufError::WrongType { expected, found } if expected == "timestamp" && found == "snapshot"),
        "{err:?}"
    );
    // A timestamp body whose `_type` says targets, otherwise a well-formed timestamp.
    let mut t = repo.timestamp_md(2, 1);
    t.common.type_ = "targets".into();
    let err = refuse_timestamp(&repo, &repo.sign_as("timestamp", &t));
    assert!(
        matches!(&err, TufError::WrongType { expected, found } if expected == "timestamp" && found == "targets"),
        "{err:?}"
    );
    // A root offered as the new root must say root.
    let mut ts = repo.trusted();
    let err = ts.update_root(&repo.timestamp_bytes(2, 1)).unwrap_err();
    assert!(
        matches!(&err, TufError::WrongType { expected, found } if expected == "root" && found == "timestamp"),
        "{err:?}"
    );
    assert_eq!(ts.root().version(), 1);
}

#[test]
fn signed_that_is_not_an_object_is_malformed() {
    // `signed` parses as any JSON value; a string, array or number is not another role's
    // metadata and must be reported as malformed, not as "wrong _type".
    let repo = Repo::new();
    for signed in [json!("timestamp"), json!([1, 2]), json!(7), json!(null)] {
        let err = refuse_timestamp(&repo, &raw_envelope(&signed, &[]));
        assert!(
            matches!(&err, TufError::Malformed { role, .. } if role == "timestamp"),
            "signed = {signed}: {err:?}"
        );
    }
}

#[test]
fn duplicate_signature_key_ids_are_malformed() {
    let repo = Repo::new();
    let t = repo.timestamp_md(2, 1);
    let canonical = to_canonical_bytes(&t).unwrap();
    let s = &repo.keys["timestamp"][0];
    let sig = s.sig_over(&canonical);
    let err = refuse_timestamp(&repo, &envelope_bytes(&t, &[sig.clone(), sig]));
    assert!(
        matches!(&err, TufError::Malformed { reason, .. } if reason.contains("two signatures")),
        "{err:?}"
    );
}

#[test]
fn role_listing_the_same_keyid_twice_is_malformed() {
    let repo = Repo::new();
    let mut root = repo.root_md(2);
    let id = repo.keys["timestamp"][0].id.clone();
    root.roles.get_mut("timestamp").unwrap().keyids = vec![id.clone(), id];
    root.roles.get_mut("timestamp").unwrap().threshold = 2;
    let mut ts = repo.trusted();
    let err = ts.update_root(&repo.sign_as("root", &root)).unwrap_err();
    assert!(
        matches!(&err, TufError::Malformed { role, reason } if role == "root" && reason.contains("twice")),
        "{err:?}"
    );
    assert_eq!(ts.root().version(), 1);
    // The same as the initial root is refused too.
    let mut root1 = repo.root_md(1);
    root1.roles = root.roles.clone();
    let err = TrustedSet::new(&repo.sign_as("root", &root1), NOW).unwrap_err();
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn zero_threshold_is_malformed() {
    let repo = Repo::new();
    let mut root = repo.root_md(2);
    root.roles.get_mut("snapshot").unwrap().threshold = 0;
    let mut ts = repo.trusted();
    let err = ts.update_root(&repo.sign_as("root", &root)).unwrap_err();
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
    assert_eq!(ts.root().version(), 1);
}

#[test]
fn root_lacking_or_adding_a_role_is_malformed() {
    let repo = Repo::new();
    let mut ts = repo.trusted();
    let mut lacking = repo.root_md(2);
    lacking.roles.remove("snapshot");
    let err = ts.update_root(&repo.sign_as("root", &lacking)).unwrap_err();
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
    let mut extra = repo.root_md(2);
    extra.roles.insert(
        "mirrors".into(),
        RoleKeys {
            keyids: vec![repo.keys["root"][0].id.clone()],
            threshold: 1,
        },
    );
    let err = ts.update_root(&repo.sign_as("root", &extra)).unwrap_err();
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
    assert_eq!(ts.root().version(), 1);
}

fn delegating_targets(repo: &Repo, role: DelegatedRole) -> Targets {
    let s = &repo.keys["targets"][0];
    let mut t = repo.targets_md(1);
    t.delegations = Some(Delegations {
        keys: BTreeMap::from([(s.id.clone(), s.key.clone())]),
        roles: Some(vec![role]),
        succinct_roles: None,
    });
    t
}

fn delegated_role(name: &str, keyid: &str) -> DelegatedRole {
    DelegatedRole {
        name: name.into(),
        keyids: vec![keyid.into()],
        threshold: 1,
        terminating: false,
        paths: Some(vec!["fw/*".into()]),
        path_hash_prefixes: None,
    }
}

#[test]
fn delegated_role_with_paths_and_path_hash_prefixes_is_malformed() {
    let repo = Repo::new();
    let id = repo.keys["targets"][0].id.clone();
    let mut role = delegated_role("board-a", &id);
    role.path_hash_prefixes = Some(vec!["ab".into()]);
    let t = delegating_targets(&repo, role);
    let err = refuse_targets(&repo, &repo.sign_as("targets", &t));
    assert!(
        matches!(&err, TufError::Malformed { role, reason } if role == "targets" && reason.contains("path_hash_prefixes")),
        "{err:?}"
    );
    // Neither is malformed too.
    let mut role = delegated_role("board-a", &id);
    role.paths = None;
    let t = delegating_targets(&repo, role);
    let err = refuse_targets(&repo, &repo.sign_as("targets", &t));
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn delegated_role_listing_a_keyid_twice_or_named_like_a_top_level_role_is_malformed() {
    let repo = Repo::new();
    let id = repo.keys["targets"][0].id.clone();
    let mut role = delegated_role("board-a", &id);
    role.keyids = vec![id.clone(), id.clone()];
    let t = delegating_targets(&repo, role);
    let err = refuse_targets(&repo, &repo.sign_as("targets", &t));
    assert!(
        matches!(&err, TufError::Malformed { reason, .. } if reason.contains("twice")),
        "{err:?}"
    );
    let t = delegating_targets(&repo, delegated_role("snapshot", &id));
    let err = refuse_targets(&repo, &repo.sign_as("targets", &t));
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn target_without_hashes_is_malformed() {
    let repo = Repo::new();
    let mut t = repo.targets_md(1);
    t.targets.get_mut(TARGET_PATH).unwrap().hashes.clear();
    let err = refuse_targets(&repo, &repo.sign_as("targets", &t));
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn floats_in_the_signed_body_are_refused() {
    let repo = Repo::new();
    let t = repo.targets_md(1);
    let s = &repo.keys["targets"][0];
    // A float in free-form `custom` data, in an unknown field, and as the version itself.
    let mut in_custom = to_value(&t);
    in_custom["targets"][TARGET_PATH]["custom"] = json!({ "rate": 1.5 });
    let mut in_unknown = to_value(&t);
    in_unknown["x-extra"] = json!(0.25);
    let mut as_version = to_value(&t);
    as_version["version"] = json!(1.0);
    let mut exponent = to_value(&t);
    exponent["targets"][TARGET_PATH]["custom"] = json!({ "n": 1e3 });
    for v in [in_custom, in_unknown, as_version, exponent] {
        // Signed over the serde_json text: there is no canonical form to sign.
        let text = serde_json::to_vec(&v).unwrap();
        let bytes = raw_envelope(&v, &[s.sig_over(&text)]);
        let err = refuse_targets(&repo, &bytes);
        assert!(
            matches!(&err, TufError::Malformed { role, .. } if role == "targets"),
            "{v}: {err:?}"
        );
    }
}

/// `depth` nested arrays.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let repo = Repo::new();
    // 10,000 nested arrays inside a target's `custom` field.
    let mut t = repo.targets_md(1);
    t.targets.get_mut(TARGET_PATH).unwrap().custom = Some(json!("NEST"));
    let text = String::from_utf8(repo.sign_as("targets", &t)).unwrap();
    assert!(text.contains("\"NEST\""));
    let deep = text.replace("\"NEST\"", &nested(10_000));
    let err = refuse_targets(&repo, deep.as_bytes());
    assert!(
        matches!(&err, TufError::Malformed { role, .. } if role == "targets"),
        "{err:?}"
    );
    // ... and in an unknown field of the envelope, outside `signed`: serde_json skips it without
    // recursing, and since no signature covers it, it may be ignored (as python-tuf keeps unknown
    // envelope fields) or refused, but must not overflow the stack or change what is trusted.
    let good = String::from_utf8(repo.targets_bytes(1)).unwrap();
    let deep = format!("{{\"x\":{},{}", nested(10_000), &good[1..]);
    let mut ts = repo.with_snapshot();
    match ts.update_targets(deep.as_bytes(), true) {
        Ok(md) => assert_eq!(md.signed, repo.targets_md(1)),
        Err(err) => {
            assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
            assert!(ts.targets("targets").is_none());
        }
    }
}

#[test]
fn oversized_numbers_are_malformed() {
    let repo = Repo::new();
    let t = repo.timestamp_md(2, 1);
    let good = String::from_utf8(repo.sign_as("timestamp", &t)).unwrap();
    // Versions and lengths that overflow u64.
    for (from, to) in [
        ("\"version\":2", "\"version\":18446744073709551616"),
        ("\"version\":1}", "\"version\":99999999999999999999999999}"),
        ("\"version\":2", "\"version\":-2"),
    ] {
        assert!(good.contains(from), "{from} not in {good}");
        let bad = good.replacen(from, to, 1);
        let err = refuse_timestamp(&repo, bad.as_bytes());
        assert!(matches!(err, TufError::Malformed { .. }), "{to}: {err:?}");
    }
    let tg = String::from_utf8(repo.targets_bytes(1)).unwrap();
    let from = format!("\"length\":{}", TARGET_DATA.len());
    assert!(tg.contains(&from));
    let bad = tg.replacen(&from, "\"length\":184467440737095516160", 1);
    let err = refuse_targets(&repo, bad.as_bytes());
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn duplicate_json_keys_in_the_signed_body_are_refused() {
    // The signature covers version 2; a parser that took the first "version" while the
    // canonical form took the last would accept a version nobody signed.
    let repo = Repo::new();
    let good = String::from_utf8(repo.timestamp_bytes(2, 1)).unwrap();
    let bad = good.replacen("\"_type\":", "\"version\":1,\"_type\":", 1);
    assert_ne!(good, bad);
    let err = refuse_timestamp(&repo, bad.as_bytes());
    assert!(matches!(err, TufError::Malformed { .. }), "{err:?}");
}

#[test]
fn wrongly_typed_fields_are_malformed() {
    let repo = Repo::new();
    let base = to_value(&repo.timestamp_md(2, 1));
    let mut cases = Vec::new();
    let mut v = base.clone();
    v["meta"] = json!([]);
    cases.push(v);
    let mut v = base.clone();
    v["meta"]["snapshot.json"]["version"] = json!("1");
    cases.push(v);
    let mut v = base.clone();
    v["meta"]["snapshot.json"]["hashes"] = json!({});
    cases.push(v);
    let mut v = base.clone();
    v["meta"]["snapshot.json"]["version"] = json!(0);
    cases.push(v);
    let mut v = base.clone();
    v["meta"] = json!({});
    cases.push(v);
    let mut v = base.clone();
    v["version"] = json!(0);
    cases.push(v);
    let mut v = base.clone();
    v["_type"] = json!(1);
    cases.push(v);
    for v in cases {
        let err = refuse_timestamp(&repo, &sign_value(&repo, "timestamp", &v));
        assert!(matches!(err, TufError::Malformed { .. }), "{v}: {err:?}");
    }
    // Signatures that are not a list of {keyid, sig}.
    let t = repo.timestamp_md(2, 1);
    for sigs in [json!({}), json!([{"keyid": 1, "sig": "00"}]), json!("x")] {
        let bytes = serde_json::to_vec(&json!({"signed": &t, "signatures": sigs})).unwrap();
        let err = refuse_timestamp(&repo, &bytes);
        assert!(matches!(err, TufError::Malformed { .. }), "{sigs}: {err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures and thresholds
// ---------------------------------------------------------------------------------------------

#[test]
fn signature_by_a_key_not_in_root_does_not_count() {
    let repo = Repo::new();
    let stranger = Signer::from_seed(99);
    let bytes = sign(&repo.timestamp_md(2, 1), &[&stranger]);
    let err = refuse_timestamp(&repo, &bytes);
    assert!(
        matches!(&err, TufError::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "timestamp"),
        "{err:?}"
    );
    // A key root knows, but for another role, does not count either.
    let bytes = sign(&repo.timestamp_md(2, 1), &repo.signers("snapshot"));
    let err = refuse_timestamp(&repo, &bytes);
    assert!(
        matches!(err, TufError::ThresholdNotMet { valid: 0, .. }),
        "{err:?}"
    );
    // Nor a signature claiming the right key id made by another key.
    let t = repo.timestamp_md(2, 1);
    let mut sig = stranger.sig_over(&to_canonical_bytes(&t).unwrap());
    sig.keyid = repo.keys["timestamp"][0].id.clone();
    let err = refuse_timestamp(&repo, &envelope_bytes(&t, &[sig]));
    assert!(
        matches!(err, TufError::ThresholdNotMet { valid: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn valid_signature_over_a_different_body_does_not_count() {
    let repo = Repo::new();
    let signed_body = repo.timestamp_md(2, 1);
    let sigs = vec![repo.keys["timestamp"][0].sig_over(&to_canonical_bytes(&signed_body).unwrap())];
    let other_body = repo.timestamp_md(3, 2);
    let err = refuse_timestamp(&repo, &envelope_bytes(&other_body, &sigs));
    assert!(
        matches!(
            err,
            TufError::ThresholdNotMet {
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_signature_hex_does_not_count() {
    let repo = Repo::new();
    let t = repo.timestamp_md(2, 1);
    let id = repo.keys["timestamp"][0].id.clone();
    for sig in ["zz", "", "0", &"00".repeat(64), &"ab".repeat(10_000)] {
        let s = Signature {
            keyid: id.clone(),
            sig: sig.to_string(),
        };
        let err = refuse_timestamp(&repo, &envelope_bytes(&t, &[s]));
        assert!(
            matches!(err, TufError::ThresholdNotMet { valid: 0, .. }),
            "{err:?}"
        );
    }
}

/// The same key material under a second key id: upper-case hex changes the key's canonical JSON,
/// hence its key id, but not the key.
fn alias(s: &Signer) -> (String, Key) {
    let mut k = s.key.clone();
    k.keyval.public = k.keyval.public.to_ascii_uppercase();
    let id = k.key_id();
    assert_ne!(id, s.id);
    (id, k)
}

#[test]
fn the_same_key_under_two_keyids_counts_once() {
    let repo = Repo::new();
    let s = &repo.keys["timestamp"][0];
    let (alias_id, alias_key) = alias(s);
    let mut root = repo.root_md(2);
    root.keys.insert(alias_id.clone(), alias_key);
    let r = root.roles.get_mut("timestamp").unwrap();
    r.keyids.push(alias_id.clone());
    r.threshold = 2;
    let mut ts = repo.trusted();
    ts.update_root(&repo.sign_as("root", &root)).unwrap();

    let t = repo.timestamp_md(1, 1);
    let sig = s.sig_over(&to_canonical_bytes(&t).unwrap());
    let aliased = Signature {
        keyid: alias_id.clone(),
        sig: sig.sig.clone(),
    };
    let err = ts
        .update_timestamp(&envelope_bytes(&t, &[sig, aliased]))
        .unwrap_err();
    assert!(
        matches!(&err, TufError::ThresholdNotMet { role, valid: 1, threshold: 2 } if role == "timestamp"),
        "{err:?}"
    );
    assert!(ts.timestamp().is_none());

    // The same trick on root itself: root v3 whose root role lists one key twice, threshold 2.
    let (root_alias_id, root_alias_key) = alias(&repo.keys["root"][0]);
    let mut root3 = root.clone();
    root3.common.version = 3;
    root3.keys.insert(root_alias_id.clone(), root_alias_key);
    let rr = root3.roles.get_mut("root").unwrap();
    rr.keyids.push(root_alias_id.clone());
    rr.threshold = 2;
    let mut sigs = vec![repo.keys["root"][0].sig_over(&to_canonical_bytes(&root3).unwrap())];
    sigs.push(Signature {
        keyid: root_alias_id,
        sig: sigs[0].sig.clone(),
    });
    let err = ts.update_root(&envelope_bytes(&root3, &sigs)).unwrap_err();
    assert!(
        matches!(&err, TufError::ThresholdNotMet { role, valid: 1, threshold: 2 } if role == "root"),
        "{err:?}"
    );
    assert_eq!(ts.root().version(), 2);
}

#[test]
fn threshold_two_is_met_by_two_distinct_keys_only() {
    let repo = Repo::with(2, [1, 2, 1, 1]);
    let mut ts = repo.trusted();
    let t = repo.timestamp_md(1, 1);
    let one = sign(&t, &[&repo.keys["timestamp"][0]]);
    let err = ts.update_timestamp(&one).unwrap_err();
    assert!(
        matches!(
            err,
            TufError::ThresholdNotMet {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(ts.timestamp().is_none());
    ts.update_timestamp(&repo.sign_as("timestamp", &t)).unwrap();
    assert_eq!(ts_version(&ts), Some(1));
}

fn unknown_scheme_key() -> Key {
    Key {
        keytype: "sphincs-future".into(),
        scheme: "sphincs-shake-256f".into(),
        keyval: KeyVal {
            public: "00112233".into(),
        },
    }
}

#[test]
fn unsupported_key_type_is_not_countable_but_harmless() {
    let repo = Repo::new();
    let unknown = unknown_scheme_key();
    let unknown_id = unknown.key_id();
    let mut root = repo.root_md(1);
    root.keys.insert(unknown_id.clone(), unknown);
    root.roles
        .get_mut("timestamp")
        .unwrap()
        .keyids
        .insert(0, unknown_id.clone());
    let mut ts = TrustedSet::new(&repo.sign_as("root", &root), NOW).unwrap();

    let t = repo.timestamp_md(1, 1);
    let canonical = to_canonical_bytes(&t).unwrap();
    let good = repo.keys["timestamp"][0].sig_over(&canonical);
    let junk = Signature {
        keyid: unknown_id.clone(),
        sig: "00".repeat(64),
    };
    ts.update_timestamp(&envelope_bytes(&t, &[junk.clone(), good.clone()]))
        .expect("the supported key meets threshold 1");
    assert_eq!(ts_version(&ts), Some(1));

    // With threshold 2 the unknown key cannot make up the difference.
    root.roles.get_mut("timestamp").unwrap().threshold = 2;
    let mut ts = TrustedSet::new(&repo.sign_as("root", &root), NOW).unwrap();
    let err = ts
        .update_timestamp(&envelope_bytes(&t, &[junk, good]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TufError::ThresholdNotMet {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(ts.timestamp().is_none());
}

#[test]
fn malformed_public_keys_give_a_key_error_not_a_panic() {
    let msg = b"message";
    let sig = [0u8; 64];
    let ed = |public: &str| Key {
        keytype: "ed25519".into(),
        scheme: "ed25519".into(),
        keyval: KeyVal {
            public: public.into(),
        },
    };
    for k in [
        ed("not hex!"),
        ed("abc"),
        ed("00"),
        ed(&"00".repeat(33)),
        ed(""),
    ] {
        assert!(
            matches!(k.verify(msg, &sig), Err(KeyError::MalformedPublicKey(_))),
            "{k:?}"
        );
    }
    let ecdsa = |public: &str| Key {
        keytype: "ecdsa".into(),
        scheme: "ecdsa-sha2-nistp256".into(),
        keyval: KeyVal {
            public: public.into(),
        },
    };
    for k in [
        ecdsa("garbage"),
        ecdsa("-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n"),
        ecdsa("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        ecdsa("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ecdsa(""),
    ] {
        assert!(
            matches!(k.verify(msg, &sig), Err(KeyError::MalformedPublicKey(_))),
            "{k:?}"
        );
    }
    // A well-formed SPKI whose point is garbage: the key parses, the signature cannot verify.
    let junk_point = {
        let mut p = vec![0x04];
        p.extend_from_slice(&[0xff; 64]);
        Key {
            keytype: "ecdsa".into(),
            scheme: "ecdsa-sha2-nistp256".into(),
            keyval: KeyVal {
                public: rampart_core::keys::p256_point_to_pem(&p).unwrap(),
            },
        }
    };
    assert!(junk_point.verify(msg, &sig).is_err());
    let rsa = Key {
        keytype: "rsa".into(),
        scheme: "rsassa-pss-sha256".into(),
        keyval: KeyVal {
            public: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
        },
    };
    assert!(matches!(
        rsa.verify(msg, &sig),
        Err(KeyError::MalformedPublicKey(_))
    ));
    let mldsa = |public: String| Key {
        keytype: "ml-dsa".into(),
        scheme: "ml-dsa-65".into(),
        keyval: KeyVal { public },
    };
    assert!(matches!(
        mldsa("00".repeat(10)).verify(msg, &sig),
        Err(KeyError::MalformedPublicKey(_))
    ));
    // Right length, arbitrary content: a clear refusal either way.
    let k = mldsa("ff".repeat(rampart_core::keys::ML_DSA_65_PUBLIC_LEN));
    assert!(k.verify(msg, &sig).is_err());
    assert!(
        k.verify(msg, &[0xff; rampart_core::keys::ML_DSA_65_SIGNATURE_LEN])
            .is_err()
    );
    // Unknown scheme, and a scheme that does not fit its key type.
    assert!(matches!(
        unknown_scheme_key().verify(msg, &sig),
        Err(KeyError::UnsupportedScheme(_))
    ));
    let mut mismatched = ed(&"00".repeat(32));
    mismatched.keytype = "rsa".into();
    assert!(matches!(
        mismatched.verify(msg, &sig),
        Err(KeyError::UnsupportedScheme(_))
    ));
    // Converted into the TUF error type, it stays a key error.
    let e: TufError = ed("zz").verify(msg, &sig).unwrap_err().into();
    assert!(matches!(e, TufError::Key(KeyError::MalformedPublicKey(_))));
}

#[test]
fn malformed_public_key_in_root_fails_the_threshold_without_panicking() {
    let repo = Repo::new();
    let mut root = repo.root_md(1);
    let id = repo.keys["timestamp"][0].id.clone();
    root.keys.get_mut(&id).unwrap().keyval.public = "not hex".into();
    let mut ts = TrustedSet::new(&repo.sign_as("root", &root), NOW).unwrap();
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(1, 1))
        .unwrap_err();
    assert!(
        matches!(err, TufError::ThresholdNotMet { valid: 0, .. }),
        "{err:?}"
    );
    assert!(ts.timestamp().is_none());
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn expired_root_is_refused_at_timestamp_update() {
    let repo = Repo::new();
    let mut root = repo.root_md(1);
    root.common.expires = format_expires(NOW - 1);
    // An expired root may still be the starting point (a newer root may follow) ...
    let mut ts = TrustedSet::new(&repo.sign_as("root", &root), NOW).unwrap();
    // ... but nothing is trusted on its authority once it is final.
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(1, 1))
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Expired { role, .. } if role == "root"),
        "{err:?}"
    );
    assert!(ts.timestamp().is_none());
    // Expiry exactly now counts as expired.
    root.common.expires = format_expires(NOW);
    let mut ts = TrustedSet::new(&repo.sign_as("root", &root), NOW).unwrap();
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(1, 1))
        .unwrap_err();
    assert!(matches!(err, TufError::Expired { .. }), "{err:?}");
}

#[test]
fn expired_timestamp_is_refused() {
    let repo = Repo::new();
    let mut t = repo.timestamp_md(1, 1);
    t.common.expires = format_expires(NOW - 1);
    let mut ts = repo.trusted();
    let err = ts
        .update_timestamp(&repo.sign_as("timestamp", &t))
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Expired { role, .. } if role == "timestamp"),
        "{err:?}"
    );
    // The expired timestamp is kept in memory only as a rollback floor (as python-tuf does);
    // nothing can be trusted on its authority.
    let err = ts
        .update_snapshot(&repo.snapshot_bytes(1, 1), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Expired { role, .. } if role == "timestamp"),
        "{err:?}"
    );
    assert!(ts.snapshot().is_none());
}

#[test]
fn expired_snapshot_is_refused() {
    let repo = Repo::new();
    let mut s = repo.snapshot_md(1, 1);
    s.common.expires = format_expires(NOW - 1);
    let mut ts = repo.with_timestamp();
    let err = ts
        .update_snapshot(&repo.sign_as("snapshot", &s), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Expired { role, .. } if role == "snapshot"),
        "{err:?}"
    );
    // Nothing can be trusted on its authority.
    let err = ts
        .update_targets(&repo.targets_bytes(1), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Expired { role, .. } if role == "snapshot"),
        "{err:?}"
    );
    assert!(ts.targets("targets").is_none());
}

#[test]
fn expired_targets_are_refused() {
    let repo = Repo::new();
    let mut t = repo.targets_md(1);
    t.common.expires = format_expires(NOW - 1);
    let err = refuse_targets(&repo, &repo.sign_as("targets", &t));
    assert!(
        matches!(&err, TufError::Expired { role, .. } if role == "targets"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rollback and versions
// ---------------------------------------------------------------------------------------------

#[test]
fn timestamp_version_rollback_is_refused() {
    let repo = Repo::new();
    let mut ts = repo.trusted();
    ts.update_timestamp(&repo.timestamp_bytes(5, 1)).unwrap();
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(4, 1))
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Rollback { role, trusted: 5, new: 4 } if role == "timestamp"),
        "{err:?}"
    );
    assert_eq!(ts_version(&ts), Some(5));
}

#[test]
fn equal_timestamp_version_is_reported_as_such() {
    let repo = Repo::new();
    let mut ts = repo.with_timestamp();
    // Same version, different contents: still not accepted in place of the trusted one.
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(1, 2))
        .unwrap_err();
    assert!(
        matches!(&err, TufError::EqualVersion { role, version: 1 } if role == "timestamp"),
        "{err:?}"
    );
    assert_eq!(ts_version(&ts), Some(1));
    assert_eq!(ts.timestamp().unwrap().signed.snapshot_meta().version, 1);
}

#[test]
fn snapshot_version_rollback_via_timestamp_meta_is_refused() {
    let repo = Repo::new();
    let mut ts = repo.trusted();
    ts.update_timestamp(&repo.timestamp_bytes(1, 5)).unwrap();
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(2, 4))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TufError::Rollback {
                trusted: 5,
                new: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(ts_version(&ts), Some(1));
    assert_eq!(ts.timestamp().unwrap().signed.snapshot_meta().version, 5);
}

#[test]
fn targets_version_rollback_in_snapshot_meta_is_refused() {
    let repo = Repo::new();
    let mut ts = repo.with_timestamp();
    // The locally stored snapshot lists targets v3; the one from the mirror lists targets v2.
    ts.update_snapshot(&repo.snapshot_bytes(1, 3), true)
        .unwrap();
    let err = ts
        .update_snapshot(&repo.snapshot_bytes(1, 2), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::Rollback { role, trusted: 3, new: 2 } if role == "targets"),
        "{err:?}"
    );
    assert_eq!(
        ts.snapshot().unwrap().signed.meta["targets.json"].version,
        3
    );
}

#[test]
fn snapshot_dropping_a_role_is_refused() {
    let repo = Repo::new();
    let mut with_delegate = repo.snapshot_md(1, 1);
    with_delegate.meta.insert(
        "board-a.json".into(),
        MetaFile {
            version: 1,
            length: None,
            hashes: None,
        },
    );
    let mut ts = repo.with_timestamp();
    ts.update_snapshot(&repo.sign_as("snapshot", &with_delegate), true)
        .unwrap();
    let err = ts
        .update_snapshot(&repo.snapshot_bytes(1, 1), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::RoleRemoved { role } if role == "board-a.json"),
        "{err:?}"
    );
    assert!(
        ts.snapshot()
            .unwrap()
            .signed
            .meta
            .contains_key("board-a.json")
    );
}

#[test]
fn root_version_that_skips_is_refused() {
    let repo = Repo::new();
    let mut ts = repo.trusted();
    let err = ts.update_root(&repo.root_bytes(3)).unwrap_err();
    assert!(
        matches!(&err, TufError::BadVersion { role, expected: 2, found: 3 } if role == "root"),
        "{err:?}"
    );
    assert_eq!(ts.root().version(), 1);
    // The same version again, and an older one, are refused the same way.
    ts.update_root(&repo.root_bytes(2)).unwrap();
    for v in [2, 1] {
        let err = ts.update_root(&repo.root_bytes(v)).unwrap_err();
        assert!(
            matches!(err, TufError::BadVersion { expected: 3, .. }),
            "{err:?}"
        );
        assert_eq!(ts.root().version(), 2);
    }
}

#[test]
fn root_at_the_largest_version_cannot_overflow() {
    // A root at u64::MAX (signed by the trusted keys) must refuse any successor with a typed
    // error, not an arithmetic overflow panic.
    let repo = Repo::new();
    let mut ts = TrustedSet::new(&repo.root_bytes(u64::MAX), NOW).unwrap();
    for v in [1, u64::MAX] {
        let err = ts.update_root(&repo.root_bytes(v)).unwrap_err();
        assert!(
            matches!(&err, TufError::BadVersion { role, found, .. } if role == "root" && *found == v),
            "{err:?}"
        );
    }
    assert_eq!(ts.root().version(), u64::MAX);
}

#[test]
fn new_root_signed_only_by_new_keys_is_refused() {
    let old = Repo::new();
    let mut new_root = old.root_md(2);
    // Rotate the root key to a fresh one.
    let fresh = Signer::from_seed(77);
    root_replace_root_key(&mut new_root, &old, &fresh);
    let mut ts = old.trusted();
    let err = ts.update_root(&sign(&new_root, &[&fresh])).unwrap_err();
    assert!(
        matches!(&err, TufError::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "root"),
        "{err:?}"
    );
    assert_eq!(ts.root().version(), 1);
}

#[test]
fn new_root_signed_only_by_old_keys_is_refused() {
    let old = Repo::new();
    let mut new_root = old.root_md(2);
    let fresh = Signer::from_seed(77);
    root_replace_root_key(&mut new_root, &old, &fresh);
    let mut ts = old.trusted();
    let err = ts
        .update_root(&sign(&new_root, &old.signers("root")))
        .unwrap_err();
    assert!(
        matches!(&err, TufError::ThresholdNotMet { role, valid: 0, threshold: 1 } if role == "root"),
        "{err:?}"
    );
    assert_eq!(ts.root().version(), 1);
    // Signed by both, the rotation is accepted.
    let both = [old.signers("root"), vec![&fresh]].concat();
    ts.update_root(&sign(&new_root, &both)).unwrap();
    assert_eq!(ts.root().version(), 2);
}

fn root_replace_root_key(root: &mut Root, old: &Repo, fresh: &Signer) {
    let old_id = &old.keys["root"][0].id;
    root.keys.remove(old_id);
    root.keys.insert(fresh.id.clone(), fresh.key.clone());
    root.roles.get_mut("root").unwrap().keyids = vec![fresh.id.clone()];
}

// ---------------------------------------------------------------------------------------------
// Snapshot and targets consistency
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshot_whose_hash_differs_from_timestamp_meta_is_refused() {
    let repo = Repo::new();
    let listed = repo.snapshot_bytes(1, 1);
    let mut ts = repo.trusted();
    ts.update_timestamp(&repo.sign_as("timestamp", &repo.timestamp_for(1, 1, &listed)))
        .unwrap();
    // Same length, other bytes: a snapshot signed over a different body.
    let other = repo.snapshot_bytes(1, 2);
    assert_eq!(other.len(), listed.len());
    let err = ts.update_snapshot(&other, false).unwrap_err();
    assert!(
        matches!(&err, TufError::HashMismatch { what, algorithm } if what == "snapshot" && algorithm == "sha256"),
        "{err:?}"
    );
    assert!(ts.snapshot().is_none());
    ts.update_snapshot(&listed, false).unwrap();
}

#[test]
fn snapshot_whose_length_differs_from_timestamp_meta_is_refused() {
    let repo = Repo::new();
    let listed = repo.snapshot_bytes(1, 1);
    let mut ts = repo.trusted();
    ts.update_timestamp(&repo.sign_as("timestamp", &repo.timestamp_for(1, 1, &listed)))
        .unwrap();
    let mut padded = listed.clone();
    padded.push(b' ');
    let err = ts.update_snapshot(&padded, false).unwrap_err();
    assert!(
        matches!(&err, TufError::LengthMismatch { what, expected, found } if what == "snapshot" && *expected == listed.len() as u64 && *found == padded.len() as u64),
        "{err:?}"
    );
    assert!(ts.snapshot().is_none());
}

#[test]
fn snapshot_whose_version_differs_from_timestamp_meta_is_refused() {
    let repo = Repo::new();
    let mut ts = repo.with_timestamp();
    let err = ts
        .update_snapshot(&repo.snapshot_bytes(2, 1), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::BadVersion { role, expected: 1, found: 2 } if role == "snapshot"),
        "{err:?}"
    );
    // Nothing can be trusted on its authority.
    let err = ts
        .update_targets(&repo.targets_bytes(1), false)
        .unwrap_err();
    assert!(matches!(err, TufError::BadVersion { .. }), "{err:?}");
    assert!(ts.targets("targets").is_none());
}

#[test]
fn targets_whose_version_differs_from_snapshot_meta_is_refused() {
    let repo = Repo::new();
    for v in [2, 3] {
        let err = refuse_targets(&repo, &repo.targets_bytes(v));
        assert!(
            matches!(&err, TufError::BadVersion { role, expected: 1, found } if role == "targets" && *found == v),
            "{err:?}"
        );
    }
}

#[test]
fn targets_whose_length_or_hash_differs_from_snapshot_meta_are_refused() {
    let repo = Repo::new();
    let listed = repo.targets_bytes(1);
    let mut snap = repo.snapshot_md(1, 1);
    let m = snap.meta.get_mut("targets.json").unwrap();
    m.length = Some(listed.len() as u64);
    m.hashes = Some(hashes(&[("sha256", &sha256_hex(&listed))]));
    let snap = repo.sign_as("snapshot", &snap);

    let mut other_target = repo.targets_md(1);
    other_target.targets.get_mut(TARGET_PATH).unwrap().hashes =
        hashes(&[("sha256", &sha256_hex(b"malicious image"))]);
    let other = repo.sign_as("targets", &other_target);
    assert_eq!(other.len(), listed.len());
    let mut longer = listed.clone();
    longer.push(b'\n');

    for (bytes, want_hash) in [(other, true), (longer, false)] {
        let mut ts = repo.with_timestamp();
        ts.update_snapshot(&snap, false).unwrap();
        let err = ts.update_targets(&bytes, false).unwrap_err();
        if want_hash {
            assert!(
                matches!(&err, TufError::HashMismatch { what, .. } if what == "targets"),
                "{err:?}"
            );
        } else {
            assert!(
                matches!(&err, TufError::LengthMismatch { what, .. } if what == "targets"),
                "{err:?}"
            );
        }
        assert!(ts.targets("targets").is_none());
    }
}

#[test]
fn unknown_hash_algorithm_in_timestamp_meta_is_refused() {
    let repo = Repo::new();
    let listed = repo.snapshot_bytes(1, 1);
    let mut t = repo.timestamp_for(1, 1, &listed);
    t.meta.get_mut("snapshot.json").unwrap().hashes = Some(hashes(&[("md5", "00")]));
    let mut ts = repo.trusted();
    ts.update_timestamp(&repo.sign_as("timestamp", &t)).unwrap();
    let err = ts.update_snapshot(&listed, false).unwrap_err();
    assert!(matches!(err, TufError::NoSupportedHash { .. }), "{err:?}");
    assert!(ts.snapshot().is_none());
}

#[test]
fn role_missing_from_snapshot_is_refused() {
    let repo = Repo::new();
    let mut snap = repo.snapshot_md(1, 1);
    snap.meta.clear();
    let mut ts = repo.with_timestamp();
    ts.update_snapshot(&repo.sign_as("snapshot", &snap), false)
        .unwrap();
    let err = ts
        .update_targets(&repo.targets_bytes(1), false)
        .unwrap_err();
    assert!(
        matches!(&err, TufError::MissingMeta { role, listed_in } if role == "targets" && listed_in == "snapshot"),
        "{err:?}"
    );
    assert!(ts.targets("targets").is_none());
}

#[test]
fn delegated_role_not_delegated_by_its_delegator_is_refused() {
    let repo = Repo::new();
    let mut snap = repo.snapshot_md(1, 1);
    snap.meta.insert(
        "board-b.json".into(),
        MetaFile {
            version: 1,
            length: None,
            hashes: None,
        },
    );
    let id = repo.keys["targets"][0].id.clone();
    let parent = delegating_targets(&repo, delegated_role("board-a", &id));
    let mut child = repo.targets_md(1);
    child.targets.clear();
    let mut ts = repo.with_timestamp();
    ts.update_snapshot(&repo.sign_as("snapshot", &snap), false)
        .unwrap();
    ts.update_targets(&repo.sign_as("targets", &parent), false)
        .unwrap();
    let err = ts
        .update_delegated_targets(
            &repo.sign_as("targets", &child),
            "board-b",
            "targets",
            false,
        )
        .unwrap_err();
    assert!(
        matches!(&err, TufError::MissingMeta { role, .. } if role == "board-b"),
        "{err:?}"
    );
    assert!(ts.targets("board-b").is_none());
}

// ---------------------------------------------------------------------------------------------
// Out-of-order updates
// ---------------------------------------------------------------------------------------------

#[test]
fn out_of_order_updates_are_refused() {
    let repo = Repo::new();
    let ts_bytes = repo.timestamp_bytes(1, 1);
    let snap_bytes = repo.snapshot_bytes(1, 1);
    let tg_bytes = repo.targets_bytes(1);

    // Snapshot or targets before timestamp.
    let mut ts = repo.trusted();
    let err = ts.update_snapshot(&snap_bytes, false).unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
    let err = ts.update_targets(&tg_bytes, false).unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
    let err = ts
        .update_delegated_targets(&tg_bytes, "board-a", "targets", false)
        .unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
    assert!(ts.snapshot().is_none() && ts.targets("targets").is_none());

    // Targets before snapshot.
    ts.update_timestamp(&ts_bytes).unwrap();
    let err = ts.update_targets(&tg_bytes, false).unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
    assert!(ts.targets("targets").is_none());

    // Root after timestamp.
    let err = ts.update_root(&repo.root_bytes(2)).unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
    assert_eq!(ts.root().version(), 1);

    // Timestamp after snapshot.
    ts.update_snapshot(&snap_bytes, false).unwrap();
    let err = ts
        .update_timestamp(&repo.timestamp_bytes(2, 1))
        .unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
    assert_eq!(ts_version(&ts), Some(1));

    // A delegate before its delegator.
    let err = ts
        .update_delegated_targets(&tg_bytes, "targets", "board-a", false)
        .unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");

    // Snapshot after targets.
    ts.update_targets(&tg_bytes, false).unwrap();
    let err = ts
        .update_snapshot(&repo.snapshot_bytes(1, 1), true)
        .unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");

    // A cached delegate check for a role never loaded.
    let err = ts.verify_cached_delegate("board-a", "targets").unwrap_err();
    assert!(matches!(err, TufError::OutOfOrder(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Target paths, lengths and hashes
// ---------------------------------------------------------------------------------------------

#[test]
fn unsafe_target_paths_are_refused() {
    let long = "a/".repeat(600) + "b";
    for path in [
        "../x",
        "a/../../x",
        "a/..",
        "..",
        "/abs",
        "/",
        "a\\b",
        "..\\x",
        "a/./b",
        "a//b",
        "a/",
        "",
        "a\0b",
        long.as_str(),
    ] {
        let err = validate_target_path(path).unwrap_err();
        assert!(
            matches!(&err, TufError::BadTargetPath { path: p, .. } if p == path),
            "{path:?}: {err:?}"
        );
    }
    for ok in ["x", "fw/board-a/1.2.3.img", "a..b/c", "...x"] {
        validate_target_path(ok).unwrap();
    }
}

#[test]
fn target_with_wrong_length_or_hash_is_refused() {
    let good = hashes(&[("sha256", &sha256_hex(TARGET_DATA))]);
    let len = TARGET_DATA.len() as u64;
    check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len), Some(&good)).unwrap();

    let err =
        check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len + 1), Some(&good)).unwrap_err();
    assert!(
        matches!(&err, TufError::LengthMismatch { what, expected, found } if what == TARGET_PATH && *expected == len + 1 && *found == len),
        "{err:?}"
    );

    let wrong = hashes(&[("sha256", &sha256_hex(b"other"))]);
    let err =
        check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len), Some(&wrong)).unwrap_err();
    assert!(
        matches!(&err, TufError::HashMismatch { what, algorithm } if what == TARGET_PATH && algorithm == "sha256"),
        "{err:?}"
    );

    // Every listed supported hash must match, not just one of them.
    let mixed = hashes(&[
        ("sha256", &sha256_hex(TARGET_DATA)),
        ("sha512", &"00".repeat(64)),
    ]);
    let err =
        check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len), Some(&mixed)).unwrap_err();
    assert!(
        matches!(&err, TufError::HashMismatch { algorithm, .. } if algorithm == "sha512"),
        "{err:?}"
    );

    // Not hex at all.
    let garbage = hashes(&[("sha256", "not hex")]);
    let err =
        check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len), Some(&garbage)).unwrap_err();
    assert!(matches!(err, TufError::HashMismatch { .. }), "{err:?}");
}

#[test]
fn unknown_hash_algorithm_is_refused() {
    let len = TARGET_DATA.len() as u64;
    let unknown = hashes(&[("md5", "00")]);
    let err =
        check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len), Some(&unknown)).unwrap_err();
    assert!(matches!(err, TufError::NoSupportedHash { .. }), "{err:?}");
    // Even next to a matching sha256: renaming a hash must not strip a check.
    let mixed = hashes(&[("sha256", &sha256_hex(TARGET_DATA)), ("blake9", "00")]);
    let err =
        check_length_and_hashes(TARGET_PATH, TARGET_DATA, Some(len), Some(&mixed)).unwrap_err();
    assert!(matches!(err, TufError::NoSupportedHash { .. }), "{err:?}");
}
