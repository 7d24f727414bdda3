//! Helpers shared by the integration tests: a tracker with injected time and builders for
//! decoded requests.

#![allow(dead_code, unreachable_pub, clippy::new_without_default)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ppsp_tracker_core::ppsp_proto::{
    AuthToken, ChunkMap, ChunkMapReport, ChunkSegments, Clip, Connect, Find, Join, Leave,
    MediaType, NatHints, PeerAddress, PeerId, PeerMode, PeerNum, Request, RequestBody, Response,
    SaslAuth, Segment, Stat, StatReport, Status, StreamStats, SwarmAction, SwarmActionKind,
    SwarmId, TransactionId,
};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use ppsp_store_redis::testing::{RedisCluster, RedisServer};
use ppsp_store_redis::{AnyStore, RedisOptions, RedisStore};
use ppsp_tracker_core::token::TokenKey;
use ppsp_tracker_core::{
    Config, Format, MemoryStore, OpenAuthenticator, PeerDetail, RequestContext, SessionState,
    Store, SwarmQuery, SweepReport, Timestamp, Tracker,
};

pub fn pid(s: &str) -> PeerId {
    PeerId::new(s).expect("valid peer id")
}

pub fn sid(s: &str) -> SwarmId {
    SwarmId::new(s).expect("valid swarm id")
}

pub fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A tracker plus a clock that only moves when told to, and a runtime to drive its futures.
/// The tracker under test, on the store `PPSP_TEST_STORE` names: `memory` (the default),
/// `redis` (a `redis-server` of its own on a free loopback port, stopped with it) or
/// `redis-cluster` (a namespace of its own on a cluster of three primaries that the tests of
/// one test binary share; see [`shared_cluster`]).
pub struct Harness {
    pub tracker: Tracker<AnyStore>,
    pub now: Timestamp,
    next_tid: u64,
    // Dropped after the tracker: the fields drop in order.
    runtime: tokio::runtime::Runtime,
    _server: Option<RedisServer>,
}

/// The store the tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestStore {
    /// The in-memory store.
    Memory,
    /// One `redis-server` per test.
    Redis,
    /// One cluster per test binary, a namespace per test.
    RedisCluster,
}

/// The store `PPSP_TEST_STORE` names; unknown names are refused, so a typo cannot pass
/// for a run on Redis.
pub fn test_store() -> TestStore {
    match std::env::var("PPSP_TEST_STORE").as_deref() {
        Err(_) | Ok("" | "memory") => TestStore::Memory,
        Ok("redis") => TestStore::Redis,
        Ok("redis-cluster") => TestStore::RedisCluster,
        Ok(other) => panic!("PPSP_TEST_STORE={other}: expected memory, redis or redis-cluster"),
    }
}

/// True when the tests run on Redis (one server or a cluster).
pub fn on_redis() -> bool {
    test_store() != TestStore::Memory
}

/// The cluster every test of this binary shares, started by the first test that asks:
/// three primaries, no replicas (slots spread over several servers is what these tests are
/// about; failover is tested with the binary). Its servers end with the test process.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start_primaries_only().expect("redis cluster"))
}

/// A key namespace no other test of this process uses, so tests sharing a cluster never
/// see each other's sessions, swarms or totals.
fn fresh_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One swarm as the tests look at it: counts and every member, ordered by PeerID.
#[derive(Clone, Debug)]
pub struct SwarmView {
    pub swarm_id: SwarmId,
    pub live: bool,
    pub seeds: usize,
    pub live_seeds: usize,
    pub leeches: usize,
    pub peers: Vec<PeerDetail>,
    pub chunk_availability: Vec<ppsp_tracker_core::ClipAvailability>,
}

/// The whole state: sessions and every swarm, ordered by SwarmID.
#[derive(Clone, Debug)]
pub struct StateView {
    pub sessions: usize,
    pub requests_by_method: [u64; 7],
    pub responses_by_status: [u64; 8],
    pub sessions_expired_total: u64,
    pub swarms: Vec<SwarmView>,
}

/// Runs a future of the memory store's tracker to completion on this thread
/// ([`ppsp_tracker_core::block_on_ready`]).
pub fn block_on<F: Future>(future: F) -> F::Output {
    ppsp_tracker_core::block_on_ready(future)
}

/// The whole state of `tracker` at `now`, paged through its snapshot calls.
pub async fn state_of<S: Store>(tracker: &Tracker<S>, now: Timestamp) -> StateView {
    let totals = tracker.totals().await.expect("totals");
    let page = tracker
        .swarms(
            now,
            &SwarmQuery {
                offset: 0,
                limit: usize::MAX,
                filter: None,
            },
        )
        .await
        .expect("swarms");
    let mut swarms = Vec::new();
    for summary in page.swarms {
        let detail = tracker
            .swarm(now, &summary.swarm_id, 0, usize::MAX)
            .await
            .expect("swarm")
            .expect("listed swarm exists");
        let mut peers = detail.peers;
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        swarms.push(SwarmView {
            swarm_id: summary.swarm_id.clone(),
            live: summary.live,
            seeds: summary.seeds as usize,
            live_seeds: summary.live_seeds as usize,
            leeches: summary.leeches as usize,
            peers,
            chunk_availability: detail.chunk_availability,
        });
    }
    swarms.sort_by(|a, b| a.swarm_id.cmp(&b.swarm_id));
    let (requests_by_method, responses_by_status) = tracker.request_counts();
    StateView {
        sessions: totals.sessions as usize,
        requests_by_method,
        responses_by_status,
        sessions_expired_total: totals.sessions_expired,
        swarms,
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        Self::with_seed(config, 42)
    }

    pub fn with_seed(config: Config, seed: u64) -> Self {
        Self::with_authenticator(config, seed, Arc::new(OpenAuthenticator))
    }

    pub fn with_authenticator(
        config: Config,
        seed: u64,
        authenticator: Arc<dyn ppsp_tracker_core::Authenticator>,
    ) -> Self {
        Self::on_store(test_store(), config, seed, authenticator)
    }

    /// A tracker on Redis whatever `PPSP_TEST_STORE` says (its cluster when it names one),
    /// for tests of what only the Redis store does.
    pub fn on_redis_store(config: Config) -> Self {
        let store = match test_store() {
            TestStore::RedisCluster => TestStore::RedisCluster,
            TestStore::Memory | TestStore::Redis => TestStore::Redis,
        };
        Self::on_store(store, config, 42, Arc::new(OpenAuthenticator))
    }

    /// The Redis store under the tracker; `None` on the memory store.
    pub fn redis_store(&self) -> Option<&RedisStore> {
        match self.tracker.store() {
            AnyStore::Redis(store) => Some(store),
            AnyStore::Memory(_) => None,
        }
    }

    /// Runs a future on the harness's runtime (the one its Redis connection lives on).
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn on_store(
        store: TestStore,
        config: Config,
        seed: u64,
        authenticator: Arc<dyn ppsp_tracker_core::Authenticator>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let redis = match store {
            TestStore::Memory => None,
            TestStore::Redis => {
                let server = RedisServer::start().expect("redis-server");
                Some((server.url(), RedisOptions::default(), Some(server)))
            }
            TestStore::RedisCluster => {
                let options = RedisOptions {
                    namespace: fresh_namespace(),
                    ..RedisOptions::default()
                };
                Some((shared_cluster().url(), options, None))
            }
        };
        let (tracker, server) = if let Some((url, options, server)) = redis {
            let tracker = runtime.block_on(async {
                let store = RedisStore::connect(&url, &config, &options)
                    .await
                    .expect("connect to redis");
                let tokens = store.token_key().await.expect("token key");
                Tracker::with_store(config, AnyStore::Redis(store), tokens, authenticator)
            });
            (tracker, server)
        } else {
            // As Tracker::with_seed does: the key first, then the store, from one seed.
            let mut rng = StdRng::seed_from_u64(seed);
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let store = MemoryStore::new(&config, Timestamp::from_millis(0), &mut rng);
            let tracker = Tracker::with_store(
                config,
                AnyStore::Memory(store),
                TokenKey::new(&secret),
                authenticator,
            );
            (tracker, None)
        };
        Self {
            tracker,
            now: Timestamp::from_secs(1_700_000_000),
            next_tid: 1,
            runtime,
            _server: server,
        }
    }

    pub fn advance(&mut self, seconds: u64) {
        self.now = self.now.plus(Duration::from_secs(seconds));
    }

    pub fn tid(&mut self) -> TransactionId {
        self.next_tid += 1;
        TransactionId::numeric(self.next_tid)
    }

    pub fn send(&self, ctx: &RequestContext, request: &Request) -> Response {
        self.runtime
            .block_on(self.tracker.handle(self.now, ctx, request))
    }

    pub fn sweep(&self) -> SweepReport {
        self.runtime
            .block_on(self.tracker.sweep(self.now))
            .expect("sweep")
    }

    pub fn session_state(&self, peer: &PeerId) -> Option<SessionState> {
        self.runtime
            .block_on(self.tracker.session_state(peer, self.now))
            .expect("session state")
    }

    pub fn totals(&self) -> ppsp_tracker_core::Totals {
        self.runtime
            .block_on(self.tracker.totals())
            .expect("totals")
    }

    /// One swarm with all its members, as the statistics pages read it.
    pub fn swarm_detail(&self, swarm: &str) -> Option<ppsp_tracker_core::SwarmDetail> {
        self.runtime
            .block_on(self.tracker.swarm(self.now, &sid(swarm), 0, usize::MAX))
            .expect("swarm")
    }

    pub fn snapshot(&self) -> StateView {
        self.runtime.block_on(state_of(&self.tracker, self.now))
    }
}

pub fn xml_ctx(observed: &str) -> RequestContext {
    RequestContext {
        observed: sock(observed),
        format: Format::Xml,
        secure_channel: true,
        authenticated: false,
    }
}

pub fn json_ctx(observed: &str) -> RequestContext {
    RequestContext {
        observed: sock(observed),
        format: Format::Json,
        secure_channel: true,
        authenticated: false,
    }
}

pub fn anonymous() -> SaslAuth {
    SaslAuth {
        mechanism: "ANONYMOUS".into(),
        credentials: None,
    }
}

pub fn host(addr: &str) -> PeerAddress {
    let a = sock(addr);
    PeerAddress::new(a.ip(), a.port())
}

pub fn connect_body(addresses: Vec<PeerAddress>, auth: Option<SaslAuth>) -> RequestBody {
    RequestBody::Connect(Connect {
        auth,
        addresses,
        peer_num: None,
        swarm_actions: Vec::new(),
    })
}

pub fn join_body(swarm: &str, mode: PeerMode, peer_num: Option<u32>, expire: u64) -> RequestBody {
    RequestBody::Join(Join {
        swarm_id: sid(swarm),
        mode,
        hints: NatHints::default(),
        peer_num,
        clip: None,
        expire_time: expire,
    })
}

pub fn leave_body(swarm: &str) -> RequestBody {
    RequestBody::Leave(Leave {
        swarm_id: sid(swarm),
    })
}

pub fn find_body(swarm: &str, count: Option<u32>) -> RequestBody {
    RequestBody::Find(Find {
        swarm_id: sid(swarm),
        peer_num: count.map(PeerNum::count),
        hints: NatHints::default(),
        clip: None,
    })
}

pub fn chunk_find_body(swarm: &str, clip: &str, from: u64, to: u64) -> RequestBody {
    RequestBody::Find(Find {
        swarm_id: sid(swarm),
        peer_num: Some(PeerNum::count(50)),
        hints: NatHints::default(),
        clip: Some(Clip {
            name: clip.into(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::range(from, Some(to))],
            }),
        }),
    })
}

pub fn chunk_report(swarm: &str, clip: &str, map: ChunkMap) -> Stat {
    Stat::ChunkMap(ChunkMapReport {
        swarm_id: sid(swarm),
        clips: vec![Clip {
            name: clip.into(),
            kind: None,
            chunk_segment_index: None,
            segments: Some(ChunkSegments {
                media: MediaType::Video,
                segments: vec![Segment::with_map(map)],
            }),
        }],
    })
}

pub fn stream_stats(swarm: &str, up: u64, down: u64) -> Stat {
    Stat::StreamStats(StreamStats {
        swarm_id: Some(sid(swarm)),
        uploaded_bytes: Some(up),
        downloaded_bytes: Some(down),
        available_bandwidth: Some(1000),
        concurrent_links: None,
    })
}

pub fn report_body(stats: Vec<Stat>) -> RequestBody {
    RequestBody::StatReport(StatReport { stats })
}

/// An XML peer: its id, context and token once connected.
pub struct XmlPeer {
    pub id: PeerId,
    pub ctx: RequestContext,
    pub token: Option<AuthToken>,
}

impl XmlPeer {
    /// A peer whose declared address is its observed IP (no NAT).
    pub fn direct(id: &str, ip: &str) -> Self {
        Self {
            id: pid(id),
            ctx: xml_ctx(&format!("{ip}:40000")),
            token: None,
        }
    }

    pub fn request(&self, h: &mut Harness, body: RequestBody) -> Request {
        Request {
            peer_id: self.id.clone(),
            auth_token: self.token.clone(),
            transaction_id: h.tid(),
            body,
        }
    }

    pub fn call(&self, h: &mut Harness, body: RequestBody) -> Response {
        let request = self.request(h, body);
        h.send(&self.ctx, &request)
    }

    /// CONNECT declaring `ip:7000`, the observed IP.
    pub fn connect(&mut self, h: &mut Harness) -> Response {
        let ip = self.ctx.observed.ip();
        self.connect_with(h, vec![PeerAddress::new(ip, 7000)])
    }

    pub fn connect_with(&mut self, h: &mut Harness, addresses: Vec<PeerAddress>) -> Response {
        let response = self.call(h, connect_body(addresses, Some(anonymous())));
        assert_eq!(response.status, Status::Ok, "CONNECT of {}", self.id);
        self.token = response.auth_token.clone();
        response
    }

    pub fn join(&self, h: &mut Harness, swarm: &str, mode: PeerMode) -> Response {
        let response = self.call(h, join_body(swarm, mode, None, 0));
        assert_eq!(response.status, Status::Ok, "JOIN of {}", self.id);
        response
    }
}

/// Connects `count` direct peers named `{prefix}{i}` and joins them to `swarm`.
pub fn populate(
    h: &mut Harness,
    prefix: &str,
    count: usize,
    swarm: &str,
    mode: PeerMode,
) -> Vec<XmlPeer> {
    (0..count)
        .map(|i| {
            let ip = IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8 + 1]);
            let mut peer = XmlPeer::direct(&format!("{prefix}{i}"), &ip.to_string());
            peer.connect(h);
            peer.join(h, swarm, mode);
            peer
        })
        .collect()
}

pub fn peer_ids(response: &Response) -> Vec<PeerId> {
    response
        .swarm_results
        .iter()
        .flat_map(|r| r.peers.iter().map(|p| p.peer_id.clone()))
        .collect()
}

pub fn json_connect(
    peer: &str,
    actions: &[(&str, SwarmActionKind, PeerMode)],
    peer_num: Option<PeerNum>,
    tid: TransactionId,
) -> Request {
    Request {
        peer_id: pid(peer),
        auth_token: None,
        transaction_id: tid,
        body: RequestBody::Connect(Connect {
            auth: None,
            addresses: Vec::new(),
            peer_num,
            swarm_actions: actions
                .iter()
                .map(|(swarm, action, mode)| SwarmAction {
                    swarm_id: sid(swarm),
                    action: *action,
                    mode: *mode,
                })
                .collect(),
        }),
    }
}
