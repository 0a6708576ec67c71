//! The dashboard in a real headless browser (Debian's chromium; `.ci/run` installs it): the
//! page loads, its script renders live figures from the API, and a screenshot is taken. Skips
//! with a message when no browser is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use onoal_tests::node::{Serve, import, init, pin};
use onoal_tests::onoal;

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ONOAL_CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromium")),
        Some(PathBuf::from("/usr/bin/chromium-browser")),
        Some(PathBuf::from("/usr/bin/google-chrome")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// Chromium headless with the flags this machine needs (no sandbox as root, no background
/// networking: the closed network refuses it).
fn browser(bin: &Path, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn run_browser(mut c: Command) -> std::process::Output {
    let out = c.output().expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn the_dashboard_renders_live_figures_in_a_real_browser() {
    let Some(bin) = chromium() else {
        eprintln!("SKIPPED: no chromium (apt-get install chromium, or set ONOAL_CHROMIUM)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 321);
    let serve_a = Serve::start(&a_dir, 0, &[]);
    let serve_b = Serve::start(&b_dir, 0, &[]);
    pin(&b_dir, &a, serve_a.1);
    pin(&a_dir, &b, serve_b.1);
    onoal_tests::run_json(onoal(&b_dir).args(["sync", &a.id]));
    // A transfer from A to B: B's tokens panel shows what it received.
    onoal_tests::run_json(onoal(&a_dir).args(["mint", "--asset", "eur", "--amount", "50"]));
    let t = onoal_tests::run_json(
        onoal(&a_dir).args(["transfer", "start", "--to", &b.id, "--asset", "eur", "--amount", "7"]),
    );
    assert_eq!(t["outcome"], "committed", "{t}");
    // And a registered asset: B holds it, received.
    onoal_tests::run_json(onoal(&a_dir).args(["asset", "register", "--id", "deed-1"]));
    let t = onoal_tests::run_json(
        onoal(&a_dir)
            .args(["transfer", "start", "--to", &b.id, "--asset", "deed-1", "--amount", "1"]),
    );
    assert_eq!(t["outcome"], "committed", "{t}");
    let url = format!("{}/", serve_b.url());

    // The DOM after the script ran: B's id, and figures read from the API.
    let mut dump = browser(&bin, &tmp.path().join("profile1"));
    dump.args(["--virtual-time-budget=5000", "--dump-dom", &url]);
    let dom = String::from_utf8(run_browser(dump).stdout).unwrap();
    assert!(dom.contains(&format!("\">{}</span>", b.id)), "B's id in the header: {dom}");
    assert!(dom.contains("<span id=\"oid\">oid:onoal:test:b</span>"), "{dom}");
    // The replica of A (321 entries, complete) is in the replicas table, A in the peers table.
    assert!(
        dom.contains("<td>full</td><td>321</td><td>321</td><td>0</td><td>complete</td>"),
        "{dom}"
    );
    assert!(dom.contains("<td>oid:onoal:test:a</td>"), "{dom}");
    // B's trust in A: the pin's 0.5, raised by the verified sync.
    assert!(dom.contains("<td>0.51</td>"), "A's trust in the peers table: {dom}");
    assert!(dom.contains(&a.id[..8]), "{dom}");
    assert!(dom.contains("<circle"), "the topology is drawn: {dom}");
    assert!(dom.contains("DHT nodes "), "the discovery counters are shown: {dom}");
    assert!(dom.contains("Routed: originated "), "the routed counters are shown: {dom}");
    assert!(
        dom.contains("<td>eur</td><td>7</td><td>0</td><td>0</td><td>7</td><td>0</td>"),
        "B's balance in the tokens panel: {dom}"
    );
    assert!(dom.contains("<td>destination</td><td>7 eur</td><td>credited</td>"), "{dom}");
    assert!(dom.contains("<td>deed-1</td><td>received</td>"), "the assets held: {dom}");
    assert!(dom.contains("Witness oid:onoal:test:b/witness"), "the witness panel: {dom}");
    assert!(!dom.contains("Error:"), "the script reported an error: {dom}");

    // A screenshot: a rendered dashboard is far more than a blank page.
    let shot = tmp.path().join("dashboard.png");
    let mut s = browser(&bin, &tmp.path().join("profile2"));
    s.args(["--virtual-time-budget=5000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url);
    run_browser(s);
    let blank = tmp.path().join("blank.png");
    let mut s = browser(&bin, &tmp.path().join("profile3"));
    s.arg(format!("--screenshot={}", blank.display())).arg("about:blank");
    run_browser(s);
    let (png, empty) = (std::fs::read(&shot).unwrap(), std::fs::read(&blank).unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 3 * empty.len(), "dashboard {} bytes vs blank {}", png.len(), empty.len());
    if let Some(keep) = std::env::var_os("ONOAL_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    serve_b.stop();
    serve_a.stop();
}
