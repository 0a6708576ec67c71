//! The JSON Lines import format of `onoal import`, one entry per line:
//! `{"stream": S, "type": T, "subject"?: OID, "issuer"?: OID, "payload": TEXT | JSON | "payload_b64": B64}`.
//! Unknown fields are refused, so a typo is an error rather than a silently dropped field.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::record::{InvalidInput, Name, NewEntry, Oid};

/// One entry as JSON: a line of `onoal import`, an element of the HTTP API's append body.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntryInput {
    /// Stream name.
    pub stream: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Subject OID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Issuer OID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Payload as text (exactly one of `payload` and `payload_b64`). A JSON value other than a
    /// string (an object, array, number, boolean) is taken as its compact JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "payload_text")]
    pub payload: Option<String>,
    /// Payload as standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_b64: Option<String>,
    /// References to entries of other ledgers, each `LEDGER_ID:SEQ:LEAF_HASH` (hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// The issuer's Ed25519 public key, hex (with `issuer_signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_key: Option<String>,
    /// The issuer's signature over the entry's content (docs/format.md), hex; checked on append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_signature: Option<String>,
}

/// A payload given as a string is that text; any other JSON value is its compact JSON text
/// (`"payload": {"id": 1}` stores `{"id":1}`); `null` is no payload.
fn payload_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize as _;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// Parses a reference `LEDGER_ID:SEQ:LEAF_HASH` (the leaf hash in hex).
///
/// # Errors
/// [`ImportLineError::Ref`] naming what is wrong.
pub fn parse_ref(text: &str) -> Result<crate::EntryRef, ImportLineError> {
    let bad =
        |why: &str| ImportLineError::Ref(format!("{text:?}: {why}; write LEDGER_ID:SEQ:LEAF_HASH"));
    let mut parts = text.trim().split(':');
    let (Some(id), Some(seq), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected three ':'-separated parts"));
    };
    let ledger_id = id.parse().map_err(|_| bad("the ledger id is not a UUID"))?;
    let seq = seq.parse().map_err(|_| bad("the seq is not a number"))?;
    let leaf_hash =
        crate::Hash::from_hex(hash).ok_or_else(|| bad("the leaf hash is not 64 hex digits"))?;
    Ok(crate::EntryRef { ledger_id, seq, leaf_hash })
}

impl EntryInput {
    /// The import line of an entry's content (what `onoal export` prints): the payload as text
    /// when it is UTF-8, else base64; references and the issuer signature kept, so importing it
    /// gives an entry with the same content (the new ledger assigns seq, time and the chain).
    pub fn from_entry(e: &NewEntry) -> Self {
        let (payload, payload_b64) = match std::str::from_utf8(&e.payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(B64.encode(&e.payload))),
        };
        Self {
            stream: e.stream.as_str().to_owned(),
            entry_type: e.entry_type.as_str().to_owned(),
            subject: e.subject.as_ref().map(|o| o.as_str().to_owned()),
            issuer: e.issuer.as_ref().map(|o| o.as_str().to_owned()),
            payload,
            payload_b64,
            refs: e.refs.iter().map(ToString::to_string).collect(),
            issuer_key: e.signature.map(|s| hex::encode(s.public_key)),
            issuer_signature: e.signature.map(|s| hex::encode(s.signature)),
        }
    }

    /// Checks every field and builds the entry.
    ///
    /// # Errors
    /// [`ImportLineError`] for anything that is not a valid entry. Never panics.
    pub fn into_entry(mut self, max_payload: usize) -> Result<NewEntry, ImportLineError> {
        let payload = match (self.payload.take(), self.payload_b64.take()) {
            (Some(p), None) => p.into_bytes(),
            (None, Some(b)) => B64.decode(b).map_err(|e| ImportLineError::Base64(e.to_string()))?,
            _ => return Err(ImportLineError::Payload),
        };
        self.into_entry_with_payload(payload, max_payload)
    }

    /// Checks every field but the payload fields (ignored) and builds the entry with `payload`
    /// (for APIs that carry bytes, such as gRPC).
    ///
    /// # Errors
    /// [`ImportLineError::Invalid`] for a bad name, OID or a payload over `max_payload`.
    pub fn into_entry_with_payload(
        self,
        payload: Vec<u8>,
        max_payload: usize,
    ) -> Result<NewEntry, ImportLineError> {
        let mut e = NewEntry::new(
            Name::stream(&self.stream)?,
            Name::entry_type(&self.entry_type)?,
            payload,
        );
        if let Some(s) = self.subject {
            e = e.with_subject(Oid::parse(&s)?);
        }
        if let Some(s) = self.issuer {
            e = e.with_issuer(Oid::parse(&s)?);
        }
        e.refs = self.refs.iter().map(|r| parse_ref(r)).collect::<Result<_, _>>()?;
        e.signature = match (self.issuer_key, self.issuer_signature) {
            (None, None) => None,
            (Some(k), Some(s)) => {
                let bad = |what: &str| ImportLineError::Signature(format!("{what} is not hex"));
                let public_key =
                    <[u8; 32]>::try_from(hex::decode(k.trim()).map_err(|_| bad("issuer_key"))?)
                        .map_err(|_| {
                            ImportLineError::Signature(
                                "issuer_key must be 32 bytes (64 hex digits)".into(),
                            )
                        })?;
                let signature = <[u8; 64]>::try_from(
                    hex::decode(s.trim()).map_err(|_| bad("issuer_signature"))?,
                )
                .map_err(|_| {
                    ImportLineError::Signature(
                        "issuer_signature must be 64 bytes (128 hex digits)".into(),
                    )
                })?;
                Some(crate::IssuerSignature { public_key, signature })
            }
            _ => {
                return Err(ImportLineError::Signature(
                    "give both issuer_key and issuer_signature, or neither".into(),
                ));
            }
        };
        e.validate(max_payload)?;
        Ok(e)
    }
}

/// A line that is not a valid import entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportLineError {
    /// Not a JSON object of the import format.
    #[error(
        "not an import entry ({0}); expected {{\"stream\",\"type\",\"payload\" or \"payload_b64\"}}"
    )]
    Json(String),
    /// Both or neither of `payload` and `payload_b64`.
    #[error("give exactly one of \"payload\" and \"payload_b64\"")]
    Payload,
    /// `payload_b64` is not standard base64.
    #[error("payload_b64 is not base64: {0}")]
    Base64(String),
    /// A field breaks a rule (name, OID, payload limit).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A reference that does not parse.
    #[error("reference {0}")]
    Ref(String),
    /// Issuer signature fields that do not parse.
    #[error("issuer signature: {0}")]
    Signature(String),
}

/// Parses and validates one import line.
///
/// # Errors
/// [`ImportLineError`] for anything that is not a valid entry. Never panics.
pub fn parse_line(line: &str, max_payload: usize) -> Result<NewEntry, ImportLineError> {
    serde_json::from_str::<EntryInput>(line)
        .map_err(|e| ImportLineError::Json(e.to_string()))?
        .into_entry(max_payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_line_imports_as_the_same_content() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let r = crate::EntryRef {
            ledger_id: crate::LedgerId::from_bytes([1; 16]),
            seq: 7,
            leaf_hash: crate::Hash([2; 32]),
        };
        for payload in [b"text".to_vec(), vec![0xff, 0, 1]] {
            let mut e = NewEntry::new(
                Name::stream("s").unwrap(),
                Name::entry_type("t").unwrap(),
                payload.clone(),
            )
            .with_subject(Oid::parse("oid:a:b").unwrap());
            e.refs = vec![r];
            let e = e.sign(&key);
            let line = serde_json::to_string(&EntryInput::from_entry(&e)).unwrap();
            assert_eq!(parse_line(&line, 100).unwrap(), e, "{line}");
            assert_eq!(line.contains("payload_b64"), payload[0] == 0xff, "{line}");
        }
    }

    #[test]
    fn lines_parse_or_say_why_not() {
        let e =
            parse_line(r#"{"stream":"s","type":"t","payload_b64":"AAE=","subject":"oid:x"}"#, 10)
                .unwrap();
        assert_eq!(e.payload, vec![0, 1]);
        assert_eq!(e.subject.unwrap().as_str(), "oid:x");
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t"}"#, 10),
            Err(ImportLineError::Payload)
        ));
        // A JSON value as payload is its compact JSON text; null is no payload.
        for (value, stored) in [
            (r#"{"id": 1, "tags": ["a", "b"]}"#, r#"{"id":1,"tags":["a","b"]}"#),
            ("[1, 2]", "[1,2]"),
            ("42", "42"),
            ("true", "true"),
            (r#""text stays text""#, "text stays text"),
        ] {
            let line = format!(r#"{{"stream":"s","type":"t","payload":{value}}}"#);
            assert_eq!(parse_line(&line, 100).unwrap().payload, stored.as_bytes(), "{line}");
        }
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t","payload":null}"#, 10),
            Err(ImportLineError::Payload)
        ));
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t","payload":{"a":1},"payload_b64":"AA=="}"#, 10),
            Err(ImportLineError::Payload)
        ));
        assert!(matches!(parse_line(r#"{"stream":"s""#, 10), Err(ImportLineError::Json(_))));
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t","payload":"x","extra":1}"#, 10),
            Err(ImportLineError::Json(_))
        ));
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t","payload_b64":"!!"}"#, 10),
            Err(ImportLineError::Base64(_))
        ));
        assert!(matches!(
            parse_line(r#"{"stream":"S","type":"t","payload":"x"}"#, 10),
            Err(ImportLineError::Invalid(_))
        ));
        let id = "0b5f0000-0000-4000-8000-00000000000b";
        let hash = "ab".repeat(32);
        let e = parse_line(
            &format!(r#"{{"stream":"s","type":"t","payload":"x","refs":["{id}:7:{hash}"]}}"#),
            10,
        )
        .unwrap();
        assert_eq!(
            (e.refs.len(), e.refs[0].seq, e.refs[0].leaf_hash.to_hex()),
            (1, 7, hash.clone())
        );
        for bad in [
            format!("{id}:7"),
            format!("{id}:x:{hash}"),
            format!("nope:7:{hash}"),
            format!("{id}:7:abc"),
        ] {
            let line = format!(r#"{{"stream":"s","type":"t","payload":"x","refs":["{bad}"]}}"#);
            assert!(matches!(parse_line(&line, 10), Err(ImportLineError::Ref(_))), "{bad}");
        }
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t","payload":"too long"}"#, 3),
            Err(ImportLineError::Invalid(InvalidInput::PayloadTooLarge { .. }))
        ));
    }
}
