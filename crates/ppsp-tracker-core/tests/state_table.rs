//! Every row of the session state table (draft-gu-ppsp-tracker-protocol-06) and the statuses of each method.

mod common;

use common::*;
use ppsp_tracker_core::ppsp_proto::{
    AuthToken, ChunkMap, ChunkSegments, Clip, Join, MediaType, NatHints, PeerMode, RequestBody,
    SaslAuth, Segment, Status,
};
use ppsp_tracker_core::rules::StartPoint;
use ppsp_tracker_core::{Config, SessionState, Timestamp};

fn state(h: &Harness, peer: &XmlPeer) -> Option<SessionState> {
    h.session_state(&peer.id)
}

#[test]
fn no_session_connect_ok_creates_connected_session_with_token_and_reflexive_address() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    let response = p.connect(&mut h);
    let token = response.auth_token.expect("token issued");
    assert!(token.as_str().len() >= 22, "at least 128 bits in base64url");
    assert!(!token.as_str().contains('='));
    assert_eq!(response.reflexive_addresses.len(), 1);
    assert_eq!(response.reflexive_addresses[0].ip, p.ctx.observed.ip());
    assert_eq!(response.reflexive_addresses[0].port, 40000);
    assert_eq!(state(&h, &p), Some(SessionState::Connected));
}

#[test]
fn reflexive_address_can_be_switched_off() {
    let mut h = Harness::with_config(Config {
        reflexive_address: false,
        ..Config::default()
    });
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    assert!(p.connect(&mut h).reflexive_addresses.is_empty());
}

#[test]
fn no_session_connect_auth_fails_is_401_and_creates_nothing() {
    let mut h = Harness::new();
    let p = XmlPeer::direct("p1", "192.0.2.10");
    let plain = SaslAuth {
        mechanism: "PLAIN".into(),
        credentials: Some(b"\0p1\0pw".to_vec()),
    };
    let response = p.call(&mut h, connect_body(vec![], Some(plain)));
    assert_eq!(response.status, Status::AuthenticationRequired);
    assert!(response.auth_token.is_none());
    assert_eq!(state(&h, &p), None);
}

#[test]
fn connect_without_sasl_is_invalid_syntax() {
    let mut h = Harness::new();
    let p = XmlPeer::direct("p1", "192.0.2.10");
    let response = p.call(&mut h, connect_body(vec![], None));
    assert_eq!(response.status, Status::InvalidSyntax);
}

#[test]
fn no_session_any_other_method_is_401() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.token = Some(AuthToken::new("forged").expect("token"));
    for body in [
        RequestBody::Disconnect,
        join_body("s", PeerMode::Leech, None, 0),
        leave_body("s"),
        find_body("s", None),
        report_body(vec![stream_stats("s", 1, 1)]),
        RequestBody::KeepAlive,
    ] {
        let response = p.call(&mut h, body);
        assert_eq!(response.status, Status::AuthenticationRequired);
        assert!(response.transaction_id.is_some());
    }
}

#[test]
fn wrong_or_missing_token_is_401_never_403() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.join(&mut h, "s", PeerMode::Leech);
    let good = p.token.clone();
    p.token = Some(AuthToken::new("not-the-token").expect("token"));
    // Even a FIND for a swarm the peer is not in (403 with a good token) is 401 here.
    assert_eq!(
        p.call(&mut h, find_body("other", None)).status,
        Status::AuthenticationRequired
    );
    p.token = None;
    assert_eq!(
        p.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
    // Another peer's token does not work either: tokens are bound to their PeerID.
    let mut q = XmlPeer::direct("q", "192.0.2.11");
    q.connect(&mut h);
    p.token = q.token.clone();
    assert_eq!(
        p.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
    p.token = good;
    assert_eq!(p.call(&mut h, RequestBody::KeepAlive).status, Status::Ok);
}

#[test]
fn connect_again_replaces_session_like_disconnect() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.join(&mut h, "s", PeerMode::Seed);
    let old_token = p.token.clone();
    assert_eq!(state(&h, &p), Some(SessionState::Joined));

    let mut again = XmlPeer::direct("p1", "192.0.2.10");
    again.connect(&mut h);
    assert_ne!(again.token, old_token);
    assert_eq!(state(&h, &again), Some(SessionState::Connected));
    // The old membership is gone with the old session; so is the now-empty swarm.
    assert!(h.snapshot().swarms.is_empty());
    // The old token is dead.
    assert_eq!(
        p.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
    assert_eq!(
        again.call(&mut h, RequestBody::KeepAlive).status,
        Status::Ok
    );
}

#[test]
fn connect_again_with_bad_credentials_leaves_old_session_untouched() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.join(&mut h, "s", PeerMode::Seed);
    let bad = SaslAuth {
        mechanism: "SECURID".into(),
        credentials: Some(b"x".to_vec()),
    };
    let response = p.call(&mut h, connect_body(vec![], Some(bad)));
    assert_eq!(response.status, Status::AuthenticationRequired);
    assert_eq!(state(&h, &p), Some(SessionState::Joined));
    assert_eq!(p.call(&mut h, RequestBody::KeepAlive).status, Status::Ok);
    assert_eq!(h.snapshot().swarms[0].seeds, 1);
}

#[test]
fn join_moves_connected_to_joined_and_rejoin_updates_mode() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    let response = p.join(&mut h, "s", PeerMode::Leech);
    assert_eq!(response.swarm_results.len(), 1);
    assert_eq!(response.swarm_results[0].swarm_id, sid("s"));
    assert_eq!(state(&h, &p), Some(SessionState::Joined));
    // Re-JOIN of the same swarm: idempotent, updates the mode (LEECH became SEED).
    p.join(&mut h, "s", PeerMode::Seed);
    let snap = h.snapshot();
    assert_eq!((snap.swarms[0].seeds, snap.swarms[0].leeches), (1, 0));
    assert_eq!(snap.swarms[0].peers.len(), 1);
    // JOIN of another swarm while JOINED.
    p.join(&mut h, "t", PeerMode::LiveSeed);
    assert_eq!(h.snapshot().swarms.len(), 2);
    assert_eq!(state(&h, &p), Some(SessionState::Joined));
}

#[test]
fn seeds_get_no_list_and_leeches_do() {
    let mut h = Harness::new();
    populate(&mut h, "l", 3, "s", PeerMode::Leech);
    let mut seed = XmlPeer::direct("seed", "192.0.2.10");
    seed.connect(&mut h);
    let response = seed.join(&mut h, "s", PeerMode::Seed);
    assert!(response.swarm_results[0].peers.is_empty());
    let mut live = XmlPeer::direct("live", "192.0.2.11");
    live.connect(&mut h);
    assert!(
        live.join(&mut h, "s", PeerMode::LiveSeed).swarm_results[0]
            .peers
            .is_empty()
    );
    let mut leech = XmlPeer::direct("leech", "192.0.2.12");
    leech.connect(&mut h);
    let response = leech.join(&mut h, "s", PeerMode::Leech);
    assert_eq!(response.swarm_results[0].peers.len(), 5);
    // PeerInfo carries mode and at least one address.
    assert!(
        response.swarm_results[0]
            .peers
            .iter()
            .all(|p| p.mode.is_some() && !p.addresses.is_empty())
    );
}

#[test]
fn join_refused_over_swarm_limit_is_403_and_changes_nothing() {
    let mut h = Harness::with_config(Config {
        max_swarms_per_peer: 2,
        ..Config::default()
    });
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.join(&mut h, "a", PeerMode::Leech);
    p.join(&mut h, "b", PeerMode::Leech);
    let response = p.call(&mut h, join_body("c", PeerMode::Leech, None, 0));
    assert_eq!(response.status, Status::MessageForbidden);
    assert_eq!(h.snapshot().swarms.len(), 2);
    // Re-JOIN of a swarm it is already in is still fine at the limit.
    p.join(&mut h, "a", PeerMode::Seed);
    // From CONNECTED with a limit of zero: refused, stays CONNECTED.
    let mut h = Harness::with_config(Config {
        max_swarms_per_peer: 0,
        ..Config::default()
    });
    let mut q = XmlPeer::direct("q", "192.0.2.10");
    q.connect(&mut h);
    assert_eq!(
        q.call(&mut h, join_body("a", PeerMode::Leech, None, 0))
            .status,
        Status::MessageForbidden
    );
    assert_eq!(state(&h, &q), Some(SessionState::Connected));
}

#[test]
fn leave_rows() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.join(&mut h, "a", PeerMode::Leech);
    p.join(&mut h, "b", PeerMode::Leech);
    let mut other = XmlPeer::direct("other", "192.0.2.11");
    other.connect(&mut h);
    other.join(&mut h, "c", PeerMode::Seed);

    // LEAVE of a member swarm with swarms remaining: JOINED; the empty swarm is removed.
    assert_eq!(p.call(&mut h, leave_body("a")).status, Status::Ok);
    assert_eq!(state(&h, &p), Some(SessionState::Joined));
    let swarms: Vec<_> = h
        .snapshot()
        .swarms
        .into_iter()
        .map(|s| s.swarm_id)
        .collect();
    assert_eq!(swarms, vec![sid("b"), sid("c")]);
    // LEAVE of an existing swarm the peer is not in: 200, unchanged.
    assert_eq!(p.call(&mut h, leave_body("c")).status, Status::Ok);
    assert_eq!(h.snapshot().swarms[1].seeds, 1);
    // LEAVE of a swarm that does not exist: 404.
    assert_eq!(
        p.call(&mut h, leave_body("a")).status,
        Status::ObjectNotFound
    );
    // LEAVE of the last swarm: back to CONNECTED.
    assert_eq!(p.call(&mut h, leave_body("b")).status, Status::Ok);
    assert_eq!(state(&h, &p), Some(SessionState::Connected));
    // From CONNECTED: non-member 200, unknown 404.
    assert_eq!(p.call(&mut h, leave_body("c")).status, Status::Ok);
    assert_eq!(
        p.call(&mut h, leave_body("zzz")).status,
        Status::ObjectNotFound
    );
    assert_eq!(state(&h, &p), Some(SessionState::Connected));
}

#[test]
fn find_rows() {
    let mut h = Harness::new();
    populate(&mut h, "m", 4, "s", PeerMode::Leech);
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    // CONNECTED, FIND of an existing swarm it is not in: 403.
    assert_eq!(
        p.call(&mut h, find_body("s", None)).status,
        Status::MessageForbidden
    );
    // Unknown swarm: 404.
    assert_eq!(
        p.call(&mut h, find_body("nope", None)).status,
        Status::ObjectNotFound
    );
    p.join(&mut h, "s", PeerMode::Leech);
    let mut q = XmlPeer::direct("q", "192.0.2.11");
    q.connect(&mut h);
    q.join(&mut h, "alone", PeerMode::Seed);
    // JOINED, member swarm: list.
    let response = p.call(&mut h, find_body("s", None));
    assert_eq!(response.status, Status::Ok);
    assert_eq!(response.swarm_results[0].swarm_id, sid("s"));
    assert_eq!(peer_ids(&response).len(), 4);
    // JOINED, non-member existing swarm: 403; state unchanged.
    assert_eq!(
        p.call(&mut h, find_body("alone", None)).status,
        Status::MessageForbidden
    );
    assert_eq!(state(&h, &p), Some(SessionState::Joined));
    // A member alone in its swarm: 200 with no peers.
    let response = q.call(&mut h, find_body("alone", None));
    assert_eq!(response.status, Status::Ok);
    assert!(peer_ids(&response).is_empty());
}

#[test]
fn stat_report_stores_member_data_and_ignores_the_rest() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    // From CONNECTED: accepted, nothing to store.
    let response = p.call(&mut h, report_body(vec![stream_stats("s", 5, 6)]));
    assert_eq!(response.status, Status::Ok);
    assert_eq!(state(&h, &p), Some(SessionState::Connected));
    p.join(&mut h, "s", PeerMode::Leech);
    let mut other = XmlPeer::direct("o", "192.0.2.11");
    other.connect(&mut h);
    other.join(&mut h, "t", PeerMode::Seed);
    let mut map = ChunkMap::new(0, 25);
    for c in (0..16).chain(20..25) {
        map.insert(c);
    }
    let response = p.call(
        &mut h,
        report_body(vec![
            stream_stats("s", 1000, 2000),
            chunk_report("s", "clip", map.clone()),
            // Not a member of t: ignored, not an error.
            stream_stats("t", 9, 9),
            chunk_report("t", "clip", map),
        ]),
    );
    assert_eq!(response.status, Status::Ok);
    let snap = h.snapshot();
    let s = snap
        .swarms
        .iter()
        .find(|s| s.swarm_id == sid("s"))
        .expect("swarm s");
    assert_eq!(s.peers[0].uploaded_bytes, 1000);
    assert_eq!(s.peers[0].downloaded_bytes, 2000);
    assert_eq!(s.peers[0].available_bandwidth, 1000);
    assert_eq!(s.peers[0].chunks_held, 21);
    assert_eq!(s.chunk_availability.len(), 1);
    let a = &s.chunk_availability[0];
    assert_eq!(
        (a.clip.as_str(), a.first, a.last, a.chunks_available),
        ("clip", 0, 24, 21)
    );
    let t = snap
        .swarms
        .iter()
        .find(|s| s.swarm_id == sid("t"))
        .expect("swarm t");
    assert_eq!(t.peers[0].uploaded_bytes, 0);
    assert!(t.chunk_availability.is_empty());
}

fn join_from(swarm: &str, mode: PeerMode, clip: &str, from: u64) -> RequestBody {
    RequestBody::Join(Join {
        swarm_id: sid(swarm),
        mode,
        hints: NatHints::default(),
        peer_num: None,
        clip: Some(Clip {
            name: clip.into(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Audio,
                segments: vec![Segment::range(from, None), Segment::range(from + 50, None)],
            }),
        }),
        expire_time: 0,
    })
}

#[test]
fn join_start_point_is_kept_until_a_rejoin_changes_it() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    let start = |h: &Harness| h.snapshot().swarms[0].peers[0].start.clone();
    assert_eq!(
        p.call(&mut h, join_from("s", PeerMode::Leech, "clip", 120))
            .status,
        Status::Ok
    );
    assert_eq!(
        start(&h),
        Some(StartPoint {
            clip: "clip".into(),
            media: MediaType::Audio,
            chunk: 120,
        })
    );
    // A report does not move it; a re-JOIN from elsewhere does, and one without a Clip
    // clears it.
    p.call(
        &mut h,
        report_body(vec![chunk_report("s", "clip", ChunkMap::new(0, 8))]),
    );
    assert_eq!(start(&h).map(|s| s.chunk), Some(120));
    p.call(&mut h, join_from("s", PeerMode::Leech, "other", 7));
    assert_eq!(
        start(&h).map(|s| (s.clip, s.chunk)),
        Some(("other".into(), 7))
    );
    p.join(&mut h, "s", PeerMode::Leech);
    assert_eq!(start(&h), None);
}

#[test]
fn completed_members_are_listed_most_recent_first() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 4, "s", PeerMode::Leech);
    let mut full = ChunkMap::new(0, 8);
    for c in 0..8 {
        full.insert(c);
    }
    let mut partial = ChunkMap::new(0, 8);
    partial.insert(3);
    peers[3].call(&mut h, report_body(vec![chunk_report("s", "c", partial)]));
    let mut expected = Vec::new();
    for index in [1, 0, 2] {
        h.advance(10);
        peers[index].call(
            &mut h,
            report_body(vec![chunk_report("s", "c", full.clone())]),
        );
        expected.insert(0, (format!("m{index}"), Some(h.now)));
    }
    // Reporting the full map again keeps the first completion time.
    h.advance(10);
    peers[1].call(&mut h, report_body(vec![chunk_report("s", "c", full)]));
    let detail = h.swarm_detail("s").expect("swarm s exists");
    let listed: Vec<(String, Option<Timestamp>)> = detail
        .recently_completed
        .iter()
        .map(|p| (p.peer_id.as_str().to_owned(), p.completed_at))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn chunk_availability_is_the_union_over_members() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 2, "s", PeerMode::Leech);
    let mut a = ChunkMap::new(0, 10);
    a.insert(1);
    a.insert(2);
    let mut b = ChunkMap::new(5, 10);
    b.insert(2 + 5);
    b.insert(14);
    let b_copy = ChunkMap::new(0, 3);
    peers[0].call(&mut h, report_body(vec![chunk_report("s", "c", a)]));
    peers[1].call(&mut h, report_body(vec![chunk_report("s", "c", b)]));
    // A report for a different clip is counted apart.
    peers[1].call(&mut h, report_body(vec![chunk_report("s", "d", b_copy)]));
    let snap = h.snapshot();
    let availability = &snap.swarms[0].chunk_availability;
    assert_eq!(availability.len(), 2);
    assert_eq!(
        (
            availability[0].first,
            availability[0].last,
            availability[0].chunks_available
        ),
        (0, 14, 4)
    );
    assert_eq!(availability[1].chunks_available, 0);
}

#[test]
fn keepalive_and_disconnect_rows() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.join(&mut h, "a", PeerMode::Leech);
    p.join(&mut h, "b", PeerMode::Seed);
    assert_eq!(p.call(&mut h, RequestBody::KeepAlive).status, Status::Ok);
    assert_eq!(state(&h, &p), Some(SessionState::Joined));
    let response = p.call(&mut h, RequestBody::Disconnect);
    assert_eq!(response.status, Status::Ok);
    assert_eq!(state(&h, &p), None);
    assert!(h.snapshot().swarms.is_empty());
    assert_eq!(h.snapshot().sessions, 0);
    assert_eq!(
        p.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
}

#[test]
fn metrics_count_methods_and_statuses() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p1", "192.0.2.10");
    p.connect(&mut h);
    p.call(&mut h, leave_body("nope"));
    let snap = h.snapshot();
    assert_eq!(snap.requests_by_method[0], 1);
    assert_eq!(snap.requests_by_method[3], 1);
    assert_eq!(snap.responses_by_status[0], 1);
    assert_eq!(snap.responses_by_status[5], 1);
}

/// Every status the core produces, each from its canonical cause, with the TransactionID
/// echoed. (VERSION NOT SUPPORTED is the codecs' business; 500 and 503 come from the
/// server.)
#[test]
fn every_status_code_the_core_produces() {
    let mut h = Harness::new();
    let mut other = XmlPeer::direct("other", "192.0.2.2");
    other.connect(&mut h);
    other.join(&mut h, "theirs", PeerMode::Seed);
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    let cases = [
        (connect_body(vec![], None), Status::InvalidSyntax),
        (connect_body(vec![], Some(anonymous())), Status::Ok),
        (find_body("theirs", None), Status::MessageForbidden),
        (leave_body("nowhere"), Status::ObjectNotFound),
    ];
    for (body, status) in cases {
        let request = p.request(&mut h, body);
        let response = h.send(&p.ctx, &request);
        assert_eq!(response.status, status);
        assert_eq!(response.transaction_id, Some(request.transaction_id));
        if response.auth_token.is_some() {
            p.token = response.auth_token;
        }
    }
    p.token = Some(AuthToken::new("wrong").expect("token"));
    assert_eq!(
        p.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
}
