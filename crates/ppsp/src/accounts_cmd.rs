//! `ppsp accounts`.

use std::io::BufRead as _;
use std::path::PathBuf;

use ppsp_server::Accounts;

use crate::CliError;

/// Account management subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountsCommand {
    /// Add or replace an account; the password is read from standard input (one line).
    Add {
        /// The accounts file (created if missing, rewritten atomically).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Also store the HTTP Digest (SHA-256) secret for this realm, so JSON peers can
        /// authenticate with Digest; it must equal the tracker's `[auth] digest_realm`
        /// (default `ppsp`). Whoever reads this secret can authenticate with Digest, so it
        /// is only stored when asked for.
        #[arg(long, value_name = "REALM")]
        digest_realm: Option<String>,
        /// The peer's PeerID, which is also its SASL PLAIN and HTTP Digest user name.
        peer_id: String,
    },
    /// Remove an account.
    Remove {
        /// The accounts file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The PeerID to remove.
        peer_id: String,
    },
    /// List the PeerIDs that have accounts.
    List {
        /// The accounts file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs an accounts subcommand.
pub(crate) fn run(cmd: AccountsCommand) -> Result<(), CliError> {
    match cmd {
        AccountsCommand::Add {
            file,
            digest_realm,
            peer_id,
        } => {
            let peer_id = ppsp_proto::PeerId::new(peer_id)?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.strip_suffix('\n').unwrap_or(&line);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                return Err(
                    "empty password: write the password as one line on standard input".into(),
                );
            }
            let mut accounts = Accounts::load_or_empty(&file)?;
            let replaced = accounts.contains(peer_id.as_str());
            accounts.set_password(&peer_id, password.as_bytes())?;
            if let Some(realm) = &digest_realm {
                accounts.set_digest(&peer_id, realm, password.as_bytes())?;
            }
            accounts.save(&file)?;
            eprintln!(
                "{} account {peer_id} in {}{}",
                if replaced { "replaced" } else { "added" },
                file.display(),
                digest_realm.map_or_else(String::new, |realm| format!(
                    " (with an HTTP Digest secret for realm {realm})"
                ))
            );
            Ok(())
        }
        AccountsCommand::Remove { file, peer_id } => {
            let mut accounts = Accounts::load(&file)?;
            if !accounts.remove(&peer_id) {
                return Err(format!("no account {peer_id} in {}", file.display()).into());
            }
            accounts.save(&file)?;
            eprintln!("removed account {peer_id} from {}", file.display());
            Ok(())
        }
        AccountsCommand::List { file } => {
            let accounts = Accounts::load(&file)?;
            for peer_id in accounts.peer_ids() {
                println!("{peer_id}");
            }
            Ok(())
        }
    }
}
