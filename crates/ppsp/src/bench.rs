//! `ppsp bench`: the load generator of `ppsp-load` on the command line.

use crate::CliError;
use ppsp_load::{FillArgs, LoadArgs, LoadError};

/// Options of `ppsp bench`: the load run, or one of the other modes.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: Option<BenchMode>,
    #[command(flatten)]
    load: Option<LoadArgs>,
}

/// Modes of `ppsp bench` besides the default load run.
#[derive(Debug, clap::Subcommand)]
enum BenchMode {
    /// Register many peers (one address, one swarm each) and leave them registered, to
    /// measure the memory a tracker's state takes.
    Fill(FillArgs),
}

/// Runs the chosen mode and prints its report on standard output (also when some peers of
/// a fill failed, before the error).
pub(crate) fn run(args: BenchArgs) -> Result<(), CliError> {
    let report = match (args.mode, args.load) {
        (Some(BenchMode::Fill(fill)), _) => ppsp_load::run_fill(&fill),
        (None, Some(load)) => ppsp_load::run_load(&load),
        (None, None) => {
            return Err("ppsp bench needs --tracker URL (or a mode such as `fill`)".into());
        }
    };
    match report {
        Ok(report) => {
            print!("{report}");
            Ok(())
        }
        Err(LoadError::PeersNotRegistered { failed, report }) => {
            print!("{report}");
            Err(LoadError::PeersNotRegistered {
                failed,
                report: String::new(),
            }
            .into())
        }
        Err(other) => Err(other.into()),
    }
}
