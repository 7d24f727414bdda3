//! Throughput of the RFC 7846 JSON codec on the messages a tracker handles most: CONNECT,
//! FIND and STAT_REPORT requests in, a FIND answer with a full peer list out.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ppsp_proto::json::{decode_request, decode_response, encode_request, encode_response};
use ppsp_proto::*;

const CONNECT: &[u8] = include_bytes!("../tests/fixtures/json/valid/03-connect-leech-request.json");
const FIND: &[u8] = include_bytes!("../tests/fixtures/json/valid/09-find-request.json");
const STAT_REPORT: &[u8] =
    include_bytes!("../tests/fixtures/json/valid/11-stat-report-request.json");

/// A FIND answer listing `peers` candidates, as the tracker sends it.
fn find_answer(peers: usize) -> Response {
    let mut response = Response::status(Status::Ok, TransactionId::new("bench-0001").ok());
    response.reflexive_addresses.push(
        PeerAddress::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 40_000)
            .with_kind(AddressType::Reflexive)
            .with_priority(0),
    );
    let peers = (0..peers)
        .filter_map(|i| {
            let peer_id = PeerId::new(format!("peer-{i:08x}")).ok()?;
            let ip = IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1));
            Some(PeerInfo {
                peer_id,
                mode: None,
                addresses: vec![
                    PeerAddress::new(ip, 6881)
                        .with_kind(AddressType::Host)
                        .with_priority(10),
                ],
                location: None,
                connection_type: None,
                rank_cost: None,
            })
        })
        .collect();
    if let Ok(swarm_id) = SwarmId::new("bench-swarm") {
        response.swarm_results.push(SwarmResult {
            swarm_id,
            ok: true,
            peers,
        });
    }
    response
}

fn decoding(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("json_decode");
    for (name, body) in [
        ("connect", CONNECT),
        ("find", FIND),
        ("stat_report", STAT_REPORT),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode_request(black_box(body), &limits))
        });
    }
    // Baseline: parsing the CONNECT body into serde_json's own value type, without any
    // protocol checks, to show what the codec adds on top of JSON parsing.
    group.throughput(Throughput::Bytes(CONNECT.len() as u64));
    group.bench_function("connect_serde_json_value_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(CONNECT)).is_ok())
    });
    let answer = encode_response(&find_answer(20));
    group.throughput(Throughput::Bytes(answer.len() as u64));
    group.bench_function("find_answer_20_peers", |b| {
        b.iter(|| decode_response(black_box(answer.as_bytes()), &limits))
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("json_encode");
    let Ok(connect) = decode_request(CONNECT, &limits) else {
        return;
    };
    group.bench_function("connect", |b| {
        b.iter(|| encode_request(black_box(&connect)))
    });
    let answer = find_answer(20);
    group.bench_function("find_answer_20_peers", |b| {
        b.iter(|| encode_response(black_box(&answer)))
    });
    let error = Response::status(Status::MessageForbidden, TransactionId::new("e-1").ok());
    group.bench_function("error", |b| b.iter(|| encode_response(black_box(&error))));
    group.finish();
}

// `criterion_group!` defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, decoding, encoding);
}
use group::benches;
criterion_main!(benches);
