//! One HTTP request in, one HTTP response out.
//!
//! [`handle`] routes a request, [`RequestError::into_reply`] is the single place where a
//! failure becomes an answer, and [`render`] is the single place where an answer becomes an
//! HTTP response (status line, PPSP body in the request's dialect, `WWW-Authenticate` on 401,
//! `Retry-After` on 503, gzip).

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use ppsp_proto::{DecodeError, RequestBody, Status, TransactionId};
use ppsp_tracker_core::{Format as Dialect, RequestContext, Timestamp};

use crate::admin::{ADMIN_PATHS, AdminAccess, AdminRefusal};
use crate::config::{IpNet, JsonErrorHttpStatus};
use crate::digest::{JsonRequest, Refusal};
use crate::metrics::{RefusalCause, UNDECODED_METHOD};
use crate::state::{AppState, ConnInfo};

/// The body type of every response.
pub(crate) type ResponseBody = Full<Bytes>;

/// What the tracker answers, before it is turned into HTTP.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A PPSP response, encoded in the request's dialect, with extra headers.
    Ppsp {
        dialect: Dialect,
        response: ppsp_proto::Response,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Anything else: GET endpoints and HTTP-level errors.
    Plain {
        status: StatusCode,
        content_type: &'static str,
        body: Bytes,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
}

/// Why a request did not reach the tracker, or failed in it.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// Not POST, and not GET/HEAD on one of the GET endpoints.
    MethodNotAllowed { allow: &'static str },
    /// A Content-Type that is neither XML nor PPSP JSON, or a Content-Encoding other than
    /// gzip or identity.
    UnsupportedMediaType(&'static str),
    /// The request's `Accept` header rules out the media type its dialect is answered in.
    NotAcceptable,
    /// The body (as sent, or once decompressed) is over the limit.
    PayloadTooLarge,
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body could not be read or decompressed.
    BadBody(&'static str),
    /// A GET for a path that has no page (or not on this listener).
    NotFound,
    /// The state store did not answer a GET endpoint.
    Unavailable,
    /// An admin page without the configured bearer token.
    AdminUnauthorized,
    /// The codec refused the body.
    Decode {
        dialect: Dialect,
        error: DecodeError,
    },
    /// No authentication slot freed up in time.
    Overloaded {
        dialect: Dialect,
        transaction_id: TransactionId,
    },
    /// The tracker task failed.
    Internal {
        dialect: Dialect,
        transaction_id: TransactionId,
    },
    /// A JSON request without acceptable HTTP authentication for its `peer_id`.
    JsonRefused {
        refusal: Refusal,
        transaction_id: Option<TransactionId>,
    },
}

const ACCEPT_POST: &str = "application/xml, text/xml, application/ppsp-tracker+json";

impl RequestError {
    /// The PPSP status of a failure answered with a PPSP body; `None` for plain HTTP errors.
    fn ppsp_status(&self) -> Option<Status> {
        match self {
            Self::Decode { error, .. } => Some(error.status()),
            Self::Overloaded { .. } => Some(Status::TemporarilyOverloaded),
            Self::Internal { .. } => Some(Status::InternalError),
            Self::JsonRefused { refusal, .. } => Some(refusal_status(refusal)),
            _ => None,
        }
    }

    /// The one place where a failure becomes an answer.
    pub(crate) fn into_reply(self) -> Reply {
        let plain = |status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>| Reply::Plain {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )),
            headers,
        };
        match self {
            Self::MethodNotAllowed { allow } => plain(
                StatusCode::METHOD_NOT_ALLOWED,
                vec![(header::ALLOW, HeaderValue::from_static(allow))],
            ),
            Self::UnsupportedMediaType(what) => {
                tracing::debug!("415: {what}");
                plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    vec![(
                        HeaderName::from_static("accept-post"),
                        HeaderValue::from_static(ACCEPT_POST),
                    )],
                )
            }
            Self::NotAcceptable => plain(StatusCode::NOT_ACCEPTABLE, Vec::new()),
            Self::PayloadTooLarge => plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                vec![(header::CONNECTION, HeaderValue::from_static("close"))],
            ),
            Self::BodyTimeout => plain(
                StatusCode::REQUEST_TIMEOUT,
                vec![(header::CONNECTION, HeaderValue::from_static("close"))],
            ),
            Self::BadBody(why) => {
                tracing::debug!("400: {why}");
                plain(StatusCode::BAD_REQUEST, Vec::new())
            }
            Self::NotFound => plain(StatusCode::NOT_FOUND, Vec::new()),
            Self::Unavailable => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            ),
            Self::AdminUnauthorized => plain(
                StatusCode::UNAUTHORIZED,
                vec![(header::WWW_AUTHENTICATE, AdminAccess::challenge())],
            ),
            Self::Decode { dialect, error } => {
                tracing::debug!("undecodable request: {error}");
                Reply::Ppsp {
                    dialect,
                    response: ppsp_proto::Response::status(error.status(), error.transaction_id),
                    headers: Vec::new(),
                }
            }
            Self::Overloaded {
                dialect,
                transaction_id,
            } => Reply::Ppsp {
                dialect,
                response: ppsp_proto::Response::status(
                    Status::TemporarilyOverloaded,
                    Some(transaction_id),
                ),
                headers: Vec::new(),
            },
            Self::Internal {
                dialect,
                transaction_id,
            } => Reply::Ppsp {
                dialect,
                response: ppsp_proto::Response::status(Status::InternalError, Some(transaction_id)),
                headers: Vec::new(),
            },
            Self::JsonRefused {
                refusal,
                transaction_id,
            } => {
                let status = refusal_status(&refusal);
                let headers = match refusal {
                    Refusal::Unauthenticated(challenge) | Refusal::WrongCredentials(challenge) => {
                        vec![(header::WWW_AUTHENTICATE, challenge)]
                    }
                    Refusal::WrongIdentity => Vec::new(),
                };
                Reply::Ppsp {
                    dialect: Dialect::Json,
                    response: ppsp_proto::Response::status(status, transaction_id),
                    headers,
                }
            }
        }
    }
}

fn refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        Refusal::Unauthenticated(_) | Refusal::WrongCredentials(_) => {
            Status::AuthenticationRequired
        }
        Refusal::WrongIdentity => Status::MessageForbidden,
    }
}

/// The hyper service function.
pub(crate) async fn handle(
    state: &Arc<AppState>,
    conn: &ConnInfo,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<ResponseBody>, Infallible> {
    let gzip_ok = accepts_gzip(request.headers());
    // PPSP requests the tracker answered get their own log line (`accounting`); this one
    // covers every other request. The clock is read only for it: without debug logging a
    // request reads it once fewer.
    let mut logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        (
            request.method().clone(),
            request.uri().path().to_owned(),
            Instant::now(),
        )
    });
    let reply = match route(state, conn, request).await {
        Ok(reply) => {
            if matches!(reply, Reply::Ppsp { .. }) {
                logged = None;
            }
            reply
        }
        Err(error) => {
            count_failure(state, &error);
            error.into_reply()
        }
    };
    let response = render(state, reply, gzip_ok);
    if let Some((method, path, started)) = logged {
        tracing::debug!(
            "{} {method} {path} -> {} in {:?}",
            conn.peer,
            response.status().as_u16(),
            started.elapsed()
        );
    }
    Ok(response)
}

/// Counts a request that failed before the tracker answered it.
fn count_failure(state: &AppState, error: &RequestError) {
    match error {
        RequestError::PayloadTooLarge => state.metrics.refuse(RefusalCause::body_limit),
        RequestError::Decode { dialect, error } => {
            state
                .metrics
                .count_request(UNDECODED_METHOD, *dialect, error.status());
        }
        // Only CONNECTs wait for an authentication slot or run on the blocking pool.
        RequestError::Overloaded { dialect, .. } | RequestError::Internal { dialect, .. } => {
            if let Some(status) = error.ppsp_status() {
                state
                    .metrics
                    .count_request(ppsp_proto::Method::Connect.as_str(), *dialect, status);
            }
        }
        _ => {}
    }
}

/// Paths served to GET and HEAD.
const GET_PATHS: [&str; 5] = ["/", "/healthz", "/metrics", "/api/stats", "/api/history"];

async fn route(
    state: &Arc<AppState>,
    conn: &ConnInfo,
    request: hyper::Request<Incoming>,
) -> Result<Reply, RequestError> {
    let method = request.method();
    let path = request.uri().path();
    if conn.admin_listener {
        // Admin listeners serve the admin pages and the health check, nothing else.
        let served = path == "/healthz" || ADMIN_PATHS.contains(&path);
        if !served {
            return Err(RequestError::NotFound);
        }
        if *method != Method::GET && *method != Method::HEAD {
            return Err(RequestError::MethodNotAllowed { allow: "GET, HEAD" });
        }
    }
    if *method == Method::POST {
        return ppsp_request(state, conn, request).await;
    }
    let is_get_path = GET_PATHS.contains(&path);
    if *method == Method::GET || *method == Method::HEAD {
        if ADMIN_PATHS.contains(&path) {
            state
                .admin
                .check(conn.admin_listener, request.headers())
                .map_err(|refusal| match refusal {
                    AdminRefusal::NotHere => RequestError::NotFound,
                    AdminRefusal::Unauthorized => RequestError::AdminUnauthorized,
                })?;
        }
        return if path == "/api/stats" || path == "/metrics" {
            // Built on the blocking pool: a large tracker's page is milliseconds of work
            // that must not hold a runtime worker, and the FINDs queued behind it.
            let state = Arc::clone(state);
            let path = path.to_owned();
            let query = request.uri().query().map(str::to_owned);
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                runtime.block_on(crate::pages::get(&state, &path, query.as_deref()))
            })
            .await
            .map_err(|_| RequestError::Unavailable)
        } else if is_get_path {
            Ok(crate::pages::get(state, path, request.uri().query()).await)
        } else {
            Err(RequestError::MethodNotAllowed { allow: "POST" })
        };
    }
    Err(RequestError::MethodNotAllowed {
        allow: if is_get_path {
            "GET, HEAD, POST"
        } else {
            "POST"
        },
    })
}

/// Which codec a Content-Type selects (RFC 7846).
/// `lenient_json` also takes plain `application/json` as the JSON protocol.
fn dialect_for(headers: &HeaderMap, lenient_json: bool) -> Result<Dialect, RequestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Dialect::Xml);
    };
    let text = value
        .to_str()
        .map_err(|_| RequestError::UnsupportedMediaType("Content-Type is not text"))?;
    let media = text.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        return Ok(Dialect::Xml);
    }
    if media.eq_ignore_ascii_case(ppsp_proto::JSON_MEDIA_TYPE)
        || (lenient_json && media.eq_ignore_ascii_case("application/json"))
    {
        return Ok(Dialect::Json);
    }
    let is_xml = media.eq_ignore_ascii_case("application/xml")
        || media.eq_ignore_ascii_case("text/xml")
        || (media.contains('/')
            && media
                .len()
                .checked_sub(4)
                .and_then(|start| media.get(start..))
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+xml"))
            && !media.ends_with("/+xml"));
    if is_xml {
        Ok(Dialect::Xml)
    } else {
        Err(RequestError::UnsupportedMediaType(
            "unsupported Content-Type",
        ))
    }
}

/// Whether the request's `Accept` header (if any) admits an answer in `dialect` (an Accept header
/// that excludes the answer's media type is answered 406, as HTTP asks).
///
/// XML answers are `application/xml`, and `text/xml` names the same format, so a client
/// accepting either is served. Each name is weighed by the most specific matching media
/// range (exact type, then `type/*`, then `*/*`), so `application/xml;q=0, text/xml;q=0, */*` excludes XML.
/// A header that is not text is ignored rather than refused.
fn accepts_dialect(headers: &HeaderMap, dialect: Dialect, lenient_json: bool) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut ranges = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else {
            return true;
        };
        ranges.extend(text.split(',').filter_map(media_range));
    }
    if ranges.is_empty() {
        // `Accept:` with nothing usable in it names no preference at all.
        return true;
    }
    let names: &[&str] = match dialect {
        Dialect::Xml => &["application/xml", "text/xml"],
        Dialect::Json if lenient_json => &[ppsp_proto::JSON_MEDIA_TYPE, "application/json"],
        Dialect::Json => &[ppsp_proto::JSON_MEDIA_TYPE],
    };
    names.iter().any(|name| {
        let (kind, _) = name.split_once('/').unwrap_or((name, ""));
        ranges
            .iter()
            .filter_map(|(range, quality)| {
                let specificity = if range.eq_ignore_ascii_case(name) {
                    2
                } else if range
                    .strip_suffix("/*")
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                {
                    1
                } else if *range == "*/*" {
                    0
                } else {
                    return None;
                };
                Some((specificity, *quality))
            })
            .max_by_key(|(specificity, _)| *specificity)
            .is_some_and(|(_, quality)| quality)
    })
}

/// One `Accept` element as (media range, acceptable?); `q=0` marks a range as excluded.
fn media_range(element: &str) -> Option<(&str, bool)> {
    let mut parts = element.split(';');
    let range = parts.next()?.trim();
    if range.is_empty() {
        return None;
    }
    let mut acceptable = true;
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            acceptable = value.trim().parse::<f32>().map_or(true, |q| q > 0.0);
        }
    }
    Some((range, acceptable))
}

async fn ppsp_request(
    state: &AppState,
    conn: &ConnInfo,
    request: hyper::Request<Incoming>,
) -> Result<Reply, RequestError> {
    let dialect = dialect_for(request.headers(), state.lenient_json_media_type)?;
    if !accepts_dialect(request.headers(), dialect, state.lenient_json_media_type) {
        return Err(RequestError::NotAcceptable);
    }
    let (observed, forwarded) =
        observed_address(conn.peer, request.headers(), &state.trusted_proxies);
    // Behind a trusted proxy the channel that matters is the client's to the proxy, which
    // the proxy reports in X-Forwarded-Proto; the proxy's own (often loopback) connection
    // says nothing about it.
    let secure_channel = if forwarded {
        forwarded_over_https(request.headers())
    } else {
        conn.secure
    };
    // RFC 7846 leaves authentication to HTTP: the JSON gate reads the request's head, which
    // stays at hand while the body is read.
    let (parts, body) = request.into_parts();
    let body = read_body(state, &parts.headers, body).await?;
    let http_auth = (dialect == Dialect::Json).then(|| {
        (
            parts.method.as_str(),
            parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path(), |p| p.as_str()),
            &parts.headers,
        )
    });
    if let Some((_, _, headers)) = http_auth
        && let Some(refusal) = state.json_gate.refuse_before_decoding(
            headers,
            &conn.certificate_names,
            body.is_empty(),
        )
    {
        return Err(RequestError::JsonRefused {
            refusal,
            transaction_id: None,
        });
    }
    let decoded = dialect
        .decode_request(&body, &state.limits)
        .map_err(|error| RequestError::Decode { dialect, error })?;
    // True when the HTTP layer proved the JSON peer's identity (Digest or a certificate).
    let mut authenticated = false;
    if let Some((method, target, headers)) = http_auth {
        let source = observed.ip();
        if headers.contains_key(header::AUTHORIZATION)
            && state.failed_connects.blocked(source, Instant::now())
        {
            tracing::warn!("JSON credentials from {source} refused: too many failed attempts");
            return Err(RequestError::Overloaded {
                dialect,
                transaction_id: decoded.transaction_id,
            });
        }
        let request = JsonRequest {
            method,
            target,
            headers,
            peer_id: decoded.peer_id.as_str(),
            certificate_names: &conn.certificate_names,
        };
        authenticated = state
            .json_gate
            .check(&state.authenticator, &request)
            .map_err(|refusal| {
                if matches!(refusal, Refusal::WrongCredentials(_)) {
                    state.failed_connects.record_failure(source, Instant::now());
                }
                RequestError::JsonRefused {
                    refusal,
                    transaction_id: Some(decoded.transaction_id.clone()),
                }
            })?;
    }
    let context = RequestContext {
        observed,
        format: dialect,
        secure_channel,
        authenticated,
    };
    let started = Instant::now();
    let (decoded, response) = if matches!(decoded.body, RequestBody::Connect(_)) {
        connect(state, context, decoded).await?
    } else {
        let response = state
            .tracker
            .handle(Timestamp::now(), &context, &decoded)
            .await;
        (decoded, response)
    };
    crate::accounting::account(
        &state.metrics,
        &state.reported,
        dialect,
        &decoded,
        &response,
        started.elapsed(),
    );
    Ok(Reply::Ppsp {
        dialect,
        response,
        headers: Vec::new(),
    })
}

/// True for a CONNECT whose authentication may check a password hash: any SASL mechanism
/// but ANONYMOUS. JSON CONNECTs and ANONYMOUS cost nothing to authenticate.
fn needs_password_check(request: &ppsp_proto::Request) -> bool {
    match &request.body {
        RequestBody::Connect(connect) => connect
            .auth
            .as_ref()
            .is_some_and(|sasl| !sasl.mechanism.eq_ignore_ascii_case("ANONYMOUS")),
        _ => false,
    }
}

/// CONNECT, with repeated authentication failures held off. A CONNECT that may check a
/// password hash (slow on purpose) runs on the blocking pool, a bounded number at a time,
/// and waits at most `connect_queue_timeout` for a slot; the others are handled inline.
/// The request comes back with its answer, for accounting.
async fn connect(
    state: &AppState,
    context: RequestContext,
    request: ppsp_proto::Request,
) -> Result<(ppsp_proto::Request, ppsp_proto::Response), RequestError> {
    let dialect = context.format;
    let source = context.observed.ip();
    if state.failed_connects.blocked(source, Instant::now()) {
        tracing::warn!(
            "CONNECT for {} from {source} refused: too many failed attempts",
            request.peer_id
        );
        state.metrics.refuse(RefusalCause::failed_connect_holdoff);
        return Err(RequestError::Overloaded {
            dialect,
            transaction_id: request.transaction_id,
        });
    }
    if !needs_password_check(&request) {
        let response = state
            .tracker
            .handle(Timestamp::now(), &context, &request)
            .await;
        if response.status == Status::AuthenticationRequired {
            state.failed_connects.record_failure(source, Instant::now());
        }
        return Ok((request, response));
    }
    let slot = tokio::time::timeout(
        state.connect_queue_timeout,
        Arc::clone(&state.connect_slots).acquire_owned(),
    )
    .await;
    let Ok(Ok(slot)) = slot else {
        tracing::warn!(
            "CONNECT from {} shed: authentication queue full",
            context.observed
        );
        state.metrics.refuse(RefusalCause::load_shedding);
        return Err(RequestError::Overloaded {
            dialect,
            transaction_id: request.transaction_id,
        });
    };
    let tracker = Arc::clone(&state.tracker);
    let transaction_id = request.transaction_id.clone();
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        // The password check inside blocks this thread, not a runtime worker.
        let response = runtime.block_on(tracker.handle(Timestamp::now(), &context, &request));
        drop(slot);
        (request, response)
    });
    let (request, response) = task.await.map_err(|err| {
        tracing::error!("CONNECT task failed: {err}");
        RequestError::Internal {
            dialect,
            transaction_id,
        }
    })?;
    if response.status == Status::AuthenticationRequired {
        state.failed_connects.record_failure(source, Instant::now());
    }
    Ok((request, response))
}

async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, RequestError> {
    let gzipped = match headers.get(header::CONTENT_ENCODING) {
        None => false,
        Some(value) => match value.to_str().map(str::trim) {
            Ok(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => true,
            Ok(v) if v.eq_ignore_ascii_case("identity") || v.is_empty() => false,
            _ => {
                return Err(RequestError::UnsupportedMediaType(
                    "unsupported Content-Encoding",
                ));
            }
        },
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.limits.max_body_bytes as u64) {
        return Err(RequestError::PayloadTooLarge);
    }
    let limited = Limited::new(body, state.limits.max_body_bytes);
    let collected = tokio::time::timeout(state.body_read_timeout, limited.collect())
        .await
        .map_err(|_| RequestError::BodyTimeout)?
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                RequestError::PayloadTooLarge
            } else {
                RequestError::BadBody("body could not be read")
            }
        })?
        .to_bytes();
    if gzipped {
        gunzip(&collected, state.max_decompressed_bytes)
    } else {
        Ok(collected)
    }
}

/// Decompresses a gzip body, refusing output over `limit` bytes (no gzip bombs: at most
/// `limit + 1` bytes are ever produced).
fn gunzip(data: &[u8], limit: usize) -> Result<Bytes, RequestError> {
    let decoder = flate2::read::MultiGzDecoder::new(data);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| RequestError::BadBody("invalid gzip body"))?;
    if out.len() > limit {
        return Err(RequestError::PayloadTooLarge);
    }
    Ok(Bytes::from(out))
}

/// True when the nearest proxy says the client reached it over HTTPS.
fn forwarded_over_https(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The client address: the socket peer, or the X-Forwarded-For client when the socket peer
/// is a trusted proxy. The header is read right to left and trusted proxies are skipped; the
/// first untrusted hop is the client. Entries without a port get port 0. The flag is true
/// when the address came from the header.
pub(crate) fn observed_address(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> (SocketAddr, bool) {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(peer.ip()) || !headers.contains_key("x-forwarded-for") {
        return (peer, false);
    }
    (forwarded_client(peer, headers, &is_trusted), true)
}

fn forwarded_client(
    peer: SocketAddr,
    headers: &HeaderMap,
    is_trusted: &dyn Fn(IpAddr) -> bool,
) -> SocketAddr {
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        hops.extend(text.split(',').map(str::trim).filter(|h| !h.is_empty()));
        // A client can prepend any number of entries; only the right end matters, so the
        // work stays bounded.
        if hops.len() > 64 {
            let excess = hops.len() - 64;
            hops.drain(..excess);
        }
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(addr) = parse_hop(hop) else {
            // Garbage from beyond the last trusted proxy: the nearest trusted hop is all
            // that is known.
            return client;
        };
        client = addr;
        if !is_trusted(addr.ip()) {
            return addr;
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<SocketAddr> {
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = hop.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// True when Accept-Encoding lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if !(coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip")) {
                return false;
            }
            parts.all(|param| {
                let param = param.trim();
                match param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                {
                    Some(q) => q.trim().parse::<f32>().is_ok_and(|q| q > 0.0),
                    None => true,
                }
            })
        })
}

/// The one place where an answer becomes an HTTP response.
pub(crate) fn render(
    state: &AppState,
    reply: Reply,
    gzip_ok: bool,
) -> hyper::Response<ResponseBody> {
    let (status, content_type, body, mut headers) = match reply {
        Reply::Ppsp {
            dialect,
            response,
            headers,
        } => {
            let ppsp_status = response.status;
            let (body, content_type) = (dialect.encode_response(&response), dialect.media_type());
            let code = if dialect == Dialect::Json
                && state.json_error_http_status == JsonErrorHttpStatus::Always200
            {
                200
            } else {
                ppsp_status.http_code()
            };
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, content_type, Bytes::from(body), headers)
        }
        Reply::Plain {
            status,
            content_type,
            body,
            headers,
        } => (status, content_type, body, headers),
    };
    if status == StatusCode::UNAUTHORIZED
        && !headers
            .iter()
            .any(|(name, _)| name == header::WWW_AUTHENTICATE)
    {
        headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("PPSP-SASL"),
        ));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(state.retry_after_secs),
        ));
    }
    let body = if gzip_ok && body.len() > state.gzip_min_bytes {
        match gzip(&body) {
            Some(compressed) => {
                headers.push((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
                compressed
            }
            None => body,
        }
    } else {
        body
    };
    state.metrics.count_http_status(status.as_u16());
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    map.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    for (name, value) in headers {
        map.append(name, value);
    }
    response
}

fn gzip(data: &[u8]) -> Option<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(data).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn content_type_dispatch() {
        let dialect = |ct: &'static str| dialect_for(&headers(&[("content-type", ct)]), false);
        assert!(matches!(
            dialect_for(&HeaderMap::new(), false),
            Ok(Dialect::Xml)
        ));
        assert!(matches!(
            dialect_for(&headers(&[("content-type", "application/json")]), true),
            Ok(Dialect::Json)
        ));
        assert!(matches!(
            dialect("application/xml; charset=utf-8"),
            Ok(Dialect::Xml)
        ));
        assert!(matches!(dialect("TEXT/XML"), Ok(Dialect::Xml)));
        assert!(matches!(dialect("application/ppsp+xml"), Ok(Dialect::Xml)));
        assert!(matches!(
            dialect("application/ppsp-tracker+json"),
            Ok(Dialect::Json)
        ));
        assert!(dialect("application/json").is_err());
        assert!(dialect("text/plain").is_err());
        assert!(dialect("+xml").is_err());
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(&headers(&[("accept-encoding", "br, gzip")])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0.5")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "deflate")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn gzip_bomb_is_cut_off() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let packed = gzip(&zeros).expect("compresses");
        assert!(packed.len() < 64 * 1024);
        assert!(matches!(
            gunzip(&packed, 1024 * 1024),
            Err(RequestError::PayloadTooLarge)
        ));
        let small = gzip(b"hello").expect("compresses");
        assert_eq!(
            gunzip(&small, 1024).expect("fits"),
            Bytes::from_static(b"hello")
        );
        assert!(matches!(
            gunzip(b"not gzip", 1024),
            Err(RequestError::BadBody(_))
        ));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.1:4000".parse().expect("addr");
        let stranger: SocketAddr = "198.51.100.9:5000".parse().expect("addr");
        let trusted = vec![IpNet::parse("10.0.0.0/8").expect("net")];
        let xff = headers(&[("x-forwarded-for", "203.0.113.5, 10.0.0.7")]);
        assert_eq!(
            observed_address(proxy, &xff, &trusted),
            ("203.0.113.5:0".parse::<SocketAddr>().expect("addr"), true)
        );
        assert_eq!(
            observed_address(stranger, &xff, &trusted),
            (stranger, false)
        );
        assert_eq!(observed_address(proxy, &xff, &[]), (proxy, false));
        assert_eq!(
            observed_address(proxy, &HeaderMap::new(), &trusted),
            (proxy, false)
        );
        let with_port = headers(&[("x-forwarded-for", "[2001:db8::5]:7000")]);
        assert_eq!(
            observed_address(proxy, &with_port, &trusted).0,
            "[2001:db8::5]:7000".parse::<SocketAddr>().expect("addr")
        );
        let garbage = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(observed_address(proxy, &garbage, &trusted).0, proxy);
        let spoof = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert_eq!(
            observed_address(proxy, &spoof, &trusted).0,
            "203.0.113.5:0".parse::<SocketAddr>().expect("addr")
        );
        assert!(forwarded_over_https(&headers(&[(
            "x-forwarded-proto",
            "https"
        )])));
        assert!(!forwarded_over_https(&headers(&[(
            "x-forwarded-proto",
            "http"
        )])));
        assert!(!forwarded_over_https(&HeaderMap::new()));
    }
}
