//! State shared by every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::ServerTracker;
use tokio::sync::Semaphore;

use crate::config::{IpNet, JsonErrorHttpStatus, ServerConfig};
use crate::limiter::FailureLimiter;

/// Everything a request handler needs, shared behind an `Arc`.
pub(crate) struct AppState {
    pub(crate) tracker: Arc<ServerTracker>,
    pub(crate) limits: ppsp_proto::Limits,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) json_error_http_status: JsonErrorHttpStatus,
    pub(crate) lenient_json_media_type: bool,
    pub(crate) gzip_min_bytes: usize,
    pub(crate) max_decompressed_bytes: usize,
    pub(crate) body_read_timeout: Duration,
    pub(crate) retry_after_secs: u64,
    pub(crate) connect_slots: Arc<Semaphore>,
    pub(crate) connect_queue_timeout: Duration,
    pub(crate) metrics: ServerMetrics,
    pub(crate) failed_connects: FailureLimiter,
}

impl AppState {
    pub(crate) fn new(config: &ServerConfig, tracker: Arc<ServerTracker>) -> Self {
        Self {
            tracker,
            limits: config.decode_limits(),
            trusted_proxies: config.trusted_proxy_nets(),
            json_error_http_status: config.server.json_error_http_status,
            lenient_json_media_type: config.server.lenient_json_media_type,
            gzip_min_bytes: config.server.gzip_min_bytes,
            max_decompressed_bytes: config.server.max_decompressed_bytes,
            body_read_timeout: Duration::from_secs(config.server.body_read_timeout_secs),
            retry_after_secs: config.server.retry_after_secs,
            connect_slots: Arc::new(Semaphore::new(config.server.connect_concurrency)),
            connect_queue_timeout: Duration::from_millis(config.server.connect_queue_timeout_ms),
            metrics: ServerMetrics::default(),
            failed_connects: FailureLimiter::new(
                config.auth.max_failed_connects,
                Duration::from_secs(config.auth.failed_connect_window_secs),
            ),
        }
    }
}

/// Facts about one accepted connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The socket peer.
    pub(crate) peer: SocketAddr,
    /// True over TLS, or on a loopback listener when loopback counts as secure.
    pub(crate) secure: bool,
}

/// HTTP status codes counted one by one; anything else lands in "other".
pub(crate) const COUNTED_HTTP_STATUSES: [u16; 13] = [
    200, 400, 401, 403, 404, 405, 406, 408, 413, 415, 500, 501, 503,
];

/// Counters kept by the HTTP layer (the tracker core counts PPSP requests and statuses).
#[derive(Debug, Default)]
pub(crate) struct ServerMetrics {
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) http_responses: [AtomicU64; COUNTED_HTTP_STATUSES.len()],
    pub(crate) http_responses_other: AtomicU64,
    pub(crate) memberships_expired_total: AtomicU64,
    pub(crate) stun_answers_total: AtomicU64,
    /// PPSP statuses answered by the server itself (undecodable requests, load shedding),
    /// indexed like [`ppsp_proto::Status::ALL`].
    pub(crate) ppsp_statuses: [AtomicU64; 8],
}

impl ServerMetrics {
    pub(crate) fn count_ppsp_status(&self, status: ppsp_proto::Status) {
        if let Some(counter) = ppsp_proto::Status::ALL
            .iter()
            .position(|s| *s == status)
            .and_then(|index| self.ppsp_statuses.get(index))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Core counts plus the server's own, per status.
    pub(crate) fn ppsp_status_totals(&self, core: &[u64; 8]) -> [u64; 8] {
        let mut totals = *core;
        for (total, own) in totals.iter_mut().zip(&self.ppsp_statuses) {
            *total += own.load(Ordering::Relaxed);
        }
        totals
    }

    pub(crate) fn count_http_status(&self, code: u16) {
        match COUNTED_HTTP_STATUSES.iter().position(|c| *c == code) {
            Some(index) => {
                if let Some(counter) = self.http_responses.get(index) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.http_responses_other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
