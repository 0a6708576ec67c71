//! Tickets: one string to copy and paste to connect to a ledger,
//! `onoal://LEDGER_ID@HOST:PORT#KEY` (the address is left out for a ledger that only reads
//! from others). `onoal serve` and `onoal info` print one; `onoal peer add` and `onoal sync`
//! take one. The key is the ledger's Ed25519 public key in hex: whoever pastes a ticket pins
//! that key, so a ticket must come from a channel the user trusts, as an SSH host key does.

use std::fmt;
use std::str::FromStr;

use onoal_engine::LedgerId;

use crate::id::{KeyTextError, PeerId};

/// The scheme every ticket starts with.
pub const TICKET_SCHEME: &str = "onoal://";

/// A ledger's id, key and (optionally) where it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The ledger.
    pub ledger_id: LedgerId,
    /// `HOST:PORT` of its QUIC endpoint.
    pub address: Option<String>,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TICKET_SCHEME}{}", self.ledger_id)?;
        if let Some(a) = &self.address {
            write!(f, "@{a}")?;
        }
        write!(f, "#{}", hex::encode(self.public_key))
    }
}

/// Why a text is not a ticket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a ticket ({why}); a ticket reads onoal://LEDGER_ID@HOST:PORT#KEY, as `onoal serve` and `onoal info` print it"
)]
pub struct TicketError {
    text: String,
    why: &'static str,
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why| TicketError { text: text.chars().take(200).collect(), why };
        let rest = text.trim().strip_prefix(TICKET_SCHEME).ok_or_else(|| bad("no onoal://"))?;
        let (who, key) = rest.rsplit_once('#').ok_or_else(|| bad("no #KEY"))?;
        let public_key = match PeerId::parse_hex(key) {
            Ok(p) => *p.as_bytes(),
            Err(KeyTextError::NotHex32) => return Err(bad("the key is not 64 hex digits")),
            Err(KeyTextError::Unusable) => return Err(bad("the key is not a usable Ed25519 key")),
        };
        let (id, address) = match who.split_once('@') {
            Some((id, addr)) => {
                let port = addr.rsplit_once(':').map(|(_, p)| p);
                if addr.is_empty() || port.is_none_or(|p| p.parse::<u16>().is_err()) {
                    return Err(bad("the address is not HOST:PORT"));
                }
                (id, Some(addr.to_owned()))
            }
            None => (who, None),
        };
        let ledger_id = id.parse().map_err(|_| bad("the ledger id is not a UUID"))?;
        Ok(Self { ledger_id, address, public_key })
    }
}

/// Whether `text` is meant as a ticket (starts with `onoal://`).
pub fn is_ticket(text: &str) -> bool {
    text.trim_start().starts_with(TICKET_SCHEME)
}

/// A public key as a user may paste it: 64 hex digits, or a C2SP vkey
/// (`NAME+KEYID+BASE64(0x01 || KEY)`, as `onoal init` prints it).
///
/// # Errors
/// A message saying what was expected.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let text = text.trim();
    let hex_key = if text.contains('+') {
        // NAME+KEYID+BASE64: the name has no '+', the base64 may.
        let b64 = text.splitn(3, '+').nth(2).unwrap_or_default();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the vkey's last part is not base64".to_owned())?;
        match raw.split_first() {
            Some((0x01, key)) if key.len() == 32 => hex::encode(key),
            _ => return Err("the vkey does not hold an Ed25519 key (type 0x01, 32 bytes)".into()),
        }
    } else {
        text.to_owned()
    };
    match PeerId::parse_hex(&hex_key) {
        Ok(p) => Ok(*p.as_bytes()),
        Err(KeyTextError::NotHex32) => Err(
            "the key must be the peer's Ed25519 public key: 64 hex digits, or the vkey `onoal init` prints".into(),
        ),
        Err(KeyTextError::Unusable) => Err(
            "the key is not a usable Ed25519 public key; copy the key `onoal init` or `onoal serve` printed".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_bad_ones_say_why() {
        let key = *PeerId::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key())
            .as_bytes();
        let t = Ticket {
            ledger_id: LedgerId::from_bytes([7; 16]),
            address: Some("node.example.org:7400".into()),
            public_key: key,
        };
        let text = t.to_string();
        assert!(text.starts_with("onoal://07070707-") && text.contains("@node.example.org:7400#"));
        assert_eq!(text.parse::<Ticket>().unwrap(), t);
        let bare = Ticket { address: None, ..t.clone() };
        assert_eq!(bare.to_string().parse::<Ticket>().unwrap(), bare);
        let k = hex::encode(key);
        let id = t.ledger_id.to_string();
        for (text, why) in [
            (format!("{id}@h:1#{k}"), "no onoal://"),
            (format!("onoal://{id}@h:1"), "no #KEY"),
            (format!("onoal://{id}@h:1#{}", "00".repeat(32)), "usable"),
            (format!("onoal://{id}@h:1#abc"), "64 hex"),
            (format!("onoal://{id}@h#{k}"), "HOST:PORT"),
            (format!("onoal://{id}@h:99999#{k}"), "HOST:PORT"),
            (format!("onoal://nope@h:1#{k}"), "UUID"),
        ] {
            let e = text.parse::<Ticket>().unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn a_key_is_taken_as_hex_or_as_the_vkey_init_prints() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let key = signing.verifying_key().to_bytes();
        assert_eq!(parse_public_key(&hex::encode(key)).unwrap(), key);
        let verifier =
            onoal_engine::checkpoint::NoteVerifier::new("oid:x:y", signing.verifying_key())
                .unwrap();
        assert_eq!(parse_public_key(&verifier.to_vkey()).unwrap(), key);
        // Keys whose base64 holds a '+' too.
        for seed in 0..64u8 {
            let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            let v = onoal_engine::checkpoint::NoteVerifier::new("oid:x:y", k).unwrap().to_vkey();
            assert_eq!(parse_public_key(&v).unwrap(), k.to_bytes(), "{v}");
        }
        assert!(parse_public_key(&"00".repeat(32)).unwrap_err().contains("usable"));
        assert!(parse_public_key("oid:x+abcd+!!").unwrap_err().contains("base64"));
        assert!(parse_public_key("zz").unwrap_err().contains("64 hex"));
    }
}
