//! Caps on stored state: each one reached gives its documented answer, is counted, and
//! leaves what is already stored served.

mod common;

use common::*;
use ppsp_tracker_core::ppsp_proto::{
    ChunkMap, ChunkMapReport, ChunkSegments, Clip, MediaType, PeerMode, RequestBody, Segment, Stat,
    Status,
};
use ppsp_tracker_core::{Cap, Config, Limits};

fn with_limits(limits: Limits) -> Harness {
    Harness::with_config(Config {
        limits,
        ..Config::default()
    })
}

fn refusals(h: &Harness, cap: Cap) -> u64 {
    let index = Cap::ALL.iter().position(|c| *c == cap).expect("cap");
    h.totals().refusals[index]
}

/// A report of one segment per `(from, to, held)` of clip "c" in `swarm`.
fn segments(swarm: &str, parts: &[(u64, u64)]) -> Stat {
    Stat::ChunkMap(ChunkMapReport {
        swarm_id: sid(swarm),
        clips: vec![Clip {
            name: "c".into(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: parts
                    .iter()
                    .map(|&(from, len)| Segment::with_map(ChunkMap::full(from, len)))
                    .collect(),
            }),
        }],
    })
}

#[test]
fn the_session_cap_answers_503_and_keeps_existing_sessions() {
    let mut h = with_limits(Limits {
        max_sessions: 2,
        ..Limits::default()
    });
    let peers = populate(&mut h, "p", 2, "s", PeerMode::Seed);
    let third = XmlPeer::direct("third", "192.0.2.99");
    let refused = third.call(&mut h, connect_body(vec![], Some(anonymous())));
    assert_eq!(refused.status, Status::TemporarilyOverloaded);
    assert_eq!(refusals(&h, Cap::Sessions), 1);
    // The existing peers are still served, and a peer re-CONNECTing replaces its own session.
    let listed = peers[0].call(&mut h, find_body("s", None));
    assert_eq!(peer_ids(&listed), vec![peers[1].id.clone()]);
    let mut again = XmlPeer::direct("p0", "10.1.0.1");
    again.connect(&mut h);
    assert_eq!(h.snapshot().sessions, 2);
}

#[test]
fn the_per_address_cap_answers_403_for_that_address_only() {
    let mut h = with_limits(Limits {
        max_sessions_per_address: 2,
        ..Limits::default()
    });
    let mut a = XmlPeer::direct("a", "192.0.2.1");
    let mut b = XmlPeer::direct("b", "192.0.2.1");
    a.connect(&mut h);
    b.connect(&mut h);
    let c = XmlPeer::direct("c", "192.0.2.1");
    let refused = c.call(&mut h, connect_body(vec![], Some(anonymous())));
    assert_eq!(refused.status, Status::MessageForbidden);
    assert_eq!(refusals(&h, Cap::SessionsPerAddress), 1);
    let mut elsewhere = XmlPeer::direct("d", "192.0.2.2");
    elsewhere.connect(&mut h);
    // A DISCONNECT frees its place.
    assert_eq!(a.call(&mut h, RequestBody::Disconnect).status, Status::Ok);
    let mut c = c;
    c.connect(&mut h);
    b.join(&mut h, "s", PeerMode::Seed);
}

#[test]
fn the_swarm_cap_answers_503_and_joins_of_existing_swarms_go_on() {
    let mut h = with_limits(Limits {
        max_swarms: 2,
        ..Limits::default()
    });
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.join(&mut h, "one", PeerMode::Seed);
    p.join(&mut h, "two", PeerMode::Seed);
    let refused = p.call(&mut h, join_body("three", PeerMode::Seed, None, 0));
    assert_eq!(refused.status, Status::TemporarilyOverloaded);
    assert_eq!(refusals(&h, Cap::Swarms), 1);
    let mut q = XmlPeer::direct("q", "192.0.2.2");
    q.connect(&mut h);
    let joined = q.call(&mut h, join_body("two", PeerMode::Leech, None, 0));
    assert_eq!(peer_ids(&joined), vec![p.id.clone()]);
    assert_eq!(h.snapshot().swarms.len(), 2);
}

#[test]
fn sparse_segments_are_charged_for_their_bits_not_the_span() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.join(&mut h, "s", PeerMode::Leech);
    // Eight one-byte segments a trillion chunks apart: a map over the span would need
    // petabytes; stored as segments it is a few hundred bytes.
    let far: Vec<(u64, u64)> = (0..8).map(|i| (i << 40, 8)).collect();
    let answer = p.call(&mut h, report_body(vec![segments("s", &far)]));
    assert_eq!(answer.status, Status::Ok);
    let totals = h.totals();
    assert!(totals.chunk_map_bytes > 0);
    assert!(totals.chunk_map_bytes <= 8 * (1 + 48), "{totals:?}");
    let view = h.snapshot();
    assert_eq!(view.swarms[0].peers[0].chunks_held, 64);
    // The segments still answer chunk-scoped FINDs.
    let mut asker = XmlPeer::direct("asker", "192.0.2.2");
    asker.connect(&mut h);
    asker.join(&mut h, "s", PeerMode::Leech);
    let found = asker.call(&mut h, chunk_find_body("s", "c", 3 << 40, (3 << 40) + 2));
    assert_eq!(peer_ids(&found), vec![p.id.clone()]);
    // Leaving gives the memory back.
    p.call(&mut h, leave_body("s"));
    assert_eq!(h.totals().chunk_map_bytes, 0);
}

#[test]
fn chunk_map_caps_refuse_the_report_and_keep_what_was_stored() {
    let mut h = with_limits(Limits {
        max_chunk_map_bytes_per_member: 1024,
        max_chunk_map_bytes_per_session: 1536,
        max_chunk_map_bytes: 1600,
        ..Limits::default()
    });
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.join(&mut h, "a", PeerMode::Leech);
    p.join(&mut h, "b", PeerMode::Seed);
    // 8,000 chunks: 1,000 bytes plus overhead, over the member cap.
    let big = p.call(&mut h, report_body(vec![segments("a", &[(0, 8000)])]));
    assert_eq!(big.status, Status::MessageForbidden);
    assert_eq!(refusals(&h, Cap::ChunkMapBytesPerMember), 1);
    // 6,400 chunks (800 bytes) fit the member cap.
    let ok = p.call(&mut h, report_body(vec![segments("a", &[(0, 6400)])]));
    assert_eq!(ok.status, Status::Ok);
    // Another 800 (848 charged) in the other swarm pass the session cap of 1,536.
    let over = p.call(&mut h, report_body(vec![segments("b", &[(0, 6400)])]));
    assert_eq!(over.status, Status::MessageForbidden);
    assert_eq!(refusals(&h, Cap::ChunkMapBytesPerSession), 1);
    // A second peer's 848 bytes would take the tracker past 1,600: 503, try later.
    let mut q = XmlPeer::direct("q", "192.0.2.2");
    q.connect(&mut h);
    q.join(&mut h, "a", PeerMode::Leech);
    let full = q.call(&mut h, report_body(vec![segments("a", &[(0, 6400)])]));
    assert_eq!(full.status, Status::TemporarilyOverloaded);
    assert_eq!(refusals(&h, Cap::ChunkMapBytes), 1);
    // What p reported first is still there and still serves FIND.
    let found = q.call(&mut h, chunk_find_body("a", "c", 100, 200));
    assert_eq!(peer_ids(&found), vec![p.id.clone()]);
    let view = h.snapshot();
    let a = view
        .swarms
        .iter()
        .find(|s| s.swarm_id == sid("a"))
        .expect("a");
    let p_view = a.peers.iter().find(|x| x.peer_id == p.id).expect("p");
    assert_eq!(p_view.chunks_held, 6400);
}
