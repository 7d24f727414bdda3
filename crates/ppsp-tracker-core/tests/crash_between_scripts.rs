//! On Redis a JOIN runs two scripts on two slots: the session's (it names the membership),
//! then the swarm's (it adds the member). These tests build the state a tracker node that
//! dies between the two leaves behind, with the store's own first step, and show what the
//! requests that follow and the sweep make of it (docs/scaling.md, "Consistency").
//!
//! They run on Redis whatever `PPSP_TEST_STORE` says: one server of their own, or the
//! shared cluster when it names `redis-cluster`.

mod common;

use common::*;
use ppsp_tracker_core::ppsp_proto::{NatHints, PeerMode, RequestBody, Status};
use ppsp_tracker_core::store::{JoinSpec, SessionCheck, SessionKey};
use ppsp_tracker_core::{Config, SessionState};

/// Runs only the session's script of `peer`'s JOIN of `swarm`, as a node that dies right
/// after it would.
fn cut_join(h: &Harness, peer: &XmlPeer, swarm: &str, mode: PeerMode) {
    let store = h.redis_store().expect("a Redis store");
    let token = peer.token.as_ref().expect("connected");
    let generation = h
        .run(store.token_key())
        .expect("token key")
        .verify(&peer.id, token)
        .expect("the store's own token");
    let swarm_id = sid(swarm);
    let join = JoinSpec {
        swarm_id: &swarm_id,
        mode,
        deadline: None,
        start: None,
        hints: NatHints::default(),
    };
    let key = SessionKey {
        peer_id: &peer.id,
        check: SessionCheck::Generation(generation),
    };
    h.run(store.join_first_script_only(h.now, key, &join))
        .expect("the session's script");
}

/// The totals (counters) agree with the swarms as listed.
fn assert_totals_agree(h: &Harness) {
    let totals = h.totals();
    let view = h.snapshot();
    assert_eq!(totals.swarms as usize, view.swarms.len(), "swarms");
    let seeds: usize = view.swarms.iter().map(|s| s.seeds).sum();
    let leeches: usize = view.swarms.iter().map(|s| s.leeches).sum();
    assert_eq!(
        (totals.seeds as usize, totals.leeches as usize),
        (seeds, leeches),
        "members by mode"
    );
    for swarm in &view.swarms {
        assert_eq!(swarm.peers.len(), swarm.seeds + swarm.leeches, "{swarm:?}");
    }
}

fn listed_in(h: &Harness, swarm: &str) -> Vec<String> {
    h.snapshot()
        .swarms
        .iter()
        .find(|s| s.swarm_id == sid(swarm))
        .map(|s| s.peers.iter().map(|p| p.peer_id.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_cut_join_lists_nobody_and_the_retried_join_completes_it() {
    let mut h = Harness::on_redis_store(Config::default());
    let mut seed = XmlPeer::direct("seed", "192.0.2.10");
    seed.connect(&mut h);
    cut_join(&h, &seed, "s", PeerMode::Seed);

    // The session names the swarm; the swarm does not exist: nobody else sees the seed,
    // and no counter counted it.
    assert_eq!(h.session_state(&seed.id), Some(SessionState::Joined));
    assert!(h.snapshot().swarms.is_empty());
    assert_totals_agree(&h);

    let mut leech = XmlPeer::direct("leech", "192.0.2.11");
    leech.connect(&mut h);
    let response = leech.join(&mut h, "s", PeerMode::Leech);
    assert!(peer_ids(&response).is_empty(), "{response:?}");
    // The half-joined seed may FIND (its session says it is in the swarm) and sees the
    // swarm's members; its report for the swarm is ignored as for any swarm it is not in.
    let response = seed.call(&mut h, find_body("s", None));
    assert_eq!(response.status, Status::Ok);
    assert_eq!(peer_ids(&response), vec![leech.id.clone()]);
    let response = seed.call(&mut h, report_body(vec![stream_stats("s", 5, 6)]));
    assert_eq!(response.status, Status::Ok);
    assert_eq!(listed_in(&h, "s"), vec!["leech"]);
    assert_totals_agree(&h);

    // The seed never had its JOIN answered, so it sends it again (to any node): now it is
    // a member like any other.
    seed.join(&mut h, "s", PeerMode::Seed);
    assert_eq!(listed_in(&h, "s"), vec!["leech", "seed"]);
    let response = leech.call(&mut h, find_body("s", None));
    assert_eq!(peer_ids(&response), vec![seed.id.clone()]);
    assert_totals_agree(&h);
    assert_eq!(h.totals().seeds, 1);
}

#[test]
fn leave_disconnect_and_the_sweep_end_a_cut_join() {
    let mut h = Harness::on_redis_store(Config::default());
    let mut other = XmlPeer::direct("other", "192.0.2.9");
    other.connect(&mut h);
    other.join(&mut h, "a", PeerMode::Seed);

    // LEAVE of the half-joined swarm: 200, and the session no longer names it.
    let mut leaving = XmlPeer::direct("leaving", "192.0.2.10");
    leaving.connect(&mut h);
    cut_join(&h, &leaving, "a", PeerMode::Leech);
    assert_eq!(h.session_state(&leaving.id), Some(SessionState::Joined));
    assert_eq!(leaving.call(&mut h, leave_body("a")).status, Status::Ok);
    assert_eq!(h.session_state(&leaving.id), Some(SessionState::Connected));
    // The claim is gone from the session, so a FIND there is now refused.
    assert_eq!(
        leaving.call(&mut h, find_body("a", None)).status,
        Status::MessageForbidden
    );

    // DISCONNECT removes the session and the memberships it names, present or not.
    let mut gone = XmlPeer::direct("gone", "192.0.2.11");
    gone.connect(&mut h);
    gone.join(&mut h, "a", PeerMode::Leech);
    cut_join(&h, &gone, "b", PeerMode::Seed);
    assert_eq!(
        gone.call(&mut h, RequestBody::Disconnect).status,
        Status::Ok
    );
    assert_eq!(h.session_state(&gone.id), None);
    assert_eq!(listed_in(&h, "a"), vec!["other"]);

    // A peer that goes silent after a cut JOIN is swept with its session.
    let mut silent = XmlPeer::direct("silent", "192.0.2.12");
    silent.connect(&mut h);
    silent.join(&mut h, "a", PeerMode::Leech);
    cut_join(&h, &silent, "c", PeerMode::Seed);
    let idle = Config::default().session_idle_timeout.as_secs();
    h.advance(idle / 2);
    other.call(&mut h, RequestBody::KeepAlive);
    h.advance(idle / 2 + 1);
    let swept = h.sweep();
    assert_eq!(swept.sessions_expired, 2, "{swept:?}");
    assert_eq!(h.session_state(&silent.id), None);
    assert_eq!(listed_in(&h, "a"), vec!["other"]);
    assert_eq!(h.totals().sessions, 1);
    assert_totals_agree(&h);
}
