//! What the server learns from each answered request: metrics, lifecycle logs and the
//! bytes peers report.
//!
//! Peers report cumulative byte totals per swarm ("since JOIN"), so the bytes a report adds
//! are its increase over the previous report of the same peer and swarm. [`ReportedBytes`]
//! remembers the last totals, sharded by PeerID so concurrent reports rarely share a lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ppsp_proto::{PeerId, Request, RequestBody, Response, Stat, Status, SwarmActionKind, SwarmId};
use ppsp_tracker_core::Format as Dialect;

use crate::metrics::{Direction, Metrics, RefusalCause, mode_name, protocol_name, status_label};

/// Last reported totals of one peer, per swarm (`None`: a report that named no swarm).
#[derive(Debug, Default)]
struct PeerTotals {
    swarms: HashMap<Option<SwarmId>, (u64, u64)>,
    updated: Option<Instant>,
}

/// Last reported (uploaded, downloaded) totals per peer and swarm.
#[derive(Debug)]
pub(crate) struct ReportedBytes {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<PeerId, PeerTotals>>>,
}

const REPORT_SHARDS: usize = 16;

impl Default for ReportedBytes {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..REPORT_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl ReportedBytes {
    fn shard(&self, peer: &PeerId) -> &Mutex<HashMap<PeerId, PeerTotals>> {
        let index =
            usize::try_from(self.hasher.hash_one(peer.as_str())).unwrap_or(0) % REPORT_SHARDS;
        &self.shards[index]
    }

    /// Records new totals and returns how many bytes they add, per direction. A total
    /// lower than the one before (the peer left and joined again) counts in full.
    pub(crate) fn record(
        &self,
        peer: &PeerId,
        swarm: Option<&SwarmId>,
        uploaded: Option<u64>,
        downloaded: Option<u64>,
        now: Instant,
    ) -> (u64, u64) {
        let Ok(mut shard) = self.shard(peer).lock() else {
            return (0, 0);
        };
        let totals = shard.entry(peer.clone()).or_default();
        totals.updated = Some(now);
        let last = totals.swarms.entry(swarm.cloned()).or_insert((0, 0));
        let added = |last: &mut u64, new: Option<u64>| match new {
            Some(new) => {
                let added = if new >= *last { new - *last } else { new };
                *last = new;
                added
            }
            None => 0,
        };
        (added(&mut last.0, uploaded), added(&mut last.1, downloaded))
    }

    /// Forgets one membership (after LEAVE).
    pub(crate) fn forget_swarm(&self, peer: &PeerId, swarm: &SwarmId) {
        if let Ok(mut shard) = self.shard(peer).lock()
            && let Some(totals) = shard.get_mut(peer)
        {
            totals.swarms.remove(&Some(swarm.clone()));
        }
    }

    /// Forgets a peer (after DISCONNECT).
    pub(crate) fn forget_peer(&self, peer: &PeerId) {
        if let Ok(mut shard) = self.shard(peer).lock() {
            shard.remove(peer);
        }
    }

    /// Forgets peers that reported nothing for `idle`: their sessions have expired unless
    /// they kept them alive without reporting, and then their next report counts in full.
    pub(crate) fn prune(&self, now: Instant, idle: Duration) {
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard.retain(|_, totals| {
                    totals
                        .updated
                        .is_some_and(|at| now.saturating_duration_since(at) < idle)
                });
            }
        }
    }

    /// Peers remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

/// Counts, logs and remembers what one request the tracker answered says.
pub(crate) fn account(
    metrics: &Metrics,
    reported: &ReportedBytes,
    dialect: Dialect,
    request: &Request,
    response: &Response,
    elapsed: Duration,
) {
    let method = request.body.method();
    metrics.count_request(method.as_str(), dialect, response.status);
    metrics.observe_latency(method, elapsed);
    if response.status == Status::AuthenticationRequired {
        metrics.refuse(RefusalCause::authentication);
    }
    let peer = &request.peer_id;
    let protocol = protocol_name(dialect);
    let swarm = match &request.body {
        RequestBody::Join(join) => Some(join.swarm_id.as_str()),
        RequestBody::Leave(leave) => Some(leave.swarm_id.as_str()),
        RequestBody::Find(find) => Some(find.swarm_id.as_str()),
        _ => None,
    };
    tracing::debug!(
        method = method.as_str(),
        protocol,
        peer = peer.as_str(),
        swarm = swarm.unwrap_or("-"),
        status = status_label(response.status),
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    if response.status != Status::Ok {
        return;
    }
    match &request.body {
        RequestBody::Connect(connect) => {
            tracing::info!(peer = peer.as_str(), protocol, "session opened");
            for action in &connect.swarm_actions {
                match action.action {
                    SwarmActionKind::Join => {
                        metrics.swarm_joins.inc();
                        tracing::info!(
                            peer = peer.as_str(),
                            swarm = action.swarm_id.as_str(),
                            mode = mode_name(action.mode),
                            protocol,
                            "joined swarm"
                        );
                    }
                    SwarmActionKind::Leave => {
                        metrics.swarm_leaves.inc();
                        reported.forget_swarm(peer, &action.swarm_id);
                        tracing::info!(
                            peer = peer.as_str(),
                            swarm = action.swarm_id.as_str(),
                            protocol,
                            "left swarm"
                        );
                    }
                }
            }
        }
        RequestBody::Disconnect => {
            reported.forget_peer(peer);
            tracing::info!(peer = peer.as_str(), protocol, "session closed");
        }
        RequestBody::Join(join) => {
            metrics.swarm_joins.inc();
            tracing::info!(
                peer = peer.as_str(),
                swarm = join.swarm_id.as_str(),
                mode = mode_name(join.mode),
                protocol,
                "joined swarm"
            );
        }
        RequestBody::Leave(leave) => {
            metrics.swarm_leaves.inc();
            reported.forget_swarm(peer, &leave.swarm_id);
            tracing::info!(
                peer = peer.as_str(),
                swarm = leave.swarm_id.as_str(),
                protocol,
                "left swarm"
            );
        }
        RequestBody::StatReport(report) => {
            let now = Instant::now();
            for stat in &report.stats {
                if let Stat::StreamStats(stats) = stat {
                    let (up, down) = reported.record(
                        peer,
                        stats.swarm_id.as_ref(),
                        stats.uploaded_bytes,
                        stats.downloaded_bytes,
                        now,
                    );
                    metrics.add_reported_bytes(Direction::uploaded, up);
                    metrics.add_reported_bytes(Direction::downloaded, down);
                }
            }
        }
        RequestBody::Find(_) | RequestBody::KeepAlive => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_add_their_increase_only() {
        let reported = ReportedBytes::default();
        let peer = PeerId::new("p").expect("id");
        let swarm = SwarmId::new("s").expect("id");
        let now = Instant::now();
        assert_eq!(
            reported.record(&peer, Some(&swarm), Some(100), Some(10), now),
            (100, 10)
        );
        assert_eq!(
            reported.record(&peer, Some(&swarm), Some(100), None, now),
            (0, 0)
        );
        assert_eq!(
            reported.record(&peer, Some(&swarm), Some(250), Some(30), now),
            (150, 20)
        );
        // Totals restart after a new JOIN.
        assert_eq!(
            reported.record(&peer, Some(&swarm), Some(40), Some(5), now),
            (40, 5)
        );
        reported.forget_swarm(&peer, &swarm);
        assert_eq!(
            reported.record(&peer, Some(&swarm), Some(50), Some(5), now),
            (50, 5)
        );
        assert_eq!(reported.len(), 1);
        reported.prune(now + Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(reported.len(), 0);
        reported.record(&peer, None, Some(1), Some(1), now);
        reported.forget_peer(&peer);
        assert_eq!(reported.len(), 0);
    }
}
