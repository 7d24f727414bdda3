//! `ppsp peer`.

use crate::CliError;

/// Peer subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PeerCommand {}

/// Runs a peer subcommand.
pub(crate) fn run(cmd: PeerCommand) -> Result<(), CliError> {
    match cmd {}
}
