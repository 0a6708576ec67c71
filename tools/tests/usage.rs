//! Usage errors of the binary itself (this test also makes `cargo test` build the binary that
//! the workspace's integration tests in tests/ run).

use std::process::Command;

#[test]
fn help_lists_the_commands_and_bad_flags_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_onoal")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "init",
        "append",
        "import",
        "get",
        "query",
        "checkpoint",
        "prove",
        "verify",
        "demo",
        "serve",
        "peer",
        "sync",
        "replicas",
        "forks",
    ] {
        assert!(text.contains(cmd), "help lacks {cmd}: {text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_onoal")).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
}
