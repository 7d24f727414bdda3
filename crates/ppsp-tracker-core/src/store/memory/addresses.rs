//! Sessions per source address, counted in constant memory.
//!
//! A count-min sketch: four rows of counters, each address adding one to a counter per row.
//! The estimate (the smallest of its counters) never undercounts, and overcounts only when
//! other addresses share all four counters. With 16,384 counters a row a million addresses
//! average 61 a counter, far below the default cap of 4,096, so an honest address is not
//! refused; an address past the cap always is. Removing a session subtracts what adding it
//! added, so the counts stay exact sums.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

const ROWS: usize = 4;
const COLUMNS: usize = 1 << 14;

/// The key an address is counted under: IPv4 addresses whole, IPv6 by their /64 (one
/// subscriber usually holds a whole /64).
fn key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 | (1 << 63),
    }
}

pub(super) struct AddressCounts {
    counters: Box<[AtomicU32]>,
    seeds: [u64; ROWS],
}

/// splitmix64's finaliser: a bijection in which every input bit moves about half the output
/// bits, so neighbouring addresses (127.0.0.1, 127.0.0.2, ...) land in unrelated columns.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl std::fmt::Debug for AddressCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressCounts").finish_non_exhaustive()
    }
}

impl AddressCounts {
    pub(super) fn new(seeds: [u64; ROWS]) -> Self {
        Self {
            counters: (0..ROWS * COLUMNS).map(|_| AtomicU32::new(0)).collect(),
            seeds,
        }
    }

    fn cells(&self, ip: IpAddr) -> [usize; ROWS] {
        let key = key(ip);
        let mut cells = [0; ROWS];
        for (row, cell) in cells.iter_mut().enumerate() {
            *cell = row * COLUMNS + (mix(key ^ self.seeds[row]) as usize % COLUMNS);
        }
        cells
    }

    /// Counts one more session for `ip` unless its estimate has reached `cap`.
    pub(super) fn try_add(&self, ip: IpAddr, cap: u32) -> bool {
        let cells = self.cells(ip);
        let estimate = cells
            .iter()
            .map(|&c| self.counters[c].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if estimate >= cap {
            return false;
        }
        for c in cells {
            self.counters[c].fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Counts one session less for `ip`.
    pub(super) fn remove(&self, ip: IpAddr) {
        for c in self.cells(ip) {
            // Never below zero, even if a caller got the pairing wrong.
            let _ = self.counters[c].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_one_address_and_not_the_others() {
        let counts = AddressCounts::new([1, 2, 3, 4]);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(counts.try_add(a, 3));
        }
        assert!(!counts.try_add(a, 3));
        for i in 0..2000u32 {
            let other = IpAddr::V4((0x0a00_0000 + i).into());
            assert!(counts.try_add(other, 3));
        }
        counts.remove(a);
        assert!(counts.try_add(a, 3));
    }

    #[test]
    fn neighbouring_addresses_do_not_share_their_counts() {
        let counts = AddressCounts::new([11, 22, 33, 44]);
        for last in 1..=255u8 {
            let ip = IpAddr::from([127, 0, 0, last]);
            for _ in 0..4096 {
                assert!(counts.try_add(ip, 4096), "127.0.0.{last}");
            }
            assert!(!counts.try_add(ip, 4096));
        }
        // One /64 is one subscriber.
        let v6a: IpAddr = "2001:db8::1".parse().expect("ip");
        let v6b: IpAddr = "2001:db8::2".parse().expect("ip");
        assert!(counts.try_add(v6a, 1));
        assert!(!counts.try_add(v6b, 1));
    }
}
