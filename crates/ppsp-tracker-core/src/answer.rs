//! Answers before they become responses.
//!
//! A handler produces an [`Answer`]: the response without its peer lists, plus each list as
//! candidates (mode and a shared [`Contact`]). Collecting candidates under a swarm lock only
//! bumps reference counts; the `PeerInfo` values are built after every lock is released.
//! The retransmission cache keeps the compact form too, which makes a cached FIND cost a
//! few hundred bytes instead of a full copy of its peer list.

use std::net::IpAddr;
use std::sync::Arc;

use ppsp_proto::{PeerInfo, PeerMode, Response};

use crate::Dialect;
use crate::session::Contact;

/// One peer chosen for a list.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) mode: PeerMode,
    pub(crate) contact: Arc<Contact>,
}

/// A response whose peer lists are still candidates.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    /// The response with empty peer lists.
    pub(crate) response: Response,
    /// Candidates for `response.swarm_results[i]`, in order.
    pub(crate) lists: Vec<Vec<Candidate>>,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Self {
            response,
            lists: Vec::new(),
        }
    }
}

impl Answer {
    /// The full response for a requester at `requester_ip` speaking `dialect`.
    pub(crate) fn render(&self, requester_ip: IpAddr, dialect: Dialect) -> Response {
        let mut response = self.response.clone();
        for (result, list) in response.swarm_results.iter_mut().zip(&self.lists) {
            result.peers = list
                .iter()
                .map(|c| peer_info(c, requester_ip, dialect))
                .collect();
        }
        response
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// A peer list entry. Addresses of the requester's family go first; a JSON entry carries
/// only the best one.
fn peer_info(candidate: &Candidate, requester_ip: IpAddr, dialect: Dialect) -> PeerInfo {
    let all = &candidate.contact.addresses;
    let addresses = match dialect {
        Dialect::Json => all
            .iter()
            .find(|a| same_family(a.ip, requester_ip))
            .or_else(|| all.first())
            .cloned()
            .into_iter()
            .collect(),
        Dialect::Xml => {
            let mut addresses = all.clone();
            if addresses.iter().any(|a| !same_family(a.ip, requester_ip)) {
                // Stable: the contact's own order (best first) holds within each family.
                addresses.sort_by_key(|a| !same_family(a.ip, requester_ip));
            }
            addresses
        }
    };
    PeerInfo {
        peer_id: candidate.contact.peer_id.clone(),
        mode: Some(candidate.mode),
        addresses,
        location: None,
        connection_type: None,
        rank_cost: None,
    }
}
