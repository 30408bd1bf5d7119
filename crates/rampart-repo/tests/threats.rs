//! One test per TUF threat (TUF specification, section 1.5.2 "Goals to protect against specific
//! attacks"), end to end: a repository written by `Repository`, a mirror the attacker controls (a
//! copy of the repository directory the test tampers with), and the real client (`Updater` over
//! `file://` URLs). Each attack test asserts the specific error of the defense it exercises, so
//! it fails if that defense is removed, not merely if "something" goes wrong.
//!
//! `legitimate_update_succeeds` is the positive control: the same setup without an attack
//! succeeds, so the attack tests fail because of the attack and not because of the setup.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rampart_core::cjson::to_canonical_bytes;
use rampart_core::metadata::{
    MetaFile, Metadata, RoleType, Signature, SignedBody, Snapshot, TargetFile, Targets, Timestamp,
    envelope_bytes,
};
use rampart_core::release::{ReleaseError, ReleaseInfo};
use rampart_core::{Key, Scheme, TufError};
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_keys::{SignError, Signer};
use rampart_repo::{
    ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners, RootChange,
    sign_envelope,
};
use rampart_tuf_client::{ClientError, FetchError, HttpFetcher, Limits, Updater, UpdaterConfig};
use serde::Serialize;
use tempfile::TempDir;

const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;
const PASSPHRASE: &str = "pw";

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A signer presenting the key of another signer under a second key id: the same Ed25519 key
/// material, written with upper-case hex (so its canonical JSON, hence its key id, differs).
struct AliasSigner {
    inner: FileSigner,
    public: Key,
}

impl Signer for AliasSigner {
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.inner.sign(message)
    }
}

/// The key opener of these tests: key files under a known passphrase; `alias:PATH` opens the
/// key at PATH under its second key id (see [`AliasSigner`]).
fn open_key(reference: &str) -> Result<Box<dyn Signer>, SignError> {
    if let Some(path) = reference.strip_prefix("alias:") {
        let inner = FileSigner::open(Path::new(path), PASSPHRASE)?;
        let mut public = inner.public_key().clone();
        public.keyval.public = public.keyval.public.to_ascii_uppercase();
        return Ok(Box::new(AliasSigner { inner, public }));
    }
    Ok(Box::new(FileSigner::open(
        Path::new(reference),
        PASSPHRASE,
    )?))
}

fn signer(reference: &str) -> Box<dyn Signer> {
    open_key(reference).expect("test key opens")
}

fn signers(references: &[&str]) -> Vec<Box<dyn Signer>> {
    references.iter().map(|r| signer(r)).collect()
}

/// Generates an Ed25519 key file `dir/name.key` and returns its reference.
fn gen_key(dir: &Path, name: &str) -> String {
    let (_, bytes) = FileSigner::generate(
        Scheme::Ed25519,
        PASSPHRASE,
        KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
    )
    .expect("key generation");
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Repository fixture
// ---------------------------------------------------------------------------------------------

struct Fixture {
    tmp: TempDir,
    /// The repository directory (absolute).
    dir: PathBuf,
    repo: Repository,
    targets_keys: Vec<String>,
    snapshot_key: String,
    timestamp_key: String,
}

impl Fixture {
    /// A repository with one key per role, threshold 1.
    fn new() -> Fixture {
        Fixture::with_targets_keys(|dir| (vec![gen_key(dir, "targets")], 1))
    }

    /// A repository whose targets role uses the key references and threshold `targets` returns
    /// (given the key directory).
    fn with_targets_keys(targets: impl FnOnce(&Path) -> (Vec<String>, u32)) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let keys = base.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir_all(base.join("images")).unwrap();
        let root_key = gen_key(&keys, "root");
        let snapshot_key = gen_key(&keys, "snapshot");
        let timestamp_key = gen_key(&keys, "timestamp");
        let (targets_keys, targets_threshold) = targets(&keys);
        let one = |k: &String| RoleSigners {
            keys: vec![k.clone()],
            threshold: 1,
        };
        let dir = base.join("repo");
        let repo = Repository::init(
            &dir,
            InitOptions {
                root: one(&root_key),
                targets: RoleSigners {
                    keys: targets_keys.clone(),
                    threshold: targets_threshold,
                },
                snapshot: one(&snapshot_key),
                timestamp: one(&timestamp_key),
                expiry_days: ExpiryDays::default(),
            },
            &open_key,
            NOW,
        )
        .expect("repository init");
        Fixture {
            tmp,
            dir,
            repo,
            targets_keys,
            snapshot_key,
            timestamp_key,
        }
    }

    fn key_dir(&self) -> PathBuf {
        self.dir.parent().unwrap().join("keys")
    }

    fn metadata(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    /// A release request for image `bytes` listed as `target`.
    fn release(
        &self,
        target: &str,
        bytes: &[u8],
        hardware: &str,
        version: &str,
        security_version: u64,
    ) -> ReleaseRequest {
        let file_name = target.rsplit('/').next().unwrap();
        let dir = self
            .dir
            .parent()
            .unwrap()
            .join("images")
            .join(target.replace('/', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join(file_name);
        std::fs::write(&image, bytes).unwrap();
        ReleaseRequest {
            image,
            target_name: Some(target.to_string()),
            hardware_ids: vec![hardware.to_string()],
            version: version.to_string(),
            security_version,
            sbom: None,
            provenance: None,
            role: None,
        }
    }

    /// Adds releases and publishes new snapshot and timestamp.
    fn add_and_publish(&self, requests: Vec<ReleaseRequest>, now: i64) {
        self.repo
            .add_releases(&requests, &open_key, now, &NoProgress)
            .expect("add releases");
        self.repo.publish(&open_key, now).expect("publish");
    }

    /// A copy of the repository as served by a mirror the attacker controls.
    fn mirror(&self) -> PathBuf {
        let m = self.fresh_dir("mirror");
        copy_dir(&self.dir, &m);
        m
    }

    /// A new client trusting version 1 of root, obtained out of band from the repository. Its
    /// state directory lives as long as the fixture.
    fn client(&self) -> Client {
        let state = self.fresh_dir("client");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::copy(self.metadata().join("1.root.json"), state.join("root.json")).unwrap();
        Client { state }
    }

    /// A new directory name under the fixture's temporary directory.
    fn fresh_dir(&self, prefix: &str) -> PathBuf {
        let n = std::fs::read_dir(self.tmp.path()).unwrap().count();
        std::fs::canonicalize(self.tmp.path())
            .unwrap()
            .join(format!("{prefix}-{n}"))
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// A device: its trusted-metadata directory persists across update sessions.
struct Client {
    state: PathBuf,
}

impl Client {
    /// One update session against `mirror` at time `now`.
    fn session(&self, mirror: &Path, now: i64) -> Updater<HttpFetcher> {
        let config = UpdaterConfig {
            metadata_url: format!("file://{}/metadata", mirror.display()),
            metadata_dir: self.state.clone(),
            target_base_url: Some(format!("file://{}/targets", mirror.display())),
            limits: Limits::default(),
        };
        Updater::new(config, HttpFetcher::default(), now).expect("client starts")
    }

    /// A session that refreshes its metadata.
    fn refresh(&self, mirror: &Path, now: i64) -> Result<Updater<HttpFetcher>, ClientError> {
        let mut u = self.session(mirror, now);
        u.refresh()?;
        Ok(u)
    }

    /// The bytes of the client's stored trusted metadata of `role`.
    fn stored(&self, role: &str) -> Vec<u8> {
        std::fs::read(self.state.join(format!("{role}.json"))).unwrap()
    }
}

/// The TUF error of a failed client operation; panics on success or on another kind of error.
fn tuf_err<T>(r: Result<T, ClientError>) -> TufError {
    match r {
        Ok(_) => panic!("the client accepted what it should have refused"),
        Err(ClientError::Tuf(e)) => e,
        Err(e) => panic!("expected a TUF verification error, got {e:?}"),
    }
}

/// The fetch error of a failed client operation; panics on success or on another kind of error.
fn fetch_err<T>(r: Result<T, ClientError>) -> FetchError {
    match r {
        Ok(_) => panic!("the client accepted what it should have refused"),
        Err(ClientError::Fetch(e)) => e,
        Err(e) => panic!("expected a fetch error, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The attacker's tools: reading and forging metadata on the mirror
// ---------------------------------------------------------------------------------------------

fn read_md<T: SignedBody>(path: &Path, role: &str) -> Metadata<T> {
    Metadata::<T>::from_bytes(role, &std::fs::read(path).unwrap()).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn meta_file(version: u64, bytes: &[u8]) -> MetaFile {
    MetaFile {
        version,
        length: Some(bytes.len() as u64),
        hashes: Some(IndexMap::from([("sha256".to_string(), sha256_hex(bytes))])),
    }
}

/// The timestamp, snapshot and top-level targets a mirror currently serves.
fn served(mirror: &Path) -> (Metadata<Timestamp>, Metadata<Snapshot>, Metadata<Targets>) {
    let md = mirror.join("metadata");
    let ts = read_md::<Timestamp>(&md.join("timestamp.json"), "timestamp");
    let sv = ts.signed.snapshot_meta().version;
    let snap = read_md::<Snapshot>(&md.join(format!("{sv}.snapshot.json")), "snapshot");
    let tv = snap.signed.meta["targets.json"].version;
    let targets = read_md::<Targets>(&md.join(format!("{tv}.targets.json")), "targets");
    (ts, snap, targets)
}

/// How the attacker signs one forged metadata file.
enum By<'a> {
    /// With these keys (keys the attacker holds, legitimately valid for the role or not).
    Keys(Vec<Box<dyn Signer>>),
    /// With the attacker's own key, claiming the key ids of the role's legitimate keys.
    Impersonating(&'a dyn Signer, Vec<String>),
    /// Keeping the signatures of the legitimate file it modified.
    Stale(Vec<Signature>),
}

fn sign_by<T: Serialize>(body: &T, by: &By) -> Vec<u8> {
    match by {
        By::Keys(keys) => sign_envelope(body, keys).unwrap(),
        By::Impersonating(attacker, keyids) => {
            let canonical = to_canonical_bytes(body).unwrap();
            let sig = hex::encode(attacker.sign(&canonical).unwrap());
            let sigs: Vec<Signature> = keyids
                .iter()
                .map(|k| Signature {
                    keyid: k.clone(),
                    sig: sig.clone(),
                })
                .collect();
            envelope_bytes(body, &sigs)
        }
        By::Stale(sigs) => envelope_bytes(body, sigs),
    }
}

/// Writes into the mirror a new top-level `targets` (its version must already be bumped) and a
/// snapshot and timestamp one version above the served ones that bind it, each signed as given.
fn forge_chain(mirror: &Path, targets: &Targets, t_by: &By, s_by: &By, ts_by: &By) {
    let md = mirror.join("metadata");
    let (ts, snap, _) = served(mirror);
    let t_bytes = sign_by(targets, t_by);
    let tv = targets.common.version;
    std::fs::write(md.join(format!("{tv}.targets.json")), &t_bytes).unwrap();
    let mut snap = snap.signed;
    snap.common.version += 1;
    snap.meta
        .insert("targets.json".into(), meta_file(tv, &t_bytes));
    let s_bytes = sign_by(&snap, s_by);
    let sv = snap.common.version;
    std::fs::write(md.join(format!("{sv}.snapshot.json")), &s_bytes).unwrap();
    let mut ts = ts.signed;
    ts.common.version += 1;
    ts.meta
        .insert("snapshot.json".into(), meta_file(sv, &s_bytes));
    std::fs::write(md.join("timestamp.json"), sign_by(&ts, ts_by)).unwrap();
}

/// Puts image bytes on the mirror where a consistent-snapshot client fetches `target`.
fn put_target(mirror: &Path, target: &str, bytes: &[u8]) -> PathBuf {
    let (dir, file) = target.rsplit_once('/').unwrap();
    let d = mirror.join("targets").join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(format!("{}.{file}", sha256_hex(bytes)));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The path on the mirror of the image of `target` with sha256 `sha`.
fn target_file(mirror: &Path, target: &str, sha: &str) -> PathBuf {
    let (dir, file) = target.rsplit_once('/').unwrap();
    mirror
        .join("targets")
        .join(dir)
        .join(format!("{sha}.{file}"))
}

const FW: &str = "board-a/fw.img";
const FW_BYTES: &[u8] = b"legitimate firmware image for board-a, version 1.0.0\n";

/// A repository with one release, `FW`, published at `NOW`.
fn fixture_with_release() -> Fixture {
    let fx = Fixture::new();
    fx.add_and_publish(vec![fx.release(FW, FW_BYTES, "board-a", "1.0.0", 1)], NOW);
    fx
}

// ---------------------------------------------------------------------------------------------
// Positive control
// ---------------------------------------------------------------------------------------------

/// Positive control: the unattacked update path works end to end with the exact setup the attack
/// tests use (init, add a release, publish, refresh, find, fetch, install gate), so their
/// failures are due to the attacks.
#[test]
fn legitimate_update_succeeds() {
    let fx = fixture_with_release();
    let client = fx.client();
    let mut u = client.refresh(&fx.dir, NOW).expect("refresh");
    assert_eq!(u.trusted().timestamp().unwrap().version(), 2);
    assert_eq!(u.trusted().snapshot().unwrap().version(), 2);
    assert_eq!(u.trusted().targets("targets").unwrap().version(), 2);
    let info = u.get_targetinfo(FW).unwrap().expect("target listed");
    assert_eq!(info.length, FW_BYTES.len() as u64);
    assert_eq!(u.fetch_target(FW, &info).unwrap(), FW_BYTES);
    let dl = tempfile::tempdir().unwrap();
    let path = u.download_target(FW, &info, dl.path()).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), FW_BYTES);
    let release = ReleaseInfo::from_custom(info.custom.as_ref()).unwrap();
    release.check_installable("board-a", 0).unwrap();
    // A second session, from the stored state, is also fine; so is the same from a mirror copy.
    client
        .refresh(&fx.mirror(), NOW + 60)
        .expect("second refresh");
    // And the repository's own verifier agrees.
    fx.repo.verify(None, NOW, &NoProgress).expect("repo verify");
}

// ---------------------------------------------------------------------------------------------
// Threats
// ---------------------------------------------------------------------------------------------

/// Threat: arbitrary installation. The attacker swaps a target's bytes on the mirror (same
/// length), and rewrites the metadata chain to list a malicious image without valid signatures.
///
/// Defenses: every target is checked against its trusted sha256 (`check_length_and_hashes` in
/// `fetch_target`), and every metadata file must carry its role's threshold of valid signatures
/// (`verify_threshold` for timestamp, snapshot and targets, each exercised separately below:
/// an attacker holding the online timestamp and snapshot keys still cannot sign targets).
#[test]
fn threat_arbitrary_installation() {
    let fx = fixture_with_release();

    // 1. Target bytes replaced on the mirror, same length: HashMismatch, nothing written.
    let mirror = fx.mirror();
    let evil: Vec<u8> = FW_BYTES.iter().map(|b| b ^ 0x20).collect();
    assert_eq!(evil.len(), FW_BYTES.len());
    let client = fx.client();
    let mut u = client.refresh(&mirror, NOW).expect("metadata is untouched");
    let info = u.get_targetinfo(FW).unwrap().unwrap();
    std::fs::write(target_file(&mirror, FW, &info.hashes["sha256"]), &evil).unwrap();
    let e = tuf_err(u.fetch_target(FW, &info));
    assert!(
        matches!(e, TufError::HashMismatch { ref what, ref algorithm } if what == FW && algorithm == "sha256"),
        "{e:?}"
    );
    let dl = tempfile::tempdir().unwrap();
    let e = tuf_err(u.download_target(FW, &info, dl.path()));
    assert!(matches!(e, TufError::HashMismatch { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_dir(dl.path()).unwrap().count(),
        0,
        "nothing unverified is stored"
    );

    // 2. Metadata modified to list the malicious image, signed in various invalid ways.
    let (legit_ts, legit_snap, legit_targets) = served(&fx.dir);
    let mut forged = legit_targets.signed.clone();
    forged.common.version += 1;
    let entry = forged.targets.get_mut(FW).unwrap();
    entry.hashes.insert("sha256".into(), sha256_hex(&evil));
    let attacker = signer(&gen_key(&fx.key_dir(), "attacker"));
    let keyid = |r: &str| signer(r).key_id();
    let impersonate = |role_key: &str| By::Impersonating(&*attacker, vec![keyid(role_key)]);
    let cases: Vec<(&str, By, By, By, &str)> = vec![
        (
            "stale signatures over modified bodies",
            By::Stale(legit_targets.signatures.clone()),
            By::Stale(legit_snap.signatures.clone()),
            By::Stale(legit_ts.signatures.clone()),
            "timestamp",
        ),
        (
            "attacker's own key under the legitimate key ids",
            impersonate(&fx.targets_keys[0]),
            impersonate(&fx.snapshot_key),
            impersonate(&fx.timestamp_key),
            "timestamp",
        ),
        (
            "compromised timestamp key only",
            impersonate(&fx.targets_keys[0]),
            impersonate(&fx.snapshot_key),
            By::Keys(signers(&[&fx.timestamp_key])),
            "snapshot",
        ),
        (
            "compromised timestamp and snapshot keys",
            impersonate(&fx.targets_keys[0]),
            By::Keys(signers(&[&fx.snapshot_key])),
            By::Keys(signers(&[&fx.timestamp_key])),
            "targets",
        ),
    ];
    for (what, t_by, s_by, ts_by, refused_role) in &cases {
        let mirror = fx.mirror();
        put_target(&mirror, FW, &evil);
        forge_chain(&mirror, &forged, t_by, s_by, ts_by);
        let client = fx.client();
        let e = tuf_err(client.refresh(&mirror, NOW));
        assert!(
            matches!(e, TufError::ThresholdNotMet { ref role, valid: 0, threshold: 1 } if role == refused_role),
            "{what}: {e:?}"
        );
    }

    // Control: the very same forgery signed with every legitimate key is accepted and yields
    // the malicious image, so the refusals above are due to the signatures alone.
    let mirror = fx.mirror();
    put_target(&mirror, FW, &evil);
    forge_chain(
        &mirror,
        &forged,
        &By::Keys(signers(&[&fx.targets_keys[0]])),
        &By::Keys(signers(&[&fx.snapshot_key])),
        &By::Keys(signers(&[&fx.timestamp_key])),
    );
    let mut u = fx
        .client()
        .refresh(&mirror, NOW)
        .expect("validly signed forgery");
    let info = u.get_targetinfo(FW).unwrap().unwrap();
    assert_eq!(u.fetch_target(FW, &info).unwrap(), evil);
}

/// Threat: endless data. The attacker serves a timestamp.json far over the client's limit, a
/// snapshot longer than the timestamp lists, and a target image far longer than its listed length.
///
/// Defense: every download is bounded before it is read (`Limits::timestamp_max` for timestamp,
/// the length snapshot/timestamp lists for other metadata, the target's length for images) and
/// stops with `FetchError::TooLarge` after at most limit + 1 bytes. The padded metadata is still
/// validly signed JSON (trailing whitespace), so without the bound it would be accepted; the
/// padded image would be caught only after reading all of it.
#[test]
fn threat_endless_data() {
    let fx = fixture_with_release();
    let limits = Limits::default();

    // Oversized timestamp.
    let mirror = fx.mirror();
    let ts_path = mirror.join("metadata/timestamp.json");
    let mut ts = std::fs::read(&ts_path).unwrap();
    ts.resize(1 << 20, b' ');
    assert!(ts.len() as u64 > limits.timestamp_max);
    std::fs::write(&ts_path, &ts).unwrap();
    let e = fetch_err(fx.client().refresh(&mirror, NOW));
    assert!(
        matches!(e, FetchError::TooLarge { limit, .. } if limit == limits.timestamp_max),
        "{e:?}"
    );

    // Snapshot longer than the timestamp lists.
    let mirror = fx.mirror();
    let (ts, _, _) = served(&mirror);
    let listed = ts.signed.snapshot_meta().clone();
    let snap_path = mirror.join(format!("metadata/{}.snapshot.json", listed.version));
    let mut snap = std::fs::read(&snap_path).unwrap();
    snap.resize(snap.len() + 100_000, b' ');
    std::fs::write(&snap_path, &snap).unwrap();
    let e = fetch_err(fx.client().refresh(&mirror, NOW));
    assert!(
        matches!(e, FetchError::TooLarge { limit, .. } if Some(limit) == listed.length),
        "{e:?}"
    );

    // Target longer than its listed length: a 1 GiB (sparse) file behind the real image bytes.
    let mirror = fx.mirror();
    let mut u = fx.client().refresh(&mirror, NOW).unwrap();
    let info = u.get_targetinfo(FW).unwrap().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(target_file(&mirror, FW, &info.hashes["sha256"]))
        .unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let e = fetch_err(u.fetch_target(FW, &info));
    assert!(
        matches!(e, FetchError::TooLarge { limit, .. } if limit == info.length),
        "{e:?}"
    );
}

/// Threat: fast-forward attack. With the timestamp key compromised, the attacker publishes a
/// timestamp with a huge version; clients accept it (it is validly signed) and then refuse every
/// legitimate timestamp as a rollback.
///
/// Defenses: the rollback check on timestamp versions (which is what makes the attack bite),
/// and recovery by key rotation: once root rotates the timestamp key, the client re-verifies
/// its stored timestamp against the new root's keys, drops the fast-forwarded one and accepts
/// the legitimate timestamp again.
#[test]
fn threat_fast_forward() {
    let mut fx = fixture_with_release();
    let mirror = fx.mirror();
    let client = fx.client();
    client.refresh(&mirror, NOW).expect("initial refresh");

    // The attacker signs a huge timestamp version with the stolen key.
    const HUGE: u64 = 1 << 50;
    let (ts, _, _) = served(&mirror);
    let mut evil = ts.signed.clone();
    evil.common.version = HUGE;
    std::fs::write(
        mirror.join("metadata/timestamp.json"),
        sign_envelope(&evil, &signers(&[&fx.timestamp_key])).unwrap(),
    )
    .unwrap();
    let u = client
        .refresh(&mirror, NOW + 60)
        .expect("validly signed, so accepted");
    assert_eq!(u.trusted().timestamp().unwrap().version(), HUGE);

    // The owner publishes normally: the client now refuses the legitimate timestamp.
    fx.repo.publish(&open_key, NOW + 120).unwrap();
    copy_dir(&fx.dir, &mirror);
    let legit_version = served(&mirror).0.version();
    let e = tuf_err(client.refresh(&mirror, NOW + 180));
    assert!(
        matches!(e, TufError::Rollback { ref role, trusted: HUGE, new } if role == "timestamp" && new == legit_version),
        "{e:?}"
    );

    // Recovery: the owner rotates the timestamp key out (root version 2) and publishes.
    let new_ts_key = gen_key(&fx.key_dir(), "timestamp-2");
    let old_id = signer(&fx.timestamp_key).key_id();
    let v = fx
        .repo
        .rotate_root(
            &[RootChange {
                role: RoleType::Timestamp,
                add_keys: vec![new_ts_key.clone()],
                remove_key_ids: vec![old_id.clone()],
                threshold: None,
            }],
            &open_key,
            NOW + 240,
        )
        .expect("rotate timestamp key");
    assert_eq!(v, 2);
    copy_dir(&fx.dir, &mirror);
    let (ts, _, _) = served(&mirror);
    let u = client
        .refresh(&mirror, NOW + 300)
        .expect("client recovers after the key rotation");
    assert_eq!(u.trusted().root().version(), 2);
    assert!(!u.trusted().root().signed.keys.contains_key(&old_id));
    assert_eq!(u.trusted().timestamp().unwrap().version(), ts.version());
    assert!(ts.version() < HUGE);
    let stored =
        Metadata::<Timestamp>::from_bytes("timestamp", &client.stored("timestamp")).unwrap();
    assert_eq!(
        stored.version(),
        ts.version(),
        "the fast-forwarded timestamp was replaced"
    );
}

/// Threat: indefinite freeze. The attacker keeps serving the same, once valid, metadata so
/// devices never learn about new releases.
///
/// Defense: expiry. Timestamp metadata expires after a day (`ExpiryDays::default()`); a client
/// whose clock is past it refuses with `Expired`, whether it has seen the metadata before or not,
/// while the repository's fresh metadata is accepted at the same time.
#[test]
fn threat_indefinite_freeze() {
    let fx = fixture_with_release();
    let frozen = fx.mirror();
    let client = fx.client();
    client.refresh(&frozen, NOW).expect("fresh at first");

    // The owner keeps publishing; the attacker's mirror stays frozen.
    let later = NOW + 2 * DAY;
    fx.add_and_publish(
        vec![fx.release("board-a/fw-2.img", b"security fix", "board-a", "1.0.1", 2)],
        later,
    );

    for (who, c) in [
        ("device with stored state", &client),
        ("new device", &fx.client()),
    ] {
        let e = tuf_err(c.refresh(&frozen, later));
        assert!(
            matches!(e, TufError::Expired { ref role, .. } if role == "timestamp"),
            "{who}: {e:?}"
        );
    }
    // The same device at the same time accepts the real repository.
    let mut u = client
        .refresh(&fx.dir, later)
        .expect("fresh metadata accepted");
    assert!(u.get_targetinfo("board-a/fw-2.img").unwrap().is_some());
}

/// Threat: mix-and-match. The attacker combines metadata of different repository states:
/// an older targets (or snapshot) file served under the version name the newer snapshot (or
/// timestamp) lists.
///
/// Defenses: snapshot pins the length and hash of each targets file and timestamp those of the
/// snapshot (`check_length_and_hashes`), and the version inside a targets file must equal the
/// version snapshot lists (`BadVersion`, exercised by an attacker with the online snapshot and
/// timestamp keys who binds an old targets file's hash to the new version number).
#[test]
fn threat_mix_and_match() {
    let fx = fixture_with_release(); // targets v2, snapshot v2, timestamp v2
    fx.add_and_publish(
        vec![fx.release("board-a/fw-2.img", b"second release", "board-a", "1.1.0", 1)],
        NOW + 60,
    ); // targets v3, snapshot v3, timestamp v3
    let md = fx.metadata();
    let old_targets = std::fs::read(md.join("2.targets.json")).unwrap();
    let old_snapshot = std::fs::read(md.join("2.snapshot.json")).unwrap();
    let now = NOW + 120;
    // The file is refused for not being the one its referrer pins: a different length or hash
    // (a longer file is cut off by the download bound, which is set to the pinned length).
    fn assert_bound_mismatch<T>(r: Result<T, ClientError>, role: &str) {
        match r {
            Err(ClientError::Tuf(
                TufError::LengthMismatch { ref what, .. } | TufError::HashMismatch { ref what, .. },
            )) if what == role => {}
            Err(ClientError::Fetch(FetchError::TooLarge { ref url, .. }))
                if url.ends_with(&format!(".{role}.json")) => {}
            Ok(_) => panic!("mixed-and-matched {role} accepted"),
            Err(e) => panic!("{role}: expected a length/hash mismatch, got {e:?}"),
        }
    }

    // New snapshot with the old targets under the new version's name.
    let mirror = fx.mirror();
    std::fs::write(mirror.join("metadata/3.targets.json"), &old_targets).unwrap();
    assert_bound_mismatch(fx.client().refresh(&mirror, now), "targets");

    // New timestamp with the old snapshot under the new version's name.
    let mirror = fx.mirror();
    std::fs::write(mirror.join("metadata/3.snapshot.json"), &old_snapshot).unwrap();
    assert_bound_mismatch(fx.client().refresh(&mirror, now), "snapshot");

    // With the online keys: a new snapshot listing targets version 3 with the hash and length
    // of the old version-2 file, served under the version-3 name.
    let mirror = fx.mirror();
    let mmd = mirror.join("metadata");
    std::fs::write(mmd.join("3.targets.json"), &old_targets).unwrap();
    let (ts, snap, _) = served(&mirror);
    let mut snap = snap.signed;
    snap.common.version = 4;
    snap.meta
        .insert("targets.json".into(), meta_file(3, &old_targets));
    let s_bytes = sign_envelope(&snap, &signers(&[&fx.snapshot_key])).unwrap();
    std::fs::write(mmd.join("4.snapshot.json"), &s_bytes).unwrap();
    let mut ts = ts.signed;
    ts.common.version = 4;
    ts.meta
        .insert("snapshot.json".into(), meta_file(4, &s_bytes));
    std::fs::write(
        mmd.join("timestamp.json"),
        sign_envelope(&ts, &signers(&[&fx.timestamp_key])).unwrap(),
    )
    .unwrap();
    let e = tuf_err(fx.client().refresh(&mirror, now));
    assert!(
        matches!(e, TufError::BadVersion { ref role, expected: 3, found: 2 } if role == "targets"),
        "{e:?}"
    );
}

/// Threat: rollback. The attacker serves metadata older than what the device has already seen,
/// to bring back an old (vulnerable) state.
///
/// Defense: version monotonicity against the stored trusted metadata: a lower timestamp version,
/// a timestamp listing a lower snapshot version, or a snapshot listing a lower targets version
/// is refused with `Rollback`, and the refused file never replaces the stored trusted one.
#[test]
fn threat_rollback() {
    let fx = fixture_with_release(); // timestamp/snapshot/targets v2
    let old_ts = std::fs::read(fx.metadata().join("timestamp.json")).unwrap();
    let old_targets = std::fs::read(fx.metadata().join("2.targets.json")).unwrap();
    fx.add_and_publish(
        vec![fx.release("board-a/fw-2.img", b"second release", "board-a", "1.1.0", 2)],
        NOW + 60,
    ); // v3
    let mirror = fx.mirror();
    let client = fx.client();
    let u = client.refresh(&mirror, NOW + 120).expect("sees version 3");
    assert_eq!(u.trusted().timestamp().unwrap().version(), 3);
    let stored_ts = client.stored("timestamp");
    let stored_snap = client.stored("snapshot");
    let stored_targets = client.stored("targets");
    let now = NOW + 180;

    // The previous timestamp (version 2), exactly as the repository once signed it.
    std::fs::write(mirror.join("metadata/timestamp.json"), &old_ts).unwrap();
    let e = tuf_err(client.refresh(&mirror, now));
    assert!(
        matches!(e, TufError::Rollback { ref role, trusted: 3, new: 2 } if role == "timestamp"),
        "{e:?}"
    );
    assert_eq!(
        client.stored("timestamp"),
        stored_ts,
        "stored timestamp unchanged"
    );

    // With the timestamp key: a newer timestamp pointing at the older snapshot (version 2).
    let mut ts = Metadata::<Timestamp>::from_bytes("timestamp", &old_ts)
        .unwrap()
        .signed;
    ts.common.version = 4;
    std::fs::write(
        mirror.join("metadata/timestamp.json"),
        sign_envelope(&ts, &signers(&[&fx.timestamp_key])).unwrap(),
    )
    .unwrap();
    let e = tuf_err(client.refresh(&mirror, now));
    assert!(
        matches!(e, TufError::Rollback { ref role, trusted: 3, new: 2 } if role.starts_with("snapshot")),
        "{e:?}"
    );
    assert_eq!(
        client.stored("timestamp"),
        stored_ts,
        "stored timestamp unchanged"
    );

    // With the timestamp and snapshot keys: a newer snapshot listing the older targets (v2).
    let (_, snap, _) = served(&fx.dir);
    let mut snap = snap.signed;
    snap.common.version = 4;
    snap.meta
        .insert("targets.json".into(), meta_file(2, &old_targets));
    let s_bytes = sign_envelope(&snap, &signers(&[&fx.snapshot_key])).unwrap();
    std::fs::write(mirror.join("metadata/4.snapshot.json"), &s_bytes).unwrap();
    let mut ts = served(&fx.dir).0.signed;
    ts.common.version = 5;
    ts.meta
        .insert("snapshot.json".into(), meta_file(4, &s_bytes));
    std::fs::write(
        mirror.join("metadata/timestamp.json"),
        sign_envelope(&ts, &signers(&[&fx.timestamp_key])).unwrap(),
    )
    .unwrap();
    let e = tuf_err(client.refresh(&mirror, now));
    assert!(
        matches!(e, TufError::Rollback { ref role, trusted: 3, new: 2 } if role == "targets"),
        "{e:?}"
    );
    assert_eq!(
        client.stored("snapshot"),
        stored_snap,
        "stored snapshot unchanged"
    );
    assert_eq!(
        client.stored("targets"),
        stored_targets,
        "stored targets unchanged"
    );
}

/// Threat: key compromise below threshold. The targets role needs 2 of 3 keys; the attacker
/// holds one of them (plus, as after a server break-in, the online snapshot and timestamp keys)
/// and signs malicious targets. The root also lists the compromised key a second time under
/// another key id (same Ed25519 key material, hex in upper case), so the attacker also tries
/// presenting its one signature twice, once under each id.
///
/// Defense: threshold verification counting distinct key material (`verify_threshold`): one
/// key is one vote however many key ids name it (CVE-2020-15093). Control: two distinct keys
/// do meet the threshold, so the forgery fails for its signatures alone.
#[test]
fn threat_key_compromise_below_threshold() {
    let fx = Fixture::with_targets_keys(|dir| {
        let k1 = gen_key(dir, "targets-1");
        let k2 = gen_key(dir, "targets-2");
        let k3 = gen_key(dir, "targets-3");
        let alias = format!("alias:{k1}");
        (vec![k1, k2, k3, alias], 2)
    });
    fx.add_and_publish(vec![fx.release(FW, FW_BYTES, "board-a", "1.0.0", 1)], NOW);
    let [k1, k2, _k3, alias] = &fx.targets_keys[..] else {
        unreachable!()
    };

    // The trusted root names 3 distinct keys under 4 key ids, threshold 2.
    let root = read_md::<rampart_core::metadata::Root>(&fx.metadata().join("1.root.json"), "root");
    let role = root.signed.role(RoleType::Targets);
    assert_eq!((role.keyids.len(), role.threshold), (4, 2));
    let (k1_id, alias_id) = (signer(k1).key_id(), signer(alias).key_id());
    assert_ne!(k1_id, alias_id);
    assert_eq!(
        root.signed.keys[&k1_id].material().unwrap(),
        root.signed.keys[&alias_id].material().unwrap()
    );
    fx.client()
        .refresh(&fx.dir, NOW)
        .expect("legitimate metadata, 3 distinct signers");

    // The malicious targets.
    let evil = b"malicious firmware".to_vec();
    let (_, _, targets) = served(&fx.dir);
    let mut forged = targets.signed;
    forged.common.version += 1;
    forged.targets.insert(
        "board-a/evil.img".into(),
        TargetFile {
            length: evil.len() as u64,
            hashes: IndexMap::from([("sha256".to_string(), sha256_hex(&evil))]),
            custom: None,
        },
    );
    let online = || {
        (
            By::Keys(signers(&[&fx.snapshot_key])),
            By::Keys(signers(&[&fx.timestamp_key])),
        )
    };
    let attempt = |targets_signers: &[&str]| {
        let mirror = fx.mirror();
        put_target(&mirror, "board-a/evil.img", &evil);
        let (s_by, ts_by) = online();
        forge_chain(
            &mirror,
            &forged,
            &By::Keys(signers(targets_signers)),
            &s_by,
            &ts_by,
        );
        let sigs = served(&mirror).2.signatures.len();
        (fx.client().refresh(&mirror, NOW + 60), sigs)
    };

    // One key.
    let (r, sigs) = attempt(&[k1]);
    assert_eq!(sigs, 1);
    let e = tuf_err(r);
    assert!(
        matches!(e, TufError::ThresholdNotMet { ref role, valid: 1, threshold: 2 } if role == "targets"),
        "{e:?}"
    );

    // The same key presented twice, under both of its key ids.
    let (r, sigs) = attempt(&[k1, alias]);
    assert_eq!(sigs, 2, "two signatures, two key ids, one key");
    let e = tuf_err(r);
    assert!(
        matches!(e, TufError::ThresholdNotMet { ref role, valid: 1, threshold: 2 } if role == "targets"),
        "{e:?}"
    );

    // Control: two distinct keys meet the threshold.
    let (r, _) = attempt(&[k1, k2]);
    let mut u = r.expect("two distinct keys meet the threshold");
    assert!(u.get_targetinfo("board-a/evil.img").unwrap().is_some());
}

/// Threat: wrong software installation. (a) A delegated role trusted only for `board-a/*`
/// lists a `board-b/...` target in its own (validly signed) metadata; (b) a verified release
/// built for other hardware, or with a lower security version than installed, is offered.
///
/// Defenses: (a) delegation path matching (`matching_children`): a role is consulted only for
/// the paths its delegator trusts it with, so the client does not find the target at all;
/// (b) the device-side gate `ReleaseInfo::check_installable` (hardware id and anti-rollback
/// security version), applied after TUF verification.
#[test]
fn threat_wrong_software_installation() {
    let mut fx = Fixture::new();
    let delegate_key = gen_key(&fx.key_dir(), "board-a-team");
    fx.repo
        .delegate(
            "board-a-team",
            vec!["board-a/*".into()],
            RoleSigners {
                keys: vec![delegate_key.clone()],
                threshold: 1,
            },
            false,
            &open_key,
            NOW,
        )
        .expect("delegate");
    let mut req = fx.release(FW, FW_BYTES, "board-a", "1.0.0", 1);
    req.role = Some("board-a-team".into());
    fx.add_and_publish(vec![req], NOW);

    // (a) The delegate signs metadata listing a board-b image; the owner's snapshot publishes it.
    let bad_bytes = b"board-a team image posing as board-b firmware".to_vec();
    let bad_target = "board-b/fw.img";
    let mut t = fx.repo.targets_role("board-a-team").unwrap();
    t.common.version += 1;
    t.targets.insert(
        bad_target.into(),
        TargetFile {
            length: bad_bytes.len() as u64,
            hashes: IndexMap::from([("sha256".to_string(), sha256_hex(&bad_bytes))]),
            custom: Some(
                ReleaseInfo {
                    hardware_ids: vec!["board-b".into()],
                    version: "9.9.9".into(),
                    security_version: 99,
                    sbom: None,
                    provenance: None,
                    tlog_proof: None,
                }
                .to_custom(),
            ),
        },
    );
    std::fs::write(
        fx.metadata()
            .join(format!("{}.board-a-team.json", t.common.version)),
        sign_envelope(&t, &signers(&[&delegate_key])).unwrap(),
    )
    .unwrap();
    put_target(&fx.dir, bad_target, &bad_bytes);
    fx.repo.publish(&open_key, NOW + 60).unwrap();

    let mut u = fx.client().refresh(&fx.dir, NOW + 120).expect("refresh");
    // Control: the delegated role is reached, at the version listing the board-b entry.
    let info = u
        .get_targetinfo(FW)
        .unwrap()
        .expect("board-a image via the delegation");
    assert_eq!(u.fetch_target(FW, &info).unwrap(), FW_BYTES);
    let delegated = u
        .trusted()
        .targets("board-a-team")
        .expect("delegated role loaded");
    assert!(delegated.signed.targets.contains_key(bad_target));
    // The board-b entry is not trusted: the role is not consulted for board-b paths.
    assert!(matches!(u.get_targetinfo(bad_target), Ok(None)));

    // (b) Verified releases the device must still refuse (a separate repository, so that the
    // rogue entry above, which the repository itself still counts, does not interfere).
    let fx = Fixture::new();
    fx.add_and_publish(
        vec![
            fx.release(
                "releases/b-2.0.0.img",
                b"board-b firmware",
                "board-b",
                "2.0.0",
                1,
            ),
            fx.release(
                "releases/a-1.0.0.img",
                b"old board-a firmware",
                "board-a",
                "1.0.0",
                3,
            ),
            fx.release(
                "releases/a-1.1.0.img",
                b"new board-a firmware",
                "board-a",
                "1.1.0",
                5,
            ),
        ],
        NOW + 180,
    );
    let mut u = fx.client().refresh(&fx.dir, NOW + 240).expect("refresh");
    let mut release = |target: &str| {
        let info = u.get_targetinfo(target).unwrap().expect("listed");
        u.fetch_target(target, &info).expect("TUF-verified");
        ReleaseInfo::from_custom(info.custom.as_ref()).unwrap()
    };
    let for_b = release("releases/b-2.0.0.img");
    let old_a = release("releases/a-1.0.0.img");
    let new_a = release("releases/a-1.1.0.img");

    let e = for_b.check_installable("board-a", 0).unwrap_err();
    assert!(
        matches!(e, ReleaseError::WrongHardware { ref device, .. } if device == "board-a"),
        "{e:?}"
    );
    // A board-a device running security version 5 must not go back to 3.
    let e = old_a.check_installable("board-a", 5).unwrap_err();
    assert!(
        matches!(
            e,
            ReleaseError::SecurityRollback {
                offered: 3,
                installed: 5
            }
        ),
        "{e:?}"
    );
    // Controls: the right hardware and a non-decreasing security version are accepted.
    for_b.check_installable("board-b", 0).unwrap();
    old_a.check_installable("board-a", 3).unwrap();
    new_a.check_installable("board-a", 5).unwrap();
}
