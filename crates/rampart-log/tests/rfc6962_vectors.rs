//! RFC 6962 / RFC 9162 Merkle proofs: the transparency-dev/merkle known-answer vectors, plus
//! deterministic property tests of the proof generators, the verifiers and the compact range.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use rampart_log::merkle::{
    CompactRange, Hash, ProofError, border_nodes, consistency_proof, empty_root, inclusion_proof,
    leaf_hash, node_hash, root_from_leaf_hashes, root_from_nodes, verify_consistency,
    verify_inclusion,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Known-answer vectors
// ---------------------------------------------------------------------------------------------

/// Number of JSON files the vector directory is known to hold.
const MIN_VECTOR_FILES: usize = 196;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/rfc6962-merkle")
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            collect_json(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

fn decode_bytes(v: &Value) -> Result<Vec<u8>, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("hash is not a string: {v}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64 {s:?}: {e}"))
}

/// A leaf hash or proof element: `None` when it is not 32 bytes. A caller holding typed
/// hashes rejects such a value before verifying anything (transparency-dev checks the leaf
/// hash's length too), so the vector counts as rejected.
fn strict_hash(v: &Value) -> Result<Option<Hash>, String> {
    Ok(<Hash>::try_from(decode_bytes(v)?.as_slice()).ok())
}

/// A root. transparency-dev compares roots byte-wise without checking their length, and one
/// positive vector ("sizes are equal (one) and proof is empty") holds two identical 12-byte
/// roots. So a root that is not 32 bytes is replaced by a domain-separated SHA-256 of its
/// bytes: equal values stay equal, and none equals a real tree hash, so the verifier itself
/// judges those vectors.
fn root_hash(v: &Value) -> Result<Hash, String> {
    let bytes = decode_bytes(v)?;
    if let Ok(h) = <Hash>::try_from(bytes.as_slice()) {
        return Ok(h);
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"rampart test stand-in for a malformed root\0");
    ctx.update(&bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("missing field {name:?}"))
}

fn field_u64(v: &Value, name: &str) -> Result<u64, String> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| format!("field {name:?} is not a u64"))
}

/// The proof (null means empty); `None` if an element is not 32 bytes.
fn field_proof(v: &Value) -> Result<Option<Vec<Hash>>, String> {
    match field(v, "proof")? {
        Value::Null => Ok(Some(Vec::new())),
        Value::Array(items) => Ok(items
            .iter()
            .map(strict_hash)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .collect()),
        other => Err(format!("proof is neither null nor an array: {other}")),
    }
}

/// Runs one vector: `Ok(Ok(()))` accepted, `Ok(Err(why))` rejected, `Err` malformed vector.
fn run_vector(kind: &str, v: &Value) -> Result<Result<(), String>, String> {
    let Some(proof) = field_proof(v)? else {
        return Ok(Err("a proof element is not 32 bytes".into()));
    };
    let result = if kind == "inclusion" {
        let Some(leaf) = strict_hash(field(v, "leafHash")?)? else {
            return Ok(Err("the leaf hash is not 32 bytes".into()));
        };
        verify_inclusion(
            &leaf,
            field_u64(v, "leafIdx")?,
            field_u64(v, "treeSize")?,
            &proof,
            &root_hash(field(v, "root")?)?,
        )
    } else {
        verify_consistency(
            field_u64(v, "size1")?,
            field_u64(v, "size2")?,
            &proof,
            &root_hash(field(v, "root1")?)?,
            &root_hash(field(v, "root2")?)?,
        )
    };
    Ok(result.map_err(|e| e.to_string()))
}

#[test]
fn transparency_dev_vectors() {
    let root = vectors_dir();
    assert!(
        root.is_dir(),
        "vector directory {} is missing",
        root.display()
    );
    let mut total = 0usize;
    let mut positives = 0usize;
    let mut failures = Vec::new();
    for kind in ["inclusion", "consistency"] {
        let dir = root.join(kind);
        assert!(
            dir.is_dir(),
            "vector directory {} is missing",
            dir.display()
        );
        let mut files = Vec::new();
        collect_json(&dir, &mut files);
        files.sort();
        assert!(!files.is_empty(), "no vectors in {}", dir.display());
        for file in files {
            total += 1;
            let shown = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{shown}: unreadable: {e}"));
                    continue;
                }
            };
            let v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{shown}: bad JSON: {e}"));
                    continue;
                }
            };
            let want_err = match v.get("wantErr").and_then(Value::as_bool) {
                Some(b) => b,
                None => {
                    failures.push(format!("{shown}: missing wantErr"));
                    continue;
                }
            };
            match run_vector(kind, &v) {
                Err(e) => failures.push(format!("{shown}: malformed vector: {e}")),
                Ok(Ok(())) if want_err => failures.push(format!("{shown}: accepted, but wantErr")),
                Ok(Err(e)) if !want_err => {
                    failures.push(format!("{shown}: rejected ({e}), but want success"))
                }
                Ok(Ok(())) => positives += 1,
                Ok(Err(_)) => {}
            }
        }
    }
    assert!(
        total >= MIN_VECTOR_FILES,
        "found {total} vector files under {}, want at least {MIN_VECTOR_FILES}",
        root.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(positives >= 10, "only {positives} positive vectors");
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

/// splitmix64: deterministic pseudo-random numbers without extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Reference MTH straight from the RFC definition.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Reference PATH(m, D[n]) (RFC 9162 2.1.3.1).
fn ref_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = ref_path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// Reference SUBPROOF(m, D[n], b) (RFC 9162 2.1.4.1).
fn ref_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = ref_subproof(m, &leaves[..k], whole);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// All complete nodes of a tree, level by level, built by plain pairing.
struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    fn new(size: usize) -> Self {
        let leaves: Vec<Hash> = (0..size as u64)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() >= 2) {
            let below = levels.last().expect("level");
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Tree { levels }
    }

    fn leaves(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// Node source for the prefix tree of `size` leaves: serves only complete nodes inside it
    /// and counts the calls.
    fn source(&self, size: u64, calls: &mut usize) -> impl FnMut(u8, u64) -> Result<Hash, String> {
        move |level, index| {
            *calls += 1;
            let end = index
                .checked_add(1)
                .and_then(|i| i.checked_mul(1u64.checked_shl(u32::from(level))?));
            if end.is_none_or(|end| end > size) {
                return Err(format!(
                    "asked for ({level}, {index}), not a complete node of a tree of size {size}"
                ));
            }
            self.levels
                .get(usize::from(level))
                .and_then(|l| l.get(index as usize))
                .copied()
                .ok_or_else(|| format!("({level}, {index}) not stored"))
        }
    }

    fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        let mut calls = 0;
        let proof = inclusion_proof(index, size, &mut self.source(size, &mut calls))
            .unwrap_or_else(|e| panic!("inclusion_proof({index}, {size}): {e:?}"));
        assert!(
            calls <= 128,
            "inclusion_proof({index}, {size}) read {calls} nodes"
        );
        proof
    }

    fn consistency(&self, m: u64, n: u64) -> Vec<Hash> {
        let mut calls = 0;
        let proof = consistency_proof(m, n, &mut self.source(n, &mut calls))
            .unwrap_or_else(|e| panic!("consistency_proof({m}, {n}): {e:?}"));
        assert!(
            calls <= 128,
            "consistency_proof({m}, {n}) read {calls} nodes"
        );
        proof
    }

    fn root(&self, size: u64) -> Hash {
        let mut calls = 0;
        let root = root_from_nodes(size, &mut self.source(size, &mut calls))
            .unwrap_or_else(|e| panic!("root_from_nodes({size}): {e:?}"));
        assert!(calls <= 64);
        root
    }
}

/// Largest tree used; every smaller tree is a prefix of it.
const MAX_SIZE: u64 = 65537;
const LARGE_SIZES: [u64; 9] = [511, 512, 513, 1000, 4096, 4097, 65535, 65536, 65537];

/// The tree of `MAX_SIZE` leaves, built once and shared by the tests.
fn big_tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| Tree::new(MAX_SIZE as usize))
}

/// Whether to run the (costly) tampering checks on this case: always for small trees, for a
/// deterministic sample otherwise.
fn tamper_this(rng: &mut Rng, size: u64) -> bool {
    size <= 16 || rng.next().is_multiple_of(6)
}

/// Indices to test in a tree of `size`: all for small trees, edges plus a random sample else.
fn sample(rng: &mut Rng, lo: u64, hi: u64, all_below: u64, count: usize) -> Vec<u64> {
    if hi < lo {
        return Vec::new();
    }
    if hi - lo < all_below {
        return (lo..=hi).collect();
    }
    let mut out = vec![lo, lo + 1, hi - 1, hi];
    out.extend((0..count).map(|_| rng.range(lo, hi)));
    out
}

fn flip(h: &Hash, bit: u64) -> Hash {
    let mut h = *h;
    h[(bit / 8 % 32) as usize] ^= 1 << (bit % 8);
    h
}

/// Every single-hash tampering of `proof` is rejected by `verify`.
fn assert_tampering_rejected(
    what: &str,
    rng: &mut Rng,
    proof: &[Hash],
    verify: &dyn Fn(&[Hash]) -> bool,
) {
    assert!(verify(proof), "{what}: genuine proof rejected");
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i] = flip(&p[i], rng.next());
        assert!(!verify(&p), "{what}: accepted with hash {i} flipped");
        let mut p = proof.to_vec();
        p.remove(i);
        assert!(!verify(&p), "{what}: accepted with hash {i} dropped");
    }
    for i in 0..=proof.len() {
        let mut p = proof.to_vec();
        p.insert(i, leaf_hash(&rng.next().to_be_bytes()));
        assert!(!verify(&p), "{what}: accepted with a hash inserted at {i}");
    }
    if let Some(first) = proof.first() {
        let mut p = proof.to_vec();
        p.push(*first);
        assert!(!verify(&p), "{what}: accepted with a duplicate appended");
    }
}

#[test]
fn reference_proofs_small_trees() {
    let tree = big_tree();
    let leaves = tree.leaves();
    let mut rng = Rng(5);
    for n in 1..=300usize {
        let root = mth(&leaves[..n]);
        assert_eq!(root_from_leaf_hashes(&leaves[..n]), root, "root {n}");
        assert_eq!(tree.root(n as u64), root, "root_from_nodes {n}");
        if n > 64 && !n.is_multiple_of(29) && n != 300 {
            continue;
        }
        for m in sample(&mut rng, 0, n as u64 - 1, 64, 8) {
            let m = m as usize;
            assert_eq!(
                tree.inclusion(m as u64, n as u64),
                ref_path(m, &leaves[..n]),
                "PATH({m}, {n})"
            );
        }
        for m in sample(&mut rng, 1, n as u64, 64, 8) {
            let m = m as usize;
            assert_eq!(
                tree.consistency(m as u64, n as u64),
                ref_subproof(m, &leaves[..n], true),
                "PROOF({m}, {n})"
            );
        }
    }
    // Large trees against the reference MTH.
    for size in [4097u64, MAX_SIZE] {
        assert_eq!(
            tree.root(size),
            mth(&leaves[..size as usize]),
            "root {size}"
        );
    }
    assert_eq!(root_from_leaf_hashes(&[]), empty_root());
    let mut calls = 0;
    assert_eq!(tree.consistency(0, 5), Vec::<Hash>::new());
    assert!(consistency_proof(6, 5, &mut tree.source(6, &mut calls)).is_err());
    assert!(inclusion_proof(5, 5, &mut tree.source(5, &mut calls)).is_err());
    assert!(inclusion_proof(0, 0, &mut tree.source(0, &mut calls)).is_err());
}

#[test]
fn inclusion_proofs_verify_and_resist_tampering() {
    let tree = big_tree();
    let leaves = tree.leaves();
    let mut rng = Rng(1);
    let sizes: Vec<u64> = (1..=300).chain(LARGE_SIZES).collect();
    let roots: Vec<Hash> = (0..=301).map(|s| mth(&leaves[..s])).collect();
    let root_of = |s: u64| {
        if s <= 301 {
            roots[s as usize]
        } else {
            tree.root(s)
        }
    };
    for &size in &sizes {
        let root = root_of(size);
        for index in sample(&mut rng, 0, size - 1, 64, 12) {
            let leaf = leaves[index as usize];
            let proof = tree.inclusion(index, size);
            verify_inclusion(&leaf, index, size, &proof, &root)
                .unwrap_or_else(|e| panic!("inclusion {index} in {size}: {e}"));
            // Tampering is cheap enough for the small trees and a sample of the others.
            if !tamper_this(&mut rng, size) {
                continue;
            }
            let what = format!("inclusion {index} in {size}");
            assert_tampering_rejected(&what, &mut rng, &proof, &|p| {
                verify_inclusion(&leaf, index, size, p, &root).is_ok()
            });
            assert!(
                verify_inclusion(&flip(&leaf, rng.next()), index, size, &proof, &root).is_err()
            );
            assert!(
                verify_inclusion(&leaf, index, size, &proof, &flip(&root, rng.next())).is_err()
            );
            // Another index in the same tree.
            for other in [
                index ^ 1,
                index + 1,
                index.wrapping_sub(1),
                rng.range(0, size - 1),
            ] {
                if other == index || other >= size {
                    continue;
                }
                assert!(
                    verify_inclusion(&leaf, other, size, &proof, &root).is_err(),
                    "{what}: accepted at index {other}"
                );
                let ok =
                    verify_inclusion(&leaves[other as usize], other, size, &proof, &root).is_ok();
                assert_eq!(
                    ok,
                    tree.inclusion(other, size) == proof,
                    "{what}: proof reused for leaf {other}"
                );
            }
            // Another tree size, against that tree's root: only the genuine proof may verify.
            for other in [
                size + 1,
                size - 1,
                size * 2,
                size / 2,
                rng.range(1, 2 * size),
            ] {
                if other == size || other <= index || other > MAX_SIZE {
                    continue;
                }
                let ok = verify_inclusion(&leaf, index, other, &proof, &root_of(other)).is_ok();
                assert_eq!(
                    ok,
                    tree.inclusion(index, other) == proof,
                    "{what}: verified for size {other}"
                );
            }
            assert!(verify_inclusion(&leaf, size, size, &proof, &root).is_err());
            assert!(matches!(
                verify_inclusion(&leaf, index, 0, &proof, &root),
                Err(ProofError::IndexOutOfRange { .. })
            ));
        }
    }
}

#[test]
fn consistency_proofs_verify_and_resist_tampering() {
    let tree = big_tree();
    let leaves = tree.leaves();
    let mut rng = Rng(2);
    let sizes: Vec<u64> = (1..=300).chain(LARGE_SIZES).collect();
    let roots: Vec<Hash> = (0..=301).map(|s| mth(&leaves[..s as usize])).collect();
    let root_of = |s: u64| {
        if s <= 301 {
            roots[s as usize]
        } else {
            tree.root(s)
        }
    };
    for &n in &sizes {
        let root2 = root_of(n);
        for m in sample(&mut rng, 1, n, 64, 12) {
            let root1 = root_of(m);
            let proof = tree.consistency(m, n);
            verify_consistency(m, n, &proof, &root1, &root2)
                .unwrap_or_else(|e| panic!("consistency {m} -> {n}: {e}"));
            if !tamper_this(&mut rng, n) {
                continue;
            }
            let what = format!("consistency {m} -> {n}");
            if m < n {
                assert_tampering_rejected(&what, &mut rng, &proof, &|p| {
                    verify_consistency(m, n, p, &root1, &root2).is_ok()
                });
                assert!(
                    verify_consistency(m, n, &proof, &root2, &root1).is_err(),
                    "{what}: swapped roots"
                );
            } else {
                assert!(proof.is_empty());
                assert!(verify_consistency(m, n, &[root1], &root1, &root2).is_err());
            }
            assert!(verify_consistency(m, n, &proof, &flip(&root1, rng.next()), &root2).is_err());
            assert!(verify_consistency(m, n, &proof, &root1, &flip(&root2, rng.next())).is_err());
            assert!(verify_consistency(n + 1, n, &proof, &root1, &root2).is_err());
            assert_eq!(
                verify_consistency(0, n, &proof, &empty_root(), &root2),
                Err(ProofError::EmptyOldTree)
            );
            // Other sizes, against the roots of those trees: only genuine proofs may verify.
            for other in [m + 1, m - 1, m * 2, m / 2, rng.range(1, n)] {
                if other == m || other == 0 || other > n {
                    continue;
                }
                let ok = verify_consistency(other, n, &proof, &root_of(other), &root2).is_ok();
                assert_eq!(
                    ok,
                    tree.consistency(other, n) == proof,
                    "{what}: verified from size {other}"
                );
            }
            for other in [n + 1, n - 1, n * 2, rng.range(m, 2 * n)] {
                if other == n || other < m || other > MAX_SIZE {
                    continue;
                }
                let ok = verify_consistency(m, other, &proof, &root1, &root_of(other)).is_ok();
                assert_eq!(
                    ok,
                    tree.consistency(m, other) == proof,
                    "{what}: verified to size {other}"
                );
            }
        }
    }
    // Size 0 is never verified, even 0 -> 0 with the empty root.
    let e = empty_root();
    assert_eq!(
        verify_consistency(0, 0, &[], &e, &e),
        Err(ProofError::EmptyOldTree)
    );
}

#[test]
fn compact_range_matches_tree() {
    let tree = big_tree();
    let leaves = tree.leaves();
    let mut range = CompactRange::new();
    assert_eq!(range.root(), empty_root());
    let mut seen: HashSet<(u8, u64)> = HashSet::new();
    let mut rng = Rng(3);
    for (i, leaf) in leaves.iter().enumerate() {
        let new_size = i as u64 + 1;
        let mut visited = Vec::new();
        range
            .append(leaf, &mut |level, index, hash| {
                visited.push((level, index, hash))
            })
            .expect("append");
        assert_eq!(range.size(), new_size);
        // Exactly the nodes completed by this leaf: one per trailing one bit of i, plus the leaf.
        assert_eq!(
            visited.len() as u32,
            (i as u64).trailing_ones() + 1,
            "visits at size {new_size}"
        );
        assert_eq!((visited[0].0, visited[0].1), (0, i as u64));
        for (level, index, hash) in visited {
            assert!(
                (index + 1) << level <= new_size,
                "({level}, {index}) incomplete at size {new_size}"
            );
            assert_eq!(
                hash,
                tree.levels[usize::from(level)][index as usize],
                "({level}, {index})"
            );
            assert!(
                seen.insert((level, index)),
                "({level}, {index}) visited twice"
            );
        }
        let check =
            new_size <= 4097 || LARGE_SIZES.contains(&new_size) || rng.next().is_multiple_of(500);
        if check {
            assert_eq!(range.root(), tree.root(new_size), "root at size {new_size}");
            let border: Vec<Hash> = border_nodes(new_size)
                .into_iter()
                .map(|(l, x)| tree.levels[usize::from(l)][x as usize])
                .collect();
            assert_eq!(
                range.hashes(),
                border.as_slice(),
                "border at size {new_size}"
            );
        }
        if new_size <= 300 {
            assert_eq!(
                range.root(),
                mth(&leaves[..i + 1]),
                "reference root at size {new_size}"
            );
        }
    }
    // Every complete node of the tree was visited exactly once.
    let complete: usize = tree.levels.iter().map(Vec::len).sum();
    assert_eq!(seen.len(), complete);
    assert_eq!(range.root(), tree.root(MAX_SIZE));

    // Rebuilding from stored border nodes and continuing gives the same roots.
    for size in [0u64, 1, 2, 3, 255, 256, 257, 1000, 4097] {
        let mut calls = 0;
        let mut rebuilt =
            CompactRange::from_nodes(size, &mut tree.source(size, &mut calls)).expect("from_nodes");
        let parts = CompactRange::from_parts(size, rebuilt.hashes().to_vec()).expect("from_parts");
        assert_eq!(parts, rebuilt);
        assert!(CompactRange::from_parts(size, vec![[0; 32]; rebuilt.hashes().len() + 1]).is_err());
        for (i, leaf) in leaves.iter().enumerate().skip(size as usize).take(300) {
            rebuilt.append(leaf, &mut |_, _, _| {}).expect("append");
            assert_eq!(
                rebuilt.root(),
                tree.root(i as u64 + 1),
                "rebuilt from {size}, size {}",
                i + 1
            );
        }
    }
}

#[test]
fn generators_ask_only_for_complete_nodes() {
    // A node source that records every request, for sizes up to 2^40 (no hashing of real data).
    let mut rng = Rng(4);
    for _ in 0..2000 {
        let size = rng.range(1, 1 << 40);
        let index = rng.range(0, size - 1);
        let old = rng.range(1, size);
        let mut bad = Vec::new();
        let mut source = |level: u8, idx: u64| -> Result<Hash, ()> {
            if ((idx + 1) << level) > size {
                bad.push((level, idx));
            }
            Ok([level; 32])
        };
        let p = inclusion_proof(index, size, &mut source).expect("inclusion");
        let c = consistency_proof(old, size, &mut source).expect("consistency");
        root_from_nodes(size, &mut source).expect("root");
        assert!(
            bad.is_empty(),
            "size {size}: asked for incomplete nodes {bad:?}"
        );
        assert!(p.len() <= 64 && c.len() <= 65);
    }
    // Source errors are reported with the node asked for.
    let mut failing = |_: u8, _: u64| -> Result<Hash, &'static str> { Err("offline") };
    assert!(inclusion_proof(3, 10, &mut failing).is_err());
    assert!(consistency_proof(3, 10, &mut failing).is_err());
    assert!(root_from_nodes(10, &mut failing).is_err());
    assert_eq!(
        root_from_nodes(0, &mut failing).expect("empty"),
        empty_root()
    );
}
