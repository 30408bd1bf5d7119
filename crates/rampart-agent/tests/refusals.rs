//! One test per refusal of the install path: a wrong hash or signature, incompatible
//! hardware, a lower security version, a truncated or endless download, a slot too small, a
//! corrupt bootloader environment (CRC) or state file. Each is refused with its reason code,
//! and the running slot A and its boot entry are left as they were: the device still boots A.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rampart_agent::daemon::{Pass, install_from};
use rampart_agent::device::{Device, SECURITY_VERSION_FILE, STATE_FILE};
use rampart_agent::disk::Disk;
use rampart_agent::source::Refusal;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{Phase, Reason, Release};
use support::{Backend, Image, Rig, SLOT_BYTES, classify, hex_sha256};

/// Progress callback that ignores progress.
fn quiet(_: &Release, _: u64) {}

/// The shared test image repository's directory.
fn shared_repo() -> String {
    support::repo().path.display().to_string()
}

/// The bootloader environment's variables, as the bootloader would read them.
fn env_vars(rig: &Rig) -> BTreeMap<String, String> {
    Rig::store(&rig.config).load().unwrap()
}

fn state_path(rig: &Rig) -> PathBuf {
    rig.config.state_dir.join(STATE_FILE)
}

/// What the device looked like before the refused install.
struct Before {
    slot_a: Vec<u8>,
    slot_b: Vec<u8>,
    vars: BTreeMap<String, String>,
}

/// Powers the device on (it boots A) and records slot A, slot B and the environment.
fn power_on_and_snapshot(rig: &mut Rig) -> Before {
    assert_eq!(rig.power_on(), Ok(Slot::A), "the factory device boots A");
    let vars = env_vars(rig);
    assert_eq!(vars.get("BOOT_ORDER").map(String::as_str), Some("A B"));
    Before {
        slot_a: rig.slot_bytes(Slot::A),
        slot_b: rig.slot_bytes(Slot::B),
        vars,
    }
}

/// Runs an install of `target` from `from` on a fresh agent of `rig`.
fn install(rig: &Rig, from: &str, target: &str) -> (Device, Result<Pass, Refusal>) {
    let mut device = rig.device(Disk::new());
    let mut state = device.load_state().unwrap();
    let health = rig.health();
    let result = install_from(&mut device, &mut state, from, target, &health, &quiet);
    (device, result)
}

/// The refusal of `result`, which must carry `reason`.
fn refused(result: Result<Pass, Refusal>, reason: Reason) -> Refusal {
    match result {
        Err(r) => {
            assert_eq!(r.reason, reason, "refused for another reason: {}", r.detail);
            assert!(!r.crashed);
            r
        }
        Ok(pass) => panic!("expected a {reason:?} refusal, the install ended with {pass:?}"),
    }
}

fn assert_names(refusal: &Refusal, words: &[&str]) {
    for w in words {
        assert!(
            refusal.detail.contains(w),
            "the {:?} refusal does not name {w:?}: {}",
            refusal.reason,
            refusal.detail
        );
    }
}

/// Slot A holds the same bytes, the environment still boots A first with its attempts intact
/// (as before, or reset by the agent confirming A), and the next power-on boots A.
fn assert_running_slot_untouched(rig: &mut Rig, before: &Before) {
    assert!(
        rig.slot_bytes(Slot::A) == before.slot_a,
        "the running slot A was written"
    );
    let vars = env_vars(rig);
    let first = vars
        .get("BOOT_ORDER")
        .and_then(|o| o.split_whitespace().next());
    assert_eq!(first, Some("A"), "boot order {vars:?}");
    let a_left = vars.get("BOOT_A_LEFT");
    assert!(
        a_left == before.vars.get("BOOT_A_LEFT") || a_left.map(String::as_str) == Some("3"),
        "BOOT_A_LEFT went from {:?} to {a_left:?}",
        before.vars.get("BOOT_A_LEFT")
    );
    assert_powers_on_into_a(rig);
}

fn assert_powers_on_into_a(rig: &mut Rig) {
    assert_eq!(rig.power_on(), Ok(Slot::A), "the device no longer boots A");
    assert_eq!(classify(&rig.slot_bytes(Slot::A)), Some(Image::V1));
}

/// Where the repository keeps `target` (consistent snapshots: `targets/<dir>/<sha256>.<name>`),
/// as the request path the agent asks for.
fn target_request_path(target: &str, bytes: &[u8]) -> String {
    let (dir, name) = target.rsplit_once('/').unwrap();
    let path = format!("/targets/{dir}/{}.{name}", hex_sha256(bytes));
    let on_disk = support::repo().path.join(&path[1..]);
    assert!(
        on_disk.is_file(),
        "{} is not in the repository",
        on_disk.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 server over the shared repository, with faults for one file.

/// What the server does with the faulty file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Serve it as it is (honouring `Range` and `If-Range`).
    None,
    /// Serve it with one byte flipped.
    FlipByte,
    /// Announce its full length, send half, close.
    Truncate,
    /// Send it without a length and then keep sending.
    Endless,
}

/// One request the server answered.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    range: Option<String>,
    if_range: Option<String>,
}

struct HttpRepo {
    url: String,
    fault: Arc<Mutex<Fault>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// Bytes the endless fault sends at most, so the server thread ends even if nobody hangs up.
const ENDLESS_CAP: usize = 8 << 20;

impl HttpRepo {
    /// Serves `root`; `faulty` is the request path the fault applies to.
    fn serve(root: &Path, faulty: &str, fault: Fault) -> HttpRepo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(fault));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (root, faulty) = (root.to_path_buf(), faulty.to_owned());
            let (fault, seen, stop) = (fault.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (root, faulty) = (root.clone(), faulty.clone());
                    let (fault, seen) = (fault.clone(), seen.clone());
                    std::thread::spawn(move || {
                        let _ = answer(conn, &root, &faulty, &fault, &seen);
                    });
                }
            })
        };
        HttpRepo {
            url: format!("http://{addr}"),
            fault,
            seen,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpRepo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request, then closes the connection.
fn answer(
    mut conn: TcpStream,
    root: &Path,
    faulty: &str,
    fault: &Mutex<Fault>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        range: headers.get("range").cloned(),
        if_range: headers.get("if-range").cloned(),
    });
    let file = (!path.contains(".."))
        .then(|| std::fs::read(root.join(path.trim_start_matches('/'))).ok())
        .flatten();
    let Some(mut body) = file else {
        write!(
            conn,
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?;
        return conn.flush();
    };
    let etag = format!("\"{}\"", hex_sha256(&body));
    let fault = if path == faulty {
        *fault.lock().unwrap()
    } else {
        Fault::None
    };
    match fault {
        Fault::FlipByte => {
            let mid = body.len() / 2;
            body[mid] ^= 0x01;
        }
        Fault::Truncate => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )?;
            conn.write_all(&body[..body.len() / 2])?;
            conn.flush()?;
            return conn.shutdown(Shutdown::Both);
        }
        Fault::Endless => {
            write!(conn, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")?;
            conn.write_all(&body)?;
            let more = vec![0x5Au8; 16 * 1024];
            let mut sent = 0;
            while sent < ENDLESS_CAP {
                conn.write_all(&more)?;
                sent += more.len();
            }
            return conn.shutdown(Shutdown::Both);
        }
        Fault::None => {}
    }
    // A range `bytes=N-`, unless If-Range names another version of the file.
    let from = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < body.len())
        .filter(|_| headers.get("if-range").is_none_or(|v| *v == etag));
    match from {
        Some(n) => {
            write!(
                conn,
                "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {n}-{}/{}\r\netag: {etag}\r\nconnection: close\r\n\r\n",
                body.len() - n,
                body.len() - 1,
                body.len()
            )?;
            conn.write_all(&body[n..])?;
        }
        None => {
            write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: {etag}\r\naccept-ranges: bytes\r\nconnection: close\r\n\r\n",
                body.len()
            )?;
            conn.write_all(&body)?;
        }
    }
    conn.flush()
}

/// The shared repository over HTTP, with `fault` on the stored file of sim/v2.img.
fn serve_v2_with(fault: Fault) -> HttpRepo {
    let v2 = target_request_path(Image::V2.target(), &Image::V2.bytes());
    HttpRepo::serve(&support::repo().path, &v2, fault)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_hash_is_refused_and_the_slot_never_activated() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    let http = serve_v2_with(Fault::FlipByte);

    let (device, result) = install(&rig, &http.url, Image::V2.target());
    let r = refused(result, Reason::HashMismatch);
    assert_names(&r, &["sim/v2.img", "sha256", "slot B stays marked bad"]);
    // The image really came over HTTP.
    let v2 = target_request_path(Image::V2.target(), &Image::V2.bytes());
    assert!(
        http.seen().iter().any(|s| s.path == v2),
        "{:?}",
        http.seen()
    );

    // Slot B holds the tampered bytes but is never booted; the refusal is recorded.
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT").map(String::as_str),
        Some("0")
    );
    let state = device.load_state().unwrap();
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(state.committed, Some(Slot::A));
    let last = state.last_result.unwrap();
    assert_eq!(
        (last.reason, last.target.as_str()),
        (Reason::HashMismatch, "sim/v2.img")
    );
    assert!(!state.slots.contains_key(&Slot::B));
    assert_running_slot_untouched(&mut rig, &before);
    // Even after another power-on, B stays out of the boot.
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT").map(String::as_str),
        Some("0")
    );
}

#[test]
fn wrong_signature_is_refused() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    // An attacker extends the timestamp's expiry without the timestamp key: a signed field
    // changes, the signature stays the old one. (targets.json is also pinned by the hash in the
    // snapshot, so the timestamp is where a bad signature is the only defence.)
    let copy = support::repo_copy();
    let ts = copy.path.join("metadata/timestamp.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&ts).unwrap()).unwrap();
    assert!(doc["signed"]["expires"].is_string(), "{doc}");
    doc["signed"]["expires"] = "2099-12-31T00:00:00Z".into();
    std::fs::write(&ts, serde_json::to_vec(&doc).unwrap()).unwrap();

    let (_, result) = install(&rig, &copy.path.display().to_string(), Image::V2.target());
    let r = refused(result, Reason::MetadataInvalid);
    assert_names(&r, &["timestamp", "threshold"]);
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT"),
        before.vars.get("BOOT_B_LEFT")
    );
    assert_running_slot_untouched(&mut rig, &before);
}

#[test]
fn incompatible_hardware_is_refused() {
    let mut rig = Rig::new(Backend::Grub);
    let before = power_on_and_snapshot(&mut rig);
    let mut image = Image::V2.bytes();
    image[0..7].copy_from_slice(b"OTHERHW");
    let copy = support::repo_copy_with_release(
        "sim/other-board.img",
        &image,
        &["other-board"],
        "2.1.0",
        2,
    );

    let (_, result) = install(
        &rig,
        &copy.path.display().to_string(),
        "sim/other-board.img",
    );
    let r = refused(result, Reason::HardwareIncompatible);
    assert_names(
        &r,
        &["sim/other-board.img", "other-board", support::HARDWARE],
    );
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT"),
        before.vars.get("BOOT_B_LEFT")
    );
    assert_running_slot_untouched(&mut rig, &before);

    // The same repository's release for this hardware installs: only the hardware was wrong.
    let (_, result) = install(&rig, &copy.path.display().to_string(), Image::V2.target());
    assert_eq!(result, Ok(Pass::Reboot));
}

#[test]
fn lower_security_version_is_refused() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    let counter = rig.config.state_dir.join(SECURITY_VERSION_FILE);
    std::fs::write(&counter, "5\n").unwrap();

    let (mut device, result) = install(&rig, &shared_repo(), Image::V2.target());
    let r = refused(result, Reason::SecurityVersionRollback);
    assert_names(&r, &["sim/v2.img", "security version 2", "installed 5"]);
    assert_eq!(device.security_version(), Ok(5));
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "5\n");
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT"),
        before.vars.get("BOOT_B_LEFT")
    );
    assert_running_slot_untouched(&mut rig, &before);
}

#[test]
fn truncated_download_is_refused_and_resumes() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    let http = serve_v2_with(Fault::Truncate);
    let length = Image::V2.bytes().len() as u64;

    let (device, result) = install(&rig, &http.url, Image::V2.target());
    let r = refused(result, Reason::Truncated);
    assert!(r.is_retryable());
    assert_names(
        &r,
        &["sim/v2.img", "ended at byte", &format!("of {length}")],
    );
    // Kept for resuming: still installing, from the last checkpoint (16 KiB).
    let state = device.load_state().unwrap();
    let Phase::Installing { slot, written, .. } = &state.phase else {
        panic!("not installing any more: {:?}", state.phase);
    };
    assert_eq!((*slot, *written), (Slot::B, 16 * 1024));
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT").map(String::as_str),
        Some("0")
    );
    assert_running_slot_untouched(&mut rig, &before);

    // The server is fixed: the next install resumes with a range request and activates B.
    http.set_fault(Fault::None);
    let (device, result) = install(&rig, &http.url, Image::V2.target());
    assert_eq!(result, Ok(Pass::Reboot));
    let v2 = target_request_path(Image::V2.target(), &Image::V2.bytes());
    let ranged: Vec<Seen> = http
        .seen()
        .into_iter()
        .filter(|s| s.path == v2 && s.range.is_some())
        .collect();
    assert_eq!(ranged.len(), 1, "{:?}", http.seen());
    assert_eq!(ranged[0].range.as_deref(), Some("bytes=16384-"));
    assert_eq!(
        ranged[0].if_range,
        Some(format!("\"{}\"", hex_sha256(&Image::V2.bytes())))
    );
    let state = device.load_state().unwrap();
    assert!(
        matches!(state.phase, Phase::Activated { slot: Slot::B, .. }),
        "{:?}",
        state.phase
    );
    assert_eq!(classify(&rig.slot_bytes(Slot::B)), Some(Image::V2));
    assert_eq!(rig.slot_bytes(Slot::A), before.slot_a);
    assert_eq!(rig.power_on(), Ok(Slot::B));
}

#[test]
fn endless_download_is_refused() {
    let mut rig = Rig::new(Backend::Grub);
    let before = power_on_and_snapshot(&mut rig);
    let http = serve_v2_with(Fault::Endless);
    let length = Image::V2.bytes().len();

    let began = std::time::Instant::now();
    let (device, result) = install(&rig, &http.url, Image::V2.target());
    let r = refused(result, Reason::TooLong);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    assert_names(
        &r,
        &[
            "sim/v2.img",
            &format!("more than the signed {length} bytes"),
        ],
    );
    // Refused, not retried: nothing beyond the signed length reached the slot.
    let state = device.load_state().unwrap();
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(state.last_result.map(|l| l.reason), Some(Reason::TooLong));
    let b = rig.slot_bytes(Slot::B);
    assert_eq!(b.len(), SLOT_BYTES);
    assert!(
        b[length..].iter().all(|&x| x == 0xEE),
        "written past the signed length"
    );
    assert_eq!(
        env_vars(&rig).get("BOOT_B_LEFT").map(String::as_str),
        Some("0")
    );
    assert_running_slot_untouched(&mut rig, &before);
}

#[test]
fn slot_too_small_is_refused() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    let state_before = std::fs::read(state_path(&rig)).unwrap();

    let (_, result) = install(&rig, &shared_repo(), "sim/too-big.img");
    let r = refused(result, Reason::SlotTooSmall);
    assert_names(
        &r,
        &[
            "sim/too-big.img",
            &format!("{} bytes", SLOT_BYTES + 1),
            "slot B",
            &format!("holds only {SLOT_BYTES}"),
        ],
    );
    // Refused before anything: slot B neither written nor even marked bad, no state change.
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    let b_left = env_vars(&rig).get("BOOT_B_LEFT").cloned();
    assert_eq!(b_left, before.vars.get("BOOT_B_LEFT").cloned());
    assert_ne!(b_left.as_deref(), Some("0"));
    assert_eq!(std::fs::read(state_path(&rig)).unwrap(), state_before);
    assert_running_slot_untouched(&mut rig, &before);
}

#[test]
fn corrupt_uboot_environment_is_refused() {
    // U-Boot, both redundant copies failing their CRC.
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    // Make sure both copies were valid once (the factory files are erased flash).
    let mut device = rig.device(Disk::new());
    let mut state = device.load_state().unwrap();
    rampart_agent::daemon::boot(&mut device, &mut state, &rig.health()).unwrap();
    let env_files = ["env-1", "env-2"].map(|f| rig.dir.path().join(f));
    for f in &env_files {
        let mut raw = std::fs::read(f).unwrap();
        raw[0] ^= 0xFF; // the CRC
        std::fs::write(f, raw).unwrap();
    }
    let env_before = env_files.clone().map(|f| std::fs::read(f).unwrap());
    let state_before = std::fs::read(state_path(&rig)).unwrap();

    let (_, result) = install(&rig, &shared_repo(), Image::V2.target());
    let r = refused(result, Reason::BootEnvCorrupt);
    assert_names(&r, &["U-Boot environment", "env-1", "CRC"]);
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    assert!(
        rig.slot_bytes(Slot::A) == before.slot_a,
        "slot A was written"
    );
    for (f, bytes) in env_files.iter().zip(&env_before) {
        assert!(
            std::fs::read(f).unwrap() == *bytes,
            "{} was written",
            f.display()
        );
    }
    assert_eq!(std::fs::read(state_path(&rig)).unwrap(), state_before);
    // U-Boot falls back to its default environment, which boots A.
    assert_powers_on_into_a(&mut rig);

    // GRUB, a damaged environment block.
    let mut rig = Rig::new(Backend::Grub);
    let before = power_on_and_snapshot(&mut rig);
    let grubenv = rig.dir.path().join("grubenv");
    // The block keeps its size and signature; everything after it is garbage.
    let mut block = std::fs::read(&grubenv).unwrap();
    assert_eq!(block.len(), 1024);
    let header = b"# GRUB Environment Block\n".len();
    for (i, b) in block[header..].iter_mut().enumerate() {
        *b = [0xDE, 0xAD, 0xBE, 0xEF][i % 4];
    }
    std::fs::write(&grubenv, &block).unwrap();
    assert!(Rig::store(&rig.config).load().is_err());
    let env_before = std::fs::read(&grubenv).unwrap();
    let state_before = std::fs::read(state_path(&rig)).unwrap();

    let (_, result) = install(&rig, &shared_repo(), Image::V2.target());
    let r = refused(result, Reason::BootEnvCorrupt);
    assert_names(&r, &["grubenv", "GRUB environment block"]);
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    assert!(
        rig.slot_bytes(Slot::A) == before.slot_a,
        "slot A was written"
    );
    assert!(
        std::fs::read(&grubenv).unwrap() == env_before,
        "grubenv was written"
    );
    assert_eq!(std::fs::read(state_path(&rig)).unwrap(), state_before);
    assert_powers_on_into_a(&mut rig);
}

#[test]
fn corrupt_state_file_is_refused() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let before = power_on_and_snapshot(&mut rig);
    std::fs::write(state_path(&rig), b"{\"format\":1,\"phase\":\x00garbage").unwrap();

    let mut device = rig.device(Disk::new());
    let r = device.load_state().unwrap_err();
    assert_eq!(r.reason, Reason::StateCorrupt, "{}", r.detail);
    assert_names(&r, &[STATE_FILE, "corrupt", "reset-state"]);
    assert_eq!(device.disk.steps(), 0, "{:?}", device.disk.journal());
    assert!(
        rig.slot_bytes(Slot::B) == before.slot_b,
        "slot B was written"
    );
    assert_eq!(env_vars(&rig), before.vars);
    assert!(
        rig.slot_bytes(Slot::A) == before.slot_a,
        "slot A was written"
    );

    // `reset-state` rebuilds it from the running slot; then an install works.
    let mut state = device.reset_state().unwrap();
    assert_eq!(state.committed, Some(Slot::A));
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(device.load_state().unwrap(), state);
    let pass = install_from(
        &mut device,
        &mut state,
        &shared_repo(),
        Image::V2.target(),
        &rig.health(),
        &quiet,
    );
    assert_eq!(pass, Ok(Pass::Reboot));
    assert_eq!(classify(&rig.slot_bytes(Slot::B)), Some(Image::V2));
    assert!(
        rig.slot_bytes(Slot::A) == before.slot_a,
        "slot A was written"
    );
}
