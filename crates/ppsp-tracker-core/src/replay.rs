//! The retransmission cache: one byte budget for the whole tracker.
//!
//! A peer that does not get an answer sends the same request again with the same
//! TransactionID; it must get the same answer, and the request must not act twice. The
//! cache keys an answer by PeerID, source IP and TransactionID, so an answer is only ever
//! replayed to the address whose request caused it (a CONNECT answer carries a live
//! AuthToken). A different request under a cached key is a reused TransactionID. Entries
//! leave after the TTL or, oldest first, when the budget is full.
//!
//! Answers are kept encoded in their wire format: a peer list takes a fifth of the memory
//! it takes as values, so the same budget holds five times the answers. A replay decodes
//! the answer again (the codecs round-trip every response exactly).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ppsp_proto::{Format, Limits, Request, Response};

use crate::Timestamp;

const SHARDS: usize = 16;

/// A request's key in the cache: a keyed hash of its PeerID, source IP and TransactionID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplayKey(u64);

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
    format: Format,
    body: Box<[u8]>,
}

/// Bookkeeping charged per entry on top of its encoded answer: the map slot, the queue
/// slot and the allocation.
const ENTRY_OVERHEAD: usize = 96;

impl Entry {
    fn size(&self) -> usize {
        ENTRY_OVERHEAD + self.body.len()
    }
}

#[derive(Default)]
struct Shard {
    /// Keyed by [`ReplayCache::key`], already a keyed hash: the table only spreads it with
    /// hashbrown's quick default hasher instead of hashing it again with SipHash.
    entries: hashbrown::HashMap<u64, Entry>,
    order: VecDeque<(u64, Timestamp)>,
    bytes: usize,
}

impl Shard {
    fn evict_front(&mut self) {
        // One lookup: every insertion of a full cache evicts one entry.
        if let Some((key, at)) = self.order.pop_front()
            && let hashbrown::hash_map::Entry::Occupied(entry) = self.entries.entry(key)
            && entry.get().at == at
        {
            self.bytes -= entry.remove().size();
        }
    }
}

/// See the module documentation.
pub(crate) struct ReplayCache {
    /// Limits for decoding cached answers; the tracker's own output always fits the defaults.
    limits: Limits,
    shards: Box<[Mutex<Shard>]>,
    budget_per_shard: usize,
    ttl: Duration,
    /// Keys pick whose answer is replayed, so they take the keyed SipHash: no one can make
    /// another peer's request land on theirs.
    keys: RandomState,
    /// A fingerprint only tells a peer's retransmission from its own reuse of a
    /// TransactionID, under a key that is already its own; the quicker seeded hash over the
    /// whole request (a STAT_REPORT carries its chunk maps) is enough.
    fingerprints: hashbrown::DefaultHashBuilder,
}

impl ReplayCache {
    pub(crate) fn new(budget_bytes: usize, ttl: Duration) -> Self {
        Self {
            limits: Limits::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            budget_per_shard: budget_bytes / SHARDS,
            ttl,
            keys: RandomState::new(),
            fingerprints: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// The cache key of `request` from `source`: computed once per request, as the lookup
    /// and the remembering of its answer share it.
    pub(crate) fn key(&self, request: &Request, source: IpAddr) -> ReplayKey {
        let mut hasher = self.keys.build_hasher();
        request.peer_id.hash(&mut hasher);
        source.hash(&mut hasher);
        request.transaction_id.hash(&mut hasher);
        ReplayKey(hasher.finish())
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

    pub(crate) fn lookup(&self, key: ReplayKey, request: &Request, now: Timestamp) -> Replay {
        let ReplayKey(key) = key;
        let shard = self.shard(key);
        match shard.entries.get(&key) {
            Some(entry) if self.fresh(entry.at, now) => {
                if entry.fingerprint != self.fingerprint(request) {
                    return Replay::Conflict;
                }
                match entry.format.decode_response(&entry.body, &self.limits) {
                    Ok(response) => Replay::Hit(response),
                    // Never expected: the entry is the tracker's own encoding. Acting on the
                    // request again is the safe fallback.
                    Err(_) => Replay::Miss,
                }
            }
            _ => Replay::Miss,
        }
    }

    pub(crate) fn remember(
        &self,
        key: ReplayKey,
        request: &Request,
        format: Format,
        now: Timestamp,
        response: &Response,
    ) {
        let entry = Entry {
            fingerprint: self.fingerprint(request),
            at: now,
            format,
            body: format
                .encode_response(response)
                .into_bytes()
                .into_boxed_slice(),
        };
        let size = entry.size();
        if size > self.budget_per_shard {
            return;
        }
        let ReplayKey(key) = key;
        let mut shard = self.shard(key);
        while shard
            .order
            .front()
            .is_some_and(|(_, at)| !self.fresh(*at, now))
        {
            shard.evict_front();
        }
        if let Some(old) = shard.entries.remove(&key) {
            shard.bytes -= old.size();
        }
        while shard.bytes + size > self.budget_per_shard && !shard.order.is_empty() {
            shard.evict_front();
        }
        shard.bytes += size;
        shard.order.push_back((key, now));
        shard.entries.insert(key, entry);
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

    fn lookup(cache: &ReplayCache, request: &Request, source: IpAddr, now: Timestamp) -> Replay {
        cache.lookup(cache.key(request, source), request, now)
    }

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
        cache.remember(
            cache.key(&keepalive, a),
            &keepalive,
            Format::Xml,
            now,
            &answer,
        );
        assert_eq!(lookup(&cache, &keepalive, a, now), Replay::Hit(answer));
        assert_eq!(lookup(&cache, &keepalive, b, now), Replay::Miss);
        assert_eq!(
            lookup(&cache, &request(1, RequestBody::Disconnect), a, now),
            Replay::Conflict
        );
        assert_eq!(
            lookup(&cache, &keepalive, a, now.plus(Duration::from_secs(60))),
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
            let keepalive = request(tid, RequestBody::KeepAlive);
            cache.remember(
                cache.key(&keepalive, ip),
                &keepalive,
                Format::Json,
                now,
                &answer,
            );
        }
        assert!(cache.bytes() <= 64 << 10);
        assert!(cache.bytes() > 32 << 10);
        // The newest are kept, the oldest went.
        let last = request(9_999, RequestBody::KeepAlive);
        assert!(matches!(lookup(&cache, &last, ip, now), Replay::Hit(_)));
        assert_eq!(
            lookup(&cache, &request(0, RequestBody::KeepAlive), ip, now),
            Replay::Miss
        );
    }
}
