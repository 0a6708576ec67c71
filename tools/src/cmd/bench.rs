//! `onoal bench`: the workloads of `onoal-benches`, each next to its same-run baseline.

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::cli::{BenchCommand, Cli};

pub(crate) fn run(cli: &Cli, what: &BenchCommand) -> Result<()> {
    if let BenchCommand::Table { file } = what {
        print!("{}", markdown_table(&results(file.as_deref())?)?);
        return Ok(());
    }
    if let BenchCommand::Plot { file, title } = what {
        print!("{}", super::plot::append_svg(&results(file.as_deref())?, title)?);
        return Ok(());
    }
    let running = crate::output::progress(cli, None, "", &format!("running {}", name(what)));
    let report = match what {
        BenchCommand::Append { entries, payload, batch, writers } => {
            onoal_benches::append(&onoal_benches::AppendParams {
                entries: *entries,
                payload: *payload,
                batch: (*batch).max(1),
                durability: cli.durability(),
                writers: *writers,
            })
        }
        BenchCommand::Proof { entries, proofs, dir } => {
            onoal_benches::proof(*entries, dir.as_deref(), (*proofs).max(100))
        }
        BenchCommand::Verify { entries, dir } => onoal_benches::verify(*entries, dir.as_deref()),
        BenchCommand::Sync { entries, relay: true, .. } => {
            onoal_benches::sync_relay((*entries).max(1))
        }
        BenchCommand::Sync { entries, followers: 0 | 1, .. } => {
            onoal_benches::sync((*entries).max(1))
        }
        BenchCommand::Sync { entries, followers, .. } => {
            onoal_benches::sync_fan_out((*entries).max(1), (*followers).min(64))
        }
        BenchCommand::Http(a) | BenchCommand::Grpc(a) => {
            let run = if matches!(what, BenchCommand::Http(_)) {
                onoal_benches::http
            } else {
                onoal_benches::grpc
            };
            run(a.entries.max(1), a.payload, a.batch.clamp(1, 100_000), cli.durability())
        }
        BenchCommand::Open { entries, dir } => onoal_benches::open(*entries, dir.as_deref()),
        BenchCommand::Trust { nodes, edges, seed } => onoal_benches::trust(*nodes, *edges, *seed),
        BenchCommand::Route { hops, queries } => onoal_benches::route(hops, *queries),
        BenchCommand::Witness { checkpoints, witnesses } => {
            onoal_benches::witness(*checkpoints, *witnesses)
        }
        BenchCommand::Transfer { transfers, concurrency } => {
            onoal_benches::transfer(*transfers, *concurrency, cli.durability())
        }
        BenchCommand::Asset { hops, traces } => {
            onoal_benches::asset(*hops, *traces, cli.durability())
        }
        BenchCommand::Table { .. } | BenchCommand::Plot { .. } => {
            unreachable!("answered above")
        }
    }
    .map_err(|e| anyhow!("benchmark failed: {e}"));
    running.finish_and_clear();
    let report = report?;
    if cli.json {
        println!("{report}");
    } else {
        println!("{}", crate::output::flat_table(&report));
    }
    Ok(())
}

/// Benchmark results (JSON lines) from `file`, or stdin for none or `-`.
fn results(file: Option<&std::path::Path>) -> Result<String> {
    match file {
        Some(p) if p.as_os_str() != "-" => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the results file {}", p.display())),
        _ => Ok(std::io::read_to_string(std::io::stdin())?),
    }
}

/// The workload's name, for the progress line.
fn name(what: &BenchCommand) -> &'static str {
    match what {
        BenchCommand::Append { .. } => "the append benchmark",
        BenchCommand::Proof { .. } => "the proof benchmark",
        BenchCommand::Verify { .. } => "the audit benchmark",
        BenchCommand::Sync { .. } => "the sync benchmark (two nodes on loopback)",
        BenchCommand::Http(_) => "the HTTP benchmark",
        BenchCommand::Grpc(_) => "the gRPC benchmark",
        BenchCommand::Open { .. } => "the reopen benchmark",
        BenchCommand::Trust { .. } => "the trust benchmark",
        BenchCommand::Route { .. } => "the routing benchmark (a line of nodes)",
        BenchCommand::Witness { .. } => "the witness benchmark",
        BenchCommand::Transfer { .. } => "the transfer benchmark (two nodes on loopback)",
        BenchCommand::Asset { .. } => "the asset registry benchmark (three nodes on loopback)",
        BenchCommand::Table { .. } => "the table",
        BenchCommand::Plot { .. } => "the plot",
    }
}

/// The keys that say what a workload ran with (its parameters), in this order.
const PARAMETERS: [&str; 16] = [
    "entries",
    "payload_bytes",
    "batch",
    "writers",
    "durability",
    "followers",
    "nodes",
    "edges",
    "hops",
    "queries",
    "witnesses",
    "checkpoints",
    "transfers",
    "concurrency",
    "churn",
    "loss",
];

/// A figure for people: integers with thousands separators from 100 up, else 3 significant
/// digits.
fn human(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x.abs() >= 100.0 || (x.fract() == 0.0 && x.abs() < 1e15) {
        let digits = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if x < 0.0 { format!("-{out}") } else { out };
    }
    let decimals = if x.abs() >= 10.0 {
        1
    } else if x.abs() >= 1.0 {
        2
    } else {
        3
    };
    format!("{x:.decimals$}")
}

fn cell(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "—".into();
    }
    pairs.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join("; ")
}

/// One markdown table of benchmark results given as JSON lines (other lines are skipped):
/// per result its workload, its parameters, its figures (numbers), its baselines
/// (`baseline_*`) and its ratios (`ratio*`), each as `name value`.
fn markdown_table(text: &str) -> Result<String> {
    let mut out = String::from(
        "| workload | parameters | figures | baselines (same run) | ratios |\n|---|---|---|---|---|\n",
    );
    let mut rows = 0;
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let Ok(Value::Object(v)) = serde_json::from_str::<Value>(line) else { continue };
        let workload = v.get("workload").and_then(Value::as_str).map_or_else(
            || if v.contains_key("nodes") { "sim" } else { "?" }.to_owned(),
            str::to_owned,
        );
        let shown = |x: &Value| match x {
            Value::Number(n) => n.as_f64().map(human),
            Value::String(s) if s.len() <= 24 => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let params: Vec<(String, String)> =
            PARAMETERS.iter().filter_map(|k| Some(((*k).to_owned(), shown(v.get(*k)?)?))).collect();
        let (mut figures, mut baselines, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for (k, x) in &v {
            if k == "workload" || PARAMETERS.contains(&k.as_str()) || !x.is_number() {
                continue;
            }
            let Some(shown) = shown(x) else { continue };
            if let Some(name) = k.strip_prefix("baseline_") {
                baselines.push((name.to_owned(), shown));
            } else if k.starts_with("ratio") {
                ratios.push((k.clone(), shown));
            } else {
                figures.push((k.clone(), shown));
            }
        }
        out.push_str(&format!(
            "| {workload} | {} | {} | {} | {} |\n",
            cell(&params),
            cell(&figures),
            cell(&baselines),
            cell(&ratios)
        ));
        rows += 1;
    }
    if rows == 0 {
        bail!(
            "no benchmark results (JSON objects, one per line) in the input: run `onoal --json bench …` or benches/run-all.sh"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_one_markdown_row_each() {
        let text = r#"{"workload":"append","entries":1000000,"durability":"sync","entries_per_s":512345.6,"p99_us":3210.0,"baseline":"raw RocksDB","baseline_entries_per_s":900000.0,"ratio":0.5692}
progress line that is not JSON
{"nodes":10000,"lookups":1000,"success_rate":0.999,"wall_s":61.2}"#;
        let t = markdown_table(text).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "| append | entries 1,000,000; durability sync | entries_per_s 512,346; p99_us 3,210 | entries_per_s 900,000 | ratio 0.569 |"
        );
        assert_eq!(
            lines[3],
            "| sim | nodes 10,000 | lookups 1,000; success_rate 0.999; wall_s 61.2 | — | — |"
        );
        assert!(markdown_table("no results\n").is_err());
        assert_eq!(human(0.5692), "0.569");
        assert_eq!(human(2.345), "2.35");
        assert_eq!(human(-1234.0), "-1,234");
    }
}
