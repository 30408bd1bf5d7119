//! Renewing the online roles without publishing anything new (what the update server does
//! with its timestamp and snapshot keys), under the repository's write lock.

use std::path::Path;

use rampart_core::metadata::{Metadata, RoleType, Snapshot, Timestamp};
use rampart_keys::Signer;
use rampart_repo::expiry::PublishedExpiries;
use rampart_repo::{NoProgress, ReleaseRequest, RepoError, Repository};

mod support;

use support::{NOW, open, repo};
const DAY: i64 = 86_400;

fn signer(dir: &Path, name: &str) -> Box<dyn Signer> {
    open(&dir.join(format!("{name}.key")).display().to_string()).unwrap()
}

fn timestamp(repo: &Repository) -> Metadata<Timestamp> {
    let bytes = std::fs::read(repo.dir().join("metadata/timestamp.json")).unwrap();
    Metadata::from_bytes("timestamp", &bytes).unwrap()
}

#[test]
fn renewing_the_timestamp_keeps_a_repository_valid_past_its_first_day() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let later = NOW + DAY + 3600;
    // Without renewal, a client a day later refuses the expired timestamp.
    let err = repo.verify(None, later, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    let ts = signer(dir.path(), "timestamp");
    let renewed = repo
        .renew_published(None, &[ts.as_ref()], NOW + DAY - 3600)
        .unwrap()
        .expect("the lock is free");
    assert_eq!(renewed.snapshot_version, None);
    assert_eq!(renewed.timestamp_version, 2);
    assert_eq!(renewed.timestamp_expires_unix, NOW + 2 * DAY - 3600);
    let report = repo.verify(None, later, &NoProgress).unwrap();
    assert_eq!((report.timestamp_version, report.snapshot_version), (2, 1));

    // With the snapshot key the snapshot is re-signed too, and still valid a week on.
    let snap = signer(dir.path(), "snapshot");
    let week_on = NOW + 7 * DAY;
    let renewed = repo
        .renew_published(Some(&[snap.as_ref()]), &[ts.as_ref()], week_on - 3600)
        .unwrap()
        .unwrap();
    assert_eq!(renewed.snapshot_version, Some(2));
    assert_eq!(
        renewed.snapshot_expires_unix,
        Some(week_on - 3600 + 7 * DAY)
    );
    let report = repo.verify(None, week_on + 3600, &NoProgress).unwrap();
    assert_eq!((report.timestamp_version, report.snapshot_version), (3, 2));

    // What the server's expiry watch reads.
    let expiries = PublishedExpiries::default()
        .read(repo.dir())
        .unwrap()
        .into_iter()
        .map(|e| (e.role, e.version, e.expires_unix))
        .collect::<Vec<_>>();
    assert_eq!(
        expiries,
        vec![
            ("root".to_string(), 1, NOW + 365 * DAY),
            ("timestamp".to_string(), 3, week_on - 3600 + DAY),
            ("snapshot".to_string(), 2, week_on - 3600 + 7 * DAY),
            ("targets".to_string(), 1, NOW + 90 * DAY),
        ]
    );
}

#[test]
fn renewal_publishes_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let img = dir.path().join("fw.img");
    std::fs::write(&img, b"firmware").unwrap();
    // A release signed into targets v2 but not published (`release add --no-publish`).
    repo.add_releases(
        &[ReleaseRequest {
            image: img,
            target_name: Some("1.0.0/fw.img".into()),
            hardware_ids: vec!["board-a".into()],
            version: "1.0.0".into(),
            security_version: 1,
            sbom: None,
            provenance: None,
            role: None,
        }],
        &open,
        NOW,
        &NoProgress,
    )
    .unwrap();
    let (snap, ts) = (
        signer(dir.path(), "snapshot"),
        signer(dir.path(), "timestamp"),
    );
    let renewed = repo
        .renew_published(Some(&[snap.as_ref()]), &[ts.as_ref()], NOW + 3600)
        .unwrap()
        .unwrap();
    let bytes = std::fs::read(repo.dir().join("metadata/2.snapshot.json")).unwrap();
    let snapshot = Metadata::<Snapshot>::from_bytes("snapshot", &bytes).unwrap();
    assert_eq!(renewed.snapshot_version, Some(2));
    assert_eq!(
        snapshot.signed.meta["targets.json"].version, 1,
        "the renewed snapshot lists the targets version that was published, not the pending one"
    );
    assert_eq!(
        timestamp(&repo).signed.meta["snapshot.json"].version,
        2,
        "the timestamp lists the renewed snapshot"
    );
    // Publishing then makes the release visible, on top of the renewed versions.
    assert_eq!(repo.publish(&open, NOW + 7200).unwrap(), (3, 3));
}

#[test]
fn renewal_waits_for_another_writer_and_refuses_keys_the_root_does_not_trust() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let ts = signer(dir.path(), "timestamp");
    let held = repo.lock().unwrap();
    // Another handle on the same directory (another process, e.g. `rampart repo publish`).
    let other = Repository::open(repo.dir()).unwrap();
    assert!(other.try_lock().unwrap().is_none(), "the lock is held");
    assert_eq!(
        other.renew_published(None, &[ts.as_ref()], NOW).unwrap(),
        None,
        "a renewal never writes while another writer holds the lock"
    );
    assert_eq!(timestamp(&repo).version(), 1);
    drop(held);
    assert!(
        other
            .renew_published(None, &[ts.as_ref()], NOW)
            .unwrap()
            .is_some()
    );

    repo.check_online_signers(RoleType::Timestamp, &[ts.as_ref()])
        .unwrap();
    let snap = signer(dir.path(), "snapshot");
    let err = repo
        .check_online_signers(RoleType::Timestamp, &[snap.as_ref()])
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::BadRoleKeys { role, .. } if role == "timestamp")
            && err
                .to_string()
                .contains("is not a timestamp key of root v1"),
        "{err}"
    );
    // Renewing with a key the root does not trust (e.g. rotated out) writes nothing.
    let err = repo
        .renew_published(None, &[snap.as_ref()], NOW)
        .unwrap_err();
    assert!(matches!(&err, RepoError::BadRoleKeys { .. }), "{err}");
    assert_eq!(timestamp(&repo).version(), 2);
    let err = repo
        .check_online_signers(RoleType::Snapshot, &[])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("needs 1 of its snapshot keys, 0 given"),
        "{err}"
    );
}
