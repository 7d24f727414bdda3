//! Sessions: one per registered PeerID.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::StdRng;

use ppsp_proto::{
    AbilityNat, AddressType, AuthToken, NatHints, PeerAddress, PeerId, PeerMode, Request, SwarmId,
};

use crate::Dialect;
use crate::answer::Answer;

/// Random bytes in an AuthToken: 192 bits, above the 128 the profile asks for.
const TOKEN_BYTES: usize = 24;

/// Declared addresses kept per peer. A peer list entry repeats them for every candidate, so
/// a peer declaring hundreds would bloat every answer it appears in.
pub const MAX_DECLARED_ADDRESSES: usize = 8;

/// A fresh AuthToken: random bytes from a CSPRNG, base64url without padding.
pub(crate) fn new_token(rng: &mut StdRng) -> Option<AuthToken> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rng.fill_bytes(&mut bytes);
    AuthToken::new(URL_SAFE_NO_PAD.encode(bytes)).ok()
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How others reach a peer, shared by all its memberships so peer lists can be built under
/// a swarm lock alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Contact {
    pub(crate) peer_id: PeerId,
    /// Best first: declared addresses, plus `observed_ip:declared_port` REFLEXIVE entries
    /// when the observed IP is not among the declared ones (first when behind NAT).
    pub(crate) addresses: Vec<PeerAddress>,
    /// Behind a NAT, as reported or inferred; `None` when nothing tells.
    pub(crate) behind_nat: Option<bool>,
    /// Supports STUN-like traversal, as reported.
    pub(crate) stun: Option<bool>,
}

impl Contact {
    /// Builds the contact from what the peer declared and what the tracker observed.
    pub(crate) fn build(
        peer_id: &PeerId,
        declared: &[PeerAddress],
        observed: SocketAddr,
        hints: NatHints,
        ability_nat: Option<AbilityNat>,
    ) -> Self {
        let observed_ip = observed.ip();
        let observed_declared = declared.iter().any(|a| a.ip == observed_ip);
        let behind_nat = hints
            .nat
            .or(match ability_nat {
                Some(AbilityNat::NoNat) => Some(false),
                Some(AbilityNat::Stun | AbilityNat::Turn) => Some(true),
                None => None,
            })
            .or((!declared.is_empty()).then_some(!observed_declared));
        let stun = hints.stun.or(match ability_nat {
            Some(AbilityNat::Stun) => Some(true),
            Some(AbilityNat::Turn) => Some(false),
            _ => None,
        });

        let mut host: Vec<PeerAddress> = declared.to_vec();
        // Higher ICE priority first; addresses without one keep their declared order last.
        host.sort_by_key(|a| std::cmp::Reverse(a.priority.map_or(0, u64::from)));
        let mut reflexive: Vec<PeerAddress> = Vec::new();
        if declared.is_empty() {
            // Nothing declared: the observed source is the only address known. Its port is
            // the HTTP connection's, which may well not be the peer port; it is still the
            // best guess there is.
            reflexive.push(
                PeerAddress::new(observed_ip, observed.port()).with_kind(AddressType::Reflexive),
            );
        } else if !observed_declared {
            for address in declared {
                if !reflexive.iter().any(|r| r.port == address.port) {
                    reflexive.push(
                        PeerAddress::new(observed_ip, address.port)
                            .with_kind(AddressType::Reflexive),
                    );
                }
            }
        }
        let addresses = if behind_nat == Some(true) {
            reflexive.into_iter().chain(host).collect()
        } else {
            host.into_iter().chain(reflexive).collect()
        };
        Self {
            peer_id: peer_id.clone(),
            addresses,
            behind_nat,
            stun,
        }
    }

    /// True unless the peer is known to be behind a NAT.
    pub(crate) fn reachable(&self) -> bool {
        self.behind_nat != Some(true)
    }

    /// Behind NAT with no STUN-like help: such a requester should get reachable peers.
    pub(crate) fn needs_reachable_peers(&self) -> bool {
        self.behind_nat == Some(true) && self.stun != Some(true)
    }
}

/// One swarm a session is in.
#[derive(Clone, Debug)]
pub(crate) struct Joined {
    pub(crate) swarm_id: SwarmId,
    pub(crate) mode: PeerMode,
}

struct ReplayEntry {
    request: Request,
    answer: Arc<Answer>,
    at: Instant,
}

/// What the retransmission cache says about a request.
pub(crate) enum Replay {
    /// Same TransactionID, same request: answer with this.
    Hit(Arc<Answer>),
    /// Same TransactionID, different request.
    Conflict,
    /// Not seen.
    Miss,
}

/// A registered peer.
pub(crate) struct Session {
    pub(crate) dialect: Dialect,
    /// XML only; JSON peers authenticate at the HTTP layer on every request.
    pub(crate) token: Option<AuthToken>,
    /// Unique per CONNECT, so stale timers and memberships of a replaced session are told
    /// apart from the current ones.
    pub(crate) generation: u64,
    pub(crate) last_activity: Instant,
    /// The deadline under which the session sits in its shard's idle queue.
    pub(crate) queued_deadline: Instant,
    pub(crate) observed: SocketAddr,
    pub(crate) declared: Vec<PeerAddress>,
    pub(crate) hints: NatHints,
    pub(crate) ability_nat: Option<AbilityNat>,
    pub(crate) contact: Arc<Contact>,
    pub(crate) swarms: Vec<Joined>,
    replay: VecDeque<ReplayEntry>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        peer_id: &PeerId,
        dialect: Dialect,
        token: Option<AuthToken>,
        generation: u64,
        now: Instant,
        observed: SocketAddr,
        declared: &[PeerAddress],
        ability_nat: Option<AbilityNat>,
    ) -> Self {
        let declared: Vec<PeerAddress> = declared
            .iter()
            .take(MAX_DECLARED_ADDRESSES)
            .cloned()
            .collect();
        let hints = NatHints::default();
        let contact = Arc::new(Contact::build(
            peer_id,
            &declared,
            observed,
            hints,
            ability_nat,
        ));
        Self {
            dialect,
            token,
            generation,
            last_activity: now,
            queued_deadline: now,
            observed,
            declared,
            hints,
            ability_nat,
            contact,
            swarms: Vec::new(),
            replay: VecDeque::new(),
        }
    }

    /// False once the inactivity timeout has passed, even before a sweep removes it.
    pub(crate) fn alive(&self, now: Instant, idle_timeout: Duration) -> bool {
        self.last_activity
            .checked_add(idle_timeout)
            .is_none_or(|deadline| now < deadline)
    }

    /// Checks the AuthToken of a request against the session's, in constant time.
    pub(crate) fn token_matches(&self, presented: Option<&AuthToken>) -> bool {
        match (&self.token, presented) {
            (Some(ours), Some(theirs)) => {
                constant_time_eq(ours.as_str().as_bytes(), theirs.as_str().as_bytes())
            }
            _ => false,
        }
    }

    pub(crate) fn is_member(&self, swarm_id: &SwarmId) -> bool {
        self.swarms.iter().any(|j| &j.swarm_id == swarm_id)
    }

    pub(crate) fn has_leech_membership(&self) -> bool {
        self.swarms.iter().any(|j| j.mode == PeerMode::Leech)
    }

    /// Merges NAT hints; returns true when the contact changed.
    pub(crate) fn merge_hints(&mut self, hints: NatHints) -> bool {
        if hints.is_empty() {
            return false;
        }
        self.hints.nat = hints.nat.or(self.hints.nat);
        self.hints.stun = hints.stun.or(self.hints.stun);
        self.rebuild_contact()
    }

    /// Recomputes the contact; returns true when it changed.
    pub(crate) fn rebuild_contact(&mut self) -> bool {
        let contact = Contact::build(
            &self.contact.peer_id,
            &self.declared,
            self.observed,
            self.hints,
            self.ability_nat,
        );
        if *self.contact == contact {
            return false;
        }
        self.contact = Arc::new(contact);
        true
    }

    /// Looks the request up in the retransmission cache.
    pub(crate) fn replay_lookup(&self, request: &Request, now: Instant, ttl: Duration) -> Replay {
        let fresh = |entry: &&ReplayEntry| entry.at.checked_add(ttl).is_none_or(|end| now < end);
        match self
            .replay
            .iter()
            .filter(fresh)
            .find(|e| e.request.transaction_id == request.transaction_id)
        {
            Some(entry) if entry.request == *request => Replay::Hit(Arc::clone(&entry.answer)),
            Some(_) => Replay::Conflict,
            None => Replay::Miss,
        }
    }

    /// Remembers a response for retransmissions, keeping the newest `capacity`.
    pub(crate) fn remember(
        &mut self,
        request: &Request,
        answer: &Arc<Answer>,
        now: Instant,
        capacity: usize,
        ttl: Duration,
    ) {
        if capacity == 0 {
            return;
        }
        while self.replay.len() >= capacity {
            self.replay.pop_front();
        }
        while self
            .replay
            .front()
            .is_some_and(|e| e.at.checked_add(ttl).is_some_and(|end| end <= now))
        {
            self.replay.pop_front();
        }
        self.replay.push_back(ReplayEntry {
            request: request.clone(),
            answer: Arc::clone(answer),
            at: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rand::SeedableRng;

    use super::*;

    fn pid() -> PeerId {
        PeerId::new("p").expect("id")
    }

    fn addr(a: u8, port: u16) -> PeerAddress {
        PeerAddress::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port)
    }

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = new_token(&mut rng).expect("token");
        let b = new_token(&mut rng).expect("token");
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn reflexive_entry_synthesised_when_observed_ip_not_declared() {
        let observed: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let contact = Contact::build(
            &pid(),
            &[addr(1, 7000)],
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
        assert!(contact.needs_reachable_peers());

        let same: SocketAddr = "10.0.0.1:40000".parse().expect("addr");
        let direct = Contact::build(&pid(), &[addr(1, 7000)], same, NatHints::default(), None);
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
        let contact = Contact::build(&pid(), &[addr(1, 7000)], observed, hints, None);
        assert!(!contact.needs_reachable_peers());
        assert!(!contact.reachable());
    }
}
