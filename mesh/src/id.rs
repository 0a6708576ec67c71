//! Who is on the other end: [`PeerId`] (a peer's Ed25519 transport key), next to the engine's
//! [`LedgerId`]. Both print a short form for logs and spans (`fmt_short`).

use std::fmt;

use ed25519_dalek::VerifyingKey;

pub use onoal_engine::LedgerId;

/// A peer's identity on the wire: the Ed25519 key it presented in the TLS handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(VerifyingKey);

/// Why a typed public key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTextError {
    /// Not 64 hex characters.
    NotHex32,
    /// A valid encoding no one can hold the secret of (or not a curve point).
    Unusable,
}

impl PeerId {
    /// The peer with this key.
    pub fn new(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// The peer with this 32-byte key, if it is a valid Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(Self)
    }

    /// Parses a public key a user typed: 64 hex characters encoding a point on the curve that
    /// is not one of the small-order points (all zeros among them), whose secret no one holds.
    ///
    /// # Errors
    /// [`KeyTextError`]: not 32 bytes of hex, or not a usable key.
    pub fn parse_hex(text: &str) -> Result<Self, KeyTextError> {
        let bytes: [u8; 32] =
            hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or(KeyTextError::NotHex32)?;
        match Self::from_bytes(&bytes) {
            Some(id) if bytes != [0; 32] && !id.key().is_weak() => Ok(id),
            _ => Err(KeyTextError::Unusable),
        }
    }

    /// The key.
    pub fn key(&self) -> &VerifyingKey {
        &self.0
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The key in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The first 8 hex digits, for logs and spans.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.0.as_bytes()[..4])
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.fmt_short())
    }
}
