//! Stream visibility, sans-I/O: who may read which streams of a ledger. Every stream is
//! `private` (served to no one), `trusted:T` (to ledgers whose trust, in the view of the
//! ledger that owns the data, is at least `T`) or `public` (to anyone). A ledger's choices form
//! its [`VisibilityPolicy`], which it signs and versions, so that a relay holding a replica can
//! prove to itself and to its clients what the origin allowed. [`VisibilityPolicy::admits`] is
//! the one decision the serving core makes for every request.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

/// The visibility of every stream a policy does not name, unless the operator changes it: a
/// pinned peer starts at direct trust 0.5 (`DEFAULT_LEVEL`) and is admitted; a mild or
/// moderate penalty keeps it admitted, a severe one does not; a friend of a friend (0.5·0.5)
/// is not.
pub const DEFAULT_VISIBILITY: Visibility = Visibility::Trusted(0.4);
/// Most streams a policy names.
pub const MAX_POLICY_STREAMS: usize = 1024;

/// Who may read a stream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// No one but the ledger itself.
    Private,
    /// Ledgers trusted at least this much (0 < T ≤ 1) by the data's owner.
    Trusted(f64),
    /// Anyone, unpinned peers included.
    Public,
}

impl Visibility {
    /// Whether a reader trusted at `trust` may read.
    pub fn admits(self, trust: f64) -> bool {
        match self {
            Self::Private => false,
            Self::Trusted(t) => trust >= t,
            Self::Public => true,
        }
    }

    fn valid(self) -> bool {
        match self {
            Self::Trusted(t) => t.is_finite() && t > 0.0 && t <= 1.0,
            _ => true,
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Private => f.write_str("private"),
            Self::Trusted(t) => write!(f, "trusted:{t}"),
            Self::Public => f.write_str("public"),
        }
    }
}

/// Why a visibility, a policy or a stream name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VisibilityError {
    /// Not one of the three forms.
    #[error(
        "visibility `{0}` is not understood: give private, public, or trusted:T with 0 < T <= 1 (e.g. trusted:0.7)"
    )]
    Parse(String),
    /// The policy names too many streams.
    #[error("a visibility policy names at most {MAX_POLICY_STREAMS} streams")]
    TooManyStreams,
    /// A stream name that no entry can have.
    #[error("`{0}` is not a stream name (1-128 bytes of a-z, 0-9, '.', '_', '/', '-')")]
    Stream(String),
    /// The policy's key is not a usable Ed25519 key.
    #[error("the visibility policy's key is not a usable Ed25519 key")]
    Key,
    /// The policy's signature does not verify.
    #[error("the visibility policy's signature does not verify")]
    Signature,
}

impl FromStr for Visibility {
    type Err = VisibilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = match s.trim() {
            "private" => Self::Private,
            "public" => Self::Public,
            other => match other.strip_prefix("trusted:").map(str::parse::<f64>) {
                Some(Ok(t)) => Self::Trusted(t),
                _ => return Err(VisibilityError::Parse(s.to_owned())),
            },
        };
        if v.valid() { Ok(v) } else { Err(VisibilityError::Parse(s.to_owned())) }
    }
}

/// Checks a stream name as the engine does for appends (a name no entry can have is an error,
/// not a rule that silently matches nothing).
///
/// # Errors
/// [`VisibilityError::Stream`].
pub fn check_stream(name: &str) -> Result<(), VisibilityError> {
    onoal_engine::Name::stream(name)
        .map(drop)
        .map_err(|_| VisibilityError::Stream(name.chars().take(200).collect()))
}

/// What a request reads of a ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every stream: a full sync, or a filtered sync without a stream.
    Log,
    /// One stream: a filtered sync, a query or a proof of an entry of it.
    Stream(&'a str),
    /// Something of the ledger: its checkpoints, certificate and consistency proofs (sizes and
    /// roots, no entry), for a reader allowed at least one stream.
    Any,
}

/// A refused read, with the rule that refused it (for the reader and the operator).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// Says which rule refused, and what the reader's trust was.
    pub message: String,
    /// The streams the reader may read (for a refused full sync: sync these one by one).
    pub visible: Vec<String>,
}

/// A ledger's signed visibility policy: the default for every stream, and the streams that
/// differ. A newer `version` replaces an older one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisibilityPolicy {
    /// Whose data.
    pub ledger: LedgerId,
    /// The ledger's key.
    pub key: [u8; 32],
    /// Increases with every change.
    pub version: u64,
    /// Signed at (ms since the epoch).
    pub issued_ms: u64,
    /// Every stream not named below.
    pub default: Visibility,
    /// Streams with their own visibility.
    pub streams: BTreeMap<String, Visibility>,
    /// Ed25519 over the context and the fields above; empty for an unsigned default.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

const POLICY_CONTEXT: &[u8] = b"onoal visibility policy v1\n";

#[derive(Serialize)]
struct SignedPolicy<'a> {
    ledger: LedgerId,
    key: &'a [u8; 32],
    version: u64,
    issued_ms: u64,
    default: Visibility,
    streams: &'a BTreeMap<String, Visibility>,
}

impl VisibilityPolicy {
    /// The policy of a ledger that never chose one (version 0, unsigned): every stream at
    /// [`DEFAULT_VISIBILITY`].
    pub fn default_for(ledger: LedgerId) -> Self {
        Self {
            ledger,
            key: [0; 32],
            version: 0,
            issued_ms: 0,
            default: DEFAULT_VISIBILITY,
            streams: BTreeMap::new(),
            signature: Vec::new(),
        }
    }

    /// The visibility of `stream`.
    pub fn of(&self, stream: &str) -> Visibility {
        self.streams.get(stream).copied().unwrap_or(self.default)
    }

    /// This policy with `stream` (or, for `None`, the default) at `visibility`, as the next
    /// version, signed by `key` at `now_ms`.
    ///
    /// # Errors
    /// [`VisibilityError`].
    pub fn with(
        &self,
        stream: Option<&str>,
        visibility: Visibility,
        key: &SigningKey,
        now_ms: u64,
    ) -> Result<Self, VisibilityError> {
        let mut next = self.clone();
        match stream {
            None => next.default = visibility,
            Some(s) => {
                check_stream(s)?;
                next.streams.insert(s.to_owned(), visibility);
            }
        }
        // A stream at the default needs no line of its own.
        let default = next.default;
        next.streams.retain(|_, v| *v != default);
        next.version += 1;
        next.issued_ms = now_ms.max(self.issued_ms);
        next.key = key.verifying_key().to_bytes();
        next.limits()?;
        next.signature = key.sign(&next.signed_bytes()).to_bytes().to_vec();
        Ok(next)
    }

    fn limits(&self) -> Result<(), VisibilityError> {
        if self.streams.len() > MAX_POLICY_STREAMS {
            return Err(VisibilityError::TooManyStreams);
        }
        for (s, v) in &self.streams {
            check_stream(s)?;
            if !v.valid() {
                return Err(VisibilityError::Parse(v.to_string()));
            }
        }
        if !self.default.valid() {
            return Err(VisibilityError::Parse(self.default.to_string()));
        }
        Ok(())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let signed = SignedPolicy {
            ledger: self.ledger,
            key: &self.key,
            version: self.version,
            issued_ms: self.issued_ms,
            default: self.default,
            streams: &self.streams,
        };
        let mut out = POLICY_CONTEXT.to_vec();
        out.extend_from_slice(&postcard::to_stdvec(&signed).unwrap_or_default());
        out
    }

    /// Checks the limits and the signature against `key` (the ledger's key, from a pin or a
    /// checked record: a policy signed by another key says nothing about this ledger).
    ///
    /// # Errors
    /// [`VisibilityError`].
    pub fn check(&self, key: &[u8; 32]) -> Result<(), VisibilityError> {
        self.limits()?;
        if &self.key != key {
            return Err(VisibilityError::Signature);
        }
        let key = VerifyingKey::from_bytes(key).map_err(|_| VisibilityError::Key)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| VisibilityError::Signature)?;
        key.verify_strict(&self.signed_bytes(), &sig).map_err(|_| VisibilityError::Signature)
    }

    /// Whether a reader trusted at `trust` (by this policy's ledger) may read `scope`; the
    /// refusal names the rule.
    ///
    /// # Errors
    /// [`Refused`].
    pub fn admits(&self, scope: Scope<'_>, trust: f64) -> Result<(), Refused> {
        let allowed = match scope {
            Scope::Stream(s) => self.of(s).admits(trust),
            Scope::Log => {
                self.default.admits(trust) && self.streams.values().all(|v| v.admits(trust))
            }
            Scope::Any => {
                self.default.admits(trust) || self.streams.values().any(|v| v.admits(trust))
            }
        };
        if allowed {
            return Ok(());
        }
        let visible: Vec<String> =
            self.streams.iter().filter(|(_, v)| v.admits(trust)).map(|(s, _)| s.clone()).collect();
        let rule = match scope {
            Scope::Stream(s) => format!("stream `{s}` of ledger {} is {}", self.ledger, self.of(s)),
            Scope::Log => {
                let closed: Vec<String> = self
                    .streams
                    .iter()
                    .filter(|(_, v)| !v.admits(trust))
                    .map(|(s, v)| format!("`{s}` is {v}"))
                    .take(8)
                    .collect();
                let default = if self.default.admits(trust) {
                    String::new()
                } else {
                    format!("its streams are {} by default", self.default)
                };
                let parts: Vec<String> =
                    [default].into_iter().filter(|s| !s.is_empty()).chain(closed).collect();
                format!(
                    "not every stream of ledger {} may be read: {}",
                    self.ledger,
                    parts.join(", ")
                )
            }
            Scope::Any => format!(
                "no stream of ledger {} may be read (its streams are {} by default)",
                self.ledger, self.default
            ),
        };
        let closed: Vec<&str> = self
            .streams
            .iter()
            .filter(|(_, v)| !v.admits(trust))
            .map(|(s, _)| s.as_str())
            .collect();
        let hint = if scope == Scope::Log && self.default.admits(trust) {
            format!(
                "; you may read every stream except {} (sync them one by one: --stream NAME)",
                closed.join(", ")
            )
        } else if visible.is_empty() {
            String::new()
        } else {
            format!("; the streams you may read: {}", visible.join(", "))
        };
        Err(Refused { message: format!("{rule}, and your trust is {trust:.3}{hint}"), visible })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn ledger() -> LedgerId {
        LedgerId::from_bytes([1; 16])
    }

    #[test]
    fn parses_the_three_forms_and_refuses_the_rest() {
        assert_eq!("private".parse::<Visibility>(), Ok(Visibility::Private));
        assert_eq!("public".parse::<Visibility>(), Ok(Visibility::Public));
        assert_eq!("trusted:0.7".parse::<Visibility>(), Ok(Visibility::Trusted(0.7)));
        for bad in ["trusted:0", "trusted:1.5", "trusted:NaN", "trusted:", "open", "Private"] {
            assert!(bad.parse::<Visibility>().is_err(), "{bad}");
        }
        assert_eq!(Visibility::Trusted(0.7).to_string(), "trusted:0.7");
    }

    #[test]
    fn a_signed_policy_checks_and_a_changed_one_does_not() {
        let p = VisibilityPolicy::default_for(ledger())
            .with(Some("orders"), Visibility::Private, &key(), 10)
            .unwrap();
        assert_eq!(p.version, 1);
        let k = key().verifying_key().to_bytes();
        p.check(&k).unwrap();
        let mut forged = p.clone();
        forged.streams.insert("orders".into(), Visibility::Public);
        assert_eq!(forged.check(&k), Err(VisibilityError::Signature));
        let other = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
        assert_eq!(p.check(&other), Err(VisibilityError::Signature));
        assert!(p.with(Some("BAD NAME"), Visibility::Public, &key(), 11).is_err());
    }

    #[test]
    fn decisions_follow_the_rules() {
        let p = VisibilityPolicy::default_for(ledger())
            .with(Some("secret"), Visibility::Private, &key(), 1)
            .unwrap()
            .with(Some("news"), Visibility::Public, &key(), 2)
            .unwrap()
            .with(Some("deals"), Visibility::Trusted(0.7), &key(), 3)
            .unwrap();
        // A pinned peer at 0.5: the default admits it, not `deals`, never `secret`.
        assert!(p.admits(Scope::Stream("orders"), 0.5).is_ok());
        assert!(p.admits(Scope::Stream("deals"), 0.5).is_err());
        assert!(p.admits(Scope::Stream("deals"), 0.7).is_ok());
        assert!(p.admits(Scope::Stream("secret"), 1.0).is_err());
        // A full sync needs every stream: never, with a private one.
        let r = p.admits(Scope::Log, 1.0).unwrap_err();
        assert!(r.message.contains("`secret` is private"), "{}", r.message);
        assert_eq!(r.visible, vec!["deals".to_owned(), "news".to_owned()]);
        // A stranger (trust 0) sees public streams only, and checkpoints because of them.
        assert!(p.admits(Scope::Stream("news"), 0.0).is_ok());
        assert!(p.admits(Scope::Stream("orders"), 0.0).is_err());
        assert!(p.admits(Scope::Any, 0.0).is_ok());
        let closed = VisibilityPolicy::default_for(ledger());
        let r = closed.admits(Scope::Any, 0.2).unwrap_err();
        assert!(r.message.contains("no stream") && r.message.contains("0.200"), "{}", r.message);
        // Setting a stream back to the default drops its line.
        let q = p.with(Some("deals"), DEFAULT_VISIBILITY, &key(), 4).unwrap();
        assert!(!q.streams.contains_key("deals"));
    }
}
