//! Crash test of the transparency log (`rampart log serve`): the process is killed with SIGKILL
//! while clients append, 100 times over the same log directory. After each restart the log
//! must be consistent with every checkpoint it ever published, and every entry it acknowledged
//! must still be at the index it was acknowledged with.
//!
//! One witness runs for the whole test and the log needs its cosignature (quorum 1), so the
//! log's and the witness's views of the tree must also agree across the restarts.
//!
//! Each run is loaded by 4 client threads appending unique entries while a poller records
//! every checkpoint the log publishes, and is killed at a pseudo-random moment (seed in
//! `RAMPART_CRASH_SEED`, trace with `RAMPART_CRASH_VERBOSE=1`). After every kill the directory
//! is checked as the crash left it (published checkpoint vs. tiles, history, acknowledged
//! entries it covers); after most restarts the running log is probed and checked against
//! everything ever acknowledged and published. Some runs are killed before they integrate
//! anything (their restart is not probed, which would integrate), and some at the moment an
//! integration empties the write-ahead file, which is then followed by such a run: that is the
//! most fragile recovery path of `LogStore` (see the second test).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rampart_log::checkpoint::Checkpoint;
use rampart_log::cosignature::verify_cosignature;
use rampart_log::merkle::{Hash, empty_root, leaf_hash, verify_consistency, verify_inclusion};
use rampart_log::note::{Note, Verifier};
use rampart_log::tiles::TILE_WIDTH;
use rampart_testkit::cli::{ServerChild, StderrOnPanic};
use rampart_testkit::http::BlockingClient;
use rampart_tlog::tiles::{DirSource, TreeReader};

const LOG_ORIGIN: &str = "crash-test.rampart.example/log";
const WITNESS_NAME: &str = "crash-test.rampart.example/witness";
const ITERATIONS: usize = 100;
const CLIENTS: usize = 4;
const PUBLISH_INTERVAL_MS: u64 = 25;
/// Default seed of the kill schedule; override with `RAMPART_CRASH_SEED`.
const DEFAULT_SEED: u64 = 0x5EED_CAFE_F00D_0001;

// ---------------------------------------------------------------------------------------------
// Processes

/// Starts `rampart ARGS` (a log or witness server) and waits for its `listening on URL` line.
fn start_server(args: &[&str], stderr_log: &Path) -> ServerChild {
    ServerChild::start(args, stderr_log, "listening on ", Duration::from_secs(30))
}

/// `rampart log keygen`; returns the verifier key it prints.
fn keygen(name: &str, out: &Path, witness: bool) -> String {
    let mut cmd = Command::new(rampart_testkit::binaries::rampart_binary());
    cmd.args(["log", "keygen", "--name", name, "--out"])
        .arg(out)
        .stdin(Stdio::null());
    if witness {
        cmd.arg("--witness");
    }
    let output = cmd.output().expect("rampart log keygen runs");
    assert!(
        output.status.success(),
        "rampart log keygen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 verifier key")
        .trim()
        .to_string()
}

fn log_args<'a>(
    dir: &'a str,
    key: &'a str,
    witness: Option<&'a str>,
    publish_interval_ms: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "log",
        "serve",
        "--dir",
        dir,
        "--key",
        key,
        "--listen",
        "127.0.0.1:0",
        "--publish-interval-ms",
        publish_interval_ms,
    ];
    if let Some(w) = witness {
        args.extend(["--witness", w, "--quorum", "1"]);
    }
    args
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A client of the log at `url`. Requests are never repeated on their own: a POST the log
/// may have carried out before it was killed must be seen failing, not sent again.
fn log_client(url: &str) -> BlockingClient {
    BlockingClient::new(url, None).with_timeout(Duration::from_secs(10))
}

#[derive(Debug)]
enum PostError {
    /// No (complete) answer: the log died, or was not there.
    Transport(String),
    /// The log answered, but not with an index.
    Refused(u16, String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Transport(e) => write!(f, "no answer: {e}"),
            PostError::Refused(status, body) => write!(f, "status {status}: {}", body.trim_end()),
        }
    }
}

/// `POST /add`; the index, once the log acknowledged the entry.
fn post_entry(log: &BlockingClient, entry: &str) -> Result<u64, PostError> {
    let resp = log
        .request("POST", "/add", &[], entry.as_bytes())
        .map_err(|e| PostError::Transport(e.to_string()))?;
    let (status, body) = (resp.status, resp.text());
    if status != 200 {
        return Err(PostError::Refused(status, body));
    }
    let index = body
        .strip_suffix('\n')
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("POST /add answered 200 with {body:?}, not `<index>\\n`"));
    Ok(index)
}

/// `GET /checkpoint`: `None` before the first checkpoint is published.
fn get_checkpoint(log: &BlockingClient) -> Result<Option<Vec<u8>>, String> {
    let resp = log
        .request("GET", "/checkpoint", &[], b"")
        .map_err(|e| e.to_string())?;
    let (status, body) = (resp.status, resp.body);
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        _ => panic!(
            "GET /checkpoint answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// What the clients saw

struct Keys {
    log: Verifier,
    /// The witness whose cosignature every checkpoint needs (quorum 1), if any.
    witness: Option<Verifier>,
}

/// Parses a published checkpoint note and checks the log's signature (and the witness's
/// cosignature, if a witness is configured).
fn verify_checkpoint(bytes: &[u8], keys: &Keys) -> Checkpoint {
    let text = String::from_utf8_lossy(bytes);
    let note = Note::parse(bytes)
        .unwrap_or_else(|e| panic!("published checkpoint does not parse as a note ({e}):\n{text}"));
    note.verify(std::slice::from_ref(&keys.log))
        .unwrap_or_else(|e| panic!("published checkpoint is not signed by the log ({e}):\n{text}"));
    let cp = Checkpoint::parse_body(&note.text)
        .unwrap_or_else(|e| panic!("published note is not a checkpoint ({e}):\n{text}"));
    assert_eq!(cp.origin, LOG_ORIGIN, "checkpoint origin:\n{text}");
    if let Some(w) = &keys.witness {
        let cosigned = note
            .signatures
            .iter()
            .any(|s| w.matches(s) && verify_cosignature(w, &note.text, s).is_ok());
        assert!(
            cosigned,
            "a checkpoint was published without a valid witness cosignature (quorum 1):\n{text}"
        );
    }
    cp
}

/// Every checkpoint the log was seen to publish.
#[derive(Default)]
struct Observed {
    /// Tree size → root, over every published checkpoint seen.
    checkpoints: BTreeMap<u64, Hash>,
    /// Distinct checkpoint notes seen (cosignature timestamps make notes of one tree differ).
    notes: HashSet<Vec<u8>>,
}

impl Observed {
    fn record(&mut self, bytes: &[u8], keys: &Keys) -> Checkpoint {
        let cp = verify_checkpoint(bytes, keys);
        if self.notes.insert(bytes.to_vec()) {
            if let Some(root) = self.checkpoints.get(&cp.size) {
                assert_eq!(
                    *root, cp.root,
                    "two published checkpoints of size {} have different roots",
                    cp.size
                );
            } else {
                self.checkpoints.insert(cp.size, cp.root);
            }
        }
        cp
    }
}

/// An acknowledged entry.
struct Acked {
    entry: String,
    /// Proven included (inclusion proof) in a checkpoint in the history. From then on its
    /// inclusion follows from the consistency of that checkpoint with every later one, which
    /// is checked after every restart; the entry bundle and leaf tile are still rechecked.
    proven: bool,
}

/// Records an acknowledgement; an index acknowledged twice for different entries means the
/// first one was lost.
fn add_acked(acked: &mut BTreeMap<u64, Acked>, index: u64, entry: String) {
    if let Some(prev) = acked.get(&index) {
        panic!(
            "index {index} was acknowledged for {:?} and later for {entry:?}: the log lost an acknowledged entry",
            prev.entry
        );
    }
    acked.insert(
        index,
        Acked {
            entry,
            proven: false,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The check after a restart

#[derive(Default, Debug)]
struct CheckStats {
    size: u64,
    consistency: usize,
    entries: usize,
    inclusion: usize,
}

impl CheckStats {
    fn add(&mut self, other: &CheckStats) {
        self.consistency += other.consistency;
        self.entries += other.entries;
        self.inclusion += other.inclusion;
    }
}

/// Waits for the log at `url` to publish a checkpoint of at least `min_size` entries, then
/// runs [`verify_dir`] on it, requiring every acknowledged entry to be in it.
fn check_log(
    dir: &Path,
    url: &str,
    keys: &Keys,
    observed: &Mutex<Observed>,
    acked: &mut BTreeMap<u64, Acked>,
    min_size: u64,
) -> CheckStats {
    let log = log_client(url);
    let deadline = Instant::now() + Duration::from_secs(30);
    let cp = loop {
        let bytes = get_checkpoint(&log)
            .unwrap_or_else(|e| panic!("the restarted log does not serve /checkpoint: {e}"));
        let mut last = None;
        if let Some(bytes) = bytes {
            let cp = observed.lock().unwrap().record(&bytes, keys);
            if cp.size >= min_size {
                break cp;
            }
            last = Some(cp.size);
        }
        assert!(
            Instant::now() < deadline,
            "the restarted log published no checkpoint of size >= {min_size} within 30 s (last size {last:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let history = observed.lock().unwrap().checkpoints.clone();
    verify_dir(dir, &cp, &history, acked, true)
}

/// Right after a kill, before the restart: the checkpoint file left on disk (the last one
/// published) must be consistent with every checkpoint seen before, and the acknowledged
/// entries it covers must be in the tiles. Reads only; recovery is the next run's business.
fn check_dir_after_kill(
    dir: &Path,
    keys: &Keys,
    observed: &Mutex<Observed>,
    acked: &mut BTreeMap<u64, Acked>,
) -> Option<CheckStats> {
    let bytes = std::fs::read(dir.join("checkpoint")).ok()?;
    let cp = observed.lock().unwrap().record(&bytes, keys);
    let history = observed.lock().unwrap().checkpoints.clone();
    Some(verify_dir(dir, &cp, &history, acked, false))
}

/// Checks the tiles in `dir` against the published checkpoint `cp`: they give its root; every
/// checkpoint in `history` is consistent with it; every acknowledged entry below its size is
/// at its index (with `all_acked`, every acknowledged entry must be below its size).
fn verify_dir(
    dir: &Path,
    cp: &Checkpoint,
    history: &BTreeMap<u64, Hash>,
    acked: &mut BTreeMap<u64, Acked>,
    all_acked: bool,
) -> CheckStats {
    let mut stats = CheckStats {
        size: cp.size,
        ..CheckStats::default()
    };

    let source = DirSource(dir.to_path_buf());
    let mut reader = TreeReader::new(&source, cp.size);
    let root = reader
        .root()
        .unwrap_or_else(|e| panic!("tiles of the tree of size {}: {e}", cp.size));
    assert_eq!(
        root, cp.root,
        "the tiles do not give the root of the published checkpoint of size {}",
        cp.size
    );

    // (1) Every checkpoint ever published is a prefix of the current tree.
    for (&size, old_root) in history {
        assert!(
            size <= cp.size,
            "the log went back: it published a checkpoint of size {size}, and after a restart its checkpoint has size {}",
            cp.size
        );
        if size == 0 {
            assert_eq!(*old_root, empty_root(), "checkpoint of size 0 with a root");
        } else if size == cp.size {
            assert_eq!(
                *old_root, cp.root,
                "two checkpoints of size {size} with different roots"
            );
        } else {
            let proof = reader
                .consistency_proof(size)
                .unwrap_or_else(|e| panic!("consistency proof {size} -> {}: {e}", cp.size));
            verify_consistency(size, cp.size, &proof, old_root, &cp.root).unwrap_or_else(|e| {
                panic!(
                    "published checkpoint of size {size} is not consistent with the log's current checkpoint of size {}: {e}",
                    cp.size
                )
            });
        }
        stats.consistency += 1;
    }

    // (2) Every acknowledged entry is at its index, in the entry bundles and in the tree.
    if all_acked && let Some((&i, a)) = acked.range(cp.size..).next() {
        panic!(
            "acknowledged entry {:?} (index {i}) is lost: after the restart the log has {} entries",
            a.entry, cp.size
        );
    }
    let mut bundle: Option<(u64, Vec<Vec<u8>>)> = None;
    for (&i, a) in acked.range_mut(..cp.size) {
        let n = i / TILE_WIDTH;
        if bundle.as_ref().is_none_or(|(b, _)| *b != n) {
            let entries = reader.entries(n).unwrap_or_else(|e| {
                panic!("entry bundle {n} of the tree of size {}: {e}", cp.size)
            });
            bundle = Some((n, entries));
        }
        let got = &bundle.as_ref().expect("just read").1[(i % TILE_WIDTH) as usize];
        assert!(
            got.as_slice() == a.entry.as_bytes(),
            "acknowledged entry {:?} (index {i}) is lost: the log has {:?} at that index",
            a.entry,
            String::from_utf8_lossy(got)
        );
        let leaf = leaf_hash(a.entry.as_bytes());
        let tile_leaf = reader
            .node(0, i)
            .unwrap_or_else(|e| panic!("leaf {i} from the tiles: {e}"));
        assert_eq!(
            tile_leaf, leaf,
            "the level-0 tile holds another leaf hash at index {i} ({:?})",
            a.entry
        );
        if !a.proven {
            let proof = reader
                .inclusion_proof(i)
                .unwrap_or_else(|e| panic!("inclusion proof of {i} in {}: {e}", cp.size));
            verify_inclusion(&leaf, i, cp.size, &proof, &cp.root).unwrap_or_else(|e| {
                panic!(
                    "acknowledged entry {:?} (index {i}) is not in the checkpoint of size {}: {e}",
                    a.entry, cp.size
                )
            });
            a.proven = true;
            stats.inclusion += 1;
        }
        stats.entries += 1;
    }
    stats
}

/// Probes a freshly started log (one more entry) and runs [`check_log`] once it has published
/// a checkpoint that covers the probe, hence everything acknowledged before it.
fn probe_and_check(
    name: &str,
    dir: &Path,
    url: &str,
    keys: &Keys,
    observed: &Mutex<Observed>,
    acked: &mut BTreeMap<u64, Acked>,
) -> CheckStats {
    let index = post_entry(&log_client(url), name)
        .unwrap_or_else(|e| panic!("the restarted log did not acknowledge {name:?}: {e}"));
    add_acked(acked, index, name.to_string());
    let highest = *acked.keys().next_back().expect("the probe at least");
    check_log(dir, url, keys, observed, acked, highest.max(index) + 1)
}

// ---------------------------------------------------------------------------------------------
// Load

#[derive(Default)]
struct ClientStats {
    acked: usize,
    /// Requests that got no answer because the log was killed.
    cut: usize,
}

fn client(
    url: String,
    iteration: usize,
    thread: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, String)>>>,
) -> ClientStats {
    let log = log_client(&url);
    let mut stats = ClientStats::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let entry = format!("iter-{iteration}-thread-{thread}-{n}");
        n += 1;
        match post_entry(&log, &entry) {
            Ok(index) => {
                acked.lock().unwrap().push((index, entry));
                stats.acked += 1;
            }
            // The log was killed: this entry is not acknowledged and may or may not exist.
            Err(PostError::Transport(_)) => {
                stats.cut += 1;
                break;
            }
            Err(PostError::Refused(status, body)) => {
                panic!("the log refused {entry:?} with status {status}: {body}")
            }
        }
    }
    stats
}

/// Polls `/checkpoint` and records every distinct checkpoint until `stop` (or the log dies).
fn poller(url: String, keys: Arc<Keys>, stop: Arc<AtomicBool>, observed: Arc<Mutex<Observed>>) {
    let log = log_client(&url);
    let mut last: Vec<u8> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match get_checkpoint(&log) {
            Ok(Some(bytes)) if bytes != last => {
                observed.lock().unwrap().record(&bytes, &keys);
                last = bytes;
            }
            Ok(_) => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What the store's files say after a kill: (`wal-offset` in `log.state`, length of
/// `log.wal`). Only used to steer the kill schedule and for the summary, never to decide
/// pass or fail (the layout is documented at the top of `rampart-tlog/src/store.rs`).
fn wal_state(dir: &Path) -> Option<(u64, u64)> {
    let state = std::fs::read_to_string(dir.join("log.state")).ok()?;
    let offset = state
        .lines()
        .find_map(|l| l.strip_prefix("wal-offset "))?
        .parse()
        .ok()?;
    let wal_len = std::fs::metadata(dir.join("log.wal")).ok()?.len();
    Some((offset, wal_len))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Check the restarted log, then load it and kill it after 10-80 ms.
    Checked,
    /// Check the restarted log, then load it and kill it the moment `log.wal` is seen
    /// emptied (0-40 ms in), that is in the middle of an integration, after the WAL is
    /// truncated and around the update of `log.state`.
    CheckedKillAtIntegration,
    /// Load it at once and kill it after 10-30 ms, often before its first checkpoint; the
    /// next probed restart checks what it acknowledged.
    Cold,
    /// The last kill landed between emptying the WAL and recording that in `log.state`:
    /// kill this run right after its first acknowledgement, before it integrates anything.
    KillAfterFirstAck,
}

#[test]
fn log_survives_100_sigkills_during_appends() {
    let started = Instant::now();
    let seed = std::env::var("RAMPART_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = Rng(seed);
    // RAMPART_CRASH_VERBOSE=1 traces every iteration on stderr.
    let verbose = std::env::var_os("RAMPART_CRASH_VERBOSE").is_some();
    let tmp = tempfile::tempdir().unwrap();
    let stderr_log = tmp.path().join("servers.stderr");
    let _stderr_on_panic = StderrOnPanic(stderr_log.clone());

    let log_key = tmp.path().join("log.key");
    let log_vkey = keygen(LOG_ORIGIN, &log_key, false);
    let witness_key = tmp.path().join("witness.key");
    let witness_vkey = keygen(WITNESS_NAME, &witness_key, true);
    let keys = Arc::new(Keys {
        log: Verifier::parse(&log_vkey).unwrap(),
        witness: Some(Verifier::parse(&witness_vkey).unwrap()),
    });

    let witness_state = tmp.path().join("witness");
    let witness = start_server(
        &[
            "witness",
            "serve",
            "--key",
            witness_key.to_str().unwrap(),
            "--state",
            witness_state.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log",
            &log_vkey,
        ],
        &stderr_log,
    );
    let witness_arg = format!("{}={witness_vkey}", witness.listening);
    let log_dir = tmp.path().join("log");
    let interval = PUBLISH_INTERVAL_MS.to_string();
    let args = log_args(
        log_dir.to_str().unwrap(),
        log_key.to_str().unwrap(),
        Some(&witness_arg),
        &interval,
    );

    let observed = Arc::new(Mutex::new(Observed::default()));
    let mut acked: BTreeMap<u64, Acked> = BTreeMap::new();
    let mut totals = CheckStats::default();
    let (mut checks, mut cut, mut window_hits, mut unintegrated_at_kill) = (0, 0, 0, 0);
    let (mut kills_after_acks, mut dir_checks) = (0, 0);
    let mut modes = BTreeMap::<String, usize>::new();
    let mut mode = Mode::Checked;

    for iteration in 0..ITERATIONS {
        let mut log = start_server(&args, &stderr_log);
        *modes.entry(format!("{mode:?}")).or_default() += 1;
        if matches!(mode, Mode::Checked | Mode::CheckedKillAtIntegration) {
            let s = probe_and_check(
                &format!("iter-{iteration}-probe"),
                &log_dir,
                &log.listening,
                &keys,
                &observed,
                &mut acked,
            );
            checks += 1;
            totals.add(&s);
        }

        // Load the log from CLIENTS threads, watch its checkpoints, and kill it.
        let stop = Arc::new(AtomicBool::new(false));
        let new_acks = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (url, stop, new_acks) = (log.listening.clone(), stop.clone(), new_acks.clone());
                std::thread::spawn(move || client(url, iteration, t, stop, new_acks))
            })
            .collect();
        let watcher = {
            let (url, keys, stop, observed) = (
                log.listening.clone(),
                keys.clone(),
                stop.clone(),
                observed.clone(),
            );
            std::thread::spawn(move || poller(url, keys, stop, observed))
        };
        let load_started = Instant::now();
        match mode {
            Mode::Checked => std::thread::sleep(Duration::from_millis(rng.range(10, 80))),
            Mode::Cold => std::thread::sleep(Duration::from_millis(rng.range(10, 30))),
            Mode::CheckedKillAtIntegration => {
                std::thread::sleep(Duration::from_millis(rng.range(0, 40)));
                let wal = log_dir.join("log.wal");
                let deadline = Instant::now() + Duration::from_millis(200);
                let mut seen_records = false;
                while Instant::now() < deadline {
                    let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    if len > 0 {
                        seen_records = true;
                    } else if seen_records {
                        break;
                    }
                }
            }
            Mode::KillAfterFirstAck => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while new_acks.lock().unwrap().is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        let killed_after = load_started.elapsed();
        log.kill();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            let s = c.join().expect("client thread");
            cut += s.cut;
        }
        watcher.join().expect("checkpoint poller");
        let iter_acks = std::mem::take(&mut *new_acks.lock().unwrap());
        for (index, entry) in iter_acks.iter().cloned() {
            add_acked(&mut acked, index, entry);
        }

        if !iter_acks.is_empty() {
            kills_after_acks += 1;
        }
        if let Some(s) = check_dir_after_kill(&log_dir, &keys, &observed, &mut acked) {
            dir_checks += 1;
            totals.add(&s);
        }
        let disk = wal_state(&log_dir);
        let torn_window = disk.is_some_and(|(offset, len)| offset > len);
        if disk.is_some_and(|(offset, len)| len > offset) {
            unintegrated_at_kill += 1;
        }
        if torn_window {
            window_hits += 1;
        }
        if verbose {
            eprintln!(
                "iteration {iteration}: {mode:?}, killed after {:?}, acknowledged {} (indices {:?}..={:?}), log.state wal-offset / log.wal length after the kill: {disk:?}",
                killed_after,
                iter_acks.len(),
                iter_acks.iter().map(|a| a.0).min(),
                iter_acks.iter().map(|a| a.0).max(),
            );
        }
        mode = if torn_window {
            Mode::KillAfterFirstAck
        } else {
            match rng.range(0, 9) {
                0 | 1 => Mode::Cold,
                2 | 3 => Mode::CheckedKillAtIntegration,
                _ => Mode::Checked,
            }
        };
    }

    // One more restart checks what the last killed run acknowledged and published.
    let log = start_server(&args, &stderr_log);
    let s = probe_and_check(
        "final-probe",
        &log_dir,
        &log.listening,
        &keys,
        &observed,
        &mut acked,
    );
    checks += 1;
    totals.add(&s);
    drop(log);
    drop(witness);

    let observed = observed.lock().unwrap();
    println!(
        "log crash test (seed {seed:#x}): {ITERATIONS} SIGKILLs during appends ({modes:?}), {checks} checks after restarts and {dir_checks} of the directory right after kills, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  {} entries acknowledged (final tree size {}); {kills_after_acks} kills came after the run had acknowledged appends, {cut} appends were cut by the kills, {unintegrated_at_kill} kills left sequenced but unintegrated entries in the WAL, {window_hits} kills landed between WAL truncation and the state update",
        acked.len(),
        s.size
    );
    println!(
        "  {} distinct checkpoints ({} tree sizes) published and witnessed; {} consistency proofs, {} acknowledged-entry checks, {} inclusion proofs verified",
        observed.notes.len(),
        observed.checkpoints.len(),
        totals.consistency,
        totals.entries,
        totals.inclusion
    );
    assert!(
        kills_after_acks >= ITERATIONS * 3 / 4,
        "only {kills_after_acks} of the {ITERATIONS} runs acknowledged appends before they were killed"
    );
    assert!(
        acked.len() > ITERATIONS,
        "too few appends were acknowledged to exercise anything"
    );
    assert!(
        observed.checkpoints.len() > ITERATIONS / 2,
        "too few checkpoints were published to exercise anything"
    );
}

/// A kill inside `LogStore::integrate` after the WAL is emptied (`set_len(0)` + fsync) and
/// before `log.state` says `wal-offset 0` leaves `log.state` naming an offset past the end of
/// the (now empty) WAL. The directory is put in exactly that state (the random kills above
/// only hit the window now and then); the entry the next run acknowledges must survive that
/// run being killed too.
#[test]
fn acknowledged_entry_survives_a_kill_between_wal_truncation_and_state_update() {
    let tmp = tempfile::tempdir().unwrap();
    let stderr_log = tmp.path().join("servers.stderr");
    let _stderr_on_panic = StderrOnPanic(stderr_log.clone());
    let log_key = tmp.path().join("log.key");
    let log_vkey = keygen(LOG_ORIGIN, &log_key, false);
    let keys = Keys {
        log: Verifier::parse(&log_vkey).unwrap(),
        witness: None,
    };
    let dir = tmp.path().join("log");
    let (dir_s, key_s) = (dir.to_str().unwrap(), log_key.to_str().unwrap());
    let observed = Mutex::new(Observed::default());
    let mut acked = BTreeMap::new();

    // Run 1: two entries, each integrated on its own; the second one's WAL record is
    // 4 + 200 + 4 bytes, so that integration ends with truncating a 208-byte WAL.
    let mut log = start_server(&log_args(dir_s, key_s, None, "20"), &stderr_log);
    probe_and_check("first", &dir, &log.listening, &keys, &observed, &mut acked);
    let long = format!("second-{}", "x".repeat(193));
    assert_eq!(long.len(), 200);
    probe_and_check(&long, &dir, &log.listening, &keys, &observed, &mut acked);
    log.kill();
    assert_eq!(
        wal_state(&dir),
        Some((0, 0)),
        "after integrating everything, log.state should say wal-offset 0 and log.wal be empty"
    );
    // The kill window: `write_state(2, 208)` is durable and the WAL emptied, but
    // `write_state(2, 0)` has not happened.
    std::fs::write(dir.join("log.state"), "integrated 2\nwal-offset 208\n").unwrap();

    // Run 2: an entry is acknowledged, then the log is killed before it integrates it (its
    // publish interval is a minute).
    let mut log = start_server(&log_args(dir_s, key_s, None, "60000"), &stderr_log);
    let entry = "acknowledged-after-recovery";
    let index =
        post_entry(&log_client(&log.listening), entry).expect("run 2 acknowledges the entry");
    assert_eq!(index, 2, "run 2 sequences after the two integrated entries");
    add_acked(&mut acked, index, entry.to_string());
    log.kill();

    // Run 3: the acknowledged entry must still be at index 2.
    let log = start_server(&log_args(dir_s, key_s, None, "20"), &stderr_log);
    let s = probe_and_check("third", &dir, &log.listening, &keys, &observed, &mut acked);
    assert!(s.size >= 4, "{s:?}");
}
