//! The fleet simulator against the real update server (`rampart_server`, in-process, SQLite),
//! with a real image repository (`rampart_repo`) and director, over mutual TLS with a
//! certificate per device. Releases are assigned through the management API, as an operator
//! would, and the server's own view (inventory facts, assignment progress, reports) is checked
//! beside the simulator's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_core::metadata::{Common, RoleKeys, Root, format_expires};
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_pki::CertificateAuthority;
use rampart_repo::{
    ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners, sign_envelope,
};
use rampart_sim::{Fleet, FleetHandle, FleetSpec, InitialFirmware, LogTrust, Stats};
use rampart_testkit::http::ManagementClient;
use serde_json::{Value, json};

const PASS: &str = "sim test passphrase";
const V1: &str = "1.0.0/fw.img";
const V2: &str = "2.0.0/fw.img";
const V3: &str = "3.0.0/fw.img";
const IMAGE_LEN: usize = 64 * 1024;

fn now() -> i64 {
    rampart_agent::daemon::now_unix()
}

/// Deterministic firmware bytes per version.
fn image(version: &str) -> Vec<u8> {
    let mut v = rampart_testkit::images::release_image(version, IMAGE_LEN);
    v.truncate(IMAGE_LEN);
    v
}

fn open_key(reference: &str) -> Result<Box<dyn Signer>, rampart_keys::SignError> {
    Ok(Box::new(FileSigner::open(Path::new(reference), PASS)?))
}

fn gen_key(dir: &Path, name: &str) -> String {
    let (_, bytes) = FileSigner::generate(
        rampart_core::Scheme::Ed25519,
        PASS,
        KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
    )
    .unwrap();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Version 1 of a director root: `root` signs it, `online` holds the other roles.
fn director_root(root: Box<dyn Signer>, online: &dyn Signer) -> Vec<u8> {
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(root.key_id(), root.public_key().clone());
    keys.insert(online.key_id(), online.public_key().clone());
    let role = |id: String| RoleKeys {
        keyids: vec![id],
        threshold: 1,
    };
    let mut roles = std::collections::BTreeMap::new();
    roles.insert("root".to_owned(), role(root.key_id()));
    for r in ["targets", "snapshot", "timestamp"] {
        roles.insert(r.to_owned(), role(online.key_id()));
    }
    let body = Root {
        common: Common {
            type_: "root".into(),
            spec_version: "1.0.31".into(),
            version: 1,
            expires: format_expires(now() + 365 * 86_400),
        },
        consistent_snapshot: None,
        keys,
        roles,
    };
    sign_envelope(&body, &[root]).unwrap()
}

/// An image repository, a director, a CA, and the update server running with them.
struct World {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    ca: CertificateAuthority,
    image_root: Vec<u8>,
    director_root: Vec<u8>,
    device_url: String,
    operator: ManagementClient,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl World {
    /// A world whose server asks devices to poll every second.
    fn new() -> World {
        World::with_poll_interval(1)
    }

    fn with_poll_interval(poll_secs: u64) -> World {
        World::with_options(poll_secs, None)
    }

    /// A world whose server runs with `attestation`.
    fn with_options(
        poll_secs: u64,
        attestation: Option<rampart_server::attestation::AttestationConfig>,
    ) -> World {
        World::with_config(poll_secs, |config| config.attestation = attestation)
    }

    /// A world whose server's configuration `tweak` finishes.
    fn with_config(poll_secs: u64, tweak: impl FnOnce(&mut rampart_server::ServerConfig)) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let one = |k: String| RoleSigners {
            keys: vec![k],
            threshold: 1,
        };

        // The image repository: 2.0.0 and 3.0.0 for both boards, and the factory image 1.0.0
        // (a server that attests devices checks their measurements against the signed release
        // they run).
        let repo_dir = dir.join("repo");
        let repo = Repository::init(
            &repo_dir,
            InitOptions {
                root: one(gen_key(&keys, "root")),
                targets: one(gen_key(&keys, "targets")),
                snapshot: one(gen_key(&keys, "snapshot")),
                timestamp: one(gen_key(&keys, "timestamp")),
                expiry_days: ExpiryDays::default(),
            },
            &open_key,
            now(),
        )
        .unwrap();
        let requests: Vec<ReleaseRequest> = [("1.0.0", V1, 1), ("2.0.0", V2, 2), ("3.0.0", V3, 3)]
            .iter()
            .map(|(version, target, sv)| {
                let d = dir.join("images").join(version);
                std::fs::create_dir_all(&d).unwrap();
                let path = d.join("fw.img");
                std::fs::write(&path, image(version)).unwrap();
                ReleaseRequest {
                    image: path,
                    target_name: Some((*target).to_owned()),
                    hardware_ids: vec!["board-a".into(), "board-b".into()],
                    version: (*version).into(),
                    security_version: *sv,
                    sbom: None,
                    provenance: None,
                    role: None,
                }
            })
            .collect();
        repo.add_releases(&requests, &open_key, now(), &NoProgress)
            .unwrap();
        repo.publish(&open_key, now()).unwrap();
        let image_root = std::fs::read(repo_dir.join("metadata/1.root.json")).unwrap();

        // The director.
        let director_dir = dir.join("director");
        std::fs::create_dir_all(&director_dir).unwrap();
        let root_key = gen_key(&keys, "director-root");
        let online_key = gen_key(&keys, "director-online");
        let root_signer = open_key(&root_key).unwrap();
        let online: Arc<dyn Signer> = Arc::from(open_key(&online_key).unwrap());
        let director_root = director_root(root_signer, online.as_ref());
        std::fs::write(director_dir.join("1.root.json"), &director_root).unwrap();
        std::fs::write(director_dir.join("root.json"), &director_root).unwrap();

        // The server: device API (mutual TLS), management API, SQLite.
        let ca = CertificateAuthority::generate("Sim Test Manufacturer CA", 30).unwrap();
        let server_cert = ca.issue_server(&["127.0.0.1", "localhost"], 30).unwrap();
        let db_url = format!("sqlite://{}", dir.join("server.db").display());
        let mut config = rampart_server::ServerConfig::new(
            db_url.clone(),
            rampart_pki::server_config(
                &server_cert.cert_pem,
                &server_cert.key_pem,
                ca.cert_pem(),
                &[],
            )
            .unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        config.poll_interval_secs = poll_secs;
        config.management_listen = Some("127.0.0.1:0".parse().unwrap());
        config.management_tls = Some(
            rampart_pki::server_config_without_client_auth(
                &server_cert.cert_pem,
                &server_cert.key_pem,
            )
            .unwrap(),
        );
        config.image_repo = Some(repo_dir.clone());
        tweak(&mut config);
        config.director = Some(rampart_server::DirectorConfig::new(
            director_dir.join("root.json"),
            online,
        ));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(rampart_server::Server::bind(config))
            .expect("the update server starts");
        let device_url = format!("https://127.0.0.1:{}", server.local_addr().port());
        let management_url = format!(
            "https://127.0.0.1:{}",
            server.management_addr().unwrap().port()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server.serve(async {
            let _ = stopped.await;
        }));
        // An admin: attesting fleets have their endorsement keys approved.
        let token = rt.block_on(async {
            let db = rampart_db::Db::connect(&db_url).await.unwrap();
            let audit = rampart_server::audit::AuditWriter::new(db.clone());
            rampart_server::management::create_token(
                &db,
                &audit,
                rampart_server::Role::Admin,
                "sim-test",
                "test",
                now(),
            )
            .await
            .unwrap()
            .secret
        });
        let operator = ManagementClient::new(&management_url, &token, ca.cert_pem());
        World {
            _tmp: tmp,
            repo: repo_dir,
            ca,
            image_root,
            director_root,
            device_url,
            operator,
            rt,
            stop: Some(stop),
        }
    }

    fn spec(&self, devices: usize, prefix: &str) -> FleetSpec {
        let v1 = image("1.0.0");
        let mut spec = FleetSpec::new(
            &self.device_url,
            self.ca.cert_pem().as_bytes().to_vec(),
            self.image_root.clone(),
            self.director_root.clone(),
            InitialFirmware {
                target: "1.0.0/fw.img".into(),
                version: "1.0.0".into(),
                security_version: 1,
                sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &v1)),
                length: v1.len() as u64,
            },
        );
        spec.devices = devices;
        spec.id_prefix = prefix.into();
        spec.workers = 16;
        spec.timing.boot_spread = Duration::from_millis(500);
        spec.timing.reboot_delay = Duration::from_millis(200);
        spec.timing.max_backoff = Duration::from_secs(4);
        spec
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.operator.call(method, path, body)
    }

    fn get(&self, path: &str) -> Value {
        self.operator.get(path)
    }

    /// Assigns through `POST /api/v1/assignments`; returns the assignment id.
    fn assign(&self, body: Value) -> String {
        let (status, v) = self.call("POST", "/api/v1/assignments", Some(body.clone()));
        assert_eq!(status, 201, "assigning {body}: {v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// The server's devices by firmware version.
    fn server_versions(&self) -> Vec<(String, u64)> {
        let v = self.get("/api/v1/fleet/versions");
        let mut out: Vec<(String, u64)> = v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["firmware_version"].as_str().unwrap().to_owned(),
                    e["devices"].as_u64().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Waits until the server's inventory shows these versions.
    fn wait_for_versions(&self, want: &[(&str, u64)]) {
        let want: Vec<(String, u64)> = want.iter().map(|(v, n)| (v.to_string(), *n)).collect();
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let have = self.server_versions();
            if have == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server shows {have:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn progress(&self, assignment: &str) -> Value {
        self.get(&format!("/api/v1/assignments/{assignment}"))["devices_by_last_status"].clone()
    }

    /// A device's reports, newest first.
    fn reports(&self, device: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/reports?device={device}"))["reports"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// A device's reports once one with `status` is among them.
    fn wait_for_report(&self, device: &str, status: &str) -> Vec<Value> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let reports = self.reports(device);
            if reports.iter().any(|r| r["status"] == status) {
                return reports;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} report from {device}: {reports:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The runtime (and the server task) go with `rt`.
        let _ = &self.rt;
    }
}

/// The longest any test here waits for the fleet or the server to reach a state: a bound for a
/// stuck fleet, not a schedule (the tests wait on state, so a busy machine only makes them
/// slower).
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

/// Waits until every device has settled (nothing in progress, results stored by the server).
fn wait_settled(h: &FleetHandle) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let unsettled: Vec<_> = h
            .devices()
            .into_iter()
            .filter(|d| d.settled.is_err())
            .collect();
        if unsettled.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} devices not settled, e.g. {:#?}\n{}",
            unsettled.len(),
            unsettled[0],
            h.stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait(h: &FleetHandle, what: &str, done: impl FnMut(&Stats) -> bool) -> Stats {
    h.wait_until(SETTLE_LIMIT, done).unwrap_or_else(|s| {
        panic!(
            "timed out waiting for {what}: {s}\nlatest error: {}",
            s.last_error.as_deref().unwrap_or("none")
        )
    })
}

#[test]
fn two_hundred_devices_install_an_assigned_release() {
    // Polls every 3 s: 200 debug-build devices polling every second would spend the test's
    // CPU on handshakes.
    let w = World::with_poll_interval(3);
    let h = Fleet::build(w.spec(200, "inst"), &w.ca).unwrap().start();
    // Every device polls and enrols with its facts before the assignment selects them.
    w.wait_for_versions(&[("1.0.0", 200)]);
    let asg = w.assign(json!({"target": V2, "hardware_id": "board-a"}));
    let s = wait(&h, "200 installs", |s| {
        s.installs == 200 && s.on_version("2.0.0") == 200
    });
    assert_eq!(s.verification_failures, 0, "{s}");
    assert_eq!(s.rollbacks, 0, "{s}");
    assert_eq!(s.bricked, 0, "{s}");
    assert_eq!(s.downloads, 200, "{s}");
    wait_settled(&h);
    // The server's view: facts from the next poll, every result stored.
    w.wait_for_versions(&[("2.0.0", 200)]);
    let progress = w.progress(&asg);
    assert_eq!(progress["installed"], 200, "{progress}");
    let reports = w.reports("inst-00007");
    // The result is the last report (the server lists a device's reports in arrival order).
    let latest = &reports[0];
    assert_eq!(latest["status"], "installed", "{reports:#?}");
    assert_eq!(latest["assignment"], asg.as_str());
    assert_eq!(latest["details"]["reason"], "ok", "{latest}");
    assert_eq!(latest["details"]["version"], "2.0.0", "{latest}");
    assert_eq!(latest["details"]["slot"], "B", "{latest}");
    for earlier in ["rebooting", "downloading"] {
        assert!(
            reports.iter().any(|r| r["status"] == earlier),
            "no {earlier} report: {reports:#?}"
        );
    }
    let device = w.get("/api/v1/devices/inst-00007");
    assert_eq!(device["device"]["security_version"], 2, "{device}");
    assert_eq!(
        device["device"]["slots"],
        json!({"a": "good", "b": "active"}),
        "{device}"
    );
    let stats = h.stop();
    assert_eq!(stats.installs, 200, "{stats}");
}

#[test]
fn a_health_check_fault_rolls_one_model_back_and_the_other_installs() {
    let w = World::new();
    let mut spec = w.spec(60, "roll");
    spec.models = "board-a=50,board-b=50".parse().unwrap();
    spec.tags = rampart_sim::parse_tags("wave1=100").unwrap();
    spec.faults.health.push("3.0.0:board-a=1".parse().unwrap());
    let fleet = Fleet::build(spec, &w.ca).unwrap();
    let info = fleet.devices();
    let board_a: Vec<String> = info
        .iter()
        .filter(|d| d.hardware_id == "board-a")
        .map(|d| d.id.clone())
        .collect();
    let n_a = board_a.len() as u64;
    assert!(n_a > 0 && n_a < 60, "{n_a}");
    let h = fleet.start();
    w.wait_for_versions(&[("1.0.0", 60)]);
    // Selected by the tag the devices report.
    let asg = w.assign(json!({"target": V3, "tag": "wave1"}));
    let s = wait(&h, "every result", |s| s.installs + s.rollbacks == 60);
    assert_eq!(s.rollbacks, n_a, "{s}");
    assert_eq!(s.installs, 60 - n_a, "{s}");
    wait_settled(&h);
    w.wait_for_versions(&[("1.0.0", n_a), ("3.0.0", 60 - n_a)]);
    let progress = w.progress(&asg);
    assert_eq!(progress["rolled_back"], n_a, "{progress}");
    assert_eq!(progress["installed"], 60 - n_a, "{progress}");

    let id = &board_a[0];
    let reports = w.reports(id);
    let latest = reports
        .iter()
        .find(|r| r["status"] == "rolled_back")
        .unwrap_or_else(|| panic!("no rolled_back report: {reports:#?}"));
    assert!(
        reports
            .iter()
            .all(|r| r["created"].as_i64() <= latest["created"].as_i64()),
        "the result is the last report: {reports:#?}"
    );
    assert_eq!(
        reports
            .iter()
            .filter(|r| r["status"] == "rolled_back")
            .count(),
        1
    );
    assert_eq!(
        latest["details"]["reason"], "health_check_failed",
        "{latest}"
    );
    assert_eq!(latest["details"]["version"], "3.0.0", "{latest}");
    assert_eq!(latest["details"]["bad_slot"], "B", "{latest}");
    assert_eq!(latest["details"]["running_slot"], "A", "{latest}");
    let device = w.get(&format!("/api/v1/devices/{id}"));
    assert_eq!(device["device"]["firmware_version"], "1.0.0", "{device}");
    assert_eq!(device["device"]["security_version"], 1, "{device}");
    let status = h.device(id).unwrap();
    assert_eq!(status.version, "1.0.0");
    assert_eq!(
        status.last_result.unwrap().reason,
        rampart_boot::flow::Reason::HealthCheckFailed
    );

    // Still assigned, never installed again: polls refuse it before downloading.
    let downloads = s.downloads;
    let later = wait(&h, "refusals", |s| s.refused_rolled_back >= 2 * n_a);
    assert_eq!(later.downloads, downloads, "{later}");
    assert_eq!(later.rollbacks, n_a, "{later}");
}

#[test]
fn a_tampered_artifact_fails_its_hash_and_nothing_is_activated() {
    let w = World::new();
    // Flip a byte of the published 2.0.0 artifact (same length: the server serves it).
    let dir = w.repo.join("targets/2.0.0");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".fw.img"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[IMAGE_LEN / 2] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();

    let h = Fleet::build(w.spec(20, "tamper"), &w.ca).unwrap().start();
    w.wait_for_versions(&[("1.0.0", 20)]);
    w.assign(json!({"target": V2, "hardware_id": "board-a"}));
    let s = wait(&h, "20 refusals", |s| s.install_failures >= 20);
    assert_eq!(s.installs, 0, "{s}");
    assert_eq!(s.on_version("1.0.0"), 20, "{s}");
    for d in h.devices() {
        let last = d.last_result.as_ref().unwrap();
        assert_eq!(
            last.reason,
            rampart_boot::flow::Reason::HashMismatch,
            "{d:?}"
        );
        assert_eq!(d.running, Some(rampart_boot::ab::Slot::A), "{d:?}");
        assert_eq!(d.boots, 1, "never rebooted into it: {d:?}");
        // Never activated (devices retry the release at their next polls, so a download may be
        // in progress again).
        assert_eq!(d.primary, rampart_boot::ab::Slot::A, "{d:?}");
        assert!(matches!(d.phase, "idle" | "installing"), "{d:?}");
    }
    // The counter moves when the device refuses; its report reaches the server a moment later.
    let reports = w.wait_for_report("tamper-00003", "failed");
    let failed = reports.iter().find(|r| r["status"] == "failed").unwrap();
    assert_eq!(failed["details"]["reason"], "hash_mismatch", "{failed}");
    assert!(
        reports.iter().all(|r| r["status"] != "rebooting"),
        "{reports:#?}"
    );
    w.wait_for_versions(&[("1.0.0", 20)]);
}

#[test]
fn power_cuts_during_installs_converge_against_the_server() {
    let w = World::new();
    let mut spec = w.spec(40, "crash");
    spec.models = "board-a=50,board-b=50".parse().unwrap();
    spec.faults.crash_rate = 1.0;
    spec.faults
        .health
        .push("2.0.0:board-a=0.5".parse().unwrap());
    // Small checkpoints: cuts mid-download resume with Range requests.
    spec.timing.checkpoint_bytes = 8 * 1024;
    spec.timing.checkpoint_every = Duration::ZERO;
    let h = Fleet::build(spec, &w.ca).unwrap().start();
    w.wait_for_versions(&[("1.0.0", 40)]);
    let asg = w.assign(json!({"target": V2, "hardware_id": "board-a"}));
    let asg_b = w.assign(json!({"target": V2, "hardware_id": "board-b"}));
    let s = wait(&h, "every result", |s| s.installs + s.rollbacks == 40);
    eprintln!(
        "power cuts against the server: {} ({} bricked)",
        s.crashes, s.bricked
    );
    assert!(s.crashes >= 25, "{s}");
    assert_eq!(s.bricked, 0, "{s}");
    wait_settled(&h);
    let devices = h.devices();
    let on = |v: &str| devices.iter().filter(|d| d.version == v).count() as u64;
    assert_eq!(on("1.0.0") + on("2.0.0"), 40);
    assert_eq!(on("1.0.0"), s.rollbacks);
    for d in &devices {
        if d.hardware_id == "board-b" {
            assert_eq!(d.version, "2.0.0", "{d:?}");
        }
    }
    w.wait_for_versions(
        &[("1.0.0", on("1.0.0")), ("2.0.0", on("2.0.0"))]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>(),
    );
    let (a, b) = (w.progress(&asg), w.progress(&asg_b));
    let count = |p: &Value, k: &str| p[k].as_u64().unwrap_or(0);
    assert_eq!(
        count(&a, "installed") + count(&b, "installed"),
        on("2.0.0"),
        "{a} {b}"
    );
    assert_eq!(count(&a, "rolled_back"), on("1.0.0"), "{a}");
}

#[test]
fn devices_provisioned_with_a_log_policy_refuse_unlogged_releases() {
    let w = World::new();
    let log = rampart_log::note::NoteSigner::from_seed("log.example/sim", [7; 32]).unwrap();
    let vendor = rampart_log::note::NoteSigner::from_seed("vendor.example", [9; 32]).unwrap();
    let policy =
        rampart_log::policy::WitnessPolicy::new(log.verifier(), "log.example/sim", vec![], 0)
            .unwrap();
    let mut spec = w.spec(5, "logged");
    spec.log = Some(LogTrust {
        policy: policy.to_text(),
        release_key: vendor.verifier_key_string(),
    });
    let h = Fleet::build(spec, &w.ca).unwrap().start();
    w.wait_for_versions(&[("1.0.0", 5)]);
    w.assign(json!({"target": V2, "hardware_id": "board-a"}));
    let s = wait(&h, "refusals", |s| s.verification_failures >= 5);
    assert_eq!(s.downloads, 0, "{s}");
    // The counter moves when the device refuses; its report reaches the server a moment later.
    let reports = w.wait_for_report("logged-00001", "verification_failed");
    let refused = reports
        .iter()
        .find(|r| r["status"] == "verification_failed")
        .unwrap();
    assert_eq!(
        refused["details"]["reason"], "not_in_transparency_log",
        "{refused}"
    );
}

#[test]
fn bad_trust_anchors_and_server_cas_are_refused_at_build_time() {
    let w = World::new();
    let mut spec = w.spec(2, "bad");
    spec.director_root = b"{}".to_vec();
    let e = Fleet::build(spec, &w.ca).unwrap_err().to_string();
    assert!(e.contains("director root"), "{e}");
    let mut spec = w.spec(2, "bad");
    spec.image_root = w.director_root.clone();
    spec.director_root = b"junk".to_vec();
    let e = Fleet::build(spec, &w.ca).unwrap_err().to_string();
    assert!(e.contains("root"), "{e}");
    let mut spec = w.spec(2, "bad");
    spec.server_ca_pem = b"not a certificate".to_vec();
    let e = Fleet::build(spec, &w.ca).unwrap_err().to_string();
    assert!(e.contains("server CA"), "{e}");
}

/// `download_only` from the real server: a campaign of that type assigns the release with
/// `"type": "download_only"` in the poll answer; devices download and verify it into the
/// inactive slot, report `downloaded` and do not activate it. A forced assignment of the same
/// release afterwards activates it without downloading it again.
#[test]
fn download_only_campaigns_stage_the_release_and_a_forced_assignment_activates_it() {
    let w = World::new();
    let fleet = Fleet::build(w.spec(12, "stage"), &w.ca).unwrap();
    let ids: Vec<String> = fleet.devices().into_iter().map(|d| d.id).collect();
    let h = fleet.start();
    w.wait_for_versions(&[("1.0.0", 12)]);
    let (status, created) = w.call(
        "POST",
        "/api/v1/campaigns",
        Some(json!({"spec": {
            "name": "stage 2.0.0",
            "release": V2,
            "targets": {"devices": ids},
            "phases": {"canary": {"percent": 100}},
            "update_type": "download_only",
        }, "start": true})),
    );
    assert_eq!(status, 201, "{created}");
    let s = wait(&h, "12 staged downloads", |s| s.downloaded == 12);
    assert_eq!(s.installs, 0, "{s}");
    assert_eq!(s.downloads, 12, "{s}");
    wait_settled(&h);
    for d in h.devices() {
        assert_eq!(d.version, "1.0.0", "{d:?}");
        assert_eq!(d.boots, 1, "not activated: {d:?}");
        assert_eq!(d.primary, rampart_boot::ab::Slot::A, "{d:?}");
    }
    let reports = w.reports("stage-00004");
    let downloaded = reports
        .iter()
        .find(|r| r["status"] == "downloaded")
        .unwrap_or_else(|| panic!("{reports:#?}"));
    assert_eq!(downloaded["details"]["reason"], "ok", "{downloaded}");
    assert_eq!(downloaded["details"]["slot"], "B", "{downloaded}");
    assert!(reports.iter().all(|r| r["status"] != "rebooting"));
    // The staged slot stays marked bad (never booted until activated); the server learns it
    // from the next poll's slot facts.
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let device = w.get("/api/v1/devices/stage-00004");
        if device["device"]["slots"] == json!({"a": "active", "b": "bad"}) {
            break;
        }
        assert!(Instant::now() < deadline, "{device}");
        std::thread::sleep(Duration::from_millis(100));
    }

    w.assign(json!({"target": V2, "hardware_id": "board-a"}));
    let s = wait(&h, "12 installs", |s| s.installs == 12);
    assert_eq!(
        s.downloads, 12,
        "activated from the slot, not downloaded again: {s}"
    );
    wait_settled(&h);
    w.wait_for_versions(&[("2.0.0", 12)]);
}

#[test]
fn an_attested_fleet_installs_where_attestation_is_required_and_a_fleet_without_tpms_is_held() {
    let attestation = rampart_server::attestation::AttestationConfig {
        require: true,
        freshness: Duration::from_secs(4),
        ..Default::default()
    };
    let w = World::with_options(1, Some(attestation));
    let mut spec = w.spec(12, "att");
    spec.attest = true;
    let mut fleet = Fleet::build(spec, &w.ca).unwrap();
    approve_endorsement_keys(&w, &mut fleet);
    let attested = fleet.start();
    let plain = Fleet::build(w.spec(3, "plain"), &w.ca).unwrap().start();
    w.wait_for_versions(&[("1.0.0", 15)]);
    w.assign(json!({"target": V2, "hardware_id": "board-a"}));

    let s = wait(&attested, "12 attested installs", |s| {
        s.installs == 12 && s.on_version("2.0.0") == 12 || s.attestation_failures > 30
    });
    assert_eq!(s.attestation_failures, 0, "{s}: {:?}", s.last_error);
    assert_eq!(s.verification_failures, 0, "{s}");
    assert!(s.attested >= 12, "{s}");
    // After the reboot into 2.0.0 the devices measure the new release and are attested on it.
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let view = w.get("/api/v1/attestation/devices/att-00004")["attestation"].clone();
        if view["outcome"] == "attested" && view["release"] == V2 {
            break;
        }
        assert!(Instant::now() < deadline, "not attested on {V2}: {view}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Devices without a TPM never attest: their assignment is withheld.
    let p = plain.stats();
    assert_eq!(p.on_version("1.0.0"), 3, "{p}");
    assert_eq!(p.installs, 0, "{p}");
    assert!(p.attestation_failures > 0, "{p}");
    assert!(
        p.last_error
            .as_deref()
            .unwrap_or("")
            .contains("no TPM configured"),
        "{p}"
    );
    attested.stop();
    plain.stop();
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Quarantine (decision 0031) with simulated devices: every device is quarantined through the
/// management API; the cooperative ones check the signed statement as the agent does and
/// acknowledge it once (the server stores their hook's outcome), the uncooperative ones ignore
/// it and stay quarantined all the same. After the release, the cooperative ones acknowledge
/// the signed `released` statement.
#[test]
fn simulated_devices_acknowledge_a_quarantine_and_uncooperative_ones_stay_quarantined() {
    let w = World::new();
    let mut spec = w.spec(8, "quar");
    spec.faults.uncooperative_rate = 0.5;
    let h = Fleet::build(spec, &w.ca).unwrap().start();
    w.wait_for_versions(&[("1.0.0", 8)]);
    let ids: Vec<String> = (0..8).map(|i| format!("quar-{i:05}")).collect();
    for id in &ids {
        let (status, v) = w.call(
            "POST",
            &format!("/api/v1/devices/{id}/quarantine"),
            Some(json!({"reason": "game day"})),
        );
        assert_eq!(status, 201, "{v}");
    }
    let acknowledged = || {
        w.get("/api/v1/quarantine")["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["ack_hook"] == "succeeded")
            .count() as u64
    };
    let s = wait(&h, "cooperative devices acknowledging", |s| {
        s.quarantine_ignored >= 8 && s.quarantine_acks > 0 && s.quarantine_acks == acknowledged()
    });
    let cooperative = s.quarantine_acks;
    assert!(cooperative < 8, "every device acknowledged: {s}");
    assert_eq!(
        w.get("/api/v1/quarantine")["devices"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    // Acknowledged once each, however many polls carried the statement since.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(h.stats().quarantine_acks, cooperative);
    for id in &ids {
        let (status, v) = w.call("POST", &format!("/api/v1/devices/{id}/release"), None);
        assert_eq!(status, 200, "{v}");
    }
    wait(&h, "the release acknowledged", |s| {
        s.quarantine_acks == 2 * cooperative
    });
    h.stop();
}

/// The software TPMs carry no EK certificate: the operator approves their EKs.
fn approve_endorsement_keys(w: &World, fleet: &mut Fleet) {
    let eks = fleet.endorsement_keys().unwrap();
    assert_eq!(eks.len(), fleet.devices().len());
    for (id, ek) in eks {
        let (status, v) = w.call(
            "POST",
            "/api/v1/attestation/approved-eks",
            Some(json!({"ek_public": base64_encode(&ek), "note": id})),
        );
        assert!(status == 200 || status == 201, "approving {id}'s EK: {v}");
    }
}

/// Game-day playbooks: every compromise signal quarantines and re-images at once.
const GAME_DAY_PLAYBOOKS: &str = r#"
[playbooks.attestation_failed.default]
now = ["quarantine", "reimage", "alert"]

[playbooks.unknown_firmware.default]
now = ["quarantine", "reimage", "alert"]
"#;

/// Every device an incident of a compromise signal names, with its incidents' detectors (a
/// stale attestation on a loaded test machine only alerts, and is not a compromise).
fn devices_in_incidents(w: &World) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::<String, Vec<String>>::new();
    let list = w.get("/api/v1/incidents?limit=500");
    for i in list["incidents"].as_array().unwrap() {
        let view = w.get(&format!("/api/v1/incidents/{}", i["id"].as_str().unwrap()));
        if i["detector"] == "attestation_stale" {
            continue;
        }
        for d in view["devices"].as_array().unwrap() {
            out.entry(d["device_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(i["detector"].as_str().unwrap().to_owned());
        }
    }
    out
}

/// The devices the server holds quarantined.
fn quarantined(w: &World) -> std::collections::BTreeSet<String> {
    w.get("/api/v1/quarantine?limit=1000")["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Issue 16's game day at small scale, against the real server: one device of 200 per
/// compromise kind. Every compromised device must be named by an incident (detect), held in
/// quarantine by the server and told so in a signed statement (contain), and re-imaged on both
/// slots (recover); no healthy device may be quarantined. Fails if a detector, the
/// quarantine, the re-image or the playbooks' automation breaks.
#[test]
fn a_game_day_detects_contains_and_recovers_every_compromised_device_and_no_healthy_one() {
    use rampart_sim::{Compromise, CompromiseKind};
    // Quotes stay fresh long enough for 200 devices on a loaded machine; the server asks
    // again after half of it, so a failing attestation shows within about 10 s.
    let attestation = rampart_server::attestation::AttestationConfig {
        freshness: Duration::from_secs(20),
        ..Default::default()
    };
    let incidents = rampart_server::incidents::IncidentConfig::from_toml(GAME_DAY_PLAYBOOKS)
        .expect("the game-day playbooks parse");
    let w = World::with_config(1, |config| {
        config.attestation = Some(attestation);
        config.incidents = incidents;
    });
    let mut spec = w.spec(200, "gd");
    spec.attest = true;
    spec.compromises = CompromiseKind::ALL
        .into_iter()
        .map(|kind| Compromise {
            kind,
            count: 1,
            // Struck by hand once the fleet is enrolled and attested.
            at: Duration::from_secs(86_400),
        })
        .collect();
    let mut fleet = Fleet::build(spec, &w.ca).unwrap();
    approve_endorsement_keys(&w, &mut fleet);
    let h = fleet.start();
    w.wait_for_versions(&[("1.0.0", 200)]);
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let status = w.get("/api/v1/attestation/status");
        if status["attested"].as_u64() == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every device attested: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A healthy fleet: no incident names a device, nobody is quarantined.
    assert_eq!(devices_in_incidents(&w), Default::default());
    assert!(quarantined(&w).is_empty());

    h.strike_now();
    let victims: std::collections::BTreeSet<String> = h
        .game_day()
        .compromised
        .iter()
        .map(|r| r.device.clone())
        .collect();
    assert_eq!(victims.len(), 4);
    let deadline = Instant::now() + SETTLE_LIMIT;
    let (named, held, day) = loop {
        let named = devices_in_incidents(&w);
        let held = quarantined(&w);
        let day = h.game_day();
        let detected = victims.iter().all(|v| named.contains_key(v));
        if detected && victims.is_subset(&held) && day.contained() == 4 && day.recovered() == 4 {
            break (named, held, day);
        }
        assert!(
            Instant::now() < deadline,
            "the game day did not finish: incidents name {named:?}; quarantined {held:?}; {day:#?}\n{}",
            h.stats()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // What detected each kind.
    for r in &day.compromised {
        let detectors = &named[&r.device];
        // A measured-boot compromise shows only through attestation; firmware the registry does
        // not know (or a lie about it) shows through the reported version or the measurement.
        let want: &[&str] = match r.kind {
            CompromiseKind::TamperedSlot | CompromiseKind::FailingAttestation => {
                &["attestation_failed"]
            }
            CompromiseKind::ForgedReport | CompromiseKind::StolenKey => {
                &["unknown_firmware", "attestation_failed"]
            }
        };
        assert!(
            detectors.iter().any(|d| want.contains(&d.as_str())),
            "{} ({}) detected by {detectors:?}",
            r.device,
            r.kind
        );
        // Re-imaged: reported installed with both slots holding the release.
        let reports = w.wait_for_report(&r.device, "installed");
        assert!(
            reports
                .iter()
                .any(|rep| rep["details"]["reimaged"] == json!(["a", "b"])),
            "{}: {reports:#?}",
            r.device
        );
    }
    // No healthy device named, quarantined, or told it is.
    assert_eq!(
        named
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        victims
    );
    assert_eq!(held, victims);
    assert!(day.healthy_quarantined.is_empty(), "{day:#?}");
    let s = h.stop();
    assert_eq!(s.bricked, 0, "{s}");
}

// ---- supply-chain risk: a remediation campaign end to end (issue 17) ----------------------

const V4_VULNERABLE: &str = "4.0.0/fw.img";
const V5_FIXED: &str = "5.0.0/fw.img";

const OSV_PYPI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);

/// Adds 4.0.0 (its CycloneDX SBOM pins jinja2 2.10, known-vulnerable) and 5.0.0 (jinja2 3.1.6)
/// to the world's image repository and waits until the server lists them.
fn add_sbom_releases(w: &World) {
    // The hosted view notices a new timestamp.json by its modification time and length: write
    // it at least a second after the server read the first one.
    std::thread::sleep(Duration::from_millis(1100));
    let dir = w.repo.parent().unwrap().join("sbom-releases");
    std::fs::create_dir_all(&dir).unwrap();
    let mut requests = Vec::new();
    for (version, target, jinja2, sv) in [
        ("4.0.0", V4_VULNERABLE, "2.10", 4),
        ("5.0.0", V5_FIXED, "3.1.6", 5),
    ] {
        let image_path = dir.join(format!("{version}.img"));
        std::fs::write(&image_path, image(version)).unwrap();
        let purl = format!("pkg:pypi/jinja2@{jinja2}");
        let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "components": [{"type": "library", "bom-ref": purl, "name": "jinja2",
                            "version": jinja2, "purl": purl}]});
        let sbom_path = dir.join(format!("{version}.cdx.json"));
        std::fs::write(&sbom_path, sbom.to_string()).unwrap();
        requests.push(ReleaseRequest {
            image: image_path,
            target_name: Some(target.to_owned()),
            hardware_ids: vec!["board-a".into(), "board-b".into()],
            version: version.into(),
            security_version: sv,
            sbom: Some(sbom_path),
            provenance: None,
            role: None,
        });
    }
    let repo = Repository::open(&w.repo).unwrap();
    repo.add_releases(&requests, &open_key, now(), &NoProgress)
        .unwrap();
    repo.publish(&open_key, now()).unwrap();
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let listed = w.get("/api/v1/releases");
        let has = |t: &str| {
            listed["releases"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["target"] == t))
        };
        if has(V4_VULNERABLE) && has(V5_FIXED) {
            return;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The real PyPI advisories naming jinja2.
fn jinja2_advisories() -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(OSV_PYPI)
        .unwrap_or_else(|e| panic!("{OSV_PYPI}: {e} (the shared vectors are needed)"))
    {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let names_jinja2 = record["affected"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["package"]["name"].as_str() == Some("jinja2"));
        if names_jinja2 {
            out.push(record);
        }
    }
    assert!(out.len() >= 3, "{} jinja2 advisories", out.len());
    out
}

/// Runs a campaign of `release` for `devices` (all at once) and waits until it completes.
fn campaign_to_completion(w: &World, name: &str, release: &str, devices: &[String]) -> Value {
    let (status, created) = w.call(
        "POST",
        "/api/v1/campaigns",
        Some(json!({"spec": {"name": name, "release": release,
            "targets": {"devices": devices}, "phases": {"canary": {"percent": 100}}},
            "start": true})),
    );
    assert_eq!(status, 201, "{created}");
    wait_campaign_completed(w, created["id"].as_str().unwrap())
}

fn wait_campaign_completed(w: &World, id: &str) -> Value {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let c = w.get(&format!("/api/v1/campaigns/{id}"));
        if c["status"] == "completed" {
            return c;
        }
        assert!(
            Instant::now() < deadline && c["status"] != "aborted" && c["status"] != "paused",
            "{c}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn posture_row(w: &World, by: &str, key: &str) -> Value {
    let p = w.get(&format!("/api/v1/risk/posture?by={by}"));
    p["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no row {key:?}: {p}"))
}

#[test]
fn a_remediation_campaign_moves_exactly_the_affected_devices_to_the_fixed_release() {
    let w = World::new();
    let fleet = Fleet::build(w.spec(10, "risk"), &w.ca).unwrap();
    let ids: Vec<String> = fleet.devices().into_iter().map(|d| d.id).collect();
    let (vulnerable, clean) = ids.split_at(6);
    let h = fleet.start();
    w.wait_for_versions(&[("1.0.0", 10)]);
    add_sbom_releases(&w);
    // Six devices on the vulnerable release, four on the fixed one.
    campaign_to_completion(&w, "to 4.0.0", V4_VULNERABLE, vulnerable);
    campaign_to_completion(&w, "to 5.0.0", V5_FIXED, clean);
    wait(&h, "6 on 4.0.0 and 4 on 5.0.0", |s| {
        s.on_version("4.0.0") == 6 && s.on_version("5.0.0") == 4
    });
    wait_settled(&h);
    w.wait_for_versions(&[("4.0.0", 6), ("5.0.0", 4)]);
    let installs_before = h.stats().installs;

    let (status, counts) = w.call(
        "POST",
        "/api/v1/risk/advisories",
        Some(json!({"advisories": jinja2_advisories()})),
    );
    assert_eq!(status, 200, "{counts}");
    let before = posture_row(&w, "release", V4_VULNERABLE);
    assert_eq!(before["affected_devices"], 6, "{before}");
    assert_eq!(posture_row(&w, "release", V5_FIXED)["score"], 0);
    let advisory = before["worst"]["id"].as_str().unwrap().to_owned();

    let (status, remediation) = w.call(
        "POST",
        &format!("/api/v1/risk/advisories/{advisory}/remediate"),
        Some(json!({"release": V5_FIXED, "start": true,
                    "options": {"phases": {"canary": {"percent": 100}}}})),
    );
    assert_eq!(status, 201, "{remediation}");
    let mut in_campaign: Vec<String> = remediation["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    in_campaign.sort();
    assert_eq!(in_campaign, vulnerable, "exactly the affected devices");
    let done = wait_campaign_completed(&w, remediation["id"].as_str().unwrap());
    assert_eq!(done["figures"]["total"]["devices"], 6, "{done}");
    assert_eq!(done["figures"]["total"]["succeeded"], 6, "{done}");

    let s = wait(&h, "10 on 5.0.0", |s| s.on_version("5.0.0") == 10);
    // Only the six were updated: the clean four installed nothing more.
    assert_eq!(s.installs, installs_before + 6, "{s}");
    wait_settled(&h);
    w.wait_for_versions(&[("5.0.0", 10)]);
    for d in h.devices() {
        assert_eq!(d.version, "5.0.0", "{d:?}");
    }
    // The posture shows the fleet clean.
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let p = w.get("/api/v1/risk/posture?by=device");
        let rows = p["rows"].as_array().unwrap();
        if rows.len() == 10 && rows.iter().all(|r| r["affected_devices"] == 0) {
            for r in rows {
                assert_eq!(r["score"], 0, "{r}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "{p}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let detail = w.get(&format!("/api/v1/risk/advisories/{advisory}"));
    assert_eq!(detail["advisories"][0]["affected_count"], 0, "{detail}");
    h.stop();
}
