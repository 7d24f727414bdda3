//! Scratch: fills a tracker in process and prints resident memory.
use std::sync::Arc;
use ppsp_tracker_core::ppsp_proto::*;
use ppsp_tracker_core::*;

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status").unwrap().lines()
        .find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) { return output; }
    }
}

fn main() {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(1_000_000);
    let cache: usize = std::env::args().nth(2).map(|a| a.parse().unwrap()).unwrap_or(8 << 20);
    let mut config = Config::default();
    config.replay_cache_bytes = cache;
    config.limits.max_sessions_per_address = u32::MAX;
    let tracker = Tracker::with_seed(config, Arc::new(OpenAuthenticator), 1);
    let before = rss();
    let now = Timestamp::from_secs(1_700_000_000);
    for i in 0..n {
        let ctx = RequestContext { observed: format!("127.0.0.{}:{}", i % 255 + 1, 10000 + i % 50000).parse().unwrap(), format: Format::Json, secure_channel: true };
        let req = Request {
            peer_id: PeerId::new(format!("{:020}", i)).unwrap(),
            auth_token: None,
            transaction_id: TransactionId::numeric(i),
            body: RequestBody::Connect(Connect { auth: None, addresses: vec![], peer_num: None,
                swarm_actions: vec![SwarmAction { swarm_id: SwarmId::new(format!("swarm-{}", i % 10000)).unwrap(), action: SwarmActionKind::Join, mode: PeerMode::Leech }] }),
        };
        let r = ready(tracker.handle(now, &ctx, &req));
        assert_eq!(r.status, Status::Ok);
    }
    let after = rss();
    println!("peers {n} rss before {before} KiB after {after} KiB: {} bytes/peer (added {})", after * 1024 / n, (after - before) * 1024 / n);
    println!("replay bytes {}", tracker.replay_cache_bytes());
}
