//! Artifacts in S3-compatible object storage, against a real S3-compatible server (moto, started
//! per test on a free loopback port; the tests fail if it is not installed, see
//! rampart_testkit::moto). The image repository's metadata stays local; its `targets/` is
//! uploaded under a prefix and then **removed from disk**, so every artifact byte a device gets
//! must have come from the object store.
//!
//! Storage of the inventory is orthogonal to where artifacts live: these run on SQLite only.

mod common;

use std::path::Path;

use common::Backend;
use common::delivery::{
    Conn, FIRMWARE, FIRMWARE_2, Fixture, OTHER, Running, agent_update,
    assert_artifact_http_semantics, image,
};
use common::unix_now;
use rampart_agent::server_update::UpdateOutcome;
use rampart_server::artifact_store::{ArtifactStore, ArtifactStoreError, ObjectStoreArtifacts};
use rampart_server::{Server, ServerConfig, ServerError};
use rampart_testkit::moto::Moto;

const BUCKET: &str = "rampart-artifacts";
const PREFIX: &str = "fleet/prod";

fn url() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

fn store(moto: &Moto, url: &str) -> ObjectStoreArtifacts {
    ObjectStoreArtifacts::from_url(url, moto.options()).unwrap()
}

/// Every file below `dir`, as (path below `dir`, file).
fn files(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}

/// A repository fixture whose `targets/` is in the bucket (all but the artifact of the target
/// `except`) and no longer on disk, and moto holding it.
async fn fixture_in_bucket(name: &str, except: Option<&str>) -> (Fixture, Moto) {
    let f = Fixture::new(Backend::Sqlite, name).await;
    let except = except.map(|target| f.artifact_path(target));
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let s3 = store(&moto, &url());
    s3.check().await.unwrap();
    let targets = f.repo_dir.join("targets");
    for (rel, file) in files(&targets) {
        if except.as_ref() == Some(&rel) {
            continue;
        }
        let size = s3.upload(&rel, &file, &|_| {}).await.unwrap();
        assert_eq!(size, std::fs::metadata(&file).unwrap().len());
    }
    std::fs::remove_dir_all(&targets).unwrap();
    (f, moto)
}

async fn start_with_store(f: &Fixture, moto: &Moto) -> Running {
    let artifacts = ArtifactStore::ObjectStore(store(moto, &url()));
    f.start(move |c| c.artifact_store = Some(artifacts)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_artifacts_are_served_from_the_object_store() {
    let (f, moto) = fixture_in_bucket("s3_serve", None).await;
    let server = start_with_store(&f, &moto).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let mut conn: Conn<_> = server.connect(&dev).await;
    let url = format!("/device/v1/repo/targets/{}", f.artifact_path(FIRMWARE));
    let data = image(1);
    let etag = format!("\"{}\"", f.image_target(FIRMWARE).hashes["sha256"]);

    assert_artifact_http_semantics(&mut conn, &url, &data, &etag).await;

    // The release's SBOM comes from the bucket too.
    let sbom =
        rampart_core::release::ReleaseInfo::from_custom(f.image_target(FIRMWARE).custom.as_ref())
            .unwrap()
            .sbom
            .unwrap();
    let (dir, file) = sbom.path.rsplit_once('/').unwrap();
    let sbom_url = format!("/device/v1/repo/targets/{dir}/{}.{file}", sbom.sha256);
    assert_eq!(conn.get(&sbom_url, &[]).await.status, 200);

    // Objects in the bucket that are not assigned to this device: 403, as from a directory.
    for target in [FIRMWARE_2, OTHER] {
        let path = format!("/device/v1/repo/targets/{}", f.artifact_path(target));
        conn.get(&path, &[])
            .await
            .error(403, "artifact_not_assigned");
    }
    conn.get("/device/v1/repo/targets/1.0.0/../../x", &[])
        .await
        .error(400, "bad_path");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_updates_from_the_object_store_and_resumes() {
    let (f, moto) = fixture_in_bucket("s3_agent", None).await;
    let server = start_with_store(&f, &moto).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let outcome = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert!(
        matches!(
            &outcome,
            UpdateOutcome::Downloaded {
                resumed_from: 0,
                already_present: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read(dev.out()).unwrap(), image(1));

    // An interrupted download resumes with a ranged read of the object.
    f.assign("a-2", FIRMWARE_2, &[&dev]).await;
    let part = dev.state.join("fw.img.part");
    std::fs::write(&part, &image(3)[..123_456]).unwrap();
    let partial_before = server.responses("/device/v1/repo/targets/{*path}", 206);
    let outcome = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert!(
        matches!(
            &outcome,
            UpdateOutcome::Downloaded {
                resumed_from: 123_456,
                director_version: 2,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        server.responses("/device/v1/repo/targets/{*path}", 206),
        partial_before + 1
    );
    assert_eq!(std::fs::read(dev.out()).unwrap(), image(3));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_altered_objects_are_a_clear_503_and_never_installed() {
    let (f, moto) = fixture_in_bucket("s3_missing", Some(FIRMWARE_2)).await;
    let server = start_with_store(&f, &moto).await;
    let s3 = store(&moto, &url());
    let dev = f.device("dev-1").await;
    let other = f.device("dev-2").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    f.assign("a-2", FIRMWARE_2, &[&other]).await;

    // dev-2's artifact was never uploaded: 503 with a JSON error (not a 500), and the server
    // keeps serving everything else.
    let mut conn2 = server.connect(&other).await;
    let missing = format!("/device/v1/repo/targets/{}", f.artifact_path(FIRMWARE_2));
    for request in [vec![], vec![("Range", "bytes=10-")]] {
        let detail = conn2
            .get(&missing, &request)
            .await
            .error(503, "artifact_unavailable");
        assert!(detail.contains("retry later"), "{detail}");
    }
    assert_eq!(
        conn2.send("HEAD", &missing, &[], b"").await.unwrap().status,
        503
    );
    assert_eq!(
        conn2
            .get("/device/v1/repo/metadata/timestamp.json", &[])
            .await
            .status,
        200
    );

    // dev-1's object is replaced by one of another length (someone with write access to the
    // bucket, or an incomplete upload): not sent.
    let firmware = f.artifact_path(FIRMWARE);
    let url = format!("/device/v1/repo/targets/{firmware}");
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short.img");
    std::fs::write(&short, &image(1)[..1000]).unwrap();
    s3.upload(&firmware, &short, &|_| {}).await.unwrap();
    let mut conn = server.connect(&dev).await;
    for request in [
        vec![],
        vec![("Range", "bytes=10-")],
        vec![("Range", "bytes=5000-")],
    ] {
        conn.get(&url, &request)
            .await
            .error(503, "artifact_unavailable");
    }
    assert_eq!(conn.send("HEAD", &url, &[], b"").await.unwrap().status, 503);

    // Same length, other bytes: the server cannot tell (the store is not trusted to be right),
    // and the device refuses them because their hash is not the signed one.
    let mut evil = image(9);
    evil.truncate(image(1).len());
    let evil_file = tmp.path().join("evil.img");
    std::fs::write(&evil_file, &evil).unwrap();
    s3.upload(&firmware, &evil_file, &|_| {}).await.unwrap();
    let result = agent_update(&dev, &server.url(), unix_now()).await;
    assert!(result.is_err(), "{result:?}");
    assert!(!dev.out().exists(), "nothing installed");

    // The right object again: the device updates.
    let good = tmp.path().join("good.img");
    std::fs::write(&good, image(1)).unwrap();
    s3.upload(&firmware, &good, &|_| {}).await.unwrap();
    agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert_eq!(std::fs::read(dev.out()).unwrap(), image(1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_endpoint_stops_the_server_at_start() {
    let f = Fixture::new(Backend::Sqlite, "s3_start").await;
    let moto = Moto::start();
    moto.create_bucket(BUCKET);

    let bind = |artifacts: Option<ArtifactStore>, repo: bool| {
        let tls = rampart_pki::server_config(
            &f.server_cert.cert_pem,
            &f.server_cert.key_pem,
            f.ca.cert_pem(),
            &[],
        )
        .unwrap();
        let mut config = ServerConfig::new(f.db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
        if repo {
            config.image_repo = Some(f.repo_dir.clone());
        }
        config.artifact_store = artifacts;
        Server::bind(config)
    };
    let refused = |result: Result<Server, ServerError>| match result {
        Err(e) => e,
        Ok(_) => panic!("the server started"),
    };

    // A bucket that does not exist.
    let e = refused(
        bind(
            Some(ArtifactStore::ObjectStore(store(
                &moto,
                "s3://no-such-bucket/p",
            ))),
            true,
        )
        .await,
    );
    assert!(
        matches!(
            e,
            ServerError::ArtifactStore(ArtifactStoreError::Unreachable { .. })
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("s3://no-such-bucket/p"), "{text}");
    assert!(text.contains("check that the bucket exists"), "{text}");

    // Nothing listening at the endpoint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut options = moto.options();
    options[0].1 = dead;
    let started = std::time::Instant::now();
    let e = refused(
        bind(
            Some(ArtifactStore::ObjectStore(
                ObjectStoreArtifacts::from_url(&url(), options).unwrap(),
            )),
            true,
        )
        .await,
    );
    assert!(
        matches!(
            e,
            ServerError::ArtifactStore(ArtifactStoreError::Unreachable { .. })
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "gave up in bounded time"
    );

    // An object store without an image repository to take the metadata from.
    let e = refused(
        bind(
            Some(ArtifactStore::ObjectStore(store(&moto, &url()))),
            false,
        )
        .await,
    );
    assert!(e.to_string().contains("needs image_repo"), "{e}");

    // The bucket that exists: starts (even empty).
    match bind(Some(ArtifactStore::ObjectStore(store(&moto, &url()))), true).await {
        Ok(server) => drop(server),
        Err(e) => panic!("{e}"),
    }
}
