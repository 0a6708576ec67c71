//! What travels sealed inside a routed mesh message (docs/protocol.md, "Routed payloads"):
//! the seed's cross-ledger query (CLQP), asked of the ledger that owns an OID, and its answer;
//! and the origin's check of that answer against the destination's key, sans-I/O.
//!
//! An answer proves what it carries: a checkpoint note signed by the destination's key, and for
//! each entry an RFC 9162 inclusion proof in that checkpoint's tree. It cannot prove that no
//! matching entry was left out (that needs the whole tree: `onoal sync`).

use serde::{Deserialize, Serialize};

use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::hash::leaf_hash;
use onoal_engine::merkle::verify_inclusion;
use onoal_engine::{Entry, Filter, LogIndex, SignedCheckpoint, StoredEntry};

use super::message::{ErrorCode, ProvenEntryWire};
use super::misbehaved::PeerMisbehaved;
use super::sync::filtered::check_page;

/// Most entries one routed query answer carries (the answer also stays under
/// [`MAX_ANSWER_BYTES`]).
pub const MAX_QUERY_ENTRIES: u32 = 500;

/// Largest routed answer, sealed, that a node reads or relays.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Entry bytes (leaf data) a destination puts into one answer, leaving room for the proofs
/// (at most 64 hashes of 32 bytes per entry) and the note.
pub const MAX_QUERY_ENTRY_BYTES: usize = 512 << 10;

/// A request sealed inside a routed message, for the destination's own ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RoutedRequest {
    /// The seed's `query_request`: entries matching `filter` from seq `cursor` on, at most
    /// `limit` (capped at [`MAX_QUERY_ENTRIES`]).
    Query {
        /// Which entries.
        filter: Filter,
        /// First seq to consider.
        cursor: LogIndex,
        /// Most entries.
        limit: u32,
    },
    /// The seed's `reference_check`: the entry at `seq` with its inclusion proof in the
    /// destination's newest checkpoint (answered as a `Query` page of that one entry, or of
    /// none when the checkpoint's tree does not hold it). Readable when its stream is.
    Entry {
        /// The referenced entry.
        seq: LogIndex,
    },
}

/// The destination's answer, sealed under the request's reply key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RoutedAnswer {
    /// The seed's `query_response`.
    Query {
        /// The destination's newest checkpoint, a signed note; the proofs are in its tree.
        note: String,
        /// Matching entries in seq order, with inclusion proofs.
        entries: Vec<ProvenEntryWire>,
        /// Ask again from this seq; `None` when there are no more in this tree.
        next_cursor: Option<LogIndex>,
        /// The relays the request passed, as the destination received them (keys; relays
        /// can lie about the path, so it is informative, not proven).
        path: Vec<[u8; 32]>,
    },
    /// Refused (not visible to the asker, no checkpoint yet, a bad request).
    Refused {
        /// Why.
        code: ErrorCode,
        /// What to do.
        message: String,
    },
}

impl RoutedRequest {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

impl RoutedAnswer {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// A query answer that checked out.
#[derive(Clone, Debug)]
pub struct VerifiedPage {
    /// The destination's checkpoint the entries are proven in.
    pub checkpoint: SignedCheckpoint,
    /// The entries, each proven included.
    pub entries: Vec<StoredEntry>,
    /// Where the next page starts.
    pub next_cursor: Option<u64>,
    /// The relays' keys, as the destination saw them.
    pub path: Vec<[u8; 32]>,
}

/// Why an answer was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The destination refused.
    #[error("{message}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The checkpoint is not signed by the destination's key (or is malformed).
    #[error("the answer's checkpoint does not verify with the destination's key: {0}")]
    Checkpoint(String),
    /// An entry's inclusion proof does not lead to the checkpoint's root.
    #[error("entry {seq}'s inclusion proof does not verify against the checkpoint")]
    Proof {
        /// The entry.
        seq: u64,
    },
    /// Entries outside the filter, out of order, or a cursor that does not advance.
    #[error("the answer breaks the query's rules: {0}")]
    Rules(PeerMisbehaved),
    /// Not an answer to the question asked.
    #[error("the answer does not decode as an answer to a query")]
    Malformed,
}

/// Checks a query answer: the note against `verifier` (the destination's key and OID), every
/// entry against the filter and the cursor, and every inclusion proof against the note's root.
///
/// # Errors
/// [`AnswerError`]; nothing of a failing answer is returned.
pub fn verify_query(
    verifier: &NoteVerifier,
    filter: &Filter,
    cursor: u64,
    answer: RoutedAnswer,
) -> Result<VerifiedPage, AnswerError> {
    let (note, entries, next_cursor, path) = match answer {
        RoutedAnswer::Query { note, entries, next_cursor, path } => {
            (note, entries, next_cursor, path)
        }
        RoutedAnswer::Refused { code, message } => {
            return Err(AnswerError::Refused { code, message });
        }
    };
    let checkpoint = SignedCheckpoint::open(verifier, note.as_bytes())
        .map_err(|e| AnswerError::Checkpoint(e.to_string()))?;
    let size = checkpoint.size;
    let next = next_cursor.map(|c| c.0);
    check_page(filter, cursor, size, &entries, next).map_err(AnswerError::Rules)?;
    let mut verified = Vec::with_capacity(entries.len());
    for e in entries {
        let entry = Entry::decode(&e.leaf_data).map_err(|_| AnswerError::Malformed)?;
        let leaf = leaf_hash(&e.leaf_data);
        verify_inclusion(entry.seq, size, &leaf, &e.proof, &checkpoint.root)
            .map_err(|_| AnswerError::Proof { seq: entry.seq })?;
        verified.push(StoredEntry { entry, leaf_data: e.leaf_data, leaf_hash: leaf });
    }
    Ok(VerifiedPage { checkpoint, entries: verified, next_cursor: next, path })
}

#[cfg(test)]
mod tests {
    use onoal_engine::hash::node_hash;
    use onoal_engine::{Hash, Name, NewEntry};

    use super::*;

    fn entry(seq: u64, stream: &str) -> Vec<u8> {
        Entry {
            seq,
            timestamp_ms: 10,
            content: NewEntry::new(
                Name::stream(stream).unwrap(),
                Name::entry_type("t").unwrap(),
                format!("payload {seq}").into_bytes(),
            ),
            prev_hash: Hash::ZERO,
        }
        .leaf_data()
    }

    /// A tree of 4 entries (streams a, b, a, b) and a note signed by `key` for it.
    fn fixture(key: &ed25519_dalek::SigningKey) -> (NoteVerifier, Vec<Vec<u8>>, String) {
        use onoal_engine::checkpoint::{Checkpoint, NoteSigner};
        let leaves: Vec<Vec<u8>> =
            (0..4).map(|s| entry(s, if s % 2 == 0 { "a" } else { "b" })).collect();
        let h: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let root = node_hash(&node_hash(&h[0], &h[1]), &node_hash(&h[2], &h[3]));
        let origin = "oid:onoal:org:dest";
        let signer = NoteSigner::new(origin, key.clone()).unwrap();
        let note = signer.sign(&Checkpoint {
            origin: origin.into(),
            size: 4,
            root,
            extensions: Vec::new(),
        });
        (signer.verifier().clone(), leaves, note)
    }

    /// The RFC 9162 inclusion proof of `seq` in the 4-leaf tree, by hand: the sibling leaf,
    /// then the other half's node.
    fn proven(leaves: &[Vec<u8>], seq: u64) -> ProvenEntryWire {
        let h: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let i = seq as usize;
        let other_half = if i < 2 { node_hash(&h[2], &h[3]) } else { node_hash(&h[0], &h[1]) };
        ProvenEntryWire { leaf_data: leaves[i].clone(), proof: vec![h[i ^ 1], other_half] }
    }

    #[test]
    fn a_true_answer_verifies_and_every_lie_is_caught() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let (verifier, leaves, note) = fixture(&key);
        let filter = Filter { stream: Some("a".into()), ..Filter::default() };
        let answer = |entries, note: &str| RoutedAnswer::Query {
            note: note.to_owned(),
            entries,
            next_cursor: None,
            path: vec![[1; 32]],
        };
        let ok = verify_query(
            &verifier,
            &filter,
            0,
            answer(vec![proven(&leaves, 0), proven(&leaves, 2)], &note),
        )
        .unwrap();
        assert_eq!(ok.entries.iter().map(|e| e.entry.seq).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(ok.checkpoint.size, 4);
        assert_eq!(ok.path, vec![[1; 32]]);

        // A note signed by another key (a relay re-signing).
        let other = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let (_, _, forged) = fixture(&other);
        let e = verify_query(&verifier, &filter, 0, answer(vec![proven(&leaves, 0)], &forged));
        assert!(matches!(e, Err(AnswerError::Checkpoint(_))), "{e:?}");
        // An altered payload: the proof no longer leads to the root.
        let mut altered = proven(&leaves, 2);
        let last = altered.leaf_data.len() - 1;
        altered.leaf_data[last] ^= 1;
        let e = verify_query(&verifier, &filter, 0, answer(vec![altered], &note));
        assert!(matches!(e, Err(AnswerError::Proof { seq: 2 }) | Err(AnswerError::Malformed)));
        // An entry of another stream.
        let e = verify_query(&verifier, &filter, 0, answer(vec![proven(&leaves, 1)], &note));
        assert!(matches!(e, Err(AnswerError::Rules(PeerMisbehaved::EntryOutsideFilter))));
        // A refusal is passed on as one.
        let e = verify_query(
            &verifier,
            &filter,
            0,
            RoutedAnswer::Refused { code: ErrorCode::NotVisible, message: "no".into() },
        );
        assert!(matches!(e, Err(AnswerError::Refused { code: ErrorCode::NotVisible, .. })));
    }

    #[test]
    fn answers_round_trip_and_arbitrary_bytes_never_panic() {
        let a = RoutedAnswer::Refused { code: ErrorCode::BadRequest, message: "x".into() };
        assert_eq!(postcard::from_bytes::<RoutedAnswer>(&a.encode()).unwrap(), a);
        let r = RoutedRequest::Query { filter: Filter::default(), cursor: LogIndex(3), limit: 9 };
        assert_eq!(postcard::from_bytes::<RoutedRequest>(&r.encode()).unwrap(), r);
        for n in 0..300u32 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = postcard::from_bytes::<RoutedAnswer>(&bytes);
            let _ = postcard::from_bytes::<RoutedRequest>(&bytes);
        }
    }
}
