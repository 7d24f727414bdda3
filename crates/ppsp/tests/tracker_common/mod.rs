//! What the tests of the `ppsp tracker` binary share: `ppsp accounts add` and waiting for a
//! child to exit.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Waits for `child` to exit, failing the test after `limit`.
pub(crate) fn wait_for_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "process did not exit in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes (or adds to) an accounts file with `ppsp accounts add`, the password on standard
/// input; with `realm`, the HTTP Digest secret for it too.
pub(crate) fn add_account(file: &Path, peer_id: &str, password: &str, realm: Option<&str>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ppsp"));
    command.args(["accounts", "add", "--file"]).arg(file);
    if let Some(realm) = realm {
        command.args(["--digest-realm", realm]);
    }
    let mut add = command
        .arg(peer_id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn accounts add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    assert!(wait_for_exit(&mut add, Duration::from_secs(30)).success());
}
