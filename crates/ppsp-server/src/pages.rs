//! The GET endpoints: `/healthz`, `/metrics`, `/api/stats` and the dashboard at `/`.
//!
//! `/api/stats` pages: `?offset=&limit=&q=` lists swarms largest first (at most
//! [`MAX_PAGE`] a page, filtered by a SwarmID substring), `?swarm=ID&offset=&limit=` shows
//! one swarm with a page of its members. Both come from the tracker's bounded snapshot
//! calls, so no answer grows with the whole state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use ppsp_proto::{MediaType, Method, PeerMode, Status, SwarmId};
use ppsp_tracker_core::{SwarmDetail, SwarmPage, SwarmQuery, Timestamp, Totals};
use serde::Serialize;

use crate::http::{Reply, RequestError};
use crate::state::{AppState, COUNTED_HTTP_STATUSES};

const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Most swarms, or members of one swarm, in one `/api/stats` answer.
pub(crate) const MAX_PAGE: usize = 1000;
/// Default page size.
const DEFAULT_PAGE: usize = 50;

/// The paging parameters of a query string.
#[derive(Debug, Default, PartialEq, Eq)]
struct StatsQuery {
    swarm: Option<String>,
    offset: usize,
    limit: usize,
    filter: Option<String>,
}

fn decode_component(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: Option<&str>) -> StatsQuery {
    let mut parsed = StatsQuery {
        limit: DEFAULT_PAGE,
        ..StatsQuery::default()
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode_component(value);
        match key {
            "swarm" => parsed.swarm = Some(value),
            "offset" => parsed.offset = value.parse().unwrap_or(0),
            "limit" => parsed.limit = value.parse().unwrap_or(DEFAULT_PAGE).min(MAX_PAGE),
            "q" => parsed.filter = (!value.is_empty()).then_some(value),
            _ => {}
        }
    }
    parsed
}

/// Answers a GET (or HEAD) for one of the paths in `http::GET_PATHS`.
pub(crate) async fn get(state: &AppState, path: &str, query: Option<&str>) -> Reply {
    let no_store = || vec![(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    let json = |body: String| Reply::Plain {
        status: StatusCode::OK,
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
        "/metrics" => match state.tracker.totals().await {
            Ok(totals) => Reply::Plain {
                status: StatusCode::OK,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: Bytes::from(metrics_text(state, &totals)),
                headers: no_store(),
            },
            Err(_) => RequestError::Unavailable.into_reply(),
        },
        "/api/stats" => {
            let query = parse_query(query);
            let now = Timestamp::now();
            let Ok(totals) = state.tracker.totals().await else {
                return RequestError::Unavailable.into_reply();
            };
            match query.swarm {
                Some(id) => {
                    let Ok(swarm_id) = SwarmId::new(id) else {
                        return RequestError::NotFound.into_reply();
                    };
                    match state
                        .tracker
                        .swarm(now, &swarm_id, query.offset, query.limit)
                        .await
                    {
                        Ok(Some(detail)) => json(swarm_json(&detail, now)),
                        Ok(None) => RequestError::NotFound.into_reply(),
                        Err(_) => RequestError::Unavailable.into_reply(),
                    }
                }
                None => {
                    let page = state
                        .tracker
                        .swarms(
                            now,
                            &SwarmQuery {
                                offset: query.offset,
                                limit: query.limit,
                                filter: query.filter,
                            },
                        )
                        .await;
                    match page {
                        Ok(page) => json(stats_json(state, &totals, &page)),
                        Err(_) => RequestError::Unavailable.into_reply(),
                    }
                }
            }
        }
        "/" => Reply::Plain {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body: Bytes::from_static(DASHBOARD_HTML.as_bytes()),
            headers: Vec::new(),
        },
        _ => RequestError::NotFound.into_reply(),
    }
}

fn mode_name(mode: PeerMode) -> &'static str {
    match mode {
        PeerMode::Seed => "SEED",
        PeerMode::LiveSeed => "LIVESEED",
        PeerMode::Leech => "LEECH",
    }
}

fn media_name(media: MediaType) -> &'static str {
    match media {
        MediaType::Video => "video",
        MediaType::Audio => "audio",
    }
}

/// Prometheus text exposition format 0.0.4.
pub(crate) fn metrics_text(state: &AppState, totals: &Totals) -> String {
    let (requests, responses) = state.tracker.request_counts();
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP ppsp_requests_total PPSP requests handled by the tracker, by method.\n\
         # TYPE ppsp_requests_total counter"
    );
    for (method, count) in Method::ALL.iter().zip(requests) {
        let _ = writeln!(
            out,
            "ppsp_requests_total{{method=\"{}\"}} {count}",
            method.as_str()
        );
    }
    let _ = writeln!(
        out,
        "# HELP ppsp_responses_total PPSP responses, by protocol status.\n\
         # TYPE ppsp_responses_total counter"
    );
    for (status, count) in Status::ALL
        .iter()
        .zip(state.metrics.ppsp_status_totals(&responses))
    {
        let _ = writeln!(
            out,
            "ppsp_responses_total{{status=\"{}\"}} {count}",
            status_label(*status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ppsp_http_responses_total HTTP responses sent, by status code.\n\
         # TYPE ppsp_http_responses_total counter"
    );
    for (code, counter) in COUNTED_HTTP_STATUSES
        .iter()
        .zip(state.metrics.http_responses.iter())
    {
        let _ = writeln!(
            out,
            "ppsp_http_responses_total{{code=\"{code}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "ppsp_http_responses_total{{code=\"other\"}} {}",
        state.metrics.http_responses_other.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP ppsp_refusals_total Requests refused at a state cap, by cap.\n\
         # TYPE ppsp_refusals_total counter"
    );
    for (cap, count) in ppsp_tracker_core::Cap::ALL.iter().zip(totals.refusals) {
        let _ = writeln!(
            out,
            "ppsp_refusals_total{{cause=\"{}\"}} {count}",
            cap.as_str()
        );
    }
    let _ = writeln!(
        out,
        "# HELP ppsp_sessions Registered peers (live sessions).\n\
         # TYPE ppsp_sessions gauge\n\
         ppsp_sessions {}\n\
         # HELP ppsp_swarms Swarms with at least one member.\n\
         # TYPE ppsp_swarms gauge\n\
         ppsp_swarms {}\n\
         # HELP ppsp_peers Swarm memberships, by peer mode.\n\
         # TYPE ppsp_peers gauge\n\
         ppsp_peers{{mode=\"SEED\"}} {}\n\
         ppsp_peers{{mode=\"LIVESEED\"}} {}\n\
         ppsp_peers{{mode=\"LEECH\"}} {}\n\
         # HELP ppsp_chunk_map_bytes Chunk-map memory held for reported chunk maps.\n\
         # TYPE ppsp_chunk_map_bytes gauge\n\
         ppsp_chunk_map_bytes {}\n\
         # HELP ppsp_replay_cache_bytes Bytes held by the retransmission cache.\n\
         # TYPE ppsp_replay_cache_bytes gauge\n\
         ppsp_replay_cache_bytes {}\n\
         # HELP ppsp_sessions_expired_total Sessions removed by the inactivity timer.\n\
         # TYPE ppsp_sessions_expired_total counter\n\
         ppsp_sessions_expired_total {}\n\
         # HELP ppsp_memberships_expired_total Swarm memberships removed when their ExpireTime passed.\n\
         # TYPE ppsp_memberships_expired_total counter\n\
         ppsp_memberships_expired_total {}\n\
         # HELP ppsp_connections_open HTTP connections open now.\n\
         # TYPE ppsp_connections_open gauge\n\
         ppsp_connections_open {}\n\
         # HELP ppsp_connections_total HTTP connections accepted.\n\
         # TYPE ppsp_connections_total counter\n\
         ppsp_connections_total {}\n\
         # HELP ppsp_stun_answers_total STUN Binding requests answered.\n\
         # TYPE ppsp_stun_answers_total counter\n\
         ppsp_stun_answers_total {}",
        totals.sessions,
        totals.swarms,
        totals.seeds,
        totals.live_seeds,
        totals.leeches,
        totals.chunk_map_bytes,
        state.tracker.replay_cache_bytes(),
        totals.sessions_expired,
        totals.memberships_expired,
        state.metrics.connections_open.load(Ordering::Relaxed),
        state.metrics.connections_total.load(Ordering::Relaxed),
        state.metrics.stun_answers_total.load(Ordering::Relaxed),
    );
    out
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Ok => "OK",
        other => other.ppsp_str(),
    }
}

#[derive(Serialize)]
struct StatsJson<'a> {
    totals: TotalsJson,
    requests_by_method: BTreeMap<&'static str, u64>,
    responses_by_status: BTreeMap<&'static str, u64>,
    swarms: PageJson<SwarmJson<'a>>,
}

#[derive(Serialize)]
struct PageJson<T> {
    /// Items matching the query.
    total: usize,
    offset: usize,
    items: Vec<T>,
}

#[derive(Serialize)]
struct TotalsJson {
    sessions: u64,
    swarms: u64,
    peers: u64,
    seeds: u64,
    live_seeds: u64,
    leeches: u64,
    sessions_expired: u64,
    memberships_expired: u64,
    chunk_map_bytes: u64,
}

impl From<&Totals> for TotalsJson {
    fn from(t: &Totals) -> Self {
        Self {
            sessions: t.sessions,
            swarms: t.swarms,
            peers: t.seeds + t.live_seeds + t.leeches,
            seeds: t.seeds,
            live_seeds: t.live_seeds,
            leeches: t.leeches,
            sessions_expired: t.sessions_expired,
            memberships_expired: t.memberships_expired,
            chunk_map_bytes: t.chunk_map_bytes,
        }
    }
}

#[derive(Serialize)]
struct SwarmJson<'a> {
    swarm_id: &'a str,
    live: bool,
    peers: u64,
    peers_by_mode: PeersByMode,
}

#[derive(Serialize)]
struct PeersByMode {
    #[serde(rename = "SEED")]
    seed: u64,
    #[serde(rename = "LIVESEED")]
    live_seed: u64,
    #[serde(rename = "LEECH")]
    leech: u64,
}

#[derive(Serialize)]
struct SwarmDetailJson<'a> {
    swarm: SwarmJson<'a>,
    members: PageJson<PeerJson<'a>>,
    chunk_availability: Vec<ClipJson<'a>>,
    availability_sampled: bool,
}

#[derive(Serialize)]
struct PeerJson<'a> {
    peer_id: &'a str,
    mode: &'static str,
    /// Seconds since the peer joined the swarm.
    joined_seconds_ago: u64,
    /// Seconds since it first reported every chunk it covers, if it did.
    completed_seconds_ago: Option<u64>,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    available_bandwidth: u64,
    chunks_held: u64,
    chunks_covered: u64,
    behind_nat: Option<bool>,
    stun: Option<bool>,
}

#[derive(Serialize)]
struct ClipJson<'a> {
    clip: &'a str,
    media: &'static str,
    first: u64,
    last: u64,
    chunks_available: u64,
    heat: &'a [u32],
}

fn swarm_summary_json(summary: &ppsp_tracker_core::SwarmSummary) -> SwarmJson<'_> {
    SwarmJson {
        swarm_id: summary.swarm_id.as_str(),
        live: summary.live,
        peers: summary.members(),
        peers_by_mode: PeersByMode {
            seed: summary.seeds,
            live_seed: summary.live_seeds,
            leech: summary.leeches,
        },
    }
}

/// The `/api/stats` document: totals and one page of swarms.
pub(crate) fn stats_json(state: &AppState, totals: &Totals, page: &SwarmPage) -> String {
    let (requests, responses) = state.tracker.request_counts();
    let doc = StatsJson {
        totals: totals.into(),
        requests_by_method: Method::ALL
            .iter()
            .map(|m| m.as_str())
            .zip(requests)
            .collect(),
        responses_by_status: Status::ALL
            .iter()
            .map(|s| status_label(*s))
            .zip(state.metrics.ppsp_status_totals(&responses))
            .collect(),
        swarms: PageJson {
            total: page.total,
            offset: page.offset,
            items: page.swarms.iter().map(swarm_summary_json).collect(),
        },
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
}

/// The `/api/stats?swarm=ID` document: one swarm and a page of its members.
pub(crate) fn swarm_json(detail: &SwarmDetail, now: Timestamp) -> String {
    let ago = |t: Timestamp| now.since(t).as_secs();
    let doc = SwarmDetailJson {
        swarm: swarm_summary_json(&detail.summary),
        members: PageJson {
            total: usize::try_from(detail.summary.members()).unwrap_or(usize::MAX),
            offset: detail.offset,
            items: detail
                .peers
                .iter()
                .map(|peer| PeerJson {
                    peer_id: peer.peer_id.as_str(),
                    mode: mode_name(peer.mode),
                    joined_seconds_ago: ago(peer.joined_at),
                    completed_seconds_ago: peer.completed_at.map(ago),
                    uploaded_bytes: peer.uploaded_bytes,
                    downloaded_bytes: peer.downloaded_bytes,
                    available_bandwidth: peer.available_bandwidth,
                    chunks_held: peer.chunks_held,
                    chunks_covered: peer.chunks_covered,
                    behind_nat: peer.behind_nat,
                    stun: peer.stun,
                })
                .collect(),
        },
        chunk_availability: detail
            .chunk_availability
            .iter()
            .map(|clip| ClipJson {
                clip: &clip.clip,
                media: media_name(clip.media),
                first: clip.first,
                last: clip.last,
                chunks_available: clip.chunks_available,
                heat: &clip.heat,
            })
            .collect(),
        availability_sampled: detail.availability_sampled,
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ppsp_tracker_core::OpenAuthenticator;

    use super::*;
    use crate::config::ServerConfig;

    fn state() -> AppState {
        let config = ServerConfig::default();
        let tracker =
            crate::store::memory_tracker(config.core_config(), Arc::new(OpenAuthenticator));
        AppState::new(&config, Arc::new(tracker))
    }

    #[test]
    fn query_strings_are_parsed_and_bounded() {
        let q = parse_query(Some("swarm=a%20b&offset=5&limit=100000&q=x+y"));
        assert_eq!(q.swarm.as_deref(), Some("a b"));
        assert_eq!((q.offset, q.limit), (5, MAX_PAGE));
        assert_eq!(q.filter.as_deref(), Some("x y"));
        let q = parse_query(Some("limit=abc&offset=-1&%zz=1&q=%"));
        assert_eq!(
            (q.offset, q.limit, q.filter.as_deref()),
            (0, DEFAULT_PAGE, Some("%"))
        );
        assert_eq!(parse_query(None).limit, DEFAULT_PAGE);
    }

    #[test]
    fn metrics_text_is_well_formed() {
        let state = state();
        let text = metrics_text(&state, &Totals::default());
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(line.starts_with("# HELP ppsp_") || line.starts_with("# TYPE ppsp_"));
            } else {
                let (name, value) = line.rsplit_once(' ').expect("sample");
                assert!(name.starts_with("ppsp_"), "{line}");
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }
}
