//! Uploads through the agent's own client ([`ServerClient`], mutual TLS) to a small HTTPS
//! server implementing the evidence routes, with cuts injected.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rampart_incident::evidence::Bundle;
use rustls::{ServerConnection, StreamOwned};

use super::*;
use crate::server_client::DeviceTls;

/// What the server holds and how it misbehaves.
#[derive(Default)]
struct RouteState {
    /// Per id: the bytes received in order, and the SHA-256 once completed.
    uploads: HashMap<String, (Vec<u8>, Option<String>)>,
    /// Cut the connection in the middle of these PUTs (counted from 1).
    cut_puts: Vec<u32>,
    /// Answer every request 503.
    down: bool,
    /// Refuse completed bundles as the server does one that fails a check (422).
    refuse: bool,
    puts: u32,
    bytes_put: u64,
    largest_put: usize,
    /// The device key the completed bundle must be signed with.
    device_spki: Vec<u8>,
}

type Routes = Arc<Mutex<RouteState>>;

struct TestServer {
    url: String,
    routes: Routes,
    server_ca_pem: String,
    device: rampart_pki::IssuedCert,
}

impl TestServer {
    fn start() -> TestServer {
        let (ca, device) = pki();
        let server = ca.issue_server(&["127.0.0.1"], 30).unwrap();
        let now = SystemTime::now();
        let crl = ca
            .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
            .unwrap();
        let config =
            rampart_pki::server_config(&server.cert_pem, &server.key_pem, ca.cert_pem(), &[crl])
                .unwrap();
        let routes: Routes = Arc::new(Mutex::new(RouteState {
            device_spki: certificate_spki(&device.cert_der).unwrap(),
            ..RouteState::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let shared = Arc::clone(&routes);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                let routes = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, config, routes));
            }
        });
        TestServer {
            url,
            routes,
            server_ca_pem: ca.cert_pem().to_owned(),
            device,
        }
    }

    fn client(&self) -> ServerClient {
        ServerClient::new(
            &self.url,
            &DeviceTls {
                server_ca_pem: self.server_ca_pem.as_bytes().to_vec(),
                cert_pem: self.device.cert_pem.as_bytes().to_vec(),
                key_pem: self.device.key_pem.as_bytes().to_vec(),
            },
        )
        .unwrap()
    }

    fn key(&self) -> DeviceKey {
        DeviceKey::from_pem(
            self.device.cert_pem.as_bytes(),
            self.device.key_pem.as_bytes(),
        )
        .unwrap()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RouteState> {
        self.routes.lock().unwrap()
    }
}

/// One request per connection (the answer closes it).
fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>, routes: Routes) {
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, stream);
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut start = lines.next().unwrap_or("").split(' ');
    let (method, target) = (start.next().unwrap_or(""), start.next().unwrap_or(""));
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    let cut = method == "PUT" && {
        let mut st = routes.lock().unwrap();
        st.puts += 1;
        let n = st.puts;
        st.cut_puts.contains(&n)
    };
    // A cut PUT: the server keeps the first half of the chunk, then the connection dies.
    let wanted = if cut { length / 2 } else { length };
    while body.len() < wanted {
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(wanted);
    let (status, answer) = route(&routes, method, target, &body);
    if cut {
        return;
    }
    let answer = answer.to_string();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = tls.write_all(reply.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn route(routes: &Routes, method: &str, target: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut st = routes.lock().unwrap();
    if st.down {
        return (
            503,
            serde_json::json!({"error": "unavailable", "detail": "down for the test"}),
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(rest) = path.strip_prefix("/device/v1/evidence/") else {
        return (
            404,
            serde_json::json!({"error": "not_found", "detail": path}),
        );
    };
    let (id, complete) = match rest.strip_suffix("/complete") {
        Some(id) => (id.to_owned(), true),
        None => (rest.to_owned(), false),
    };
    let progress = |st: &RouteState| {
        let (bytes, done) = st.uploads.get(&id).cloned().unwrap_or_default();
        serde_json::to_value(EvidenceProgress {
            id: id.clone(),
            received: bytes.len() as u64,
            complete: done.is_some(),
            sha256: done,
        })
        .unwrap()
    };
    match (method, complete) {
        ("GET", false) => (200, progress(&st)),
        ("PUT", false) => {
            let offset: u64 = query
                .strip_prefix("offset=")
                .and_then(|o| o.parse().ok())
                .unwrap_or(u64::MAX);
            st.bytes_put += body.len() as u64;
            st.largest_put = st.largest_put.max(body.len());
            let upload = st.uploads.entry(id.clone()).or_default();
            if offset != upload.0.len() as u64 {
                return (
                    409,
                    serde_json::json!({"error": "offset", "detail": "resume from received"}),
                );
            }
            upload.0.extend_from_slice(body);
            (200, progress(&st))
        }
        ("POST", true) => {
            if st.refuse {
                return (
                    422,
                    serde_json::json!({"error": "evidence_refused", "detail": "refused for the test"}),
                );
            }
            let done: EvidenceComplete = serde_json::from_slice(body).unwrap();
            let spki = st.device_spki.clone();
            let upload = st.uploads.entry(id.clone()).or_default();
            let sha = hex::encode(rampart_incident::device_signature::sha256(&upload.0));
            let verified =
                Bundle::parse(&upload.0, MAX_BUNDLE_BYTES).and_then(|b| b.verify_signature(&spki));
            if done.sha256 != sha || done.length != upload.0.len() as u64 || verified.is_err() {
                return (
                    422,
                    serde_json::json!({"error": "bundle", "detail": format!("{verified:?}")}),
                );
            }
            upload.1 = Some(sha);
            (200, progress(&st))
        }
        _ => (
            405,
            serde_json::json!({"error": "method", "detail": method}),
        ),
    }
}

/// One evidence pass of the device in `t` against `server`, no waits between retries.
fn evidence_pass(
    server: &TestServer,
    t: &TestDevice,
    disk: &Disk,
    req: &EvidenceRequest,
    now: i64,
) -> Answered {
    let mut device = t.device();
    let mut log = t.log();
    let mut store = StateDirStore::new(&t.config.state_dir, disk);
    answer(
        &mut device,
        &mut log,
        &server.key(),
        DEVICE,
        &mut store,
        &server.client(),
        Some(req),
        no_wait(),
        now,
    )
}

fn no_wait() -> Retry {
    Retry {
        attempts: 6,
        base: Duration::ZERO,
        max: Duration::ZERO,
    }
}

#[test]
fn an_upload_cut_mid_chunk_resumes_from_what_the_server_holds() {
    let server = TestServer::start();
    server.state().cut_puts = vec![2, 5];
    let t =
        TestDevice::new(r#"commands = [["/bin/sh", "-c", "head -c 20000 /dev/urandom | od -x"]]"#);
    let disk = Disk::new();
    let req = request("ev-cut", 1 << 20);
    let done = evidence_pass(&server, &t, &disk, &req, 1_767_000_000);
    assert_eq!(done.failed, Vec::<String>::new());
    assert_eq!(done.uploaded, vec!["ev-cut".to_owned()]);
    assert_eq!(
        StateDirStore::new(&t.config.state_dir, &disk)
            .pending()
            .unwrap(),
        vec![],
        "an uploaded bundle is dropped"
    );
    let st = server.state();
    let (bytes, sha) = st.uploads["ev-cut"].clone();
    assert!(sha.is_some());
    assert!(bytes.len() > 4 * 4096, "several chunks: {}", bytes.len());
    assert!(st.largest_put <= 4096, "chunks of chunk_bytes at most");
    let chunks = bytes.len().div_ceil(4096) as u32;
    assert!(
        st.puts > chunks,
        "the cut PUTs were resumed: {} PUTs",
        st.puts
    );
    // Resumed, not restarted: no more than the two cut halves were sent twice.
    assert!(
        st.bytes_put < bytes.len() as u64 + 2 * 4096,
        "{} bytes sent for {}",
        st.bytes_put,
        bytes.len()
    );
}

#[test]
fn a_bundle_the_server_refuses_is_dropped_not_sent_again_at_every_pass() {
    let server = TestServer::start();
    server.state().refuse = true;
    let t = TestDevice::new("");
    let disk = Disk::new();
    let req = request("ev-refused", 1 << 20);
    let done = evidence_pass(&server, &t, &disk, &req, 1_767_000_000);
    assert_eq!(done.uploaded, Vec::<String>::new());
    assert!(
        done.failed
            .iter()
            .any(|f| f.contains("refused") && f.contains("evidence_refused")),
        "{:?}",
        done.failed
    );
    assert_eq!(
        StateDirStore::new(&t.config.state_dir, &disk)
            .pending()
            .unwrap(),
        vec![]
    );
    assert!(is_terminal(404, "unknown_evidence_request"));
    assert!(is_terminal(409, "evidence_request_closed"));
    assert!(!is_terminal(409, "offset_mismatch"));
    assert!(!is_terminal(503, "storage_unavailable"));
    assert!(!is_terminal(429, "rate_limited"));
}

#[test]
fn a_bundle_is_kept_across_a_restart_and_uploaded_as_collected() {
    let server = TestServer::start();
    server.state().down = true;
    let t = TestDevice::new("");
    let disk = Disk::new();
    let req = request("ev-restart", 1 << 20);
    let done = evidence_pass(&server, &t, &disk, &req, 1_767_000_000);
    assert_eq!(done.collected, vec!["ev-restart".to_owned()]);
    assert_eq!(done.uploaded, Vec::<String>::new());
    assert_eq!(done.failed.len(), 1, "{:?}", done.failed);
    // The agent restarts; the server is back, and its poll answer no longer carries the
    // request: the kept bundle is uploaded, not a new one collected.
    let kept = StateDirStore::new(&t.config.state_dir, &disk)
        .pending()
        .unwrap();
    assert_eq!(kept.len(), 1);
    server.state().down = false;
    let again = evidence_pass(&server, &t, &disk, &req, 1_767_000_100);
    assert_eq!(
        again.collected,
        Vec::<String>::new(),
        "the same request is not collected twice"
    );
    assert_eq!(again.uploaded, vec!["ev-restart".to_owned()]);
    assert_eq!(server.state().uploads["ev-restart"].0, kept[0].bundle);
}
