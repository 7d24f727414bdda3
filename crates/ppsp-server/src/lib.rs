//! The PPSP tracker's HTTP(S) front end.
//!
//! [`Server`] puts a [`ppsp_tracker_core::Tracker`] behind HTTP/1.1 and HTTPS listeners:
//!
//! * `POST` on any path is a protocol request. The Content-Type picks the codec:
//!   `application/ppsp-tracker+json` is RFC 7846 JSON; `application/xml`, `text/xml`, any
//!   `*/*+xml` or no Content-Type is the XML draft; anything else is answered 415.
//! * `GET /healthz`, `/metrics` (Prometheus), `/api/stats` (JSON) and `/` (dashboard).
//! * Request bodies are limited (413), may be gzip-compressed (decompressed size limited
//!   too) or chunked; answers are gzip-compressed for clients that accept it.
//! * CONNECT authentication ([`AccountsAuthenticator`]: SASL ANONYMOUS and PLAIN against an
//!   argon2id [`Accounts`] file) runs on the blocking pool, a bounded number at a time.
//! * Slow or idle clients are cut off (head, body and idle timeouts) and the number of open
//!   connections is capped.
//! * An optional STUN Binding service answers on UDP.
//!
//! [`Listeners::bind`] binds the sockets first, so callers learn the real ports before
//! [`Server::serve`] runs until its shutdown future completes:
//!
//! ```no_run
//! # async fn run() -> Result<(), ppsp_server::ServerError> {
//! use ppsp_server::{Listeners, ServerConfig};
//!
//! let mut config = ServerConfig::default();
//! config.server.listen = vec!["127.0.0.1:0".parse().expect("address")];
//! let listeners = Listeners::bind(&config).await?;
//! for line in listeners.readiness_lines()? {
//!     println!("{line}"); // listening on http://127.0.0.1:PORT
//! }
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(ppsp_server::serve(config, listeners, async move {
//!     let _ = stopped.await;
//! }));
//! // ... talk to the tracker ...
//! let _ = stop.send(());
//! server.await.expect("server task")?;
//! # Ok(())
//! # }
//! ```

mod accounting;
mod accounts;
mod admin;
mod auth;
pub mod config;
mod digest;
mod error;
mod history;
mod http;
mod limiter;
mod metrics;
mod pages;
mod server;
mod state;
pub mod store;
pub mod tls;

pub use ppsp_tracker_core;

pub use accounts::Accounts;
pub use auth::AccountsAuthenticator;
pub use config::ServerConfig;
pub use error::ServerError;
pub use server::{Listeners, Server, serve};
