//! Share links: one string that carries everything a viewer needs to join a swarm.
//!
//! `ppsp:SWARM_ID?tracker=URL[&tracker=URL...]`, each tracker URL percent-encoded, best
//! first. For example
//! `ppsp:3f2a...c9?tracker=http%3A%2F%2F127.0.0.1%3A7070`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::Error;

/// The URI scheme of share links.
pub const SCHEME: &str = "ppsp:";

/// Characters left as they are in an encoded tracker URL: the unreserved set of RFC 3986.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A swarm and the trackers that know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLink {
    /// The swarm ID (checked with [`crate::node::parse_swarm_id`]).
    pub swarm: String,
    /// Tracker URLs, best first.
    pub trackers: Vec<String>,
}

impl ShareLink {
    /// True when `text` is meant as a share link (rather than a bare swarm ID).
    pub fn is_link(text: &str) -> bool {
        text.get(..SCHEME.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
    }

    /// Reads a share link.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when it is not a `ppsp:` link, its swarm ID is malformed,
    /// or a parameter is unknown or not valid UTF-8 after decoding.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidArgument(format!("share link {text:?}: {why}"));
        if !Self::is_link(text) {
            return Err(bad("does not start with ppsp:"));
        }
        let rest = &text[SCHEME.len()..];
        let (swarm, query) = rest.split_once('?').unwrap_or((rest, ""));
        crate::node::parse_swarm_id(swarm)?;
        let mut trackers = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key != "tracker" {
                return Err(bad(&format!("unknown parameter {key:?}")));
            }
            let url = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| bad("a tracker URL is not UTF-8"))?;
            if url.is_empty() {
                return Err(bad("an empty tracker URL"));
            }
            trackers.push(url.into_owned());
        }
        Ok(Self {
            swarm: swarm.to_owned(),
            trackers,
        })
    }
}

impl std::fmt::Display for ShareLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}", self.swarm)?;
        for (i, url) in self.trackers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}tracker={}", utf8_percent_encode(url, QUERY_VALUE))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a69decaef9f550e6c10f88785d1f56ba6b6ace5ca4c51ba202be55e05a9a1384";

    #[test]
    fn links_round_trip() {
        let link = ShareLink {
            swarm: ID.to_owned(),
            trackers: vec![
                "http://127.0.0.1:7070".to_owned(),
                "https://[::1]:7443/ppsp?x=1&y=2".to_owned(),
            ],
        };
        let text = link.to_string();
        assert!(text.starts_with(&format!("ppsp:{ID}?tracker=http%3A%2F%2F127.0.0.1%3A7070&")));
        assert_eq!(ShareLink::parse(&text).expect("parses"), link);
        let live = format!("ppsp:live-{ID}");
        assert_eq!(
            ShareLink::parse(&live).expect("parses").trackers,
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_links_are_refused() {
        assert!(!ShareLink::is_link(ID));
        for bad in [
            ID.to_owned(),
            "ppsp:zz?tracker=x".to_owned(),
            format!("ppsp:{ID}?peer=1"),
            format!("ppsp:{ID}?tracker="),
            format!("ppsp:{ID}?tracker=%ff"),
        ] {
            assert!(ShareLink::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
