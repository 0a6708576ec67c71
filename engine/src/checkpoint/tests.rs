use std::path::PathBuf;

use super::*;
use crate::hash::leaf_hash;
use crate::merkle::root;
use crate::merkle::tests::MemTree;
use crate::tile::Tile;

const TESSERA_VKEY: &str =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

fn tessera_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ONOAL_TESTVECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testvectors")
        })
        .join("tessera-log");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: tessera test log not found at {}", dir.display());
        None
    }
}

/// Entries of a C2SP entry bundle: each a 2-byte big-endian length then the data.
fn bundle_entries(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        out.push(bytes[2..2 + len].to_vec());
        bytes = &bytes[2 + len..];
    }
    out
}

#[test]
fn tessera_checkpoints_verify_and_roots_match_entries() {
    let Some(dir) = tessera_dir() else { return };
    let verifier = NoteVerifier::from_vkey(TESSERA_VKEY).unwrap();
    assert_eq!(verifier.to_vkey(), TESSERA_VKEY);
    let entries = bundle_entries(&std::fs::read(dir.join("tile/entries/000.p/15")).unwrap());
    assert_eq!(entries.len(), 15);
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    // Our tile bottom rows equal Tessera's level-0 hash tiles.
    let mut tile = Tile::new();
    for h in &leaves {
        tile.push(*h);
    }
    let c2sp_tile = std::fs::read(dir.join("tile/0/000.p/15")).unwrap();
    assert_eq!(&tile.encode()[..15 * 32], &c2sp_tile[..]);

    let mut tree = MemTree::new(leaves);
    let mut names: Vec<String> = (0..=15).map(|n| format!("checkpoint.{n}")).collect();
    names.push("checkpoint".to_owned());
    let mut opened = 0;
    for name in names {
        let Ok(note) = std::fs::read(dir.join(&name)) else { continue };
        let cp = verifier.open(&note).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cp.root, root(cp.size, &mut tree.fetch()).unwrap(), "{name} root");
        opened += 1;
        // Every single-byte change is rejected.
        for i in 0..note.len() {
            for delta in [1u8, 0x80] {
                let mut bad = note.clone();
                bad[i] ^= delta;
                assert!(verifier.open(&bad).is_err(), "{name}: byte {i} ^ {delta:#x} accepted");
            }
        }
    }
    assert_eq!(opened, 17, "expected checkpoint.0 ..= checkpoint.15 and checkpoint");
}

#[test]
fn own_notes_round_trip_and_reject_other_keys() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let signer = NoteSigner::new("oid:onoal:org:test", key).unwrap();
    let cp = Checkpoint {
        origin: "oid:onoal:org:test".into(),
        size: 12,
        root: leaf_hash(b"r"),
        extensions: vec![],
    };
    let note = signer.sign(&cp);
    assert_eq!(signer.verifier().open(note.as_bytes()).unwrap(), cp);
    let vkey = signer.verifier().to_vkey();
    assert_eq!(NoteVerifier::from_vkey(&vkey).unwrap(), *signer.verifier());

    let other = NoteSigner::new("oid:onoal:org:test", SigningKey::from_bytes(&[4; 32])).unwrap();
    assert!(matches!(
        other.verifier().open(note.as_bytes()),
        Err(CheckpointError::NoSignature { .. })
    ));
    // A checkpoint whose origin is not the key name is refused.
    let mut wrong = cp.clone();
    wrong.origin = "oid:onoal:org:else".into();
    assert!(matches!(
        signer.verifier().open(signer.sign(&wrong).as_bytes()),
        Err(CheckpointError::WrongOrigin { .. })
    ));
}

#[test]
fn malformed_notes_and_keys_are_errors_not_panics() {
    let v = NoteVerifier::from_vkey(TESSERA_VKEY).unwrap();
    for note in ["", "\n\n", "a\n1\n\n\n", "\u{2014} x y\n", "x\n\n\u{2014} \n"] {
        assert!(v.open(note.as_bytes()).is_err(), "{note:?}");
    }
    for key in ["", "a+b", "a+zzzzzzzz+AA==", "a+00000000+AeHT", "a b+00000000+AQ=="] {
        assert!(NoteVerifier::from_vkey(key).is_err(), "{key:?}");
    }
}
