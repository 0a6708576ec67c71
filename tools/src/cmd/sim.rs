//! `onoal sim`: the mesh simulator ([`onoal_mesh::sim`]) from the command line.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};

use onoal_mesh::sim::{self, SimConfig, SimReport};

use crate::cli::{Cli, SimArgs};
use crate::output::print;

fn latency(text: &str) -> Result<(Duration, Duration)> {
    let parsed = text
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((a, b)) if a <= b && b <= 10_000 => {
            Ok((Duration::from_millis(a), Duration::from_millis(b)))
        }
        _ => usage_bail!(
            "--latency-ms {text:?} is not a range of milliseconds: give `A..B` with A <= B <= 10000, e.g. `10..100`"
        ),
    }
}

pub(crate) fn run(cli: &Cli, args: &SimArgs) -> Result<()> {
    if !(2..=100_000).contains(&args.nodes) {
        usage_bail!("--nodes {} is out of range: simulate 2 to 100000 nodes", args.nodes);
    }
    if !(0.0..=0.9).contains(&args.churn) {
        usage_bail!("--churn {} is out of range: give a fraction from 0 to 0.9", args.churn);
    }
    if !(0.0..=0.5).contains(&args.loss) {
        usage_bail!("--loss {} is out of range: give a probability from 0 to 0.5", args.loss);
    }
    if !(10..=3600).contains(&args.measure_s) {
        usage_bail!(
            "--measure-s {} is out of range: give 10 to 3600 virtual seconds",
            args.measure_s
        );
    }
    if args.partition && args.measure_s < 60 {
        usage_bail!(
            "--partition needs --measure-s of at least 60 (the split lasts 30 s, recovery is measured after it)"
        );
    }
    if args.swim {
        return swim(cli, args);
    }
    if args.routing {
        return routing(cli, args);
    }
    if args.members > 64 {
        usage_bail!(
            "--members {} is out of range: give 0 to 64 (the seed's maxPeers)",
            args.members
        );
    }
    let config = SimConfig {
        nodes: args.nodes,
        seed: args.seed,
        churn: args.churn,
        loss: args.loss,
        latency: latency(&args.latency_ms)?,
        partition: args.partition,
        lookups: args.lookups,
        measure: Duration::from_secs(args.measure_s),
        members: args.members,
    };
    let report = sim::run(&config);
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&report))
            .with_context(|| format!("cannot write the SVG to {}", path.display()))?;
    }
    let value = serde_json::to_value(&report)?;
    print(cli, value, || human(&report));
    Ok(())
}

/// `onoal sim --swim`.
fn swim(cli: &Cli, args: &SimArgs) -> Result<()> {
    if args.nodes > sim::swim::MAX_SWIM_NODES {
        usage_bail!(
            "--nodes {} is out of range with --swim: simulate 2 to {} SWIM nodes (each holds every other, so memory grows with the square)",
            args.nodes,
            sim::swim::MAX_SWIM_NODES
        );
    }
    let config = sim::swim::SwimSimConfig {
        nodes: args.nodes,
        seed: args.seed,
        churn: args.churn,
        loss: args.loss,
        latency: latency(&args.latency_ms)?,
        measure: Duration::from_secs(args.measure_s),
        ..Default::default()
    };
    let r = sim::swim::run(&config);
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s"));
    let text = format!(
        "SWIM, {} nodes, seed {}, churn {}, loss {}\n\
         join converged     p50 {}, p99 {} ({} not converged)\n\
         failure detected   p50 {}, p99 {} ({} undetected, {} false downs)\n\
         members per node   {:.1} ({:.1} % of nodes hold every live node)\n\
         messages/node/s    {:.2}\n\
         virtual time       {:.0} s, wall {:.1} s, peak RSS {:.0} MiB",
        r.nodes,
        r.seed,
        r.churn,
        r.loss,
        opt(r.join_converged_s_p50),
        opt(r.join_converged_s_p99),
        r.joins_unconverged,
        opt(r.failure_detected_s_p50),
        opt(r.failure_detected_s_p99),
        r.failures_undetected,
        r.false_downs,
        r.members_mean,
        r.members_complete_share * 100.0,
        r.messages_per_node_per_s,
        r.virtual_s,
        r.wall_s,
        r.peak_rss_mb,
    );
    print(cli, serde_json::to_value(&r)?, || text);
    Ok(())
}

/// `onoal sim --routing`.
fn routing(cli: &Cli, args: &SimArgs) -> Result<()> {
    if !(1..=100_000).contains(&args.queries) {
        usage_bail!("--queries {} is out of range: give 1 to 100000", args.queries);
    }
    let config = sim::routing::RoutingSimConfig {
        nodes: args.nodes,
        seed: args.seed,
        loss: args.loss,
        queries: args.queries,
        partition: args.partition,
    };
    let r = sim::routing::run(&config);
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{:.1} %", s * 100.0));
    let text = format!(
        "routing, {} nodes ({} domains, {} organisations, {} links), seed {}, loss {}\n\
         routed queries     {} ({:.2} % arrived)\n\
         hops               p50 {}, p99 {}\n\
         messages/query     {:.1}\n\
         flooding           {} floods reach {:.1} % of nodes; duplicates per node max {}, mean {:.2}\n\
         partition          across {}, within {}, healed {}\n\
         wall               {:.1} s",
        r.nodes,
        r.domains,
        r.organisations,
        r.links,
        args.seed,
        args.loss,
        r.queries,
        r.route_success_rate * 100.0,
        r.route_hops_p50,
        r.route_hops_p99,
        r.messages_per_query,
        r.floods,
        r.flood_reach * 100.0,
        r.flood_duplicates_per_node_max,
        r.flood_duplicates_per_node_mean,
        opt(r.partitioned_success_rate_across),
        opt(r.partitioned_success_rate_within),
        opt(r.healed_success_rate),
        r.wall_s,
    );
    print(cli, serde_json::to_value(&r)?, || text);
    Ok(())
}

fn human(r: &SimReport) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s"));
    format!(
        "{} nodes, seed {}, churn {}, loss {}{}\n\
         lookups            {} ({:.2} % found the record)\n\
         rounds             p50 {}, p99 {}\n\
         messages/lookup    {:.1}\n\
         join converged     {}\n\
         failure detected   p50 {}, p99 {} ({} undetected, {} heartbeats)\n\
         partition healed   {}\n\
         messages/node/s    {:.2}\n\
         virtual time       {:.0} s, wall {:.1} s, peak RSS {:.0} MiB",
        r.nodes,
        r.seed,
        r.churn,
        r.loss,
        if r.partition { ", partition" } else { "" },
        r.lookups,
        r.lookup_success_rate * 100.0,
        r.lookup_rounds_p50,
        r.lookup_rounds_p99,
        r.lookup_messages_mean,
        opt(r.join_converged_s),
        opt(r.failure_detected_s_p50),
        opt(r.failure_detected_s_p99),
        r.failures_undetected,
        r.heartbeats,
        opt(r.partition_recovered_s),
        r.messages_per_node_per_s,
        r.virtual_s,
        r.wall_s,
        r.peak_rss_mb,
    )
}

/// Two panels: the lookup-round histogram, and the share of lookups that succeeded over time.
fn svg(r: &SimReport) -> String {
    let (w, h, pad) = (480.0_f64, 240.0_f64, 36.0_f64);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        2.0 * w,
        h
    );
    let max = r.lookup_rounds_histogram.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bars = r.lookup_rounds_histogram.len().max(1) as f64;
    let bw = (w - 2.0 * pad) / bars;
    let _ = write!(out, r#"<text x="{pad}" y="16">lookup rounds ({} lookups)</text>"#, r.lookups);
    for (i, n) in r.lookup_rounds_histogram.iter().enumerate() {
        let bh = (h - 2.0 * pad) * (*n as f64) / max;
        let x = pad + bw * i as f64;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#4a7"/><text x="{:.1}" y="{:.1}">{i}</text>"##,
            h - pad - bh,
            (bw - 2.0).max(1.0),
            x + bw / 2.0 - 3.0,
            h - pad + 14.0
        );
    }
    let _ =
        write!(out, r#"<text x="{:.1}" y="16">lookup success over virtual time</text>"#, w + pad);
    let t_max = r.virtual_s.max(1.0);
    let points: Vec<String> = r
        .success_over_time
        .iter()
        .map(|(t, rate)| {
            format!(
                "{:.1},{:.1}",
                w + pad + (w - 2.0 * pad) * t / t_max,
                h - pad - (h - 2.0 * pad) * rate
            )
        })
        .collect();
    let _ = write!(
        out,
        r##"<polyline fill="none" stroke="#36c" stroke-width="2" points="{}"/><text x="{:.1}" y="{:.1}">0</text><text x="{:.1}" y="{:.1}">1</text><text x="{:.1}" y="{:.1}">{t_max:.0} s</text></svg>"##,
        points.join(" "),
        w + pad - 12.0,
        h - pad,
        w + pad - 12.0,
        pad + 4.0,
        2.0 * w - pad - 20.0,
        h - pad + 14.0
    );
    out
}
