//! One output convention: `--json` prints exactly one JSON object on stdout; otherwise a human
//! line. Errors go to stderr as one line.

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
