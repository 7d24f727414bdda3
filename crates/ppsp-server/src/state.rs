//! State shared by every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::store::ServerTracker;
use tokio::sync::Semaphore;

use crate::accounting::ReportedBytes;
use crate::admin::AdminAccess;
use crate::auth::AccountsAuthenticator;
use crate::config::{IpNet, JsonErrorHttpStatus, ServerConfig};
use crate::digest::JsonGate;
use crate::history::History;
use crate::limiter::FailureLimiter;
use crate::metrics::Metrics;

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
    pub(crate) metrics: Metrics,
    /// Last reported byte totals, to count what each STAT_REPORT adds.
    pub(crate) reported: ReportedBytes,
    /// The last hour of activity for the dashboard.
    pub(crate) history: History,
    /// How long a peer may stay silent before its session expires.
    pub(crate) session_idle_timeout: Duration,
    pub(crate) failed_connects: FailureLimiter,
    /// The accounts, for the HTTP-layer authentication of JSON peers.
    pub(crate) authenticator: Arc<AccountsAuthenticator>,
    /// HTTP Digest and client-certificate checks of JSON requests.
    pub(crate) json_gate: Arc<JsonGate>,
    /// Who may see the admin pages.
    pub(crate) admin: AdminAccess,
}

impl AppState {
    pub(crate) fn new(
        config: &ServerConfig,
        tracker: Arc<ServerTracker>,
        authenticator: Arc<AccountsAuthenticator>,
        json_gate: Arc<JsonGate>,
        admin: AdminAccess,
    ) -> Self {
        Self {
            tracker,
            authenticator,
            json_gate,
            admin,
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
            metrics: Metrics::new(),
            reported: ReportedBytes::default(),
            history: History::new(Duration::from_secs(config.server.history_sample_secs)),
            session_idle_timeout: Duration::from_secs(config.tracker.session_idle_timeout_secs),
            failed_connects: FailureLimiter::new(
                config.auth.max_failed_connects,
                Duration::from_secs(config.auth.failed_connect_window_secs),
                config.auth.failed_connect_ipv4_prefix,
            ),
        }
    }
}

#[cfg(test)]
impl AppState {
    /// State for unit tests: `config`'s authentication settings, its accounts file if any.
    pub(crate) fn for_tests(config: &ServerConfig, tracker: Arc<ServerTracker>) -> Self {
        let authenticator =
            Arc::new(AccountsAuthenticator::from_config(&config.auth).expect("accounts"));
        let gate = JsonGate::new(
            &config.auth.digest_realm,
            Duration::from_secs(config.auth.digest_nonce_lifetime_secs),
            config.auth.allow_anonymous,
        )
        .expect("randomness");
        let admin = AdminAccess::from_config(&config.admin).expect("admin token");
        Self::new(config, tracker, authenticator, Arc::new(gate), admin)
    }
}

/// Facts about one accepted connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The socket peer.
    pub(crate) peer: SocketAddr,
    /// True over TLS, or on a loopback listener when loopback counts as secure.
    pub(crate) secure: bool,
    /// Names of the verified TLS client certificate (CN, DNS and URI SANs); empty without.
    pub(crate) certificate_names: Vec<String>,
    /// True on an `[admin] listen` listener, which serves only the admin pages.
    pub(crate) admin_listener: bool,
}
