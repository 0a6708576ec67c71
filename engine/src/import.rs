//! The JSON Lines import format of `onoal import`, one entry per line:
//! `{"stream": S, "type": T, "subject"?: OID, "issuer"?: OID, "payload": TEXT | "payload_b64": B64}`.
//! Unknown fields are refused, so a typo is an error rather than a silently dropped field.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::record::{InvalidInput, Name, NewEntry, Oid};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    stream: String,
    #[serde(rename = "type")]
    entry_type: String,
    subject: Option<String>,
    issuer: Option<String>,
    payload: Option<String>,
    payload_b64: Option<String>,
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
}

/// Parses and validates one import line.
///
/// # Errors
/// [`ImportLineError`] for anything that is not a valid entry. Never panics.
pub fn parse_line(line: &str, max_payload: usize) -> Result<NewEntry, ImportLineError> {
    let l: ImportLine =
        serde_json::from_str(line).map_err(|e| ImportLineError::Json(e.to_string()))?;
    let payload = match (l.payload, l.payload_b64) {
        (Some(p), None) => p.into_bytes(),
        (None, Some(b)) => B64.decode(b).map_err(|e| ImportLineError::Base64(e.to_string()))?,
        _ => return Err(ImportLineError::Payload),
    };
    let mut e = NewEntry::new(Name::stream(&l.stream)?, Name::entry_type(&l.entry_type)?, payload);
    if let Some(s) = l.subject {
        e = e.with_subject(Oid::parse(&s)?);
    }
    if let Some(s) = l.issuer {
        e = e.with_issuer(Oid::parse(&s)?);
    }
    e.validate(max_payload)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(
            parse_line(r#"{"stream":"s","type":"t","payload":"too long"}"#, 3),
            Err(ImportLineError::Invalid(InvalidInput::PayloadTooLarge { .. }))
        ));
    }
}
