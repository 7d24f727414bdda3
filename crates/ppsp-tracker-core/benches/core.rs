//! Tracker core benchmarks: FIND in a large swarm, JOIN/LEAVE churn, a STAT_REPORT with a
//! large chunk map, and a sweep over many idle sessions of which few expire.
//!
//! Run with `cargo bench -p ppsp-tracker-core --bench core`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ppsp_tracker_core::Timestamp;

use criterion::{Criterion, criterion_group, criterion_main};
use ppsp_tracker_core::ppsp_proto::{
    AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Connect, Find, Join, Leave,
    MediaType, NatHints, PeerAddress, PeerId, PeerMode, PeerNum, Request, RequestBody, SaslAuth,
    Segment, Stat, StatReport, Status, SwarmId, TransactionId,
};
use ppsp_tracker_core::{
    Config, Format, OpenAuthenticator, RequestContext, Tracker, block_on_ready as ready,
};

struct Client {
    peer_id: PeerId,
    token: Option<AuthToken>,
    ctx: RequestContext,
    next_tid: u64,
}

impl Client {
    fn new(index: u32) -> Self {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + index));
        Self {
            peer_id: PeerId::new(format!("peer-{index}")).expect("valid id"),
            token: None,
            ctx: RequestContext {
                observed: SocketAddr::new(ip, 40000),
                format: Format::Xml,
                secure_channel: true,
                authenticated: false,
            },
            next_tid: 0,
        }
    }

    fn request(&mut self, body: RequestBody) -> Request {
        self.next_tid += 1;
        Request {
            peer_id: self.peer_id.clone(),
            auth_token: self.token.clone(),
            transaction_id: TransactionId::numeric(self.next_tid),
            body,
        }
    }

    fn connect(&mut self, tracker: &Tracker, now: Timestamp) {
        let body = RequestBody::Connect(Connect {
            auth: Some(SaslAuth {
                mechanism: "ANONYMOUS".into(),
                credentials: None,
            }),
            addresses: vec![PeerAddress::new(self.ctx.observed.ip(), 7000)],
            peer_num: None,
            swarm_actions: Vec::new(),
        });
        let request = self.request(body);
        let response = ready(tracker.handle(now, &self.ctx, &request));
        assert_eq!(response.status, Status::Ok);
        self.token = response.auth_token;
    }

    fn call(&mut self, tracker: &Tracker, now: Timestamp, body: RequestBody) -> Status {
        let request = self.request(body);
        ready(tracker.handle(now, &self.ctx, &request)).status
    }
}

fn swarm() -> SwarmId {
    SwarmId::new("bench-swarm").expect("valid id")
}

fn join(mode: PeerMode, peer_num: Option<u32>) -> RequestBody {
    RequestBody::Join(Join {
        swarm_id: swarm(),
        mode,
        hints: NatHints::default(),
        peer_num,
        clip: None,
        expire_time: 0,
    })
}

fn tracker() -> Tracker {
    Tracker::with_seed(Config::default(), Arc::new(OpenAuthenticator), 1)
}

/// A tracker with `size` members in the bench swarm (one in ten a SEED) and one more
/// connected client that is a member too.
fn populated(size: u32, now: Timestamp) -> (Tracker, Client) {
    let tracker = tracker();
    for i in 0..size {
        let mut client = Client::new(i + 1);
        client.connect(&tracker, now);
        let mode = if i % 10 == 0 {
            PeerMode::Seed
        } else {
            PeerMode::Leech
        };
        assert_eq!(client.call(&tracker, now, join(mode, Some(0))), Status::Ok);
    }
    let mut asker = Client::new(size + 10);
    asker.connect(&tracker, now);
    assert_eq!(
        asker.call(&tracker, now, join(PeerMode::Leech, Some(0))),
        Status::Ok
    );
    (tracker, asker)
}

fn find_in_large_swarm(c: &mut Criterion) {
    let now = Timestamp::from_secs(1_700_000_000);
    // The cost of a FIND grows with the peers wanted, not with the swarm.
    for size in [100u32, 1_000_000] {
        let (tracker, mut asker) = populated(size, now);
        let body = RequestBody::Find(Find {
            swarm_id: swarm(),
            peer_num: Some(PeerNum::count(20)),
            hints: NatHints::default(),
            clip: None,
        });
        c.bench_function(&format!("find/{size}_peers/peer_num_20"), |b| {
            b.iter(|| {
                let request = asker.request(body.clone());
                let response = ready(tracker.handle(now, &asker.ctx, &request));
                black_box(response.swarm_results.first().map(|r| r.peers.len()))
            })
        });
    }
    let (tracker, mut asker) = populated(10_000, now);

    let scoped = RequestBody::Find(Find {
        swarm_id: swarm(),
        peer_num: Some(PeerNum::count(50)),
        hints: NatHints::default(),
        clip: Some(Clip {
            name: "clip".into(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::range(0, Some(100))],
            }),
        }),
    });
    c.bench_function("find/10k_peers/peer_num_50/chunk_scope_seeds_only", |b| {
        b.iter(|| {
            let request = asker.request(scoped.clone());
            black_box(ready(tracker.handle(now, &asker.ctx, &request)).status)
        })
    });
}

fn join_leave_churn(c: &mut Criterion) {
    let now = Timestamp::from_secs(1_700_000_000);
    let (tracker, _) = populated(1_000, now);
    let mut churner = Client::new(50_000);
    churner.connect(&tracker, now);
    c.bench_function("churn/leech_join_20_then_leave/1k_peers", |b| {
        b.iter(|| {
            let joined = churner.call(&tracker, now, join(PeerMode::Leech, Some(20)));
            let left = churner.call(
                &tracker,
                now,
                RequestBody::Leave(Leave { swarm_id: swarm() }),
            );
            black_box((joined, left))
        })
    });
}

fn big_stat_report(c: &mut Criterion) {
    let now = Timestamp::from_secs(1_700_000_000);
    let (tracker, mut asker) = populated(100, now);
    let mut map = ChunkMap::new(0, 100_000);
    for chunk in (0..100_000).filter(|c| c % 3 != 0) {
        map.insert(chunk);
    }
    let body = RequestBody::StatReport(StatReport {
        stats: vec![Stat::ChunkMap(ChunkMapReport {
            swarm_id: swarm(),
            clips: vec![Clip {
                name: "clip".into(),
                kind: None,
                chunk_segment_index: None,
                segments: Some(ChunkSegments {
                    media: MediaType::Video,
                    segments: vec![Segment::with_map(map)],
                }),
            }],
        })],
    });
    c.bench_function("stat_report/chunk_map_100k_bits", |b| {
        b.iter(|| black_box(asker.call(&tracker, now, body.clone())))
    });
}

fn sweep_idle_sessions(c: &mut Criterion) {
    let start = Timestamp::from_secs(1_700_000_000);
    let tracker = tracker();
    // 100,000 sessions connected 1 ms apart: their deadlines are spread over 100 s. A sweep
    // scans every session slot (64 bytes each, in shards), so this measures that scan.
    for i in 0..100_000u32 {
        let mut client = Client::new(i + 1);
        client.connect(&tracker, start.plus(Duration::from_millis(u64::from(i))));
    }
    let timeout = Config::default().session_idle_timeout;
    let mut now = start.plus(timeout);
    c.bench_function("sweep/100k_sessions_spread_over_100s", |b| {
        b.iter_custom(|iterations| {
            let begin = Instant::now();
            for _ in 0..iterations {
                now = now.plus(Duration::from_millis(1));
                black_box(ready(tracker.sweep(now)).ok());
            }
            begin.elapsed()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = find_in_large_swarm, join_leave_churn, big_stat_report, sweep_idle_sessions
}
criterion_main!(benches);
