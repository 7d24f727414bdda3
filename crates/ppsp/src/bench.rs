//! `ppsp bench`.

use crate::CliError;

/// Options of `ppsp bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {}

/// Runs the load generator.
pub(crate) fn run(_args: BenchArgs) -> Result<(), CliError> {
    Err("the load generator is being wired up".into())
}
