//! XML codec benchmarks: the tracker's hot paths (decode a JOIN, encode a FIND answer with a
//! full peer list, decode a large chunk-map report) and the peer's (decode that answer,
//! encode the report). Figures are recorded in `docs/benchmarks.md`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_main};
use ppsp_proto::xml;
use ppsp_proto::{
    AddressType, AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Limits, MediaType,
    PeerAddress, PeerId, PeerInfo, PeerMode, Request, RequestBody, Response, Segment, Stat,
    StatReport, Status, StreamStats, SwarmId, SwarmResult, TransactionId,
};

const JOIN: &[u8] = include_bytes!("../tests/fixtures/xml/valid/join-request-leech.xml");

/// A FIND as the load generator of `scripts/bench-compare.sh` sends it: compact, no
/// declaration of anything but the root's version.
const FIND_REQUEST: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><PPSPTrackerProtocol \
version=\"1.0\"><Method>FIND</Method><PeerID>wrk-peer-4242-1</PeerID><AuthToken>\
AAAAAQ3Mu9bVZkZRxYl0sP8yNnmZbG1Wqt2J2cW1kZXk</AuthToken><SwarmID>fill-swarm-0</SwarmID>\
<PeerNum>20</PeerNum><TransactionID>1000064</TransactionID></PPSPTrackerProtocol>";

fn find_response(peers: usize) -> Response {
    let swarm = SwarmId::new("film-library-9").expect("swarm id");
    let peers = (0..peers)
        .map(|i| {
            let octets = u32::try_from(i).expect("small").to_be_bytes();
            let v4 = IpAddr::V4(Ipv4Addr::new(10, octets[1], octets[2], octets[3]));
            let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16));
            PeerInfo {
                peer_id: PeerId::new(format!("peer-{i:06}")).expect("peer id"),
                mode: Some(if i == 0 {
                    PeerMode::LiveSeed
                } else {
                    PeerMode::Leech
                }),
                addresses: vec![
                    PeerAddress::new(v4, 7000).with_kind(AddressType::Host),
                    PeerAddress::new(v6, 7000).with_kind(AddressType::Host),
                ],
                location: Some("AS64500".into()),
                connection_type: None,
                rank_cost: Some(i as i64),
            }
        })
        .collect();
    Response {
        status: Status::Ok,
        transaction_id: Some(TransactionId::numeric(1_681_692_777)),
        auth_token: None,
        reflexive_addresses: Vec::new(),
        swarm_results: vec![SwarmResult {
            swarm_id: swarm,
            ok: true,
            peers,
        }],
    }
}

/// A FIND answer as `scripts/bench-compare.sh` gets it: 20 leeches, each with one IPv4 HOST
/// address of priority 1, nothing else.
fn bench_find_answer() -> Response {
    let mut answer = find_response(20);
    for (i, peer) in answer.swarm_results[0].peers.iter_mut().enumerate() {
        let octets = u32::try_from(i).expect("small").to_be_bytes();
        peer.peer_id = PeerId::new(format!("f693773c70000000{i:04x}")).expect("peer id");
        peer.mode = Some(PeerMode::Leech);
        peer.addresses = vec![
            PeerAddress::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, octets[2], octets[3])),
                9424,
            )
            .with_priority(1)
            .with_kind(AddressType::Host),
        ];
        peer.location = None;
        peer.rank_cost = None;
    }
    answer
}

fn stat_report(bits: u64) -> Request {
    let mut map = ChunkMap::new(0, bits);
    // A realistic, irregular holding pattern: most chunks, with gaps.
    for chunk in 0..bits {
        if chunk % 7 != 3 && chunk % 31 != 0 {
            map.insert(chunk);
        }
    }
    let swarm = SwarmId::new("film-library-9").expect("swarm id");
    Request {
        peer_id: PeerId::new("peer-a17").expect("peer id"),
        auth_token: Some(AuthToken::new("Tk9UQVJFQUxUT0tFTjAwMDAx").expect("token")),
        transaction_id: TransactionId::numeric(719_885_386),
        body: RequestBody::StatReport(StatReport {
            stats: vec![
                Stat::ChunkMap(ChunkMapReport {
                    swarm_id: swarm.clone(),
                    clips: vec![Clip {
                        name: "feature".into(),
                        kind: None,
                        chunk_segment_index: None,
                        segments: Some(ChunkSegments {
                            media: MediaType::Video,
                            segments: vec![Segment::with_map(map)],
                        }),
                    }],
                }),
                Stat::StreamStats(StreamStats {
                    swarm_id: Some(swarm),
                    uploaded_bytes: Some(1_048_576),
                    downloaded_bytes: Some(7_340_032),
                    available_bandwidth: Some(1_024_000),
                    concurrent_links: None,
                }),
                Stat::Nat(true),
                Stat::Stun(true),
            ],
        }),
    }
}

fn benches(c: &mut Criterion) {
    let limits = Limits::default();

    let mut group = c.benchmark_group("xml");

    group.throughput(Throughput::Bytes(JOIN.len() as u64));
    group.bench_function("decode_join", |b| {
        b.iter(|| xml::decode_request(black_box(JOIN), &limits).expect("decodes"))
    });

    group.throughput(Throughput::Bytes(FIND_REQUEST.len() as u64));
    group.bench_function("decode_find_request", |b| {
        b.iter(|| xml::decode_request(black_box(FIND_REQUEST), &limits).expect("decodes"))
    });

    let find = find_response(50);
    let find_body = xml::encode_response(&find);
    group.throughput(Throughput::Bytes(find_body.len() as u64));
    group.bench_function("encode_find_response_50_peers", |b| {
        b.iter(|| xml::encode_response(black_box(&find)))
    });
    group.bench_function("decode_find_response_50_peers", |b| {
        b.iter(|| xml::decode_response(black_box(find_body.as_bytes()), &limits).expect("decodes"))
    });

    let find = bench_find_answer();
    group.throughput(Throughput::Bytes(xml::encode_response(&find).len() as u64));
    group.bench_function("encode_find_response_20_peers_v4", |b| {
        b.iter(|| xml::encode_response(black_box(&find)))
    });

    let report = stat_report(100_000);
    let report_body = xml::encode_request(&report);
    group.throughput(Throughput::Bytes(report_body.len() as u64));
    group.bench_function("decode_stat_report_100k_bits", |b| {
        b.iter(|| xml::decode_request(black_box(report_body.as_bytes()), &limits).expect("decodes"))
    });
    group.bench_function("encode_stat_report_100k_bits", |b| {
        b.iter(|| xml::encode_request(black_box(&report)))
    });

    group.finish();
}

// `criterion_group!` defines a public function that cannot carry a doc comment.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(codec, super::benches);
}
criterion_main!(group::codec);
