//! The PPSP peer: talks to trackers, exchanges verified chunks with other peers, and serves
//! content to a local media player.

pub mod error;
pub mod nat;
pub mod tracker_client;

pub use error::Error;
