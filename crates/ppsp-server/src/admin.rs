//! Who may see the admin pages: the dashboard (`/`), `/api/stats` and `/metrics`.
//!
//! They list every PeerID, address and swarm, so a public tracker should not hand them to
//! everyone. Two independent controls, from `[admin]`:
//!
//! * `listen`: separate listeners (typically loopback only) serve the admin pages, and the
//!   protocol listeners answer them 404;
//! * `token_file`: a bearer token (RFC 6750 §2.1) every admin request must carry, on
//!   whichever listener serves it. Compared in constant time.
//!
//! With neither, the protocol listeners serve them, which is right for the default
//! tracker on 127.0.0.1.

use hyper::header::{self, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq as _;

use crate::config::AdminSection;
use crate::error::ServerError;

/// Paths that make up the admin surface.
pub(crate) const ADMIN_PATHS: [&str; 3] = ["/", "/api/stats", "/metrics"];

/// The `[admin]` rules, ready to apply.
#[derive(Clone, Default)]
pub(crate) struct AdminAccess {
    separate_listener: bool,
    token: Option<String>,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccess")
            .field("separate_listener", &self.separate_listener)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// Why an admin page was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminRefusal {
    /// Asked on a protocol listener while admin listeners exist: 404, as if absent.
    NotHere,
    /// No or a wrong bearer token: 401 with a `Bearer` challenge.
    Unauthorized,
}

impl AdminAccess {
    /// Reads the token file, if one is configured.
    ///
    /// # Errors
    /// [`ServerError::Config`] when the token file cannot be read or holds no token.
    pub(crate) fn from_config(admin: &AdminSection) -> Result<Self, ServerError> {
        let token = match &admin.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    ServerError::Config(format!("admin.token_file {}: {err}", path.display()))
                })?;
                let token = text.trim();
                if token.is_empty() || token.chars().any(char::is_whitespace) {
                    return Err(ServerError::Config(format!(
                        "admin.token_file {}: expected one token on one line",
                        path.display()
                    )));
                }
                Some(token.to_owned())
            }
        };
        Ok(Self {
            separate_listener: !admin.listen.is_empty(),
            token,
        })
    }

    /// Whether a request for an admin page, arriving on an admin listener or not, with
    /// these headers, is served.
    pub(crate) fn check(
        &self,
        on_admin_listener: bool,
        headers: &HeaderMap,
    ) -> Result<(), AdminRefusal> {
        if self.separate_listener && !on_admin_listener {
            return Err(AdminRefusal::NotHere);
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| {
                let (scheme, credentials) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| credentials.trim())
            })
            .any(|candidate| bool::from(candidate.as_bytes().ct_eq(token.as_bytes())));
        if presented {
            Ok(())
        } else {
            Err(AdminRefusal::Unauthorized)
        }
    }

    /// The `WWW-Authenticate` value of a 401 admin answer.
    pub(crate) fn challenge() -> HeaderValue {
        HeaderValue::from_static("Bearer realm=\"ppsp-admin\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(authorization),
        );
        map
    }

    #[test]
    fn separate_listener_and_token() {
        let open = AdminAccess::default();
        assert_eq!(open.check(false, &HeaderMap::new()), Ok(()));
        let access = AdminAccess {
            separate_listener: true,
            token: Some("s3cret".to_owned()),
        };
        assert_eq!(
            access.check(false, &headers("Bearer s3cret")),
            Err(AdminRefusal::NotHere)
        );
        assert_eq!(
            access.check(true, &HeaderMap::new()),
            Err(AdminRefusal::Unauthorized)
        );
        assert_eq!(
            access.check(true, &headers("Bearer wrong")),
            Err(AdminRefusal::Unauthorized)
        );
        assert_eq!(
            access.check(true, &headers("Basic s3cret")),
            Err(AdminRefusal::Unauthorized)
        );
        assert_eq!(access.check(true, &headers("bearer s3cret")), Ok(()));
    }
}
