//! RFC 6962 / RFC 9162 Merkle trees: hashing, proof generation from stored complete subtrees,
//! proof verification, and the compact range (right border) used to append leaves.
//!
//! # Node addressing
//!
//! A *node* `(level, index)` is the complete subtree of `2^level` leaves whose first leaf is
//! `index * 2^level`. Level 0 nodes are leaf hashes. A node exists in a tree of `size` leaves iff
//! `(index + 1) * 2^level <= size`. Stores only ever keep complete nodes: the hashes of the
//! incomplete subtrees on the right edge of a tree change as the tree grows, so the proof
//! generators in this module never ask for them and compute them by folding complete nodes (as
//! transparency-dev/merkle's `proof` package does).
//!
//! # Bounds
//!
//! Every function does bounded work: proof generation asks for at most 2 × 64 nodes, and
//! verification rejects proofs whose length is not exactly the one the sizes dictate before
//! hashing anything.

use ring::digest;
use thiserror::Error;

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// Length of a [`Hash`] in bytes.
pub const HASH_LEN: usize = 32;

/// The RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    finish(ctx)
}

/// The RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    finish(digest::Context::new(&digest::SHA256))
}

fn finish(ctx: digest::Context) -> Hash {
    let mut out = [0u8; HASH_LEN];
    // SHA-256 output is always 32 bytes.
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The Merkle tree hash of a list of leaf hashes (RFC 6962 `MTH`); [`empty_root`] for none.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for leaf in leaves {
        // A slice cannot hold u64::MAX elements, so the range cannot be full.
        if range.append(leaf, &mut |_, _, _| {}).is_err() {
            break;
        }
    }
    range.root()
}

/// Errors from [`verify_inclusion`] and [`verify_consistency`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The proof does not have the number of hashes the sizes (and index) dictate.
    #[error("wrong proof length: got {got} hashes, want {expected}")]
    WrongProofLength {
        /// The length the sizes dictate.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The old tree is larger than the new one.
    #[error("old tree size {size1} is larger than new tree size {size2}")]
    Size1GreaterThanSize2 {
        /// The old size.
        size1: u64,
        /// The new size.
        size2: u64,
    },
    /// A consistency proof from the empty tree was asked for. Every tree is consistent with the
    /// empty tree, so such a proof proves nothing; the caller (a witness accepting a first
    /// checkpoint, say) must handle an old size of 0 itself.
    #[error("consistency proofs from an empty tree (size 0) are not verified")]
    EmptyOldTree,
    /// The root computed from an inclusion proof is not the expected root.
    #[error("inclusion proof does not lead to the expected root")]
    RootMismatch,
    /// The old root computed from a consistency proof is not the expected old root (or, for
    /// equal sizes, the two roots differ).
    #[error("consistency proof does not lead to the expected old root")]
    Root1Mismatch,
    /// The new root computed from a consistency proof is not the expected new root.
    #[error("consistency proof does not lead to the expected new root")]
    Root2Mismatch,
}

/// Errors from the proof generators and [`root_from_nodes`]. `E` is the node source's error.
#[derive(Debug, Error)]
pub enum ProofGenError<E> {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeTooLarge {
        /// The old size.
        old_size: u64,
        /// The new size.
        new_size: u64,
    },
    /// The node source failed.
    #[error("reading tree node (level {level}, index {index}) failed")]
    Node {
        /// Level of the node asked for.
        level: u8,
        /// Index of the node asked for.
        index: u64,
        /// The source's error.
        #[source]
        source: E,
    },
}

/// A source of complete-subtree hashes: `node(level, index)`.
pub type NodeSource<'a, E> = dyn FnMut(u8, u64) -> Result<Hash, E> + 'a;

/// The split point of RFC 6962: the largest power of two strictly less than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    let bits = 64 - (n - 1).leading_zeros();
    1u64 << (bits.saturating_sub(1))
}

/// Root of the leaf range `[begin, end)` (`begin < end`), where `begin` is a multiple of the
/// largest power of two not above `end - begin`: the range is the union of the complete
/// subtrees given by the set bits of its length, largest first. Folds them right to left.
fn range_root<E>(
    begin: u64,
    end: u64,
    node: &mut NodeSource<'_, E>,
) -> Result<Hash, ProofGenError<E>> {
    let len = end - begin;
    let mut right_end = end;
    let mut acc: Option<Hash> = None;
    for level in 0..64u8 {
        if len >> level & 1 == 0 {
            continue;
        }
        let start = right_end - (1u64 << level);
        let index = start >> level;
        let h = node(level, index).map_err(|source| ProofGenError::Node {
            level,
            index,
            source,
        })?;
        acc = Some(match acc {
            None => h,
            Some(right) => node_hash(&h, &right),
        });
        right_end = start;
    }
    // len > 0, so at least one piece was read.
    Ok(acc.unwrap_or_else(empty_root))
}

/// The root of a tree of `size` leaves, computed from at most 64 complete nodes (the tree's
/// border, see [`border_nodes`]). [`empty_root`] for size 0.
pub fn root_from_nodes<E>(
    size: u64,
    node: &mut NodeSource<'_, E>,
) -> Result<Hash, ProofGenError<E>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_root(0, size, node)
}

/// The RFC 9162 inclusion proof (audit path) for leaf `index` in the tree of `size` leaves,
/// leaf-side first. Asks `node` only for complete nodes inside the tree.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    node: &mut NodeSource<'_, E>,
) -> Result<Vec<Hash>, ProofGenError<E>> {
    if index >= size {
        return Err(ProofGenError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    // Walk down from the root: the subtree [offset, offset + n) contains leaf offset + m.
    let (mut offset, mut n, mut m) = (0u64, size, index);
    while n > 1 {
        let k = split(n);
        if m < k {
            // Sibling on the right, possibly incomplete (only on the tree's right edge).
            proof.push(range_root(offset + k, offset + n, node)?);
            n = k;
        } else {
            // Sibling on the left: always complete.
            proof.push(range_root(offset, offset + k, node)?);
            offset += k;
            m -= k;
            n -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The RFC 9162 consistency proof between the trees of `old_size` and `new_size` leaves.
/// Empty when `old_size == new_size` or `old_size == 0` (nothing to prove). Asks `node` only
/// for complete nodes inside the new tree.
pub fn consistency_proof<E>(
    old_size: u64,
    new_size: u64,
    node: &mut NodeSource<'_, E>,
) -> Result<Vec<Hash>, ProofGenError<E>> {
    if old_size > new_size {
        return Err(ProofGenError::OldSizeTooLarge { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut proof = Vec::new();
    // SUBPROOF(m, D[offset : offset + n], b), unrolled.
    let (mut offset, mut n, mut m, mut whole_old_tree) = (0u64, new_size, old_size, true);
    loop {
        if m == n {
            // Only reached after a left step, so n is a power of two and the node complete.
            if !whole_old_tree {
                proof.push(range_root(offset, offset + m, node)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(range_root(offset + k, offset + n, node)?);
            n = k;
        } else {
            proof.push(range_root(offset, offset + k, node)?);
            offset += k;
            m -= k;
            n -= k;
            whole_old_tree = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Bit length of `x`.
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// (inner, border) decomposition of an inclusion proof, as in transparency-dev/merkle.
fn decomp_inclusion(index: u64, size: u64) -> (u32, u32) {
    let inner = bit_len(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Length of the inclusion proof for leaf `index` in a tree of `size` leaves (`index < size`).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = decomp_inclusion(index, size);
    (inner + border) as usize
}

/// Length of the consistency proof between sizes `0 < size1 < size2`.
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    let (inner, border) = decomp_inclusion(size1 - 1, size2);
    let shift = size1.trailing_zeros();
    let inner = inner.saturating_sub(shift);
    let start = u32::from(!size1.is_power_of_two());
    (start + inner + border) as usize
}

/// Verifies an inclusion proof per RFC 9162 section 2.1.3.2: `leaf_hash` is leaf `index` of the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof per RFC 9162 section 2.1.4.2: the tree of `size1` leaves with
/// root `root1` is a prefix of the tree of `size2` leaves with root `root2`.
///
/// Equal sizes need an empty proof and equal roots. `size1 == 0` is always rejected
/// ([`ProofError::EmptyOldTree`]), as transparency-dev/merkle does.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::Size1GreaterThanSize2 { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if root1 != root2 {
            return Err(ProofError::Root1Mismatch);
        }
        return Ok(());
    }
    // 0 < size1 < size2.
    let expected = consistency_proof_len(size1, size2);
    if proof.len() != expected || proof.is_empty() {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let wrong_len = ProofError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    // Step 2: if size1 is a power of two, the path starts with root1.
    let prefix: &[Hash] = if size1.is_power_of_two() {
        std::slice::from_ref(root1)
    } else {
        &[]
    };
    let mut path = prefix.iter().chain(proof.iter());
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let Some(first) = path.next() else {
        return Err(wrong_len);
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in path {
        if snode == 0 {
            return Err(wrong_len);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_len);
    }
    if fr != *root1 {
        return Err(ProofError::Root1Mismatch);
    }
    if sr != *root2 {
        return Err(ProofError::Root2Mismatch);
    }
    Ok(())
}

/// The `(level, index)` of the maximal complete subtrees of a tree of `size` leaves (its right
/// border), left to right: one per set bit of `size`, largest first.
pub fn border_nodes(size: u64) -> Vec<(u8, u64)> {
    (0..64u8)
        .rev()
        .filter(|level| size >> level & 1 == 1)
        .map(|level| (level, (size >> level) - 1))
        .collect()
}

/// Errors from [`CompactRange`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompactRangeError {
    /// The number of border hashes does not match the size.
    #[error("a tree of size {size} has {expected} border hashes, got {got}")]
    WrongHashCount {
        /// The tree size.
        size: u64,
        /// The number of set bits of the size.
        expected: usize,
        /// The number supplied.
        got: usize,
    },
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full (size {size})")]
    Full {
        /// The tree size.
        size: u64,
    },
}

/// The right border of a Merkle tree: the roots of its maximal complete subtrees, left to right
/// (see [`border_nodes`]). Enough to append leaves and compute the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A range for a tree of `size` leaves from its border hashes (the nodes of
    /// [`border_nodes`]`(size)`, in that order).
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(CompactRangeError::WrongHashCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Reads the border of a tree of `size` leaves from a node source.
    pub fn from_nodes<E>(
        size: u64,
        node: &mut NodeSource<'_, E>,
    ) -> Result<Self, ProofGenError<E>> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        for (level, index) in border_nodes(size) {
            hashes.push(node(level, index).map_err(|source| ProofGenError::Node {
                level,
                index,
                source,
            })?);
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The border hashes, left to right (largest subtree first).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf hash. `visit(level, index, hash)` is called for every complete node this
    /// creates: the leaf itself at level 0, then each parent it completes, bottom up.
    pub fn append(
        &mut self,
        leaf_hash: &Hash,
        visit: &mut dyn FnMut(u8, u64, Hash),
    ) -> Result<(), CompactRangeError> {
        let size = self.size;
        if size == u64::MAX {
            return Err(CompactRangeError::Full { size });
        }
        let mut h = *leaf_hash;
        visit(0, size, h);
        let mut level = 0u8;
        while level < 64 && size >> level & 1 == 1 {
            // Invariant: hashes.len() == size.count_ones(), so the pop succeeds.
            let Some(left) = self.hashes.pop() else { break };
            h = node_hash(&left, &h);
            level += 1;
            visit(level, size >> level, h);
        }
        self.hashes.push(h);
        self.size = size + 1;
        Ok(())
    }

    /// The tree's root ([`empty_root`] when empty).
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).expect("hex");
        out
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            empty_root(),
            hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        // RFC 6962 test data (certificate-transparency reference): leaf hash of the empty leaf.
        assert_eq!(
            leaf_hash(b""),
            hex32("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(root_from_leaf_hashes(&[]), empty_root());
        let l = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
        assert_eq!(
            root_from_leaf_hashes(&l),
            node_hash(&node_hash(&l[0], &l[1]), &l[2])
        );
    }

    #[test]
    fn errors_are_std_errors() {
        fn is_error<T: std::error::Error + Send + Sync + 'static>() {}
        is_error::<ProofError>();
        is_error::<CompactRangeError>();
        is_error::<ProofGenError<std::io::Error>>();
        let e: ProofGenError<std::io::Error> = ProofGenError::Node {
            level: 3,
            index: 7,
            source: std::io::Error::other("offline"),
        };
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.to_string(), "reading tree node (level 3, index 7) failed");
    }

    #[test]
    fn border_nodes_examples() {
        assert!(border_nodes(0).is_empty());
        assert_eq!(border_nodes(6), vec![(2, 0), (1, 2)]);
        assert_eq!(border_nodes(7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(border_nodes(u64::MAX).len(), 64);
        assert_eq!(border_nodes(u64::MAX)[0], (63, 0));
    }

    #[test]
    fn compact_range_full_and_bad_parts() {
        let hashes = vec![[0u8; 32]; 64];
        let mut cr = CompactRange::from_parts(u64::MAX, hashes).expect("parts");
        assert_eq!(
            cr.append(&[1u8; 32], &mut |_, _, _| {}),
            Err(CompactRangeError::Full { size: u64::MAX })
        );
        assert!(CompactRange::from_parts(3, vec![[0u8; 32]]).is_err());
    }

    #[test]
    fn extreme_sizes_do_not_panic() {
        let mut zero = |_: u8, _: u64| -> Result<Hash, ()> { Ok([0u8; 32]) };
        for (index, size) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
            let proof = inclusion_proof(index, size, &mut zero).expect("proof");
            assert_eq!(proof.len(), inclusion_proof_len(index, size));
        }
        for (a, b) in [
            (1, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            (3, 1 << 63),
        ] {
            let proof = consistency_proof(a, b, &mut zero).expect("proof");
            assert_eq!(proof.len(), consistency_proof_len(a, b));
        }
        assert!(root_from_nodes(u64::MAX, &mut zero).is_ok());
        assert!(inclusion_proof(u64::MAX, u64::MAX, &mut zero).is_err());
        assert!(consistency_proof(2, 1, &mut zero).is_err());
        let h = [0u8; 32];
        assert!(verify_inclusion(&h, u64::MAX, u64::MAX, &[], &h).is_err());
        assert!(verify_inclusion(&h, u64::MAX - 1, u64::MAX, &[h; 64], &h).is_err());
        assert!(verify_consistency(u64::MAX - 1, u64::MAX, &[h; 64], &h, &h).is_err());
    }
}
