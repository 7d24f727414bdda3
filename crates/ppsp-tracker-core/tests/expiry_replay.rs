//! Timers (idle sessions, ExpireTime) and the retransmission cache.

mod common;

use std::time::Duration;

use common::*;
use ppsp_tracker_core::ppsp_proto::{PeerMode, RequestBody, Status, TransactionId};
use ppsp_tracker_core::{Config, SessionState, SweepReport};

#[test]
fn idle_sessions_expire_on_sweep_and_valid_requests_keep_them() {
    let mut h = Harness::new();
    let mut idle = XmlPeer::direct("idle", "192.0.2.1");
    idle.connect(&mut h);
    idle.join(&mut h, "s", PeerMode::Seed);
    let mut busy = XmlPeer::direct("busy", "192.0.2.2");
    busy.connect(&mut h);
    busy.join(&mut h, "s", PeerMode::Leech);

    for _ in 0..5 {
        h.advance(60);
        assert_eq!(busy.call(&mut h, RequestBody::KeepAlive).status, Status::Ok);
        let report = h.sweep();
        if h.session_state(&idle.id).is_some() {
            assert_eq!(report, SweepReport::default());
        }
    }
    // 300 s later: idle is gone (after 180 s), busy is alive.
    assert_eq!(h.session_state(&idle.id), None);
    assert_eq!(h.session_state(&busy.id), Some(SessionState::Joined));
    let snap = h.snapshot();
    assert_eq!(snap.sessions, 1);
    assert_eq!(snap.sessions_expired_total, 1);
    assert_eq!(snap.swarms[0].peers.len(), 1);
    assert_eq!(
        idle.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
}

#[test]
fn sweep_reports_exact_counts_at_the_deadline() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.join(&mut h, "a", PeerMode::Seed);
    p.join(&mut h, "b", PeerMode::Seed);
    h.advance(179);
    assert_eq!(h.sweep(), SweepReport::default());
    h.advance(1);
    let report = h.sweep();
    assert_eq!(report.sessions_expired, 1);
    assert!(h.snapshot().swarms.is_empty());
    // Nothing left to do.
    assert_eq!(h.sweep(), SweepReport::default());
}

#[test]
fn expired_but_unswept_session_is_refused() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    h.advance(181);
    assert_eq!(
        p.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired
    );
    // Reconnecting works at once.
    p.connect(&mut h);
    assert_eq!(p.call(&mut h, RequestBody::KeepAlive).status, Status::Ok);
    assert_eq!(h.sweep().sessions_expired, 0);
}

#[test]
fn failed_requests_do_not_reset_the_inactivity_timer() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    let mut other = XmlPeer::direct("o", "192.0.2.2");
    other.connect(&mut h);
    other.join(&mut h, "theirs", PeerMode::Seed);
    for _ in 0..3 {
        h.advance(50);
        // 403 and 404: valid token, but the request fails.
        assert_eq!(
            p.call(&mut h, find_body("theirs", None)).status,
            Status::MessageForbidden
        );
        assert_eq!(
            p.call(&mut h, leave_body("nothing")).status,
            Status::ObjectNotFound
        );
        assert_eq!(
            other.call(&mut h, RequestBody::KeepAlive).status,
            Status::Ok
        );
    }
    h.advance(31);
    assert_eq!(h.sweep().sessions_expired, 1);
    assert_eq!(h.session_state(&p.id), None);
    assert!(h.session_state(&other.id).is_some());
}

#[test]
fn every_valid_method_resets_the_timer() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    let bodies = [
        join_body("s", PeerMode::Leech, None, 0),
        find_body("s", None),
        report_body(vec![stream_stats("s", 1, 2)]),
        RequestBody::KeepAlive,
        leave_body("s"),
    ];
    for body in bodies {
        h.advance(170);
        assert_eq!(p.call(&mut h, body).status, Status::Ok);
        h.sweep();
    }
    h.advance(170);
    assert_eq!(h.sweep().sessions_expired, 0);
    assert!(h.session_state(&p.id).is_some());
}

#[test]
fn expire_time_removes_the_membership_only() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    assert_eq!(
        p.call(&mut h, join_body("short", PeerMode::Leech, None, 30))
            .status,
        Status::Ok
    );
    assert_eq!(
        p.call(&mut h, join_body("long", PeerMode::Leech, None, 0))
            .status,
        Status::Ok
    );
    h.advance(29);
    assert_eq!(h.sweep().memberships_expired, 0);
    h.advance(1);
    let report = h.sweep();
    assert_eq!(report.memberships_expired, 1);
    assert_eq!(report.sessions_expired, 0);
    let swarms: Vec<_> = h
        .snapshot()
        .swarms
        .into_iter()
        .map(|s| s.swarm_id)
        .collect();
    assert_eq!(swarms, vec![sid("long")]);
    assert_eq!(h.session_state(&p.id), Some(SessionState::Joined));
    // FIND in the expired swarm: it no longer exists.
    assert_eq!(
        p.call(&mut h, find_body("short", None)).status,
        Status::ObjectNotFound
    );
    // Last membership expiring takes the session back to CONNECTED.
    assert_eq!(p.call(&mut h, leave_body("long")).status, Status::Ok);
    assert_eq!(
        p.call(&mut h, join_body("x", PeerMode::Seed, None, 10))
            .status,
        Status::Ok
    );
    h.advance(10);
    assert_eq!(h.sweep().memberships_expired, 1);
    assert_eq!(h.session_state(&p.id), Some(SessionState::Connected));
}

#[test]
fn rejoin_moves_or_clears_the_expire_time() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.call(&mut h, join_body("s", PeerMode::Leech, None, 20));
    h.advance(10);
    // Re-JOIN without ExpireTime: the old deadline no longer applies.
    p.call(&mut h, join_body("s", PeerMode::Seed, None, 0));
    h.advance(15);
    assert_eq!(h.sweep().memberships_expired, 0);
    p.call(&mut h, join_body("s", PeerMode::Seed, None, 5));
    h.advance(5);
    assert_eq!(h.sweep().memberships_expired, 1);
}

#[test]
fn expire_time_is_clamped() {
    let mut h = Harness::with_config(Config {
        max_expire_time: Duration::from_secs(100),
        session_idle_timeout: Duration::from_secs(10_000),
        ..Config::default()
    });
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.call(&mut h, join_body("s", PeerMode::Leech, None, 1_000_000));
    h.advance(100);
    assert_eq!(h.sweep().memberships_expired, 1);
}

#[test]
fn sweep_leaves_a_replacing_session_alone() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    p.call(&mut h, join_body("s", PeerMode::Leech, None, 50));
    h.advance(100);
    // A new CONNECT replaces the session; the old timers must not touch the new one.
    p.connect(&mut h);
    p.join(&mut h, "s", PeerMode::Leech);
    h.advance(100);
    let report = h.sweep();
    assert_eq!(report, SweepReport::default());
    assert_eq!(h.session_state(&p.id), Some(SessionState::Joined));
}

#[test]
fn retransmission_replays_the_cached_answer_without_acting_twice() {
    let mut h = Harness::new();
    populate(&mut h, "m", 100, "s", PeerMode::Leech);
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    let join = p.request(&mut h, join_body("s", PeerMode::Leech, Some(10), 0));
    let first = h.send(&p.ctx, &join);
    // A random selection would differ; the replay is byte-for-byte the same answer.
    for _ in 0..3 {
        assert_eq!(h.send(&p.ctx, &join), first);
    }
    // LEAVE, then its retransmission: same 200, and the membership count is not touched
    // twice (the peer re-joins in between, and the replay must not remove it again).
    let leave = p.request(&mut h, leave_body("s"));
    assert_eq!(h.send(&p.ctx, &leave).status, Status::Ok);
    p.join(&mut h, "s", PeerMode::Seed);
    assert_eq!(h.send(&p.ctx, &leave).status, Status::Ok);
    assert_eq!(h.session_state(&p.id), Some(SessionState::Joined));
    assert_eq!(h.snapshot().swarms[0].seeds, 1);
}

#[test]
fn finds_are_answered_afresh_and_leave_the_cache_to_state_changes() {
    // Room for two answers of 20 peers in each of the sixteen shards.
    let mut h = Harness::with_config(Config {
        replay_cache_bytes: 16 * 8192,
        ..Config::default()
    });
    populate(&mut h, "m", 200, "s", PeerMode::Leech);
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    let join = p.request(&mut h, join_body("s", PeerMode::Leech, Some(20), 0));
    let joined = h.send(&p.ctx, &join);
    assert_eq!(joined.status, Status::Ok);
    // A retransmitted FIND is a new draw from the swarm, not a copy of the first answer.
    let find = p.request(&mut h, find_body("s", Some(20)));
    let lists: Vec<_> = (0..8).map(|_| peer_ids(&h.send(&p.ctx, &find))).collect();
    assert!(lists.iter().all(|l| l.len() == 20));
    assert!(
        lists.windows(2).any(|w| w[0] != w[1]),
        "eight draws of 20 from 200 all equal"
    );
    // A thousand FINDs later the JOIN's answer is still there for its retransmission.
    for _ in 0..1000 {
        p.call(&mut h, find_body("s", Some(20)));
    }
    assert_eq!(h.send(&p.ctx, &join), joined);
}

#[test]
fn same_transaction_id_different_request_is_invalid_syntax() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    let mut request = p.request(&mut h, join_body("a", PeerMode::Leech, None, 0));
    assert_eq!(h.send(&p.ctx, &request).status, Status::Ok);
    request.body = join_body("b", PeerMode::Leech, None, 0);
    let response = h.send(&p.ctx, &request);
    assert_eq!(response.status, Status::InvalidSyntax);
    assert_eq!(
        response.transaction_id,
        Some(request.transaction_id.clone())
    );
    // Nothing was joined.
    assert_eq!(h.snapshot().swarms.len(), 1);
}

#[test]
fn connect_retransmission_returns_the_same_token() {
    let mut h = Harness::new();
    let p = XmlPeer::direct("p", "192.0.2.1");
    let connect = p.request(&mut h, connect_body(vec![], Some(anonymous())));
    let first = h.send(&p.ctx, &connect);
    assert_eq!(first.status, Status::Ok);
    let again = h.send(&p.ctx, &connect);
    assert_eq!(again.auth_token, first.auth_token);
    // A fresh CONNECT (new TransactionID) gets a new token.
    let fresh = p.request(&mut h, connect_body(vec![], Some(anonymous())));
    assert_ne!(h.send(&p.ctx, &fresh).auth_token, first.auth_token);
}

#[test]
fn replay_cache_is_bounded_in_bytes_and_time() {
    // Room for about one answer in each of the cache's sixteen shards.
    let mut h = Harness::with_config(Config {
        replay_cache_bytes: 16 * 400,
        ..Config::default()
    });
    let mut p = XmlPeer::direct("p", "192.0.2.1");
    p.connect(&mut h);
    let old = p.request(&mut h, join_body("a", PeerMode::Leech, None, 0));
    h.send(&p.ctx, &old);
    // Enough newer answers that every shard, the old answer's included, is refilled
    // (a shard missed by all of them: (15/16)^400, about 6e-12).
    for _ in 0..400 {
        p.call(&mut h, RequestBody::KeepAlive);
    }
    // Pushed out of the cache: the same TransactionID with another body is accepted.
    let mut reused = old.clone();
    reused.body = join_body("b", PeerMode::Leech, None, 0);
    assert_eq!(h.send(&p.ctx, &reused).status, Status::Ok);

    // Time: after the TTL the ID may be reused.
    let request = p.request(&mut h, leave_body("a"));
    h.send(&p.ctx, &request);
    h.advance(61);
    let mut later = request.clone();
    later.body = RequestBody::KeepAlive;
    assert_eq!(h.send(&p.ctx, &later).status, Status::Ok);
}

#[test]
fn transaction_ids_are_scoped_per_peer() {
    let mut h = Harness::new();
    let mut a = XmlPeer::direct("a", "192.0.2.1");
    let mut b = XmlPeer::direct("b", "192.0.2.2");
    a.connect(&mut h);
    b.connect(&mut h);
    let tid = TransactionId::numeric(7);
    let mut ra = a.request(&mut h, join_body("x", PeerMode::Seed, None, 0));
    ra.transaction_id = tid.clone();
    let mut rb = b.request(&mut h, join_body("y", PeerMode::Seed, None, 0));
    rb.transaction_id = tid;
    assert_eq!(h.send(&a.ctx, &ra).status, Status::Ok);
    assert_eq!(h.send(&b.ctx, &rb).status, Status::Ok);
    assert_eq!(h.snapshot().swarms.len(), 2);
}
