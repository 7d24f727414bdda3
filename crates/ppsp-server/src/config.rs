//! The tracker's configuration file (TOML).
//!
//! One struct, [`ServerConfig`], with a section per concern. Every field has a default, so an
//! empty file (or no file) gives a working open tracker on `127.0.0.1:7070`. Unknown keys are
//! errors, so a typo never silently falls back to a default. [`ServerConfig::commented_toml`]
//! renders the defaults with a comment above every setting; that text is what
//! `ppsp tracker --print-config` prints.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// The whole configuration of `ppsp tracker`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listeners, timeouts and HTTP behaviour.
    pub server: HttpSection,
    /// TLS certificate and key for the `https` listeners.
    pub tls: TlsSection,
    /// The STUN Binding service on UDP.
    pub stun: StunSection,
    /// Who may CONNECT, and how.
    pub auth: AuthSection,
    /// Limits applied while decoding request bodies.
    pub limits: LimitsSection,
    /// Tracker state machine settings.
    pub tracker: TrackerSection,
    /// Where the tracker keeps its state.
    pub store: crate::store::StoreSection,
    /// Where the dashboard, `/api/stats` and `/metrics` are served, and who may see them.
    pub admin: AdminSection,
}

/// `[admin]`: the dashboard (`/`), `/api/stats` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Cleartext HTTP listeners that serve only the admin pages (and `/healthz`). When
    /// set, the protocol listeners no longer serve the admin pages (404). Empty: the
    /// protocol listeners serve them, as before.
    pub listen: Vec<SocketAddr>,
    /// File holding a bearer token (one line). When set, the admin pages require
    /// `Authorization: Bearer TOKEN` on whichever listener serves them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// How JSON (RFC 7846) error responses are carried in the HTTP status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonErrorHttpStatus {
    /// The HTTP status mirrors the error (403 for Forbidden Action, 401, 503, ...).
    #[default]
    Mirror,
    /// Always `200 OK`; the outcome is only in the JSON body.
    // `snake_case` alone would spell this `always200`; the documented name is `always_200`.
    #[serde(rename = "always_200", alias = "always200")]
    Always200,
}

/// `[server]`: listeners and HTTP behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Cleartext HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners (need `[tls]`).
    pub tls_listen: Vec<SocketAddr>,
    /// Most connections open at once over all listeners; further ones wait in the
    /// kernel's accept queue until a slot frees up.
    pub max_connections: usize,
    /// Seconds a client has to send a complete request head. It also bounds how long a
    /// keep-alive connection may sit idle between two requests.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a complete request body once its head arrived.
    pub body_read_timeout_secs: u64,
    /// Seconds without any byte read or written after which a connection is closed, for
    /// example a client that never reads its response.
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Responses larger than this many bytes are gzip-compressed when the request's
    /// `Accept-Encoding` lists gzip.
    pub gzip_min_bytes: usize,
    /// Largest request body after gzip decompression, in bytes.
    pub max_decompressed_bytes: usize,
    /// Proxies whose `X-Forwarded-For` header is believed: addresses (`192.0.2.7`) or
    /// networks (`10.0.0.0/8`, `fd00::/8`).
    pub trusted_proxies: Vec<String>,
    /// HTTP status of JSON error responses: `mirror` or `always_200`.
    pub json_error_http_status: JsonErrorHttpStatus,
    /// Also take `Content-Type: application/json` as the JSON protocol (off: 415).
    pub lenient_json_media_type: bool,
    /// CONNECT requests authenticated at once (password hashing is slow on purpose).
    pub connect_concurrency: usize,
    /// Milliseconds a CONNECT may wait for an authentication slot before it is answered
    /// 503 TEMPORARILY OVERLOADED.
    pub connect_queue_timeout_ms: u64,
    /// Value of the `Retry-After` header (seconds) on 503 answers.
    pub retry_after_secs: u64,
    /// Milliseconds between two sweeps for idle sessions and expired memberships.
    pub sweep_interval_ms: u64,
    /// Seconds between two samples of the dashboard's one-hour activity history.
    pub history_sample_secs: u64,
    /// Threads that serve connections, each connection staying on one (0: one per core).
    pub connection_threads: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7070))],
            tls_listen: Vec::new(),
            max_connections: 4096,
            header_read_timeout_secs: 15,
            body_read_timeout_secs: 15,
            idle_timeout_secs: 60,
            shutdown_grace_secs: 10,
            gzip_min_bytes: 1024,
            max_decompressed_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            json_error_http_status: JsonErrorHttpStatus::Mirror,
            lenient_json_media_type: false,
            connect_concurrency: 4,
            connect_queue_timeout_ms: 2000,
            retry_after_secs: 5,
            sweep_interval_ms: 1000,
            history_sample_secs: 5,
            connection_threads: 0,
        }
    }
}

/// `[tls]`: certificate and key for the HTTPS listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file with the certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM file of the CA certificates that sign client certificates. When set, HTTPS
    /// clients may present one; its subject CN or a DNS/URI alternative name is then the
    /// JSON peer's authenticated PeerID. Clients without one still connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// `[stun]`: the STUN Binding service (RFC 8489) on UDP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StunSection {
    /// UDP address of the STUN service; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// `[auth]`: CONNECT authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Accept SASL ANONYMOUS and JSON requests without HTTP authentication (an open
    /// tracker), except for PeerIDs that have an account.
    pub allow_anonymous: bool,
    /// Accounts file for SASL PLAIN, written by `ppsp accounts add`. Without it PLAIN is
    /// refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts_file: Option<PathBuf>,
    /// Accept PLAIN over cleartext HTTP from non-loopback clients (test setups only: the
    /// password crosses the network readable).
    pub allow_plain_over_cleartext: bool,
    /// Count a cleartext listener bound to a loopback address as a secure channel.
    pub loopback_is_secure: bool,
    /// Failed CONNECT authentications allowed per source network (see
    /// `failed_connect_ipv4_prefix`; IPv6 /64) within `failed_connect_window_secs`; further
    /// CONNECTs from that network are answered 503 with Retry-After until the window ends.
    /// Failures are never counted per PeerID, so nobody can lock another peer out. 0 turns
    /// this off.
    pub max_failed_connects: u32,
    /// Length of the failed-CONNECT counting window, in seconds.
    pub failed_connect_window_secs: u64,
    /// Prefix length of the IPv4 network failures are counted under: 32 (one address) or
    /// shorter, e.g. 24 against guessers that rotate through a /24.
    pub failed_connect_ipv4_prefix: u8,
    /// HTTP Digest realm of JSON peers; accounts need a Digest secret for this realm
    /// (`ppsp accounts add --digest-realm`).
    pub digest_realm: String,
    /// Seconds an HTTP Digest nonce stays valid.
    pub digest_nonce_lifetime_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            accounts_file: None,
            allow_plain_over_cleartext: false,
            loopback_is_secure: true,
            max_failed_connects: 10,
            failed_connect_window_secs: 60,
            failed_connect_ipv4_prefix: 32,
            digest_realm: "ppsp".to_owned(),
            digest_nonce_lifetime_secs: 300,
        }
    }
}

/// `[limits]`: bounds on what a request body may contain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body in bytes, as sent (413 above it).
    pub max_body_bytes: usize,
    /// Deepest element or value nesting.
    pub max_depth: usize,
    /// Most entries in any one list (addresses, stats, segments, swarm actions).
    pub max_list_len: usize,
    /// Most bits in one chunk map segment.
    pub max_bitmap_bits: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let limits = ppsp_proto::Limits::default();
        Self {
            max_body_bytes: limits.max_body_bytes,
            max_depth: limits.max_depth,
            max_list_len: limits.max_list_len,
            max_bitmap_bits: limits.max_bitmap_bits,
        }
    }
}

/// `[tracker]`: the state machine's timers and caps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerSection {
    /// Seconds without a valid request after which a session is removed.
    pub session_idle_timeout_secs: u64,
    /// Largest JOIN ExpireTime honoured, in seconds (larger values are clamped).
    pub max_expire_time_secs: u64,
    /// Bytes of responses remembered, for the whole tracker, to answer retransmissions.
    pub replay_cache_bytes: usize,
    /// Seconds a remembered response is kept.
    pub replay_cache_ttl_secs: u64,
    /// Peers returned when a request has no PeerNum.
    pub peer_num_default: u32,
    /// Most peers returned in one list.
    pub peer_num_max: u32,
    /// Most swarms one peer may be a member of.
    pub max_swarms_per_peer: usize,
    /// Report the observed source address in CONNECT responses ("STUN-like" function).
    pub reflexive_address: bool,
    /// Swarms that are live even before a LIVESEED joins.
    pub live_swarms: Vec<String>,
    /// Lock shards of the swarm table (rounded up to a power of two).
    pub shards: usize,
    /// Most sessions in the whole tracker.
    pub max_sessions: usize,
    /// Most sessions registered from one IPv4 address or IPv6 /64.
    pub max_sessions_per_address: u32,
    /// Most swarms in the whole tracker.
    pub max_swarms: usize,
    /// Chunk-map bytes one membership may keep.
    pub max_chunk_map_bytes_per_member: usize,
    /// Chunk-map bytes one session may keep over all its memberships.
    pub max_chunk_map_bytes_per_session: usize,
    /// Chunk-map bytes of the whole tracker.
    pub max_chunk_map_bytes: u64,
    /// Clips (name and media type) kept per membership; the oldest goes past it.
    pub max_clips_per_member: usize,
}

impl Default for TrackerSection {
    fn default() -> Self {
        let core = ppsp_tracker_core::Config::default();
        Self {
            session_idle_timeout_secs: core.session_idle_timeout.as_secs(),
            max_expire_time_secs: core.max_expire_time.as_secs(),
            replay_cache_bytes: core.replay_cache_bytes,
            replay_cache_ttl_secs: core.replay_cache_ttl.as_secs(),
            peer_num_default: core.peer_num_default,
            peer_num_max: core.peer_num_max,
            max_swarms_per_peer: core.max_swarms_per_peer,
            reflexive_address: core.reflexive_address,
            live_swarms: core
                .live_swarms
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            shards: core.shards,
            max_sessions: core.limits.max_sessions,
            max_sessions_per_address: core.limits.max_sessions_per_address,
            max_swarms: core.limits.max_swarms,
            max_chunk_map_bytes_per_member: core.limits.max_chunk_map_bytes_per_member,
            max_chunk_map_bytes_per_session: core.limits.max_chunk_map_bytes_per_session,
            max_chunk_map_bytes: core.limits.max_chunk_map_bytes,
            max_clips_per_member: core.limits.max_clips_per_member,
        }
    }
}

/// One documented setting: section, key and what it means. Drives the comments of
/// `--print-config` and the settings table of the documentation.
struct SettingDoc {
    section: &'static str,
    key: &'static str,
    doc: &'static str,
    /// For settings that are off by default: an example line printed commented out.
    example: Option<&'static str>,
}

/// Most connection threads `server.connection_threads` may ask for.
const MAX_CONNECTION_THREADS: usize = 1024;

const fn doc(section: &'static str, key: &'static str, doc: &'static str) -> SettingDoc {
    SettingDoc {
        section,
        key,
        doc,
        example: None,
    }
}

const fn optional(
    section: &'static str,
    key: &'static str,
    doc: &'static str,
    example: &'static str,
) -> SettingDoc {
    SettingDoc {
        section,
        key,
        doc,
        example: Some(example),
    }
}

const SECTION_DOCS: &[(&str, &str)] = &[
    ("server", "Listeners, timeouts and HTTP behaviour."),
    (
        "tls",
        "Certificate and key for the `tls_listen` (https) listeners.",
    ),
    (
        "stun",
        "STUN Binding service (RFC 8489) on UDP, so peers can learn their public address.",
    ),
    ("auth", "Who may CONNECT, and how."),
    (
        "limits",
        "Bounds on request bodies; larger or deeper input is refused.",
    ),
    ("tracker", "Tracker state machine: timers and caps."),
    (
        "admin",
        "Dashboard, /api/stats and /metrics: a separate listener and/or a bearer token.",
    ),
    (
        "store",
        "Where the state lives: memory, or Redis shared by several tracker nodes.",
    ),
];

const SETTING_DOCS: &[SettingDoc] = &[
    doc(
        "server",
        "listen",
        "Cleartext HTTP listeners (IPv4 or IPv6, port 0 picks a free port).",
    ),
    doc(
        "server",
        "tls_listen",
        "HTTPS listeners; they need [tls] cert and key.",
    ),
    doc(
        "server",
        "max_connections",
        "Most connections open at once; further clients wait in the accept queue.",
    ),
    doc(
        "server",
        "header_read_timeout_secs",
        "Seconds to send a complete request head; also the idle limit of a keep-alive connection between requests.",
    ),
    doc(
        "server",
        "body_read_timeout_secs",
        "Seconds to send a complete request body once the head arrived (408 after it).",
    ),
    doc(
        "server",
        "idle_timeout_secs",
        "Seconds without any byte read or written before a connection is closed.",
    ),
    doc(
        "server",
        "shutdown_grace_secs",
        "Seconds in-flight requests get to finish after SIGINT or SIGTERM.",
    ),
    doc(
        "server",
        "gzip_min_bytes",
        "Responses above this size are gzip-compressed when the client accepts gzip.",
    ),
    doc(
        "server",
        "max_decompressed_bytes",
        "Largest request body after gzip decompression (413 above it).",
    ),
    doc(
        "server",
        "trusted_proxies",
        "Proxies (addresses or CIDR networks) whose X-Forwarded-For header is believed.",
    ),
    doc(
        "server",
        "json_error_http_status",
        "HTTP status of JSON error responses: \"mirror\" (401, 403, ...) or \"always_200\".",
    ),
    doc(
        "server",
        "lenient_json_media_type",
        "Also take Content-Type application/json as the JSON protocol (off: it gets 415).",
    ),
    doc(
        "server",
        "connect_concurrency",
        "CONNECT requests authenticated at once (password hashing is deliberately slow).",
    ),
    doc(
        "server",
        "connect_queue_timeout_ms",
        "Milliseconds a CONNECT waits for an authentication slot before a 503 answer.",
    ),
    doc(
        "server",
        "retry_after_secs",
        "Retry-After value (seconds) sent with 503 answers.",
    ),
    doc(
        "server",
        "sweep_interval_ms",
        "Milliseconds between sweeps for idle sessions and expired memberships.",
    ),
    doc(
        "server",
        "history_sample_secs",
        "Seconds between samples of the dashboard's one-hour activity history (rates, chart).",
    ),
    doc(
        "server",
        "connection_threads",
        "Threads serving connections, each connection staying on one (0: one per CPU core).",
    ),
    optional(
        "tls",
        "cert",
        "PEM certificate chain, leaf first.",
        "cert = \"/etc/ppsp/tracker.crt\"",
    ),
    optional(
        "tls",
        "key",
        "PEM private key (PKCS#8, PKCS#1 or SEC1).",
        "key = \"/etc/ppsp/tracker.key\"",
    ),
    optional(
        "tls",
        "client_ca",
        "PEM CA certificates for optional client certificates; a certificate's CN or DNS/URI SAN is the JSON peer's PeerID.",
        "client_ca = \"/etc/ppsp/clients-ca.crt\"",
    ),
    optional(
        "stun",
        "listen",
        "UDP address of the STUN service; off when absent.",
        "listen = \"0.0.0.0:3478\"",
    ),
    doc(
        "auth",
        "allow_anonymous",
        "Accept SASL ANONYMOUS and unauthenticated JSON requests (open tracker), except for PeerIDs that have accounts.",
    ),
    optional(
        "auth",
        "accounts_file",
        "Accounts for SASL PLAIN, written by `ppsp accounts add`; without it PLAIN is refused.",
        "accounts_file = \"/etc/ppsp/accounts\"",
    ),
    doc(
        "auth",
        "allow_plain_over_cleartext",
        "Accept PLAIN over cleartext HTTP from the network (test setups only).",
    ),
    doc(
        "auth",
        "loopback_is_secure",
        "Count cleartext listeners on loopback addresses as secure channels for PLAIN.",
    ),
    doc(
        "auth",
        "max_failed_connects",
        "Failed CONNECTs allowed per source network (IPv4 /failed_connect_ipv4_prefix, IPv6 /64) per window, never per PeerID; then 503 from that network until the window ends (0: off).",
    ),
    doc(
        "auth",
        "failed_connect_window_secs",
        "Length of the failed-CONNECT window, in seconds.",
    ),
    doc(
        "auth",
        "failed_connect_ipv4_prefix",
        "IPv4 prefix length failures are counted under: 32 (one address) down to e.g. 24.",
    ),
    doc(
        "auth",
        "digest_realm",
        "HTTP Digest (SHA-256) realm of JSON peers; accounts need a secret for it (`ppsp accounts add --digest-realm`).",
    ),
    doc(
        "auth",
        "digest_nonce_lifetime_secs",
        "Seconds an HTTP Digest nonce stays valid.",
    ),
    doc(
        "limits",
        "max_body_bytes",
        "Largest request body in bytes as sent (413 above it).",
    ),
    doc("limits", "max_depth", "Deepest element or value nesting."),
    doc(
        "limits",
        "max_list_len",
        "Most entries in one list (addresses, stats, segments, swarm actions).",
    ),
    doc(
        "limits",
        "max_bitmap_bits",
        "Most bits in one chunk map segment.",
    ),
    doc(
        "tracker",
        "session_idle_timeout_secs",
        "Seconds without a valid request before a session is dropped.",
    ),
    doc(
        "tracker",
        "max_expire_time_secs",
        "Largest JOIN ExpireTime honoured (seconds); larger values are clamped.",
    ),
    doc(
        "tracker",
        "replay_cache_bytes",
        "Bytes of answers remembered, for the whole tracker, to answer retransmissions (replayed only to the source address that caused them).",
    ),
    doc(
        "tracker",
        "replay_cache_ttl_secs",
        "Seconds a remembered response is kept.",
    ),
    doc(
        "tracker",
        "peer_num_default",
        "Peers returned when a request names no PeerNum.",
    ),
    doc(
        "tracker",
        "peer_num_max",
        "Most peers returned in one list.",
    ),
    doc(
        "tracker",
        "max_swarms_per_peer",
        "Most swarms one peer may be a member of.",
    ),
    doc(
        "tracker",
        "reflexive_address",
        "Tell peers the address their CONNECT came from (STUN-like function).",
    ),
    doc(
        "tracker",
        "live_swarms",
        "SwarmIDs treated as live even before a LIVESEED joins.",
    ),
    doc(
        "tracker",
        "shards",
        "Lock shards of the swarm table (rounded up to a power of two).",
    ),
    doc(
        "tracker",
        "max_sessions",
        "Most sessions in the whole tracker; a CONNECT past it gets 503 with Retry-After.",
    ),
    doc(
        "tracker",
        "max_sessions_per_address",
        "Most sessions from one IPv4 address or IPv6 /64; a CONNECT past it gets 403.",
    ),
    doc(
        "tracker",
        "max_swarms",
        "Most swarms in the whole tracker; a JOIN creating one more gets 503 with Retry-After.",
    ),
    doc(
        "tracker",
        "max_chunk_map_bytes_per_member",
        "Chunk-map bytes one membership may keep (charged for reported segments, never for gaps between them); past it a STAT_REPORT gets 403.",
    ),
    doc(
        "tracker",
        "max_chunk_map_bytes_per_session",
        "Chunk-map bytes one session may keep over all its memberships; past it a STAT_REPORT gets 403.",
    ),
    doc(
        "tracker",
        "max_chunk_map_bytes",
        "Chunk-map bytes of the whole tracker; past it a STAT_REPORT gets 503 with Retry-After.",
    ),
    doc(
        "tracker",
        "max_clips_per_member",
        "Clips (name and media type) kept per membership; the oldest is dropped past it.",
    ),
    doc(
        "admin",
        "listen",
        "Listeners serving only the admin pages; when set, the protocol listeners answer them 404 (empty: served with the protocol).",
    ),
    optional(
        "admin",
        "token_file",
        "File with a bearer token; the admin pages then need `Authorization: Bearer TOKEN`.",
        "token_file = \"/etc/ppsp/admin-token\"",
    ),
    doc(
        "store",
        "url",
        "memory (one node), redis://HOST:PORT or redis-cluster://H:P[,H:P...] (nodes sharing one state); --store overrides it.",
    ),
    doc(
        "store",
        "timeout_ms",
        "Longest wait for one call to a Redis store; past it the request gets 503 with Retry-After.",
    ),
];

impl ServerConfig {
    /// Reads and checks a TOML configuration file.
    ///
    /// # Errors
    /// [`ServerError::Config`] when the file cannot be read, is not valid TOML, has an
    /// unknown key or a value of the wrong type, or fails [`ServerConfig::validate`].
    pub fn from_file(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ServerError::Config(format!("cannot read {}: {err}", path.display())))?;
        let config = Self::from_toml(&text)
            .map_err(|err| ServerError::Config(format!("{}: {err}", path.display())))?;
        Ok(config)
    }

    /// Reads the configuration the way `ppsp tracker` does: the defaults, then the TOML
    /// file (if any), then every environment override in `env`, then [`Self::validate`].
    ///
    /// An override is a variable named `PPSP_<SECTION>__<KEY>` (upper-case `PPSP_`; section
    /// and key in any case, joined by two underscores), for example `PPSP_TRACKER__PEER_NUM_MAX=50` or
    /// `PPSP_SERVER__LISTEN='["0.0.0.0:7070"]'`. Its value is read as a TOML value; text
    /// that is not one (`PPSP_AUTH__ACCOUNTS_FILE=/etc/ppsp/accounts`) is taken as a string.
    /// Variables without the double underscore are not overrides and are ignored.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the file (with line and column) or the variable.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ServerError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|err| {
                ServerError::Config(format!("cannot read {}: {err}", path.display()))
            })?,
            None => String::new(),
        };
        let name = path.map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        // Parsed from the text first, so that errors point at a line and column.
        toml::from_str::<Self>(&text)
            .map_err(|err| ServerError::Config(format!("{name}: {err}")))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|err| ServerError::Config(format!("{name}: {err}")))?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(var, _)| env_override_key(var).is_some())
            .collect();
        overrides.sort();
        for (var, value) in &overrides {
            let Some((section, key)) = env_override_key(var) else {
                continue;
            };
            let section_table = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section_table) = section_table else {
                return Err(ServerError::Config(format!(
                    "environment {var}: {section} is not a section"
                )));
            };
            section_table.insert(key, env_value(value));
            toml::Value::Table(table.clone())
                .try_into::<Self>()
                .map_err(|err| ServerError::Config(format!("environment {var}: {err}")))?;
        }
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|err| ServerError::Config(format!("{name}: {err}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and checks TOML text.
    ///
    /// # Errors
    /// [`ServerError::Config`] as for [`ServerConfig::from_file`].
    pub fn from_toml(text: &str) -> Result<Self, ServerError> {
        let config: Self =
            toml::from_str(text).map_err(|err| ServerError::Config(err.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense together.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the first offending setting.
    pub fn validate(&self) -> Result<(), ServerError> {
        let fail = |msg: &str| Err(ServerError::Config(msg.to_owned()));
        if self.server.listen.is_empty() && self.server.tls_listen.is_empty() {
            return fail("no listener: set server.listen or server.tls_listen");
        }
        if !self.server.tls_listen.is_empty() && (self.tls.cert.is_none() || self.tls.key.is_none())
        {
            return fail("server.tls_listen needs tls.cert and tls.key");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return fail("tls.cert and tls.key go together");
        }
        if self.server.max_connections == 0 {
            return fail("server.max_connections must be at least 1");
        }
        if self.server.connect_concurrency == 0 {
            return fail("server.connect_concurrency must be at least 1");
        }
        if self.auth.failed_connect_window_secs == 0 {
            return fail("auth.failed_connect_window_secs must be at least 1");
        }
        if !(8..=32).contains(&self.auth.failed_connect_ipv4_prefix) {
            return fail("auth.failed_connect_ipv4_prefix must be between 8 and 32");
        }
        if !crate::accounts::valid_realm(&self.auth.digest_realm) {
            return fail(
                "auth.digest_realm: printable ASCII without spaces, quotes, backslashes or colons",
            );
        }
        if self.auth.digest_nonce_lifetime_secs == 0 {
            return fail("auth.digest_nonce_lifetime_secs must be at least 1");
        }
        if self.tls.client_ca.is_some() && self.tls.cert.is_none() {
            return fail("tls.client_ca needs tls.cert and tls.key");
        }
        if self.server.sweep_interval_ms == 0 {
            return fail("server.sweep_interval_ms must be at least 1");
        }
        if self.server.history_sample_secs == 0 || self.server.history_sample_secs > 3600 {
            return fail("server.history_sample_secs must be between 1 and 3600");
        }
        if self.server.connection_threads > MAX_CONNECTION_THREADS {
            return fail("server.connection_threads must be at most 1024");
        }
        if self.server.header_read_timeout_secs == 0
            || self.server.body_read_timeout_secs == 0
            || self.server.idle_timeout_secs == 0
        {
            return fail("server timeouts must be at least 1 second");
        }
        if self.limits.max_body_bytes == 0 || self.server.max_decompressed_bytes == 0 {
            return fail("body limits must be at least 1 byte");
        }
        if self.tracker.peer_num_max == 0 || self.tracker.peer_num_default == 0 {
            return fail("tracker.peer_num_default and peer_num_max must be at least 1");
        }
        for proxy in &self.server.trusted_proxies {
            IpNet::parse(proxy).ok_or_else(|| {
                ServerError::Config(format!("trusted_proxies: bad entry {proxy:?}"))
            })?;
        }
        for swarm in &self.tracker.live_swarms {
            ppsp_proto::SwarmId::new(swarm.clone())
                .map_err(|err| ServerError::Config(format!("live_swarms: {swarm:?}: {err}")))?;
        }
        Ok(())
    }

    /// The decode limits for the codecs.
    pub fn decode_limits(&self) -> ppsp_proto::Limits {
        ppsp_proto::Limits {
            max_body_bytes: self.limits.max_body_bytes,
            max_depth: self.limits.max_depth,
            max_list_len: self.limits.max_list_len,
            max_bitmap_bits: self.limits.max_bitmap_bits,
        }
    }

    /// The tracker core's settings.
    pub fn core_config(&self) -> ppsp_tracker_core::Config {
        let t = &self.tracker;
        ppsp_tracker_core::Config {
            session_idle_timeout: Duration::from_secs(t.session_idle_timeout_secs),
            max_expire_time: Duration::from_secs(t.max_expire_time_secs),
            replay_cache_bytes: t.replay_cache_bytes,
            replay_cache_ttl: Duration::from_secs(t.replay_cache_ttl_secs),
            peer_num_default: t.peer_num_default,
            peer_num_max: t.peer_num_max,
            max_swarms_per_peer: t.max_swarms_per_peer,
            reflexive_address: t.reflexive_address,
            // Checked by `validate`; an invalid entry here is skipped rather than trusted.
            live_swarms: t
                .live_swarms
                .iter()
                .filter_map(|s| ppsp_proto::SwarmId::new(s.clone()).ok())
                .collect(),
            shards: t.shards,
            limits: ppsp_tracker_core::Limits {
                max_sessions: t.max_sessions,
                max_sessions_per_address: t.max_sessions_per_address,
                max_swarms: t.max_swarms,
                max_chunk_map_bytes_per_member: t.max_chunk_map_bytes_per_member,
                max_chunk_map_bytes_per_session: t.max_chunk_map_bytes_per_session,
                max_chunk_map_bytes: t.max_chunk_map_bytes,
                max_clips_per_member: t.max_clips_per_member,
            },
        }
    }

    /// The trusted proxy networks, parsed.
    pub(crate) fn trusted_proxy_nets(&self) -> Vec<IpNet> {
        self.server
            .trusted_proxies
            .iter()
            .filter_map(|p| IpNet::parse(p))
            .collect()
    }

    /// The configuration as TOML with a comment above every section and setting. Settings
    /// that are off by default appear commented out with an example value. Parsing the text
    /// gives back `self`.
    pub fn commented_toml(&self) -> String {
        let plain = toml::to_string(self).unwrap_or_default();
        let mut out = String::from(
            "# ppsp tracker configuration. Every setting is optional; the values shown are\n\
             # the defaults. Pass the file with `ppsp tracker --config FILE`; command-line\n\
             # flags override it.\n",
        );
        let mut section = "";
        let flush_optional = |out: &mut String, section: &str| {
            for setting in SETTING_DOCS.iter().filter(|s| s.section == section) {
                if let Some(example) = setting.example
                    && !out_has_key(out, section, setting.key)
                {
                    out.push_str(&format!("# {}\n# {example}\n", setting.doc));
                }
            }
        };
        for line in plain.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                flush_optional(&mut out, section);
                section = SECTION_DOCS
                    .iter()
                    .find(|(s, _)| *s == name)
                    .map_or("", |(s, _)| s);
                out.push('\n');
                if let Some((_, text)) = SECTION_DOCS.iter().find(|(s, _)| *s == name) {
                    out.push_str(&format!("# {text}\n"));
                }
                out.push_str(line);
                out.push('\n');
                continue;
            }
            if let Some((key, _)) = trimmed.split_once('=') {
                let key = key.trim();
                if let Some(setting) = SETTING_DOCS
                    .iter()
                    .find(|s| s.section == section && s.key == key)
                {
                    out.push_str(&format!("# {}\n", setting.doc));
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        flush_optional(&mut out, section);
        out
    }
}

/// Prefix of the environment variables that override configuration settings.
pub const ENV_PREFIX: &str = "PPSP_";

/// `(section, key)`, lower-cased, of an override variable `PPSP_<SECTION>__<KEY>`.
fn env_override_key(var: &str) -> Option<(String, String)> {
    let (section, key) = var.strip_prefix(ENV_PREFIX)?.split_once("__")?;
    (!section.is_empty() && !key.is_empty())
        .then(|| (section.to_ascii_lowercase(), key.to_ascii_lowercase()))
}

/// An override's value: a TOML value when it reads as one, otherwise a string.
fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("value = {text}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// True when `key` was already written in `section` of the partly rendered text.
fn out_has_key(out: &str, section: &str, key: &str) -> bool {
    let header = format!("[{section}]");
    let Some(start) = out.find(&header) else {
        return false;
    };
    out[start + header.len()..]
        .lines()
        .take_while(|l| !l.starts_with('['))
        .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
}

/// An IP network in CIDR form, for the trusted proxy list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `192.0.2.7`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (
                addr.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            ),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// True when `ip` lies in the network. IPv4-mapped IPv6 addresses count as IPv4.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_default_parses_back_to_default() {
        let text = ServerConfig::default().commented_toml();
        let parsed = ServerConfig::from_toml(&text).expect("default config parses");
        assert_eq!(parsed, ServerConfig::default());
        // Every setting is documented in the output.
        for setting in SETTING_DOCS {
            assert!(
                text.contains(setting.doc),
                "missing doc for {}",
                setting.key
            );
        }
        assert!(text.contains("# accounts_file = "));
    }

    #[test]
    fn every_serialized_key_has_a_doc() {
        let mut config = ServerConfig::default();
        config.tls.cert = Some("c.pem".into());
        config.tls.key = Some("k.pem".into());
        config.stun.listen = Some("127.0.0.1:3478".parse().expect("addr"));
        config.auth.accounts_file = Some("accounts".into());
        let value = toml::Value::try_from(&config).expect("serializes");
        let table = value.as_table().expect("table");
        for (section, inner) in table {
            for key in inner.as_table().expect("section table").keys() {
                assert!(
                    SETTING_DOCS
                        .iter()
                        .any(|d| d.section == section && d.key == key),
                    "{section}.{key} undocumented"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(ServerConfig::from_toml("[server]\nlisten_addr = []\n").is_err());
        assert!(ServerConfig::from_toml("[nope]\n").is_err());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let config = ServerConfig::from_toml(
            "[server]\nlisten = [\"[::1]:0\"]\n[tracker]\npeer_num_max = 10\n",
        )
        .expect("parses");
        assert_eq!(config.server.listen, vec!["[::1]:0".parse().expect("addr")]);
        assert_eq!(config.tracker.peer_num_max, 10);
        assert_eq!(config.auth, AuthSection::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("ppsp-config-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tracker.toml");
        std::fs::write(
            &file,
            "[tracker]\npeer_num_max = 10\npeer_num_default = 5\n",
        )
        .expect("write");
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let config = ServerConfig::load(
            Some(&file),
            env(&[
                ("PPSP_TRACKER__PEER_NUM_MAX", "40"),
                ("PPSP_Server__Listen", "[\"127.0.0.1:0\"]"),
                ("PPSP_AUTH__ACCOUNTS_FILE", "/etc/ppsp/accounts"),
                ("PPSP_GIT_COMMIT", "not an override"),
                ("HOME", "/root"),
            ]),
        )
        .expect("loads");
        assert_eq!(config.tracker.peer_num_max, 40);
        assert_eq!(config.tracker.peer_num_default, 5);
        assert_eq!(
            config.server.listen,
            vec!["127.0.0.1:0".parse().expect("addr")]
        );
        assert_eq!(
            config.auth.accounts_file.as_deref(),
            Some(Path::new("/etc/ppsp/accounts"))
        );
        let err = ServerConfig::load(Some(&file), env(&[("PPSP_TRACKER__PEER_NUM", "3")]))
            .expect_err("unknown key");
        assert!(err.to_string().contains("PPSP_TRACKER__PEER_NUM"), "{err}");
        let err = ServerConfig::load(None, env(&[("PPSP_TRACKER__PEER_NUM_MAX", "lots")]))
            .expect_err("wrong type");
        assert!(
            err.to_string().contains("PPSP_TRACKER__PEER_NUM_MAX"),
            "{err}"
        );
        std::fs::write(&file, "[tracker]\npeer_num_max = 10\nbogus = 1\n").expect("write");
        let err = ServerConfig::load(Some(&file), Vec::new()).expect_err("unknown key");
        assert!(err.to_string().contains("line 3"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_listener_needs_cert() {
        assert!(ServerConfig::from_toml("[server]\ntls_listen = [\"127.0.0.1:0\"]\n").is_err());
    }

    #[test]
    fn ip_networks() {
        let net = IpNet::parse("10.0.0.0/8").expect("net");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.1.2.3".parse().expect("ip")));
        assert!(net.contains("::ffff:10.9.9.9".parse().expect("ip")));
        let host = IpNet::parse("::1").expect("host");
        assert!(host.contains("::1".parse().expect("ip")));
        assert!(!host.contains("::2".parse().expect("ip")));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .expect("all")
                .contains("1.2.3.4".parse().expect("ip"))
        );
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("nonsense").is_none());
    }
}
