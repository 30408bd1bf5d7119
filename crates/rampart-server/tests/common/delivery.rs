//! The image-repository fixture shared by the delivery tests (tests/director.rs,
//! tests/artifact_store.rs): a real image repository written by `rampart_repo` with three
//! releases, a director root and online key, a CA and server certificate, a database, the server
//! over real mutual TLS on loopback, devices with their trusted roots, assignments with proper
//! audit records; HTTP through the test kit's client (which also reads `HEAD` answers).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rampart_agent::director::pin_director_root;
use rampart_agent::server_client::{DeviceTls, ServerClient, UpdateError};
use rampart_agent::server_update::{UpdateOutcome, update};
use rampart_core::metadata::{Common, RoleKeys, Root, TargetFile, format_expires};
use rampart_db::{Assignment, AuditLine, Db};
use rampart_keys::Signer;
use rampart_pki::{CertificateAuthority, IssuedCert};
use rampart_repo::{
    ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners, sign_envelope,
};
use rampart_server::{DirectorConfig, Server, ServerConfig, ServerError};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::{Backend, database_url, gen_key, open_key, unix_now};

pub const DAY: i64 = 86_400;
pub const FIRMWARE: &str = "1.0.0/fw.img";
pub const FIRMWARE_2: &str = "2.0.0/fw.img";
pub const OTHER: &str = "1.0.0/other.img";
pub const IMAGE_LEN: usize = 300_000;

// ---------------------------------------------------------------------------
// Keys, image repository, director root

/// Deterministic bytes that differ per seed.
pub fn image(seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (0..IMAGE_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

pub fn release(
    base: &Path,
    target: &str,
    bytes: &[u8],
    sbom: bool,
    version: &str,
    security: u64,
) -> ReleaseRequest {
    let dir = base.join("images").join(target.replace('/', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(target.rsplit('/').next().unwrap());
    std::fs::write(&path, bytes).unwrap();
    let sbom = sbom.then(|| {
        let p = dir.join("sbom.cdx.json");
        std::fs::write(
            &p,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1}"#,
        )
        .unwrap();
        p
    });
    ReleaseRequest {
        image: path,
        target_name: Some(target.to_owned()),
        hardware_ids: vec!["board-a".into()],
        version: version.into(),
        security_version: security,
        sbom,
        provenance: None,
        role: None,
    }
}

/// A director root: `root_keys` sign it, `online` holds targets/snapshot/timestamp.
pub fn director_root(
    version: u64,
    root_keys: &[rampart_core::Key],
    online: &dyn Signer,
    signers: &[Box<dyn Signer>],
) -> Vec<u8> {
    let mut keys = std::collections::BTreeMap::new();
    let mut ids = Vec::new();
    for k in root_keys {
        keys.insert(k.key_id(), k.clone());
        ids.push(k.key_id());
    }
    keys.insert(online.key_id(), online.public_key().clone());
    let mut roles = std::collections::BTreeMap::new();
    roles.insert(
        "root".to_owned(),
        RoleKeys {
            keyids: ids,
            threshold: 1,
        },
    );
    for r in ["targets", "snapshot", "timestamp"] {
        roles.insert(
            r.to_owned(),
            RoleKeys {
                keyids: vec![online.key_id()],
                threshold: 1,
            },
        );
    }
    let root = Root {
        common: Common {
            type_: "root".into(),
            spec_version: "1.0.31".into(),
            version,
            expires: format_expires(unix_now() + 365 * DAY),
        },
        consistent_snapshot: None,
        keys,
        roles,
    };
    sign_envelope(&root, signers).unwrap()
}

// ---------------------------------------------------------------------------
// Fixture

pub struct Fixture {
    pub dir: PathBuf,
    pub repo_dir: PathBuf,
    pub director_dir: PathBuf,
    pub director_root_key: String,
    pub online_key: String,
    pub ca: CertificateAuthority,
    pub server_cert: IssuedCert,
    pub db_url: String,
    pub db: Db,
    pub audit_seq_guard: tokio::sync::Mutex<()>,
    pub _tmp: tempfile::TempDir,
}

impl Fixture {
    pub async fn new(backend: Backend, name: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let one = |k: String| RoleSigners {
            keys: vec![k],
            threshold: 1,
        };
        let repo_dir = dir.join("repo");
        let now = unix_now();
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
            now,
        )
        .unwrap();
        repo.add_releases(
            &[
                release(&dir, FIRMWARE, &image(1), true, "1.0.0", 1),
                release(&dir, OTHER, &image(2), false, "1.0.0", 1),
                release(&dir, FIRMWARE_2, &image(3), false, "2.0.0", 2),
            ],
            &open_key,
            now,
            &NoProgress,
        )
        .unwrap();
        repo.publish(&open_key, now).unwrap();

        let director_dir = dir.join("director");
        std::fs::create_dir_all(&director_dir).unwrap();
        let director_root_key = gen_key(&keys, "director-root");
        let online_key = gen_key(&keys, "director-online");
        let root_signer = open_key(&director_root_key).unwrap();
        let online = open_key(&online_key).unwrap();
        let root = director_root(
            1,
            &[root_signer.public_key().clone()],
            online.as_ref(),
            &[root_signer],
        );
        std::fs::write(director_dir.join("1.root.json"), &root).unwrap();
        std::fs::write(director_dir.join("root.json"), &root).unwrap();

        let db_url = database_url(backend, &dir, name).await;
        let db = Db::connect(&db_url).await.unwrap();
        let ca = CertificateAuthority::generate("Rampart Test Manufacturer CA", 30).unwrap();
        let server_cert = ca.issue_server(&["localhost", "127.0.0.1"], 30).unwrap();
        Fixture {
            dir,
            repo_dir,
            director_dir,
            director_root_key,
            online_key,
            ca,
            server_cert,
            db_url,
            db,
            audit_seq_guard: tokio::sync::Mutex::new(()),
            _tmp: tmp,
        }
    }

    pub fn online_signer(&self) -> Arc<dyn Signer> {
        Arc::from(open_key(&self.online_key).unwrap())
    }

    pub async fn start(&self, tweak: impl FnOnce(&mut ServerConfig)) -> Running {
        let tls = rampart_pki::server_config(
            &self.server_cert.cert_pem,
            &self.server_cert.key_pem,
            self.ca.cert_pem(),
            &[],
        )
        .unwrap();
        let mut config =
            ServerConfig::new(self.db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
        config.image_repo = Some(self.repo_dir.clone());
        config.director = Some(DirectorConfig::new(
            self.director_dir.join("root.json"),
            self.online_signer(),
        ));
        tweak(&mut config);
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let metrics = server.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            metrics,
            stop,
            task,
        }
    }

    /// A device certificate, registered in the inventory.
    pub async fn device(&self, id: &str) -> Device {
        let cert = self.ca.issue_device(id, 30).unwrap();
        self.db.register_if_new(id, unix_now()).await.unwrap();
        let state = self.dir.join(format!("state-{id}"));
        std::fs::create_dir_all(state.join("metadata")).unwrap();
        std::fs::copy(
            self.repo_dir.join("metadata/1.root.json"),
            state.join("metadata/root.json"),
        )
        .unwrap();
        pin_director_root(
            &state,
            &std::fs::read(self.director_dir.join("1.root.json")).unwrap(),
        )
        .unwrap();
        Device {
            id: id.to_owned(),
            config: rampart_pki::client_config(self.ca.cert_pem(), &cert.cert_pem, &cert.key_pem)
                .unwrap(),
            tls: DeviceTls {
                server_ca_pem: self.ca.cert_pem().as_bytes().to_vec(),
                cert_pem: cert.cert_pem.as_bytes().to_vec(),
                key_pem: cert.key_pem.as_bytes().to_vec(),
            },
            state,
        }
    }

    /// Assigns `target` to `devices`, with a proper audit record.
    pub async fn assign(&self, id: &str, target: &str, devices: &[&Device]) {
        self.assign_kind(id, target, devices, false).await
    }

    /// Assigns `target` (forced), as a re-image when `reimage` is set.
    pub async fn assign_kind(&self, id: &str, target: &str, devices: &[&Device], reimage: bool) {
        let _guard = self.audit_seq_guard.lock().await;
        let last = self.db.last_audit().await.unwrap();
        let last = last.map(|l| {
            rampart_audit::parse_jsonl(l.line.as_bytes())
                .unwrap()
                .remove(0)
        });
        let mut chain = rampart_audit::AuditChain::resume(last.as_ref()).unwrap();
        let now = unix_now();
        let record = chain
            .append(
                now,
                "token:test",
                "assignment.created",
                id,
                json!({"target": target}),
            )
            .unwrap();
        let line = AuditLine {
            seq: record.seq,
            line: rampart_audit::to_json_line(&record),
        };
        let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
        self.db
            .create_assignment(
                &Assignment {
                    id: id.to_owned(),
                    target: target.to_owned(),
                    selector: json!({"devices": ids}),
                    created: now,
                    created_by: "token:test".into(),
                    device_count: ids.len() as i64,
                    update_type: "forced".into(),
                    forced_at: 0,
                    reimage,
                },
                &ids,
                &line,
            )
            .await
            .unwrap();
    }

    /// The image repository's entry for a target, as the repository lists it.
    pub fn image_target(&self, target: &str) -> TargetFile {
        let repo = Repository::open(&self.repo_dir).unwrap();
        repo.targets_role("targets").unwrap().targets[target].clone()
    }

    /// The consistent-snapshot artifact path of a target (below targets/).
    pub fn artifact_path(&self, target: &str) -> String {
        let info = self.image_target(target);
        let (dir, name) = target.rsplit_once('/').unwrap();
        format!("{dir}/{}.{name}", info.hashes["sha256"])
    }
}

pub struct Device {
    pub id: String,
    pub config: Arc<ClientConfig>,
    pub tls: DeviceTls,
    pub state: PathBuf,
}

impl Device {
    pub fn out(&self) -> PathBuf {
        self.state.join("fw.img")
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub metrics: Arc<rampart_server::Metrics>,
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    pub async fn connect(
        &self,
        device: &Device,
    ) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        Conn::new(
            TlsConnector::from(device.config.clone())
                .connect(name, tcp)
                .await
                .unwrap(),
        )
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn responses(&self, route: &str, code: u16) -> u64 {
        let text = self.metrics.render();
        let series =
            format!("rampart_server_http_responses_total{{route=\"{route}\",code=\"{code}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.parse().unwrap())
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server shut down in time")
            .unwrap()
            .unwrap();
    }
}

/// Runs the device agent's update (blocking I/O) against `url` at time `now`.
pub async fn agent_update(
    device: &Device,
    url: &str,
    now: i64,
) -> Result<UpdateOutcome, UpdateError> {
    let (tls, state, out, url) = (
        device.tls.clone(),
        device.state.clone(),
        device.out(),
        url.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let client = ServerClient::new(&url, &tls)?;
        update(&state, &client, "board-a", &out, now)
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------
// The HTTP client and message reader: the test kit's

pub use rampart_testkit::http::Conn;

/// What every artifact answer must honour, whatever stores the bytes: the whole file with its
/// ETag, single ranges (206, Content-Range), unsatisfiable ranges (416), ignored multi-ranges and
/// nonsense (200), If-None-Match (304), If-Range (206 only for the same ETag), HEAD.
pub async fn assert_artifact_http_semantics<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    url: &str,
    data: &[u8],
    etag: &str,
) {
    let url = url.to_owned();
    let etag = etag.to_owned();
    let len = data.len();
    let full = conn.get(&url, &[]).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.header("etag"), Some(etag.as_str()));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        full.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert_eq!(full.body, data);

    let cases: [(&str, usize, usize); 4] = [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, len - 1),
        ("bytes=-500", len - 500, len - 1),
        ("bytes=299990-999999999", 299_990, len - 1),
    ];
    for (range, start, end) in cases {
        let part = conn.get(&url, &[("Range", range)]).await;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(part.body, data[start..=end], "{range}");
        assert_eq!(part.header("etag"), Some(etag.as_str()));
    }
    // Unsatisfiable: 416 with the length.
    for range in [format!("bytes={len}-"), "bytes=-0".to_owned()] {
        let refused = conn.get(&url, &[("Range", &range)]).await;
        refused.error(416, "range_not_satisfiable");
        assert_eq!(
            refused.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
    }
    // Several ranges and nonsense are ignored: the whole artifact.
    for range in ["bytes=0-1,5-6", "bytes=9-3", "pages=1-2"] {
        let whole = conn.get(&url, &[("Range", range)]).await;
        assert_eq!((whole.status, whole.body.len()), (200, len), "{range}");
    }
    // If-None-Match: 304 without a body.
    let not_modified = conn.get(&url, &[("If-None-Match", &etag)]).await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(
        conn.get(&url, &[("If-None-Match", "\"other\"")])
            .await
            .status,
        200
    );
    // If-Range: the range only if the ETag still matches, else the whole new artifact.
    let resumed = conn
        .get(&url, &[("Range", "bytes=100-"), ("If-Range", &etag)])
        .await;
    assert_eq!(
        (resumed.status, resumed.body.as_slice()),
        (206, &data[100..])
    );
    let changed = conn
        .get(&url, &[("Range", "bytes=100-"), ("If-Range", "\"0000\"")])
        .await;
    assert_eq!((changed.status, changed.body.len()), (200, len));
    // HEAD: the headers only.
    let head = conn.send("HEAD", &url, &[], b"").await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert_eq!(
        conn.get(&url, &[("Range", "bytes=0-0")]).await.body,
        data[..1]
    );
}
