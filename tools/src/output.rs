//! One output convention: `--json` prints exactly one JSON object on stdout; otherwise a human
//! line. Errors go to stderr as one line; with `--json` also to stdout as
//! `{"error": {"kind", "message", "hint"}}`, `kind` a stable name ([`classify`]).

use serde_json::Value;

use crate::cli::Cli;

/// Prints `value` (with `--json`) or `human()`.
pub(crate) fn print(cli: &Cli, value: Value, human: impl FnOnce() -> String) {
    if cli.json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

/// Prints `value` as JSON (with `--json`) or pretty JSON.
pub(crate) fn print_value(cli: &Cli, value: &Value) {
    if cli.json {
        println!("{value}");
    } else {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
    }
}

/// The error chain on one line, without repeats.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// An error with a stable kind and a hint: what the running node answered, or a usage error of
/// this command line.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Stable class name (`not_found`, `usage`, `key_changed`, ...).
    pub(crate) kind: String,
    /// What went wrong.
    pub(crate) message: String,
    /// What to do about it.
    pub(crate) hint: Option<String>,
}

impl Failure {
    /// A usage error: an argument this command does not take, or a value out of range.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self { kind: "usage".into(), message: message.into(), hint: None }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hint {
            Some(h) => write!(f, "{} ({h})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Failure {}

/// The stable kind of an error and its hint, from the first cause that has one. Kinds: those
/// of the HTTP API (the node's `ErrorBody.kind`), and `usage`, `key_changed`, `not_a_ledger`,
/// `already_exists`, `in_use`, `schema_version`, `key_file`, `key_mismatch`, `corrupt`,
/// `storage`, `invalid_input`, `read_only`, `out_of_range`, `no_checkpoint`, `bad_cursor`,
/// `not_held`, `proof`, `audit`, `io`, `bad_json`; `failed` for the rest.
pub(crate) fn classify(e: &anyhow::Error) -> (String, Option<String>) {
    use onoal_engine::{AppendError, OpenError, ReadError, VerifyError};
    use onoal_mesh::peer::PeerError;
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return (f.kind.clone(), f.hint.clone());
        }
        let kind = if let Some(p) = cause.downcast_ref::<PeerError>() {
            match p {
                PeerError::KeyChanged { .. } => "key_changed",
                PeerError::Damaged { .. } => "corrupt",
                _ => "storage",
            }
        } else if let Some(o) = cause.downcast_ref::<OpenError>() {
            match o {
                OpenError::NotALedger { .. } => "not_a_ledger",
                OpenError::AlreadyExists { .. } => "already_exists",
                OpenError::InUse { .. } => "in_use",
                OpenError::SchemaVersion { .. } => "schema_version",
                OpenError::KeyFile(_) => "key_file",
                OpenError::KeyMismatch { .. } => "key_mismatch",
                OpenError::Corrupt { .. } => "corrupt",
                _ => "storage",
            }
        } else if let Some(r) = cause.downcast_ref::<ReadError>() {
            match r {
                ReadError::OutOfRange { .. } => "out_of_range",
                ReadError::NoCheckpoint(_) => "no_checkpoint",
                ReadError::BadCursor(_) => "bad_cursor",
                ReadError::Corrupt(_) => "corrupt",
                ReadError::NotHeld { .. } => "not_held",
                ReadError::Proof(_) => "proof",
                ReadError::ReadOnly => "read_only",
                _ => "storage",
            }
        } else if let Some(a) = cause.downcast_ref::<AppendError>() {
            match a {
                AppendError::Invalid { .. } => "invalid_input",
                AppendError::ReadOnly => "read_only",
                _ => "storage",
            }
        } else if cause.downcast_ref::<onoal_engine::record::InvalidInput>().is_some() {
            "invalid_input"
        } else if cause.downcast_ref::<VerifyError>().is_some() {
            "audit"
        } else if cause.downcast_ref::<std::io::Error>().is_some() {
            "io"
        } else if cause.downcast_ref::<serde_json::Error>().is_some() {
            "bad_json"
        } else {
            continue;
        };
        return (kind.to_owned(), None);
    }
    ("failed".to_owned(), None)
}

/// The `--json` form of an error.
pub(crate) fn error_json(e: &anyhow::Error) -> Value {
    let (kind, hint) = classify(e);
    // The message without the hint a Failure appends (it has its own field).
    let message = match e.chain().find_map(|c| c.downcast_ref::<Failure>()) {
        Some(f) if hint.is_some() => {
            one_line(e).replace(&format!(" ({})", f.hint.as_deref().unwrap_or("")), "")
        }
        _ => one_line(e),
    };
    serde_json::json!({"error": {"kind": kind, "message": message, "hint": hint}})
}
