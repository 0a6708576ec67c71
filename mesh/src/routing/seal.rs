//! End-to-end encryption of routed payloads (the seed's message encryption), sans-I/O: relays
//! see the envelope (who, to whom, TTL, path) and an opaque payload; only the origin and the
//! destination can read the request and its answer, and only they can make one that opens.
//!
//! Bytes (docs/protocol.md, "Routed payloads"):
//!
//! - The destination's X25519 key is its Ed25519 ledger key in Montgomery form (the birational
//!   map of RFC 7748 section 4.1, as libsodium's `crypto_sign_ed25519_pk_to_curve25519`); its
//!   secret is the clamped lower half of SHA-512 of the Ed25519 seed. No second key to publish.
//! - The origin draws a fresh X25519 key pair per request: `E`. Shared secret
//!   `Z = X25519(e, D)`, refused when all zero (a low-order `D` or `E`).
//! - `HKDF-SHA256(salt = message id (16 bytes), ikm = Z, info = "onoal routed payload v1" || E || D)`
//!   gives 64 bytes: the request key, then the reply key.
//! - Request payload: `E (32 bytes) || ChaCha20-Poly1305(request key, nonce 0, aad = id, plaintext)`.
//!   Reply: `ChaCha20-Poly1305(reply key, nonce 0, aad = id, plaintext)`. Each key seals exactly
//!   one message, so the zero nonce never repeats under a key.
//!
//! The origin's Ed25519 envelope signature covers the sealed payload, so the request is
//! authenticated as the origin's; the reply opens only under the reply key, which only the
//! destination (holder of `d`) could derive besides the origin, so a relay can neither read nor
//! forge nor replay one (an old reply is sealed under another request's key). The answer inside
//! is still checked against the destination's signed checkpoint and proofs: the encryption
//! hides and binds; the proofs prove.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// HKDF info prefix (then `E || D`).
const INFO: &[u8] = b"onoal routed payload v1";

/// Bytes a sealed request adds to its plaintext: the ephemeral key and the tag.
pub const REQUEST_OVERHEAD: usize = 32 + 16;

/// Why a sealed payload does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Shorter than its fixed parts.
    #[error("the sealed payload is too short")]
    Short,
    /// The key exchange gave the all-zero secret (a low-order point).
    #[error("the key exchange is degenerate (a low-order point)")]
    Degenerate,
    /// The tag does not verify: altered, replayed, or sealed for another key.
    #[error("the sealed payload does not open: altered in transit, replayed, or not for this key")]
    Open,
}

/// The key an answer is sealed and opened with, held by both ends for one request.
pub struct ReplyKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyKey(..)")
    }
}

/// The X25519 public key of an Ed25519 ledger key.
pub fn x25519_public(key: &VerifyingKey) -> [u8; 32] {
    key.to_montgomery().to_bytes()
}

fn x25519_secret(key: &SigningKey) -> StaticSecret {
    StaticSecret::from(key.to_scalar_bytes())
}

fn keys(id: &[u8; 16], shared: &[u8; 32], e: &[u8; 32], d: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let hk = Hkdf::<Sha256>::new(Some(id), shared);
    let mut info = INFO.to_vec();
    info.extend_from_slice(e);
    info.extend_from_slice(d);
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA256's limit of 8160.
    hk.expand(&info, okm.as_mut()).unwrap_or_default();
    let mut request = [0u8; 32];
    let mut reply = [0u8; 32];
    request.copy_from_slice(&okm[..32]);
    reply.copy_from_slice(&okm[32..]);
    (request, reply)
}

fn seal(key: &[u8; 32], id: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    // Encryption with a valid key only fails past 256 GiB.
    cipher
        .encrypt(Nonce::from_slice(&[0; 12]), Payload { msg: plaintext, aad: id })
        .unwrap_or_default()
}

fn open(key: &[u8; 32], id: &[u8; 16], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(&[0; 12]), Payload { msg: sealed, aad: id })
        .map_err(|_| SealError::Open)
}

/// Seals `plaintext` for the holder of `destination`, as message `id`, with the ephemeral secret
/// drawn from `ephemeral` (32 random bytes). Returns the payload and the key the answer
/// will be sealed with.
///
/// # Errors
/// [`SealError::Degenerate`] for a low-order destination key.
pub fn seal_request(
    destination: &VerifyingKey,
    id: &[u8; 16],
    plaintext: &[u8],
    ephemeral: [u8; 32],
) -> Result<(Vec<u8>, ReplyKey), SealError> {
    let e = StaticSecret::from(ephemeral);
    let e_pub = PublicKey::from(&e).to_bytes();
    let d = x25519_public(destination);
    let shared = e.diffie_hellman(&PublicKey::from(d));
    if !shared.was_contributory() {
        return Err(SealError::Degenerate);
    }
    let (request, reply) = keys(id, shared.as_bytes(), &e_pub, &d);
    let request = Zeroizing::new(request);
    let mut out = e_pub.to_vec();
    out.extend_from_slice(&seal(&request, id, plaintext));
    Ok((out, ReplyKey(Zeroizing::new(reply))))
}

/// Opens a request sealed for `me`. Returns the plaintext and the key to seal the answer with.
///
/// # Errors
/// [`SealError`]: too short, degenerate, or it does not open.
pub fn open_request(
    me: &SigningKey,
    id: &[u8; 16],
    sealed: &[u8],
) -> Result<(Vec<u8>, ReplyKey), SealError> {
    if sealed.len() < REQUEST_OVERHEAD {
        return Err(SealError::Short);
    }
    let (e_pub, body) = sealed.split_at(32);
    let e_pub: [u8; 32] = e_pub.try_into().map_err(|_| SealError::Short)?;
    let d = x25519_public(&me.verifying_key());
    let shared = x25519_secret(me).diffie_hellman(&PublicKey::from(e_pub));
    if !shared.was_contributory() {
        return Err(SealError::Degenerate);
    }
    let (request, reply) = keys(id, shared.as_bytes(), &e_pub, &d);
    let request = Zeroizing::new(request);
    let plaintext = open(&request, id, body)?;
    Ok((plaintext, ReplyKey(Zeroizing::new(reply))))
}

/// Seals the answer to request `id`.
pub fn seal_reply(key: &ReplyKey, id: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    seal(&key.0, id, plaintext)
}

/// Opens the answer to request `id`.
///
/// # Errors
/// [`SealError::Open`]: altered, replayed from another request, or not from the destination.
pub fn open_reply(key: &ReplyKey, id: &[u8; 16], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    open(&key.0, id, sealed)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    #[test]
    fn the_ed25519_secret_matches_its_montgomery_public_key() {
        for b in [1u8, 7, 200] {
            let k = key(b);
            let from_secret = PublicKey::from(&x25519_secret(&k)).to_bytes();
            assert_eq!(from_secret, x25519_public(&k.verifying_key()));
        }
    }

    #[test]
    fn request_and_reply_round_trip_and_bind_to_their_ids_and_keys() {
        let dest = key(3);
        let id = [9u8; 16];
        let (sealed, origin_reply) =
            seal_request(&dest.verifying_key(), &id, b"query", [5; 32]).unwrap();
        assert_eq!(sealed.len(), b"query".len() + REQUEST_OVERHEAD);
        assert!(!sealed.windows(5).any(|w| w == b"query"), "the plaintext is not visible");
        let (plain, dest_reply) = open_request(&dest, &id, &sealed).unwrap();
        assert_eq!(plain, b"query");
        let answer = seal_reply(&dest_reply, &id, b"answer");
        assert_eq!(open_reply(&origin_reply, &id, &answer).unwrap(), b"answer");

        // Another destination, another id, or one flipped bit: nothing opens.
        assert_eq!(open_request(&key(4), &id, &sealed).unwrap_err(), SealError::Open);
        assert_eq!(open_request(&dest, &[8; 16], &sealed).unwrap_err(), SealError::Open);
        assert_eq!(open_reply(&origin_reply, &[8; 16], &answer).unwrap_err(), SealError::Open);
        // A reply to an earlier request (a replay) does not open under a new request's key.
        let (_, second_key) = seal_request(&dest.verifying_key(), &id, b"query", [6; 32]).unwrap();
        assert_eq!(open_reply(&second_key, &id, &answer).unwrap_err(), SealError::Open);
        assert_eq!(open_request(&dest, &id, &sealed[..40]).unwrap_err(), SealError::Short);
    }

    #[test]
    fn a_low_order_ephemeral_key_is_refused() {
        // The all-zero Montgomery u-coordinate is a point of small order.
        let mut sealed = vec![0u8; 32];
        sealed.extend_from_slice(&[0u8; 16]);
        assert_eq!(open_request(&key(3), &[1; 16], &sealed).unwrap_err(), SealError::Degenerate);
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_caught(i in 0usize..70, bit in 0u8..8) {
            let dest = key(11);
            let id = [2u8; 16];
            let (mut sealed, _) =
                seal_request(&dest.verifying_key(), &id, b"twenty-two bytes here.", [1; 32]).unwrap();
            let i = i % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert!(open_request(&dest, &id, &sealed).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open_request(&key(1), &[0; 16], &bytes);
            let (_, k) = seal_request(&key(1).verifying_key(), &[0; 16], b"", [3; 32]).unwrap();
            let _ = open_reply(&k, &[0; 16], &bytes);
        }
    }
}
