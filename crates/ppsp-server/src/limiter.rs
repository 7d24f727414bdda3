//! Limits failed CONNECT authentications per source network, so password guessing costs the
//! guesser time instead of costing the tracker argon2 work.
//!
//! Failures are counted per source network only, never per PeerID: a stranger who fails on
//! purpose for someone else's PeerID blocks only their own network, and the owner's correct
//! credentials from another network are always checked. The network is the IPv4 address
//! (or its /24, when configured, for trackers facing address-rotating guessers) and the /64
//! of an IPv6 address (one host usually owns a whole /64, so single addresses would be free
//! to rotate).
//!
//! The table is bounded and split into buckets by a keyed hash of the network. A full
//! bucket first drops its expired windows, then the entry with the fewest failures (the
//! oldest among equals): a flood of fresh sources evicts fresh sources, while networks that
//! are blocked stay blocked, and no single insertion forgets everyone.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most over all buckets.
const MAX_ENTRIES: usize = 65_536;
/// Independent buckets; each holds at most `MAX_ENTRIES / BUCKETS` networks.
const BUCKETS: usize = 64;

/// The network a source address is counted under.
pub(crate) fn network_of(ip: IpAddr, ipv4_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// One network's failures in its current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Fixed-window failure counters per source network.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    ipv4_prefix: u8,
    bucket_capacity: usize,
    hasher: RandomState,
    buckets: Vec<Mutex<HashMap<IpAddr, Window>>>,
}

impl FailureLimiter {
    /// `max_failures` per `window` per source network; 0 turns the limiter off. IPv4
    /// sources are counted per `/ipv4_prefix` (32 or 24 in practice), IPv6 per /64.
    pub(crate) fn new(max_failures: u32, window: Duration, ipv4_prefix: u8) -> Self {
        Self::with_capacity(max_failures, window, ipv4_prefix, MAX_ENTRIES)
    }

    fn with_capacity(
        max_failures: u32,
        window: Duration,
        ipv4_prefix: u8,
        capacity: usize,
    ) -> Self {
        Self {
            max_failures,
            window,
            ipv4_prefix,
            bucket_capacity: (capacity / BUCKETS).max(1),
            hasher: RandomState::new(),
            buckets: (0..BUCKETS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn bucket(&self, network: IpAddr) -> &Mutex<HashMap<IpAddr, Window>> {
        let index = self.hasher.hash_one(network) as usize % self.buckets.len();
        &self.buckets[index]
    }

    /// True when the source's network used up its failures in the current window.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let network = network_of(ip, self.ipv4_prefix);
        let Ok(bucket) = self.bucket(network).lock() else {
            return false;
        };
        bucket.get(&network).is_some_and(|window| {
            now.duration_since(window.start) < self.window && window.failures >= self.max_failures
        })
    }

    /// Counts one failed authentication from `ip`.
    pub(crate) fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let network = network_of(ip, self.ipv4_prefix);
        let Ok(mut bucket) = self.bucket(network).lock() else {
            return;
        };
        if !bucket.contains_key(&network) && bucket.len() >= self.bucket_capacity {
            let window = self.window;
            bucket.retain(|_, w| now.duration_since(w.start) < window);
            if bucket.len() >= self.bucket_capacity
                && let Some(weakest) = bucket
                    .iter()
                    .min_by_key(|(_, w)| (w.failures, w.start))
                    .map(|(network, _)| *network)
            {
                bucket.remove(&weakest);
            }
        }
        let entry = bucket.entry(network).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(entry.start) >= self.window {
            *entry = Window {
                start: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    /// Networks currently tracked (for tests of the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.lock().map(|b| b.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn blocks_the_failing_network_only_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 32);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(!limiter.blocked(ip("198.51.100.7"), start));
            limiter.record_failure(ip("198.51.100.7"), start);
        }
        assert!(limiter.blocked(ip("198.51.100.7"), start));
        assert!(
            !limiter.blocked(ip("198.51.100.8"), start),
            "/32 by default"
        );
        assert!(!limiter.blocked(ip("203.0.113.1"), start));
        assert!(!limiter.blocked(ip("198.51.100.7"), start + Duration::from_secs(61)));
    }

    #[test]
    fn ipv4_slash_24_when_configured() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60), 24);
        let now = Instant::now();
        limiter.record_failure(ip("198.51.100.7"), now);
        limiter.record_failure(ip("198.51.100.200"), now);
        assert!(limiter.blocked(ip("198.51.100.1"), now));
        assert!(!limiter.blocked(ip("198.51.101.1"), now));
        assert!(
            limiter.blocked(ip("::ffff:198.51.100.9"), now),
            "mapped IPv4"
        );
    }

    #[test]
    fn ipv6_counts_per_slash_64() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60), 32);
        let now = Instant::now();
        limiter.record_failure(ip("2001:db8:1:2::1"), now);
        assert!(limiter.blocked(ip("2001:db8:1:2:ffff::9"), now));
        assert!(!limiter.blocked(ip("2001:db8:1:3::1"), now));
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = FailureLimiter::new(0, Duration::from_secs(60), 32);
        let now = Instant::now();
        limiter.record_failure(ip("198.51.100.7"), now);
        assert!(!limiter.blocked(ip("198.51.100.7"), now));
    }

    #[test]
    fn a_flood_of_new_sources_neither_grows_the_table_nor_frees_blocked_networks() {
        // 32 per bucket: more than all the blocked networks, wherever they hash to.
        let capacity = BUCKETS * 32;
        let limiter = FailureLimiter::with_capacity(3, Duration::from_secs(60), 32, capacity);
        let now = Instant::now();
        let blocked: Vec<IpAddr> = (0..20u8).map(|i| IpAddr::from([198, 51, 100, i])).collect();
        for source in &blocked {
            for _ in 0..3 {
                limiter.record_failure(*source, now);
            }
        }
        // 2^16 one-failure sources, 32 times what the table holds.
        for i in 0..=u16::MAX {
            let [a, b] = i.to_be_bytes();
            limiter.record_failure(IpAddr::from([10, 0, a, b]), now);
        }
        assert!(limiter.len() <= capacity);
        for source in &blocked {
            assert!(limiter.blocked(*source, now), "{source} forgotten");
        }
    }

    #[test]
    fn expired_windows_make_room_first() {
        let limiter = FailureLimiter::with_capacity(1, Duration::from_secs(60), 32, BUCKETS);
        let start = Instant::now();
        for i in 0..=255u8 {
            limiter.record_failure(IpAddr::from([10, 0, 0, i]), start);
        }
        let later = start + Duration::from_secs(61);
        limiter.record_failure(ip("198.51.100.7"), later);
        assert!(limiter.blocked(ip("198.51.100.7"), later));
        assert!(limiter.len() <= BUCKETS);
    }
}
