//! What `dist/` ships: the systemd unit passes `systemd-analyze verify` (skipped with a message
//! where systemd-analyze is missing), the example config is one `serve` accepts, the Dockerfile
//! is multi-stage, non-root and health-checked (a static check: CI has no Docker daemon), and
//! the health check it runs (`onoal status`) passes while a node serves and fails after.

use std::path::PathBuf;

use onoal_tests::node::{Serve, init};
use onoal_tests::{onoal, onoal_bin, run};

fn dist(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("dist").join(file)
}

#[test]
fn the_systemd_unit_verifies_and_the_example_config_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(dist("onoal.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/onoal serve --config /etc/onoal/onoal.toml"));
    assert!(unit.contains("User=onoal") && unit.contains("KillSignal=SIGTERM"), "{unit}");
    // The unit as installed, with the binary this test built.
    let local = tmp.path().join("onoal.service");
    let bin = onoal_bin();
    std::fs::write(&local, unit.replace("/usr/local/bin/onoal", bin.to_str().unwrap())).unwrap();
    match std::process::Command::new("systemd-analyze").arg("verify").arg(&local).output() {
        Err(_) => eprintln!("systemd-analyze is not installed: the unit was not verified"),
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr);
            // Its own complaints, not the host's (missing users on a build machine are fine).
            let own: Vec<&str> = said.lines().filter(|l| l.starts_with("onoal.service:")).collect();
            assert!(out.status.success() && own.is_empty(), "systemd-analyze verify: {said}");
        }
    }
    let out = run(onoal(&tmp.path().join("x"))
        .args(["serve", "--print-config", "--config"])
        .arg(dist("onoal.toml")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"0.0.0.0:7400\""));
    // A typo in the file is refused, not ignored.
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(dist("onoal.toml")).unwrap();
    std::fs::write(&bad, text.replace("verify_refs", "verify_ref")).unwrap();
    let out =
        run(onoal(&tmp.path().join("x")).args(["serve", "--print-config", "--config"]).arg(&bad));
    assert!(!out.status.success(), "an unknown key is an error");
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_its_health_check_tells_the_truth() {
    let text = std::fs::read_to_string(dist("Dockerfile")).unwrap();
    let from: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a build stage and a runtime stage: {from:?}");
    assert!(from[0].ends_with(" AS build") && text.contains("COPY --from=build "), "{text}");
    let user = text.lines().filter_map(|l| l.strip_prefix("USER ")).next_back();
    assert!(user.is_some_and(|u| u != "root" && u != "0"), "runs as a non-root user");
    let health = text.lines().skip_while(|l| !l.starts_with("HEALTHCHECK")).nth(1).unwrap_or("");
    assert!(health.contains(r#"CMD ["onoal", "status", "--json"]"#), "{health}");
    match std::process::Command::new("docker").arg("info").output() {
        Ok(o) if o.status.success() => eprintln!(
            "docker is available; build the image with: docker build -f dist/Dockerfile ."
        ),
        _ => eprintln!("no Docker daemon here: the Dockerfile was checked, not built"),
    }

    // The health check's command: healthy while the node serves, unhealthy after.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("n");
    init(&d, "oid:onoal:org:health");
    let served = Serve::start(&d, 0, &[]);
    let out = run(onoal(&d).args(["status", "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(served);
    let out = run(onoal(&d).args(["status", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (out.status.code(), &v["error"]["kind"]),
        (Some(1), &serde_json::json!("not_running"))
    );
}
