//! One output convention: `--json` prints exactly one JSON object on stdout; otherwise a human
//! line. Errors go to stderr as one line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use onoal_engine::StoredEntry;
use serde_json::{Value, json};

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

/// An entry as `get` and `query` print it.
pub(crate) fn entry_json(e: &StoredEntry) -> Value {
    let c = &e.entry.content;
    json!({
        "seq": e.entry.seq,
        "timestamp_ms": e.entry.timestamp_ms,
        "stream": c.stream.as_str(),
        "type": c.entry_type.as_str(),
        "subject": c.subject.as_ref().map(|o| o.as_str()),
        "issuer": c.issuer.as_ref().map(|o| o.as_str()),
        "payload_b64": B64.encode(&c.payload),
        "prev_hash": e.entry.prev_hash.to_hex(),
        "leaf_hash": e.leaf_hash.to_hex(),
        "leaf_data_b64": B64.encode(&e.leaf_data),
    })
}
