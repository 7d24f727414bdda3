//! CONNECT credential checking.

use ppsp_proto::{PeerId, SaslAuth};

/// Why a CONNECT was not authenticated. Every variant is answered with 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The SASL mechanism is not one this tracker accepts.
    #[error("SASL mechanism {0:?} not accepted")]
    UnknownMechanism(String),
    /// The mechanism needs an initial response and none was sent, or it does not parse.
    #[error("missing or malformed SASL credentials")]
    MalformedCredentials,
    /// The password (or passcode) is wrong.
    #[error("bad credentials")]
    BadCredentials,
    /// SASL PLAIN over a channel that does not protect it.
    #[error("PLAIN refused over a cleartext channel")]
    PlainOverCleartext,
    /// The authenticated identity is not the PeerID of the request.
    #[error("authenticated identity does not match the PeerID")]
    IdentityMismatch,
    /// No account exists for the identity.
    #[error("unknown account")]
    UnknownAccount,
    /// The request carried no credentials where some are required.
    #[error("credentials required")]
    CredentialsRequired,
}

/// Checks CONNECT credentials. Implemented by the server (accounts file + argon2id).
///
/// May be slow: the core calls it without holding any lock.
pub trait Authenticator: Send + Sync {
    /// Accepts or refuses `peer_id` with the given SASL data.
    ///
    /// `auth` is the XML CONNECT's SASL data (`None` for JSON, whose authentication happens
    /// at the HTTP layer). `secure_channel` is true over TLS or on a loopback listener.
    ///
    /// # Errors
    /// An [`AuthError`] saying why the peer is refused.
    fn authenticate(
        &self,
        peer_id: &PeerId,
        auth: Option<&SaslAuth>,
        secure_channel: bool,
    ) -> Result<(), AuthError>;
}

/// An open tracker: accepts SASL `ANONYMOUS` and JSON requests (which carry no SASL data),
/// refuses every other mechanism.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAuthenticator;

impl Authenticator for OpenAuthenticator {
    fn authenticate(
        &self,
        _peer_id: &PeerId,
        auth: Option<&SaslAuth>,
        _secure_channel: bool,
    ) -> Result<(), AuthError> {
        match auth {
            None => Ok(()),
            Some(sasl) if sasl.mechanism.eq_ignore_ascii_case("ANONYMOUS") => Ok(()),
            Some(sasl) => Err(AuthError::UnknownMechanism(sasl.mechanism.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_authenticator_accepts_anonymous_only() {
        let peer = PeerId::new("p1").expect("valid id");
        let anonymous = SaslAuth {
            mechanism: "ANONYMOUS".into(),
            credentials: None,
        };
        let plain = SaslAuth {
            mechanism: "PLAIN".into(),
            credentials: Some(b"\0p1\0secret".to_vec()),
        };
        assert_eq!(
            OpenAuthenticator.authenticate(&peer, Some(&anonymous), false),
            Ok(())
        );
        assert_eq!(OpenAuthenticator.authenticate(&peer, None, false), Ok(()));
        assert_eq!(
            OpenAuthenticator.authenticate(&peer, Some(&plain), true),
            Err(AuthError::UnknownMechanism("PLAIN".into()))
        );
    }
}
