//! The retransmission cache: one byte budget for the whole tracker.
//!
//! A peer that does not get an answer sends the same request again with the same
//! TransactionID; it must get the same answer, and the request must not act twice. The
//! cache keys an answer by PeerID, source IP and TransactionID, so an answer is only ever
//! replayed to the address whose request caused it (a CONNECT answer carries a live
//! AuthToken). A different request under a cached key is a reused TransactionID. Entries
//! leave after the TTL or, oldest first, when the budget is full.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ppsp_proto::{Request, Response};

use crate::Timestamp;

const SHARDS: usize = 16;

/// What the cache says about a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Same TransactionID, same request: answer with this.
    Hit(Response),
    /// Same TransactionID, different request.
    Conflict,
    /// Not seen.
    Miss,
}

struct Entry {
    fingerprint: u64,
    at: Timestamp,
    size: usize,
    response: Response,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Entry>,
    order: VecDeque<(u64, Timestamp)>,
    bytes: usize,
}

impl Shard {
    fn evict_front(&mut self) {
        if let Some((key, at)) = self.order.pop_front()
            && self.entries.get(&key).is_some_and(|e| e.at == at)
            && let Some(entry) = self.entries.remove(&key)
        {
            self.bytes -= entry.size;
        }
    }
}

/// See the module documentation.
pub(crate) struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    budget_per_shard: usize,
    ttl: Duration,
    keys: RandomState,
    fingerprints: RandomState,
}

/// Heap and inline bytes an answer takes, roughly: enough to keep the budget honest.
fn response_size(response: &Response) -> usize {
    let peers: usize = response
        .swarm_results
        .iter()
        .map(|r| {
            96 + r.swarm_id.as_str().len()
                + r.peers
                    .iter()
                    .map(|p| 160 + p.peer_id.as_str().len() + 80 * p.addresses.len())
                    .sum::<usize>()
        })
        .sum();
    let token = response.auth_token.as_ref().map_or(0, |t| t.as_str().len());
    256 + peers + token + 80 * response.reflexive_addresses.len()
}

impl ReplayCache {
    pub(crate) fn new(budget_bytes: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            budget_per_shard: budget_bytes / SHARDS,
            ttl,
            keys: RandomState::new(),
            fingerprints: RandomState::new(),
        }
    }

    fn key(&self, request: &Request, source: IpAddr) -> u64 {
        let mut hasher = self.keys.build_hasher();
        request.peer_id.hash(&mut hasher);
        source.hash(&mut hasher);
        request.transaction_id.hash(&mut hasher);
        hasher.finish()
    }

    fn fingerprint(&self, request: &Request) -> u64 {
        self.fingerprints.hash_one(request)
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        let index = (key as usize) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self, at: Timestamp, now: Timestamp) -> bool {
        now < at.plus(self.ttl)
    }

    pub(crate) fn lookup(&self, request: &Request, source: IpAddr, now: Timestamp) -> Replay {
        let key = self.key(request, source);
        let shard = self.shard(key);
        match shard.entries.get(&key) {
            Some(entry) if self.fresh(entry.at, now) => {
                if entry.fingerprint == self.fingerprint(request) {
                    Replay::Hit(entry.response.clone())
                } else {
                    Replay::Conflict
                }
            }
            _ => Replay::Miss,
        }
    }

    pub(crate) fn remember(
        &self,
        request: &Request,
        source: IpAddr,
        now: Timestamp,
        response: &Response,
    ) {
        let size = response_size(response);
        if size > self.budget_per_shard {
            return;
        }
        let key = self.key(request, source);
        let fingerprint = self.fingerprint(request);
        let mut shard = self.shard(key);
        while shard
            .order
            .front()
            .is_some_and(|(_, at)| !self.fresh(*at, now))
        {
            shard.evict_front();
        }
        if let Some(old) = shard.entries.remove(&key) {
            shard.bytes -= old.size;
        }
        while shard.bytes + size > self.budget_per_shard && !shard.order.is_empty() {
            shard.evict_front();
        }
        shard.bytes += size;
        shard.order.push_back((key, now));
        shard.entries.insert(
            key,
            Entry {
                fingerprint,
                at: now,
                size,
                response: response.clone(),
            },
        );
    }

    /// Bytes held, for metrics.
    pub(crate) fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use ppsp_proto::{PeerId, RequestBody, Status, TransactionId};

    use super::*;

    fn request(tid: u64, body: RequestBody) -> Request {
        Request {
            peer_id: PeerId::new("p").expect("id"),
            auth_token: None,
            transaction_id: TransactionId::numeric(tid),
            body,
        }
    }

    #[test]
    fn replays_only_to_the_same_source_and_detects_reuse() {
        let cache = ReplayCache::new(1 << 20, Duration::from_secs(60));
        let now = Timestamp::from_secs(100);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let keepalive = request(1, RequestBody::KeepAlive);
        let answer = Response::status(Status::Ok, Some(TransactionId::numeric(1)));
        cache.remember(&keepalive, a, now, &answer);
        assert_eq!(cache.lookup(&keepalive, a, now), Replay::Hit(answer));
        assert_eq!(cache.lookup(&keepalive, b, now), Replay::Miss);
        assert_eq!(
            cache.lookup(&request(1, RequestBody::Disconnect), a, now),
            Replay::Conflict
        );
        assert_eq!(
            cache.lookup(&keepalive, a, now.plus(Duration::from_secs(60))),
            Replay::Miss
        );
    }

    #[test]
    fn the_budget_holds() {
        let cache = ReplayCache::new(64 << 10, Duration::from_secs(60));
        let now = Timestamp::from_secs(100);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        for tid in 0..10_000 {
            let answer = Response::status(Status::Ok, Some(TransactionId::numeric(tid)));
            cache.remember(&request(tid, RequestBody::KeepAlive), ip, now, &answer);
        }
        assert!(cache.bytes() <= 64 << 10);
        assert!(cache.bytes() > 32 << 10);
        // The newest are kept, the oldest went.
        let last = request(9_999, RequestBody::KeepAlive);
        assert!(matches!(cache.lookup(&last, ip, now), Replay::Hit(_)));
        assert_eq!(
            cache.lookup(&request(0, RequestBody::KeepAlive), ip, now),
            Replay::Miss
        );
    }
}
