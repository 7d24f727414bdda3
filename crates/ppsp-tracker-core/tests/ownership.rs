//! Session ownership: a live session is replaced only by its owner, and an unauthenticated
//! JSON PeerID belongs to the address it first registered from. A stranger's attempt is
//! refused with 403 and changes nothing: the victim's session, memberships and token stay.

mod common;

use std::sync::Arc;

use common::*;
use ppsp_tracker_core::ppsp_proto::{
    PeerId, PeerMode, Request, RequestBody, SaslAuth, Status, SwarmActionKind,
};
use ppsp_tracker_core::{AuthError, Authenticator, Config, SessionState};

/// Accepts ANONYMOUS, and PLAIN with the password "right".
struct Passwords;

impl Authenticator for Passwords {
    fn authenticate(
        &self,
        _peer_id: &PeerId,
        auth: Option<&SaslAuth>,
        _secure_channel: bool,
    ) -> Result<(), AuthError> {
        match auth {
            None => Ok(()),
            Some(sasl) if sasl.mechanism == "ANONYMOUS" => Ok(()),
            Some(sasl) if sasl.credentials.as_deref() == Some(b"\0victim\0right") => Ok(()),
            Some(_) => Err(AuthError::BadCredentials),
        }
    }
}

fn plain(password: &str) -> SaslAuth {
    SaslAuth {
        mechanism: "PLAIN".into(),
        credentials: Some(format!("\0victim\0{password}").into_bytes()),
    }
}

/// The victim connected from 192.0.2.1, joined "s" as SEED, and is listed to others.
fn victim(h: &mut Harness) -> XmlPeer {
    let mut victim = XmlPeer::direct("victim", "192.0.2.1");
    victim.connect(h);
    victim.join(h, "s", PeerMode::Seed);
    victim
}

/// The victim's session, membership and token are as before.
fn intact(h: &mut Harness, victim: &XmlPeer) {
    assert_eq!(h.session_state(&victim.id), Some(SessionState::Joined));
    assert_eq!(
        victim.call(h, RequestBody::KeepAlive).status,
        Status::Ok,
        "the victim's token still works"
    );
    let mut other = XmlPeer::direct("observer", "192.0.2.50");
    other.connect(h);
    let listed = other.call(h, join_body("s", PeerMode::Leech, None, 0));
    assert_eq!(peer_ids(&listed), vec![victim.id.clone()]);
    let listed = &listed.swarm_results[0].peers[0];
    assert_eq!(listed.addresses[0].ip, victim.ctx.observed.ip());
}

#[test]
fn an_anonymous_connect_from_elsewhere_cannot_replace_a_live_session() {
    let mut h = Harness::new();
    let victim = victim(&mut h);
    let attacker = XmlPeer::direct("victim", "198.51.100.66");
    let refused = attacker.call(&mut h, connect_body(vec![], Some(anonymous())));
    assert_eq!(refused.status, Status::MessageForbidden);
    assert_eq!(refused.auth_token, None);
    intact(&mut h, &victim);
}

#[test]
fn the_same_address_may_replace_its_own_session() {
    // A peer that lost its token (restarted) re-CONNECTs from where it was.
    let mut h = Harness::new();
    let old = victim(&mut h);
    let mut again = XmlPeer::direct("victim", "192.0.2.1");
    again.connect(&mut h);
    assert_ne!(again.token, old.token);
    assert_eq!(h.session_state(&again.id), Some(SessionState::Connected));
}

#[test]
fn the_current_token_proves_ownership_from_any_address() {
    let mut h = Harness::new();
    let old = victim(&mut h);
    let mut moved = XmlPeer::direct("victim", "203.0.113.7");
    moved.token = old.token.clone();
    let answer = moved.call(&mut h, connect_body(vec![], Some(anonymous())));
    assert_eq!(answer.status, Status::Ok);
    assert_ne!(answer.auth_token, old.token);
    // A stale token does not.
    let mut stale = XmlPeer::direct("victim", "203.0.113.8");
    stale.token = old.token;
    let refused = stale.call(&mut h, connect_body(vec![], Some(anonymous())));
    assert_eq!(refused.status, Status::MessageForbidden);
}

#[test]
fn verified_credentials_replace_the_session_and_wrong_ones_change_nothing() {
    let mut h = Harness::with_authenticator(Config::default(), 42, Arc::new(Passwords));
    let victim = victim(&mut h);
    let guesser = XmlPeer::direct("victim", "198.51.100.66");
    let wrong = guesser.call(&mut h, connect_body(vec![], Some(plain("wrong"))));
    assert_eq!(wrong.status, Status::AuthenticationRequired);
    intact(&mut h, &victim);
    let owner = XmlPeer::direct("victim", "203.0.113.9");
    let right = owner.call(&mut h, connect_body(vec![], Some(plain("right"))));
    assert_eq!(right.status, Status::Ok);
    assert_eq!(
        victim.call(&mut h, RequestBody::KeepAlive).status,
        Status::AuthenticationRequired,
        "the replaced session's token is gone"
    );
}

#[test]
fn an_expired_session_can_be_taken_by_anyone() {
    let mut h = Harness::new();
    let _victim = victim(&mut h);
    h.advance(181);
    let mut newcomer = XmlPeer::direct("victim", "198.51.100.66");
    newcomer.connect(&mut h);
}

#[test]
fn a_retransmitted_connect_is_not_answered_to_another_address() {
    let mut h = Harness::new();
    let owner = XmlPeer::direct("victim", "192.0.2.1");
    let connect = owner.request(&mut h, connect_body(vec![], Some(anonymous())));
    let first = h.send(&owner.ctx, &connect);
    assert_eq!(first.status, Status::Ok);
    // The same bytes from another address: no cached token, and no takeover.
    let copy: Request = connect.clone();
    let stranger = xml_ctx("198.51.100.66:40000");
    let answer = h.send(&stranger, &copy);
    assert_eq!(answer.status, Status::MessageForbidden);
    assert_eq!(answer.auth_token, None);
    // The owner's retransmission still gets its token.
    assert_eq!(h.send(&owner.ctx, &connect).auth_token, first.auth_token);
}

#[test]
fn an_unauthenticated_json_peer_id_belongs_to_its_first_address() {
    let mut h = Harness::new();
    let here = json_ctx("192.0.2.1:40000");
    let elsewhere = json_ctx("198.51.100.66:40000");
    let tid = h.tid();
    let join = json_connect(
        "viewer",
        &[("tv", SwarmActionKind::Join, PeerMode::Leech)],
        None,
        tid,
    );
    assert_eq!(h.send(&here, &join).status, Status::Ok);

    // From elsewhere: no LEAVE, no stats, no FIND, no re-registration.
    let tid = h.tid();
    let leave = json_connect(
        "viewer",
        &[("tv", SwarmActionKind::Leave, PeerMode::Leech)],
        None,
        tid,
    );
    assert_eq!(h.send(&elsewhere, &leave).status, Status::MessageForbidden);
    let stats = Request {
        peer_id: pid("viewer"),
        auth_token: None,
        transaction_id: h.tid(),
        body: report_body(vec![stream_stats("tv", 1 << 60, 0)]),
    };
    assert_eq!(h.send(&elsewhere, &stats).status, Status::MessageForbidden);
    let find = Request {
        peer_id: pid("viewer"),
        auth_token: None,
        transaction_id: h.tid(),
        body: find_body("tv", None),
    };
    assert_eq!(h.send(&elsewhere, &find).status, Status::MessageForbidden);
    let view = h.snapshot();
    assert_eq!(view.swarms[0].peers.len(), 1);
    assert_eq!(view.swarms[0].peers[0].uploaded_bytes, 0);

    // The owner is unaffected, and a JSON peer the HTTP layer authenticated may move.
    assert_eq!(h.send(&here, &find).status, Status::Ok);
    let mut proven = elsewhere.clone();
    proven.authenticated = true;
    assert_eq!(h.send(&proven, &find).status, Status::Ok);
    let tid = h.tid();
    let moved = json_connect(
        "viewer",
        &[("radio", SwarmActionKind::Join, PeerMode::Seed)],
        None,
        tid,
    );
    assert_eq!(h.send(&proven, &moved).status, Status::Ok);
}
