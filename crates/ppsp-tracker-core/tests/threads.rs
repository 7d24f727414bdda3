//! Sharding sanity: many threads working on different swarms (and some on the same one)
//! at once, with sweeps running alongside. Checks that nothing deadlocks or panics and
//! that the state adds up afterwards.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use ppsp_tracker_core::ppsp_proto::{
    AuthToken, PeerMode, Request, RequestBody, Response, Status, TransactionId,
};
use ppsp_tracker_core::{Config, OpenAuthenticator, Timestamp, Tracker};

const THREADS: usize = 6;
const PEERS_PER_THREAD: usize = 40;
const ROUNDS: usize = 30;

fn call(
    tracker: &Tracker,
    now: Timestamp,
    peer: &str,
    token: Option<AuthToken>,
    tid: &mut u64,
    body: RequestBody,
) -> Response {
    *tid += 1;
    let request = Request {
        peer_id: pid(peer),
        auth_token: token,
        transaction_id: TransactionId::numeric(*tid),
        body,
    };
    block_on(tracker.handle(now, &xml_ctx("127.0.0.1:40000"), &request))
}

#[test]
fn threads_hammering_different_swarms() {
    let tracker = Arc::new(Tracker::with_seed(
        Config::default(),
        Arc::new(OpenAuthenticator),
        9,
    ));
    let start = Timestamp::from_secs(1_700_000_000);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                let own = format!("swarm-{t}");
                let mut tid = 0u64;
                let mut tokens = Vec::new();
                for i in 0..PEERS_PER_THREAD {
                    let name = format!("t{t}-p{i}");
                    let response = call(
                        &tracker,
                        start,
                        &name,
                        None,
                        &mut tid,
                        connect_body(vec![], Some(anonymous())),
                    );
                    assert_eq!(response.status, Status::Ok);
                    tokens.push((name, response.auth_token));
                }
                for round in 0..ROUNDS {
                    let now = start.plus(Duration::from_millis(round as u64));
                    for (i, (name, token)) in tokens.iter().enumerate() {
                        let mode = if i % 5 == 0 {
                            PeerMode::Seed
                        } else {
                            PeerMode::Leech
                        };
                        let join = call(
                            &tracker,
                            now,
                            name,
                            token.clone(),
                            &mut tid,
                            join_body(&own, mode, Some(10), 0),
                        );
                        assert_eq!(join.status, Status::Ok);
                        // Every thread also touches one shared swarm.
                        let shared = call(
                            &tracker,
                            now,
                            name,
                            token.clone(),
                            &mut tid,
                            join_body("shared", PeerMode::Leech, Some(5), 0),
                        );
                        assert_eq!(shared.status, Status::Ok);
                        let find = call(
                            &tracker,
                            now,
                            name,
                            token.clone(),
                            &mut tid,
                            find_body(&own, Some(20)),
                        );
                        assert_eq!(find.status, Status::Ok);
                        assert!(!peer_ids(&find).contains(&pid(name)));
                        let report = call(
                            &tracker,
                            now,
                            name,
                            token.clone(),
                            &mut tid,
                            report_body(vec![stream_stats(&own, round as u64, 1)]),
                        );
                        assert_eq!(report.status, Status::Ok);
                        if round % 3 == 1 && i % 2 == 1 {
                            let leave = call(
                                &tracker,
                                now,
                                name,
                                token.clone(),
                                &mut tid,
                                leave_body(&own),
                            );
                            assert_eq!(leave.status, Status::Ok);
                        }
                    }
                }
            })
        })
        .collect();
    // Sweeps and snapshots run while the workers hammer away.
    let sweeper = {
        let tracker = Arc::clone(&tracker);
        thread::spawn(move || {
            for _ in 0..200 {
                let report = block_on(tracker.sweep(start)).expect("sweep");
                assert_eq!(report.sessions_expired, 0);
                let _ = block_on(state_of(&tracker, start));
                thread::yield_now();
            }
        })
    };
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    sweeper.join().expect("sweeper panicked");

    let snapshot = block_on(state_of(&tracker, start));
    assert_eq!(snapshot.sessions, THREADS * PEERS_PER_THREAD);
    let shared = snapshot
        .swarms
        .iter()
        .find(|s| s.swarm_id == sid("shared"))
        .expect("shared");
    assert_eq!(shared.peers.len(), THREADS * PEERS_PER_THREAD);
    for t in 0..THREADS {
        let own = snapshot
            .swarms
            .iter()
            .find(|s| s.swarm_id == sid(&format!("swarm-{t}")))
            .expect("own swarm");
        // The last round (29) left nobody: everyone is in.
        assert_eq!(own.peers.len(), PEERS_PER_THREAD);
        assert_eq!(own.seeds + own.leeches, PEERS_PER_THREAD);
        assert!(
            own.peers
                .iter()
                .all(|p| p.uploaded_bytes == (ROUNDS - 1) as u64)
        );
    }
    // Everything expires together once idle.
    let report = block_on(tracker.sweep(start.plus(Duration::from_secs(3600)))).expect("sweep");
    assert_eq!(report.sessions_expired, THREADS * PEERS_PER_THREAD);
    assert!(block_on(state_of(&tracker, start)).swarms.is_empty());
}
