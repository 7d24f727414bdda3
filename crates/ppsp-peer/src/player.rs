//! The local endpoint for a media player.
//!
//! `GET /` (any path outside the peer protocol) returns the content. Video-on-demand
//! content honours a single `Range: bytes=...` range with `206 Partial Content`; the body
//! is sent from the requested offset as soon as each chunk is there, and the chunk a
//! response is waiting for becomes the playback position, so the downloader fetches it (and
//! the few after it) before anything else. Live content is one endless response starting
//! near the live edge.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use crate::body::OutBody;
use crate::manifest::FileSpan;
use crate::store::LIVE_RETENTION;
use crate::swarm::Swarm;

/// How long a player response waits for one chunk before giving up.
const CHUNK_WAIT: Duration = Duration::from_secs(120);
/// A live player further than this many chunks behind the edge skips ahead.
const LIVE_MAX_LAG: u64 = 32;
/// Pieces buffered between the chunk reader and the socket.
const PIPE_DEPTH: usize = 4;

/// Result of reading a `Range` header against a representation of `total` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// No usable range: send everything with 200.
    Full,
    /// Send bytes `start..=end` with 206.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// The range lies outside the content: 416.
    Unsatisfiable,
}

/// Reads a `Range` header value (RFC 9110 §14.1.2) for content of `total` bytes.
///
/// Only a single `bytes` range is honoured; anything else (several ranges, another unit,
/// bad syntax) falls back to the full content, which the RFC allows.
pub fn parse_range(header: Option<&str>, total: u64) -> RangeSpec {
    let Some(value) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            None => RangeSpec::Full,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if total == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Partial {
                start: total.saturating_sub(n),
                end: total - 1,
            },
        },
        // bytes=A-: from A to the end.
        (false, true) => match number(first) {
            None => RangeSpec::Full,
            Some(a) if a >= total => RangeSpec::Unsatisfiable,
            Some(a) => RangeSpec::Partial {
                start: a,
                end: total - 1,
            },
        },
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= total {
                    RangeSpec::Unsatisfiable
                } else {
                    RangeSpec::Partial {
                        start: a,
                        end: b.min(total - 1),
                    }
                }
            }
            _ => RangeSpec::Full,
        },
        (true, true) => RangeSpec::Full,
    }
}

fn simple(status: StatusCode, text: &'static str) -> Response<OutBody> {
    let mut response = Response::new(OutBody::full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Answers a player request for `swarm` (the whole content of a single-file swarm).
pub(crate) fn respond(swarm: &Arc<Swarm>, range: Option<&str>, head: bool) -> Response<OutBody> {
    if swarm.is_live() {
        return respond_live(swarm, head);
    }
    let Some(manifest) = swarm.store().vod_manifest() else {
        return simple(StatusCode::SERVICE_UNAVAILABLE, "no manifest yet\n");
    };
    match manifest.files().first() {
        Some(file) => respond_file(swarm, file, swarm.content_type(), range, head),
        None => simple(StatusCode::NOT_FOUND, "no content\n"),
    }
}

/// Answers a player request for one file of a VoD swarm, served as `content_type`.
pub(crate) fn respond_file(
    swarm: &Arc<Swarm>,
    file: &FileSpan,
    content_type: &'static str,
    range: Option<&str>,
    head: bool,
) -> Response<OutBody> {
    let total = file.length();
    let (status, start, end) = match parse_range(range, total) {
        RangeSpec::Full => (StatusCode::OK, 0, total.checked_sub(1)),
        RangeSpec::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, Some(end)),
        RangeSpec::Unsatisfiable => {
            let mut response = simple(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = format!("bytes */{total}").parse() {
                response.headers_mut().insert(CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let length = end.map_or(0, |e| e - start + 1);
    let body = match end {
        Some(end) if !head => {
            let (tx, rx) = mpsc::channel(PIPE_DEPTH);
            tokio::spawn(feed_vod(Arc::clone(swarm), file.clone(), start, end, tx));
            OutBody::streaming(rx)
        }
        _ => OutBody::empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        ACCEPT_RANGES,
        hyper::header::HeaderValue::from_static("bytes"),
    );
    headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    if let Ok(v) = length.to_string().parse() {
        headers.insert(CONTENT_LENGTH, v);
    }
    if let (StatusCode::PARTIAL_CONTENT, Some(end)) = (status, end)
        && let Ok(v) = format!("bytes {start}-{end}/{total}").parse()
    {
        headers.insert(CONTENT_RANGE, v);
    }
    response
}

/// Sends bytes `start..=end` of `file`, chunk by chunk, waiting for chunks still on their
/// way.
async fn feed_vod(
    swarm: Arc<Swarm>,
    file: FileSpan,
    start: u64,
    end: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let store = swarm.store();
    let mut offset = start;
    while offset <= end {
        let chunk = file.chunk_at(offset);
        if !store.has(chunk) {
            swarm.set_position(chunk);
            let deadline = tokio::time::Instant::now() + CHUNK_WAIT;
            let arrived = tokio::select! {
                arrived = store.wait_for(chunk, deadline) => arrived,
                () = tx.closed() => return,
            };
            if !arrived {
                tracing::warn!(chunk, "player gave up waiting for a chunk");
                return;
            }
        }
        let data = match store.get(chunk).await {
            Ok(Some(data)) => data,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%err, "cannot read a chunk for the player");
                return;
            }
        };
        let chunk_start = file.offset_of(chunk);
        let from = usize::try_from(offset - chunk_start).unwrap_or(usize::MAX);
        let to = usize::try_from(end + 1 - chunk_start)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if from >= to {
            return;
        }
        if tx.send(data.slice(from..to)).await.is_err() {
            return;
        }
        offset = chunk_start + to as u64;
        // The player reads on from here: keep the downloader just ahead of it.
        if swarm.position().is_some_and(|p| p <= chunk) {
            swarm.set_position(chunk + 1);
        }
    }
}

/// The live stream of `swarm` from near the edge, chunk by chunk in order; the channel
/// closes when the stream has ended (or the swarm's store is gone).
pub fn live_stream(swarm: &Arc<Swarm>) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(PIPE_DEPTH);
    tokio::spawn(feed_live(Arc::clone(swarm), tx));
    rx
}

fn respond_live(swarm: &Arc<Swarm>, head: bool) -> Response<OutBody> {
    let body = if head {
        OutBody::empty()
    } else {
        OutBody::streaming(live_stream(swarm))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(swarm.content_type()),
    );
    headers.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Sends the live stream in chunk order from near the edge, for as long as the player
/// listens and the stream lasts.
async fn feed_live(swarm: Arc<Swarm>, tx: mpsc::Sender<Bytes>) {
    let store = swarm.store();
    let mut changes = store.subscribe();
    let mut next: Option<u64> = None;
    loop {
        if let Some((edge, ended)) = store.live_edge() {
            let cursor = *next.get_or_insert_with(|| {
                swarm
                    .position()
                    .unwrap_or_else(|| edge.saturating_sub(1))
                    .min(edge.saturating_sub(1))
            });
            let floor = edge.saturating_sub(LIVE_RETENTION);
            if cursor < floor || edge.saturating_sub(cursor) > LIVE_MAX_LAG {
                // Too far behind to catch up: rejoin near the edge.
                let resume = edge.saturating_sub(2);
                tracing::info!(
                    from = cursor,
                    to = resume,
                    "player skipping ahead to the live edge"
                );
                next = Some(resume);
                continue;
            }
            if store.has(cursor) {
                match store.get(cursor).await {
                    Ok(Some(data)) => {
                        if tx.send(data).await.is_err() {
                            return;
                        }
                        next = Some(cursor + 1);
                        swarm.set_position(cursor + 1);
                        continue;
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(%err, "cannot read a live chunk");
                        return;
                    }
                }
            } else if ended && cursor >= edge {
                return;
            } else if swarm.position().is_none_or(|p| p > cursor) {
                swarm.set_position(cursor);
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms() {
        assert_eq!(parse_range(None, 100), RangeSpec::Full);
        assert_eq!(
            parse_range(Some("bytes=0-9"), 100),
            RangeSpec::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            RangeSpec::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            RangeSpec::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-1000"), 100),
            RangeSpec::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=50-5000"), 100),
            RangeSpec::Partial { start: 50, end: 99 }
        );
    }

    #[test]
    fn range_errors() {
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=200-300"), 100),
            RangeSpec::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-5"), 0), RangeSpec::Unsatisfiable);
        // Unusable headers are ignored: the whole content is sent.
        assert_eq!(parse_range(Some("bytes=9-1"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=-"), 100), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 100), RangeSpec::Full);
    }
}
