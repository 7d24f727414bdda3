//! The tracker's hot path, one piece at a time, for instruction counts under callgrind
//! (`scripts/callgrind-counts.sh`): counts do not drift with the host's speed the way
//! timings do, so a change of a few per cent shows.
//!
//! `hot_path_counts PIECE N` runs PIECE N times, after its setup:
//!
//! - `decode`: decodes the XML FIND the wrk script sends;
//! - `encode`: encodes a FIND answer of 20 leeches with one IPv4 address each, the shape
//!   `ppsp bench fill` gives;
//! - `find`: a FIND of 20 through the tracker core, in a swarm of 100 members;
//! - `stat-decode`: decodes a STAT_REPORT of the shape `ppsp bench` sends (stream
//!   statistics and a chunk map of 1,024 chunks, a quarter of them held);
//! - `json-decode` and `json-encode`: the same FIND and answer in RFC 7846 JSON, as
//!   `docs/wrk/ppsp-json.lua` sends it and the tracker answers.
//!
//! It uses the `ppsp` binary's allocator, so that allocation costs what it costs there.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use ppsp_proto::{
    AddressType, AuthToken, ChunkMap, Connect, Find, Join, Limits, NatHints, PeerAddress, PeerId,
    PeerInfo, PeerMode, PeerNum, Request, RequestBody, Response, SaslAuth, Status, SwarmId,
    SwarmResult, TransactionId, json, xml,
};
use ppsp_tracker_core::{
    Config, Format, OpenAuthenticator, RequestContext, Timestamp, Tracker, block_on_ready,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The body `docs/wrk/ppsp-json.lua` sends for a FIND.
const JSON_FIND_REQUEST: &[u8] = b"{\"PPSPTrackerProtocol\":{\"version\":1,\"request_type\":\
\"FIND\",\"peer_id\":\"wrk-json-4242\",\"find\":{\"swarm_id\":\"fill-swarm-1\",\"peer_num\":\
{\"peer_count\":20}},\"transaction_id\":\"1000064\"}}";

/// The body `docs/wrk/ppsp-xml.lua` sends for a FIND.
const FIND_REQUEST: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><PPSPTrackerProtocol \
version=\"1.0\"><Method>FIND</Method><PeerID>wrk-peer-4242-1</PeerID><AuthToken>\
AAAAAQ3Mu9bVZkZRxYl0sP8yNnmZbG1Wqt2J2cW1kZXk</AuthToken><SwarmID>fill-swarm-0</SwarmID>\
<PeerNum>20</PeerNum><TransactionID>1000064</TransactionID></PPSPTrackerProtocol>";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(piece), Some(Ok(times))) = (args.next(), args.next().map(|n| n.parse::<u64>()))
    else {
        eprintln!(
            "usage: hot_path_counts decode|encode|find|json-decode|json-encode|stat-decode N"
        );
        return ExitCode::from(2);
    };
    match piece.as_str() {
        "decode" => decode(times),
        "encode" => encode(times),
        "json-decode" => json_decode(times),
        "json-encode" => json_encode(times),
        "find" => find(times),
        "stat-decode" => stat_decode(times),
        _ => {
            eprintln!(
                "unknown piece {piece:?}: decode, encode, find, json-decode, json-encode or \
                 stat-decode"
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn decode(times: u64) {
    let limits = Limits::default();
    for _ in 0..times {
        let decoded = xml::decode_request(black_box(FIND_REQUEST), &limits);
        assert!(black_box(decoded).is_ok(), "the wrk FIND decodes");
    }
}

fn json_decode(times: u64) {
    let limits = Limits::default();
    for _ in 0..times {
        let decoded = json::decode_request(black_box(JSON_FIND_REQUEST), &limits);
        assert!(black_box(decoded).is_ok(), "the wrk JSON FIND decodes");
    }
}

fn stat_decode(times: u64) {
    let body = xml::encode_request(&stat_report_request());
    let limits = Limits::default();
    for _ in 0..times {
        let decoded = xml::decode_request(black_box(body.as_bytes()), &limits);
        assert!(black_box(decoded).is_ok(), "the bench STAT_REPORT decodes");
    }
}

/// A STAT_REPORT as a leech of `ppsp bench` sends it: its counters and its chunk map.
fn stat_report_request() -> Request {
    let swarm_id = SwarmId::new("bench-swarm-3").expect("swarm id");
    let mut map = ChunkMap::new(0, 1024);
    for chunk in (0..1024).step_by(4) {
        map.insert(chunk);
    }
    Request {
        peer_id: PeerId::new("bench-1a2b3c4d-17").expect("peer id"),
        auth_token: Some(
            AuthToken::new("AAAAAQ3Mu9bVZkZRxYl0sP8yNnmZbG1Wqt2J2cW1kZXk").expect("token"),
        ),
        transaction_id: TransactionId::numeric(1_000_065),
        body: RequestBody::StatReport(ppsp_load::simulated_stat_report(
            &swarm_id,
            1_234_567,
            4_194_304,
            Some(&map),
        )),
    }
}

fn encode(times: u64) {
    let answer = find_answer();
    for _ in 0..times {
        black_box(xml::encode_response(black_box(&answer)));
    }
}

fn json_encode(times: u64) {
    let answer = find_answer();
    for _ in 0..times {
        black_box(json::encode_response(black_box(&answer)));
    }
}

/// A FIND answer of 20 leeches, one IPv4 HOST address each.
fn find_answer() -> Response {
    let peers = (0..20u8)
        .map(|i| PeerInfo {
            peer_id: PeerId::new(format!("f693773c70000000{i:04x}")).expect("peer id"),
            mode: Some(PeerMode::Leech),
            addresses: vec![
                PeerAddress::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 17 + i)), 9424)
                    .with_priority(1)
                    .with_kind(AddressType::Host),
            ],
            location: None,
            connection_type: None,
            rank_cost: None,
        })
        .collect();
    Response {
        status: Status::Ok,
        transaction_id: Some(TransactionId::numeric(1_000_064)),
        auth_token: None,
        reflexive_addresses: Vec::new(),
        swarm_results: vec![SwarmResult {
            swarm_id: SwarmId::new("fill-swarm-0").expect("swarm id"),
            ok: true,
            peers,
        }],
    }
}

/// A connected peer of the `find` piece.
struct Peer {
    id: PeerId,
    token: Option<AuthToken>,
    context: RequestContext,
    next_transaction: u64,
}

impl Peer {
    fn new(index: u32) -> Self {
        Self {
            id: PeerId::new(format!("peer-{index}")).expect("peer id"),
            token: None,
            context: RequestContext {
                observed: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + index)), 40000),
                format: Format::Xml,
                secure_channel: true,
                authenticated: false,
            },
            next_transaction: 0,
        }
    }

    fn call(&mut self, tracker: &Tracker, now: Timestamp, body: RequestBody) -> Response {
        self.next_transaction += 1;
        let request = Request {
            peer_id: self.id.clone(),
            auth_token: self.token.clone(),
            transaction_id: TransactionId::numeric(self.next_transaction),
            body,
        };
        block_on_ready(tracker.handle(now, &self.context, &request))
    }

    fn join(&mut self, tracker: &Tracker, now: Timestamp, swarm: &SwarmId) {
        let connect = RequestBody::Connect(Connect {
            auth: Some(SaslAuth {
                mechanism: "ANONYMOUS".into(),
                credentials: None,
            }),
            addresses: vec![PeerAddress::new(self.context.observed.ip(), 7000)],
            peer_num: None,
            swarm_actions: Vec::new(),
        });
        self.token = self.call(tracker, now, connect).auth_token;
        let join = RequestBody::Join(Join {
            swarm_id: swarm.clone(),
            mode: PeerMode::Leech,
            hints: NatHints::default(),
            peer_num: Some(0),
            clip: None,
            expire_time: 0,
        });
        assert_eq!(self.call(tracker, now, join).status, Status::Ok);
    }
}

fn find(times: u64) {
    let now = Timestamp::from_secs(1_700_000_000);
    let tracker = Tracker::with_seed(Config::default(), Arc::new(OpenAuthenticator), 1);
    let swarm = SwarmId::new("fill-swarm-0").expect("swarm id");
    for index in 1..=100 {
        Peer::new(index).join(&tracker, now, &swarm);
    }
    let mut asker = Peer::new(1000);
    asker.join(&tracker, now, &swarm);
    let body = RequestBody::Find(Find {
        swarm_id: swarm,
        peer_num: Some(PeerNum::count(20)),
        hints: NatHints::default(),
        clip: None,
    });
    for _ in 0..times {
        let answer = asker.call(&tracker, now, body.clone());
        assert_eq!(black_box(answer).swarm_results[0].peers.len(), 20);
    }
}
