//! Counting limits per remote address (connections, uploads), so that one host cannot
//! take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many slots each remote address holds.
#[derive(Debug, Default)]
pub(crate) struct PerAddress {
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot of a [`PerAddress`], given back when dropped.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// Takes a slot for `ip` unless it already holds `limit`.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        // IPv4-mapped IPv6 addresses are the same host as their IPv4 form.
        let ip = ip.to_canonical();
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            owner: Arc::clone(self),
            ip,
        })
    }

    /// Slots `ip` holds now.
    #[cfg(test)]
    pub(crate) fn held(&self, ip: IpAddr) -> usize {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_bounded_on_its_own() {
        let limits = Arc::new(PerAddress::default());
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "::ffff:127.0.0.3".parse().expect("ip");
        let first = limits.try_take(a, 2).expect("slot");
        let second = limits.try_take(a, 2).expect("slot");
        assert!(limits.try_take(a, 2).is_none());
        let other = limits
            .try_take(b, 1)
            .expect("another address has its own slots");
        assert!(
            limits
                .try_take("127.0.0.3".parse().expect("ip"), 1)
                .is_none()
        );
        drop(first);
        assert_eq!(limits.held(a), 1);
        assert!(limits.try_take(a, 2).is_some());
        drop((second, other));
        assert_eq!(limits.held(a), 0);
    }
}
