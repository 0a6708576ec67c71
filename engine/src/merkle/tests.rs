use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;

use base64::Engine as _;

use super::*;
use crate::hash::leaf_hash;

/// An in-memory tree: node hashes computed from the leaves on demand.
pub(crate) struct MemTree {
    leaves: Vec<Hash>,
    memo: HashMap<NodeId, Hash>,
}

impl MemTree {
    pub(crate) fn new(leaves: Vec<Hash>) -> Self {
        Self { leaves, memo: HashMap::new() }
    }

    pub(crate) fn node(&mut self, id: NodeId) -> Hash {
        if id.level == 0 {
            return self.leaves[id.index as usize];
        }
        if let Some(h) = self.memo.get(&id) {
            return *h;
        }
        let l = self.node(NodeId::new(id.level - 1, id.index * 2));
        let r = self.node(NodeId::new(id.level - 1, id.index * 2 + 1));
        let h = node_hash(&l, &r);
        self.memo.insert(id, h);
        h
    }

    pub(crate) fn fetch(&mut self) -> impl FnMut(NodeId) -> Result<Hash, Infallible> + '_ {
        |id| Ok(self.node(id))
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
}

/// RFC 6962 reference MTH, recursive on slices.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

#[test]
fn roots_match_reference_and_fold() {
    for n in 0..70usize {
        let ls = leaves(n);
        let mut tree = MemTree::new(ls.clone());
        let r = root(n as u64, &mut tree.fetch()).unwrap();
        assert_eq!(r, reference_root(&ls), "size {n}");
        let parts: Vec<Hash> = root_nodes(n as u64).map(|id| tree.node(id)).collect();
        assert_eq!(fold_root(&parts), r, "fold size {n}");
    }
}

#[test]
fn every_inclusion_proof_verifies_and_has_predicted_length() {
    let ls = leaves(70);
    let mut tree = MemTree::new(ls.clone());
    for size in 1..=70u64 {
        let r = root(size, &mut tree.fetch()).unwrap();
        for index in 0..size {
            let proof = inclusion_proof(index, size, &mut tree.fetch()).unwrap().unwrap();
            assert_eq!(proof.len(), inclusion_proof_len(index, size));
            verify_inclusion(index, size, &ls[index as usize], &proof, &r).unwrap();
            // A wrong index of the same size must fail.
            let other = (index + 1) % size;
            if other != index {
                assert!(verify_inclusion(other, size, &ls[index as usize], &proof, &r).is_err());
            }
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_has_predicted_length() {
    let ls = leaves(70);
    let mut tree = MemTree::new(ls);
    for new in 1..=70u64 {
        let new_root = root(new, &mut tree.fetch()).unwrap();
        for old in 1..=new {
            let old_root = root(old, &mut tree.fetch()).unwrap();
            let proof = consistency_proof(old, new, &mut tree.fetch()).unwrap().unwrap();
            if old < new {
                assert_eq!(proof.len(), consistency_proof_len(old, new), "{old}->{new}");
            }
            verify_consistency(old, new, &old_root, &new_root, &proof)
                .unwrap_or_else(|e| panic!("{old}->{new}: {e}"));
            if old < new {
                assert!(verify_consistency(old, new, &new_root, &old_root, &proof).is_err());
            }
        }
    }
}

#[test]
fn proof_requests_outside_the_tree_are_errors() {
    let mut tree = MemTree::new(leaves(4));
    assert!(inclusion_proof(4, 4, &mut tree.fetch()).unwrap().is_err());
    assert!(consistency_proof(0, 4, &mut tree.fetch()).unwrap().is_err());
    assert!(consistency_proof(5, 4, &mut tree.fetch()).unwrap().is_err());
}

fn testvectors() -> Option<PathBuf> {
    let dir = std::env::var_os("ONOAL_TESTVECTORS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testvectors")
    });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: test vectors not found at {} (set ONOAL_TESTVECTORS)", dir.display());
        None
    }
}

fn b64_hash(v: &serde_json::Value) -> Option<Hash> {
    let s = v.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Hash::from_slice(&bytes)
}

fn b64_proof(v: &serde_json::Value) -> Option<Vec<Hash>> {
    match v {
        serde_json::Value::Null => Some(Vec::new()),
        serde_json::Value::Array(items) => items.iter().map(b64_hash).collect(),
        _ => None,
    }
}

fn probe_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rfc6962_roots_known_answers() {
    let Some(dir) = testvectors() else { return };
    let text = std::fs::read_to_string(dir.join("rfc6962-roots.txt")).unwrap();
    let mut ls = Vec::new();
    let mut roots = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["leaf", _, "(empty)"] | ["leaf", _] => ls.push(leaf_hash(&[])),
            ["leaf", _, data] => ls.push(leaf_hash(&hex::decode(data).unwrap())),
            ["root", n, h] => roots.push((n.parse::<u64>().unwrap(), Hash::from_hex(h).unwrap())),
            _ => {}
        }
    }
    assert_eq!(ls.len(), 8);
    assert_eq!(roots.len(), 9);
    let mut tree = MemTree::new(ls);
    for (n, want) in roots {
        assert_eq!(root(n, &mut tree.fetch()).unwrap(), want, "root of size {n}");
    }
}

#[test]
fn transparency_dev_inclusion_probes() {
    let Some(dir) = testvectors() else { return };
    let files = probe_files(&dir.join("merkle/inclusion"));
    assert!(files.len() > 20, "expected inclusion probes, found {}", files.len());
    for f in files {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let outcome = (|| {
            let index = v["leafIdx"].as_u64()?;
            let size = v["treeSize"].as_u64()?;
            let root = b64_hash(&v["root"])?;
            let leaf = b64_hash(&v["leafHash"])?;
            let proof = b64_proof(&v["proof"])?;
            Some(verify_inclusion(index, size, &leaf, &proof, &root).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(outcome, !want_err, "probe {}", f.display());
    }
}

#[test]
fn transparency_dev_consistency_probes() {
    let Some(dir) = testvectors() else { return };
    let files = probe_files(&dir.join("merkle/consistency"));
    assert!(files.len() > 20, "expected consistency probes, found {}", files.len());
    for f in files {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        // One accepted probe uses 12-byte "roots" with equal sizes, where the reference verifier
        // only compares the bytes. A 32-byte `Hash` cannot express it; check that condition.
        let r1_raw = v["root1"].as_str().unwrap_or_default();
        if !want_err && b64_hash(&v["root1"]).is_none() {
            let empty = b64_proof(&v["proof"]).is_some_and(|p| p.is_empty());
            assert!(v["size1"] == v["size2"] && v["root2"].as_str() == Some(r1_raw) && empty);
            continue;
        }
        let outcome = (|| {
            let old = v["size1"].as_u64()?;
            let new = v["size2"].as_u64()?;
            let r1 = b64_hash(&v["root1"])?;
            let r2 = b64_hash(&v["root2"])?;
            let proof = b64_proof(&v["proof"])?;
            Some(verify_consistency(old, new, &r1, &r2, &proof).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(outcome, !want_err, "probe {}", f.display());
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn flip(h: &Hash, bit: usize) -> Hash {
        let mut out = *h;
        out.0[bit / 8 % 32] ^= 1 << (bit % 8);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random trees up to a few thousand leaves: the proof verifies, and flipping any one
        /// bit of proof, root, leaf, index or size makes it fail.
        #[test]
        fn inclusion_proofs_verify_and_bit_flips_fail(size in 1u64..3000, pick in any::<u64>(), bit in 0usize..256) {
            let mut tree = MemTree::new(leaves(size as usize));
            let index = pick % size;
            let r = root(size, &mut tree.fetch()).unwrap();
            let leaf = tree.node(NodeId::new(0, index));
            let proof = inclusion_proof(index, size, &mut tree.fetch()).unwrap().unwrap();
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &r).is_ok());
            prop_assert!(verify_inclusion(index, size, &flip(&leaf, bit), &proof, &r).is_err());
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &flip(&r, bit)).is_err());
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let k = pick as usize % bad.len();
                bad[k] = flip(&bad[k], bit);
                prop_assert!(verify_inclusion(index, size, &leaf, &bad, &r).is_err());
            }
            let other_index = index ^ (1 << (bit % 12));
            if other_index != index && other_index < size {
                prop_assert!(verify_inclusion(other_index, size, &leaf, &proof, &r).is_err());
            }
            // The size is bound by the signed checkpoint, which signs size and root together:
            // a proof for one size does not verify against another size's root. (Against the
            // *same* root a flipped size can keep the audit path's shape, e.g. leaf 0 in sizes
            // 65 and 67; no RFC 9162 verifier can see that without the checkpoint.)
            let other_size = size ^ (1 << (bit % 12));
            if other_size != size && other_size > index && other_size < 4096 {
                let mut big = MemTree::new(leaves(other_size.max(size) as usize));
                let other_root = root(other_size, &mut big.fetch()).unwrap();
                prop_assert!(verify_inclusion(index, other_size, &leaf, &proof, &other_root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_bit_flips_fail(new in 2u64..3000, pick in any::<u64>(), bit in 0usize..256) {
            let old = 1 + pick % (new - 1);
            let mut tree = MemTree::new(leaves(new as usize));
            let r1 = root(old, &mut tree.fetch()).unwrap();
            let r2 = root(new, &mut tree.fetch()).unwrap();
            let proof = consistency_proof(old, new, &mut tree.fetch()).unwrap().unwrap();
            prop_assert!(verify_consistency(old, new, &r1, &r2, &proof).is_ok());
            prop_assert!(verify_consistency(old, new, &flip(&r1, bit), &r2, &proof).is_err());
            prop_assert!(verify_consistency(old, new, &r1, &flip(&r2, bit), &proof).is_err());
            let mut bad = proof.clone();
            let k = pick as usize % bad.len();
            bad[k] = flip(&bad[k], bit);
            prop_assert!(verify_consistency(old, new, &r1, &r2, &bad).is_err());
            let other_old = old ^ (1 << (bit % 12));
            if other_old != old && other_old > 0 && other_old < new {
                prop_assert!(verify_consistency(other_old, new, &r1, &r2, &proof).is_err());
            }
        }

        /// Tiles filled in random group sizes equal tiles filled at once.
        #[test]
        fn tiles_built_incrementally_equal_tiles_built_at_once(groups in proptest::collection::vec(1usize..40, 1..20)) {
            let total: usize = groups.iter().sum::<usize>().min(256);
            let ls = leaves(total);
            let mut at_once = crate::tile::Tile::new();
            for h in &ls {
                at_once.push(*h);
            }
            let mut incremental = crate::tile::Tile::new();
            let mut encoded = Vec::new();
            let mut next = 0;
            for g in groups {
                for h in &ls[next..(next + g).min(total)] {
                    incremental.push(*h);
                }
                next = (next + g).min(total);
                // What a group commit would store, decoded again.
                encoded = incremental.encode();
                incremental = crate::tile::Tile::decode_verified(&encoded).unwrap();
            }
            prop_assert_eq!(encoded, at_once.encode());
        }
    }
}
