//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong while setting up or running the server, or handling accounts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unreadable or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The accounts file is unreadable, malformed or could not be written.
    #[error("accounts file {path}: {reason}")]
    Accounts {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// The state store named by `--store` / `[store] url` cannot be used (the reason
    /// names it).
    #[error("{reason}")]
    Store {
        /// The store's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Another I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
