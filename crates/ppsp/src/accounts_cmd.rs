//! `ppsp accounts`.

use crate::CliError;

/// Account management subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountsCommand {}

/// Runs an accounts subcommand.
pub(crate) fn run(cmd: AccountsCommand) -> Result<(), CliError> {
    match cmd {}
}
