//! Identifiers that cross module and crate boundaries: ledger ids, log positions, tree sizes.
//!
//! Each is a newtype, so a ledger id cannot be passed where a peer's key is expected, nor a
//! tree size where a position is. On the wire (postcard) a newtype is exactly its inner value:
//! `LedgerId` is 16 raw bytes, `LogIndex` and `TreeSize` are varints.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a ledger: a UUID, chosen when the ledger is created and never changed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerId(uuid::Uuid);

impl LedgerId {
    /// A fresh random (version 4) id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The id of these 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }

    /// Its 16 bytes (the form stored on disk and sent on the wire).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Reads an id from exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self::from_bytes)
    }

    /// The first 8 hex digits, for logs and spans.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.as_bytes()[..4])
    }
}

/// A text that is not a ledger id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ledger id (a UUID such as 0b5e3c1a-2f4d-4c6e-9a8b-1c2d3e4f5a6b)")]
pub struct BadLedgerId(pub String);

impl FromStr for LedgerId {
    type Err = BadLedgerId;
    fn from_str(s: &str) -> Result<Self, BadLedgerId> {
        uuid::Uuid::parse_str(s).map(Self).map_err(|_| BadLedgerId(s.chars().take(80).collect()))
    }
}

impl fmt::Display for LedgerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for LedgerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LedgerId({})", self.0.hyphenated())
    }
}

impl Serialize for LedgerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A fixed array: 16 bytes, no length prefix (as `[u8; 16]` always was on the wire).
        self.as_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for LedgerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(d).map(Self::from_bytes)
    }
}

/// A position in a log (0-based): the seq of an entry, the index of a leaf.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LogIndex(pub u64);

/// The number of leaves of a tree (the size of a log or of a checkpoint).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TreeSize(pub u64);

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TreeSize {
    /// True when the tree has a leaf at `index`.
    pub fn contains(self, index: LogIndex) -> bool {
        index.0 < self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_ids_parse_print_and_travel_as_16_bytes() {
        let text = "0b5e3c1a-2f4d-4c6e-9a8b-1c2d3e4f5a6b";
        let id: LedgerId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(id.fmt_short(), "0b5e3c1a");
        let wire = postcard::to_stdvec(&id).unwrap();
        assert_eq!(wire.as_slice(), id.as_bytes());
        assert_eq!(postcard::from_bytes::<LedgerId>(&wire).unwrap(), id);
        assert!("not-a-uuid".parse::<LedgerId>().is_err());
        assert_eq!(LedgerId::from_slice(&[7; 15]), None);
    }

    #[test]
    fn positions_and_sizes_are_plain_varints_on_the_wire() {
        assert_eq!(
            postcard::to_stdvec(&TreeSize(300)).unwrap(),
            postcard::to_stdvec(&300u64).unwrap()
        );
        assert_eq!(postcard::to_stdvec(&LogIndex(5)).unwrap(), [5]);
        assert!(TreeSize(3).contains(LogIndex(2)) && !TreeSize(3).contains(LogIndex(3)));
    }
}
