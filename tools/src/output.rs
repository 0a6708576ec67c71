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
                ReadError::InvalidInput(_) => "invalid_input",
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

/// A plain-text table: a header row, then the rows, columns padded to their widest cell (the
/// last column is not padded). Width counts characters, not bytes.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// How long ago `then_ms` was, for people: `12s ago`, `5m ago`, `3h ago`, `2d ago`; `never`
/// for 0.
pub(crate) fn ago(then_ms: u64, now_ms: u64) -> String {
    if then_ms == 0 {
        return "never".into();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A count for people: `950`, `12.3k`, `4.56M`.
pub(crate) fn count(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // for display only
    let f = n as f64;
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", f / 1e3),
        _ => format!("{:.2}M", f / 1e6),
    }
}

/// A progress bar on stderr when it is a terminal and the output is not `--json` (hidden
/// otherwise, so it never mixes into what a script reads). `Some(len)` counts `unit` (`bytes`
/// shows sizes and a byte rate) with a rate and an ETA; `None` is a spinner with a rate.
pub(crate) fn progress(
    cli: &Cli,
    len: Option<u64>,
    unit: &str,
    what: &str,
) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() || cli.json {
        return indicatif::ProgressBar::hidden();
    }
    let template = match (len, unit) {
        (Some(_), "bytes") => {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}".to_owned()
        }
        (Some(_), _) => format!(
            "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} ETA {{eta}}"
        ),
        (None, "") => "{spinner} {msg} {elapsed}".to_owned(),
        (None, _) => format!("{{spinner}} {{msg}} {{human_pos}} {unit} {{per_sec}} {{elapsed}}"),
    };
    let bar = len.map_or_else(indicatif::ProgressBar::new_spinner, indicatif::ProgressBar::new);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    if len.is_none() {
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    bar
}

/// A JSON report for people: one row per leaf (`path  value`), numbers in human units and
/// floats rounded, instead of indented JSON.
pub(crate) fn flat_table(value: &Value) -> String {
    fn walk(path: &str, v: &Value, rows: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&p, v, rows);
                }
            }
            Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), v, rows);
                }
            }
            _ => rows.push(vec![path.to_owned(), human_value(v)]),
        }
    }
    let mut rows = Vec::new();
    walk("", value, &mut rows);
    table(&["FIGURE", "VALUE"], &rows)
}

/// A scalar for people: integers in human units, floats to 3 significant digits.
fn human_value(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_u64() => count(n.as_u64().unwrap_or(0)),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            match f.abs() {
                0.0 => "0".into(),
                x if x >= 1e6 => format!("{:.2}M", f / 1e6),
                x if x >= 1e4 => format!("{:.1}k", f / 1e3),
                x if x >= 100.0 => format!("{f:.0}"),
                x if x >= 1.0 => format!("{f:.2}"),
                _ => format!("{f:.3}"),
            }
        }
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let t = table(
            &["ID", "SIZE", "NOTE"],
            &[
                vec!["a".into(), "12".into(), "x".into()],
                vec!["long-id".into(), "3".into(), "".into()],
            ],
        );
        assert_eq!(t, "ID       SIZE  NOTE\na        12    x\nlong-id  3");
        assert_eq!(table(&["ÄB", "C"], &[vec!["é".into(), "d".into()]]), "ÄB  C\né   d");
    }

    #[test]
    fn reports_flatten_to_rows_with_rounded_numbers() {
        let v = serde_json::json!({"workload": "append", "entries_per_s": 512_345.678,
            "baseline": {"raw_per_s": 900_000.0, "ratio": 0.569_1}, "p99_ms": [1.234_5, 2.0],
            "runs": [{"n": 12_000}]});
        let t = flat_table(&v);
        let rows: Vec<(String, String)> = t
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap();
                (k.to_owned(), v.trim().to_owned())
            })
            .collect();
        for (k, want) in [
            ("workload", "append"),
            ("entries_per_s", "512.3k"),
            ("baseline.raw_per_s", "900.0k"),
            ("baseline.ratio", "0.569"),
            ("p99_ms", "[1.2345,2.0]"),
            ("runs[0].n", "12.0k"),
        ] {
            assert!(rows.contains(&(k.to_owned(), want.to_owned())), "{k}:\n{t}");
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(ago(0, 5), "never");
        assert_eq!(ago(1_000, 13_500), "12s ago");
        assert_eq!(ago(1, 7_200_001), "2h ago");
        assert_eq!(ago(10_000, 5_000), "0s ago", "a clock behind is not negative");
        assert_eq!(
            (count(950), count(12_345), count(4_560_000)),
            ("950".into(), "12.3k".into(), "4.56M".into())
        );
    }
}
