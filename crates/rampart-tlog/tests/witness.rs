//! The tlog-witness server over real HTTP on 127.0.0.1: protocol statuses, durable state across
//! restarts, split-view resistance with a 2-of-3 policy, and atomic compare-and-persist.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rampart_log::checkpoint::Checkpoint;
use rampart_log::cosignature::{sign_checkpoint, verify_cosignature};
use rampart_log::merkle::{self, Hash};
use rampart_log::note::{Note, NoteSignature, NoteSigner, Verifier};
use rampart_log::policy::{PolicyError, WitnessPolicy};
use rampart_tlog::witness::{
    CONTENT_TYPE_TLOG_SIZE, MAX_REQUEST_BODY, SubmitOutcome, Witness, WitnessClientError,
    WitnessConfig, WitnessError, request_body, serve, state_file_name, submit,
};

use rampart_testkit::http::BlockingClient;

const TIMEOUT: Duration = Duration::from_secs(20);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A tree given by its leaf hashes.
#[derive(Clone)]
struct Tree {
    leaves: Vec<Hash>,
}

impl Tree {
    /// `n` leaves named `<tag><i>`.
    fn new(tag: &str, n: usize) -> Tree {
        Tree {
            leaves: (0..n)
                .map(|i| merkle::leaf_hash(format!("{tag}{i}").as_bytes()))
                .collect(),
        }
    }

    /// This tree's first `keep` leaves followed by `n` leaves named `<tag><i>`.
    fn fork(&self, keep: usize, tag: &str, n: usize) -> Tree {
        let mut leaves = self.leaves[..keep].to_vec();
        leaves.extend(Tree::new(tag, n).leaves);
        Tree { leaves }
    }

    fn root(&self, size: u64) -> Hash {
        merkle::root_from_leaf_hashes(&self.leaves[..size as usize])
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        let leaves = &self.leaves;
        merkle::consistency_proof(old, new, &mut |level, index| {
            let start = (index << level) as usize;
            let end = ((index + 1) << level) as usize;
            Ok::<_, Infallible>(merkle::root_from_leaf_hashes(&leaves[start..end]))
        })
        .unwrap()
    }
}

/// A log: its origin and signing key.
struct Log {
    signer: NoteSigner,
}

impl Log {
    fn new(origin: &str, seed: u8) -> Log {
        Log {
            signer: NoteSigner::from_seed(origin, [seed; 32]).unwrap(),
        }
    }

    fn origin(&self) -> &str {
        self.signer.name()
    }

    fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    fn signed(&self, tree: &Tree, size: u64) -> Note {
        let cp = Checkpoint::new(self.origin(), size, tree.root(size));
        sign_checkpoint(&self.signer, &cp).unwrap()
    }

    fn note(&self, tree: &Tree, size: u64) -> Vec<u8> {
        self.signed(tree, size).to_bytes()
    }
}

/// A witness served on an ephemeral port of 127.0.0.1 by its own runtime.
struct Server {
    url: String,
    verifier: Verifier,
    rt: Option<tokio::runtime::Runtime>,
}

fn witness(dir: &Path, name: &str, seed: u8, logs: Vec<Verifier>) -> Result<Witness, WitnessError> {
    Witness::new(WitnessConfig {
        signer: NoteSigner::cosigner_from_seed(name, [seed; 32]).unwrap(),
        state_dir: dir.to_path_buf(),
        logs,
    })
}

fn start(dir: &Path, name: &str, seed: u8, logs: Vec<Verifier>) -> Server {
    let witness = Arc::new(witness(dir, name, seed, logs).unwrap());
    let verifier = witness.verifier();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(witness, listener));
    Server {
        url: format!("http://{addr}"),
        verifier,
        rt: Some(rt),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropping the tasks drops every handle on the witness (and its state-directory lock).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Server {
    fn submit(&self, old: u64, proof: &[Hash], note: &[u8]) -> SubmitOutcome {
        submit(&self.url, old, proof, note, TIMEOUT).unwrap()
    }

    fn submit_err(&self, old: u64, proof: &[Hash], note: &[u8]) -> (u16, String) {
        match submit(&self.url, old, proof, note, TIMEOUT) {
            Err(WitnessClientError::Status { status, body, .. }) => (status, body),
            other => panic!("expected an error status, got {other:?}"),
        }
    }

    /// Submits and checks the single cosignature returned against this witness's key.
    fn cosign(&self, old: u64, proof: &[Hash], note: &[u8]) -> NoteSignature {
        let SubmitOutcome::Cosigned(sigs) = self.submit(old, proof, note) else {
            panic!("expected a cosignature");
        };
        assert_eq!(sigs.len(), 1);
        let text = Note::parse(note).unwrap().text;
        let ts = verify_cosignature(&self.verifier, &text, &sigs[0]).unwrap();
        let t = now();
        assert!(ts + 60 >= t && ts <= t + 60, "timestamp {ts} vs now {t}");
        sigs.into_iter().next().unwrap()
    }

    /// A raw POST: status, content type and body.
    fn post(&self, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let resp = BlockingClient::new(&self.url, None)
            .request("POST", path, &[], body)
            .unwrap();
        let ct = resp.header("content-type").unwrap_or_default().to_owned();
        (resp.status, ct, resp.body)
    }
}

#[test]
fn happy_path_cosigns_first_and_extended_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new("example.com/log", 1);
    let w = start(dir.path(), "witness.example/w1", 11, vec![log.verifier()]);
    let tree = Tree::new("leaf", 13);

    // First contact: old 0, empty proof.
    let first = w.cosign(0, &[], &log.note(&tree, 5));
    assert_eq!(first.name, "witness.example/w1");

    // Extension with a real consistency proof.
    let proof = tree.proof(5, 13);
    assert!(!proof.is_empty());
    let note13 = log.note(&tree, 13);
    let sig = w.cosign(5, &proof, &note13);

    // The same checkpoint again (old = size, same root) is cosigned again.
    w.cosign(13, &[], &note13);

    // The response lines attach to the checkpoint and satisfy a 1-of-1 policy.
    let mut note = log.signed(&tree, 13);
    note.signatures.push(sig);
    let policy =
        WitnessPolicy::new(log.verifier(), log.origin(), vec![w.verifier.clone()], 1).unwrap();
    let cp = policy.verify_checkpoint(&note).unwrap();
    assert_eq!((cp.size, cp.root), (13, tree.root(13)));

    // The state on disk is the latest cosigned checkpoint.
    let state = std::fs::read_to_string(dir.path().join(state_file_name(log.origin()))).unwrap();
    assert_eq!(
        state,
        format!("example.com/log\n13\n{}\n", B64.encode(tree.root(13)))
    );
}

#[test]
fn protocol_errors_get_the_specified_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new("example.com/log", 1);
    let fresh = Log::new("example.com/fresh", 2);
    let w = start(
        dir.path(),
        "witness.example/w1",
        11,
        vec![log.verifier(), fresh.verifier()],
    );
    let tree = Tree::new("leaf", 16);
    let other = Tree::new("other", 16);
    w.cosign(0, &[], &log.note(&tree, 5));

    // 404: a log the witness does not know.
    let unknown = Log::new("unknown.example/log", 3);
    let (status, _) = w.submit_err(0, &[], &unknown.note(&tree, 5));
    assert_eq!(status, 404);

    // 403: signed by another key under the right name (ignored, so no trusted signature) ...
    let impostor = Log::new("example.com/log", 4);
    let (status, _) = w.submit_err(5, &tree.proof(5, 8), &impostor.note(&tree, 8));
    assert_eq!(status, 403);
    // ... and a signature line from the trusted key that does not verify.
    let mut forged = log.signed(&tree, 8);
    forged.signatures[0].signature[0] ^= 1;
    let (status, _) = w.submit_err(5, &tree.proof(5, 8), &forged.to_bytes());
    assert_eq!(status, 403);
    // ... even next to a valid one.
    let mut mixed = log.signed(&tree, 8);
    mixed.signatures.push(forged.signatures[0].clone());
    let (status, _) = w.submit_err(5, &tree.proof(5, 8), &mixed.to_bytes());
    assert_eq!(status, 403);

    // 400: old size larger than the checkpoint size.
    let (status, _) = w.submit_err(9, &[], &log.note(&tree, 8));
    assert_eq!(status, 400);

    // 400: malformed bodies.
    let note8 = log.note(&tree, 8);
    let mut no_blank = b"old 5\n".to_vec();
    no_blank.extend_from_slice(&note8);
    let mut bad_proof_line = b"old 5\nnot-a-hash\n\n".to_vec();
    bad_proof_line.extend_from_slice(&note8);
    let mut leading_zero = b"old 05\n\n".to_vec();
    leading_zero.extend_from_slice(&note8);
    let mut too_many = b"old 5\n".to_vec();
    for _ in 0..65 {
        too_many.extend_from_slice(format!("{}\n", B64.encode([0u8; 32])).as_bytes());
    }
    too_many.push(b'\n');
    too_many.extend_from_slice(&note8);
    let unsigned = request_body(5, &[], b"example.com/log\n8\nAAAA\n");
    let not_checkpoint = {
        let mut n = Note::new("hello\n").unwrap();
        log.signer.sign_note(&mut n).unwrap();
        request_body(0, &[], &n.to_bytes())
    };
    for body in [
        b"hello".to_vec(),
        b"old 5\n\n".to_vec(),
        no_blank,
        bad_proof_line,
        leading_zero,
        too_many,
        unsigned,
        not_checkpoint,
    ] {
        let (status, ct, _) = w.post("/add-checkpoint", &body);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(ct.starts_with("text/plain"));
    }

    // 409: the old size is not the witness's size; body and content type as specified.
    let stale = request_body(0, &[], &log.note(&tree, 8));
    let (status, ct, body) = w.post("/add-checkpoint", &stale);
    assert_eq!(
        (status, ct.as_str(), body.as_slice()),
        (409, CONTENT_TYPE_TLOG_SIZE, &b"5\n"[..])
    );
    assert_eq!(
        w.submit(3, &tree.proof(3, 8), &log.note(&tree, 8)),
        SubmitOutcome::Conflict { witness_size: 5 }
    );

    // 422: a proof that does not lead from the stored root, a truncated proof, a proof for
    // another tree, a split view at the stored size, and a non-empty proof at the same size.
    let mut wrong = tree.proof(5, 8);
    wrong[0][0] ^= 1;
    let (status, _) = w.submit_err(5, &wrong, &log.note(&tree, 8));
    assert_eq!(status, 422);
    let full = tree.proof(5, 8);
    let (status, _) = w.submit_err(5, &full[..full.len() - 1], &log.note(&tree, 8));
    assert_eq!(status, 422);
    let (status, _) = w.submit_err(5, &other.proof(5, 8), &log.note(&other, 8));
    assert_eq!(status, 422);
    let (status, _) = w.submit_err(5, &[], &log.note(&other, 5));
    assert_eq!(status, 422);
    let (status, _) = w.submit_err(5, &[[0u8; 32]], &log.note(&tree, 5));
    assert_eq!(status, 422);

    // 422 for a log with nothing stored: a proof with old size 0; a size-0 checkpoint whose root
    // is not the empty-tree hash.
    let (status, _) = w.submit_err(0, &tree.proof(4, 8), &fresh.note(&tree, 8));
    assert_eq!(status, 422);
    let bogus_empty = sign_checkpoint(
        &fresh.signer,
        &Checkpoint::new(fresh.origin(), 0, tree.root(3)),
    )
    .unwrap();
    let (status, _) = w.submit_err(0, &[], &bogus_empty.to_bytes());
    assert_eq!(status, 422);
    // The empty tree itself is fine, and so is growing from it without a proof.
    w.cosign(0, &[], &fresh.note(&tree, 0));
    w.cosign(0, &[], &fresh.note(&tree, 2));

    // None of the failures moved the state: the valid extension still works.
    w.cosign(5, &tree.proof(5, 8), &log.note(&tree, 8));

    // HTTP-level limits: only POST, bounded bodies.
    let resp = BlockingClient::new(&w.url, None).get("/add-checkpoint");
    assert_eq!(resp.status, 405);
    let (status, _, _) = w.post("/add-checkpoint", &vec![b'a'; MAX_REQUEST_BODY + 1]);
    assert_eq!(status, 413);
    let (status, _, _) = w.post("/other", b"");
    assert_eq!(status, 404);
}

#[test]
fn protocol_logic_runs_without_http() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new("example.com/log", 1);
    let w = witness(dir.path(), "witness.example/w1", 11, vec![log.verifier()]).unwrap();
    let tree = Tree::new("leaf", 8);

    // An unusable clock is an internal error, and nothing is recorded.
    let body = request_body(0, &[], &log.note(&tree, 4));
    assert_eq!(w.add_checkpoint(&body, 0).status, 500);
    assert_eq!(w.latest(log.origin()), None);

    let resp = w.add_checkpoint(&body, 1_700_000_000);
    assert_eq!(resp.status, 200);
    let sig = NoteSignature::parse_line(std::str::from_utf8(&resp.body).unwrap()).unwrap();
    let text = Note::parse(&log.note(&tree, 4)).unwrap().text;
    assert_eq!(
        verify_cosignature(&w.verifier(), &text, &sig).unwrap(),
        1_700_000_000
    );
    assert_eq!(w.latest(log.origin()), Some((4, tree.root(4))));
    assert_eq!(w.add_checkpoint(&body, 1_700_000_001).body, b"4\n");
    assert_eq!(
        w.add_checkpoint(&vec![0; MAX_REQUEST_BODY + 1], 1).status,
        413
    );
}

#[test]
fn witness_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new("example.com/log", 1);
    let tree = Tree::new("leaf", 9);
    let fork = tree.fork(4, "fork", 5);
    assert_eq!(fork.leaves.len(), 9);
    assert_ne!(tree.root(9), fork.root(9));

    {
        let w = start(dir.path(), "witness.example/w1", 11, vec![log.verifier()]);
        w.cosign(0, &[], &log.note(&tree, 4));
        w.cosign(4, &tree.proof(4, 9), &log.note(&tree, 9));
        // A second witness cannot share the state directory while this one runs.
        let err = witness(dir.path(), "witness.example/w1", 11, vec![log.verifier()]).unwrap_err();
        assert!(matches!(err, WitnessError::Locked { .. }), "{err}");
    }

    let w = start(dir.path(), "witness.example/w1", 11, vec![log.verifier()]);
    assert_eq!(
        w.submit(0, &[], &log.note(&tree, 9)),
        SubmitOutcome::Conflict { witness_size: 9 }
    );
    assert_eq!(
        w.submit(4, &fork.proof(4, 9), &log.note(&fork, 9)),
        SubmitOutcome::Conflict { witness_size: 9 }
    );
    let (status, _) = w.submit_err(9, &[], &log.note(&fork, 9));
    assert_eq!(status, 422);
    // The checkpoint it did cosign is still accepted.
    w.cosign(9, &[], &log.note(&tree, 9));
    drop(w);

    // A damaged state file stops the witness from starting, naming the file.
    let path = dir.path().join(state_file_name(log.origin()));
    std::fs::write(&path, "example.com/log\n09\nxx\n").unwrap();
    let err = witness(dir.path(), "witness.example/w1", 11, vec![log.verifier()]).unwrap_err();
    assert!(matches!(err, WitnessError::BadStateFile { .. }), "{err}");
    assert!(
        err.to_string().contains(&state_file_name(log.origin())),
        "{err}"
    );
}

#[test]
fn split_view_cannot_reach_quorum() {
    let log = Log::new("example.com/log", 1);
    let common = Tree::new("common", 4);
    let a = common.fork(4, "a", 4);
    let b = common.fork(4, "b", 4);
    assert_ne!(a.root(8), b.root(8));
    let trees = [&a, &b];

    // For every choice of which tree each witness hears about first (AAA is "A to everyone
    // first", AAB is "A to w1 and w2, B to w3", ...), the log then pushes the other tree to
    // every witness by every route it has.
    for mask in 0..8u32 {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let servers: Vec<Server> = (0..3)
            .map(|i| {
                start(
                    dirs[i].path(),
                    &format!("witness.example/w{}", i + 1),
                    21 + i as u8,
                    vec![log.verifier()],
                )
            })
            .collect();
        let policy = WitnessPolicy::new(
            log.verifier(),
            log.origin(),
            servers.iter().map(|s| s.verifier.clone()).collect(),
            2,
        )
        .unwrap();

        // Everyone has seen the common prefix.
        for s in &servers {
            s.cosign(0, &[], &log.note(&common, 4));
        }
        let mut cosigs: [Vec<NoteSignature>; 2] = [Vec::new(), Vec::new()];
        for (i, s) in servers.iter().enumerate() {
            let t = (mask >> i & 1) as usize;
            cosigs[t].push(s.cosign(4, &trees[t].proof(4, 8), &log.note(trees[t], 8)));
        }
        for (i, s) in servers.iter().enumerate() {
            let t = 1 - (mask >> i & 1) as usize;
            let tree = trees[t];
            let note = log.note(tree, 8);
            for (old, proof) in [(0, Vec::new()), (4, tree.proof(4, 8))] {
                match s.submit(old, &proof, &note) {
                    SubmitOutcome::Conflict { witness_size } => assert_eq!(witness_size, 8),
                    SubmitOutcome::Cosigned(sigs) => cosigs[t].extend(sigs),
                }
            }
            match submit(&s.url, 8, &[], &note, TIMEOUT) {
                Err(WitnessClientError::Status { status, .. }) => assert_eq!(status, 422),
                Ok(SubmitOutcome::Cosigned(sigs)) => cosigs[t].extend(sigs),
                other => panic!("unexpected {other:?}"),
            }
        }

        let [ca, cb] = &cosigs;
        assert_eq!(ca.len() + cb.len(), 3, "mask {mask:03b}");
        assert!(
            ca.len() < 2 || cb.len() < 2,
            "mask {mask:03b}: both views reached quorum"
        );
        let (winner, loser) = if ca.len() >= 2 { (0, 1) } else { (1, 0) };
        let mut note_w = log.signed(trees[winner], 8);
        note_w.signatures.extend(cosigs[winner].iter().cloned());
        let cp = policy.verify_checkpoint(&note_w).unwrap();
        assert_eq!(cp.root, trees[winner].root(8));
        let mut note_l = log.signed(trees[loser], 8);
        note_l.signatures.extend(cosigs[loser].iter().cloned());
        assert!(matches!(
            policy.verify_checkpoint(&note_l),
            Err(PolicyError::InsufficientCosignatures { required: 2, .. })
        ));
        // Cosignatures for one view are worthless on the other.
        let mut grafted = log.signed(trees[loser], 8);
        grafted.signatures.extend(cosigs[winner].iter().cloned());
        assert!(policy.verify_checkpoint(&grafted).is_err());
    }
}

#[test]
fn concurrent_extensions_are_compared_and_persisted_atomically() {
    const ROUNDS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let logs: Vec<Log> = (0..ROUNDS)
        .map(|i| Log::new(&format!("example.com/log{i}"), 100 + i as u8))
        .collect();
    let w = start(
        dir.path(),
        "witness.example/w1",
        11,
        logs.iter().map(Log::verifier).collect(),
    );
    let base = Tree::new("base", 4);
    let x = base.fork(4, "x", 4); // size 8
    let y = base.fork(4, "y", 7); // size 11

    for log in &logs {
        w.cosign(0, &[], &log.note(&base, 4));
        let barrier = Barrier::new(2);
        let attempt = |tree: &Tree, size: u64| {
            let note = log.note(tree, size);
            let proof = tree.proof(4, size);
            barrier.wait();
            submit(&w.url, 4, &proof, &note, TIMEOUT).unwrap()
        };
        let (rx, ry) = std::thread::scope(|s| {
            let hx = s.spawn(|| attempt(&x, 8));
            let hy = s.spawn(|| attempt(&y, 11));
            (hx.join().unwrap(), hy.join().unwrap())
        });
        let (winner_size, winner) = match (&rx, &ry) {
            (SubmitOutcome::Cosigned(_), SubmitOutcome::Conflict { witness_size }) => {
                assert_eq!(*witness_size, 8);
                (8, &x)
            }
            (SubmitOutcome::Conflict { witness_size }, SubmitOutcome::Cosigned(_)) => {
                assert_eq!(*witness_size, 11);
                (11, &y)
            }
            other => panic!("expected exactly one cosignature and one conflict, got {other:?}"),
        };
        // The persisted state is the winner's.
        assert_eq!(
            w.submit(0, &[], &log.note(&base, 4)),
            SubmitOutcome::Conflict {
                witness_size: winner_size
            }
        );
        w.cosign(winner_size, &[], &log.note(winner, winner_size));
        let state =
            std::fs::read_to_string(dir.path().join(state_file_name(log.origin()))).unwrap();
        assert_eq!(
            state,
            format!(
                "{}\n{winner_size}\n{}\n",
                log.origin(),
                B64.encode(winner.root(winner_size))
            )
        );
    }
}
