//! How others reach a peer, and peer-list entries built from it.

use std::net::{IpAddr, SocketAddr};

use ppsp_proto::{
    AbilityNat, AddressType, Format, NatHints, PeerAddress, PeerId, PeerInfo, PeerMode,
};

/// Declared addresses kept per peer. A peer list entry repeats them for every candidate, so
/// a peer declaring hundreds would bloat every answer it appears in.
pub const MAX_DECLARED_ADDRESSES: usize = 8;

/// A peer's addresses for others, best first, and what is known of its NAT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The peer.
    pub peer_id: PeerId,
    /// Best first: declared addresses, plus `observed_ip:declared_port` REFLEXIVE entries
    /// when the observed IP is not among the declared ones (first when behind NAT).
    pub addresses: Vec<PeerAddress>,
    /// Behind a NAT, as reported or inferred; `None` when nothing tells.
    pub behind_nat: Option<bool>,
    /// Supports STUN-like traversal, as reported.
    pub stun: Option<bool>,
}

impl Contact {
    /// Builds the contact from what the peer declared and what the tracker observed.
    pub fn build(
        peer_id: PeerId,
        declared: Vec<PeerAddress>,
        observed: SocketAddr,
        hints: NatHints,
        ability_nat: Option<AbilityNat>,
    ) -> Self {
        let observed_ip = observed.ip();
        let observed_declared = declared.iter().any(|a| a.ip == observed_ip);
        let behind_nat = behind_nat(&declared, observed_ip, hints, ability_nat);
        let stun = stun_support(hints, ability_nat);

        let mut reflexive: Vec<PeerAddress> = Vec::new();
        if declared.is_empty() {
            // Nothing declared: the observed source is the only address known. Its port is
            // the HTTP connection's, which may well not be the peer port; it is still the
            // best guess there is.
            reflexive.push(
                PeerAddress::new(observed_ip, observed.port()).with_kind(AddressType::Reflexive),
            );
        } else if !observed_declared {
            for address in &declared {
                if !reflexive.iter().any(|r| r.port == address.port) {
                    reflexive.push(
                        PeerAddress::new(observed_ip, address.port)
                            .with_kind(AddressType::Reflexive),
                    );
                }
            }
        }
        let mut host = declared;
        // Higher ICE priority first; addresses without one keep their declared order last.
        host.sort_by_key(|a| std::cmp::Reverse(a.priority.map_or(0, u64::from)));
        // Most peers declare one address, where they were seen: their list is that address,
        // taken as it is.
        let addresses = if reflexive.is_empty() {
            host
        } else if behind_nat == Some(true) {
            reflexive.into_iter().chain(host).collect()
        } else {
            host.into_iter().chain(reflexive).collect()
        };
        Self {
            peer_id,
            addresses,
            behind_nat,
            stun,
        }
    }

    /// True unless the peer is known to be behind a NAT.
    pub fn reachable(&self) -> bool {
        self.behind_nat != Some(true)
    }
}

/// Behind a NAT: as hinted, else as `ability_nat` says, else inferred from a declared
/// address list that does not hold the observed IP.
pub(crate) fn behind_nat(
    declared: &[PeerAddress],
    observed_ip: IpAddr,
    hints: NatHints,
    ability_nat: Option<AbilityNat>,
) -> Option<bool> {
    hints
        .nat
        .or(match ability_nat {
            Some(AbilityNat::NoNat) => Some(false),
            Some(AbilityNat::Stun | AbilityNat::Turn) => Some(true),
            None => None,
        })
        .or((!declared.is_empty()).then(|| !declared.iter().any(|a| a.ip == observed_ip)))
}

/// Supports STUN-like traversal: as hinted, else as `ability_nat` says.
pub(crate) fn stun_support(hints: NatHints, ability_nat: Option<AbilityNat>) -> Option<bool> {
    hints.stun.or(match ability_nat {
        Some(AbilityNat::Stun) => Some(true),
        Some(AbilityNat::Turn) => Some(false),
        _ => None,
    })
}

/// Behind NAT with no STUN-like help: such a requester should get reachable peers.
pub(crate) fn needs_reachable_peers(behind_nat: Option<bool>, stun: Option<bool>) -> bool {
    behind_nat == Some(true) && stun != Some(true)
}

/// One peer chosen for a list: its mode in the swarm and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its mode in the swarm.
    pub mode: PeerMode,
    /// How to reach it.
    pub contact: Contact,
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

impl Candidate {
    /// The peer list entry for a requester at `requester_ip` speaking `format`. Addresses of
    /// the requester's family go first; a JSON entry carries only the best one.
    pub fn into_peer_info(self, requester_ip: IpAddr, format: Format) -> PeerInfo {
        let mut addresses = self.contact.addresses;
        match format {
            Format::Json => {
                let best = addresses
                    .iter()
                    .position(|a| same_family(a.ip, requester_ip))
                    .unwrap_or(0);
                if addresses.len() > 1 {
                    addresses.swap(0, best);
                    addresses.truncate(1);
                }
            }
            Format::Xml => {
                if addresses.iter().any(|a| !same_family(a.ip, requester_ip)) {
                    // Stable: the contact's own order (best first) holds within each family.
                    addresses.sort_by_key(|a| !same_family(a.ip, requester_ip));
                }
            }
        }
        PeerInfo {
            peer_id: self.contact.peer_id,
            mode: Some(self.mode),
            addresses,
            location: None,
            connection_type: None,
            rank_cost: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn pid() -> PeerId {
        PeerId::new("p").expect("id")
    }

    fn addr(a: u8, port: u16) -> PeerAddress {
        PeerAddress::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port)
    }

    #[test]
    fn reflexive_entry_synthesised_when_observed_ip_not_declared() {
        let observed: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let contact = Contact::build(
            pid(),
            vec![addr(1, 7000)],
            observed,
            NatHints::default(),
            None,
        );
        assert_eq!(contact.behind_nat, Some(true));
        assert_eq!(contact.addresses.len(), 2);
        assert_eq!(contact.addresses[0].ip, observed.ip());
        assert_eq!(contact.addresses[0].port, 7000);
        assert_eq!(contact.addresses[0].kind, Some(AddressType::Reflexive));
        assert_eq!(contact.addresses[1], addr(1, 7000));
        assert!(needs_reachable_peers(contact.behind_nat, contact.stun));

        let same: SocketAddr = "10.0.0.1:40000".parse().expect("addr");
        let direct = Contact::build(pid(), vec![addr(1, 7000)], same, NatHints::default(), None);
        assert_eq!(direct.addresses, vec![addr(1, 7000)]);
        assert_eq!(direct.behind_nat, Some(false));
    }

    #[test]
    fn stun_hint_lifts_nat_preference() {
        let observed: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let hints = NatHints {
            nat: None,
            stun: Some(true),
        };
        let contact = Contact::build(pid(), vec![addr(1, 7000)], observed, hints, None);
        assert!(!needs_reachable_peers(contact.behind_nat, contact.stun));
        assert!(!contact.reachable());
    }
}
