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
use onoal_engine::{Entry, Filter, Hash, LedgerId, LogIndex, SignedCheckpoint, StoredEntry};

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
    /// The seed's `proof_verify`: check the entry at `seq` against `expect` and answer with a
    /// statement signed by the destination's ledger key that carries the inclusion proof.
    Verify {
        /// The entry.
        seq: LogIndex,
        /// What the asker expects of it.
        expect: Expectation,
    },
    /// A step of a two-phase token transfer (docs/protocol.md, "Transfers"): the asker's
    /// steps of transfer `transfer` of ledger `source`, each with its inclusion proof in the
    /// asker's checkpoint `note`. The destination takes its next step, if any, and answers
    /// with its own steps of that transfer as a `Query` page. No steps (and no note): only asks.
    Transfer {
        /// The ledger that started the transfer (ids are its to choose).
        source: LedgerId,
        /// The transfer's id.
        transfer: String,
        /// The asker's checkpoint, a signed note (empty when `steps` is).
        note: String,
        /// The asker's steps of the transfer, in seq order.
        steps: Vec<ProvenEntryWire>,
    },
    /// Use case 3: the destination's history of the registered asset `asset` (its
    /// registration and its steps of transfers of the asset), answered as a `Query` page, each
    /// entry proven in one checkpoint. Any ledger may ask: registering an asset publishes its
    /// history; nothing else of the stream is shown.
    Asset {
        /// The asset's id.
        asset: String,
    },
}

/// What a proof verification compares; each field given must match the entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    /// Its leaf hash (from a proof file or a reference). Needed when the asker may not read the
    /// entry's stream: the destination then confirms, but does not show, the entry.
    pub leaf_hash: Option<Hash>,
    /// Its subject OID.
    pub subject: Option<String>,
    /// Its issuer OID.
    pub issuer: Option<String>,
    /// Its entry type.
    pub entry_type: Option<String>,
    /// The public key its issuer signature must be made with.
    pub issuer_key: Option<[u8; 32]>,
}

/// Per field of an [`Expectation`]: `None` when not asked, else whether it matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checks {
    /// The leaf hash.
    pub leaf_hash: Option<bool>,
    /// The subject.
    pub subject: Option<bool>,
    /// The issuer.
    pub issuer: Option<bool>,
    /// The entry type.
    #[serde(rename = "type")]
    pub entry_type: Option<bool>,
    /// The issuer key.
    pub issuer_key: Option<bool>,
    /// Whether the entry's issuer signature verifies; `None` when the entry is unsigned.
    pub issuer_signature: Option<bool>,
}

impl Checks {
    /// Compares `entry` (whose leaf hash is `leaf`) with `expect`.
    pub fn of(entry: &Entry, leaf: &Hash, expect: &Expectation) -> Self {
        let c = &entry.content;
        let oid = |o: &Option<onoal_engine::Oid>| o.as_ref().map(|o| o.as_str().to_owned());
        Self {
            leaf_hash: expect.leaf_hash.map(|h| h == *leaf),
            subject: expect.subject.as_ref().map(|s| oid(&c.subject).as_deref() == Some(s)),
            issuer: expect.issuer.as_ref().map(|s| oid(&c.issuer).as_deref() == Some(s)),
            entry_type: expect.entry_type.as_ref().map(|t| c.entry_type.as_str() == t),
            issuer_key: expect.issuer_key.map(|k| c.signature.is_some_and(|s| s.public_key == k)),
            issuer_signature: c.signature.map(|_| c.check_issuer_signature().is_ok()),
        }
    }

    /// Every field asked matched, and a signature present verifies.
    pub fn passed(&self) -> bool {
        [
            self.leaf_hash,
            self.subject,
            self.issuer,
            self.entry_type,
            self.issuer_key,
            self.issuer_signature,
        ]
        .iter()
        .all(|c| c.unwrap_or(true))
    }
}

/// The outcome a destination states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The entry is in the tree and matches every field asked.
    Match,
    /// The entry is in the tree but a field differs (see the checks).
    Mismatch,
    /// The tree of the destination's newest checkpoint has no entry at that seq.
    NotFound,
}

/// A destination's signed answer to a proof verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyStatement {
    /// The stating ledger.
    pub ledger_id: LedgerId,
    /// The entry asked about.
    pub seq: u64,
    /// What was asked, as received.
    pub expect: Expectation,
    /// The checkpoint the statement is about: its size …
    pub tree_size: u64,
    /// … and root.
    pub root: Hash,
    /// The entry's leaf hash; `None` when not found, or withheld (the asker may not read the
    /// entry and its leaf hash was not the one asked).
    pub leaf_hash: Option<Hash>,
    /// Field by field.
    pub checks: Checks,
    /// The outcome.
    pub verdict: Verdict,
    /// When it was stated, ms since the epoch.
    pub time_ms: u64,
}

/// Domain separator of statement signatures.
const STATEMENT_CONTEXT: &[u8] = b"onoal proof verification v1\n";

impl VerifyStatement {
    /// The bytes the ledger key signs: a context line, then the postcard encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = STATEMENT_CONTEXT.to_vec();
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// The postcard encoding (what travels).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
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
    /// The answer to [`RoutedRequest::Verify`].
    Verification {
        /// The destination's newest checkpoint, a signed note.
        note: String,
        /// A [`VerifyStatement`], postcard.
        statement: Vec<u8>,
        /// The destination's ledger key's Ed25519 signature over
        /// [`VerifyStatement::signing_bytes`].
        signature: Vec<u8>,
        /// The entry's inclusion proof in the note's tree (empty when not found or withheld).
        proof: Vec<Hash>,
        /// The entry's leaf data, when the asker may read its stream (then the asker re-checks
        /// every field itself).
        leaf_data: Option<Vec<u8>>,
        /// The relays, as in `Query`.
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
    /// An entry whose issuer signature does not verify over its content.
    #[error("entry {seq} carries an issuer signature that does not verify over its content")]
    IssuerSignature {
        /// The entry.
        seq: u64,
    },
    /// Entries outside the filter, out of order, or a cursor that does not advance.
    #[error("the answer breaks the query's rules: {0}")]
    Rules(PeerMisbehaved),
    /// Not an answer to the question asked.
    #[error("the answer does not decode as an answer to a query")]
    Malformed,
    /// A verification statement that is badly signed, about another question, or contradicts
    /// its own proof or entry.
    #[error("the verification statement does not hold: {0}")]
    Statement(&'static str),
    /// Proven entries that are not what was asked for (an asset history with other entries).
    #[error("the answer's entries do not hold: {0}")]
    Content(String),
}

/// A verification answer that checked out.
#[derive(Clone, Debug)]
pub struct VerifiedStatement {
    /// The statement, as signed.
    pub statement: VerifyStatement,
    /// Its postcard bytes and the signature over them (evidence to keep).
    pub statement_bytes: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The destination's checkpoint the statement is about.
    pub checkpoint: SignedCheckpoint,
    /// The entry, when it was shown (the asker re-derived every check from it).
    pub entry: Option<StoredEntry>,
    /// The relays' keys, as the destination saw them.
    pub path: Vec<[u8; 32]>,
}

/// Checks a verification answer from ledger `ledger` (key `key`, notes by `verifier`) to the
/// question (`seq`, `expect`): the statement's signature, that it answers this question about
/// the note's tree, the inclusion proof of its leaf hash, and, when the entry is shown, every
/// check against the entry itself.
///
/// # Errors
/// [`AnswerError`]; nothing of a failing answer is returned.
pub fn verify_statement(
    verifier: &NoteVerifier,
    key: &ed25519_dalek::VerifyingKey,
    ledger: LedgerId,
    seq: u64,
    expect: &Expectation,
    answer: RoutedAnswer,
) -> Result<VerifiedStatement, AnswerError> {
    let (note, statement_bytes, signature, proof, leaf_data, path) = match answer {
        RoutedAnswer::Verification { note, statement, signature, proof, leaf_data, path } => {
            (note, statement, signature, proof, leaf_data, path)
        }
        RoutedAnswer::Refused { code, message } => {
            return Err(AnswerError::Refused { code, message });
        }
        RoutedAnswer::Query { .. } => return Err(AnswerError::Malformed),
    };
    let checkpoint = SignedCheckpoint::open(verifier, note.as_bytes())
        .map_err(|e| AnswerError::Checkpoint(e.to_string()))?;
    let statement: VerifyStatement =
        postcard::from_bytes(&statement_bytes).map_err(|_| AnswerError::Malformed)?;
    let sig = <[u8; 64]>::try_from(signature.as_slice())
        .map_err(|_| AnswerError::Statement("the signature is not 64 bytes"))?;
    key.verify_strict(&statement.signing_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| AnswerError::Statement("not signed by the destination's key"))?;
    if statement.encode() != statement_bytes {
        return Err(AnswerError::Statement("not in canonical encoding"));
    }
    if statement.ledger_id != ledger || statement.seq != seq || statement.expect != *expect {
        return Err(AnswerError::Statement("it answers another question"));
    }
    let cp = &checkpoint.checkpoint;
    if statement.tree_size != cp.size || statement.root != cp.root {
        return Err(AnswerError::Statement("it is about another tree than its checkpoint"));
    }
    if statement.verdict != Verdict::NotFound
        && (statement.verdict == Verdict::Match) != statement.checks.passed()
    {
        return Err(AnswerError::Statement("its verdict contradicts its checks"));
    }
    let mut entry = None;
    match (statement.verdict, statement.leaf_hash) {
        (Verdict::NotFound, None) if seq >= cp.size => {}
        (Verdict::NotFound, _) => {
            return Err(AnswerError::Statement("it says not found, but the tree holds the seq"));
        }
        (_, None) => {
            // Withheld: only "your leaf hash is not the entry's" may be said without showing it.
            if expect.leaf_hash.is_none() || statement.checks.leaf_hash != Some(false) {
                return Err(AnswerError::Statement("it withholds the leaf hash without cause"));
            }
        }
        (_, Some(leaf)) => {
            verify_inclusion(seq, cp.size, &leaf, &proof, &cp.root)
                .map_err(|_| AnswerError::Proof { seq })?;
            if let Some(data) = leaf_data {
                if leaf_hash(&data) != leaf {
                    return Err(AnswerError::Statement("the entry shown is not the one proven"));
                }
                let e = Entry::decode(&data).map_err(|_| AnswerError::Malformed)?;
                if e.seq != seq {
                    return Err(AnswerError::Statement("the entry shown has another seq"));
                }
                if Checks::of(&e, &leaf, expect) != statement.checks {
                    return Err(AnswerError::Statement("its checks contradict the entry"));
                }
                entry = Some(StoredEntry { entry: e, leaf_data: data, leaf_hash: leaf });
            } else if expect.leaf_hash != Some(leaf) {
                // Not shown: stated only about an entry the asker named by its leaf hash.
                return Err(AnswerError::Statement(
                    "it neither shows the entry nor confirms the leaf hash asked",
                ));
            }
        }
    }
    Ok(VerifiedStatement { statement, statement_bytes, signature, checkpoint, entry, path })
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
        RoutedAnswer::Verification { .. } => return Err(AnswerError::Malformed),
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
        entry
            .content
            .check_issuer_signature()
            .map_err(|_| AnswerError::IssuerSignature { seq: entry.seq })?;
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
    fn a_signed_verification_statement_verifies_and_a_lying_destination_is_caught() {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let (verifier, leaves, note) = fixture(&key);
        let cp = verifier.open(note.as_bytes()).unwrap();
        let ledger = LedgerId::from_bytes([7; 16]);
        let seq = 2;
        let expect = Expectation { entry_type: Some("t".into()), ..Expectation::default() };
        let p = proven(&leaves, seq);
        let e = Entry::decode(&p.leaf_data).unwrap();
        let leaf = leaf_hash(&p.leaf_data);
        let honest = VerifyStatement {
            ledger_id: ledger,
            seq,
            expect: expect.clone(),
            tree_size: 4,
            root: cp.root,
            leaf_hash: Some(leaf),
            checks: Checks::of(&e, &leaf, &expect),
            verdict: Verdict::Match,
            time_ms: 1,
        };
        let answer = |st: &VerifyStatement, by: &ed25519_dalek::SigningKey, shown: bool| {
            RoutedAnswer::Verification {
                note: note.clone(),
                statement: st.encode(),
                signature: by.sign(&st.signing_bytes()).to_bytes().to_vec(),
                proof: p.proof.clone(),
                leaf_data: shown.then(|| p.leaf_data.clone()),
                path: Vec::new(),
            }
        };
        let check = |a, exp: &Expectation| {
            verify_statement(&verifier, &key.verifying_key(), ledger, seq, exp, a)
        };
        let ok = check(answer(&honest, &key, true), &expect).unwrap();
        assert_eq!(
            (ok.statement.verdict, ok.entry.map(|e| e.entry.seq)),
            (Verdict::Match, Some(2))
        );
        assert_eq!(ok.statement.checks.entry_type, Some(true));

        let other = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let lie = |f: &dyn Fn(&mut VerifyStatement)| {
            let mut st = honest.clone();
            f(&mut st);
            st
        };
        let cases: Vec<(&str, RoutedAnswer, &str)> = vec![
            ("signed by another key", answer(&honest, &other, true), "not signed"),
            ("another seq", answer(&lie(&|s| s.seq = 1), &key, true), "another question"),
            (
                "another expectation",
                answer(&lie(&|s| s.expect.subject = Some("oid:x".into())), &key, true),
                "another question",
            ),
            ("another tree", answer(&lie(&|s| s.tree_size = 3), &key, true), "another tree"),
            (
                "a mismatch verdict over passing checks",
                answer(&lie(&|s| s.verdict = Verdict::Mismatch), &key, true),
                "contradicts its checks",
            ),
            (
                "checks that contradict the entry shown",
                answer(
                    &lie(&|s| {
                        s.checks.entry_type = Some(false);
                        s.verdict = Verdict::Mismatch;
                    }),
                    &key,
                    true,
                ),
                "contradict the entry",
            ),
            (
                "not found inside the tree",
                answer(
                    &lie(&|s| {
                        s.verdict = Verdict::NotFound;
                        s.leaf_hash = None;
                    }),
                    &key,
                    true,
                ),
                "tree holds the seq",
            ),
            (
                "another leaf hash",
                answer(&lie(&|s| s.leaf_hash = Some(Hash([9; 32]))), &key, true),
                "inclusion proof",
            ),
            (
                "a match about an entry neither shown nor named",
                answer(&honest, &key, false),
                "neither shows",
            ),
            (
                "a withheld leaf hash nobody asked about",
                answer(
                    &lie(&|s| {
                        s.leaf_hash = None;
                        s.checks = Checks { leaf_hash: Some(false), ..Checks::default() };
                        s.verdict = Verdict::Mismatch;
                    }),
                    &key,
                    false,
                ),
                "withholds",
            ),
        ];
        for (what, a, want) in cases {
            let e = check(a, &expect).expect_err(what).to_string();
            assert!(
                e.contains(want) || (want == "inclusion proof" && e.contains("inclusion")),
                "{what}: {e}"
            );
        }
        // Named by its leaf hash, the entry need not be shown.
        let named = Expectation { leaf_hash: Some(leaf), ..expect.clone() };
        let st = VerifyStatement {
            expect: named.clone(),
            checks: Checks::of(&e, &leaf, &named),
            ..honest.clone()
        };
        let ok = check(answer(&st, &key, false), &named).unwrap();
        assert!(ok.entry.is_none() && ok.statement.checks.leaf_hash == Some(true));
        // Arbitrary bytes as a statement never panic.
        let junk = RoutedAnswer::Verification {
            note: note.clone(),
            statement: vec![0xff; 40],
            signature: vec![0; 64],
            proof: Vec::new(),
            leaf_data: None,
            path: Vec::new(),
        };
        assert!(check(junk, &expect).is_err());
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
