//! Who is on the other end: [`PeerId`] (a peer's Ed25519 transport key), next to the engine's
//! [`LedgerId`]. Both print a short form for logs and spans (`fmt_short`).

use std::fmt;

use ed25519_dalek::VerifyingKey;

pub use onoal_engine::LedgerId;

/// A peer's identity on the wire: the Ed25519 key it presented in the TLS handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(VerifyingKey);

impl PeerId {
    /// The peer with this key.
    pub fn new(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// The peer with this 32-byte key, if it is a valid Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(Self)
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
