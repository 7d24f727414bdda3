//! The server's [`Authenticator`]: SASL ANONYMOUS and PLAIN against the accounts file.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::SystemTime;

use ppsp_proto::{PeerId, SaslAuth};
use ppsp_tracker_core::{AuthError, Authenticator};

use crate::accounts::Accounts;
use crate::config::AuthSection;
use crate::error::ServerError;

/// Checks CONNECT credentials.
///
/// * `ANONYMOUS` (RFC 4505) is accepted when the tracker is open (`allow_anonymous`), for
///   PeerIDs that have no account: an account's PeerID is only ever used with its
///   credentials.
/// * JSON requests carry no SASL data: they are authenticated at the HTTP layer (HTTP
///   Digest or a TLS client certificate, see the server's `digest` module) before they
///   reach the tracker, which is also where a closed tracker or an account's PeerID
///   requires credentials of them. So `authenticate` with no SASL data accepts.
/// * `PLAIN` (RFC 4616) is checked against the accounts file: the credentials are
///   `authzid NUL authcid NUL password`; the authcid must have an account whose argon2id hash
///   matches the password, and the identity (the authzid when given, else the authcid) must
///   be the request's PeerID. PLAIN is refused over a cleartext channel unless configured.
///
/// The accounts file is read again when its modification time changes, so
/// `ppsp accounts add` takes effect without a restart.
#[derive(Debug)]
pub struct AccountsAuthenticator {
    allow_anonymous: bool,
    allow_plain_over_cleartext: bool,
    file: Option<PathBuf>,
    accounts: RwLock<(Accounts, Option<SystemTime>)>,
}

impl AccountsAuthenticator {
    /// Builds the authenticator from the `[auth]` settings, reading the accounts file if one
    /// is configured.
    ///
    /// # Errors
    /// [`ServerError::Accounts`] when the configured file cannot be read or is malformed.
    pub fn from_config(auth: &AuthSection) -> Result<Self, ServerError> {
        let (accounts, modified) = match &auth.accounts_file {
            Some(path) => (Accounts::load(path)?, modified_time(path)),
            None => (Accounts::new(), None),
        };
        Ok(Self {
            allow_anonymous: auth.allow_anonymous,
            allow_plain_over_cleartext: auth.allow_plain_over_cleartext,
            file: auth.accounts_file.clone(),
            accounts: RwLock::new((accounts, modified)),
        })
    }

    /// Re-reads the accounts file when it changed on disk. A file that became unreadable or
    /// malformed keeps the previous accounts (and is logged), so a half-edited file never
    /// locks everyone out.
    fn refresh(&self) {
        let Some(path) = &self.file else {
            return;
        };
        let modified = modified_time(path);
        let stale = self
            .accounts
            .read()
            .map(|guard| guard.1 != modified)
            .unwrap_or(true);
        if !stale {
            return;
        }
        match Accounts::load(path) {
            Ok(accounts) => {
                tracing::info!("accounts file reloaded: {} accounts", accounts.len());
                if let Ok(mut guard) = self.accounts.write() {
                    *guard = (accounts, modified);
                }
            }
            Err(err) => tracing::warn!("keeping previous accounts: {err}"),
        }
    }

    /// True when `peer_id` has an account (the file is re-read first if it changed).
    pub(crate) fn has_account(&self, peer_id: &str) -> bool {
        self.refresh();
        self.accounts
            .read()
            .is_ok_and(|guard| guard.0.contains(peer_id))
    }

    /// The HTTP Digest secret of `peer_id` for `realm`, when its account has one.
    pub(crate) fn digest_secret(&self, peer_id: &str, realm: &str) -> Option<[u8; 32]> {
        self.refresh();
        self.accounts
            .read()
            .ok()
            .and_then(|guard| guard.0.digest_secret(peer_id, realm))
    }

    /// Reads the accounts file again now, whether or not it changed on disk (SIGHUP), and
    /// returns how many accounts it holds. Sessions are the tracker's and are untouched.
    ///
    /// # Errors
    /// [`ServerError::Accounts`] when the file cannot be read or is malformed; the previous
    /// accounts stay in force. Without an accounts file there is nothing to read: `Ok(0)`.
    pub fn reload(&self) -> Result<usize, ServerError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let modified = modified_time(path);
        let accounts = Accounts::load(path)?;
        let count = accounts.len();
        if let Ok(mut guard) = self.accounts.write() {
            *guard = (accounts, modified);
        }
        Ok(count)
    }

    fn check_plain(&self, peer_id: &PeerId, credentials: &[u8]) -> Result<(), AuthError> {
        if self.file.is_none() {
            return Err(AuthError::UnknownMechanism("PLAIN".to_owned()));
        }
        let mut fields = credentials.split(|b| *b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(AuthError::MalformedCredentials);
        };
        let authcid = std::str::from_utf8(authcid).map_err(|_| AuthError::MalformedCredentials)?;
        let authzid = std::str::from_utf8(authzid).map_err(|_| AuthError::MalformedCredentials)?;
        if authcid.is_empty() {
            return Err(AuthError::MalformedCredentials);
        }
        // Acting for another identity would need an authorisation table the accounts file
        // does not have, so the authzid, when present, must be the authcid itself.
        if !authzid.is_empty() && authzid != authcid {
            return Err(AuthError::IdentityMismatch);
        }
        if authcid != peer_id.as_str() {
            return Err(AuthError::IdentityMismatch);
        }
        self.refresh();
        let guard = self
            .accounts
            .read()
            .map_err(|_| AuthError::BadCredentials)?;
        let accounts = &guard.0;
        let known = accounts.contains(authcid);
        if accounts.verify(authcid, password) {
            Ok(())
        } else if known {
            Err(AuthError::BadCredentials)
        } else {
            Err(AuthError::UnknownAccount)
        }
    }
}

fn modified_time(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Authenticator for AccountsAuthenticator {
    fn authenticate(
        &self,
        peer_id: &PeerId,
        auth: Option<&SaslAuth>,
        secure_channel: bool,
    ) -> Result<(), AuthError> {
        let result = match auth {
            // Vetted at the HTTP layer, see the type's documentation.
            None => Ok(()),
            Some(sasl) if sasl.mechanism.eq_ignore_ascii_case("ANONYMOUS") => {
                if !self.allow_anonymous {
                    Err(AuthError::UnknownMechanism(sasl.mechanism.clone()))
                } else if self.has_account(peer_id.as_str()) {
                    Err(AuthError::CredentialsRequired)
                } else {
                    Ok(())
                }
            }
            Some(sasl) if sasl.mechanism.eq_ignore_ascii_case("PLAIN") => {
                if !secure_channel && !self.allow_plain_over_cleartext {
                    Err(AuthError::PlainOverCleartext)
                } else {
                    match &sasl.credentials {
                        Some(credentials) => self.check_plain(peer_id, credentials),
                        None => Err(AuthError::MalformedCredentials),
                    }
                }
            }
            Some(sasl) => Err(AuthError::UnknownMechanism(sasl.mechanism.clone())),
        };
        // Never log credentials; the PeerID and the reason are enough to investigate.
        if let Err(err) = &result {
            tracing::info!("CONNECT refused for {peer_id}: {err}");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: &str, credentials: Option<&[u8]>) -> SaslAuth {
        SaslAuth {
            mechanism: mechanism.to_owned(),
            credentials: credentials.map(<[u8]>::to_vec),
        }
    }

    fn authenticator(dir: &std::path::Path, allow_anonymous: bool) -> AccountsAuthenticator {
        let path = dir.join("accounts");
        let mut accounts = Accounts::new();
        accounts
            .set_password_with(
                &PeerId::new("alice").expect("id"),
                b"pw",
                argon2::Params::new(256, 1, 1, None).expect("params"),
            )
            .expect("hash");
        accounts.save(&path).expect("save");
        AccountsAuthenticator::from_config(&AuthSection {
            allow_anonymous,
            accounts_file: Some(path),
            ..AuthSection::default()
        })
        .expect("loads")
    }

    #[test]
    fn plain_and_anonymous() {
        let dir = std::env::temp_dir().join(format!("ppsp-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let auth = authenticator(&dir, false);
        let alice = PeerId::new("alice").expect("id");
        let bob = PeerId::new("bob").expect("id");
        let good = sasl("PLAIN", Some(b"\0alice\0pw"));
        assert_eq!(auth.authenticate(&alice, Some(&good), true), Ok(()));
        assert_eq!(
            auth.authenticate(
                &alice,
                Some(&sasl("plain", Some(b"alice\0alice\0pw"))),
                true
            ),
            Ok(())
        );
        assert_eq!(
            auth.authenticate(&alice, Some(&good), false),
            Err(AuthError::PlainOverCleartext)
        );
        assert_eq!(
            auth.authenticate(&alice, Some(&sasl("PLAIN", Some(b"\0alice\0nope"))), true),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(&bob, Some(&good), true),
            Err(AuthError::IdentityMismatch)
        );
        assert_eq!(
            auth.authenticate(&bob, Some(&sasl("PLAIN", Some(b"\0bob\0pw"))), true),
            Err(AuthError::UnknownAccount)
        );
        assert_eq!(
            auth.authenticate(&alice, Some(&sasl("PLAIN", Some(b"alice-pw"))), true),
            Err(AuthError::MalformedCredentials)
        );
        assert!(
            auth.authenticate(&alice, Some(&sasl("ANONYMOUS", None)), true)
                .is_err()
        );
        let open = authenticator(&dir, true);
        assert_eq!(
            open.authenticate(&alice, Some(&sasl("ANONYMOUS", None)), false),
            Err(AuthError::CredentialsRequired),
            "alice has an account: ANONYMOUS may not use her PeerID"
        );
        assert_eq!(
            open.authenticate(&bob, Some(&sasl("ANONYMOUS", None)), false),
            Ok(())
        );
        assert_eq!(
            open.authenticate(&alice, Some(&good), true),
            Ok(()),
            "PLAIN still works on an open tracker"
        );
        assert!(
            open.authenticate(&alice, Some(&sasl("SECURID", Some(b"x"))), true)
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
