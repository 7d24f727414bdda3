//! Limits failed CONNECT authentications per source network and per PeerID, so password
//! guessing costs the guesser time instead of costing the tracker argon2 work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; beyond that, expired windows are dropped first and, if that is not
/// enough, everything is forgotten (the limiter fails open rather than growing without bound).
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv4 address, or the /64 network of an IPv6 address (one host usually owns a
    /// whole /64, so single addresses would be free to rotate).
    Network(IpAddr),
    Peer(String),
}

fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Fixed-window failure counters.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<Key, (Instant, u32)>>,
}

impl FailureLimiter {
    /// `max_failures` per `window` per network and per PeerID; 0 turns the limiter off.
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(ip: IpAddr, peer_id: &str) -> [Key; 2] {
        [Key::Network(network_of(ip)), Key::Peer(peer_id.to_owned())]
    }

    /// True when the source or the PeerID used up its failures in the current window.
    pub(crate) fn blocked(&self, ip: IpAddr, peer_id: &str, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        Self::keys(ip, peer_id).iter().any(|key| {
            entries.get(key).is_some_and(|(start, count)| {
                now.duration_since(*start) < self.window && *count >= self.max_failures
            })
        })
    }

    /// Counts one failed authentication.
    pub(crate) fn record_failure(&self, ip: IpAddr, peer_id: &str, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            let window = self.window;
            entries.retain(|_, (start, _)| now.duration_since(*start) < window);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        for key in Self::keys(ip, peer_id) {
            let entry = entries.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let start = Instant::now();
        for _ in 0..3 {
            assert!(!limiter.blocked(ip, "alice", start));
            limiter.record_failure(ip, "alice", start);
        }
        assert!(limiter.blocked(ip, "alice", start));
        // Same source, other PeerID: blocked by the source.
        assert!(limiter.blocked(ip, "bob", start));
        // Other source, same PeerID: blocked by the PeerID.
        assert!(limiter.blocked("203.0.113.1".parse().expect("ip"), "alice", start));
        // Unrelated.
        assert!(!limiter.blocked("203.0.113.1".parse().expect("ip"), "bob", start));
        assert!(!limiter.blocked(ip, "alice", start + Duration::from_secs(61)));
    }

    #[test]
    fn ipv6_counts_per_slash_64() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        let now = Instant::now();
        limiter.record_failure("2001:db8:1:2::1".parse().expect("ip"), "p1", now);
        assert!(limiter.blocked("2001:db8:1:2:ffff::9".parse().expect("ip"), "p2", now));
        assert!(!limiter.blocked("2001:db8:1:3::1".parse().expect("ip"), "p2", now));
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = FailureLimiter::new(0, Duration::from_secs(60));
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let now = Instant::now();
        limiter.record_failure(ip, "alice", now);
        assert!(!limiter.blocked(ip, "alice", now));
    }
}
