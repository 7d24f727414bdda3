//! The peer's STUN client (`ppsp_peer::nat`) against a Binding service on loopback:
//! mapping, retransmission with an unchanged request, bounded give-up, error answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ppsp_peer::nat::{self, StunTiming};
use ppsp_peer::tracker_client::ClientError;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What the test service does with each datagram.
#[derive(Clone, Copy)]
enum Mode {
    /// Ignore the first `n` datagrams, answer the rest.
    DropFirst(usize),
    /// Never answer.
    Silent,
    /// Answer with a Binding error response (420).
    Refuse,
}

/// Every datagram received, with its arrival time.
type Log = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

struct Service {
    address: SocketAddr,
    received: Log,
}

async fn start(mode: Mode) -> Service {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = socket.local_addr().expect("address");
    let received: Log = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        let mut buffer = [0u8; 2048];
        let mut count = 0usize;
        loop {
            let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            let datagram = buffer[..length].to_vec();
            log.lock()
                .expect("log")
                .push((Instant::now(), datagram.clone()));
            count += 1;
            let reply = match mode {
                Mode::DropFirst(n) if count <= n => None,
                Mode::DropFirst(_) => ppsp_proto::stun::answer(&datagram, from),
                Mode::Silent => None,
                Mode::Refuse => {
                    // A request with an unknown comprehension-required attribute draws a 420
                    // from the real answer function; graft one onto the received request.
                    let mut request = datagram.clone();
                    request.truncate(20);
                    request.extend_from_slice(&[0x7f, 0xff, 0x00, 0x00]);
                    request[2..4].copy_from_slice(&4u16.to_be_bytes());
                    ppsp_proto::stun::answer(&request, from)
                }
            };
            if let Some(reply) = reply {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    Service { address, received }
}

fn fast_timing() -> StunTiming {
    StunTiming {
        initial_rto: Duration::from_millis(40),
        max_transmissions: 4,
        final_wait_factor: 4,
        overall_limit: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn learns_the_mapping_of_its_socket() {
    let service = start(Mode::DropFirst(0)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let local = socket.local_addr().expect("address");
    let mapped = nat::stun_mapping_on(&socket, service.address, &fast_timing())
        .await
        .expect("mapping");
    assert_eq!(mapped, local);
    // Through the URL form as well.
    let url = format!("stun://{}", service.address);
    let mapped = nat::stun_mapping(&url, "127.0.0.1:0".parse().expect("a"), &fast_timing())
        .await
        .expect("mapping");
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
}

#[tokio::test]
async fn retransmits_the_same_request_with_growing_intervals() {
    let service = start(Mode::DropFirst(2)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let local = socket.local_addr().expect("address");
    let mapped = nat::stun_mapping_on(&socket, service.address, &fast_timing())
        .await
        .expect("answered on the third try");
    assert_eq!(mapped, local);
    let received = service.received.lock().expect("log").clone();
    assert_eq!(received.len(), 3);
    // Identical bytes: same transaction ID on every retransmission.
    assert!(received.iter().all(|(_, bytes)| *bytes == received[0].1));
    // RTO 40 ms, then 80 ms.
    let first_gap = received[1].0 - received[0].0;
    let second_gap = received[2].0 - received[1].0;
    assert!(first_gap >= Duration::from_millis(35), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(75), "{second_gap:?}");
}

#[tokio::test]
async fn gives_up_after_the_schedule() {
    let service = start(Mode::Silent).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let started = Instant::now();
    let error = nat::stun_mapping_on(&socket, service.address, &fast_timing())
        .await
        .expect_err("no answer");
    let waited = started.elapsed();
    assert!(matches!(error, ClientError::StunTimeout { .. }), "{error}");
    // 40 + 80 + 160 ms between sends, then 4 x 40 ms after the last.
    assert!(waited >= Duration::from_millis(430), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(service.received.lock().expect("log").len(), 4);

    // The overall bound cuts the schedule short.
    let bounded = StunTiming {
        overall_limit: Duration::from_millis(100),
        ..fast_timing()
    };
    let started = Instant::now();
    assert!(
        nat::stun_mapping_on(&socket, service.address, &bounded)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn error_answers_are_reported() {
    let service = start(Mode::Refuse).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let error = nat::stun_mapping_on(&socket, service.address, &fast_timing())
        .await
        .expect_err("refused");
    match error {
        ClientError::Stun(ppsp_proto::stun::StunError::ErrorResponse { code, .. }) => {
            assert_eq!(code, 420);
        }
        other => panic!("expected a STUN error answer, got {other}"),
    }
}

#[tokio::test]
async fn reflexive_address_falls_back_when_the_listen_port_is_busy() {
    let service = start(Mode::DropFirst(0)).await;
    let busy = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let listen = busy.local_addr().expect("address");
    let url = format!("stun://{}", service.address);
    let reflexive = nat::reflexive_address(&url, listen, &fast_timing())
        .await
        .expect("mapping");
    // The port was taken, so the mapped IP is paired with the listen port.
    assert_eq!(reflexive, listen);
    drop(busy);
    // A free port is used directly.
    let reflexive = nat::reflexive_address(&url, listen, &fast_timing())
        .await
        .expect("mapping");
    assert_eq!(reflexive, listen);
}
