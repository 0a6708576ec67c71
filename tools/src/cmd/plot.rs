//! `onoal bench plot`: append throughput as an SVG chart, from benchmark results (JSON lines).
//!
//! Two panels, both log-log: entries/s against the batch size (one caller), and against the
//! number of writers (threads appending single entries). Each shows the ledger (solid) and its
//! same-run raw RocksDB baseline (dashed), per durability. Only `append` results with 256-byte
//! payloads are drawn (the sweep of benches/run-all.sh); others are skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Result, bail};
use serde_json::Value;

/// One measured point: x (batch or writers), the ledger's entries/s, the baseline's.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    x: f64,
    ledger: f64,
    raw: f64,
}

/// The points of one panel, per durability (sorted by x).
type Series = BTreeMap<String, Vec<Point>>;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 460.0;
const PANEL_W: f64 = 390.0;
const PANEL_H: f64 = 300.0;
const TOP: f64 = 80.0;
const LEFTS: [f64; 2] = [90.0, 590.0];
const PAYLOAD: u64 = 256;

fn colour(durability: &str) -> &'static str {
    match durability {
        "sync" => "#1f4e9c",
        "buffered" => "#d9730d",
        _ => "#555555",
    }
}

/// The two panels' series from JSON lines: (by batch, by writers).
fn series(text: &str) -> (Series, Series) {
    let (mut by_batch, mut by_writers) = (Series::new(), Series::new());
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if v["workload"] != "append" || v["payload_bytes"].as_u64() != Some(PAYLOAD) {
            continue;
        }
        let (Some(ledger), Some(raw), Some(writers), Some(batch), Some(durability)) = (
            v["entries_per_s"].as_f64(),
            v["baseline_entries_per_s"].as_f64(),
            v["writers"].as_u64(),
            v["batch"].as_u64(),
            v["durability"].as_str(),
        ) else {
            continue;
        };
        if !(ledger > 0.0 && raw > 0.0) {
            continue;
        }
        let (panel, x) =
            if writers <= 1 { (&mut by_batch, batch) } else { (&mut by_writers, writers) };
        panel.entry(durability.to_owned()).or_default().push(Point { x: x as f64, ledger, raw });
    }
    for points in by_batch.values_mut().chain(by_writers.values_mut()) {
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
        // A repeated x (two runs): keep the last one measured.
        points.dedup_by(|later, earlier| {
            if later.x == earlier.x {
                *earlier = *later;
                true
            } else {
                false
            }
        });
    }
    (by_batch, by_writers)
}

/// Figures with SI suffixes for axis labels: 2k, 500k, 1.5M.
fn short(x: f64) -> String {
    let (v, suffix) = if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let s = format!("{v:.1}");
    format!("{}{suffix}", s.strip_suffix(".0").unwrap_or(&s))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Draws one panel at `left`: axes, ticks, the ledger's and the raw baseline's lines.
fn panel(svg: &mut String, left: f64, title: &str, x_label: &str, series: &Series) {
    let (x0, y0) = (left, TOP + PANEL_H);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="15" text-anchor="middle" font-weight="bold">{}</text>"##,
        left + PANEL_W / 2.0,
        TOP - 14.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>"##
    );
    let points: Vec<&Point> = series.values().flatten().collect();
    if points.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" text-anchor="middle" fill="#777">no results</text>"##,
            left + PANEL_W / 2.0,
            TOP + PANEL_H / 2.0
        );
        return;
    }
    let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = points.iter().flat_map(|p| [p.ledger, p.raw]).collect();
    let (x_min, x_max) =
        (xs.iter().copied().fold(f64::MAX, f64::min), xs.iter().copied().fold(0.0, f64::max));
    // y: whole decades around the data.
    let y_lo = 10f64.powf(ys.iter().copied().fold(f64::MAX, f64::min).log10().floor());
    let y_hi = 10f64.powf(ys.iter().copied().fold(0.0, f64::max).log10().ceil()).max(y_lo * 10.0);
    let (lx_min, lx_max) = (x_min.log10(), x_max.log10().max(x_min.log10() + 1e-9));
    let sx = |x: f64| {
        if (lx_max - lx_min).abs() < 1e-6 {
            x0 + PANEL_W / 2.0
        } else {
            x0 + 20.0 + (x.log10() - lx_min) / (lx_max - lx_min) * (PANEL_W - 40.0)
        }
    };
    let sy = |y: f64| y0 - (y.log10() - y_lo.log10()) / (y_hi.log10() - y_lo.log10()) * PANEL_H;
    // Y ticks at 1, 2 and 5 of each decade; grid lines at the decades.
    let mut decade = y_lo;
    while decade <= y_hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let y = decade * m;
            if y > y_hi * 1.0001 {
                break;
            }
            let py = sy(y);
            let grid = if m == 1.0 { "#ddd" } else { "#f0f0f0" };
            let _ = writeln!(
                svg,
                r##"<line x1="{x0}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="{grid}"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                x0 + PANEL_W,
                x0 - 6.0,
                py + 4.0,
                short(y)
            );
        }
        decade *= 10.0;
    }
    // X ticks at the measured x values.
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let px = sx(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{}" stroke="#999"/><text x="{px:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
            short(x)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"##,
        x0 + PANEL_W / 2.0,
        y0 + 38.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 {} {})">entries/s</text>"##,
        x0 - 58.0,
        TOP + PANEL_H / 2.0,
        x0 - 58.0,
        TOP + PANEL_H / 2.0
    );
    for (durability, points) in series {
        let c = colour(durability);
        for (dash, pick) in [("", 0), (r#" stroke-dasharray="6 4""#, 1)] {
            let value = |p: &Point| if pick == 0 { p.ledger } else { p.raw };
            let path: Vec<String> =
                points.iter().map(|p| format!("{:.1},{:.1}", sx(p.x), sy(value(p)))).collect();
            let _ = writeln!(
                svg,
                r##"<polyline class="{}-{durability}" points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"##,
                if pick == 0 { "ledger" } else { "raw" },
                path.join(" ")
            );
            for p in points {
                let _ = writeln!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}" stroke="{c}"><title>{} {durability}, {} {}: {} entries/s</title></circle>"##,
                    sx(p.x),
                    sy(value(p)),
                    if pick == 0 { c } else { "white" },
                    if pick == 0 { "ledger" } else { "raw RocksDB" },
                    x_label.split_whitespace().next().unwrap_or("x"),
                    p.x,
                    value(p).round()
                );
            }
        }
    }
}

/// The SVG chart of the append results in `text` (JSON lines), titled `title`.
pub(crate) fn append_svg(text: &str, title: &str) -> Result<String> {
    let (by_batch, by_writers) = series(text);
    if by_batch.is_empty() && by_writers.is_empty() {
        bail!(
            "no append results with {PAYLOAD}-byte payloads in the input: run benches/run-all.sh, or `onoal --json bench append …` at several --batch and --writers"
        );
    }
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"##
    );
    let _ = writeln!(svg, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="28" font-size="17" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        escape(title)
    );
    panel(&mut svg, LEFTS[0], "one caller, batches", "batch (entries per call)", &by_batch);
    panel(&mut svg, LEFTS[1], "many writers, single entries", "writers (threads)", &by_writers);
    // Legend: line style = ledger or raw; colour = durability.
    let mut durabilities: Vec<&String> = by_batch.keys().chain(by_writers.keys()).collect();
    durabilities.sort();
    durabilities.dedup();
    let mut x = 90.0;
    let y = HEIGHT - 22.0;
    for d in durabilities {
        let c = colour(d);
        for (dash, name) in [("", "Onoal ledger"), (r#" stroke-dasharray="6 4""#, "raw RocksDB")] {
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="12">{name}, {d}</text>"##,
                x + 28.0,
                x + 34.0,
                y + 4.0
            );
            x += 200.0;
        }
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULTS: &str = r#"{"workload":"append","payload_bytes":256,"batch":1,"writers":1,"durability":"sync","entries_per_s":9000.0,"baseline_entries_per_s":4000.0}
{"workload":"append","payload_bytes":256,"batch":1000,"writers":1,"durability":"sync","entries_per_s":400000.0,"baseline_entries_per_s":600000.0}
{"workload":"append","payload_bytes":256,"batch":100,"writers":1,"durability":"sync","entries_per_s":200000.0,"baseline_entries_per_s":250000.0}
{"workload":"append","payload_bytes":4096,"batch":64,"writers":1,"durability":"sync","entries_per_s":60000.0,"baseline_entries_per_s":55000.0}
{"workload":"append","payload_bytes":256,"batch":1,"writers":64,"durability":"sync","entries_per_s":55000.0,"baseline_entries_per_s":33000.0}
{"workload":"append","payload_bytes":256,"batch":1,"writers":4,"durability":"sync","entries_per_s":5000.0,"baseline_entries_per_s":7000.0}
{"workload":"verify","entries_per_s":900000.0,"baseline_entries_per_s":3000000.0}
not json"#;

    #[test]
    fn append_results_become_two_panels_of_ledger_and_raw_lines() {
        let (by_batch, by_writers) = series(RESULTS);
        // Sorted by x; the 4 KiB result and the verify result are not drawn.
        let xs = |s: &Series| s["sync"].iter().map(|p| p.x).collect::<Vec<_>>();
        assert_eq!(xs(&by_batch), [1.0, 100.0, 1000.0]);
        assert_eq!(xs(&by_writers), [4.0, 64.0]);
        assert_eq!(by_writers["sync"][1], Point { x: 64.0, ledger: 55000.0, raw: 33000.0 });
        let svg = append_svg(RESULTS, "EPYC <test>").unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("EPYC &lt;test&gt;"));
        // One solid (ledger) and one dashed (raw) line per panel, each with its points.
        assert_eq!(svg.matches(r#"<polyline class="ledger-sync""#).count(), 2);
        assert_eq!(svg.matches(r#"<polyline class="raw-sync""#).count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2 * (3 + 2));
        assert!(svg.contains("ledger sync, batch 1000: 400000 entries/s"), "{svg}");
        assert!(svg.contains("raw RocksDB sync, writers 64: 33000 entries/s"), "{svg}");
        // Higher throughput is drawn higher (smaller y).
        let cy = |needle: &str| -> f64 {
            let at = svg.find(needle).unwrap();
            let head = &svg[..at];
            let start = head.rfind("cy=\"").unwrap() + 4;
            head[start..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(cy("ledger sync, batch 1000:") < cy("ledger sync, batch 1:"));
    }

    #[test]
    fn no_append_results_is_an_error_that_says_what_to_run() {
        let e = append_svg(r#"{"workload":"verify","entries_per_s":1.0}"#, "t").unwrap_err();
        assert!(e.to_string().contains("run benches/run-all.sh"), "{e}");
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(2000.0), "2k");
        assert_eq!(short(50.0), "50");
    }
}
