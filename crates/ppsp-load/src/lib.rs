//! Load generation against a running PPSP tracker, over HTTP on loopback or elsewhere.
//!
//! Two modes, each with clap options of its own (the `ppsp bench` command line):
//!
//! * [`run_load`]: simulated peers living through CONNECT, JOIN, FIND, STAT_REPORT,
//!   KEEPALIVE, LEAVE and DISCONNECT (or the RFC 7846 equivalents), in a closed loop or
//!   paced at a fixed rate, with latency percentiles per method.
//! * [`run_fill`]: registers a large population (one PeerID, one IPv4 address and one
//!   swarm per peer) and leaves it registered, to measure the tracker's memory per peer.
//!
//! Both build their own tokio runtime and return the report as text.

mod fill;
mod load;
mod wire;

use std::str::FromStr;

use hyper::Uri;

pub use fill::{FillArgs, FillFormat, run_fill};
pub use load::{LoadArgs, run_load, simulated_stat_report};

/// Why a load run or a fill could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--tracker` does not parse as a URL.
    #[error("--tracker {url:?} is not a URL")]
    InvalidUrl {
        /// The value given.
        url: String,
        /// What the URL parser objected to.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// `--tracker` has another scheme than `http`, or none.
    #[error("--tracker {url:?}: only http:// URLs are supported, like http://127.0.0.1:7070/")]
    UnsupportedScheme {
        /// The value given.
        url: String,
    },
    /// `--tracker` names no host.
    #[error("--tracker {url:?} has no host")]
    NoHost {
        /// The value given.
        url: String,
    },
    /// A numeric option is outside its range.
    #[error("{option} is {value}; it must be above {min} and at most {max}")]
    OutOfRange {
        /// The option, as on the command line.
        option: &'static str,
        /// The value given.
        value: f64,
        /// Exclusive lower bound.
        min: f64,
        /// Inclusive upper bound.
        max: f64,
    },
    /// `--requests 0`.
    #[error("--requests must be at least 1")]
    NoRequests,
    /// A generated PeerID or SwarmID was refused by the protocol model.
    #[error("generated identifier refused")]
    Identifier(#[source] ppsp_proto::DecodeError),
    /// The tokio runtime could not start.
    #[error("starting the runtime")]
    Runtime(#[source] std::io::Error),
    /// The tracker's host name did not resolve.
    #[error("resolving {host}")]
    Resolve {
        /// The host of `--tracker`.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The tracker's host name resolved to no address.
    #[error("{host} has no address")]
    NoAddress {
        /// The host of `--tracker`.
        host: String,
    },
    /// No request of the load run got an answer.
    #[error("no request reached the tracker\n{report}")]
    NothingAnswered {
        /// The run's report, showing what went wrong.
        report: String,
    },
    /// Some peers of a fill could not be registered.
    #[error("{failed} peers were not registered")]
    PeersNotRegistered {
        /// How many.
        failed: u64,
        /// The fill's report.
        report: String,
    },
}

/// `--tracker`: an `http://` URL with a host.
fn tracker_uri(url: &str) -> Result<Uri, LoadError> {
    let uri = Uri::from_str(url).map_err(|source| LoadError::InvalidUrl {
        url: url.to_owned(),
        source,
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(LoadError::UnsupportedScheme {
            url: url.to_owned(),
        });
    }
    if uri.host().is_none() {
        return Err(LoadError::NoHost {
            url: url.to_owned(),
        });
    }
    Ok(uri)
}
