//! The background half of a tracker session: periodic STAT_REPORT, KEEPALIVE when idle,
//! and LEAVE plus DISCONNECT at the end (draft-gu-ppsp-tracker-protocol-06, peer timers).

use std::collections::BTreeSet;
use std::time::Duration;

use ppsp_proto::{ChunkMapReport, Stat, StatReport, StreamStats, SwarmId};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{ClientError, TrackerClient};

/// What the rest of the peer tells the session to report. Publish updates through a
/// [`watch`] channel; the session reads the latest value when it reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// Chunk maps, one report per swarm. Reports for swarms not joined are not sent.
    pub chunk_maps: Vec<ChunkMapReport>,
    /// Transfer counters, one per swarm (with `swarm_id` set).
    pub stream_stats: Vec<StreamStats>,
    /// `NAT` flag; when `None`, the client's own finding from CONNECT is sent.
    pub nat: Option<bool>,
    /// `STUN` flag; when `None`, the client's setting is sent.
    pub stun: Option<bool>,
}

impl PeerStatus {
    /// Chunks held across every map.
    fn chunks_held(&self) -> u64 {
        self.chunk_maps
            .iter()
            .flat_map(|report| &report.clips)
            .filter_map(|clip| clip.segments.as_ref())
            .flat_map(|segments| &segments.segments)
            .filter_map(|segment| segment.map.as_ref())
            .map(ppsp_proto::ChunkMap::count)
            .sum()
    }

    /// How many maps hold every chunk they cover. A map that has just become complete is
    /// always worth reporting, however few chunks that took: a small file finishes with
    /// fewer than [`SessionTimers::significant_change_chunks`] chunks and would otherwise
    /// be shown as empty by the tracker for a whole report period.
    fn complete_maps(&self) -> usize {
        self.chunk_maps
            .iter()
            .flat_map(|report| &report.clips)
            .filter_map(|clip| clip.segments.as_ref())
            .flat_map(|segments| &segments.segments)
            .filter_map(|segment| segment.map.as_ref())
            .filter(|map| !map.is_empty() && map.is_full())
            .count()
    }

    /// Which (swarm, clip) pairs have maps; a new pair is always worth reporting.
    fn map_keys(&self) -> BTreeSet<(SwarmId, String)> {
        self.chunk_maps
            .iter()
            .flat_map(|report| {
                report
                    .clips
                    .iter()
                    .map(|clip| (report.swarm_id.clone(), clip.name.clone()))
            })
            .collect()
    }
}

/// Periods of a [`TrackerSession`]; [`SessionTimers::default`] gives the peer timers of
/// draft-gu-ppsp-tracker-protocol-06.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTimers {
    /// STAT_REPORT period while at least one swarm is joined (60 s).
    pub stat_report_interval: Duration,
    /// KEEPALIVE after this long without any request (60 s).
    pub keepalive_idle: Duration,
    /// Least time between two STAT_REPORTs, also for reports triggered by a chunk-map
    /// change (10 s).
    pub min_report_gap: Duration,
    /// How many chunks gained or lost since the last report count as a large change that
    /// is reported early (64). A map that becomes complete is reported early too.
    pub significant_change_chunks: u64,
    /// Longest time the closing LEAVEs and DISCONNECT may take together (10 s), so that
    /// stopping a peer whose tracker is gone does not sit through every retransmission.
    pub close_timeout: Duration,
}

impl Default for SessionTimers {
    fn default() -> Self {
        Self {
            stat_report_interval: Duration::from_secs(60),
            keepalive_idle: Duration::from_secs(60),
            min_report_gap: Duration::from_secs(10),
            significant_change_chunks: 64,
            close_timeout: Duration::from_secs(10),
        }
    }
}

/// A running background session for one [`TrackerClient`].
///
/// Stop it with [`TrackerSession::shutdown`] (for example after `tokio::signal::ctrl_c`),
/// which sends LEAVE for each joined swarm and then DISCONNECT. Dropping the handle stops it
/// the same way, without waiting.
#[derive(Debug)]
pub struct TrackerSession {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ClientError>>,
}

impl TrackerSession {
    /// Starts the session task on the current tokio runtime. The client should have joined
    /// its swarms (or will join them; the task follows [`TrackerClient::joined_swarms`]).
    pub fn spawn(
        client: TrackerClient,
        status: watch::Receiver<PeerStatus>,
        timers: SessionTimers,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(client, status, timers, stopped));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the periodic work, LEAVEs every swarm and DISCONNECTs; returns the first
    /// error of those requests.
    ///
    /// # Errors
    /// The first [`ClientError`] of the closing requests, or [`ClientError::SessionGone`]
    /// if the task had died.
    pub async fn shutdown(mut self) -> Result<(), ClientError> {
        if let Some(stop) = self.stop.take() {
            // An error only means the task already ended; its result tells why.
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::SessionGone),
        }
    }

    /// True once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// A moment far enough away to mean "never" while staying clear of `Instant` overflow.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365)
}

/// `at + delay`, saturating at [`far_future`] so that absurd settings cannot overflow.
fn later(at: Instant, delay: Duration) -> Instant {
    let limit = far_future(at);
    at.checked_add(delay).map_or(limit, |when| when.min(limit))
}

async fn run(
    client: TrackerClient,
    mut status: watch::Receiver<PeerStatus>,
    timers: SessionTimers,
    mut stopped: oneshot::Receiver<()>,
) -> Result<(), ClientError> {
    let started = Instant::now();
    let mut last_report: Option<Instant> = None;
    // What the last report said, to judge how large a change is.
    let mut reported_chunks = 0u64;
    let mut reported_keys: BTreeSet<(SwarmId, String)> = BTreeSet::new();
    let mut reported_complete = 0usize;
    let mut change_pending = false;
    let mut watching = true;
    // The current value counts as a change if it already holds chunks (a seed).
    {
        let current = status.borrow_and_update();
        if current.chunks_held() >= timers.significant_change_chunks.max(1)
            || !current.map_keys().is_empty()
        {
            change_pending = true;
        }
    }

    loop {
        let now = Instant::now();
        let joined = !client.joined_swarms().is_empty();
        let keepalive_at = later(client.last_request(), timers.keepalive_idle);
        let periodic_at = if joined {
            later(last_report.unwrap_or(started), timers.stat_report_interval)
        } else {
            far_future(now)
        };
        let change_at = if joined && change_pending {
            last_report.map_or(now, |at| later(at, timers.min_report_gap))
        } else {
            far_future(now)
        };
        let report_at = periodic_at.min(change_at);
        let wake_at = report_at.min(keepalive_at);

        tokio::select! {
            biased;
            _ = &mut stopped => break,
            changed = status.changed(), if watching => {
                if changed.is_err() {
                    // The publisher is gone; keep reporting its last value.
                    watching = false;
                    continue;
                }
                let current = status.borrow_and_update();
                let held = current.chunks_held();
                if held.abs_diff(reported_chunks) >= timers.significant_change_chunks.max(1)
                    || current.map_keys() != reported_keys
                    || current.complete_maps() != reported_complete
                {
                    change_pending = true;
                }
            }
            () = tokio::time::sleep_until(wake_at) => {
                let now = Instant::now();
                if joined && now >= report_at {
                    let snapshot = status.borrow().clone();
                    reported_chunks = snapshot.chunks_held();
                    reported_keys = snapshot.map_keys();
                    reported_complete = snapshot.complete_maps();
                    change_pending = false;
                    last_report = Some(now);
                    if let Err(error) = send_report(&client, snapshot).await {
                        tracing::warn!(%error, "STAT_REPORT failed");
                    }
                } else if now >= later(client.last_request(), timers.keepalive_idle) {
                    // Another request may have gone out while sleeping; only an idle
                    // session needs a KEEPALIVE.
                    if client.is_connected() {
                        if let Err(error) = client.keepalive().await {
                            tracing::warn!(%error, "KEEPALIVE failed");
                        }
                    } else {
                        // Nothing to keep alive; look again after another idle period.
                        tokio::select! {
                            biased;
                            _ = &mut stopped => break,
                            () = tokio::time::sleep(timers.keepalive_idle) => {}
                        }
                    }
                }
            }
        }
    }
    match tokio::time::timeout(timers.close_timeout, close(&client)).await {
        Ok(result) => result,
        Err(_elapsed) => {
            tracing::warn!(timeout = ?timers.close_timeout, "tracker did not confirm LEAVE and DISCONNECT in time");
            Err(ClientError::Unreachable {
                last_failure: format!(
                    "closing the session took longer than {:?}",
                    timers.close_timeout
                ),
            })
        }
    }
}

/// Builds and sends one STAT_REPORT from `snapshot`, limited to the joined swarms.
async fn send_report(client: &TrackerClient, snapshot: PeerStatus) -> Result<(), ClientError> {
    let joined: BTreeSet<SwarmId> = client.joined_swarms().into_iter().collect();
    let hints = client.nat_hints();
    let mut stats: Vec<Stat> = Vec::new();
    stats.extend(
        snapshot
            .chunk_maps
            .into_iter()
            .filter(|report| joined.contains(&report.swarm_id))
            .map(Stat::ChunkMap),
    );
    stats.extend(
        snapshot
            .stream_stats
            .into_iter()
            .filter(|report| {
                report
                    .swarm_id
                    .as_ref()
                    .is_none_or(|id| joined.contains(id))
            })
            .map(Stat::StreamStats),
    );
    if let Some(nat) = snapshot.nat.or(hints.nat) {
        stats.push(Stat::Nat(nat));
    }
    if let Some(stun) = snapshot.stun.or(hints.stun) {
        stats.push(Stat::Stun(stun));
    }
    if stats.is_empty() {
        // Nothing to say; liveness is KEEPALIVE's job.
        return Ok(());
    }
    client.stat_report(StatReport { stats }).await
}

/// LEAVE every swarm, then DISCONNECT; the first error is kept. Once the tracker proves
/// unreachable, the remaining requests are skipped: each would wait just as long in vain,
/// and the tracker drops the session by itself when it times out.
async fn close(client: &TrackerClient) -> Result<(), ClientError> {
    let mut first_error = None;
    for swarm in client.joined_swarms() {
        match client.leave(&swarm).await {
            Ok(()) => {}
            Err(error @ ClientError::Unreachable { .. }) => {
                tracing::warn!(%swarm, %error, "LEAVE failed; tracker unreachable");
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(%swarm, %error, "LEAVE failed");
                first_error.get_or_insert(error);
            }
        }
    }
    if let Err(error) = client.disconnect().await {
        tracing::warn!(%error, "DISCONNECT failed");
        first_error.get_or_insert(error);
    }
    first_error.map_or(Ok(()), Err)
}
