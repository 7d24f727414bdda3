//! Property tests of the XML codec: every XML-representable request and response survives
//! encode → decode unchanged (for every method and every status), and no input — random
//! bytes or mutated fixtures — makes a decoder panic. Whatever a decoder accepts must also
//! re-encode to something that decodes to the same value.

use std::net::IpAddr;
use std::path::PathBuf;

use ppsp_proto::xml;
use ppsp_proto::{
    AddressType, AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Connect, Find, Join,
    Leave, Limits, MediaType, Message, Method, NatHints, PeerAddress, PeerId, PeerInfo, PeerMode,
    PeerNum, Request, RequestBody, Response, SaslAuth, Segment, Stat, StatReport, Status,
    StreamStats, SwarmId, SwarmResult, TransactionId,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Identifier characters, including everything XML must escape and some non-ASCII.
const ID_CHARS: &str = "[a-zA-Z0-9&<>\"'_.:/=+é€-]";

fn ident() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{ID_CHARS}{{1,40}}")).expect("regex")
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    ident().prop_map(|s| PeerId::new(s).expect("generated ids are valid"))
}

fn swarm_id() -> impl Strategy<Value = SwarmId> {
    ident().prop_map(|s| SwarmId::new(s).expect("generated ids are valid"))
}

fn auth_token() -> impl Strategy<Value = AuthToken> {
    ident().prop_map(|s| AuthToken::new(s).expect("generated tokens are valid"))
}

/// Free text (clip names, locations): anything printable, inner white space and line
/// breaks included, but nothing at the ends (values are trimmed on input).
fn free_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9&<>\"' \t\r\n/é€_-]{0,30}")
        .expect("regex")
        .prop_map(|s| {
            s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
                .to_owned()
        })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(IpAddr::V4),
        any::<std::net::Ipv6Addr>().prop_map(IpAddr::V6),
    ]
}

fn address_type() -> impl Strategy<Value = AddressType> {
    prop_oneof![
        Just(AddressType::Host),
        Just(AddressType::Reflexive),
        Just(AddressType::Proxy),
    ]
}

fn peer_address() -> impl Strategy<Value = PeerAddress> {
    (
        ip(),
        any::<u16>(),
        any::<Option<u32>>(),
        proptest::option::of(address_type()),
    )
        .prop_map(|(ip, port, priority, kind)| {
            let mut addr = PeerAddress::new(ip, port);
            addr.priority = priority;
            addr.kind = kind;
            addr
        })
}

fn reflexive_address() -> impl Strategy<Value = PeerAddress> {
    (ip(), any::<u16>()).prop_map(|(ip, port)| PeerAddress::new(ip, port))
}

fn peer_mode() -> impl Strategy<Value = PeerMode> {
    prop_oneof![
        Just(PeerMode::Seed),
        Just(PeerMode::LiveSeed),
        Just(PeerMode::Leech)
    ]
}

fn media() -> impl Strategy<Value = MediaType> {
    prop_oneof![Just(MediaType::Video), Just(MediaType::Audio)]
}

fn hints() -> impl Strategy<Value = NatHints> {
    (any::<Option<bool>>(), any::<Option<bool>>()).prop_map(|(nat, stun)| NatHints { nat, stun })
}

fn plain_segment() -> impl Strategy<Value = Segment> {
    (
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        proptest::option::of(1..=u32::MAX),
        proptest::option::of(1..=u64::MAX),
    )
        .prop_map(|(from, to, levels, chunks)| {
            // A range never runs backwards.
            let (from, to) = match (from, to) {
                (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                other => other,
            };
            Segment {
                from,
                to,
                levels,
                chunks,
                map: None,
            }
        })
}

fn chunk_map() -> impl Strategy<Value = ChunkMap> {
    (0..=u64::MAX / 2, 1u64..300).prop_flat_map(|(first, len)| {
        proptest::collection::vec(any::<u8>(), len.div_ceil(8) as usize).prop_map(move |bytes| {
            ChunkMap::from_bytes(first, len, bytes).expect("byte count matches")
        })
    })
}

fn map_segment() -> impl Strategy<Value = Segment> {
    (
        chunk_map(),
        proptest::option::of(1..=u32::MAX),
        proptest::option::of(1..=u64::MAX),
    )
        .prop_map(|(map, levels, chunks)| Segment {
            levels,
            chunks,
            ..Segment::with_map(map)
        })
}

fn clip(segment: BoxedStrategy<Segment>) -> impl Strategy<Value = Clip> {
    (
        free_text(),
        proptest::option::of(media()),
        any::<Option<u64>>(),
        proptest::option::of(
            (media(), proptest::collection::vec(segment, 1..4))
                .prop_map(|(media, segments)| ChunkSegments { media, segments }),
        ),
    )
        .prop_map(|(name, kind, chunk_segment_index, segments)| Clip {
            name,
            kind,
            chunk_segment_index,
            segments,
        })
}

fn scope_clip() -> impl Strategy<Value = Clip> {
    clip(plain_segment().boxed())
}

fn stat() -> impl Strategy<Value = Stat> {
    prop_oneof![
        any::<bool>().prop_map(Stat::Nat),
        any::<bool>().prop_map(Stat::Stun),
        (
            swarm_id(),
            proptest::collection::vec(
                clip(prop_oneof![map_segment(), plain_segment()].boxed()),
                1..3
            )
        )
            .prop_map(|(swarm_id, clips)| Stat::ChunkMap(ChunkMapReport { swarm_id, clips })),
        (
            swarm_id(),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<Option<u64>>()
        )
            .prop_map(|(swarm_id, up, down, bandwidth)| {
                Stat::StreamStats(StreamStats {
                    swarm_id: Some(swarm_id),
                    uploaded_bytes: up,
                    downloaded_bytes: down,
                    available_bandwidth: bandwidth,
                    concurrent_links: None,
                })
            }),
    ]
}

fn sasl() -> impl Strategy<Value = SaslAuth> {
    (
        prop_oneof![
            Just("PLAIN".to_owned()),
            Just("SECURID".to_owned()),
            Just("ANONYMOUS".to_owned()),
            proptest::string::string_regex("[A-Z0-9_-]{1,20}").expect("regex"),
        ],
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(mechanism, credentials)| {
            // Client-first mechanisms always carry an initial response.
            let credentials = if mechanism == "PLAIN" || mechanism == "SECURID" {
                Some(credentials.unwrap_or_default())
            } else {
                credentials
            };
            SaslAuth {
                mechanism,
                credentials,
            }
        })
}

fn body(method: Method) -> BoxedStrategy<RequestBody> {
    match method {
        Method::Connect => (sasl(), proptest::collection::vec(peer_address(), 0..4))
            .prop_map(|(auth, addresses)| {
                RequestBody::Connect(Connect {
                    auth: Some(auth),
                    addresses,
                    peer_num: None,
                    swarm_actions: Vec::new(),
                })
            })
            .boxed(),
        Method::Disconnect => Just(RequestBody::Disconnect).boxed(),
        Method::Join => (
            swarm_id(),
            peer_mode(),
            hints(),
            proptest::option::of(1..=u32::MAX),
            proptest::option::of(scope_clip()),
            any::<u64>(),
        )
            .prop_map(|(swarm_id, mode, hints, peer_num, clip, expire_time)| {
                RequestBody::Join(Join {
                    swarm_id,
                    mode,
                    hints,
                    peer_num,
                    clip,
                    expire_time,
                })
            })
            .boxed(),
        Method::Leave => swarm_id()
            .prop_map(|swarm_id| RequestBody::Leave(Leave { swarm_id }))
            .boxed(),
        Method::Find => (
            swarm_id(),
            proptest::option::of(1..=u32::MAX),
            hints(),
            proptest::option::of(scope_clip()),
        )
            .prop_map(|(swarm_id, peer_num, hints, clip)| {
                RequestBody::Find(Find {
                    swarm_id,
                    peer_num: peer_num.map(PeerNum::count),
                    hints,
                    clip,
                })
            })
            .boxed(),
        Method::StatReport => proptest::collection::vec(stat(), 0..5)
            .prop_map(|stats| RequestBody::StatReport(StatReport { stats }))
            .boxed(),
        Method::KeepAlive => Just(RequestBody::KeepAlive).boxed(),
    }
}

fn request(method: Method) -> impl Strategy<Value = Request> {
    (
        peer_id(),
        proptest::option::of(auth_token()),
        any::<u64>(),
        body(method),
    )
        .prop_map(|(peer_id, auth_token, id, body)| Request {
            peer_id,
            auth_token,
            transaction_id: TransactionId::numeric(id),
            body,
        })
}

fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (
        peer_id(),
        proptest::option::of(peer_mode()),
        proptest::collection::vec(peer_address(), 0..3),
        proptest::option::of(free_text()),
        proptest::option::of(free_text()),
        any::<Option<i64>>(),
    )
        .prop_map(
            |(peer_id, mode, addresses, location, connection_type, rank_cost)| PeerInfo {
                peer_id,
                mode,
                addresses,
                location,
                connection_type,
                rank_cost,
            },
        )
}

fn response(status: Status) -> impl Strategy<Value = Response> {
    (
        any::<Option<u64>>(),
        proptest::option::of(auth_token()),
        proptest::collection::vec(reflexive_address(), 0..=2),
        proptest::option::of((swarm_id(), proptest::collection::vec(peer_info(), 0..5))),
    )
        .prop_map(move |(id, auth_token, reflexive_addresses, swarm)| {
            // A success always echoes the ID; error bodies may lack it.
            let id = match (status, id) {
                (Status::Ok, None) => Some(0),
                (_, id) => id,
            };
            Response {
                status,
                transaction_id: id.map(TransactionId::numeric),
                auth_token,
                reflexive_addresses,
                swarm_results: swarm
                    .map(|(swarm_id, peers)| SwarmResult {
                        swarm_id,
                        ok: true,
                        peers,
                    })
                    .into_iter()
                    .collect(),
            }
        })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn every_method_round_trips() {
    let limits = Limits::default();
    for method in Method::ALL {
        runner()
            .run(&request(method), |req| {
                let encoded = xml::encode_request(&req);
                let decoded = xml::decode_request(encoded.as_bytes(), &limits)
                    .map_err(|e| TestCaseError::fail(format!("{e:?} in\n{encoded}")))?;
                prop_assert_eq!(&decoded, &req, "{}", encoded);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{method}: {e}"));
    }
}

#[test]
fn every_status_round_trips() {
    let limits = Limits::default();
    for status in Status::ALL {
        runner()
            .run(&response(status), |resp| {
                let encoded = xml::encode_response(&resp);
                let decoded = xml::decode_response(encoded.as_bytes(), &limits)
                    .map_err(|e| TestCaseError::fail(format!("{e:?} in\n{encoded}")))?;
                prop_assert_eq!(&decoded, &resp, "{}", encoded);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{status}: {e}"));
    }
}

/// Decodes with every entry point; when the message is accepted, its re-encoding must
/// decode to the same value.
fn check_consistent(bytes: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let _ = xml::decode_request(bytes, &limits);
    let _ = xml::decode_response(bytes, &limits);
    if let Ok(message) = xml::decode(bytes, &limits) {
        let encoded = xml::encode(&message);
        let again: Result<Message, _> = xml::decode(encoded.as_bytes(), &limits);
        prop_assert_eq!(again.as_ref(), Ok(&message), "{}", encoded);
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        check_consistent(&bytes)?;
    }

    #[test]
    fn xml_like_noise_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("<PPSPTrackerProtocol version=\"1.0\">".to_owned()),
                Just("</PPSPTrackerProtocol>".to_owned()),
                Just("<Method>JOIN</Method>".to_owned()),
                Just("<Response>OK</Response>".to_owned()),
                Just("<Stats><Stat property=\"ChunkMap\">".to_owned()),
                Just("<Segment from=\"1\" to=\"9\" bitmapsize=\"9\">".to_owned()),
                Just("<!DOCTYPE x [<!ENTITY a \"b\">]>".to_owned()),
                Just("&amp;&#x41;&#0;&nope;".to_owned()),
                Just("<a:b xmlns:a=\"u\">".to_owned()),
                Just("<![CDATA[x]]>".to_owned()),
                "[<>/=\"'a-zA-Z0-9 &;:!?-]{0,12}",
            ],
            0..24,
        )
    ) {
        check_consistent(parts.concat().as_bytes())?;
    }
}

fn valid_fixtures() -> Vec<Vec<u8>> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/xml/valid"]
        .iter()
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect()
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..4),
        prop_oneof![
            Just(&b"<"[..]),
            Just(&b"</"[..]),
            Just(&b"/>"[..]),
            Just(&b"&"[..]),
            Just(&b"&#1;"[..]),
            Just(&b"\""[..]),
            Just(&b"<x>"[..]),
            Just(&b"<Method>LEAVE</Method>"[..]),
            Just(&b"<PeerID>q</PeerID>"[..]),
            Just(&b" p:a='1'"[..]),
            Just(&b"<!DOCTYPE a>"[..]),
            Just(&b"="[..]),
            Just(&b"\xff"[..]),
        ]
        .prop_map(<[u8]>::to_vec),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        (any::<usize>(), snippet).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        Mutation::Flip(at, bits) => bytes[at % len] ^= bits | 1,
        Mutation::Insert(at, snippet) => {
            let at = at % (len + 1);
            bytes.splice(at..at, snippet.iter().copied());
        }
        Mutation::Delete(at, n) => {
            let at = at % len;
            let end = (at + n).min(len);
            bytes.drain(at..end);
        }
        Mutation::Duplicate(at, n) => {
            let at = at % len;
            let end = (at + n).min(len);
            let copy: Vec<u8> = bytes[at..end].to_vec();
            bytes.splice(end..end, copy);
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let fixtures = valid_fixtures();
    assert!(fixtures.len() >= 20);
    let strategy = (
        0..fixtures.len(),
        proptest::collection::vec(mutation(), 1..6),
    );
    TestRunner::new(Config {
        cases: 2048,
        failure_persistence: None,
        ..Config::default()
    })
    .run(&strategy, |(index, mutations)| {
        let mut bytes = fixtures[index].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_consistent(&bytes)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
