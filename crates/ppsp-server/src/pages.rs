//! The GET endpoints: `/healthz`, `/metrics`, `/api/stats` and the dashboard at `/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use ppsp_proto::{MediaType, Method, PeerMode, Status};
use ppsp_tracker_core::Snapshot;
use serde::Serialize;

use crate::http::{Reply, RequestError};
use crate::state::{AppState, COUNTED_HTTP_STATUSES};

const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Answers a GET (or HEAD) for one of the paths in `http::GET_PATHS`.
pub(crate) fn get(state: &AppState, path: &str) -> Reply {
    let no_store = || vec![(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    match path {
        "/healthz" => Reply::Plain {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"ok"),
            headers: no_store(),
        },
        "/metrics" => Reply::Plain {
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: Bytes::from(metrics_text(state, &state.tracker.snapshot())),
            headers: no_store(),
        },
        "/api/stats" => Reply::Plain {
            status: StatusCode::OK,
            content_type: "application/json",
            body: Bytes::from(stats_json(state, &state.tracker.snapshot())),
            headers: no_store(),
        },
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
pub(crate) fn metrics_text(state: &AppState, snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP ppsp_requests_total PPSP requests handled by the tracker, by method.\n\
         # TYPE ppsp_requests_total counter"
    );
    for (method, count) in Method::ALL.iter().zip(snapshot.requests_by_method) {
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
    let statuses = state
        .metrics
        .ppsp_status_totals(&snapshot.responses_by_status);
    for (status, count) in Status::ALL.iter().zip(statuses) {
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

    let (seeds, live_seeds, leeches) = peer_totals(snapshot);
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
         ppsp_peers{{mode=\"SEED\"}} {seeds}\n\
         ppsp_peers{{mode=\"LIVESEED\"}} {live_seeds}\n\
         ppsp_peers{{mode=\"LEECH\"}} {leeches}\n\
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
        snapshot.sessions,
        snapshot.swarms.len(),
        snapshot.sessions_expired_total,
        state
            .metrics
            .memberships_expired_total
            .load(Ordering::Relaxed),
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

fn peer_totals(snapshot: &Snapshot) -> (usize, usize, usize) {
    snapshot.swarms.iter().fold((0, 0, 0), |(s, l, e), swarm| {
        (s + swarm.seeds, l + swarm.live_seeds, e + swarm.leeches)
    })
}

#[derive(Serialize)]
struct StatsJson<'a> {
    totals: Totals,
    requests_by_method: BTreeMap<&'static str, u64>,
    responses_by_status: BTreeMap<&'static str, u64>,
    swarms: Vec<SwarmJson<'a>>,
}

#[derive(Serialize)]
struct Totals {
    sessions: usize,
    swarms: usize,
    peers: usize,
    seeds: usize,
    live_seeds: usize,
    leeches: usize,
    sessions_expired: u64,
}

#[derive(Serialize)]
struct SwarmJson<'a> {
    swarm_id: &'a str,
    live: bool,
    peers_by_mode: PeersByMode,
    /// True when `peers` lists only the first [`MAX_LISTED_PEERS`] members.
    peers_truncated: bool,
    peers: Vec<PeerJson<'a>>,
    chunk_availability: Vec<ClipJson<'a>>,
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
struct PeerJson<'a> {
    peer_id: &'a str,
    mode: &'static str,
    /// Seconds since the peer joined the swarm.
    joined_seconds_ago: u64,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    available_bandwidth: u64,
    chunks_held: u64,
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
}

/// Peers listed per swarm in `/api/stats`; the counts by mode always cover every member.
/// Keeps the document (fetched every few seconds by the dashboard) small for huge swarms.
const MAX_LISTED_PEERS: usize = 1000;

/// The `/api/stats` document.
pub(crate) fn stats_json(state: &AppState, snapshot: &Snapshot) -> String {
    let (seeds, live_seeds, leeches) = peer_totals(snapshot);
    let now = std::time::Instant::now();
    let doc = StatsJson {
        totals: Totals {
            sessions: snapshot.sessions,
            swarms: snapshot.swarms.len(),
            peers: seeds + live_seeds + leeches,
            seeds,
            live_seeds,
            leeches,
            sessions_expired: snapshot.sessions_expired_total,
        },
        requests_by_method: Method::ALL
            .iter()
            .map(|m| m.as_str())
            .zip(snapshot.requests_by_method)
            .collect(),
        responses_by_status: Status::ALL
            .iter()
            .map(|s| status_label(*s))
            .zip(
                state
                    .metrics
                    .ppsp_status_totals(&snapshot.responses_by_status),
            )
            .collect(),
        swarms: snapshot
            .swarms
            .iter()
            .map(|swarm| SwarmJson {
                swarm_id: swarm.swarm_id.as_str(),
                live: swarm.live,
                peers_by_mode: PeersByMode {
                    seed: swarm.seeds,
                    live_seed: swarm.live_seeds,
                    leech: swarm.leeches,
                },
                peers_truncated: swarm.peers.len() > MAX_LISTED_PEERS,
                peers: swarm
                    .peers
                    .iter()
                    .take(MAX_LISTED_PEERS)
                    .map(|peer| PeerJson {
                        peer_id: peer.peer_id.as_str(),
                        mode: mode_name(peer.mode),
                        joined_seconds_ago: now.saturating_duration_since(peer.joined_at).as_secs(),
                        uploaded_bytes: peer.uploaded_bytes,
                        downloaded_bytes: peer.downloaded_bytes,
                        available_bandwidth: peer.available_bandwidth,
                        chunks_held: peer.chunks_held,
                        behind_nat: peer.behind_nat,
                        stun: peer.stun,
                    })
                    .collect(),
                chunk_availability: swarm
                    .chunk_availability
                    .iter()
                    .map(|clip| ClipJson {
                        clip: &clip.clip,
                        media: media_name(clip.media),
                        first: clip.first,
                        last: clip.last,
                        chunks_available: clip.chunks_available,
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ppsp_proto::{PeerId, SwarmId};
    use ppsp_tracker_core::{OpenAuthenticator, PeerSnapshot, SwarmSnapshot, Tracker};

    use super::*;
    use crate::config::ServerConfig;

    fn state() -> AppState {
        let config = ServerConfig::default();
        let tracker = Tracker::new(config.core_config(), Arc::new(OpenAuthenticator));
        AppState::for_tests(&config, Arc::new(tracker))
    }

    #[test]
    fn huge_swarms_are_listed_in_part() {
        let peers: Vec<PeerSnapshot> = (0..MAX_LISTED_PEERS + 5)
            .map(|i| PeerSnapshot {
                peer_id: PeerId::new(format!("p{i}")).expect("id"),
                mode: PeerMode::Leech,
                joined_at: std::time::Instant::now(),
                uploaded_bytes: 0,
                downloaded_bytes: 0,
                available_bandwidth: 0,
                chunks_held: 0,
                behind_nat: None,
                stun: None,
            })
            .collect();
        let snapshot = Snapshot {
            sessions: peers.len(),
            swarms: vec![SwarmSnapshot {
                swarm_id: SwarmId::new("big").expect("id"),
                live: false,
                seeds: 0,
                live_seeds: 0,
                leeches: peers.len(),
                peers,
                chunk_availability: Vec::new(),
            }],
            ..Snapshot::default()
        };
        let doc: serde_json::Value =
            serde_json::from_str(&stats_json(&state(), &snapshot)).expect("json");
        let swarm = &doc["swarms"][0];
        assert_eq!(swarm["peers_truncated"], true);
        assert_eq!(
            swarm["peers"].as_array().map(Vec::len),
            Some(MAX_LISTED_PEERS)
        );
        assert_eq!(swarm["peers_by_mode"]["LEECH"], MAX_LISTED_PEERS + 5);
        assert_eq!(doc["totals"]["leeches"], MAX_LISTED_PEERS + 5);
    }

    #[test]
    fn metrics_text_is_well_formed() {
        let state = state();
        let text = metrics_text(&state, &Snapshot::default());
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
