//! RFC 7846 flows: CONNECT with swarm actions (Table 6), FIND, STAT_REPORT, keep-alive,
//! dialect separation, and XML and JSON peers sharing swarms.

mod common;

use SwarmActionKind::{Join, Leave};
use common::*;
use ppsp_tracker_core::ppsp_proto::SwarmActionKind;
use ppsp_tracker_core::ppsp_proto::{
    AbilityNat, Find, NatHints, PeerMode, PeerNum, Request, RequestBody, Response, StatReport,
    Status,
};
use ppsp_tracker_core::{Config, Format, SessionState};

fn ctx() -> ppsp_tracker_core::RequestContext {
    json_ctx("198.51.100.77:40112")
}

fn connect(h: &mut Harness, peer: &str, actions: &[(&str, SwarmActionKind, PeerMode)]) -> Response {
    let tid = h.tid();
    let request = json_connect(peer, actions, None, tid);
    h.send(&ctx(), &request)
}

fn results(response: &Response) -> Vec<(String, bool, usize)> {
    response
        .swarm_results
        .iter()
        .map(|r| (r.swarm_id.to_string(), r.ok, r.peers.len()))
        .collect()
}

fn json_request(h: &mut Harness, peer: &str, body: RequestBody) -> Request {
    Request {
        peer_id: pid(peer),
        auth_token: None,
        transaction_id: h.tid(),
        body,
    }
}

fn find(h: &mut Harness, peer: &str, swarm: &str, peer_num: Option<PeerNum>) -> Response {
    let body = RequestBody::Find(Find {
        swarm_id: sid(swarm),
        peer_num,
        hints: NatHints::default(),
        clip: None,
    });
    let request = json_request(h, peer, body);
    h.send(&ctx(), &request)
}

#[test]
fn table6_leech_join_from_start_registers_and_lists() {
    let mut h = Harness::new();
    for i in 0..3 {
        assert_eq!(
            connect(&mut h, &format!("s{i}"), &[("tv", Join, PeerMode::Seed)]).status,
            Status::Ok
        );
    }
    let response = connect(&mut h, "leech", &[("tv", Join, PeerMode::Leech)]);
    assert_eq!(response.status, Status::Ok);
    assert_eq!(results(&response), vec![("tv".into(), true, 3)]);
    // JSON peer_info: exactly one address each.
    assert!(
        response.swarm_results[0]
            .peers
            .iter()
            .all(|p| p.addresses.len() == 1)
    );
    // Reflexive peer_addr: the observed address.
    assert_eq!(response.reflexive_addresses.len(), 1);
    assert_eq!(response.reflexive_addresses[0].port, 40112);
    assert_eq!(h.session_state(&pid("leech")), Some(SessionState::Joined));
}

#[test]
fn seeder_join_gets_no_list_unless_it_asks() {
    let mut h = Harness::new();
    connect(&mut h, "a", &[("tv", Join, PeerMode::Seed)]);
    let response = connect(&mut h, "b", &[("tv", Join, PeerMode::Seed)]);
    assert_eq!(results(&response), vec![("tv".into(), true, 0)]);
    let tid = h.tid();
    let request = json_connect(
        "c",
        &[("tv", Join, PeerMode::Seed)],
        Some(PeerNum::count(5)),
        tid,
    );
    let response = h.send(&ctx(), &request);
    assert_eq!(results(&response), vec![("tv".into(), true, 2)]);
}

#[test]
fn table6_seeder_joins_n_swarms_then_leaves_all_ending_registration() {
    let mut h = Harness::new();
    let response = connect(
        &mut h,
        "edge",
        &[
            ("a", Join, PeerMode::Seed),
            ("b", Join, PeerMode::Seed),
            ("c", Join, PeerMode::Seed),
        ],
    );
    assert_eq!(results(&response).len(), 3);
    assert!(results(&response).iter().all(|r| r.1));
    assert_eq!(h.snapshot().swarms.len(), 3);
    // Partial LEAVE keeps TRACKING.
    let response = connect(&mut h, "edge", &[("a", Leave, PeerMode::Seed)]);
    assert_eq!(results(&response), vec![("a".into(), true, 0)]);
    assert_eq!(h.session_state(&pid("edge")), Some(SessionState::Joined));
    // Leaving the rest ends the registration.
    let response = connect(
        &mut h,
        "edge",
        &[("b", Leave, PeerMode::Seed), ("c", Leave, PeerMode::Seed)],
    );
    assert_eq!(response.status, Status::Ok);
    assert_eq!(
        results(&response),
        vec![("b".into(), true, 0), ("c".into(), true, 0)]
    );
    assert_eq!(h.session_state(&pid("edge")), None);
    assert!(h.snapshot().swarms.is_empty());
    // Afterwards FIND is refused: not registered.
    assert_eq!(
        find(&mut h, "edge", "a", None).status,
        Status::MessageForbidden
    );
}

#[test]
fn table6_leave_or_join_plus_leave_from_start_is_forbidden() {
    let mut h = Harness::new();
    connect(&mut h, "other", &[("old", Join, PeerMode::Seed)]);
    let response = connect(&mut h, "new", &[("old", Leave, PeerMode::Leech)]);
    assert_eq!(response.status, Status::MessageForbidden);
    assert!(response.swarm_results.is_empty());
    let response = connect(
        &mut h,
        "new",
        &[
            ("old", Leave, PeerMode::Leech),
            ("tv", Join, PeerMode::Leech),
        ],
    );
    assert_eq!(response.status, Status::MessageForbidden);
    assert_eq!(h.session_state(&pid("new")), None);
    assert_eq!(h.snapshot().swarms.len(), 1);
}

#[test]
fn table6_channel_switch_in_one_connect() {
    let mut h = Harness::new();
    connect(&mut h, "src", &[("sports", Join, PeerMode::Seed)]);
    connect(&mut h, "viewer", &[("news", Join, PeerMode::Leech)]);
    // JOIN listed before LEAVE still works: LEAVEs are applied first.
    let response = connect(
        &mut h,
        "viewer",
        &[
            ("sports", Join, PeerMode::Leech),
            ("news", Leave, PeerMode::Leech),
        ],
    );
    assert_eq!(response.status, Status::Ok);
    assert_eq!(
        results(&response),
        vec![("sports".into(), true, 1), ("news".into(), true, 0)]
    );
    let swarms: Vec<_> = h
        .snapshot()
        .swarms
        .into_iter()
        .map(|s| s.swarm_id)
        .collect();
    assert_eq!(swarms, vec![sid("sports")]);
    assert_eq!(h.session_state(&pid("viewer")), Some(SessionState::Joined));
}

#[test]
fn seeder_rejoin_while_tracking_is_forbidden_and_keeps_tracking() {
    let mut h = Harness::new();
    connect(&mut h, "edge", &[("a", Join, PeerMode::Seed)]);
    let response = connect(&mut h, "edge", &[("a", Join, PeerMode::Seed)]);
    assert_eq!(response.status, Status::MessageForbidden);
    assert_eq!(h.session_state(&pid("edge")), Some(SessionState::Joined));
    // A new swarm while tracking is fine for a SEEDER.
    let response = connect(&mut h, "edge", &[("b", Join, PeerMode::Seed)]);
    assert_eq!(response.status, Status::Ok);
}

#[test]
fn unlisted_combinations_get_per_swarm_results() {
    let mut h = Harness::new();
    connect(&mut h, "viewer", &[("one", Join, PeerMode::Leech)]);
    // LEECH JOIN of a second swarm without LEAVE, plus a LEAVE of an unknown swarm, plus a
    // valid SEEDER JOIN: only the last is valid.
    let response = connect(
        &mut h,
        "viewer",
        &[
            ("two", Join, PeerMode::Leech),
            ("no-such-swarm", Leave, PeerMode::Leech),
            ("three", Join, PeerMode::Seed),
        ],
    );
    assert_eq!(response.status, Status::Ok);
    assert_eq!(
        results(&response),
        vec![
            ("two".into(), false, 0),
            ("no-such-swarm".into(), false, 0),
            ("three".into(), true, 0)
        ]
    );
    // Nothing valid at all: 03, and the registration survives.
    let response = connect(&mut h, "viewer", &[("two", Join, PeerMode::Leech)]);
    assert_eq!(response.status, Status::MessageForbidden);
    assert_eq!(response.status.json_error_code(), 3);
    assert_eq!(h.session_state(&pid("viewer")), Some(SessionState::Joined));
}

#[test]
fn empty_swarm_actions_is_bad_request() {
    let mut h = Harness::new();
    let response = connect(&mut h, "p", &[]);
    assert_eq!(response.status, Status::InvalidSyntax);
    assert_eq!(response.status.json_error_code(), 1);
}

#[test]
fn find_rules() {
    let mut h = Harness::new();
    for i in 0..40 {
        connect(&mut h, &format!("s{i}"), &[("tv", Join, PeerMode::Seed)]);
    }
    connect(&mut h, "v", &[("tv", Join, PeerMode::Leech)]);
    connect(&mut h, "w", &[("radio", Join, PeerMode::Leech)]);
    let response = find(&mut h, "v", "tv", None);
    assert_eq!(response.status, Status::Ok);
    assert_eq!(results(&response), vec![("tv".into(), true, 20)]);
    // peer_count is clamped to 29.
    let response = find(&mut h, "v", "tv", Some(PeerNum::count(100)));
    assert_eq!(results(&response), vec![("tv".into(), true, 29)]);
    // Unknown swarm and not-joined swarm: both 03.
    let unknown = find(&mut h, "v", "nope", None);
    assert_eq!(unknown.status.json_error_code(), 3);
    assert!(unknown.swarm_results.is_empty());
    assert_eq!(find(&mut h, "v", "radio", None).status.json_error_code(), 3);
    // Unregistered peer: 03.
    assert_eq!(
        find(&mut h, "stranger", "tv", None).status,
        Status::MessageForbidden
    );
}

#[test]
fn json_peer_count_clamp_respects_a_lower_config_cap() {
    let mut h = Harness::with_config(Config {
        peer_num_max: 10,
        ..Config::default()
    });
    for i in 0..20 {
        connect(&mut h, &format!("s{i}"), &[("tv", Join, PeerMode::Seed)]);
    }
    connect(&mut h, "v", &[("tv", Join, PeerMode::Leech)]);
    assert_eq!(
        results(&find(&mut h, "v", "tv", Some(PeerNum::count(25))))[0].2,
        10
    );
}

#[test]
fn stat_report_keepalive_and_stats() {
    let mut h = Harness::new();
    connect(&mut h, "v", &[("tv", Join, PeerMode::Leech)]);
    // Keep-alive: empty report.
    h.advance(170);
    let request = json_request(&mut h, "v", RequestBody::StatReport(StatReport::default()));
    let response = h.send(&ctx(), &request);
    assert_eq!(response.status, Status::Ok);
    assert!(response.swarm_results.is_empty());
    h.advance(170);
    assert_eq!(h.sweep().sessions_expired, 0);
    // Stream stats: stored for member swarms, result 1 for others.
    let request = json_request(
        &mut h,
        "v",
        report_body(vec![
            stream_stats("tv", 10, 20),
            stream_stats("other", 1, 1),
        ]),
    );
    let response = h.send(&ctx(), &request);
    assert_eq!(
        results(&response),
        vec![("tv".into(), true, 0), ("other".into(), false, 0)]
    );
    assert_eq!(h.snapshot().swarms[0].peers[0].downloaded_bytes, 20);
    // From an unregistered peer: 03.
    let request = json_request(
        &mut h,
        "ghost",
        RequestBody::StatReport(StatReport::default()),
    );
    assert_eq!(h.send(&ctx(), &request).status, Status::MessageForbidden);
    // Without keep-alives the registration expires.
    h.advance(181);
    assert_eq!(h.sweep().sessions_expired, 1);
    assert!(h.snapshot().swarms.is_empty());
}

#[test]
fn xml_only_methods_are_bad_requests_in_json() {
    let mut h = Harness::new();
    connect(&mut h, "v", &[("tv", Join, PeerMode::Leech)]);
    for body in [
        RequestBody::KeepAlive,
        RequestBody::Disconnect,
        leave_body("tv"),
    ] {
        let request = json_request(&mut h, "v", body);
        assert_eq!(h.send(&ctx(), &request).status, Status::InvalidSyntax);
    }
}

#[test]
fn reflexive_address_omitted_for_stun_and_turn() {
    let mut h = Harness::new();
    for (i, ability) in [AbilityNat::Stun, AbilityNat::Turn, AbilityNat::NoNat]
        .into_iter()
        .enumerate()
    {
        let mut peer_num = PeerNum::count(5);
        peer_num.ability_nat = Some(ability);
        let tid = h.tid();
        let request = json_connect(
            &format!("p{i}"),
            &[("tv", Join, PeerMode::Leech)],
            Some(peer_num),
            tid,
        );
        let response = h.send(&ctx(), &request);
        assert_eq!(response.status, Status::Ok);
        assert_eq!(
            response.reflexive_addresses.is_empty(),
            ability != AbilityNat::NoNat
        );
    }
}

#[test]
fn turn_requester_gets_reachable_peers_first() {
    let mut h = Harness::new();
    for i in 0..30 {
        let mut peer_num = PeerNum::count(1);
        peer_num.ability_nat = Some(if i < 3 {
            AbilityNat::NoNat
        } else {
            AbilityNat::Stun
        });
        let tid = h.tid();
        let request = json_connect(
            &format!("p{i}"),
            &[("tv", Join, PeerMode::Seed)],
            Some(peer_num),
            tid,
        );
        assert_eq!(h.send(&ctx(), &request).status, Status::Ok);
    }
    let mut peer_num = PeerNum::count(4);
    peer_num.ability_nat = Some(AbilityNat::Turn);
    let tid = h.tid();
    let request = json_connect(
        "turn",
        &[("tv", Join, PeerMode::Leech)],
        Some(peer_num.clone()),
        tid,
    );
    let response = h.send(&ctx(), &request);
    let ids = peer_ids(&response);
    let firsts: std::collections::HashSet<_> = ids[..3].iter().map(|p| p.to_string()).collect();
    assert_eq!(
        firsts,
        ["p0", "p1", "p2"].into_iter().map(String::from).collect()
    );
    let response = find(&mut h, "turn", "tv", Some(peer_num));
    let ids = peer_ids(&response);
    assert!(
        ids[..3]
            .iter()
            .all(|p| ["p0", "p1", "p2"].contains(&p.as_str()))
    );
}

#[test]
fn dialect_switch_is_refused() {
    let mut h = Harness::new();
    // Registered in JSON, then an XML CONNECT: 403.
    connect(&mut h, "both", &[("tv", Join, PeerMode::Seed)]);
    let xml = XmlPeer {
        id: pid("both"),
        ctx: xml_ctx("198.51.100.77:40000"),
        token: None,
    };
    let response = xml.call(&mut h, connect_body(vec![], Some(anonymous())));
    assert_eq!(response.status, Status::MessageForbidden);
    assert_eq!(h.snapshot().swarms[0].seeds, 1);
    // Registered in XML, then JSON requests: 403.
    let mut x = XmlPeer::direct("xml-peer", "192.0.2.5");
    x.connect(&mut h);
    x.join(&mut h, "tv", PeerMode::Leech);
    assert_eq!(
        connect(&mut h, "xml-peer", &[("tv", Join, PeerMode::Leech)]).status,
        Status::MessageForbidden
    );
    assert_eq!(
        find(&mut h, "xml-peer", "tv", None).status,
        Status::MessageForbidden
    );
    // The XML session is untouched.
    assert_eq!(x.call(&mut h, RequestBody::KeepAlive).status, Status::Ok);
}

#[test]
fn xml_and_json_peers_share_swarms() {
    let mut h = Harness::new();
    let mut x = XmlPeer::direct("xml-seed", "192.0.2.5");
    x.connect(&mut h);
    x.join(&mut h, "tv", PeerMode::LiveSeed);
    let response = connect(&mut h, "json-viewer", &[("tv", Join, PeerMode::Leech)]);
    assert_eq!(peer_ids(&response), vec![pid("xml-seed")]);
    let listed = &response.swarm_results[0].peers[0];
    assert_eq!(listed.addresses.len(), 1);
    assert_eq!(listed.addresses[0].port, 7000);
    let response = x.call(&mut h, find_body("tv", None));
    assert_eq!(peer_ids(&response), vec![pid("json-viewer")]);
}

#[test]
fn json_retransmission_replays() {
    let mut h = Harness::new();
    connect(&mut h, "s", &[("tv", Join, PeerMode::Seed)]);
    let tid = h.tid();
    let request = json_connect("v", &[("tv", Join, PeerMode::Leech)], None, tid);
    let first = h.send(&ctx(), &request);
    assert_eq!(first.status, Status::Ok);
    // Without the cache this would be a duplicate JOIN (03). The replay is the same answer
    // on the wire (RFC 7846 lists carry no mode, so the value read back differs in that).
    let again = h.send(&ctx(), &request);
    assert_eq!(
        Format::Json.encode_response(&again),
        Format::Json.encode_response(&first)
    );
    let mut changed = request.clone();
    changed.body = json_connect(
        "v",
        &[("radio", Join, PeerMode::Seed)],
        None,
        request.transaction_id.clone(),
    )
    .body;
    assert_eq!(h.send(&ctx(), &changed).status, Status::InvalidSyntax);
}
