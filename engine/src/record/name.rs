//! Names (streams, entry types) and hierarchical OIDs: validated at construction, so a stored
//! or received value is always one of these.

use std::fmt;
use std::str::FromStr;

use super::{InvalidInput, MAX_NAME_LEN, MAX_OID_LEN};

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'/' | b'-'))
}

/// A stream name or entry type: 1..=128 bytes of `[a-z0-9._/-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates a stream name.
    ///
    /// # Errors
    /// [`InvalidInput::Name`] when empty, longer than 128 bytes or with another character.
    pub fn stream(s: &str) -> Result<Self, InvalidInput> {
        Self::parse(s, "stream")
    }

    /// Validates an entry type.
    ///
    /// # Errors
    /// [`InvalidInput::Name`] when empty, longer than 128 bytes or with another character.
    pub fn entry_type(s: &str) -> Result<Self, InvalidInput> {
        Self::parse(s, "entry type")
    }

    fn parse(s: &str, what: &'static str) -> Result<Self, InvalidInput> {
        if valid_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInput::Name { what, value: s.chars().take(200).collect() })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A hierarchical object identifier, e.g. `oid:onoal:org:myorg`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(String);

impl Oid {
    /// Validates an OID: `oid:` then components of `[a-z0-9_-]` separated by `:`.
    ///
    /// # Errors
    /// [`InvalidInput::Oid`] for anything else, or over 255 bytes.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let ok = s.len() <= MAX_OID_LEN
            && s.strip_prefix("oid:").is_some_and(|rest| {
                rest.split(':').all(|c| {
                    !c.is_empty()
                        && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
                })
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInput::Oid { value: s.chars().take(300).collect() })
        }
    }

    /// The OID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components after `oid:`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0["oid:".len()..].split(':')
    }

    /// Tree distance between two OIDs: `(len a + len b) - 2 * common prefix length`.
    pub fn distance(&self, other: &Self) -> usize {
        let common = self.components().zip(other.components()).take_while(|(a, b)| a == b).count();
        self.components().count() + other.components().count() - 2 * common
    }
}

impl FromStr for Oid {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", self.0)
    }
}
