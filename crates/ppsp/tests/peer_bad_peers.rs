//! End-to-end with the real binary: peers that misbehave (answer 503 to everything, send
//! a body that never ends, open hundreds of connections and never read) cannot stall a
//! download, nor a live viewer.

mod peer_common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peer_common::{HttpStream, Proc, RECORD, TempDir, parse, random_file, record, tracker};

const MIB: usize = 1024 * 1024;
/// 4 MiB in 32 KiB chunks.
const CHUNKS: usize = 128;

/// What the fake peer answers to chunk requests.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// `503 Service Unavailable` for every chunk.
    Busy,
    /// `200 OK` and a chunked body that drips one byte every 200 ms, for ever.
    EndlessBody,
}

/// A peer that claims to hold every chunk and never delivers one. Returns its address and
/// the count of chunk requests it received.
fn fake_peer(how: Misbehaviour) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let asked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || serve_fake(stream, how, &counter));
        }
    });
    (addr, asked)
}

fn serve_fake(stream: TcpStream, how: Misbehaviour, asked: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim_end().is_empty() {
                break;
            }
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let reply = if path.contains("/chunkmap") {
            // 128 set bits: every chunk, but "complete" false (a leech that has it all).
            let body = format!(
                r#"{{"first":0,"len":{CHUNKS},"map":"{}/w==","complete":false,"version":1}}"#,
                "/".repeat(20)
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if path.contains("/chunk/") {
            asked.fetch_add(1, Ordering::Relaxed);
            match how {
                Misbehaviour::Busy => {
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
                        .to_owned()
                }
                Misbehaviour::EndlessBody => {
                    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if out.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    while out.write_all(b"1\r\nx\r\n").is_ok() {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    return;
                }
            }
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Makes `leech` learn of the fake at `fake` the way any peer announces itself: by a
/// request carrying its own endpoint. The leech answers once it knows the swarm.
fn introduce(leech: &str, swarm: &str, fake: SocketAddr) {
    let leech = leech.to_owned();
    let path = format!("/ppsp/v1/{swarm}/chunkmap");
    std::thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect(&leech) else {
            return;
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {leech}\r\nppsp-listen: {}\r\nConnection: close\r\n\r\n",
            fake.port()
        );
        let _ = stream.write_all(request.as_bytes());
        let _ = stream.read_to_end(&mut Vec::new());
    });
}

struct Setup {
    dir: TempDir,
    _tracker: Proc,
    url: String,
    _seed: Proc,
    seed_addr: String,
    swarm: String,
    data: Vec<u8>,
}

/// A tracker and a seed capped at 2 MiB/s serving 4 MiB: a download takes about 2 s.
fn setup(tag: &str, chunk_kib: &str) -> Setup {
    let dir = TempDir::new(tag);
    let (tracker, url) = tracker(&dir);
    let input = dir.join("input.bin");
    let data = random_file(&input, 4 * MIB, 21);
    let seed = Proc::spawn(
        &dir,
        "seed",
        &[
            "peer",
            "seed",
            input.to_str().expect("utf-8"),
            "--tracker",
            &url,
            "--chunk-kib",
            chunk_kib,
            "--upload-rate",
            "2048",
        ],
        false,
    );
    let swarm = seed.wait_line("swarm ", Duration::from_secs(30));
    let seed_addr = seed.wait_listening();
    Setup {
        dir,
        _tracker: tracker,
        url,
        _seed: seed,
        seed_addr,
        swarm,
        data,
    }
}

/// Runs one `get` to completion; returns how long it took. `before_join` runs once the
/// leech's peer endpoint is known.
fn timed_get(setup: &Setup, name: &str, before_join: impl FnOnce(&str)) -> Duration {
    let out = setup.dir.join(&format!("{name}.bin"));
    let started = Instant::now();
    let mut leech = Proc::spawn(
        &setup.dir,
        name,
        &[
            "peer",
            "get",
            &setup.swarm,
            "--tracker",
            &setup.url,
            "--output",
            out.to_str().expect("utf-8"),
            "--linger",
            "0",
        ],
        false,
    );
    let addr = leech.wait_listening();
    before_join(&addr);
    let status = leech.wait_exit(Duration::from_secs(120));
    let took = started.elapsed();
    assert!(status.success(), "{name} failed:\n{}", leech.log_text());
    assert!(
        std::fs::read(&out).expect("output") == setup.data,
        "{name}: output differs"
    );
    took
}

#[test]
fn fake_peers_answering_503_or_never_ending_bodies_do_not_stall_a_download() {
    let setup = setup("fakes", "32");
    let normal = timed_get(&setup, "normal", |_| {});
    for how in [Misbehaviour::Busy, Misbehaviour::EndlessBody] {
        let (fake, asked) = fake_peer(how);
        let took = timed_get(&setup, &format!("{how:?}"), |leech| {
            introduce(leech, &setup.swarm, fake);
        });
        let asked = asked.load(Ordering::Relaxed);
        eprintln!("{how:?}: {took:?} (normal {normal:?}), {asked} chunk requests to the fake");
        assert!(asked > 0, "{how:?}: the fake was never asked");
        assert!(
            asked < 200,
            "{how:?}: {asked} chunk requests went to the fake"
        );
        // Twice the normal time, and a second for starting a process on a busy machine.
        assert!(
            took <= normal * 2 + Duration::from_secs(1),
            "{how:?}: {took:?} against {normal:?} without the fake"
        );
    }
}

#[test]
fn non_reading_connections_do_not_stop_a_seed_serving_a_leech() {
    // 1 MiB chunks, so an answer does not fit in the socket buffers of a reader that
    // never reads.
    let setup = setup("nonreading", "1024");
    let normal = timed_get(&setup, "normal", |_| {});
    let seed: SocketAddr = setup.seed_addr.parse().expect("seed address");
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for i in 0..256 {
        // Bound to a second loopback address: the attacker is another host. Connections
        // past the seed's per-address bound are closed by it, which is fine here.
        let Ok(stream) = bind_from(attacker, seed) else {
            continue;
        };
        let path = if i % 2 == 0 {
            "/".to_owned()
        } else {
            format!("/ppsp/v1/{}/chunk/{}", setup.swarm, i % 4)
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut stream = stream;
        let _ = stream.write_all(request.as_bytes());
        held.push(stream);
    }
    assert!(held.len() >= 64, "only {} connections opened", held.len());
    let took = timed_get(&setup, "leech", |_| {});
    eprintln!(
        "{} non-reading connections open; the leech took {took:?} (normal {normal:?})",
        held.len()
    );
    assert!(
        took <= normal * 2 + Duration::from_secs(1),
        "the seed served the leech in {took:?} against {normal:?} without the attacker"
    );
    drop(held);
}

/// A connection to `to` from the local address `from`.
fn bind_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// A live viewer that learns of a fake viewer claiming every chunk still plays every
/// record in order, each within a few seconds of the source reading it: the fake is
/// asked, stops counting as a holder, and the source serves the chunks.
#[test]
fn fake_viewers_answering_503_or_never_ending_bodies_do_not_stall_a_live_viewer() {
    for how in [Misbehaviour::Busy, Misbehaviour::EndlessBody] {
        let dir = TempDir::new("live-fakes");
        let (_tracker, url) = tracker(&dir);
        let mut source = Proc::spawn(
            &dir,
            "source",
            &["peer", "live", "--tracker", &url, "--flush-ms", "100"],
            true,
        );
        let swarm = source.wait_line("swarm ", Duration::from_secs(30));
        source.wait_listening();
        // A record every 20 ms for about eight seconds (under the fake's 128 chunks).
        let written: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
        let mut stdin = source.stdin.take().expect("stdin");
        let log = Arc::clone(&written);
        let writer = std::thread::spawn(move || {
            for seq in 0..400 {
                log.lock().expect("lock").push(Instant::now());
                if stdin.write_all(&record(seq)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let viewer = Proc::spawn(
            &dir,
            "viewer",
            &["peer", "play", &swarm, "--tracker", &url],
            false,
        );
        let player = viewer.wait_listening();
        let peer = viewer.wait_peer_on();
        let (fake, asked) = fake_peer(how);
        introduce(&peer, &swarm, fake);

        let mut stream = HttpStream::open(&player, "GET", "/", &[]);
        assert_eq!(stream.status, 200);
        let (mut pending, mut seen, mut worst) = (Vec::new(), Vec::<u64>::new(), Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < 200 {
            assert!(
                Instant::now() < deadline,
                "{how:?}: viewer stalled after {} records; log:\n{}",
                seen.len(),
                viewer.log_text()
            );
            let piece = stream.next_piece();
            assert!(!piece.is_empty(), "{how:?}: stream ended early");
            let arrived = Instant::now();
            pending.extend_from_slice(&piece);
            while pending.len() >= RECORD {
                let seq = parse(&pending[..RECORD]);
                pending.drain(..RECORD);
                let produced = written.lock().expect("lock")[seq as usize];
                worst = worst.max(arrived.duration_since(produced));
                seen.push(seq);
            }
        }
        for pair in seen.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "{how:?}: records out of order or missing"
            );
        }
        let asked = asked.load(Ordering::Relaxed);
        eprintln!("{how:?}: worst record delay {worst:?}, {asked} chunk requests to the fake");
        assert!(asked > 0, "{how:?}: the fake was never asked");
        // The target is 2 s behind the source; a second more for a busy machine.
        assert!(
            worst < Duration::from_secs(3),
            "{how:?}: a record took {worst:?} to arrive"
        );
        drop(stream);
        drop(viewer);
        drop(source);
        let _ = writer.join();
    }
}
