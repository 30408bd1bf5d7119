//! The director and artifact delivery, end to end: a real image repository written by
//! `rampart_repo`, a director root and online key, the server over real mutual TLS on loopback
//! (embedded SQLite and PostgreSQL; PostgreSQL from RAMPART_TEST_POSTGRES_URL, the PostgreSQL
//! tests fail without it), and the device agent's update (`rampart_agent::director`).
//!
//! The threat tests put an attacker between the device and the server: [`Mitm`] is an HTTPS
//! server with a certificate from the device's trusted CA (the attacker controls the update
//! server's address), forwarding everything to the real server except the director metadata,
//! which it replaces. Each asserts the specific refusal of the defence it exercises, and that
//! nothing was written where the artifact would go.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::delivery::{
    Conn, DAY, Device, FIRMWARE, FIRMWARE_2, Fixture, IMAGE_LEN, OTHER, agent_update,
    assert_artifact_http_semantics, director_root, image,
};
use common::{Backend, gen_key, open_key, unix_now};
use indexmap::IndexMap;
use rampart_agent::director::accepted_director_version;
use rampart_agent::server_client::UpdateError;
use rampart_agent::server_update::UpdateOutcome;
use rampart_core::TufError;
use rampart_core::director::{
    DirectorError, DirectorTrust, Mismatch, build_targets, envelope, signing_bytes,
};
use rampart_core::metadata::{Metadata, Root, Signature, TargetFile};
use rampart_db::AuditLine;
use rampart_server::{DirectorConfig, Server, ServerConfig, ServerError};
use rampart_testkit::http::{Message, Reading};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

on_both_backends!(
    poll_announces_the_assignment_and_its_director_version,
    director_signs_per_device_targets_from_the_image_repository,
    unassigned_artifact_is_refused,
    artifact_ranges_etags_and_conditional_requests,
    path_traversal_is_refused,
    agent_downloads_with_full_verification_and_resumes,
    director_metadata_for_another_device_is_refused,
    replayed_older_director_version_is_refused,
    expired_director_metadata_is_refused,
    compromised_director_cannot_install_arbitrary_firmware,
    director_target_missing_from_image_repo_is_refused,
    director_root_rotation_is_followed,
);

fn director_error(result: Result<UpdateOutcome, UpdateError>) -> DirectorError {
    match result {
        Err(UpdateError::Director(e)) => e,
        other => panic!("expected a director refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The attacker: an HTTPS server the device trusts, forwarding to the real server as the
// device (it holds a copy of the device's certificate: the worst case), except for the paths
// it answers itself.

struct Mitm {
    url: String,
    task: JoinHandle<()>,
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mitm {
    async fn start(
        f: &Fixture,
        upstream: SocketAddr,
        device: &Device,
        replace: HashMap<String, Vec<u8>>,
    ) -> Mitm {
        let cert = f.ca.issue_server(&["localhost"], 30).unwrap();
        let tls = rampart_pki::server_config(&cert.cert_pem, &cert.key_pem, f.ca.cert_pem(), &[])
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let replace = Arc::new(replace);
        let device_config = device.config.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (tls, replace, device_config) =
                    (tls.clone(), replace.clone(), device_config.clone());
                tokio::spawn(async move {
                    let Ok(stream) = TlsAcceptor::from(tls).accept(tcp).await else {
                        return;
                    };
                    let mut down = Conn::new(stream);
                    let up =
                        rampart_testkit::http::connect_tls(upstream, "localhost", &device_config)
                            .await
                            .unwrap();
                    let mut up = Conn::new(up);
                    while let Ok(request) = down.read_message(Reading::Request).await {
                        let path = request.start.split(' ').nth(1).unwrap_or("").to_owned();
                        let response = if let Some(body) = replace.get(&path) {
                            Message {
                                start: "HTTP/1.1 200 OK".into(),
                                status: 200,
                                headers: vec![
                                    ("content-type".into(), "application/json".into()),
                                    ("content-length".into(), body.len().to_string()),
                                ],
                                body: body.clone(),
                            }
                        } else {
                            up.stream_mut()
                                .write_all(&request.to_bytes())
                                .await
                                .unwrap();
                            up.read_message(Reading::Answer).await.unwrap()
                        };
                        if down
                            .stream_mut()
                            .write_all(&response.to_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Mitm { url, task }
    }
}

const DIRECTOR_TARGETS: &str = "/device/v1/director/targets.json";

/// Director targets metadata signed with the (stolen) online key.
fn forged_director(
    f: &Fixture,
    device: &str,
    version: u64,
    assigned: &[(String, TargetFile)],
) -> Vec<u8> {
    let signer = f.online_signer();
    let body = build_targets(device, version, unix_now() + DAY, assigned);
    let sig = signer.sign(&signing_bytes(&body)).unwrap();
    envelope(
        &body,
        &[Signature {
            keyid: signer.key_id(),
            sig: hex::encode(sig),
        }],
    )
}

// ---------------------------------------------------------------------------
// Scenarios

async fn poll_announces_the_assignment_and_its_director_version(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    let mut conn = server.connect(&dev).await;
    let first = conn
        .send("POST", "/device/v1/poll", &[], b"{}")
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["assignment"], Value::Null);
    let etag = first.header("etag").unwrap().to_owned();

    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let second = conn
        .send(
            "POST",
            "/device/v1/poll",
            &[("If-None-Match", &etag)],
            b"{}",
        )
        .await
        .unwrap();
    assert_eq!(second.status, 200, "a new assignment changes the ETag");
    assert_eq!(
        second.json()["assignment"],
        json!({"id": "a-1", "target": FIRMWARE, "director_version": 1, "type": "forced"})
    );
    let etag = second.header("etag").unwrap().to_owned();
    let same = conn
        .send(
            "POST",
            "/device/v1/poll",
            &[("If-None-Match", &etag)],
            b"{}",
        )
        .await
        .unwrap();
    assert_eq!(same.status, 304);

    f.assign("a-2", FIRMWARE_2, &[&dev]).await;
    let third = conn
        .send("POST", "/device/v1/poll", &[], b"{}")
        .await
        .unwrap();
    assert_eq!(third.json()["assignment"]["director_version"], 2);
    assert_eq!(third.json()["assignment"]["target"], FIRMWARE_2);
    server.stop().await;
}

async fn director_signs_per_device_targets_from_the_image_repository(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    let mut conn = server.connect(&dev).await;

    let root = conn.get("/device/v1/director/root.json", &[]).await;
    assert_eq!(root.status, 200);
    assert_eq!(
        root.body,
        std::fs::read(f.director_dir.join("1.root.json")).unwrap()
    );
    assert_eq!(
        conn.get("/device/v1/director/1.root.json", &[]).await.body,
        root.body
    );
    conn.get("/device/v1/director/2.root.json", &[])
        .await
        .error(404, "not_found");
    conn.get("/device/v1/director/x.root.json", &[])
        .await
        .error(404, "not_found");

    conn.get(DIRECTOR_TARGETS, &[])
        .await
        .error(404, "no_assignment");
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let signed = conn.get(DIRECTOR_TARGETS, &[]).await;
    assert_eq!(
        signed.status,
        200,
        "{}",
        String::from_utf8_lossy(&signed.body)
    );
    let trust = DirectorTrust::new(&root.body).unwrap();
    let md = trust
        .verify_targets(&signed.body, "dev-1", None, unix_now())
        .unwrap();
    assert_eq!(md.version(), 1);
    let listed = &md.signed.targets[FIRMWARE];
    let image = f.image_target(FIRMWARE);
    assert_eq!(
        (listed.length, &listed.hashes),
        (image.length, &image.hashes)
    );
    let expires = md.expires_unix() - unix_now();
    assert!(
        (7 * DAY - 60..=7 * DAY).contains(&expires),
        "default expiry of 7 days: {expires}"
    );

    // Cached per (device, version): the same bytes, and 304 for the ETag.
    let again = conn.get(DIRECTOR_TARGETS, &[]).await;
    assert_eq!(again.body, signed.body);
    let etag = signed.header("etag").unwrap().to_owned();
    assert_eq!(
        conn.get(DIRECTOR_TARGETS, &[("If-None-Match", &etag)])
            .await
            .status,
        304
    );

    // A new assignment is a new version; a cancelled one lists nothing at a higher version.
    f.assign("a-2", FIRMWARE_2, &[&dev]).await;
    let v2 = conn.get(DIRECTOR_TARGETS, &[]).await;
    let md2 = trust
        .verify_targets(&v2.body, "dev-1", Some(1), unix_now())
        .unwrap();
    assert_eq!(md2.version(), 2);
    assert!(md2.signed.targets.contains_key(FIRMWARE_2));
    let now = unix_now();
    let last = f.db.last_audit().await.unwrap().unwrap();
    let last = rampart_audit::parse_jsonl(last.line.as_bytes())
        .unwrap()
        .remove(0);
    let mut chain = rampart_audit::AuditChain::resume(Some(&last)).unwrap();
    let record = chain
        .append(now, "token:test", "assignment.cancelled", "a-2", json!({}))
        .unwrap();
    f.db.cancel_assignment(
        "a-2",
        now,
        &AuditLine {
            seq: record.seq,
            line: rampart_audit::to_json_line(&record),
        },
    )
    .await
    .unwrap();
    let v3 = conn.get(DIRECTOR_TARGETS, &[]).await;
    let md3 = trust
        .verify_targets(&v3.body, "dev-1", Some(2), unix_now())
        .unwrap();
    assert_eq!(md3.version(), 3);
    assert!(md3.signed.targets.is_empty());

    // Another device, never assigned anything.
    let other = f.device("dev-2").await;
    let mut conn2 = server.connect(&other).await;
    conn2
        .get(DIRECTOR_TARGETS, &[])
        .await
        .error(404, "no_assignment");
    server.stop().await;
}

async fn unassigned_artifact_is_refused(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    let other = f.device("dev-2").await;
    let mut conn = server.connect(&dev).await;
    let firmware = format!("/device/v1/repo/targets/{}", f.artifact_path(FIRMWARE));
    let detail = conn
        .get(&firmware, &[])
        .await
        .error(403, "artifact_not_assigned");
    assert!(detail.contains("dev-1"), "{detail}");

    f.assign("a-1", FIRMWARE, &[&dev]).await;
    f.assign("a-2", OTHER, &[&other]).await;
    let ok = conn.get(&firmware, &[]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, image(1));
    // The release's SBOM, which its release information references, is allowed too.
    let info = f.image_target(FIRMWARE);
    let sbom = rampart_core::release::ReleaseInfo::from_custom(info.custom.as_ref())
        .unwrap()
        .sbom
        .unwrap();
    let (dir, file) = sbom.path.rsplit_once('/').unwrap();
    let sbom_url = format!("/device/v1/repo/targets/{dir}/{}.{file}", sbom.sha256);
    assert_eq!(conn.get(&sbom_url, &[]).await.status, 200);
    // Another release in the same repository, and another device's assigned artifact: 403.
    for target in [FIRMWARE_2, OTHER] {
        let path = format!("/device/v1/repo/targets/{}", f.artifact_path(target));
        conn.get(&path, &[])
            .await
            .error(403, "artifact_not_assigned");
    }
    // The plain (non-consistent) name of the assigned target is not an artifact either.
    conn.get(&format!("/device/v1/repo/targets/{FIRMWARE}"), &[])
        .await
        .error(403, "artifact_not_assigned");
    // The other device gets its own artifact, not dev-1's.
    let mut conn2 = server.connect(&other).await;
    conn2
        .get(&firmware, &[])
        .await
        .error(403, "artifact_not_assigned");
    let mine = conn2
        .get(
            &format!("/device/v1/repo/targets/{}", f.artifact_path(OTHER)),
            &[],
        )
        .await;
    assert_eq!((mine.status, mine.body == image(2)), (200, true));
    // Metadata is readable by every device: it is signed and verified on the device.
    let ts = conn2
        .get("/device/v1/repo/metadata/timestamp.json", &[])
        .await;
    assert_eq!(ts.status, 200);
    assert_eq!(
        ts.body,
        std::fs::read(f.repo_dir.join("metadata/timestamp.json")).unwrap()
    );
    conn2
        .get("/device/v1/repo/metadata/99.root.json", &[])
        .await
        .error(404, "not_found");
    server.stop().await;
}

async fn artifact_ranges_etags_and_conditional_requests(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let mut conn = server.connect(&dev).await;
    let url = format!("/device/v1/repo/targets/{}", f.artifact_path(FIRMWARE));
    let data = image(1);
    let sha = f.image_target(FIRMWARE).hashes["sha256"].clone();
    let etag = format!("\"{sha}\"");

    assert_artifact_http_semantics(&mut conn, &url, &data, &etag).await;
    server.stop().await;
}

async fn path_traversal_is_refused(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    // A file outside the repository that a traversal would reach.
    std::fs::write(f.dir.join("secret.json"), b"{\"secret\": true}").unwrap();
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let mut conn = server.connect(&dev).await;
    for path in [
        "/device/v1/repo/targets/../../secret.json",
        "/device/v1/repo/targets/%2e%2e/%2e%2e/secret.json",
        "/device/v1/repo/targets/1.0.0/..%2f..%2f..%2fsecret.json",
        "/device/v1/repo/targets/1.0.0//x",
        "/device/v1/repo/targets/.%2Fx",
        "/device/v1/repo/targets/a%5C..%5Cb",
        "/device/v1/repo/targets/a%00b",
        "/device/v1/repo/metadata/..%2f..%2fsecret.json",
        "/device/v1/repo/metadata/%2e%2e",
        "/device/v1/repo/metadata/.hidden.json",
        "/device/v1/repo/metadata/rampart-repo.txt",
    ] {
        let answer = conn.get(path, &[]).await;
        assert!(
            answer.status == 400 || answer.status == 404,
            "{path}: {}",
            answer.status
        );
        assert_ne!(answer.body, b"{\"secret\": true}", "{path}");
        if answer.status == 400 {
            answer.error(400, "bad_path");
        }
    }
    // The percent-encoded forms reach the handler and are refused by name.
    conn.get("/device/v1/repo/targets/%2e%2e/%2e%2e/secret.json", &[])
        .await
        .error(400, "bad_path");
    conn.get("/device/v1/repo/metadata/..%2f..%2fsecret.json", &[])
        .await
        .error(400, "bad_path");
    // The repository's own configuration is not metadata.
    conn.get("/device/v1/repo/metadata/..%2frampart-repo.json", &[])
        .await
        .error(400, "bad_path");
    server.stop().await;
}

async fn agent_downloads_with_full_verification_and_resumes(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    assert_eq!(
        agent_update(&dev, &server.url(), unix_now()).await.unwrap(),
        UpdateOutcome::NothingAssigned
    );

    f.assign("a-1", FIRMWARE, &[&dev]).await;
    let outcome = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert_eq!(
        outcome,
        UpdateOutcome::Downloaded {
            target: FIRMWARE.into(),
            version: "1.0.0".into(),
            director_version: 1,
            path: dev.out(),
            resumed_from: 0,
            already_present: false,
        }
    );
    assert_eq!(std::fs::read(dev.out()).unwrap(), image(1));
    assert_eq!(accepted_director_version(&dev.state).unwrap(), Some(1));
    let again = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert!(
        matches!(
            again,
            UpdateOutcome::Downloaded {
                already_present: true,
                ..
            }
        ),
        "{again:?}"
    );

    // An interrupted download of the next release resumes from the partial file.
    f.assign("a-2", FIRMWARE_2, &[&dev]).await;
    let part = dev.state.join("fw.img.part");
    std::fs::write(&part, &image(3)[..123_456]).unwrap();
    let route = "/device/v1/repo/targets/{*path}";
    let partial_before = server.responses(route, 206);
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
        server.responses(route, 206),
        partial_before + 1,
        "resumed with a Range request"
    );
    assert_eq!(std::fs::read(dev.out()).unwrap(), image(3));
    assert!(!part.exists());

    // A partial file that is not a prefix of the artifact fails the whole-file check: nothing
    // is installed, the partial file is discarded, and the next attempt starts afresh.
    std::fs::remove_file(dev.out()).unwrap();
    let mut wrong = image(3)[..200_000].to_vec();
    wrong[10] ^= 0xff;
    std::fs::write(&part, &wrong).unwrap();
    let err = agent_update(&dev, &server.url(), unix_now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            UpdateError::Download {
                source: TufError::HashMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!part.exists() && !dev.out().exists());
    let outcome = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert!(
        matches!(
            outcome,
            UpdateOutcome::Downloaded {
                resumed_from: 0,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read(dev.out()).unwrap(), image(3));
    let reports = f.db.reports_of("dev-1").await.unwrap();
    assert!(
        reports
            .iter()
            .any(|r| r.status == "downloaded" && r.assignment == "a-2")
    );
    server.stop().await;
}

async fn director_metadata_for_another_device_is_refused(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    let other = f.device("dev-2").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    f.assign("a-2", FIRMWARE_2, &[&other]).await;
    // Genuine, correctly signed director metadata, but for dev-2.
    let for_other = server
        .connect(&other)
        .await
        .get(DIRECTOR_TARGETS, &[])
        .await;
    assert_eq!(for_other.status, 200);
    let mitm = Mitm::start(
        &f,
        server.addr,
        &dev,
        HashMap::from([(DIRECTOR_TARGETS.into(), for_other.body)]),
    )
    .await;
    let err = director_error(agent_update(&dev, &mitm.url, unix_now()).await);
    assert_eq!(
        err,
        DirectorError::WrongDevice {
            expected: "dev-1".into(),
            found: "dev-2".into()
        }
    );
    assert!(!dev.out().exists());
    assert_eq!(accepted_director_version(&dev.state).unwrap(), None);
    // The device reported the refusal.
    let reports = f.db.reports_of("dev-1").await.unwrap();
    assert!(
        reports.iter().any(|r| r.status == "verification_failed"),
        "{reports:?}"
    );
    // Through the real server, the same device updates fine.
    agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    drop(mitm);
    server.stop().await;
}

async fn replayed_older_director_version_is_refused(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE_2, &[&dev]).await;
    // Captured: version 1, assigning release 2.0.0.
    let v1 = server
        .connect(&dev)
        .await
        .get(DIRECTOR_TARGETS, &[])
        .await
        .body;
    // The operator reassigns; the device accepts version 2.
    f.assign("a-2", FIRMWARE, &[&dev]).await;
    let outcome = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert!(
        matches!(
            outcome,
            UpdateOutcome::Downloaded {
                director_version: 2,
                ..
            }
        ),
        "{outcome:?}"
    );
    std::fs::remove_file(dev.out()).unwrap();
    // Replaying version 1 (validly signed, not expired) is refused.
    let mitm = Mitm::start(
        &f,
        server.addr,
        &dev,
        HashMap::from([(DIRECTOR_TARGETS.into(), v1)]),
    )
    .await;
    let err = director_error(agent_update(&dev, &mitm.url, unix_now()).await);
    assert_eq!(
        err,
        DirectorError::Rollback {
            accepted: 2,
            offered: 1
        }
    );
    assert!(!dev.out().exists());
    assert_eq!(accepted_director_version(&dev.state).unwrap(), Some(2));
    drop(mitm);
    server.stop().await;
}

async fn expired_director_metadata_is_refused(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f
        .start(|c| {
            c.director.as_mut().unwrap().targets_expiry = Duration::from_secs(300);
        })
        .await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    // Ten minutes later (the device's clock), the 5-minute metadata has expired.
    let err = director_error(agent_update(&dev, &server.url(), unix_now() + 600).await);
    assert!(matches!(err, DirectorError::Expired { .. }), "{err:?}");
    assert!(!dev.out().exists());
    agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    server.stop().await;
}

async fn compromised_director_cannot_install_arbitrary_firmware(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    // The attacker holds the director's online key and points the device at their own image
    // under the assigned release's name: different hash (and, second, different length).
    let evil = b"attacker firmware".repeat(1000);
    let mut forged = f.image_target(FIRMWARE);
    forged.hashes = IndexMap::from([(
        "sha256".to_string(),
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            &evil[..IMAGE_LEN.min(evil.len())],
        )),
    )]);
    let same_length = forged.clone();
    let mut other_length = forged.clone();
    other_length.length = evil.len() as u64;
    for (version, target, mismatch) in [(2, same_length, "sha256"), (3, other_length, "length")] {
        let bytes = forged_director(&f, "dev-1", version, &[(FIRMWARE.to_owned(), target)]);
        let mitm = Mitm::start(
            &f,
            server.addr,
            &dev,
            HashMap::from([(DIRECTOR_TARGETS.into(), bytes)]),
        )
        .await;
        let err = director_error(agent_update(&dev, &mitm.url, unix_now()).await);
        match (&err, mismatch) {
            (
                DirectorError::Disagreement {
                    target,
                    mismatch: Mismatch::Hash { algorithm, .. },
                },
                "sha256",
            ) => {
                assert_eq!((target.as_str(), algorithm.as_str()), (FIRMWARE, "sha256"));
            }
            (
                DirectorError::Disagreement {
                    target,
                    mismatch: Mismatch::Length { .. },
                },
                "length",
            ) => {
                assert_eq!(target, FIRMWARE);
            }
            _ => panic!("expected a {mismatch} disagreement, got {err:?}"),
        }
        assert!(err.to_string().contains(FIRMWARE), "{err}");
        assert!(!dev.out().exists());
        assert_eq!(
            accepted_director_version(&dev.state).unwrap(),
            None,
            "nothing accepted"
        );
    }
    let reports = f.db.reports_of("dev-1").await.unwrap();
    assert!(
        reports
            .iter()
            .filter(|r| r.status == "verification_failed")
            .count()
            >= 2
    );
    server.stop().await;
}

async fn director_target_missing_from_image_repo_is_refused(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let server = f.start(|_| {}).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    // A compromised director invents a release the image repository never signed.
    let invented = TargetFile {
        length: 5,
        hashes: IndexMap::from([(
            "sha256".to_string(),
            hex::encode(ring::digest::digest(&ring::digest::SHA256, b"evil!")),
        )]),
        custom: None,
    };
    let bytes = forged_director(&f, "dev-1", 2, &[("9.9.9/evil.img".to_owned(), invented)]);
    let mitm = Mitm::start(
        &f,
        server.addr,
        &dev,
        HashMap::from([(DIRECTOR_TARGETS.into(), bytes)]),
    )
    .await;
    let err = director_error(agent_update(&dev, &mitm.url, unix_now()).await);
    assert_eq!(
        err,
        DirectorError::NotInImageRepo {
            target: "9.9.9/evil.img".into()
        }
    );
    assert!(!dev.out().exists());
    // And the server refuses to sign for an assignment the image repository lacks.
    f.assign("a-2", "9.9.9/evil.img", &[&dev]).await;
    server
        .connect(&dev)
        .await
        .get(DIRECTOR_TARGETS, &[])
        .await
        .error(409, "assigned_target_missing");
    drop(mitm);
    server.stop().await;
}

async fn director_root_rotation_is_followed(backend: Backend, name: &str) {
    let f = Fixture::new(backend, name).await;
    let dev = f.device("dev-1").await;
    f.assign("a-1", FIRMWARE, &[&dev]).await;
    // Root v2: new root key and new online key, signed by the old and the new root keys.
    let keys = f.dir.join("keys");
    let new_root = gen_key(&keys, "director-root-2");
    let new_online = gen_key(&keys, "director-online-2");
    let (old_signer, new_signer) = (
        open_key(&f.director_root_key).unwrap(),
        open_key(&new_root).unwrap(),
    );
    let online2 = open_key(&new_online).unwrap();
    let v2 = director_root(
        2,
        &[new_signer.public_key().clone()],
        online2.as_ref(),
        &[old_signer, new_signer],
    );
    std::fs::write(f.director_dir.join("2.root.json"), &v2).unwrap();
    // A server still signing under root v1 does not hand out v2 (devices would then refuse
    // everything it signs until it restarts).
    let server = f.start(|_| {}).await;
    let mut conn = server.connect(&dev).await;
    let detail = conn
        .get("/device/v1/director/2.root.json", &[])
        .await
        .error(404, "not_found");
    assert!(detail.contains("current one is 1"), "{detail}");
    server.stop().await;
    std::fs::write(f.director_dir.join("root.json"), &v2).unwrap();
    // A server still holding the old online key refuses to start with the new root.
    let tls = rampart_pki::server_config(
        &f.server_cert.cert_pem,
        &f.server_cert.key_pem,
        f.ca.cert_pem(),
        &[],
    )
    .unwrap();
    let mut config = ServerConfig::new(f.db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
    config.image_repo = Some(f.repo_dir.clone());
    config.director = Some(DirectorConfig::new(
        f.director_dir.join("root.json"),
        f.online_signer(),
    ));
    let err = Server::bind(config).await.unwrap_err();
    assert!(
        matches!(&err, ServerError::Config(m) if m.contains("online key")),
        "{err}"
    );

    let server = f
        .start(|c| {
            c.director = Some(DirectorConfig::new(
                f.director_dir.join("root.json"),
                Arc::from(open_key(&new_online).unwrap()),
            ));
        })
        .await;
    let outcome = agent_update(&dev, &server.url(), unix_now()).await.unwrap();
    assert!(
        matches!(outcome, UpdateOutcome::Downloaded { .. }),
        "{outcome:?}"
    );
    let pinned = std::fs::read(dev.state.join("director/root.json")).unwrap();
    assert_eq!(
        Metadata::<Root>::from_bytes("root", &pinned)
            .unwrap()
            .version(),
        2
    );
    server.stop().await;
}
