//! Crash test of the update server (`rampart server`), the acceptance point of issue 4: the
//! server is killed (SIGKILL) while 1,000 devices report; after the restart every report that
//! got a 2xx is stored. Once on embedded SQLite and once on PostgreSQL (from
//! RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it that test fails).
//!
//! 1,000 devices, each with its own certificate from an in-process manufacturer CA, report over
//! mutual TLS: each sends [`SESSIONS`] keep-alive connections of [`REPORTS_PER_SESSION`]
//! reports, over [`CONNECTIONS`] connections at a time, every device's first session before
//! any device's second one. The server is SIGKILLed once every device has had a report
//! acknowledged and at least [`KILL_AFTER_ACKS`] reports are (more than all first sessions
//! together, well short of all reports), with [`CONNECTIONS`] connections busy; the requests
//! it had not answered fail.
//!
//! After a restart on the same database (which must come up cleanly), the database is read
//! directly and must hold every acknowledged report exactly as it was sent (status, progress,
//! assignment, details), and nothing that was not sent; requests cut by the kill may or may
//! not be stored. Then, over the restarted server: every cut request, retried, answers 200 if
//! it was stored and 201 if not; acknowledged reports, retried, answer 200 (with the stored
//! creation time) and add no row; reusing an acknowledged id for other content answers 409; a
//! device can still report.
//!
//! Why this would catch a durability bug: a server that answered 201 before its commit was
//! durable would, under this load, have acknowledged reports still queued (or inside an open
//! transaction) at the kill, and the first check finds them missing. This was tried once by
//! spawning the insert in `device_api.rs` without awaiting it: both tests failed, with 124
//! (SQLite) and 96 (PostgreSQL) of about 2,500 acknowledged reports missing. Any answer other
//! than 201 before the kill also fails the test. (Only the commit matters here, not fsync:
//! SIGKILL leaves the OS page cache intact, so a lost fsync cannot be seen by killing a
//! process.)

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rampart_db::{Db, Report};
use rampart_pki::CertificateAuthority;
use rampart_testkit::cli::{ServerChild, StderrOnPanic};
use rampart_testkit::databases;
use rampart_testkit::http::{Message, TlsConn, connect_tls};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ClientConfig;

const DEVICES: usize = 1000;
/// Keep-alive connections each device opens, one after the other.
const SESSIONS: usize = 3;
/// Reports sent on each connection.
const REPORTS_PER_SESSION: usize = 2;
const REPORTS_PER_DEVICE: usize = SESSIONS * REPORTS_PER_SESSION;
/// Connections open at once.
const CONNECTIONS: usize = 200;
/// The server is killed once this many reports are acknowledged (and every device has had
/// one acknowledged): past the devices' first sessions (`DEVICES * REPORTS_PER_SESSION`),
/// well short of all reports.
const KILL_AFTER_ACKS: usize = 2500;
/// Longest wait for the kill point.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
const REPORTS: &str = "/device/v1/reports";
const STATUSES: [&str; 8] = [
    "downloading",
    "downloaded",
    "installing",
    "installed",
    "rebooting",
    "failed",
    "rolled_back",
    "cancelled",
];

/// The two tests share the machine's cores; they run one after the other so that each one's
/// load (and its kill point) is what it claims to be.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn sqlite_acknowledged_reports_survive_sigkill_under_1000_devices() {
    run(Backend::Sqlite);
}

#[test]
fn postgres_acknowledged_reports_survive_sigkill_under_1000_devices() {
    run(Backend::Postgres);
}

fn run(backend: Backend) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(backend));
}

// ---------------------------------------------------------------------------------------------
// Databases

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database: a new SQLite file, or a new PostgreSQL database (its name, to drop it).
async fn database_url(backend: Backend, dir: &Path) -> (String, Option<String>) {
    match backend {
        Backend::Sqlite => (databases::sqlite_url(dir, "server"), None),
        Backend::Postgres => {
            let db_name = format!("rampart_server_kill_{}", std::process::id());
            (databases::fresh_postgres(&db_name).await, Some(db_name))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server process

/// A running `rampart server`; killed (SIGKILL) and reaped when dropped.
struct ServerProcess {
    process: ServerChild,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `rampart server ARGS` and waits for its `device API listening on ADDR` line.
    fn start(args: &[String], stderr_log: &Path) -> ServerProcess {
        let mut full = vec!["server".to_string()];
        full.extend(args.iter().cloned());
        let process = ServerChild::start(
            &full,
            stderr_log,
            "device API listening on ",
            Duration::from_secs(60),
        );
        let addr = process
            .listening
            .parse()
            .unwrap_or_else(|e| panic!("listening address {:?}: {e}", process.listening));
        ServerProcess { process, addr }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        self.process.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// The test kit's HTTP/1.1 client over mutual TLS (keep-alive, Content-Length bodies)

/// A device's keep-alive connection.
struct Conn(TlsConn);

impl Conn {
    /// A mutual-TLS connection as the device whose client configuration this is.
    async fn open(addr: SocketAddr, tls: &Arc<ClientConfig>) -> io::Result<Conn> {
        Ok(Conn(TlsConn::new(
            connect_tls(addr, "127.0.0.1", tls).await?,
        )))
    }

    async fn post(&mut self, path: &str, body: &Value) -> io::Result<Message> {
        self.0
            .send("POST", path, &[], body.to_string().as_bytes())
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Devices and their reports

struct Device {
    id: String,
    tls: Arc<ClientConfig>,
}

/// A report as a device sent it. Every field varies with the device and the sequence number,
/// and some reports leave out `assignment` or `details`, so a report stored with another's
/// content, or with a default instead of what was sent, does not match.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    status: &'static str,
    assignment: Option<String>,
    progress: u64,
    details: Option<Value>,
}

impl Sent {
    fn new(device: usize, seq: usize) -> Sent {
        Sent {
            id: format!("report-{seq}"),
            status: STATUSES[(device + seq) % STATUSES.len()],
            assignment: seq.is_multiple_of(2).then(|| format!("rollout-{}-{}", device % 7, seq)),
            progress: ((device * 7 + seq * 13) % 101) as u64,
            details: (seq % 3 != 2).then(|| {
                json!({"seq": seq, "device": device, "step": {"name": format!("phase-{seq}"), "ok": seq.is_multiple_of(2)}})
            }),
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({"id": self.id, "status": self.status, "progress": self.progress});
        if let Some(a) = &self.assignment {
            body["assignment"] = json!(a);
        }
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        body
    }

    /// Whether `stored` holds exactly what was sent (`assignment` defaults to "", `details`
    /// to {}).
    fn check(&self, device_id: &str, stored: &Report) -> Result<(), String> {
        let expected = (
            device_id,
            self.id.as_str(),
            self.status,
            self.assignment.as_deref().unwrap_or(""),
            self.progress,
            self.details.clone().unwrap_or_else(|| json!({})),
        );
        let actual = (
            stored.device_id.as_str(),
            stored.id.as_str(),
            stored.status.as_str(),
            stored.assignment.as_str(),
            stored.progress,
            stored.details.clone(),
        );
        if expected == actual {
            Ok(())
        } else {
            Err(format!(
                "report {:?} of {device_id} was sent as {:?} and is stored as {stored:?}",
                self.id,
                self.body()
            ))
        }
    }
}

/// What one device saw while the first server ran.
#[derive(Default)]
struct DeviceLog {
    /// Answered 201.
    acked: Vec<Sent>,
    /// Sent (at least partly) but not answered: the kill cut them.
    cut: Vec<Sent>,
    /// Connections refused after the kill.
    refused: usize,
}

/// What happened to one connection's worth of reports.
enum Outcome {
    Acked(Sent),
    Cut(Sent),
    Refused,
}

/// Shared state of the load.
struct Load {
    addr: SocketAddr,
    devices: Vec<Arc<Device>>,
    /// The next session to run, as `session * DEVICES + device`: every device's first session
    /// is started before any device's second one.
    next_session: AtomicUsize,
    killed: AtomicBool,
    acked: AtomicUsize,
    /// Per device: whether it has had a report acknowledged.
    device_acked: Vec<AtomicBool>,
    /// Devices with at least one acknowledged report.
    devices_acked: AtomicUsize,
    in_flight: AtomicUsize,
    /// The first thing that went wrong before the kill.
    unexpected: Mutex<Option<String>>,
}

impl Load {
    fn killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    fn unexpected(&self, what: String) {
        self.unexpected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(what);
    }
}

/// One of the [`CONNECTIONS`] connection slots: runs sessions (a keep-alive connection of
/// [`REPORTS_PER_SESSION`] reports as one device) until there are none left or the server is
/// killed. Returns (device index, outcome) for everything it tried.
async fn connection_slot(load: Arc<Load>) -> Vec<(usize, Outcome)> {
    let mut outcomes = Vec::new();
    while !load.killed() {
        let next = load.next_session.fetch_add(1, Ordering::SeqCst);
        if next >= SESSIONS * DEVICES {
            break;
        }
        let (session, index) = (next / DEVICES, next % DEVICES);
        let device = &load.devices[index];
        let mut conn = match Conn::open(load.addr, &device.tls).await {
            Ok(conn) => conn,
            Err(_) if load.killed() => {
                outcomes.push((index, Outcome::Refused));
                break;
            }
            Err(e) => {
                load.unexpected(format!("{} could not connect: {e}", device.id));
                break;
            }
        };
        for k in 0..REPORTS_PER_SESSION {
            if load.killed() {
                break;
            }
            let sent = Sent::new(index, session * REPORTS_PER_SESSION + k);
            load.in_flight.fetch_add(1, Ordering::SeqCst);
            let answer = conn.post(REPORTS, &sent.body()).await;
            load.in_flight.fetch_sub(1, Ordering::SeqCst);
            match answer {
                // Every report is sent once here, so anything but 201 is wrong (a 200 would
                // mean the server thought it was a retry).
                Ok(response) if response.status == 201 => {
                    load.acked.fetch_add(1, Ordering::SeqCst);
                    if !load.device_acked[index].swap(true, Ordering::SeqCst) {
                        load.devices_acked.fetch_add(1, Ordering::SeqCst);
                    }
                    outcomes.push((index, Outcome::Acked(sent)));
                }
                Ok(response) => {
                    load.unexpected(format!(
                        "{} report {:?} answered {}: {}",
                        device.id,
                        sent.id,
                        response.status,
                        response.text()
                    ));
                    return outcomes;
                }
                Err(_) if load.killed() => {
                    outcomes.push((index, Outcome::Cut(sent)));
                    return outcomes;
                }
                Err(e) => {
                    load.unexpected(format!(
                        "{} report {:?} got no answer before the kill: {e}",
                        device.id, sent.id
                    ));
                    return outcomes;
                }
            }
        }
    }
    outcomes
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every stored report of every device, by (device index, report id).
async fn stored_reports(db: &Db, devices: &[Arc<Device>]) -> HashMap<(usize, String), Report> {
    let mut all = HashMap::new();
    for (index, device) in devices.iter().enumerate() {
        for report in db
            .reports_of(&device.id)
            .await
            .unwrap_or_else(|e| panic!("reading the reports of {}: {e}", device.id))
        {
            all.insert((index, report.id.clone()), report);
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The scenario

async fn scenario(backend: Backend) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (db_url, postgres_db) = database_url(backend, tmp.path()).await;
    let stderr_log = tmp.path().join("servers.stderr");
    let _stderr_on_panic = StderrOnPanic(stderr_log.clone());

    // PKI: a manufacturer CA, an (empty) CRL, a server certificate, 1,000 device certificates.
    let ca = CertificateAuthority::generate("Rampart Crash Test Manufacturer CA", 30).unwrap();
    let server_cert = ca.issue_server(&["127.0.0.1"], 30).unwrap();
    let now = SystemTime::now();
    let crl = ca
        .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
        .unwrap();
    let file = |name: &str, content: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().expect("UTF-8 temporary path").to_string()
    };
    let args: Vec<String> = vec![
        "--db".into(),
        db_url.clone(),
        // Webhook secrets are sealed with this key (required with PostgreSQL).
        "--secrets-key".into(),
        tmp.path()
            .join("secrets.key")
            .to_str()
            .expect("UTF-8 temporary path")
            .to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--cert".into(),
        file("server.pem", &server_cert.cert_pem),
        "--key".into(),
        file("server.key", &server_cert.key_pem),
        "--client-ca".into(),
        file("ca.pem", ca.cert_pem()),
        "--crl".into(),
        file("ca.crl", &crl),
    ];
    let devices: Vec<Arc<Device>> = (0..DEVICES)
        .map(|i| {
            let id = format!("kill-test-device-{i:04}");
            let cert = ca.issue_device(&id, 30).unwrap();
            let tls =
                rampart_pki::client_config(ca.cert_pem(), &cert.cert_pem, &cert.key_pem).unwrap();
            Arc::new(Device { id, tls })
        })
        .collect();
    let pki_done = started.elapsed();

    // Load the server and kill it in full swing.
    let mut server = ServerProcess::start(&args, &stderr_log);
    let first_started = unix_now();
    let load = Arc::new(Load {
        addr: server.addr,
        devices: devices.clone(),
        next_session: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
        acked: AtomicUsize::new(0),
        device_acked: (0..DEVICES).map(|_| AtomicBool::new(false)).collect(),
        devices_acked: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        unexpected: Mutex::new(None),
    });
    let load_started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(connection_slot(load.clone())))
        .collect();
    loop {
        if let Some(what) = load.unexpected.lock().unwrap().clone() {
            panic!("before the kill: {what}");
        }
        let acked = load.acked.load(Ordering::SeqCst);
        let devices_acked = load.devices_acked.load(Ordering::SeqCst);
        if acked >= KILL_AFTER_ACKS && devices_acked == DEVICES {
            break;
        }
        assert!(
            !tasks.iter().all(|t| t.is_finished()),
            "every report was answered before the kill point ({acked} reports acknowledged, {devices_acked} devices with one)"
        );
        assert!(
            load_started.elapsed() < LOAD_TIMEOUT,
            "the kill point was not reached in {LOAD_TIMEOUT:?}: {acked} reports acknowledged, {devices_acked} devices with one"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let in_flight_at_kill = load.in_flight.load(Ordering::SeqCst);
    load.killed.store(true, Ordering::SeqCst);
    server.kill();
    let killed_after = load_started.elapsed();
    let killed_at = unix_now();

    let mut logs: Vec<DeviceLog> = (0..DEVICES).map(|_| DeviceLog::default()).collect();
    for task in tasks {
        for (index, outcome) in task.await.expect("connection task") {
            let log = &mut logs[index];
            match outcome {
                Outcome::Acked(sent) => log.acked.push(sent),
                Outcome::Cut(sent) => log.cut.push(sent),
                Outcome::Refused => log.refused += 1,
            }
        }
    }
    if let Some(what) = load.unexpected.lock().unwrap().clone() {
        panic!("before the kill: {what}");
    }
    let acked: usize = logs.iter().map(|l| l.acked.len()).sum();
    let cut: usize = logs.iter().map(|l| l.cut.len()).sum();
    let refused: usize = logs.iter().map(|l| l.refused).sum();
    let not_sent = DEVICES * REPORTS_PER_DEVICE - acked - cut;
    let devices_acked = logs.iter().filter(|l| !l.acked.is_empty()).count();
    // The kill must have come in full swing: after many acknowledgements, with requests in
    // flight that it cut, and with reports still to come.
    assert!(
        acked >= KILL_AFTER_ACKS,
        "only {acked} reports acknowledged before the kill"
    );
    assert!(
        cut > 0,
        "the kill cut no request in flight ({in_flight_at_kill} were in flight as it came): it did not hit the server mid-stream"
    );
    assert!(not_sent > 0, "every report was sent before the kill");
    assert_eq!(
        devices_acked, DEVICES,
        "not every device had a report acknowledged before the kill"
    );

    // Restart on the same database: it must come up after the crash.
    let restart = Instant::now();
    let server = ServerProcess::start(&args, &stderr_log);
    let restarted_in = restart.elapsed();
    let db = Db::connect(&db_url)
        .await
        .unwrap_or_else(|e| panic!("the test's own connection to {db_url}: {e}"));

    // Every acknowledged report is stored as sent; every stored report was sent, acknowledged
    // or cut.
    let stored = stored_reports(&db, &devices).await;
    let mut missing = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        let device_id = &devices[index].id;
        for sent in &log.acked {
            match stored.get(&(index, sent.id.clone())) {
                None => missing.push(format!("{device_id}/{}", sent.id)),
                Some(report) => {
                    sent.check(device_id, report).unwrap();
                    assert!(
                        (first_started - 1..=killed_at + 1).contains(&report.created),
                        "report {device_id}/{} was created at {}, not while the first server ran ({first_started}..={killed_at})",
                        sent.id,
                        report.created
                    );
                }
            }
        }
        for sent in &log.cut {
            if let Some(report) = stored.get(&(index, sent.id.clone())) {
                sent.check(device_id, report).unwrap();
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of the {acked} acknowledged reports are not stored after the crash, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let sent_ids: std::collections::HashSet<(usize, &str)> = logs
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l.acked
                .iter()
                .chain(&l.cut)
                .map(move |s| (i, s.id.as_str()))
        })
        .collect();
    for (index, id) in stored.keys() {
        assert!(
            sent_ids.contains(&(*index, id.as_str())),
            "{}/{id} is stored but was never sent",
            devices[*index].id
        );
    }
    let cut_stored = stored.len() - acked;

    // Over the restarted server, as the devices would: cut requests are retried (200 if the
    // report made it, 201 if not), acknowledged ones answer 200 again without a new row.
    let addr = server.addr;
    let retry_permits = Arc::new(Semaphore::new(50));
    let mut retries = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        // The cut report, and every 5th device's acknowledged reports.
        let mut batch: Vec<(Sent, u16)> = Vec::new();
        for sent in &log.cut {
            let was_stored = stored.contains_key(&(index, sent.id.clone()));
            batch.push((sent.clone(), if was_stored { 200 } else { 201 }));
        }
        if index.is_multiple_of(5) {
            batch.extend(log.acked.iter().map(|s| (s.clone(), 200)));
        }
        if batch.is_empty() {
            continue;
        }
        let (device, permits) = (devices[index].clone(), retry_permits.clone());
        let created: Vec<Option<i64>> = batch
            .iter()
            .map(|(s, _)| stored.get(&(index, s.id.clone())).map(|r| r.created))
            .collect();
        retries.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let mut conn = Conn::open(addr, &device.tls)
                .await
                .unwrap_or_else(|e| panic!("{} cannot connect after the restart: {e}", device.id));
            for ((sent, expected), created) in batch.iter().zip(created) {
                let response = conn.post(REPORTS, &sent.body()).await.unwrap();
                assert_eq!(
                    response.status,
                    *expected,
                    "{} retrying report {:?} after the restart: {}",
                    device.id,
                    sent.id,
                    response.text()
                );
                let body = response.json();
                assert_eq!(body["id"], json!(sent.id), "{body}");
                assert_eq!(body["duplicate"], json!(*expected == 200), "{body}");
                if let Some(created) = created {
                    assert_eq!(
                        body["created"],
                        json!(created),
                        "a retry answers with the stored report's creation time"
                    );
                }
            }
            batch.len()
        }));
    }
    let mut retried = 0;
    for task in retries {
        retried += task.await.expect("retrying device");
    }

    // Reusing an acknowledged id for other content is a conflict.
    let (first_device, first_sent) = logs
        .iter()
        .enumerate()
        .find_map(|(i, l)| l.acked.first().map(|s| (i, s.clone())))
        .unwrap();
    let mut conn = Conn::open(addr, &devices[first_device].tls).await.unwrap();
    let mut conflicting = first_sent.clone();
    conflicting.progress = (conflicting.progress + 1) % 101;
    let response = conn.post(REPORTS, &conflicting.body()).await.unwrap();
    assert_eq!(response.status, 409, "{}", response.text());
    // And the device can still report.
    let fresh = Sent {
        id: "after-restart".into(),
        status: "installed",
        assignment: Some("rollout-after-restart".into()),
        progress: 100,
        details: Some(json!({"after": "restart"})),
    };
    let response = conn.post(REPORTS, &fresh.body()).await.unwrap();
    assert_eq!(response.status, 201, "{}", response.text());
    drop(conn);

    // Now every report sent is stored exactly once, with what was sent.
    let after = stored_reports(&db, &devices).await;
    assert_eq!(
        after.len(),
        acked + cut + 1,
        "after the retries: {acked} acknowledged + {cut} cut and retried + 1 new report"
    );
    for (index, log) in logs.iter().enumerate() {
        for sent in log.acked.iter().chain(&log.cut) {
            let report = after
                .get(&(index, sent.id.clone()))
                .unwrap_or_else(|| panic!("{}/{} is not stored", devices[index].id, sent.id));
            sent.check(&devices[index].id, report).unwrap();
        }
    }
    fresh
        .check(
            &devices[first_device].id,
            &after[&(first_device, fresh.id.clone())],
        )
        .unwrap();
    assert_eq!(
        after[&(first_device, first_sent.id.clone())],
        stored[&(first_device, first_sent.id.clone())],
        "the conflicting report changed the stored one"
    );

    db.close().await;
    drop(server);
    if let Some(db_name) = postgres_db {
        databases::postgres_admin(&format!("DROP DATABASE IF EXISTS {db_name}")).await;
    }
    println!(
        "{backend:?}: {DEVICES} devices, {CONNECTIONS} connections at a time; killed after {:.1} s of load \
         with {acked} reports acknowledged ({:.0}/s), {in_flight_at_kill} in flight: {cut} requests cut \
         ({cut_stored} of them had been stored), {refused} connections refused, {not_sent} reports not sent",
        killed_after.as_secs_f64(),
        acked as f64 / killed_after.as_secs_f64(),
    );
    println!(
        "  certificates issued in {:.1} s, restart in {:.2} s, {retried} retries after the restart; {:.1} s in all",
        pki_done.as_secs_f64(),
        restarted_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
