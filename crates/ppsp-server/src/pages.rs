//! The GET endpoints: `/healthz`, `/metrics`, `/api/stats`, `/api/history` and the
//! dashboard at `/`.
//!
//! Everything read from the tracker's state goes through three functions, [`read_totals`],
//! [`read_overview`] and [`read_swarm`]; the documents they feed are described in
//! `docs/tracker.md` ("Statistics JSON"). Both list endpoints page: a request never returns
//! more than [`MAX_PAGE`] swarms or peers, whatever the tracker holds.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use ppsp_proto::{MediaType, Method, PeerMode, Status};
use ppsp_tracker_core::{PeerSnapshot, Snapshot, SwarmSnapshot, Tracker};
use serde::Serialize;

use crate::history::Point;
use crate::http::{Reply, RequestError};
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, mode_name, status_label};
use crate::state::AppState;

const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Most swarms or peers in one page.
pub(crate) const MAX_PAGE: usize = 500;
/// Swarms per page when the query names no `limit`.
const DEFAULT_SWARMS: usize = 50;
/// Peers per page of one swarm when the query names no `limit`.
const DEFAULT_PEERS: usize = 50;
/// Peers listed with each swarm of the swarm list when the query names no `peers`.
const DEFAULT_PEER_PREVIEW: usize = 20;
/// Most peers listed with each swarm of the swarm list.
const MAX_PEER_PREVIEW: usize = 100;
/// Most finished leeches listed for one swarm.
const MAX_FINISHED: usize = 10;

/// Answers a GET (or HEAD) for one of the paths in `http::GET_PATHS`.
pub(crate) fn get(state: &AppState, path: &str, query: Option<&str>) -> Reply {
    let no_store = || vec![(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    let json = |status: StatusCode, body: String| Reply::Plain {
        status,
        content_type: "application/json",
        body: Bytes::from(body),
        headers: no_store(),
    };
    match path {
        "/healthz" => Reply::Plain {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"ok"),
            headers: no_store(),
        },
        "/metrics" => Reply::Plain {
            status: StatusCode::OK,
            content_type: OPENMETRICS_CONTENT_TYPE,
            body: Bytes::from(metrics_text(state)),
            headers: no_store(),
        },
        "/api/stats" => {
            let query = StatsQuery::parse(query.unwrap_or(""));
            match &query.swarm {
                Some(swarm_id) => match swarm_json(state, swarm_id, &query) {
                    Some(body) => json(StatusCode::OK, body),
                    None => json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({ "error": "no such swarm", "swarm_id": swarm_id })
                            .to_string(),
                    ),
                },
                None => json(StatusCode::OK, stats_json(state, &query)),
            }
        }
        "/api/history" => json(StatusCode::OK, state.history.to_json()),
        "/" => Reply::Plain {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body: Bytes::from_static(DASHBOARD_HTML.as_bytes()),
            headers: Vec::new(),
        },
        _ => RequestError::NotFound.into_reply(),
    }
}

/// The query string of `/api/stats`. Unknown keys and unreadable numbers are ignored (the
/// defaults apply); numbers are clamped to their ranges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StatsQuery {
    /// One swarm's detail instead of the swarm list.
    pub(crate) swarm: Option<String>,
    /// Page size (swarms, or peers of one swarm).
    pub(crate) limit: Option<usize>,
    /// Entries skipped before the page.
    pub(crate) offset: usize,
    /// Swarm list only: keep swarms whose ID contains this (case-insensitive).
    pub(crate) filter: Option<String>,
    /// Swarm list only: peers listed with each swarm.
    pub(crate) peers: Option<usize>,
}

impl StatsQuery {
    /// Parses `swarm=`, `limit=`, `offset=`, `q=` and `peers=` (form-urlencoded).
    pub(crate) fn parse(query: &str) -> Self {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "swarm" if !value.is_empty() => parsed.swarm = Some(value.into_owned()),
                "limit" => parsed.limit = value.parse().ok(),
                "offset" => parsed.offset = value.parse().unwrap_or(0),
                "q" if !value.is_empty() => parsed.filter = Some(value.into_owned()),
                "peers" => parsed.peers = value.parse().ok(),
                _ => {}
            }
        }
        parsed
    }

    fn limit_or(&self, default: usize) -> usize {
        self.limit.unwrap_or(default).min(MAX_PAGE)
    }
}

// ---------------------------------------------------------------------------------------
// Reading the tracker. The only code that knows the shape of `Snapshot`.
// ---------------------------------------------------------------------------------------

/// Totals of the tracker state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct StateTotals {
    /// Live sessions.
    pub(crate) sessions: usize,
    /// Swarms with a member.
    pub(crate) swarms: usize,
    /// Memberships in SEED mode.
    pub(crate) seeds: usize,
    /// Memberships in LIVESEED mode.
    pub(crate) live_seeds: usize,
    /// Memberships in LEECH mode.
    pub(crate) leeches: usize,
}

impl StateTotals {
    /// Every membership.
    pub(crate) fn peers(&self) -> usize {
        self.seeds + self.live_seeds + self.leeches
    }

    fn from_snapshot(snapshot: &Snapshot) -> Self {
        snapshot.swarms.iter().fold(
            Self {
                sessions: snapshot.sessions,
                swarms: snapshot.swarms.len(),
                ..Self::default()
            },
            |totals, swarm| Self {
                seeds: totals.seeds + swarm.seeds,
                live_seeds: totals.live_seeds + swarm.live_seeds,
                leeches: totals.leeches + swarm.leeches,
                ..totals
            },
        )
    }
}

/// One swarm, without its peers.
#[derive(Clone, Debug)]
pub(crate) struct SwarmSummary {
    swarm_id: String,
    live: bool,
    seeds: usize,
    live_seeds: usize,
    leeches: usize,
    clips: Vec<ClipSummary>,
    /// The first members (the swarm list's preview, or one page of the detail).
    peers: Vec<PeerSummary>,
    /// Leeches holding every chunk of the swarm's span.
    finished: Vec<PeerSummary>,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
}

impl SwarmSummary {
    fn members(&self) -> usize {
        self.seeds + self.live_seeds + self.leeches
    }

    /// Chunks from the first to the last reported by any member, over every clip.
    fn span(&self) -> u64 {
        self.clips
            .iter()
            .map(|clip| clip.last.saturating_sub(clip.first).saturating_add(1))
            .sum()
    }
}

#[derive(Clone, Debug)]
struct ClipSummary {
    clip: String,
    media: MediaType,
    first: u64,
    last: u64,
    chunks_available: u64,
}

#[derive(Clone, Debug)]
struct PeerSummary {
    peer_id: String,
    mode: PeerMode,
    joined_at: Instant,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    available_bandwidth: u64,
    chunks_held: u64,
    behind_nat: Option<bool>,
    stun: Option<bool>,
}

impl PeerSummary {
    fn from_snapshot(peer: &PeerSnapshot) -> Self {
        Self {
            peer_id: peer.peer_id.as_str().to_owned(),
            mode: peer.mode,
            joined_at: peer.joined_at,
            uploaded_bytes: peer.uploaded_bytes,
            downloaded_bytes: peer.downloaded_bytes,
            available_bandwidth: peer.available_bandwidth,
            chunks_held: peer.chunks_held,
            behind_nat: peer.behind_nat,
            stun: peer.stun,
        }
    }
}

fn summarize(swarm: &SwarmSnapshot, peer_offset: usize, peer_limit: usize) -> SwarmSummary {
    let clips: Vec<ClipSummary> = swarm
        .chunk_availability
        .iter()
        .map(|clip| ClipSummary {
            clip: clip.clip.clone(),
            media: clip.media,
            first: clip.first,
            last: clip.last,
            chunks_available: clip.chunks_available,
        })
        .collect();
    let mut summary = SwarmSummary {
        swarm_id: swarm.swarm_id.as_str().to_owned(),
        live: swarm.live,
        seeds: swarm.seeds,
        live_seeds: swarm.live_seeds,
        leeches: swarm.leeches,
        clips,
        peers: swarm
            .peers
            .iter()
            .skip(peer_offset)
            .take(peer_limit)
            .map(PeerSummary::from_snapshot)
            .collect(),
        finished: Vec::new(),
        uploaded_bytes: swarm.peers.iter().map(|p| p.uploaded_bytes).sum(),
        downloaded_bytes: swarm.peers.iter().map(|p| p.downloaded_bytes).sum(),
    };
    let span = summary.span();
    if span > 0 {
        let mut finished: Vec<&PeerSnapshot> = swarm
            .peers
            .iter()
            .filter(|p| p.mode == PeerMode::Leech && p.chunks_held >= span)
            .collect();
        // Most recently joined first: the freshest completions.
        finished.sort_by_key(|peer| std::cmp::Reverse(peer.joined_at));
        summary.finished = finished
            .into_iter()
            .take(MAX_FINISHED)
            .map(PeerSummary::from_snapshot)
            .collect();
    }
    summary
}

/// Totals of the tracker state.
pub(crate) fn read_totals(tracker: &Tracker) -> StateTotals {
    StateTotals::from_snapshot(&tracker.snapshot())
}

/// The totals and one page of swarms, largest first (then by SwarmID), among those whose
/// ID contains `filter`; also how many swarms matched.
pub(crate) fn read_overview(
    tracker: &Tracker,
    filter: Option<&str>,
    offset: usize,
    limit: usize,
    peer_preview: usize,
) -> (StateTotals, usize, Vec<SwarmSummary>) {
    overview(&tracker.snapshot(), filter, offset, limit, peer_preview)
}

fn overview(
    snapshot: &Snapshot,
    filter: Option<&str>,
    offset: usize,
    limit: usize,
    peer_preview: usize,
) -> (StateTotals, usize, Vec<SwarmSummary>) {
    let totals = StateTotals::from_snapshot(snapshot);
    let needle = filter.map(str::to_lowercase);
    let mut matching: Vec<&SwarmSnapshot> = snapshot
        .swarms
        .iter()
        .filter(|swarm| {
            needle
                .as_deref()
                .is_none_or(|n| swarm.swarm_id.as_str().to_lowercase().contains(n))
        })
        .collect();
    let size = |s: &SwarmSnapshot| s.seeds + s.live_seeds + s.leeches;
    matching.sort_by(|a, b| {
        size(b)
            .cmp(&size(a))
            .then_with(|| a.swarm_id.as_str().cmp(b.swarm_id.as_str()))
    });
    let page = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|swarm| summarize(swarm, 0, peer_preview))
        .collect();
    (totals, matching.len(), page)
}

/// One swarm with a page of its members (ordered by PeerID); `None` when it has none.
pub(crate) fn read_swarm(
    tracker: &Tracker,
    swarm_id: &str,
    offset: usize,
    limit: usize,
) -> Option<SwarmSummary> {
    let snapshot = tracker.snapshot();
    snapshot
        .swarms
        .iter()
        .find(|swarm| swarm.swarm_id.as_str() == swarm_id)
        .map(|swarm| summarize(swarm, offset, limit))
}

// ---------------------------------------------------------------------------------------
// Documents.
// ---------------------------------------------------------------------------------------

/// OpenMetrics text of every metric, with the state gauges brought up to date first.
pub(crate) fn metrics_text(state: &AppState) -> String {
    let totals = read_totals(&state.tracker);
    state.metrics.set_state(totals.sessions, totals.swarms);
    state.metrics.set_peers(PeerMode::Seed, totals.seeds);
    state
        .metrics
        .set_peers(PeerMode::LiveSeed, totals.live_seeds);
    state.metrics.set_peers(PeerMode::Leech, totals.leeches);
    state.metrics.encode()
}

fn media_name(media: MediaType) -> &'static str {
    match media {
        MediaType::Video => "video",
        MediaType::Audio => "audio",
    }
}

#[derive(Serialize)]
struct StatsJson {
    totals: TotalsJson,
    rates: Point,
    requests_by_method: BTreeMap<&'static str, u64>,
    responses_by_status: BTreeMap<&'static str, u64>,
    /// Swarms matching the filter (all swarms without one).
    swarms_matching: usize,
    offset: usize,
    limit: usize,
    swarms: Vec<SwarmJson>,
}

#[derive(Serialize)]
struct TotalsJson {
    sessions: usize,
    swarms: usize,
    peers: usize,
    seeds: usize,
    live_seeds: usize,
    leeches: usize,
    sessions_expired: u64,
    memberships_expired: u64,
    uploaded_bytes_reported: u64,
    downloaded_bytes_reported: u64,
    uptime_secs: u64,
}

#[derive(Serialize)]
struct SwarmJson {
    swarm_id: String,
    live: bool,
    peer_count: usize,
    peers_by_mode: PeersByMode,
    /// Chunks from the first to the last any member reported, over every clip.
    chunks_total: u64,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    chunk_availability: Vec<ClipJson>,
    /// The listed members: a preview in the swarm list, a page in the detail.
    peers: Vec<PeerJson>,
    /// True when `peers` does not list every member.
    peers_truncated: bool,
    finished: Vec<PeerJson>,
}

#[derive(Serialize)]
struct PeersByMode {
    #[serde(rename = "SEED")]
    seed: usize,
    #[serde(rename = "LIVESEED")]
    live_seed: usize,
    #[serde(rename = "LEECH")]
    leech: usize,
}

#[derive(Serialize)]
struct PeerJson {
    peer_id: String,
    mode: &'static str,
    /// Seconds since the peer joined the swarm.
    joined_seconds_ago: u64,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    /// Averages since the join: reported totals over time in the swarm.
    upload_bytes_per_second: u64,
    download_bytes_per_second: u64,
    available_bandwidth: u64,
    chunks_held: u64,
    /// The swarm's `chunks_total`, so `chunks_held` of `chunks_total` is its completion.
    chunks_total: u64,
    behind_nat: Option<bool>,
    stun: Option<bool>,
}

#[derive(Serialize)]
struct ClipJson {
    clip: String,
    media: &'static str,
    first: u64,
    last: u64,
    chunks_available: u64,
}

#[derive(Serialize)]
struct SwarmDetailJson {
    offset: usize,
    limit: usize,
    swarm: SwarmJson,
}

fn peer_json(peer: &PeerSummary, chunks_total: u64, now: Instant) -> PeerJson {
    let seconds = now.saturating_duration_since(peer.joined_at).as_secs();
    let per_second = |bytes: u64| bytes.checked_div(seconds).unwrap_or(bytes);
    PeerJson {
        peer_id: peer.peer_id.clone(),
        mode: mode_name(peer.mode),
        joined_seconds_ago: seconds,
        uploaded_bytes: peer.uploaded_bytes,
        downloaded_bytes: peer.downloaded_bytes,
        upload_bytes_per_second: per_second(peer.uploaded_bytes),
        download_bytes_per_second: per_second(peer.downloaded_bytes),
        available_bandwidth: peer.available_bandwidth,
        chunks_held: peer.chunks_held,
        chunks_total,
        behind_nat: peer.behind_nat,
        stun: peer.stun,
    }
}

fn swarm_to_json(swarm: &SwarmSummary, listed_from: usize, now: Instant) -> SwarmJson {
    let chunks_total = swarm.span();
    SwarmJson {
        swarm_id: swarm.swarm_id.clone(),
        live: swarm.live,
        peer_count: swarm.members(),
        peers_by_mode: PeersByMode {
            seed: swarm.seeds,
            live_seed: swarm.live_seeds,
            leech: swarm.leeches,
        },
        chunks_total,
        uploaded_bytes: swarm.uploaded_bytes,
        downloaded_bytes: swarm.downloaded_bytes,
        chunk_availability: swarm
            .clips
            .iter()
            .map(|clip| ClipJson {
                clip: clip.clip.clone(),
                media: media_name(clip.media),
                first: clip.first,
                last: clip.last,
                chunks_available: clip.chunks_available,
            })
            .collect(),
        peers_truncated: listed_from > 0 || swarm.peers.len() < swarm.members(),
        peers: swarm
            .peers
            .iter()
            .map(|p| peer_json(p, chunks_total, now))
            .collect(),
        finished: swarm
            .finished
            .iter()
            .map(|p| peer_json(p, chunks_total, now))
            .collect(),
    }
}

/// Answers per PPSP status so far, over every method and protocol.
fn responses_by_status(state: &AppState) -> BTreeMap<&'static str, u64> {
    Status::ALL
        .iter()
        .map(|status| (status_label(*status), state.metrics.responses_with(*status)))
        .collect()
}

/// The `/api/stats` document: totals, rates and one page of swarms.
pub(crate) fn stats_json(state: &AppState, query: &StatsQuery) -> String {
    let limit = query.limit_or(DEFAULT_SWARMS);
    let preview = query
        .peers
        .unwrap_or(DEFAULT_PEER_PREVIEW)
        .min(MAX_PEER_PREVIEW);
    let (totals, matching, page) = read_overview(
        &state.tracker,
        query.filter.as_deref(),
        query.offset,
        limit,
        preview,
    );
    let now = Instant::now();
    let metrics = &state.metrics;
    let doc = StatsJson {
        totals: TotalsJson {
            sessions: totals.sessions,
            swarms: totals.swarms,
            peers: totals.peers(),
            seeds: totals.seeds,
            live_seeds: totals.live_seeds,
            leeches: totals.leeches,
            sessions_expired: metrics.sessions_expired.get(),
            memberships_expired: metrics.memberships_expired.get(),
            uploaded_bytes_reported: metrics.reported_bytes(crate::metrics::Direction::uploaded),
            downloaded_bytes_reported: metrics
                .reported_bytes(crate::metrics::Direction::downloaded),
            uptime_secs: metrics.uptime().as_secs(),
        },
        rates: state.history.latest(),
        requests_by_method: Method::ALL
            .iter()
            .map(|m| m.as_str())
            .zip(metrics.requests_by_method())
            .collect(),
        responses_by_status: responses_by_status(state),
        swarms_matching: matching,
        offset: query.offset,
        limit,
        swarms: page.iter().map(|s| swarm_to_json(s, 0, now)).collect(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
}

/// The `/api/stats?swarm=ID` document; `None` when the swarm has no member.
pub(crate) fn swarm_json(state: &AppState, swarm_id: &str, query: &StatsQuery) -> Option<String> {
    let limit = query.limit_or(DEFAULT_PEERS);
    let swarm = read_swarm(&state.tracker, swarm_id, query.offset, limit)?;
    let doc = SwarmDetailJson {
        offset: query.offset,
        limit,
        swarm: swarm_to_json(&swarm, query.offset, Instant::now()),
    };
    Some(serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned()))
}

#[cfg(test)]
mod tests {
    use ppsp_proto::{PeerId, SwarmId};
    use ppsp_tracker_core::ClipAvailability;

    use super::*;

    fn peer(id: &str, mode: PeerMode, chunks_held: u64) -> PeerSnapshot {
        PeerSnapshot {
            peer_id: PeerId::new(id).expect("id"),
            mode,
            joined_at: Instant::now(),
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            available_bandwidth: 0,
            chunks_held,
            behind_nat: None,
            stun: None,
        }
    }

    fn swarm(id: &str, leeches: usize) -> SwarmSnapshot {
        let mut peers: Vec<PeerSnapshot> = (0..leeches)
            .map(|i| peer(&format!("{id}-l{i:04}"), PeerMode::Leech, i as u64))
            .collect();
        peers.push(peer(&format!("{id}-seed"), PeerMode::Seed, 176));
        SwarmSnapshot {
            swarm_id: SwarmId::new(id).expect("id"),
            live: false,
            seeds: 1,
            live_seeds: 0,
            leeches,
            peers,
            chunk_availability: vec![ClipAvailability {
                clip: "movie".to_owned(),
                media: MediaType::Video,
                first: 0,
                last: 175,
                chunks_available: 176,
            }],
        }
    }

    #[test]
    fn query_parsing() {
        assert_eq!(
            StatsQuery::parse("limit=10&offset=20&q=Mo%20vie&peers=0&x=1"),
            StatsQuery {
                swarm: None,
                limit: Some(10),
                offset: 20,
                filter: Some("Mo vie".to_owned()),
                peers: Some(0),
            }
        );
        let odd = StatsQuery::parse("limit=-3&offset=lots&swarm=a%2Bb");
        assert_eq!(odd.limit, None);
        assert_eq!(odd.offset, 0);
        assert_eq!(odd.swarm.as_deref(), Some("a+b"));
        assert_eq!(StatsQuery::parse("limit=100000").limit_or(5), MAX_PAGE);
    }

    #[test]
    fn swarms_page_largest_first_and_filter() {
        let snapshot = Snapshot {
            sessions: 12,
            swarms: vec![swarm("alpha", 1), swarm("beta", 5), swarm("Gamma", 3)],
            ..Snapshot::default()
        };
        let ids = |page: &[SwarmSummary]| -> Vec<String> {
            page.iter().map(|s| s.swarm_id.clone()).collect()
        };
        let (totals, matching, page) = overview(&snapshot, None, 0, 2, 0);
        assert_eq!((totals.swarms, totals.peers(), matching), (3, 12, 3));
        assert_eq!(ids(&page), ["beta", "Gamma"]);
        assert!(page.iter().all(|s| s.peers.is_empty()));
        let (_, _, page) = overview(&snapshot, None, 2, 2, 3);
        assert_eq!(ids(&page), ["alpha"]);
        assert_eq!(page[0].peers.len(), 2);
        let (_, matching, page) = overview(&snapshot, Some("gAm"), 0, 10, 0);
        assert_eq!((matching, ids(&page)), (1, vec!["Gamma".to_owned()]));
        let (_, matching, page) = overview(&snapshot, Some("zzz"), 0, 10, 0);
        assert_eq!((matching, page.len()), (0, 0));
    }

    #[test]
    fn a_swarm_page_of_peers() {
        let snapshot_swarms = vec![swarm("alpha", 1), swarm("beta", 5), swarm("gamma", 3)];
        let snapshot = Snapshot {
            sessions: 12,
            swarms: snapshot_swarms,
            ..Snapshot::default()
        };
        let totals = StateTotals::from_snapshot(&snapshot);
        assert_eq!(totals.peers(), 12);
        assert_eq!(totals.seeds, 3);
        let summaries: Vec<SwarmSummary> =
            snapshot.swarms.iter().map(|s| summarize(s, 0, 2)).collect();
        let beta = summaries
            .iter()
            .find(|s| s.swarm_id == "beta")
            .expect("beta");
        assert_eq!(beta.peers.len(), 2);
        assert_eq!(beta.span(), 176);
        let json = swarm_to_json(beta, 0, Instant::now());
        assert!(json.peers_truncated);
        assert_eq!(json.peer_count, 6);
        assert_eq!(json.peers[1].chunks_held, 1);
        assert_eq!(json.peers[1].chunks_total, 176);
        // The seed holds everything but is no finished leech.
        assert!(json.finished.is_empty());
    }

    #[test]
    fn finished_leeches_are_listed() {
        let mut s = swarm("done", 2);
        s.peers[1].chunks_held = 176;
        let summary = summarize(&s, 0, 10);
        assert_eq!(summary.finished.len(), 1);
        assert_eq!(summary.finished[0].peer_id, "done-l0001");
    }
}
