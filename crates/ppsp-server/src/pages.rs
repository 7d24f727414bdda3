//! The GET endpoints: `/healthz`, `/metrics`, `/api/stats`, `/api/history` and the
//! dashboard at `/`.
//!
//! Everything read from the tracker's state goes through three functions, [`read_totals`],
//! [`read_overview`] and [`read_swarm`]; the documents they feed are described in
//! `docs/tracker.md` ("Statistics JSON"). Both list endpoints page: a request never returns
//! more than [`MAX_PAGE`] swarms or peers, whatever the tracker holds.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use ppsp_proto::{MediaType, Method, PeerMode, Status, SwarmId};
use ppsp_tracker_core::{
    Cap, PeerDetail, SwarmDetail, SwarmQuery, Timestamp, Totals, TrackerError,
};
use serde::Serialize;

use crate::history::Point;
use crate::http::{Reply, RequestError};
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, mode_name, status_label};
use crate::state::AppState;
use crate::store::ServerTracker;

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
pub(crate) async fn get(state: &AppState, path: &str, query: Option<&str>) -> Reply {
    let no_store = || vec![(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    let json = |status: StatusCode, body: String| Reply::Plain {
        status,
        content_type: "application/json",
        body: Bytes::from(body),
        headers: no_store(),
    };
    match path {
        "/healthz" => match crate::store::health(&state.tracker).await {
            Ok(()) => Reply::Plain {
                status: StatusCode::OK,
                content_type: "text/plain; charset=utf-8",
                body: Bytes::from_static(b"ok"),
                headers: no_store(),
            },
            Err(reason) => Reply::Plain {
                status: StatusCode::SERVICE_UNAVAILABLE,
                content_type: "text/plain; charset=utf-8",
                body: Bytes::from(format!("unhealthy: {reason}")),
                headers: no_store(),
            },
        },
        "/metrics" => match metrics_text(state).await {
            Ok(text) => Reply::Plain {
                status: StatusCode::OK,
                content_type: OPENMETRICS_CONTENT_TYPE,
                body: Bytes::from(text),
                headers: no_store(),
            },
            Err(_) => RequestError::Unavailable.into_reply(),
        },
        "/api/stats" => {
            let query = StatsQuery::parse(query.unwrap_or(""));
            match &query.swarm {
                Some(swarm_id) => match swarm_json(state, swarm_id, &query).await {
                    Ok(Some(body)) => json(StatusCode::OK, body),
                    Ok(None) => json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({ "error": "no such swarm", "swarm_id": swarm_id })
                            .to_string(),
                    ),
                    Err(_) => RequestError::Unavailable.into_reply(),
                },
                None => match stats_json(state, &query).await {
                    Ok(body) => json(StatusCode::OK, body),
                    Err(_) => RequestError::Unavailable.into_reply(),
                },
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
// Reading the tracker: its bounded snapshot calls, nothing else.
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
    /// Requests refused at each state cap, indexed like [`Cap::ALL`].
    #[serde(skip)]
    pub(crate) cap_refusals: [u64; Cap::ALL.len()],
}

fn count(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl StateTotals {
    /// Every membership.
    pub(crate) fn peers(&self) -> usize {
        self.seeds + self.live_seeds + self.leeches
    }

    fn from_core(totals: &Totals) -> Self {
        Self {
            sessions: count(totals.sessions),
            swarms: count(totals.swarms),
            seeds: count(totals.seeds),
            live_seeds: count(totals.live_seeds),
            leeches: count(totals.leeches),
            cap_refusals: totals.refusals,
        }
    }
}

/// One swarm with the members listed for it.
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
    /// Leeches that reported every chunk they cover, most recent first.
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
    heat: Vec<u32>,
}

#[derive(Clone, Debug)]
struct PeerSummary {
    peer_id: String,
    mode: PeerMode,
    joined_at: Timestamp,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    available_bandwidth: u64,
    chunks_held: u64,
    behind_nat: Option<bool>,
    stun: Option<bool>,
}

impl PeerSummary {
    fn from_core(peer: &PeerDetail) -> Self {
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

fn summarize(detail: &SwarmDetail) -> SwarmSummary {
    let mut finished: Vec<&PeerDetail> = detail
        .recently_completed
        .iter()
        .filter(|p| p.mode == PeerMode::Leech)
        .collect();
    finished.sort_by_key(|peer| std::cmp::Reverse(peer.completed_at));
    SwarmSummary {
        swarm_id: detail.summary.swarm_id.as_str().to_owned(),
        live: detail.summary.live,
        seeds: count(detail.summary.seeds),
        live_seeds: count(detail.summary.live_seeds),
        leeches: count(detail.summary.leeches),
        clips: detail
            .chunk_availability
            .iter()
            .map(|clip| ClipSummary {
                clip: clip.clip.clone(),
                media: clip.media,
                first: clip.first,
                last: clip.last,
                chunks_available: clip.chunks_available,
                heat: clip.heat.clone(),
            })
            .collect(),
        peers: detail.peers.iter().map(PeerSummary::from_core).collect(),
        finished: finished
            .into_iter()
            .take(MAX_FINISHED)
            .map(PeerSummary::from_core)
            .collect(),
        uploaded_bytes: detail.uploaded_bytes,
        downloaded_bytes: detail.downloaded_bytes,
    }
}

/// Totals of the tracker state (from counters: cheap).
pub(crate) async fn read_totals(tracker: &ServerTracker) -> Result<StateTotals, TrackerError> {
    Ok(StateTotals::from_core(&tracker.totals().await?))
}

/// The totals and one page of swarms, largest first (then by SwarmID), among those whose
/// ID contains `filter` (case-insensitive); also how many swarms matched.
pub(crate) async fn read_overview(
    tracker: &ServerTracker,
    filter: Option<&str>,
    offset: usize,
    limit: usize,
    peer_preview: usize,
) -> Result<(StateTotals, usize, Vec<SwarmSummary>), TrackerError> {
    let now = Timestamp::now();
    let totals = read_totals(tracker).await?;
    let page = tracker
        .swarms(
            now,
            &SwarmQuery {
                offset,
                limit,
                filter: filter.map(str::to_owned),
            },
        )
        .await?;
    let mut swarms = Vec::with_capacity(page.swarms.len());
    for listed in &page.swarms {
        if let Some(detail) = tracker
            .swarm(now, &listed.swarm_id, 0, peer_preview)
            .await?
        {
            swarms.push(summarize(&detail));
        }
    }
    Ok((totals, page.total, swarms))
}

/// One swarm with a page of its members (join order); `None` when it has none.
pub(crate) async fn read_swarm(
    tracker: &ServerTracker,
    swarm_id: &str,
    offset: usize,
    limit: usize,
) -> Result<Option<SwarmSummary>, TrackerError> {
    let Ok(swarm_id) = SwarmId::new(swarm_id) else {
        return Ok(None);
    };
    let detail = tracker
        .swarm(Timestamp::now(), &swarm_id, offset, limit)
        .await?;
    Ok(detail.as_ref().map(summarize))
}

// ---------------------------------------------------------------------------------------
// Documents.
// ---------------------------------------------------------------------------------------

/// OpenMetrics text of every metric, with the state gauges brought up to date first.
pub(crate) async fn metrics_text(state: &AppState) -> Result<String, TrackerError> {
    let totals = read_totals(&state.tracker).await?;
    state.metrics.set_cap_refusals(&totals.cap_refusals);
    state.metrics.set_state(totals.sessions, totals.swarms);
    state.metrics.set_peers(PeerMode::Seed, totals.seeds);
    state
        .metrics
        .set_peers(PeerMode::LiveSeed, totals.live_seeds);
    state.metrics.set_peers(PeerMode::Leech, totals.leeches);
    Ok(state.metrics.encode())
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
    /// `first..=last` in equal buckets: members reporting a chunk in each.
    heat: Vec<u32>,
}

#[derive(Serialize)]
struct SwarmDetailJson {
    offset: usize,
    limit: usize,
    swarm: SwarmJson,
}

fn peer_json(peer: &PeerSummary, chunks_total: u64, now: Timestamp) -> PeerJson {
    let seconds = now.since(peer.joined_at).as_secs();
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

fn swarm_to_json(swarm: &SwarmSummary, listed_from: usize, now: Timestamp) -> SwarmJson {
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
                heat: clip.heat.clone(),
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
pub(crate) async fn stats_json(
    state: &AppState,
    query: &StatsQuery,
) -> Result<String, TrackerError> {
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
    )
    .await?;
    let now = Timestamp::now();
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
    Ok(serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned()))
}

/// The `/api/stats?swarm=ID` document; `None` when the swarm has no member.
pub(crate) async fn swarm_json(
    state: &AppState,
    swarm_id: &str,
    query: &StatsQuery,
) -> Result<Option<String>, TrackerError> {
    let limit = query.limit_or(DEFAULT_PEERS);
    let Some(swarm) = read_swarm(&state.tracker, swarm_id, query.offset, limit).await? else {
        return Ok(None);
    };
    let doc = SwarmDetailJson {
        offset: query.offset,
        limit,
        swarm: swarm_to_json(&swarm, query.offset, Timestamp::now()),
    };
    Ok(Some(
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned()),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ppsp_proto::{
        Connect, PeerId, PeerMode, Request, RequestBody, SwarmAction, SwarmActionKind, SwarmId,
        TransactionId,
    };
    use ppsp_tracker_core::{Format, OpenAuthenticator, RequestContext};

    use super::*;
    use crate::config::ServerConfig;

    /// A tracker with `sizes[i]` JSON seeders in swarm `names[i]`.
    async fn tracker_with(swarms: &[(&str, usize)]) -> AppState {
        let config = ServerConfig::default();
        let tracker = Arc::new(crate::store::memory_tracker(
            config.core_config(),
            Arc::new(OpenAuthenticator),
        ));
        let ctx = RequestContext {
            observed: "127.0.0.1:40000".parse().expect("addr"),
            format: Format::Json,
            secure_channel: true,
            authenticated: false,
        };
        let mut tid = 0;
        for (name, size) in swarms {
            for i in 0..*size {
                tid += 1;
                let request = Request {
                    peer_id: PeerId::new(format!("{name}-{i}")).expect("id"),
                    auth_token: None,
                    transaction_id: TransactionId::numeric(tid),
                    body: RequestBody::Connect(Connect {
                        auth: None,
                        addresses: Vec::new(),
                        peer_num: None,
                        swarm_actions: vec![SwarmAction {
                            swarm_id: SwarmId::new(*name).expect("id"),
                            action: SwarmActionKind::Join,
                            mode: PeerMode::Seed,
                        }],
                    }),
                };
                let answer = tracker.handle(Timestamp::now(), &ctx, &request).await;
                assert_eq!(answer.status, Status::Ok);
            }
        }
        AppState::for_tests(&config, tracker)
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

    #[tokio::test]
    async fn swarms_page_largest_first_and_filter() {
        let state = tracker_with(&[("alpha", 1), ("beta", 5), ("Gamma", 3)]).await;
        let ids = |page: &[SwarmSummary]| -> Vec<String> {
            page.iter().map(|s| s.swarm_id.clone()).collect()
        };
        let (totals, matching, page) = read_overview(&state.tracker, None, 0, 2, 0)
            .await
            .expect("overview");
        assert_eq!((totals.swarms, totals.peers(), matching), (3, 9, 3));
        assert_eq!(ids(&page), ["beta", "Gamma"]);
        assert!(page.iter().all(|s| s.peers.is_empty()));
        let (_, _, page) = read_overview(&state.tracker, None, 2, 2, 3)
            .await
            .expect("overview");
        assert_eq!(ids(&page), ["alpha"]);
        assert_eq!(page[0].peers.len(), 1);
        let (_, matching, page) = read_overview(&state.tracker, Some("gAm"), 0, 10, 0)
            .await
            .expect("overview");
        assert_eq!((matching, ids(&page)), (1, vec!["Gamma".to_owned()]));
        let (_, matching, page) = read_overview(&state.tracker, Some("zzz"), 0, 10, 0)
            .await
            .expect("overview");
        assert_eq!((matching, page.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_swarm_page_of_peers() {
        let state = tracker_with(&[("beta", 5)]).await;
        let beta = read_swarm(&state.tracker, "beta", 1, 2)
            .await
            .expect("read")
            .expect("beta");
        assert_eq!(beta.peers.len(), 2);
        assert_eq!(beta.members(), 5);
        let json = swarm_to_json(&beta, 1, Timestamp::now());
        assert!(json.peers_truncated);
        assert_eq!(json.peer_count, 5);
        assert!(
            read_swarm(&state.tracker, "none", 0, 2)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            read_swarm(&state.tracker, "", 0, 2)
                .await
                .expect("read")
                .is_none()
        );
    }
}
