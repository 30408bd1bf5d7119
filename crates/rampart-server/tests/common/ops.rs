//! An operator's view of a running server: a real image repository, tokens of every role,
//! and helpers to call the management API and to register devices.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rampart_repo::{ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners};
use rampart_server::Role;
use rampart_server::management::create_token;
use rustls::ClientConfig;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::*;

/// An image repository with `fw-1.0.0.bin` and `fw-2.0.0.bin` (board-a) and `fw-other.bin`
/// (board-z).
pub fn image_repo(dir: &Path) -> std::path::PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let one = |name: &str| RoleSigners {
        keys: vec![gen_key(&keys, name)],
        threshold: 1,
    };
    let repo_dir = dir.join("repo");
    let now = unix_now();
    let repo = Repository::init(
        &repo_dir,
        InitOptions {
            root: one("root"),
            targets: one("targets"),
            snapshot: one("snapshot"),
            timestamp: one("timestamp"),
            expiry_days: ExpiryDays::default(),
        },
        &open_key,
        now,
    )
    .unwrap();
    let mut requests = Vec::new();
    for (name, hardware, version) in [
        ("fw-1.0.0.bin", "board-a", "1.0.0"),
        ("fw-other.bin", "board-z", "9.0.0"),
        ("fw-2.0.0.bin", "board-a", "2.0.0"),
    ] {
        let image = dir.join(name);
        std::fs::write(&image, format!("firmware {name}").repeat(100)).unwrap();
        requests.push(ReleaseRequest {
            image,
            target_name: Some(name.to_owned()),
            hardware_ids: vec![hardware.to_owned()],
            version: version.to_owned(),
            security_version: 1,
            sbom: None,
            provenance: None,
            role: None,
        });
    }
    repo.add_releases(&requests, &open_key, now, &NoProgress)
        .unwrap();
    repo.publish(&open_key, now).unwrap();
    repo_dir
}

pub struct Ops {
    pub fx: Fixture,
    pub server: Running,
    pub operator_tls: Arc<ClientConfig>,
    pub admin: String,
    pub operator: String,
    pub viewer: String,
    pub auditor: String,
    pub repo_dir: tempfile::TempDir,
    crl: String,
}

impl Ops {
    pub async fn start(backend: Backend, name: &str) -> Ops {
        Self::start_with(backend, name, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        name: &str,
        tweak: impl FnOnce(&mut rampart_server::ServerConfig),
    ) -> Ops {
        let fx = Fixture::new(backend, name).await;
        let repo_tmp = tempfile::tempdir().unwrap();
        let repo_dir = image_repo(repo_tmp.path());
        let crl = fx
            .ca
            .crl::<&str>(
                &[],
                std::time::SystemTime::now(),
                std::time::SystemTime::now() + Duration::from_secs(86_400),
                1,
            )
            .unwrap();
        let server = start_server(&fx, &crl, &repo_dir, tweak).await;
        let audit = rampart_server::audit::AuditWriter::new(fx.db.clone());
        let token = |role| {
            let db = fx.db.clone();
            let audit = audit.clone();
            async move {
                create_token(&db, &audit, role, "test", "cli:test", unix_now())
                    .await
                    .unwrap()
                    .secret
            }
        };
        let admin = token(Role::Admin).await;
        let operator = token(Role::Operator).await;
        let viewer = token(Role::Viewer).await;
        let auditor = token(Role::Auditor).await;
        let operator_tls = fx.operator();
        Ops {
            fx,
            server,
            operator_tls,
            admin,
            operator,
            viewer,
            auditor,
            repo_dir: repo_tmp,
            crl,
        }
    }

    /// Stops the server and starts it again on the same database and repository.
    pub async fn restart(self) -> Ops {
        self.restart_with(|_| {}).await
    }

    /// [`Ops::restart`] with the configuration changed by `tweak` (as at the first start).
    pub async fn restart_with(self, tweak: impl FnOnce(&mut rampart_server::ServerConfig)) -> Ops {
        let Ops {
            fx,
            server,
            crl,
            repo_dir,
            ..
        } = self;
        server.stop().await;
        let server = start_server(&fx, &crl, &repo_dir.path().join("repo"), tweak).await;
        Ops {
            fx,
            server,
            repo_dir,
            crl,
            ..self
        }
    }

    pub async fn conn(&self) -> Conn<TlsStream<TcpStream>> {
        self.server.connect_management(&self.operator_tls).await
    }

    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let auth = format!("Bearer {token}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.conn()
            .await
            .send(method, path, &[("Authorization", &auth)], body.as_bytes())
            .await
            .unwrap()
    }

    /// A `GET` as `token` that must answer 200; its JSON body.
    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let r = self.call(token, "GET", path, None).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// Creates and starts a campaign of `spec` as the operator; its id.
    pub async fn start_campaign(&self, spec: Value) -> String {
        let r = self
            .call(
                &self.operator,
                "POST",
                "/api/v1/campaigns",
                Some(&json!({"spec": spec, "start": true})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.json()["id"].as_str().unwrap().to_owned()
    }

    /// Registers a device with these facts by polling as it.
    pub async fn device(&self, id: &str, hardware: &str, tags: &[&str]) {
        let mut dev = self.server.connect(&self.fx.device(id)).await;
        let r = dev
            .post(
                "/device/v1/poll",
                &json!({"hardware_id": hardware, "firmware_version": "0.9.0", "security_version": 1, "region": "eu", "tags": tags, "slots": {"a": "good", "b": if hardware == "board-z" { "bad" } else { "inactive" }}}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }

    /// Puts `devices` in a new group `group` whose maintenance window is closed now (it opens
    /// for a minute, half an hour away).
    pub async fn closed_window_group(&self, group: &str, devices: &[&str]) {
        let call = async |method: &str, path: &str, body: Value| {
            let r = self.call(&self.operator, method, path, Some(&body)).await;
            assert!(r.status < 300, "{method} {path}: {r:?}");
            r.json()
        };
        call("POST", "/api/v1/groups", json!({"name": group})).await;
        let members = format!("/api/v1/groups/{group}/members");
        call("POST", &members, json!({"add": devices})).await;
        let minute = (unix_now() / 60 + 30) % 60;
        let closed =
            json!({"cron": format!("{minute} * * * *"), "duration_secs": 60, "timezone": "UTC"});
        let window = format!("/api/v1/groups/{group}/maintenance-window");
        assert_eq!(call("PUT", &window, closed).await["open_now"], false);
    }

    pub async fn audit_records(&self) -> Vec<rampart_audit::AuditRecord> {
        let r = self.call(&self.auditor, "GET", "/api/v1/audit", None).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/jsonl"));
        let records = rampart_audit::parse_jsonl(&r.body).unwrap();
        rampart_audit::verify(&records).expect("the stored audit log verifies");
        records
    }
}

async fn start_server(
    fx: &Fixture,
    crl: &str,
    repo_dir: &Path,
    tweak: impl FnOnce(&mut rampart_server::ServerConfig),
) -> Running {
    let management_tls = fx.management_tls();
    let ddi_tls = rampart_pki::server_config_optional_client_auth(
        &fx.server_cert.cert_pem,
        &fx.server_cert.key_pem,
        fx.ca.cert_pem(),
        &[crl.to_string()],
    )
    .unwrap();
    fx.start(&[crl.to_string()], |config| {
        config.management_listen = Some("127.0.0.1:0".parse().unwrap());
        config.management_tls = Some(management_tls);
        config.ddi_listen = Some("127.0.0.1:0".parse().unwrap());
        config.ddi_tls = Some(ddi_tls);
        config.image_repo = Some(repo_dir.to_path_buf());
        config.refusal_summary_interval = Duration::from_millis(200);
        tweak(config);
    })
    .await
}
