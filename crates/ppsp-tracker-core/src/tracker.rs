//! The tracker: request dispatch, sessions, swarms and expiry.

use std::sync::Arc;
use std::time::Instant;

use ppsp_proto::{PeerId, Request, Response, Status};

use crate::snapshot::Snapshot;
use crate::{Authenticator, Config, RequestContext};

/// Where a session stands (draft digest §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Registered, in no swarm.
    Connected,
    /// In one or more swarms.
    Joined,
}

/// What one [`Tracker::sweep`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions removed by the inactivity timer.
    pub sessions_expired: usize,
    /// Memberships removed because their ExpireTime passed.
    pub memberships_expired: usize,
}

/// The tracker. `Send + Sync`; every method takes `&self`.
pub struct Tracker {
    config: Config,
    authenticator: Arc<dyn Authenticator>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker whose randomness (tokens, peer selection) is seeded from the OS.
    pub fn new(config: Config, authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            config,
            authenticator,
        }
    }

    /// A tracker with deterministic randomness, for tests. Never use it in production:
    /// AuthTokens become predictable.
    pub fn with_seed(config: Config, authenticator: Arc<dyn Authenticator>, _seed: u64) -> Self {
        Self::new(config, authenticator)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one decoded request and returns the response to encode in the request's
    /// dialect. Never panics. CONNECT calls the authenticator (possibly slow), so run it on
    /// a blocking thread.
    pub fn handle(&self, _now: Instant, _ctx: &RequestContext, request: &Request) -> Response {
        let _ = &self.authenticator;
        Response::status(Status::InternalError, Some(request.transaction_id.clone()))
    }

    /// Removes idle sessions and memberships whose ExpireTime passed. The cost is
    /// proportional to what is due, not to the number of sessions.
    pub fn sweep(&self, _now: Instant) -> SweepReport {
        SweepReport::default()
    }

    /// A snapshot for statistics pages.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::default()
    }

    /// The state of `peer_id`'s session, or `None` when it has none.
    pub fn session_state(&self, _peer_id: &PeerId) -> Option<SessionState> {
        None
    }
}
