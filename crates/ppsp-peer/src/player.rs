//! The local endpoint for a media player, on a listener of its own
//! ([`PlayerServer`](crate::server::PlayerServer)).
//!
//! `GET /` (or the swarm's name) returns the content of a single-file swarm; a directory
//! swarm serves each file at its path and an index at `/`. Video-on-demand
//! content honours a single `Range: bytes=...` range with `206 Partial Content`; the body
//! is sent from the requested offset as soon as each chunk is there, and the chunk a
//! response is waiting for becomes the playback position, so the downloader fetches it (and
//! the few after it) before anything else. Live content is one endless response starting
//! near the live edge; a transport stream starts on a keyframe (see [`crate::ts`]). A live
//! HLS stream is served as playlists and segments (see [`crate::hls`]). Every answer carries
//! the CORS headers of the swarm's [`CorsPolicy`], and `OPTIONS` answers the preflight.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{
    ACCEPT_RANGES, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, HeaderValue, LOCATION, ORIGIN, RANGE, RETRY_AFTER, VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::body::OutBody;
use crate::error::Error;
use crate::hls::{HlsIndex, HlsResource, HlsSegment, HlsVariant, media_playlist};
use crate::manifest::{FileSpan, Manifest, guess_content_type};
use crate::store::LIVE_RETENTION;
use crate::swarm::Swarm;
use crate::ts::{RandomAccessPoint, TsScanner, Verdict};

/// How long a player response waits for one chunk before giving up.
const CHUNK_WAIT: Duration = Duration::from_secs(120);
/// A live player further than this many chunks behind the edge skips ahead.
const LIVE_MAX_LAG: u64 = 32;
/// How long a new live player of a transport stream waits for a keyframe before it is sent
/// the stream from wherever it is.
const LIVE_START_SEARCH: Duration = Duration::from_secs(10);
/// Media type of HLS playlists (RFC 8216 §4).
const HLS_MEDIA_TYPE: &str = "application/vnd.apple.mpegurl";
/// Media type of DASH MPDs (ISO/IEC 23009-1 Annex C).
const DASH_MEDIA_TYPE: &str = "application/dash+xml";
/// Segments a live HLS media playlist waits for before its first answer to a player.
const HLS_START_SEGMENTS: usize = 3;
/// Most segments in a served live media playlist.
const HLS_PLAYLIST_WINDOW: usize = 6;
/// Longest wait of a media playlist request for [`HLS_START_SEGMENTS`] segments.
const HLS_PLAYLIST_WAIT: Duration = Duration::from_secs(4);
/// Longest wait of a segment request for one of its chunks.
const HLS_SEGMENT_WAIT: Duration = Duration::from_secs(10);
/// A VoD answer spanning fewer chunks than this waits until all of them are verified
/// before its status line is sent, so a player's segment request gets the whole segment or
/// a `503` to retry, never a response that stalls or breaks off midway.
const WHOLE_ANSWER_CHUNKS: u64 = 32;
/// Longest wait for the chunks of such an answer.
const WHOLE_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Media type of an MPEG transport stream.
const TS_MEDIA_TYPE: &str = "video/mp2t";
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

/// Which web pages may read the player endpoint's answers: the CORS protocol of the Fetch
/// standard (`Access-Control-Allow-Origin` and the preflight `OPTIONS` request), so that a
/// page served from elsewhere can play the content with a script player such as hls.js.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// Any page (`Access-Control-Allow-Origin: *`). The default: the endpoint serves
    /// content that is public in the swarm anyway, without credentials.
    #[default]
    AnyOrigin,
    /// Only pages of these origins (`scheme://host[:port]`); a matching request `Origin` is
    /// echoed back, with `Vary: Origin`.
    Origins(Vec<String>),
    /// No CORS headers: browsers keep other origins' pages from reading the content.
    Off,
}

impl CorsPolicy {
    /// The policy for the values of `--cors-origin`: `*` (any), `none` (off), or origins.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a value that is not `*`, `none` or an origin
    /// (`http://` or `https://`, a host, no path), or `*`/`none` mixed with origins.
    pub fn from_values(values: &[String]) -> Result<Self, Error> {
        match values {
            [] => Ok(Self::AnyOrigin),
            [one] if one == "*" => Ok(Self::AnyOrigin),
            [one] if one.eq_ignore_ascii_case("none") => Ok(Self::Off),
            origins => {
                for origin in origins {
                    let rest = origin
                        .strip_prefix("http://")
                        .or_else(|| origin.strip_prefix("https://"));
                    let valid = rest.is_some_and(|host| {
                        !host.is_empty()
                            && !host.contains('/')
                            && HeaderValue::from_str(origin).is_ok()
                    });
                    if !valid {
                        return Err(Error::InvalidArgument(format!(
                            "CORS origin {origin:?}: give *, none, or origins such as \
                             https://example.org or http://127.0.0.1:8000"
                        )));
                    }
                }
                Ok(Self::Origins(origins.to_vec()))
            }
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Self::AnyOrigin => Some(HeaderValue::from_static("*")),
            Self::Origins(list) => {
                let origin = origin?;
                let text = origin.to_str().ok()?;
                list.iter()
                    .any(|o| o.eq_ignore_ascii_case(text))
                    .then(|| origin.clone())
            }
            Self::Off => None,
        }
    }

    fn varies(&self) -> bool {
        matches!(self, Self::Origins(_))
    }
}

/// Methods the player endpoint answers.
const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";
/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";
/// Response headers a cross-origin script may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: &str = "Content-Length, Content-Range, Accept-Ranges";

/// Answers a request for the player endpoint: `GET` and `HEAD` of the content, `OPTIONS`
/// (CORS preflight), with the CORS headers the swarm's [`CorsPolicy`] calls for; other
/// methods get `405`.
pub(crate) async fn handle<B>(swarm: &Arc<Swarm>, req: &Request<B>) -> Response<OutBody> {
    let policy = &swarm.options().cors;
    let allowed = policy.allow(req.headers().get(ORIGIN));
    let method = req.method();
    let mut response = if method == Method::GET || method == Method::HEAD {
        let range = req.headers().get(RANGE).and_then(|v| v.to_str().ok());
        respond(swarm, req.uri().path(), range, method == Method::HEAD).await
    } else if method == Method::OPTIONS {
        let mut response = Response::new(OutBody::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if allowed.is_some() {
            let headers = response.headers_mut();
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            // The player needs `Range` (a safelisted header only for single simple
            // ranges); whatever else a script player sends is read-only too.
            let asked = req.headers().get(ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                asked.unwrap_or_else(|| HeaderValue::from_static("Range")),
            );
            headers.insert(
                ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
        }
        response
    } else {
        simple(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, HEAD and OPTIONS\n",
        )
    };
    let lists_methods = matches!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NO_CONTENT
    );
    let headers = response.headers_mut();
    if lists_methods {
        headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    }
    if let Some(origin) = allowed {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    if policy.varies() {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
    response
}

fn simple(status: StatusCode, text: &'static str) -> Response<OutBody> {
    let mut response = Response::new(OutBody::full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Answers a player request for `path` of `swarm`: a live stream (raw, or HLS playlists
/// and segments), one file of a directory swarm (an index of them at `/`), or the content
/// of a single-file swarm (at `/` and under its own name).
async fn respond(
    swarm: &Arc<Swarm>,
    path: &str,
    range: Option<&str>,
    head: bool,
) -> Response<OutBody> {
    let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    };
    let relative = decoded.strip_prefix('/').unwrap_or(&decoded);
    if swarm.is_live() {
        let index = swarm
            .store()
            .live_manifest()
            .and_then(|m| m.manifest().hls.clone());
        return match index {
            Some(index) => respond_hls(swarm, &index, relative, head).await,
            None if swarm.content_type() == HLS_MEDIA_TYPE => {
                let mut response = simple(StatusCode::SERVICE_UNAVAILABLE, "no HLS playlist yet\n");
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            None if is_whole_content(swarm, relative) => respond_live(swarm, head),
            None => simple(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    let Some(manifest) = swarm.store().vod_manifest() else {
        return simple(StatusCode::SERVICE_UNAVAILABLE, "no manifest yet\n");
    };
    if manifest.is_directory() {
        if relative.is_empty() {
            return directory_index(&manifest, head);
        }
        return match manifest.file(relative) {
            Some(file) => respond_file(swarm, file, file.media_type(), range, head).await,
            None => simple(StatusCode::NOT_FOUND, "no such file\n"),
        };
    }
    if !is_whole_content(swarm, relative) {
        return simple(StatusCode::NOT_FOUND, "not found\n");
    }
    match manifest.files().first() {
        Some(file) => respond_file(swarm, file, swarm.content_type(), range, head).await,
        None => simple(StatusCode::NOT_FOUND, "no content\n"),
    }
}

/// Whether `relative` names the content of a single-file or raw live swarm: `/` or the
/// swarm's own name.
fn is_whole_content(swarm: &Swarm, relative: &str) -> bool {
    relative.is_empty() || relative == swarm.name()
}

/// The index of a directory swarm: an HTML list linking each file.
fn directory_index(manifest: &Manifest, head: bool) -> Response<OutBody> {
    use std::fmt::Write as _;
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title></head>\n<body><h1>{0}</h1>\n<ul>\n",
        escape(manifest.name())
    );
    for file in manifest.files() {
        let href = percent_encoding::utf8_percent_encode(file.path(), PATH).to_string();
        let _ = writeln!(
            page,
            "<li><a href=\"/{}\">{}</a> ({} bytes)</li>",
            escape(&href),
            escape(file.path()),
            file.length()
        );
    }
    page.push_str("</ul>\n</body></html>\n");
    let length = page.len();
    let body = if head {
        OutBody::empty()
    } else {
        OutBody::full(page)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = length.to_string().parse() {
        headers.insert(CONTENT_LENGTH, v);
    }
    response
}

/// Answers a player request for one file of a VoD swarm, served as `content_type`. An
/// answer of at most [`WHOLE_ANSWER_CHUNKS`] chunks (a media segment, a playlist, an
/// initialization section) starts only once all of it is verified.
async fn respond_file(
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
    if let Some(end) = end
        && !head
    {
        let (first, last) = (file.chunk_at(start), file.chunk_at(end));
        if last - first < WHOLE_ANSWER_CHUNKS && !chunks_arrive(swarm, first, last).await {
            let mut response = simple(StatusCode::SERVICE_UNAVAILABLE, "not here yet\n");
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
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
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
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

/// Waits (up to [`WHOLE_ANSWER_WAIT`]) until chunks `first..=last` are all verified, each
/// missing one becoming the playback position in turn, so the downloader fetches it and
/// the rest of the span before anything else. False when the wait ran out.
async fn chunks_arrive(swarm: &Swarm, first: u64, last: u64) -> bool {
    let store = swarm.store();
    let deadline = tokio::time::Instant::now() + WHOLE_ANSWER_WAIT;
    for chunk in first..=last {
        if store.has(chunk) {
            continue;
        }
        swarm.set_position(chunk);
        if !store.wait_for(chunk, deadline).await {
            return false;
        }
    }
    true
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

/// The live stream of `swarm` from near the edge (from a keyframe, with the program tables
/// first, for a transport stream), chunk by chunk in order; the channel closes when the
/// stream has ended (or the swarm's store is gone).
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
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(swarm.content_type()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Where a live response starts: the bytes to send first, and the chunk after them.
struct LiveStart {
    /// Program tables and the tail of the chunk holding the starting point.
    prefix: Vec<Bytes>,
    /// The next chunk to send whole.
    next: u64,
}

/// Finds where a new player of a live MPEG transport stream should start: the newest
/// random-access point (a keyframe with the program tables before it) among the chunks
/// from `cursor` to the live edge, or the first one to arrive after them. `None` when the
/// stream is not a transport stream or no starting point shows up in time: the caller
/// then starts at `cursor` as for any other stream.
async fn find_live_start(
    swarm: &Swarm,
    mut cursor: u64,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    tx: &mpsc::Sender<Bytes>,
) -> Option<LiveStart> {
    let store = swarm.store();
    let deadline = tokio::time::Instant::now() + LIVE_START_SEARCH;
    let mut scanner = TsScanner::new();
    // Stream offset at which each scanned chunk begins, to map a point back to a chunk.
    let mut starts: Vec<(u64, u64)> = Vec::new();
    let mut best: Option<RandomAccessPoint> = None;
    loop {
        let (edge, ended) = store.live_edge()?;
        if cursor < edge.saturating_sub(LIVE_RETENTION) {
            return None;
        }
        if cursor < edge && store.has(cursor) {
            let data = match store.get(cursor).await {
                Ok(Some(data)) => data,
                Ok(None) => return None,
                Err(err) => {
                    tracing::error!(%err, "cannot read a live chunk");
                    return None;
                }
            };
            starts.push((cursor, scanner.offset()));
            if let Some(point) = scanner.push(&data).pop() {
                best = Some(point);
            }
            if scanner.verdict() == Verdict::NotTransportStream {
                return None;
            }
            cursor += 1;
            swarm.set_position(cursor);
            continue;
        }
        // Caught up with what is there: start at the newest point seen, if any.
        if cursor >= edge
            && let Some(point) = best.take()
        {
            return live_start_at(swarm, &starts, point).await;
        }
        if ended && cursor >= edge {
            return None;
        }
        if swarm.position().is_none_or(|p| p > cursor) {
            swarm.set_position(cursor);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return None },
            () = tx.closed() => return None,
            () = tokio::time::sleep_until(deadline) => {
                tracing::info!("no keyframe found in the live stream; starting without one");
                return None;
            }
        }
    }
}

/// The [`LiveStart`] for `point`, given where each scanned chunk begins in the stream.
async fn live_start_at(
    swarm: &Swarm,
    starts: &[(u64, u64)],
    point: RandomAccessPoint,
) -> Option<LiveStart> {
    let &(chunk, chunk_offset) = starts.iter().rev().find(|(_, at)| *at <= point.offset)?;
    let data = swarm.store().get(chunk).await.ok()??;
    let from = usize::try_from(point.offset - chunk_offset).ok()?;
    let mut prefix = Vec::new();
    if let Some(tables) = point.tables {
        prefix.push(Bytes::from(tables));
    }
    prefix.push(data.slice(from.min(data.len())..));
    tracing::info!(chunk, offset = from, "live player starts at a keyframe");
    Some(LiveStart {
        prefix,
        next: chunk + 1,
    })
}

/// Sends the live stream in chunk order from near the edge, for as long as the player
/// listens and the stream lasts. A transport stream starts at a keyframe.
async fn feed_live(swarm: Arc<Swarm>, tx: mpsc::Sender<Bytes>) {
    let store = swarm.store();
    let mut changes = store.subscribe();
    let mut next: Option<u64> = None;
    if swarm.content_type() == TS_MEDIA_TYPE {
        let first = loop {
            if let Some((edge, _)) = store.live_edge() {
                // A position left behind long ago (the viewer ran a while before this
                // player came) is no place to look for the live edge's keyframe.
                break start_cursor(&swarm, edge).max(edge.saturating_sub(LIVE_MAX_LAG));
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        };
        next = Some(first);
        if let Some(start) = find_live_start(&swarm, first, &mut changes, &tx).await {
            for piece in start.prefix {
                if tx.send(piece).await.is_err() {
                    return;
                }
            }
            next = Some(start.next);
            swarm.set_position(start.next);
        }
    }
    loop {
        if let Some((edge, ended)) = store.live_edge() {
            let cursor = *next.get_or_insert_with(|| start_cursor(&swarm, edge));
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

/// Answers `path` of a live HLS stream: `/` redirects to the entry playlist, playlists and
/// segments are served under the names the encoder gave them.
async fn respond_hls(
    swarm: &Arc<Swarm>,
    index: &HlsIndex,
    path: &str,
    head: bool,
) -> Response<OutBody> {
    let wanted = path.trim_start_matches('/');
    if wanted.is_empty() {
        let Some(entry) = index.entry_path() else {
            return simple(StatusCode::SERVICE_UNAVAILABLE, "no HLS playlist yet\n");
        };
        let mut response = simple(StatusCode::FOUND, "see the playlist\n");
        if let Ok(location) = HeaderValue::from_str(&format!("/{entry}")) {
            response.headers_mut().insert(LOCATION, location);
        }
        return response;
    }
    match index.resolve(wanted) {
        Some(HlsResource::Master(master)) => playlist_response(
            Bytes::from(master.text.clone().into_bytes()),
            HLS_MEDIA_TYPE,
            head,
        ),
        Some(HlsResource::Dash(mpd)) => playlist_response(
            Bytes::from(mpd.text.clone().into_bytes()),
            DASH_MEDIA_TYPE,
            head,
        ),
        Some(HlsResource::Media(variant)) => {
            let text = media_playlist_when_ready(swarm, variant.clone()).await;
            playlist_response(Bytes::from(text), HLS_MEDIA_TYPE, head)
        }
        Some(HlsResource::Segment(_, segment)) => segment_response(swarm, segment.clone(), head),
        Some(HlsResource::Init(init)) => match init.bytes() {
            Some(bytes) => {
                let length = bytes.len();
                let mut response = Response::new(if head {
                    OutBody::empty()
                } else {
                    OutBody::full(bytes)
                });
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(guess_content_type(&init.uri)),
                );
                headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
                response
            }
            None => simple(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unreadable init section\n",
            ),
        },
        None => simple(StatusCode::NOT_FOUND, "no such playlist or segment\n"),
    }
}

fn playlist_response(text: Bytes, media_type: &'static str, head: bool) -> Response<OutBody> {
    let length = text.len();
    let body = if head {
        OutBody::empty()
    } else {
        OutBody::full(text)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    // A live playlist changes with every segment.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// The segments of `variant` this peer holds: the newest held one and the held ones right
/// before it, at most [`HLS_PLAYLIST_WINDOW`].
fn held_run(swarm: &Swarm, variant: &HlsVariant) -> Vec<HlsSegment> {
    let store = swarm.store();
    let held = |s: &HlsSegment| (s.first_chunk..s.end_chunk()).all(|c| store.has(c));
    let mut run = Vec::new();
    for segment in variant.segments.iter().rev() {
        if held(segment) {
            run.push(segment.clone());
            if run.len() == HLS_PLAYLIST_WINDOW {
                break;
            }
        } else if !run.is_empty() {
            break;
        }
    }
    run.reverse();
    run
}

/// The sliding-window media playlist of `variant`, listing only segments held (so each
/// can be answered at once). When fewer than [`HLS_START_SEGMENTS`] are held, as for a
/// viewer that has just joined, it points the downloader at the newest ones and waits
/// for them (at most [`HLS_PLAYLIST_WAIT`]).
async fn media_playlist_when_ready(swarm: &Swarm, mut variant: HlsVariant) -> Vec<u8> {
    let store = swarm.store();
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + HLS_PLAYLIST_WAIT;
    loop {
        let run = held_run(swarm, &variant);
        let want = HLS_START_SEGMENTS.min(variant.segments.len());
        if run.len() >= want || tokio::time::Instant::now() >= deadline {
            return media_playlist(&variant, &run);
        }
        if let Some(first) = variant.segments.get(variant.segments.len() - want)
            && swarm.position().is_none_or(|p| p > first.first_chunk)
        {
            swarm.set_position(first.first_chunk);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() {
                return media_playlist(&variant, &run);
            },
            () = tokio::time::sleep_until(deadline) => {}
        }
        // A newer manifest may list newer segments.
        let newer = store.live_manifest().and_then(|m| {
            m.manifest()
                .hls
                .as_ref()
                .and_then(|i| i.variants.iter().find(|v| v.path == variant.path).cloned())
        });
        if let Some(newer) = newer {
            variant = newer;
        }
    }
}

fn segment_response(swarm: &Arc<Swarm>, segment: HlsSegment, head: bool) -> Response<OutBody> {
    let media_type = guess_content_type(&segment.uri);
    let length = segment.length;
    let body = if head {
        OutBody::empty()
    } else {
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        tokio::spawn(feed_segment(Arc::clone(swarm), segment, tx));
        OutBody::streaming(rx)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// Sends the chunks of `segment` in order, each once it is held (and so verified).
async fn feed_segment(swarm: Arc<Swarm>, segment: HlsSegment, tx: mpsc::Sender<Bytes>) {
    let store = swarm.store();
    for chunk in segment.first_chunk..segment.end_chunk() {
        if !store.has(chunk) {
            if swarm.position().is_none_or(|p| p > chunk) {
                swarm.set_position(chunk);
            }
            let deadline = tokio::time::Instant::now() + HLS_SEGMENT_WAIT;
            let arrived = tokio::select! {
                arrived = store.wait_for(chunk, deadline) => arrived,
                () = tx.closed() => return,
            };
            if !arrived {
                tracing::warn!(
                    chunk,
                    segment = segment.sequence,
                    "segment chunk did not arrive"
                );
                return;
            }
        }
        match store.get(chunk).await {
            Ok(Some(data)) => {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
            Ok(None) => {
                tracing::warn!(chunk, "segment chunk left the store before it was sent");
                return;
            }
            Err(err) => {
                tracing::error!(%err, "cannot read a segment chunk");
                return;
            }
        }
    }
}

/// The chunk a new live player starts from: the playback position if the downloader
/// already follows one, else just behind the edge.
fn start_cursor(swarm: &Swarm, edge: u64) -> u64 {
    swarm
        .position()
        .unwrap_or_else(|| edge.saturating_sub(1))
        .min(edge.saturating_sub(1))
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
