//! `deploy/ppsp-tracker.service` passes `systemd-analyze verify` (pointing at the binary
//! just built, since verify checks that ExecStart exists), keeps its sandboxing, and rates
//! "OK" or better in `systemd-analyze security --offline`.

use std::path::Path;
use std::process::Command;

const INSTALLED_BINARY: &str = "/usr/local/bin/ppsp";

fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ppsp-tracker.service");
    let text = std::fs::read_to_string(&unit).expect("deploy/ppsp-tracker.service");
    assert!(
        text.contains(INSTALLED_BINARY),
        "ExecStart names {INSTALLED_BINARY}"
    );
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(text.contains(directive), "unit lacks {directive:?}");
    }
    std::fs::create_dir_all(dir).expect("dir");
    let copy = dir.join("ppsp-tracker.service");
    std::fs::write(
        &copy,
        text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_ppsp")),
    )
    .expect("write unit");
    copy
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    let dir = std::env::temp_dir().join(format!("ppsp-unit-{}", std::process::id()));
    let unit = unit_for_this_build(&dir);
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "verify failed: {complaints}");
    // Unknown or misspelt directives are only warnings: none may appear.
    assert!(complaints.trim().is_empty(), "verify warned: {complaints}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let level = report
        .lines()
        .find_map(|l| l.split("exposure level for ppsp-tracker.service: ").nth(1))
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    let score: f64 = level
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable level {level:?}"));
    // systemd calls up to 2.0 "OK" (lower is better; 10 is unsandboxed).
    assert!(score <= 2.0, "exposure {level}");
    let _ = std::fs::remove_dir_all(&dir);
}
