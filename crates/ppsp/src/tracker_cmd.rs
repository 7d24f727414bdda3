//! `ppsp tracker`.

use crate::CliError;

/// Options of `ppsp tracker`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrackerArgs {}

/// Runs the tracker until SIGINT or SIGTERM.
pub(crate) fn run(_args: TrackerArgs) -> Result<(), CliError> {
    Err("the tracker command is being wired up".into())
}
