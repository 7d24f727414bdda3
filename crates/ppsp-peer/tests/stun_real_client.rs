//! The STUN Binding service answers a real, independent STUN client: `turnutils_stunclient`
//! from Debian's coturn package (installed by `scripts/test.sh`).
//!
//! Two services are queried: the real tracker's (`ppsp_server` with `[stun] listen`, as
//! `ppsp tracker --stun` runs it), and a bare loop around `ppsp_proto::stun::answer` that
//! records where each request came from, so the reported port can be checked exactly.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use ppsp_server::{Listeners, ServerConfig};
use tokio::net::UdpSocket;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

const STUN_CLIENT: &str = "turnutils_stunclient";

/// A STUN service on 127.0.0.1:0 built from `ppsp_proto::stun::answer`, as the tracker runs
/// it. Returns its address and a channel of the source address of every request answered;
/// the task ends with the runtime.
async fn start_stun_service() -> (SocketAddr, mpsc::UnboundedReceiver<SocketAddr>) {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP on loopback");
    let address = socket.local_addr().expect("local address");
    tokio::spawn(async move {
        let mut buffer = [0u8; 2048];
        loop {
            let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            if let Some(reply) = ppsp_proto::stun::answer(&buffer[..length], from) {
                let _ = seen_tx.send(from);
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    (address, seen_rx)
}

/// Pulls `IP:PORT` out of the client's "UDP reflexive addr: 127.0.0.1:40000" line.
fn reflexive_address(output: &str) -> Option<SocketAddr> {
    output.lines().find_map(|line| {
        let (_, rest) = line.split_once("reflexive addr:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Runs `turnutils_stunclient` against `service` and returns the reflexive address it
/// reports, with its output for messages.
async fn run_stun_client(service: SocketAddr) -> (SocketAddr, String) {
    let mut command = Command::new(STUN_CLIENT);
    command
        .arg("-p")
        .arg(service.port().to_string())
        .arg(service.ip().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run {STUN_CLIENT} ({error}); install Debian's coturn package \
             (scripts/test.sh does) to run this test"
        ),
    };
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("turnutils_stunclient did not finish within 20 s")
        .expect("turnutils_stunclient ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mapped = reflexive_address(&stdout).unwrap_or_else(|| {
        panic!("no reflexive address in the client's output:\n{stdout}\n{stderr}")
    });
    (mapped, stdout)
}

#[tokio::test]
async fn turnutils_stunclient_learns_its_mapped_address() {
    let (service, mut seen) = start_stun_service().await;
    let (mapped, stdout) = run_stun_client(service).await;
    assert_eq!(mapped.ip().to_string(), "127.0.0.1", "{stdout}");
    // The port the client reports must be the one its request really came from.
    let client = seen.try_recv().expect("the service answered a request");
    assert_eq!(mapped, client, "{stdout}");
    assert_ne!(mapped.port(), service.port());
}

#[tokio::test]
async fn the_tracker_stun_service_answers_turnutils_stunclient() {
    let mut config = ServerConfig::default();
    config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.stun.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let listeners = Listeners::bind(&config).await.expect("bind");
    let lines = listeners.readiness_lines().expect("readiness lines");
    let stun_line = lines
        .iter()
        .find_map(|line| line.strip_prefix("stun on udp://"))
        .expect("a stun readiness line");
    let service: SocketAddr = stun_line.parse().expect("HOST:PORT");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(ppsp_server::serve(config, listeners, async move {
        let _ = stopped.await;
    }));

    let (mapped, stdout) = run_stun_client(service).await;
    assert_eq!(mapped.ip().to_string(), "127.0.0.1", "{stdout}");
    assert_ne!(mapped.port(), 0, "{stdout}");
    assert_ne!(mapped.port(), service.port(), "{stdout}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("tracker stops")
        .expect("tracker task")
        .expect("tracker ran cleanly");
}
