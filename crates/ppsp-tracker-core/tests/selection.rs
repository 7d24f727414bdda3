//! Peer selection: never the requester, PeerNum, chunk scope, live seeds first, NAT
//! preference, randomness, reflexive address synthesis and address order.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;

use common::*;
use ppsp_tracker_core::Config;
use ppsp_tracker_core::ppsp_proto::{
    AddressType, ChunkMap, ChunkSegments, Clip, Find, Join, MediaType, NatHints, PeerAddress,
    PeerMode, RequestBody, Segment, Stat, StatReport, Status,
};

#[test]
fn requester_never_listed_and_peer_num_honoured() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 80, "s", PeerMode::Leech);
    for (count, expected) in [(None, 20), (Some(5), 5), (Some(50), 50), (Some(500), 50)] {
        for peer in peers.iter().take(10) {
            let response = peer.call(&mut h, find_body("s", count));
            let ids = peer_ids(&response);
            assert_eq!(ids.len(), expected);
            assert!(!ids.contains(&peer.id), "requester listed");
            let distinct: HashSet<_> = ids.iter().collect();
            assert_eq!(distinct.len(), ids.len(), "duplicates");
        }
    }
    // A LEECH JOIN's list follows the same rules.
    let mut late = XmlPeer::direct("late", "192.0.2.10");
    late.connect(&mut h);
    let response = late.call(&mut h, join_body("s", PeerMode::Leech, Some(7), 0));
    assert_eq!(peer_ids(&response).len(), 7);
    assert!(!peer_ids(&response).contains(&late.id));
}

#[test]
fn configured_caps_apply() {
    let mut h = Harness::with_config(Config {
        peer_num_default: 3,
        peer_num_max: 4,
        ..Config::default()
    });
    let peers = populate(&mut h, "m", 10, "s", PeerMode::Leech);
    assert_eq!(
        peer_ids(&peers[0].call(&mut h, find_body("s", None))).len(),
        3
    );
    assert_eq!(
        peer_ids(&peers[0].call(&mut h, find_body("s", Some(9)))).len(),
        4
    );
    assert_eq!(
        peer_ids(&peers[0].call(&mut h, find_body("s", Some(0)))).len(),
        0
    );
}

#[test]
fn small_swarm_returns_everyone_but_the_requester() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 6, "s", PeerMode::Leech);
    let ids: HashSet<_> = peer_ids(&peers[2].call(&mut h, find_body("s", None)))
        .into_iter()
        .collect();
    let expected: HashSet<_> = peers
        .iter()
        .filter(|p| p.id != peers[2].id)
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn selection_varies_between_calls() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 200, "s", PeerMode::Leech);
    let mut lists = HashSet::new();
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let ids = peer_ids(&peers[0].call(&mut h, find_body("s", Some(10))));
        seen.extend(ids.iter().cloned());
        lists.insert(ids);
    }
    assert!(lists.len() >= 15, "only {} distinct lists", lists.len());
    // Twenty samples of 10 out of 199 cover far more than a fixed list would.
    assert!(seen.len() > 80, "only {} distinct peers seen", seen.len());
}

#[test]
fn different_seeds_give_different_selections() {
    let lists: HashSet<_> = (0..4)
        .map(|seed| {
            let mut h = Harness::with_seed(Config::default(), seed);
            let peers = populate(&mut h, "m", 100, "s", PeerMode::Leech);
            peer_ids(&peers[0].call(&mut h, find_body("s", Some(5))))
        })
        .collect();
    assert!(lists.len() > 1);
}

#[test]
fn live_seeds_come_first() {
    let mut h = Harness::new();
    populate(&mut h, "m", 100, "s", PeerMode::Leech);
    let mut live = XmlPeer::direct("the-source", "192.0.2.200");
    live.connect(&mut h);
    live.join(&mut h, "s", PeerMode::LiveSeed);
    populate(&mut h, "n", 100, "s", PeerMode::Leech);
    let mut leech = XmlPeer::direct("viewer", "192.0.2.10");
    leech.connect(&mut h);
    for _ in 0..10 {
        let response = leech.call(&mut h, join_body("s", PeerMode::Leech, Some(3), 0));
        let ids = peer_ids(&response);
        assert_eq!(ids[0], live.id);
        assert_eq!(ids.len(), 3);
        let response = leech.call(&mut h, find_body("s", Some(2)));
        assert_eq!(peer_ids(&response)[0], live.id);
    }
    // The live seed itself gets a list without itself.
    let response = live.call(&mut h, find_body("s", Some(5)));
    assert!(!peer_ids(&response).contains(&live.id));
}

#[test]
fn configured_live_swarm_without_liveseed_still_answers() {
    let mut h = Harness::with_config(Config {
        live_swarms: vec![sid("tv")],
        ..Config::default()
    });
    let peers = populate(&mut h, "m", 5, "tv", PeerMode::Leech);
    assert!(h.snapshot().swarms[0].live);
    assert_eq!(
        peer_ids(&peers[0].call(&mut h, find_body("tv", None))).len(),
        4
    );
}

fn report(map_first: u64, len: u64, held: &[u64]) -> Stat {
    let mut map = ChunkMap::new(map_first, len);
    for c in held {
        map.insert(*c);
    }
    chunk_report("s", "clip", map)
}

#[test]
fn chunk_scoped_find_returns_holders_and_seeds_only() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 30, "s", PeerMode::Leech);
    // m1 holds 10..=12, m2 holds 50, the rest report nothing.
    peers[1].call(&mut h, report_body(vec![report(0, 100, &[10, 11, 12])]));
    peers[2].call(&mut h, report_body(vec![report(0, 100, &[50])]));
    let ids = peer_ids(&peers[0].call(&mut h, chunk_find_body("s", "clip", 11, 20)));
    assert_eq!(ids, vec![peers[1].id.clone()]);
    let ids: HashSet<_> = peer_ids(&peers[0].call(&mut h, chunk_find_body("s", "clip", 0, 60)))
        .into_iter()
        .collect();
    assert_eq!(
        ids,
        [peers[1].id.clone(), peers[2].id.clone()]
            .into_iter()
            .collect()
    );
    // Nobody holds 70..80: 404.
    let response = peers[0].call(&mut h, chunk_find_body("s", "clip", 70, 80));
    assert_eq!(response.status, Status::ObjectNotFound);
    // Another clip name: 404 as well.
    let response = peers[0].call(&mut h, chunk_find_body("s", "other", 0, 60));
    assert_eq!(response.status, Status::ObjectNotFound);
    // A seed qualifies for any chunk.
    let mut seed = XmlPeer::direct("seed", "192.0.2.99");
    seed.connect(&mut h);
    seed.join(&mut h, "s", PeerMode::Seed);
    let ids = peer_ids(&peers[0].call(&mut h, chunk_find_body("s", "clip", 70, 80)));
    assert_eq!(ids, vec![seed.id.clone()]);
    // The requester's own map never makes it qualify for itself.
    let response = peers[1].call(&mut h, chunk_find_body("s", "clip", 10, 10));
    assert_eq!(peer_ids(&response), vec![seed.id.clone()]);
    // Without a scope an empty answer is 200, not 404.
    let mut lonely = XmlPeer::direct("lonely", "192.0.2.98");
    lonely.connect(&mut h);
    lonely.join(&mut h, "solo", PeerMode::Leech);
    let response = lonely.call(&mut h, find_body("solo", None));
    assert_eq!(response.status, Status::Ok);
    assert!(peer_ids(&response).is_empty());
    let response = lonely.call(&mut h, chunk_find_body("solo", "clip", 0, 1));
    assert_eq!(response.status, Status::ObjectNotFound);
}

#[test]
fn rare_chunk_in_large_swarm_is_found_not_404() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 1500, "s", PeerMode::Leech);
    peers[1234].call(&mut h, report_body(vec![report(0, 10, &[3])]));
    for asker in [0, 77, 1499] {
        let response = peers[asker].call(&mut h, chunk_find_body("s", "clip", 3, 3));
        assert_eq!(response.status, Status::Ok);
        assert_eq!(peer_ids(&response), vec![peers[1234].id.clone()]);
    }
}

#[test]
fn chunk_segment_index_and_media_type_scope() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 3, "s", PeerMode::Leech);
    peers[1].call(&mut h, report_body(vec![report(0, 10, &[4])]));
    let find = |index: u64, kind: Option<MediaType>| {
        RequestBody::Find(Find {
            swarm_id: sid("s"),
            peer_num: None,
            hints: NatHints::default(),
            clip: Some(Clip {
                name: "clip".into(),
                kind,
                chunk_segment_index: Some(index),
                segments: None,
            }),
        })
    };
    assert_eq!(
        peer_ids(&peers[0].call(&mut h, find(4, None))),
        vec![peers[1].id.clone()]
    );
    assert_eq!(
        peer_ids(&peers[0].call(&mut h, find(4, Some(MediaType::Video)))),
        vec![peers[1].id.clone()]
    );
    assert_eq!(
        peers[0]
            .call(&mut h, find(4, Some(MediaType::Audio)))
            .status,
        Status::ObjectNotFound
    );
    assert_eq!(
        peers[0].call(&mut h, find(5, None)).status,
        Status::ObjectNotFound
    );
}

/// A peer declaring a private address, seen from a public one: behind NAT.
fn natted(h: &mut Harness, id: &str, public: &str, private: &str) -> XmlPeer {
    let mut peer = XmlPeer::direct(id, public);
    let private: IpAddr = private.parse().expect("ip");
    peer.connect_with(h, vec![PeerAddress::new(private, 7000)]);
    peer
}

#[test]
fn natted_requester_without_stun_gets_reachable_peers_first() {
    let mut h = Harness::new();
    let mut reachable = Vec::new();
    for i in 0..5 {
        let mut p = XmlPeer::direct(&format!("public{i}"), &format!("203.0.113.{}", i + 1));
        p.connect(&mut h);
        p.join(&mut h, "s", PeerMode::Leech);
        reachable.push(p.id.clone());
    }
    for i in 0..60 {
        let p = natted(
            &mut h,
            &format!("nat{i}"),
            &format!("198.51.100.{}", i + 1),
            "192.168.1.2",
        );
        p.join(&mut h, "s", PeerMode::Leech);
    }
    let asker = natted(&mut h, "asker", "198.51.100.200", "192.168.0.5");
    asker.join(&mut h, "s", PeerMode::Leech);
    for _ in 0..10 {
        let ids = peer_ids(&asker.call(&mut h, find_body("s", Some(8))));
        assert_eq!(ids.len(), 8);
        let firsts: HashSet<_> = ids[..5].iter().cloned().collect();
        assert_eq!(
            firsts,
            reachable.iter().cloned().collect(),
            "reachable peers first"
        );
    }
    // With STUN the preference is lifted: a plain random sample, mostly natted peers.
    let with_stun = RequestBody::StatReport(StatReport {
        stats: vec![Stat::Stun(true)],
    });
    assert_eq!(asker.call(&mut h, with_stun).status, Status::Ok);
    let mut natted_first = 0;
    for _ in 0..10 {
        let ids = peer_ids(&asker.call(&mut h, find_body("s", Some(8))));
        if !reachable.contains(&ids[0]) {
            natted_first += 1;
        }
    }
    assert!(natted_first > 0);
}

#[test]
fn peer_lists_carry_declared_and_synthesised_reflexive_addresses() {
    let mut h = Harness::new();
    let nat = natted(&mut h, "nat", "198.51.100.7", "192.168.1.2");
    nat.join(&mut h, "s", PeerMode::Seed);
    let mut direct = XmlPeer::direct("direct", "203.0.113.9");
    direct.connect(&mut h);
    direct.join(&mut h, "s", PeerMode::Seed);
    let mut asker = XmlPeer::direct("asker", "203.0.113.10");
    asker.connect(&mut h);
    let response = asker.call(&mut h, join_body("s", PeerMode::Leech, None, 0));
    let list = &response.swarm_results[0].peers;
    let nat_info = list
        .iter()
        .find(|p| p.peer_id == nat.id)
        .expect("nat listed");
    // Behind NAT: the synthesised observed_ip:declared_port comes first.
    assert_eq!(nat_info.addresses.len(), 2);
    assert_eq!(
        nat_info.addresses[0].ip,
        "198.51.100.7".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(nat_info.addresses[0].port, 7000);
    assert_eq!(nat_info.addresses[0].kind, Some(AddressType::Reflexive));
    assert_eq!(
        nat_info.addresses[1].ip,
        "192.168.1.2".parse::<IpAddr>().expect("ip")
    );
    let direct_info = list
        .iter()
        .find(|p| p.peer_id == direct.id)
        .expect("direct listed");
    assert_eq!(direct_info.addresses.len(), 1);
    assert_eq!(direct_info.addresses[0].port, 7000);
    assert_eq!(direct_info.mode, Some(PeerMode::Seed));
}

#[test]
fn addresses_of_the_requesters_family_come_first() {
    let mut h = Harness::new();
    let mut dual = XmlPeer::direct("dual", "203.0.113.9");
    dual.connect_with(
        &mut h,
        vec![host("[2001:db8::9]:7000"), host("203.0.113.9:7000")],
    );
    dual.join(&mut h, "s", PeerMode::Seed);
    let mut v4 = XmlPeer::direct("v4", "203.0.113.10");
    v4.connect(&mut h);
    let list = v4.call(&mut h, join_body("s", PeerMode::Leech, None, 0));
    assert!(list.swarm_results[0].peers[0].addresses[0].ip.is_ipv4());
    let mut v6 = XmlPeer {
        id: pid("v6"),
        ctx: xml_ctx("[2001:db8::10]:40000"),
        token: None,
    };
    v6.connect(&mut h);
    let list = v6.call(&mut h, join_body("s", PeerMode::Leech, None, 0));
    let dual_info = list.swarm_results[0]
        .peers
        .iter()
        .find(|p| p.peer_id == dual.id)
        .expect("dual listed");
    assert!(dual_info.addresses[0].ip.is_ipv6());
}

#[test]
fn declared_priorities_order_addresses() {
    let mut h = Harness::new();
    let mut p = XmlPeer::direct("p", "203.0.113.9");
    p.connect_with(
        &mut h,
        vec![
            host("203.0.113.9:1000").with_priority(1),
            host("203.0.113.9:2000").with_priority(100),
        ],
    );
    p.join(&mut h, "s", PeerMode::Seed);
    let mut q = XmlPeer::direct("q", "203.0.113.10");
    q.connect(&mut h);
    let list = q.call(&mut h, join_body("s", PeerMode::Leech, None, 0));
    let ports: Vec<u16> = list.swarm_results[0].peers[0]
        .addresses
        .iter()
        .map(|a| a.port)
        .collect();
    assert_eq!(ports, vec![2000, 1000]);
}

#[test]
fn join_with_start_point_prefers_holders_and_seeds() {
    let mut h = Harness::new();
    let peers = populate(&mut h, "m", 40, "s", PeerMode::Leech);
    // m3 holds chunks from 100 on; m4 only below the start point.
    peers[3].call(&mut h, report_body(vec![report(90, 20, &[105])]));
    peers[4].call(&mut h, report_body(vec![report(0, 20, &[5])]));
    let mut seed = XmlPeer::direct("seed", "192.0.2.99");
    seed.connect(&mut h);
    seed.join(&mut h, "s", PeerMode::Seed);
    let mut viewer = XmlPeer::direct("viewer", "192.0.2.98");
    viewer.connect(&mut h);
    let join = RequestBody::Join(Join {
        swarm_id: sid("s"),
        mode: PeerMode::Leech,
        hints: NatHints::default(),
        peer_num: Some(5),
        clip: Some(Clip {
            name: "clip".into(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::range(100, None)],
            }),
        }),
        expire_time: 0,
    });
    let ids = peer_ids(&viewer.call(&mut h, join));
    assert_eq!(ids.len(), 5);
    let firsts: HashSet<_> = ids[..2].iter().cloned().collect();
    assert_eq!(
        firsts,
        [peers[3].id.clone(), seed.id.clone()].into_iter().collect()
    );
}
