//! Statistics pages never hold up the protocol: with 100,000 peers registered, FINDs sent
//! while `/api/stats`, one large swarm's page and `/metrics` are being built and served one
//! after another are answered much faster than a page is.
//!
//! All connections share one connection thread, so a page built there, not on the blocking
//! pool, would hold up every FIND that arrives meanwhile. The bound is relative: the median
//! FIND must take less than a quarter of the median time of the large swarm's page (the
//! quickest of the large pages), measured in the same run. A slower host slows both alike,
//! and the odd stall of a loaded two-core host does not move a median. In a debug build,
//! with the pages built on the connection thread the FIND's median was 0.36 to 0.78 of the
//! page's over six runs; built on the blocking pool, 0.14 to 0.18 over seven.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ppsp_proto::{
    Connect, Format, PeerId, PeerMode, Request, RequestBody, Status, SwarmAction, SwarmActionKind,
    SwarmId, TransactionId,
};
use ppsp_server::ppsp_tracker_core::{RequestContext, Timestamp};
use ppsp_server::{Listeners, Server, ServerConfig};
use support::*;

const PEERS: u32 = 100_000;
/// Of those, this many are in one swarm (the page of one swarm copies its members).
const BIG_SWARM: u32 = 40_000;
/// FINDs sent while the pages are served, 25 ms apart.
const FINDS: usize = 60;
/// One page of the large swarm's members.
const SWARM_PAGE: &str = "/api/stats?swarm=big&limit=500&offset=20000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_answers_while_statistics_of_a_large_tracker_are_served() {
    let mut config = ServerConfig::default();
    config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.tracker.max_sessions_per_address = PEERS * 2;
    config.server.connection_threads = 1;
    let listeners = Listeners::bind(&config).await.expect("bind");
    let addr = listeners.http[0].local_addr().expect("addr");
    let server = Server::new(config).expect("server");
    let tracker = Arc::clone(server.tracker());

    // Registered in process: over HTTP this would take most of the test's time.
    let now = Timestamp::now();
    for i in 0..PEERS {
        let swarm = if i < BIG_SWARM {
            "big".to_owned()
        } else {
            format!("s{}", i % 600)
        };
        let ctx = RequestContext {
            observed: SocketAddr::from(([127, 0, (i >> 8) as u8 % 250, (i & 0xff) as u8], 9)),
            format: Format::Json,
            secure_channel: true,
            authenticated: false,
        };
        let request = Request {
            peer_id: PeerId::new(format!("peer-{i:08}")).expect("id"),
            auth_token: None,
            transaction_id: TransactionId::numeric(u64::from(i)),
            body: RequestBody::Connect(Connect {
                auth: None,
                addresses: Vec::new(),
                peer_num: None,
                swarm_actions: vec![SwarmAction {
                    swarm_id: SwarmId::new(swarm).expect("id"),
                    action: SwarmActionKind::Join,
                    mode: PeerMode::Seed,
                }],
            }),
        };
        assert_eq!(tracker.handle(now, &ctx, &request).await.status, Status::Ok);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listeners, async move {
        let _ = stopped.await;
    }));

    // A peer of its own swarm, to FIND in.
    let token = connect(addr, "finder", 1).await;
    let joined = post_xml(addr, join("finder", &token, "s7", "LEECH", 2)).await;
    assert_eq!(joined.status, 200);

    // The statistics pages, one after another, for as long as the FINDs run.
    let running = Arc::new(AtomicBool::new(true));
    let pages = {
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut served = 0u32;
            let mut swarm_page = Vec::new();
            while running.load(Ordering::Relaxed) {
                for path in [
                    "/api/stats",
                    "/api/stats?limit=500&peers=0",
                    SWARM_PAGE,
                    "/metrics",
                ] {
                    let started = Instant::now();
                    let answer = get(addr, path).await;
                    if path == SWARM_PAGE {
                        swarm_page.push(started.elapsed());
                    }
                    assert_eq!(answer.status, 200, "{path}");
                    served += 1;
                }
            }
            (served, swarm_page)
        })
    };

    let mut finds = Vec::with_capacity(FINDS);
    for txid in 0..FINDS as u64 {
        let started = Instant::now();
        let answer = post_xml(addr, find("finder", &token, "s7", 100 + txid, None)).await;
        finds.push(started.elapsed());
        assert_eq!(answer.status, 200);
        assert!(!peer_ids(&answer.xml()).is_empty());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    running.store(false, Ordering::Relaxed);
    let (served, mut swarm_page) = pages.await.expect("pages task");
    assert!(served >= 8, "the pages were served meanwhile ({served})");
    finds.sort_unstable();
    swarm_page.sort_unstable();
    let find_median = finds[FINDS / 2];
    let page_median = swarm_page[swarm_page.len() / 2];
    let slowest = finds[FINDS - 1];
    eprintln!(
        "FIND median {find_median:?}, slowest {slowest:?}; the swarm's page: median \
         {page_median:?}; {served} pages served"
    );
    assert!(
        find_median < page_median / 4,
        "FINDs waited for the pages: median {find_median:?}, the swarm's page takes \
         {page_median:?}; sorted FINDs: {finds:?}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a FIND took {slowest:?} while {served} statistics pages were served"
    );
    let _ = stop.send(());
    serving.await.expect("server task").expect("clean stop");
}
