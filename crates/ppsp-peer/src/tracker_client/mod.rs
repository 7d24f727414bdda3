//! Client side of the tracker protocol (HTTP/XML, draft-gu-ppsp-tracker-protocol-06).
//!
//! [`TrackerClient`] sends the seven XML methods and returns typed results. It keeps the
//! session (AuthToken, the swarms joined, the declared addresses) and hides the failure
//! handling the protocol expects from a peer:
//!
//! * a request that gets no answer (connection failure or [`ClientConfig::request_timeout`])
//!   is sent again, byte for byte with the same TransactionID, after each delay of
//!   [`ClientConfig::retransmit_backoff`] (1 s, 2 s, 4 s by default);
//! * a 401 makes the client CONNECT again, JOIN every swarm it was in, and retry once;
//! * a 503 makes it wait `Retry-After` (or [`ClientConfig::overload_wait`]) and move to the
//!   next tracker; a tracker that stays silent is also left for the next one, and one whose
//!   host refuses the connection is left at once, keeping the session (trackers sharing a
//!   store know it; one that does not answers 401 and the client connects again there). Trackers are
//!   tried in tier order, lowest tier first, and a new tracker gets CONNECT and the JOINs
//!   before the request is repeated there;
//! * an AuthToken in any 200 answer replaces the current one (token rotation, §7.2).
//!
//! Requests from one client are sent one at a time: the protocol is a low-rate control
//! channel, and serialising keeps re-CONNECT and failover free of races.
//!
//! [`TrackerSession`] runs the periodic part (STAT_REPORT, KEEPALIVE) in the background and
//! ends the session with LEAVE and DISCONNECT.

mod connector;
mod http;
mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::Uri;
use ppsp_proto::{
    AuthToken, Connect, Find, Join, Leave, Limits, Method, NatHints, PeerAddress, PeerId, PeerInfo,
    PeerMode, Request, RequestBody, Response, SaslAuth, Stat, StatReport, Status, SwarmId,
    TransactionId,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use connector::load_pem_certificates;
pub use session::{PeerStatus, SessionTimers, TrackerSession};

use crate::nat;

/// Errors talking to a tracker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No tracker answered, after retransmissions and failover.
    #[error("no tracker reachable (last failure: {last_failure})")]
    Unreachable {
        /// What went wrong on the last attempt.
        last_failure: String,
    },
    /// The tracker answered the request with an error status.
    #[error("tracker answered {method} with {status}")]
    Status {
        /// The method refused.
        method: Method,
        /// The tracker's verdict.
        status: Status,
    },
    /// The tracker answered in a way the protocol does not allow.
    #[error("tracker answered {method} incorrectly: {reason}")]
    Protocol {
        /// The method concerned.
        method: Method,
        /// What was wrong.
        reason: String,
    },
    /// A tracker or STUN URL cannot be used.
    #[error("bad URL: {0}")]
    BadUrl(String),
    /// The client configuration is unusable.
    #[error("bad client configuration: {0}")]
    Config(String),
    /// A local socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The STUN server answered with an error or an unusable response.
    #[error("STUN: {0}")]
    Stun(#[from] ppsp_proto::stun::StunError),
    /// The STUN server never answered.
    #[error("STUN server {server} did not answer within {waited:?}")]
    StunTimeout {
        /// The server asked.
        server: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// The background session task is gone (it panicked or was aborted).
    #[error("tracker session task ended unexpectedly")]
    SessionGone,
}

impl ClientError {
    /// An [`ClientError::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The tracker's status, when the error is a refusal.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// SASL credentials sent in CONNECT (draft-gu-ppsp-tracker-protocol-06).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `ANONYMOUS` (RFC 4505), for open trackers; the optional trace text is sent as the
    /// initial response.
    Anonymous {
        /// Trace information, for example an e-mail address; may be absent.
        trace: Option<String>,
    },
    /// `PLAIN` (RFC 4616). The tracker requires the authentication identity (or the
    /// authorisation identity, when given) to equal the PeerID.
    Plain {
        /// Authorisation identity; usually absent.
        authzid: Option<String>,
        /// Authentication identity (account name).
        username: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    // Never print passwords, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous { trace } => f.debug_struct("Anonymous").field("trace", trace).finish(),
            Self::Plain {
                authzid, username, ..
            } => f
                .debug_struct("Plain")
                .field("authzid", authzid)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl Credentials {
    fn to_sasl(&self) -> SaslAuth {
        match self {
            Self::Anonymous { trace } => SaslAuth {
                mechanism: "ANONYMOUS".to_owned(),
                credentials: trace.as_ref().map(|trace| trace.as_bytes().to_vec()),
            },
            Self::Plain {
                authzid,
                username,
                password,
            } => {
                let mut message = Vec::with_capacity(
                    authzid.as_ref().map_or(0, String::len) + username.len() + password.len() + 2,
                );
                if let Some(authzid) = authzid {
                    message.extend_from_slice(authzid.as_bytes());
                }
                message.push(0);
                message.extend_from_slice(username.as_bytes());
                message.push(0);
                message.extend_from_slice(password.as_bytes());
                SaslAuth {
                    mechanism: "PLAIN".to_owned(),
                    credentials: Some(message),
                }
            }
        }
    }
}

/// One tracker the client may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerEndpoint {
    /// `http://host[:port][/path]` or `https://...`; requests are POSTed to the path, or
    /// to `/`.
    pub url: String,
    /// Priority tier; 1 is tried first (MPD `Tracker@tier`).
    pub tier: u32,
}

impl TrackerEndpoint {
    /// A tracker in tier 1.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tier: 1,
        }
    }

    /// The same tracker in another tier.
    #[must_use]
    pub fn with_tier(mut self, tier: u32) -> Self {
        self.tier = tier;
        self
    }
}

/// Settings of a [`TrackerClient`]. [`ClientConfig::new`] fills in the protocol defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// This peer's identity.
    pub peer_id: PeerId,
    /// SASL credentials for CONNECT.
    pub credentials: Credentials,
    /// Trackers, in any order; they are used by ascending tier, then in the given order.
    pub trackers: Vec<TrackerEndpoint>,
    /// Addresses declared in CONNECT (see [`crate::nat`]); may be replaced later with
    /// [`TrackerClient::set_addresses`].
    pub addresses: Vec<PeerAddress>,
    /// Whether this peer supports STUN-like traversal (the `STUN` hint).
    pub stun_support: Option<bool>,
    /// Longest wait for one answer (default 10 s).
    pub request_timeout: Duration,
    /// Delays before each retransmission of an unanswered request; its length is the number
    /// of retransmissions (default 1 s, 2 s, 4 s).
    pub retransmit_backoff: Vec<Duration>,
    /// Wait after a 503 without `Retry-After` (default 5 s).
    pub overload_wait: Duration,
    /// Upper bound on any `Retry-After` honoured (default 60 s), so that a tracker cannot
    /// stall the peer indefinitely.
    pub max_retry_after: Duration,
    /// Limits applied while decoding answers.
    pub limits: Limits,
    /// Certificates trusted for `https` trackers (see [`load_pem_certificates`]). When
    /// empty, the system's CA bundle is used if one is found.
    pub tls_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl ClientConfig {
    /// Defaults of draft-gu-ppsp-tracker-protocol-06 with ANONYMOUS credentials and no declared address.
    pub fn new(peer_id: PeerId, trackers: Vec<TrackerEndpoint>) -> Self {
        Self {
            peer_id,
            credentials: Credentials::Anonymous { trace: None },
            trackers,
            addresses: Vec::new(),
            stun_support: None,
            request_timeout: Duration::from_secs(10),
            retransmit_backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            overload_wait: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            limits: Limits::default(),
            tls_roots: Vec::new(),
        }
    }
}

/// What CONNECT told the peer about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    /// URL of the tracker the session is with.
    pub tracker: String,
    /// The peer's address(es) as the tracker observed them.
    pub reflexive_addresses: Vec<PeerAddress>,
    /// True when the observed IP is none of the declared ones; `None` when the tracker sent
    /// no reflexive address or nothing was declared.
    pub behind_nat: Option<bool>,
}

/// A tracker, parsed once.
#[derive(Debug)]
struct Endpoint {
    url: String,
    uri: Uri,
    /// Host and port, for route lookups when gathering addresses.
    authority: String,
}

fn parse_endpoint(url: &str) -> Result<Endpoint, ClientError> {
    let uri: Uri = url
        .parse()
        .map_err(|error| ClientError::BadUrl(format!("{url:?}: {error}")))?;
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => ("http", 80),
        Some("https") => ("https", 443),
        _ => {
            return Err(ClientError::BadUrl(format!(
                "{url:?}: not an http:// or https:// URL"
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::BadUrl(format!("{url:?}: no host")))?;
    let host_port = if authority.port().is_some() {
        authority.as_str().to_owned()
    } else {
        format!("{}:{default_port}", authority.host())
    };
    // POST to the URL's path, or "/" when it has none (draft-gu-ppsp-tracker-protocol-06).
    let path = match uri.path_and_query() {
        Some(path) if !path.as_str().is_empty() => path.as_str().to_owned(),
        _ => "/".to_owned(),
    };
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|error| ClientError::BadUrl(format!("{url:?}: {error}")))?;
    Ok(Endpoint {
        url: url.to_owned(),
        uri,
        authority: host_port,
    })
}

/// Session state; changed only while a request holds the lock.
struct State {
    /// Index into `Inner::endpoints` of the tracker in use.
    current: usize,
    token: Option<AuthToken>,
    /// Swarms joined, with the JOIN to replay after a re-CONNECT.
    joined: BTreeMap<SwarmId, Join>,
    addresses: Vec<PeerAddress>,
    connect_info: Option<ConnectInfo>,
    hints: NatHints,
    rng: StdRng,
}

impl State {
    /// A fresh TransactionID in 0..2^31 (draft-gu-ppsp-tracker-protocol-06).
    fn fresh_transaction_id(&mut self) -> TransactionId {
        TransactionId::numeric(u64::from(self.rng.random::<u32>() >> 1))
    }
}

/// Facts readable without waiting for a request in flight.
#[derive(Debug)]
struct Shared {
    last_request: Instant,
    joined: Vec<SwarmId>,
    connected: bool,
    hints: NatHints,
}

struct Inner {
    peer_id: PeerId,
    credentials: Credentials,
    endpoints: Vec<Endpoint>,
    request_timeout: Duration,
    retransmit_backoff: Vec<Duration>,
    overload_wait: Duration,
    max_retry_after: Duration,
    limits: Limits,
    transport: http::Transport,
    state: Mutex<State>,
    shared: StdMutex<Shared>,
}

/// An answer to one request, decoded.
struct Answer {
    response: Response,
    retry_after: Option<Duration>,
}

/// Why one round on one tracker did not succeed.
enum Setback {
    /// Try the next tracker (after any wait already done); the error is what to report
    /// if there is none left.
    MoveOn(ClientError),
    /// Give up with this error.
    Fail(ClientError),
}

/// How a method reacts to failures.
#[derive(Clone, Copy)]
struct Policy {
    /// CONNECT (and re-JOIN) first when there is no session; move to the next tracker when
    /// this one fails. False for LEAVE and DISCONNECT, which only make sense on the session
    /// that exists.
    establish: bool,
    /// Re-CONNECT, re-JOIN and retry once on 401.
    reauthenticate: bool,
}

const ESTABLISH: Policy = Policy {
    establish: true,
    reauthenticate: true,
};
const EXISTING_SESSION_ONLY: Policy = Policy {
    establish: false,
    reauthenticate: false,
};

/// A tracker client; cheap to clone (clones share the session).
#[derive(Clone)]
pub struct TrackerClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TrackerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerClient")
            .field("peer_id", &self.inner.peer_id)
            .field("trackers", &self.inner.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl TrackerClient {
    /// Checks the configuration and builds a client. Nothing is sent until the first call.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] for a tracker URL that is not `http(s)://host[:port][/path]`,
    /// [`ClientError::Config`] when no tracker is given or TLS cannot be set up.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.trackers.is_empty() {
            return Err(ClientError::Config("no tracker configured".to_owned()));
        }
        let mut trackers = config.trackers.clone();
        // Stable: trackers of one tier keep the order they were given in.
        trackers.sort_by_key(|tracker| tracker.tier);
        let endpoints = trackers
            .iter()
            .map(|tracker| parse_endpoint(&tracker.url))
            .collect::<Result<Vec<_>, _>>()?;
        let hints = NatHints {
            nat: None,
            stun: config.stun_support,
        };
        let state = State {
            current: 0,
            token: None,
            joined: BTreeMap::new(),
            addresses: config.addresses.clone(),
            connect_info: None,
            hints,
            rng: StdRng::from_os_rng(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                peer_id: config.peer_id,
                credentials: config.credentials,
                endpoints,
                request_timeout: config.request_timeout,
                retransmit_backoff: config.retransmit_backoff,
                overload_wait: config.overload_wait,
                max_retry_after: config.max_retry_after,
                transport: http::Transport::new(
                    config.limits.max_body_bytes,
                    connector::tls_connector(&config.tls_roots)?,
                ),
                limits: config.limits,
                state: Mutex::new(state),
                shared: StdMutex::new(Shared {
                    last_request: Instant::now(),
                    joined: Vec::new(),
                    connected: false,
                    hints,
                }),
            }),
        })
    }

    /// This peer's identity.
    pub fn peer_id(&self) -> &PeerId {
        &self.inner.peer_id
    }

    /// When the last request was sent (for KEEPALIVE scheduling).
    pub fn last_request(&self) -> Instant {
        self.shared(|shared| shared.last_request)
    }

    /// The swarms currently joined.
    pub fn joined_swarms(&self) -> Vec<SwarmId> {
        self.shared(|shared| shared.joined.clone())
    }

    /// True while the client holds an AuthToken.
    pub fn is_connected(&self) -> bool {
        self.shared(|shared| shared.connected)
    }

    /// The NAT and STUN hints sent in JOIN, FIND and STAT_REPORT: `nat` comes from the
    /// last CONNECT's reflexive address, `stun` from the configuration or
    /// [`TrackerClient::set_stun_support`].
    pub fn nat_hints(&self) -> NatHints {
        self.shared(|shared| shared.hints)
    }

    /// What the last successful CONNECT reported, if any.
    pub async fn connect_info(&self) -> Option<ConnectInfo> {
        self.inner.state.lock().await.connect_info.clone()
    }

    /// The addresses declared in CONNECT.
    pub async fn addresses(&self) -> Vec<PeerAddress> {
        self.inner.state.lock().await.addresses.clone()
    }

    /// Replaces the addresses declared in the next CONNECT.
    pub async fn set_addresses(&self, addresses: Vec<PeerAddress>) {
        self.inner.state.lock().await.addresses = addresses;
    }

    /// Sets the `STUN` hint sent from now on.
    pub async fn set_stun_support(&self, supported: bool) {
        let mut state = self.inner.state.lock().await;
        state.hints.stun = Some(supported);
        let hints = state.hints;
        self.shared(|shared| shared.hints = hints);
    }

    /// Host and port of every configured tracker, best tier first (for route lookups).
    pub fn tracker_authorities(&self) -> Vec<String> {
        self.inner
            .endpoints
            .iter()
            .map(|endpoint| endpoint.authority.clone())
            .collect()
    }

    /// Works out the addresses to declare for a peer listening on `listen`, and sets them
    /// (see [`crate::nat`]): HOST candidates from the listen address or the routes towards
    /// the trackers, plus, when `stun_server` is given and answers, the REFLEXIVE mapping
    /// it reports. A successful STUN query also sets the `STUN` hint.
    ///
    /// STUN failures are logged and leave only the HOST candidates; they are not errors.
    pub async fn gather_addresses(
        &self,
        listen: SocketAddr,
        stun_server: Option<&str>,
        timing: &nat::StunTiming,
    ) -> Vec<PeerAddress> {
        let mut targets = Vec::new();
        for authority in self.tracker_authorities() {
            if let Ok(resolved) = tokio::net::lookup_host(authority.as_str()).await {
                targets.extend(resolved);
            }
        }
        let mut addresses = nat::host_candidates(listen, &targets).await;
        if let Some(server) = stun_server {
            match nat::reflexive_address(server, listen, timing).await {
                Ok(mapped) => {
                    if !addresses
                        .iter()
                        .any(|a| a.ip == mapped.ip() && a.port == mapped.port())
                    {
                        addresses.push(nat::candidate(
                            mapped,
                            ppsp_proto::AddressType::Reflexive,
                            u16::MAX,
                        ));
                    }
                    self.set_stun_support(true).await;
                }
                Err(error) => tracing::warn!(%server, %error, "STUN query failed"),
            }
        }
        self.set_addresses(addresses.clone()).await;
        addresses
    }

    /// CONNECT: starts a fresh session with the best reachable tracker (lowest tier first),
    /// then re-JOINs any swarm joined before.
    ///
    /// # Errors
    /// [`ClientError::Status`] when the tracker refuses (for example 401 for bad
    /// credentials), [`ClientError::Unreachable`] when no tracker answers.
    pub async fn connect(&self) -> Result<ConnectInfo, ClientError> {
        let mut state = self.inner.state.lock().await;
        state.token = None;
        state.current = 0;
        self.run(&mut state, None, ESTABLISH).await?;
        state
            .connect_info
            .clone()
            .ok_or_else(|| ClientError::Protocol {
                method: Method::Connect,
                reason: "session established without CONNECT information".to_owned(),
            })
    }

    /// DISCONNECT: ends the session and forgets every swarm. Does nothing when not
    /// connected. A 401 answer (the tracker had already dropped the session) counts as
    /// success.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when the tracker does not answer; the local session is
    /// dropped anyway.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        let mut state = self.inner.state.lock().await;
        let result = self
            .run(
                &mut state,
                Some(RequestBody::Disconnect),
                EXISTING_SESSION_ONLY,
            )
            .await;
        state.token = None;
        state.joined.clear();
        self.publish(&state);
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(Status::AuthenticationRequired) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// JOIN: enters a swarm (or updates the mode of one already joined) and returns the
    /// candidate peers the tracker chose (none for SEED and LIVESEED). Empty hints in
    /// `join` are filled with [`TrackerClient::nat_hints`]. CONNECTs first if needed.
    ///
    /// # Errors
    /// [`ClientError::Status`] (for example 403 when policy refuses the swarm) or
    /// [`ClientError::Unreachable`].
    pub async fn join(&self, mut join: Join) -> Result<Vec<PeerInfo>, ClientError> {
        let mut state = self.inner.state.lock().await;
        if join.hints.is_empty() {
            join.hints = state.hints;
        }
        let response = self
            .run(&mut state, Some(RequestBody::Join(join.clone())), ESTABLISH)
            .await?;
        state.joined.insert(join.swarm_id.clone(), join.clone());
        self.publish(&state);
        Ok(peers_of(response, &join.swarm_id))
    }

    /// JOIN with only a swarm and a mode: no start point, no expiry, the tracker's default
    /// number of peers.
    ///
    /// # Errors
    /// As [`TrackerClient::join`].
    pub async fn join_swarm(
        &self,
        swarm_id: SwarmId,
        mode: PeerMode,
    ) -> Result<Vec<PeerInfo>, ClientError> {
        self.join(Join {
            swarm_id,
            mode,
            hints: NatHints::default(),
            peer_num: None,
            clip: None,
            expire_time: 0,
        })
        .await
    }

    /// LEAVE: quits one swarm. The swarm is forgotten locally whatever happens; when there
    /// is no session, or the tracker no longer knows it (401) or the swarm (404), nothing
    /// more is needed and the call succeeds.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] or another [`ClientError::Status`].
    pub async fn leave(&self, swarm_id: &SwarmId) -> Result<(), ClientError> {
        let mut state = self.inner.state.lock().await;
        state.joined.remove(swarm_id);
        self.publish(&state);
        let body = RequestBody::Leave(Leave {
            swarm_id: swarm_id.clone(),
        });
        match self
            .run(&mut state, Some(body), EXISTING_SESSION_ONLY)
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.status(),
                    Some(Status::AuthenticationRequired | Status::ObjectNotFound)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// FIND: asks for (more) candidates in a joined swarm, optionally for a chunk scope
    /// (`find.clip`). Empty hints are filled with [`TrackerClient::nat_hints`].
    ///
    /// # Errors
    /// [`ClientError::Status`] with 404 when the swarm is unknown or, for a chunk scope,
    /// nobody holds those chunks; 403 when the swarm was not joined.
    pub async fn find(&self, mut find: Find) -> Result<Vec<PeerInfo>, ClientError> {
        let mut state = self.inner.state.lock().await;
        if find.hints.is_empty() {
            find.hints = state.hints;
        }
        let swarm_id = find.swarm_id.clone();
        let response = self
            .run(&mut state, Some(RequestBody::Find(find)), ESTABLISH)
            .await?;
        Ok(peers_of(response, &swarm_id))
    }

    /// FIND for a whole swarm with the tracker's default number of peers.
    ///
    /// # Errors
    /// As [`TrackerClient::find`].
    pub async fn find_peers(&self, swarm_id: SwarmId) -> Result<Vec<PeerInfo>, ClientError> {
        self.find(Find {
            swarm_id,
            peer_num: None,
            hints: NatHints::default(),
            clip: None,
        })
        .await
    }

    /// STAT_REPORT with the given statistics. When `report` carries no NAT or STUN
    /// statistic, the client's current hints are appended.
    ///
    /// # Errors
    /// [`ClientError::Status`] or [`ClientError::Unreachable`].
    pub async fn stat_report(&self, mut report: StatReport) -> Result<(), ClientError> {
        let mut state = self.inner.state.lock().await;
        let has_nat = report.stats.iter().any(|stat| matches!(stat, Stat::Nat(_)));
        let has_stun = report
            .stats
            .iter()
            .any(|stat| matches!(stat, Stat::Stun(_)));
        if let (false, Some(nat)) = (has_nat, state.hints.nat) {
            report.stats.push(Stat::Nat(nat));
        }
        if let (false, Some(stun)) = (has_stun, state.hints.stun) {
            report.stats.push(Stat::Stun(stun));
        }
        if report.stats.is_empty() {
            return Err(ClientError::Config(
                "a STAT_REPORT needs at least one statistic".to_owned(),
            ));
        }
        self.run(&mut state, Some(RequestBody::StatReport(report)), ESTABLISH)
            .await
            .map(|_| ())
    }

    /// KEEPALIVE: tells the tracker the peer is still there.
    ///
    /// # Errors
    /// [`ClientError::Status`] or [`ClientError::Unreachable`].
    pub async fn keepalive(&self) -> Result<(), ClientError> {
        let mut state = self.inner.state.lock().await;
        self.run(&mut state, Some(RequestBody::KeepAlive), ESTABLISH)
            .await
            .map(|_| ())
    }

    fn shared<T>(&self, read: impl FnOnce(&mut Shared) -> T) -> T {
        // A poisoned lock only means a panic elsewhere while holding it; the plain data
        // inside is still consistent enough to read.
        let mut guard = self
            .inner
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read(&mut guard)
    }

    /// Copies what [`Shared`] mirrors out of the session state.
    fn publish(&self, state: &State) {
        self.shared(|shared| {
            shared.joined = state.joined.keys().cloned().collect();
            shared.connected = state.token.is_some();
            shared.hints = state.hints;
        });
    }

    /// Sends `body` (or, with `None`, only makes sure a session exists) with the failure
    /// handling of `policy`. Returns the 200 answer.
    async fn run(
        &self,
        state: &mut State,
        body: Option<RequestBody>,
        policy: Policy,
    ) -> Result<Option<Response>, ClientError> {
        let method = body.as_ref().map_or(Method::Connect, RequestBody::method);
        let tracker_count = self.inner.endpoints.len();
        // A tracker that stays silent through every retransmission is not tried again in
        // the same call; one that says it is overloaded gets one more chance after its
        // Retry-After, so even a single tracker is asked twice.
        let silent_budget = tracker_count.saturating_sub(1);
        let mut moves = 0usize;
        let mut reauthenticated = false;
        let outcome = loop {
            if state.token.is_none() {
                if !policy.establish {
                    // No session: nothing to leave or disconnect from.
                    break Ok(None);
                }
                match self.establish(state).await {
                    Ok(()) => {}
                    Err(Setback::Fail(error)) => break Err(error),
                    Err(Setback::MoveOn(error)) => {
                        let budget = match error {
                            ClientError::Unreachable { .. } => silent_budget,
                            _ => tracker_count,
                        };
                        if !self.move_on(state, &mut moves, budget) {
                            break Err(error);
                        }
                        continue;
                    }
                }
            }
            let Some(body) = body.as_ref() else {
                break Ok(None);
            };
            let request = Request {
                peer_id: self.inner.peer_id.clone(),
                auth_token: state.token.clone(),
                transaction_id: state.fresh_transaction_id(),
                body: body.clone(),
            };
            match self.exchange(state, &request).await {
                Ok(answer) => match answer.response.status {
                    Status::Ok => break Ok(Some(answer.response)),
                    Status::AuthenticationRequired if policy.reauthenticate && !reauthenticated => {
                        tracing::info!(%method, "session unknown to the tracker; connecting again");
                        reauthenticated = true;
                        state.token = None;
                    }
                    Status::TemporarilyOverloaded if policy.establish => {
                        self.wait_overload(answer.retry_after).await;
                        if !self.move_on(state, &mut moves, tracker_count) {
                            break Err(ClientError::Status {
                                method,
                                status: Status::TemporarilyOverloaded,
                            });
                        }
                    }
                    status => break Err(ClientError::Status { method, status }),
                },
                Err(failure) => {
                    // A refused connection means the tracker process is gone, not the
                    // network: go to the next one at once and keep the session, which a
                    // tracker sharing the store knows (one that does not answers 401, and
                    // the client connects again there).
                    let token = failure.refused.then(|| state.token.clone()).flatten();
                    if !policy.establish || !self.move_on(state, &mut moves, silent_budget) {
                        break Err(ClientError::Unreachable {
                            last_failure: failure.reason,
                        });
                    }
                    if token.is_some() {
                        state.token = token;
                        let url = self
                            .inner
                            .endpoints
                            .get(state.current)
                            .map(|e| e.url.clone());
                        if let (Some(info), Some(url)) = (state.connect_info.as_mut(), url) {
                            info.tracker = url;
                        }
                    }
                }
            }
        };
        self.publish(state);
        outcome
    }

    /// Switches to the next tracker (wrapping around) unless this call already moved
    /// `budget` times.
    fn move_on(&self, state: &mut State, moves: &mut usize, budget: usize) -> bool {
        let tracker_count = self.inner.endpoints.len();
        if *moves >= budget || tracker_count == 0 {
            return false;
        }
        *moves += 1;
        state.current = (state.current + 1) % tracker_count;
        state.token = None;
        if let Some(endpoint) = self.inner.endpoints.get(state.current) {
            tracing::info!(tracker = %endpoint.url, "trying the next tracker");
        }
        true
    }

    async fn wait_overload(&self, retry_after: Option<Duration>) {
        let wait = retry_after
            .unwrap_or(self.inner.overload_wait)
            .min(self.inner.max_retry_after);
        tracing::info!(?wait, "tracker overloaded; waiting");
        tokio::time::sleep(wait).await;
    }

    /// CONNECT to the current tracker, then JOIN again every swarm of the registry.
    async fn establish(&self, state: &mut State) -> Result<(), Setback> {
        let connect = Request {
            peer_id: self.inner.peer_id.clone(),
            auth_token: None,
            transaction_id: state.fresh_transaction_id(),
            body: RequestBody::Connect(Connect {
                auth: Some(self.inner.credentials.to_sasl()),
                addresses: state.addresses.clone(),
                peer_num: None,
                swarm_actions: Vec::new(),
            }),
        };
        let answer = self.exchange(state, &connect).await.map_err(|failure| {
            Setback::MoveOn(ClientError::Unreachable {
                last_failure: failure.reason,
            })
        })?;
        match answer.response.status {
            Status::Ok => {}
            Status::TemporarilyOverloaded => {
                self.wait_overload(answer.retry_after).await;
                return Err(Setback::MoveOn(ClientError::Status {
                    method: Method::Connect,
                    status: Status::TemporarilyOverloaded,
                }));
            }
            status => {
                return Err(Setback::Fail(ClientError::Status {
                    method: Method::Connect,
                    status,
                }));
            }
        }
        let Some(token) = answer.response.auth_token.clone() else {
            return Err(Setback::Fail(ClientError::Protocol {
                method: Method::Connect,
                reason: "200 answer without AuthToken".to_owned(),
            }));
        };
        state.token = Some(token);
        let reflexive = answer.response.reflexive_addresses;
        let declares_host = state
            .addresses
            .iter()
            .any(|address| matches!(address.kind, None | Some(ppsp_proto::AddressType::Host)));
        let behind_nat = match reflexive.first() {
            Some(observed) if declares_host => Some(nat::behind_nat(observed.ip, &state.addresses)),
            _ => None,
        };
        if behind_nat.is_some() {
            state.hints.nat = behind_nat;
        }
        let tracker = self
            .inner
            .endpoints
            .get(state.current)
            .map(|endpoint| endpoint.url.clone())
            .unwrap_or_default();
        tracing::info!(%tracker, ?behind_nat, "connected");
        state.connect_info = Some(ConnectInfo {
            tracker,
            reflexive_addresses: reflexive,
            behind_nat,
        });

        let swarms: Vec<Join> = state.joined.values().cloned().collect();
        for mut join in swarms {
            join.hints = NatHints {
                nat: join.hints.nat.or(state.hints.nat),
                stun: join.hints.stun.or(state.hints.stun),
            };
            let request = Request {
                peer_id: self.inner.peer_id.clone(),
                auth_token: state.token.clone(),
                transaction_id: state.fresh_transaction_id(),
                body: RequestBody::Join(join.clone()),
            };
            let answer = match self.exchange(state, &request).await {
                Ok(answer) => answer,
                Err(failure) => {
                    state.token = None;
                    return Err(Setback::MoveOn(ClientError::Unreachable {
                        last_failure: failure.reason,
                    }));
                }
            };
            match answer.response.status {
                Status::Ok => {}
                Status::TemporarilyOverloaded => {
                    state.token = None;
                    self.wait_overload(answer.retry_after).await;
                    return Err(Setback::MoveOn(ClientError::Status {
                        method: Method::Join,
                        status: Status::TemporarilyOverloaded,
                    }));
                }
                Status::AuthenticationRequired => {
                    state.token = None;
                    return Err(Setback::Fail(ClientError::Status {
                        method: Method::Join,
                        status: Status::AuthenticationRequired,
                    }));
                }
                status => {
                    // The tracker no longer admits this swarm: stop claiming membership.
                    tracing::warn!(swarm = %join.swarm_id, %status, "re-JOIN refused");
                    state.joined.remove(&join.swarm_id);
                }
            }
        }
        Ok(())
    }

    /// One request to the current tracker, retransmitted unchanged (same TransactionID)
    /// after each backoff delay while no answer arrives. `Err` after the last try.
    async fn exchange(
        &self,
        state: &mut State,
        request: &Request,
    ) -> Result<Answer, http::PostFailure> {
        let endpoint =
            self.inner
                .endpoints
                .get(state.current)
                .ok_or_else(|| http::PostFailure {
                    reason: "no tracker configured".to_owned(),
                    refused: false,
                })?;
        let body = Bytes::from(ppsp_proto::xml::encode_request(request));
        let method = request.body.method();
        let mut delays = self.inner.retransmit_backoff.iter();
        loop {
            self.shared(|shared| shared.last_request = Instant::now());
            let failure = match self
                .inner
                .transport
                .post(&endpoint.uri, body.clone(), self.inner.request_timeout)
                .await
            {
                Ok(http) => match self.decode(&http, request) {
                    Ok(response) => {
                        if response.status == Status::Ok && response.auth_token.is_some() {
                            // Token rotation: any 200 with a token replaces the old one.
                            state.token.clone_from(&response.auth_token);
                        }
                        return Ok(Answer {
                            response,
                            retry_after: http.retry_after,
                        });
                    }
                    Err(reason) => (reason, false),
                },
                Err(failure) => (failure.reason, failure.refused),
            };
            let (failure, refused) = failure;
            // With another tracker to go to, a refused connection is not worth waiting on.
            let move_at_once = refused && self.inner.endpoints.len() > 1;
            let next = if move_at_once { None } else { delays.next() };
            let Some(delay) = next else {
                tracing::warn!(tracker = %endpoint.url, %method, %failure, "giving up on tracker");
                return Err(http::PostFailure {
                    reason: format!("{}: {failure}", endpoint.url),
                    refused: move_at_once,
                });
            };
            tracing::debug!(tracker = %endpoint.url, %method, %failure, ?delay, "retransmitting");
            tokio::time::sleep(*delay).await;
        }
    }

    /// The PPSP answer in an HTTP answer: the decoded body, or, when the body is missing or
    /// unreadable, a status derived from the HTTP code (draft-gu-ppsp-tracker-protocol-06).
    fn decode(&self, http: &http::HttpAnswer, request: &Request) -> Result<Response, String> {
        let decoded = if http.body.is_empty() {
            None
        } else {
            match ppsp_proto::xml::decode_response(&http.body, &self.inner.limits) {
                Ok(response) => Some(response),
                Err(error) => {
                    tracing::debug!(code = http.code, %error, "unreadable answer body");
                    None
                }
            }
        };
        let Some(response) = decoded else {
            return Ok(Response::status(Status::from_http_code(http.code), None));
        };
        match &response.transaction_id {
            Some(id) if *id != request.transaction_id => Err(format!(
                "answer for transaction {id}, expected {}",
                request.transaction_id
            )),
            _ => Ok(response),
        }
    }
}

/// The candidates for `swarm_id` in a JOIN or FIND answer.
fn peers_of(response: Option<Response>, swarm_id: &SwarmId) -> Vec<PeerInfo> {
    let Some(response) = response else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for result in response.swarm_results {
        if result.swarm_id == *swarm_id {
            peers.extend(result.peers);
        }
    }
    peers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_parsed() {
        let endpoint = parse_endpoint("http://tracker.example:8080").expect("valid");
        assert_eq!(endpoint.uri.to_string(), "http://tracker.example:8080/");
        assert_eq!(endpoint.authority, "tracker.example:8080");
        let endpoint = parse_endpoint("http://t.example/ppsp?x=1").expect("valid");
        assert_eq!(endpoint.uri.path(), "/ppsp");
        assert_eq!(endpoint.authority, "t.example:80");
        assert!(parse_endpoint("ftp://t.example/").is_err());
        let secure = parse_endpoint("https://t.example/").expect("valid");
        assert_eq!(secure.authority, "t.example:443");
        assert_eq!(secure.uri.scheme_str(), Some("https"));
        assert!(parse_endpoint("not a url").is_err());
    }

    #[test]
    fn sasl_messages() {
        let plain = Credentials::Plain {
            authzid: None,
            username: "peer1".into(),
            password: "pw".into(),
        };
        assert_eq!(
            plain.to_sasl().credentials.as_deref(),
            Some(&b"\0peer1\0pw"[..])
        );
        assert_eq!(plain.to_sasl().mechanism, "PLAIN");
        assert!(!format!("{plain:?}").contains("pw\""));
        let anonymous = Credentials::Anonymous { trace: None };
        assert_eq!(anonymous.to_sasl().mechanism, "ANONYMOUS");
        assert_eq!(anonymous.to_sasl().credentials, None);
    }

    #[test]
    fn tiers_are_sorted_and_config_checked() {
        let peer = PeerId::new("p").expect("valid");
        let config = ClientConfig::new(
            peer.clone(),
            vec![
                TrackerEndpoint::new("http://b.example").with_tier(2),
                TrackerEndpoint::new("http://a.example").with_tier(1),
            ],
        );
        let client = TrackerClient::new(config).expect("valid");
        assert_eq!(
            client.tracker_authorities(),
            ["a.example:80", "b.example:80"]
        );
        assert!(TrackerClient::new(ClientConfig::new(peer, Vec::new())).is_err());
    }
}
