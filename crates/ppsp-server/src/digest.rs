//! Authentication of JSON (RFC 7846) peers at the HTTP layer: HTTP Digest (RFC 7616) with
//! SHA-256 against the accounts file, and TLS client certificates.
//!
//! RFC 7846 carries no credentials in its messages and leaves authentication to HTTP, so
//! every JSON request passes [`JsonGate::check`] before it reaches the tracker:
//!
//! * a TLS client certificate (verified against `[tls] client_ca` during the handshake)
//!   whose subject CN or a DNS/URI subject alternative name equals the request's `peer_id`
//!   authenticates it;
//! * otherwise an `Authorization: Digest` header is checked (`algorithm=SHA-256`,
//!   `qop=auth`); its user name must equal the `peer_id` (403 otherwise);
//! * a request with neither is accepted only on an open tracker and only for a PeerID that
//!   has no account; else it gets 401 with a fresh `WWW-Authenticate: Digest` challenge.
//!
//! Wrong passwords count as failed CONNECTs of the source network (see `limiter`), and a
//! network held off for them gets 503 for Digest credentials too, so guessing over Digest
//! is no faster than over SASL PLAIN.
//!
//! MD5 is not offered: every Digest client in current use that can talk to this tracker
//! (curl since 7.57, browsers, Python's `requests` via `HTTPDigestAuth`) speaks SHA-256
//! when the challenge asks for it, and MD5 would need an MD5 `H(A1)` in the accounts file
//! too.
//!
//! Nonces carry their issue time and an HMAC under a key made at start-up, so checking
//! that a nonce is ours and not expired needs no table, and requests that fail to
//! authenticate never fill one. Replays are stopped by the nonce count (`nc`): the highest
//! count seen per nonce is kept from a nonce's first successful use until it expires, and a
//! request must present a higher one. That table is bounded; when full, expired entries go
//! first, then the oldest (whose clients get a `stale` challenge and carry on).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{HeaderMap, HeaderValue};
use ring::hmac;
use subtle::ConstantTimeEq as _;

use crate::accounts::to_hex;
use crate::auth::AccountsAuthenticator;

/// Nonces whose use is remembered at most.
const MAX_TRACKED_NONCES: usize = 65_536;
/// Bytes of a nonce: issue time (8), randomness (8), truncated HMAC-SHA-256 (16).
const NONCE_BYTES: usize = 32;

/// Why a JSON request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No acceptable credentials: answer 401 with this `WWW-Authenticate` challenge.
    Unauthenticated(HeaderValue),
    /// Credentials whose password was checked and is wrong (or whose user has no Digest
    /// secret): 401 with this challenge, and one more failure for the source network.
    WrongCredentials(HeaderValue),
    /// Authenticated, but as another identity than the request's `peer_id`: 403.
    WrongIdentity,
}

/// The request facts the gate looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonRequest<'a> {
    /// HTTP method, as `A2` of RFC 7616 §3.4.3 needs it.
    pub(crate) method: &'a str,
    /// The request target (path and query), which the `uri` parameter must repeat.
    pub(crate) target: &'a str,
    /// The request's headers.
    pub(crate) headers: &'a HeaderMap,
    /// The JSON `peer_id`.
    pub(crate) peer_id: &'a str,
    /// Names from the verified TLS client certificate, if one was presented.
    pub(crate) certificate_names: &'a [String],
}

/// The HTTP-layer check of JSON requests.
pub(crate) struct JsonGate {
    realm: String,
    nonce_lifetime: Duration,
    allow_anonymous: bool,
    key: hmac::Key,
    rng: ring::rand::SystemRandom,
    used: Mutex<UsedNonces>,
}

impl std::fmt::Debug for JsonGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonGate")
            .field("realm", &self.realm)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish_non_exhaustive()
    }
}

/// Highest nonce count seen per nonce, with first-use order for eviction.
#[derive(Debug, Default)]
struct UsedNonces {
    counts: HashMap<String, u32>,
    order: VecDeque<(u64, String)>,
    /// Latest issue time among nonces evicted before they expired: an untracked nonce
    /// issued no later than this may have been used already, so it is refused as stale.
    forgotten_up_to: Option<u64>,
}

/// What a nonce count is, for its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceUse {
    /// Higher than any seen: accepted and remembered.
    Fresh,
    /// Not higher than the last one: a replay.
    Replayed,
    /// The nonce's history was evicted: the client must take a new nonce.
    Forgotten,
}

impl UsedNonces {
    /// Records `nc` for `nonce` (issued at `issued`) if it is higher than any seen.
    fn advance(&mut self, nonce: &str, issued: u64, nc: u32, now: u64, lifetime: u64) -> NonceUse {
        if let Some(highest) = self.counts.get_mut(nonce) {
            if nc <= *highest {
                return NonceUse::Replayed;
            }
            *highest = nc;
            return NonceUse::Fresh;
        }
        if self.forgotten_up_to.is_some_and(|up_to| issued <= up_to) {
            return NonceUse::Forgotten;
        }
        // Whatever expired at the front goes, so the table shrinks when traffic stops.
        while let Some((issued_at, _)) = self.order.front() {
            if now.saturating_sub(*issued_at) < lifetime {
                break;
            }
            if let Some((_, expired)) = self.order.pop_front() {
                self.counts.remove(&expired);
            }
        }
        while self.counts.len() >= MAX_TRACKED_NONCES {
            let Some((issued_at, oldest)) = self.order.pop_front() else {
                break;
            };
            self.counts.remove(&oldest);
            self.forgotten_up_to =
                Some(self.forgotten_up_to.map_or(issued_at, |t| t.max(issued_at)));
        }
        self.counts.insert(nonce.to_owned(), nc);
        self.order.push_back((issued, nonce.to_owned()));
        NonceUse::Fresh
    }
}

/// The `Authorization: Digest` parameters this server needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Credentials {
    username: String,
    realm: String,
    nonce: String,
    uri: String,
    response: String,
    algorithm: String,
    qop: String,
    nc: String,
    cnonce: String,
    userhash: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JsonGate {
    /// A gate for `realm`, with nonces valid for `nonce_lifetime`. `allow_anonymous` is the
    /// tracker's `[auth] allow_anonymous`.
    ///
    /// `None` when the system has no randomness for the nonce key.
    pub(crate) fn new(
        realm: &str,
        nonce_lifetime: Duration,
        allow_anonymous: bool,
    ) -> Option<Self> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).ok()?;
        Some(Self {
            realm: realm.to_owned(),
            nonce_lifetime,
            allow_anonymous,
            key,
            rng,
            used: Mutex::new(UsedNonces::default()),
        })
    }

    /// A fresh challenge; `stale` tells the client its credentials were right but the nonce
    /// was not (RFC 7616 §3.3), so it may retry without asking its user.
    pub(crate) fn challenge(&self, stale: bool) -> HeaderValue {
        let nonce = self.issue_nonce(unix_now());
        let text = format!(
            "Digest realm=\"{}\", qop=\"auth\", algorithm=SHA-256, nonce=\"{nonce}\"{}",
            self.realm,
            if stale { ", stale=true" } else { "" }
        );
        // The realm is checked to be a plain token and the nonce is base64url.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Digest"))
    }

    fn issue_nonce(&self, now: u64) -> String {
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        // Distinct nonces within one second; secrecy comes from the HMAC, not from these.
        let _ = ring::rand::SecureRandom::fill(&self.rng, &mut raw[8..16]);
        let tag = hmac::sign(&self.key, &raw[..16]);
        raw[16..].copy_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The issue time of a nonce this gate made, or `None` for anything else.
    fn nonce_issued(&self, nonce: &str) -> Option<u64> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != NONCE_BYTES {
            return None;
        }
        let tag = hmac::sign(&self.key, &raw[..16]);
        if !bool::from(tag.as_ref()[..16].ct_eq(&raw[16..])) {
            return None;
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&raw[..8]);
        Some(u64::from_be_bytes(time))
    }

    /// The refusal of a JSON request that comes with no credentials at all, decided before
    /// its body is decoded: on a closed tracker, and for an empty body (Digest clients such
    /// as curl send their first POST without the body, to learn the challenge).
    pub(crate) fn refuse_before_decoding(
        &self,
        headers: &HeaderMap,
        certificate_names: &[String],
        body_is_empty: bool,
    ) -> Option<Refusal> {
        let has_credentials =
            !certificate_names.is_empty() || headers.contains_key(hyper::header::AUTHORIZATION);
        (!has_credentials && (!self.allow_anonymous || body_is_empty))
            .then(|| Refusal::Unauthenticated(self.challenge(false)))
    }

    /// Lets a JSON request through, or says how to refuse it.
    pub(crate) fn check(
        &self,
        authenticator: &AccountsAuthenticator,
        request: &JsonRequest<'_>,
    ) -> Result<bool, Refusal> {
        if !request.certificate_names.is_empty() {
            if request
                .certificate_names
                .iter()
                .any(|n| n == request.peer_id)
            {
                return Ok(true);
            }
            if !request.headers.contains_key(hyper::header::AUTHORIZATION) {
                tracing::info!(
                    "JSON request for {} refused: the client certificate names {:?}",
                    request.peer_id,
                    request.certificate_names
                );
                return Err(Refusal::WrongIdentity);
            }
        }
        let digest = request
            .headers
            .get_all(hyper::header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|value| {
                let (scheme, rest) = value.trim_start().split_once(' ')?;
                scheme.eq_ignore_ascii_case("digest").then_some(rest)
            });
        let Some(params) = digest else {
            let needs_credentials =
                !self.allow_anonymous || authenticator.has_account(request.peer_id);
            return if needs_credentials {
                Err(Refusal::Unauthenticated(self.challenge(false)))
            } else {
                Ok(false)
            };
        };
        let username = self.verify(authenticator, request, params, unix_now())?;
        if username == request.peer_id {
            Ok(true)
        } else {
            tracing::info!(
                "JSON request for {} refused: authenticated as {username}",
                request.peer_id
            );
            Err(Refusal::WrongIdentity)
        }
    }

    /// Checks Digest credentials; the authenticated user name on success.
    fn verify(
        &self,
        authenticator: &AccountsAuthenticator,
        request: &JsonRequest<'_>,
        params: &str,
        now: u64,
    ) -> Result<String, Refusal> {
        let refuse = |why: &str| {
            tracing::info!("Digest credentials for {} refused: {why}", request.peer_id);
            Refusal::Unauthenticated(self.challenge(false))
        };
        let Some(credentials) = parse_credentials(params) else {
            return Err(refuse("malformed Authorization header"));
        };
        if !credentials.algorithm.eq_ignore_ascii_case("SHA-256") {
            return Err(refuse("algorithm is not SHA-256"));
        }
        if credentials.qop != "auth" || credentials.cnonce.is_empty() {
            return Err(refuse("qop=auth with a cnonce is required"));
        }
        if credentials.userhash.eq_ignore_ascii_case("true") {
            return Err(refuse("userhash is not supported"));
        }
        if credentials.realm != self.realm {
            return Err(refuse("wrong realm"));
        }
        if credentials.uri != request.target {
            return Err(refuse("uri does not match the request target"));
        }
        let Some(nc) = (credentials.nc.len() == 8)
            .then(|| u32::from_str_radix(&credentials.nc, 16).ok())
            .flatten()
        else {
            return Err(refuse("nc is not 8 hex digits"));
        };
        let wrong = |why: &str| match refuse(why) {
            Refusal::Unauthenticated(challenge) => Refusal::WrongCredentials(challenge),
            other => other,
        };
        let Some(ha1) = authenticator.digest_secret(&credentials.username, &self.realm) else {
            return Err(wrong("no Digest secret for this user and realm"));
        };
        let ha2 = sha256_hex(format!("{}:{}", request.method, credentials.uri).as_bytes());
        let expected = sha256_hex(
            format!(
                "{}:{}:{}:{}:{}:{ha2}",
                to_hex(&ha1),
                credentials.nonce,
                credentials.nc,
                credentials.cnonce,
                credentials.qop
            )
            .as_bytes(),
        );
        let response = credentials.response.to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(response.as_bytes())) {
            return Err(wrong("wrong response"));
        }
        let lifetime = self.nonce_lifetime.as_secs();
        let fresh = self
            .nonce_issued(&credentials.nonce)
            .filter(|issued| *issued <= now && now - issued < lifetime);
        let Some(issued) = fresh else {
            // Right password, old or foreign nonce: the client may retry at once.
            return Err(Refusal::Unauthenticated(self.challenge(true)));
        };
        let Ok(mut used) = self.used.lock() else {
            return Err(refuse("nonce table unavailable"));
        };
        match used.advance(&credentials.nonce, issued, nc, now, lifetime) {
            NonceUse::Fresh => Ok(credentials.username),
            NonceUse::Replayed => {
                drop(used);
                Err(refuse("nonce count not above the last one (replay)"))
            }
            NonceUse::Forgotten => Err(Refusal::Unauthenticated(self.challenge(true))),
        }
    }
}

fn sha256_hex(text: &[u8]) -> String {
    crate::accounts::sha256_hex(text)
}

/// Parses the auth-params of a Digest `Authorization` header (RFC 7616 §3.4, RFC 7235
/// §2.1): comma-separated `name=token` or `name="quoted string"`. `None` when malformed or
/// when a required parameter is missing.
fn parse_credentials(text: &str) -> Option<Credentials> {
    let mut credentials = Credentials::default();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        end = Some(index + 1);
                        break;
                    }
                    _ => value.push(c),
                }
            }
            (value, quoted.get(end?..)?)
        } else {
            let stop = after.find(',').unwrap_or(after.len());
            (after[..stop].trim().to_owned(), &after[stop..])
        };
        let slot = match name.as_str() {
            "username" => Some(&mut credentials.username),
            "realm" => Some(&mut credentials.realm),
            "nonce" => Some(&mut credentials.nonce),
            "uri" => Some(&mut credentials.uri),
            "response" => Some(&mut credentials.response),
            "algorithm" => Some(&mut credentials.algorithm),
            "qop" => Some(&mut credentials.qop),
            "nc" => Some(&mut credentials.nc),
            "cnonce" => Some(&mut credentials.cnonce),
            "userhash" => Some(&mut credentials.userhash),
            // opaque and extensions are not used.
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = value;
        }
        let remaining = remaining.trim_start();
        rest = match remaining.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None if remaining.is_empty() => remaining,
            None => return None,
        };
    }
    let required = [
        &credentials.username,
        &credentials.realm,
        &credentials.nonce,
        &credentials.uri,
        &credentials.response,
    ];
    required
        .iter()
        .all(|value| !value.is_empty())
        .then_some(credentials)
}

/// Names a verified client certificate gives its holder: the subject's common names and
/// the DNS and URI subject alternative names. Empty when the certificate does not parse.
pub(crate) fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::URI(uri) => names.push((*uri).to_owned()),
                _ => {}
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_token_parameters() {
        let credentials = parse_credentials(
            "username=\"alice\", realm=\"ppsp\", nonce=\"abc\", uri=\"/\", \
             algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"x\\\"y\", \
             response=\"00ff\", opaque=\"o\"",
        )
        .expect("parses");
        assert_eq!(credentials.username, "alice");
        assert_eq!(credentials.cnonce, "x\"y");
        assert_eq!(credentials.nc, "00000001");
        assert_eq!(credentials.algorithm, "SHA-256");
        assert!(
            parse_credentials("username=\"alice\"").is_none(),
            "missing fields"
        );
        assert!(parse_credentials("username=\"unterminated").is_none());
        assert!(parse_credentials("garbage").is_none());
        assert!(parse_credentials("username=\"a\" realm=\"b\"").is_none());
    }

    #[test]
    fn nonces_are_ours_and_expire() {
        let gate = JsonGate::new("ppsp", Duration::from_secs(60), true).expect("key");
        let nonce = gate.issue_nonce(1000);
        assert_eq!(gate.nonce_issued(&nonce), Some(1000));
        let other = JsonGate::new("ppsp", Duration::from_secs(60), true).expect("key");
        assert_eq!(other.nonce_issued(&nonce), None, "another key");
        let mut forged = URL_SAFE_NO_PAD.decode(&nonce).expect("base64");
        forged[7] ^= 1;
        assert_eq!(gate.nonce_issued(&URL_SAFE_NO_PAD.encode(forged)), None);
        assert_eq!(gate.nonce_issued("short"), None);
    }

    #[test]
    fn nonce_counts_only_go_up_and_the_table_is_bounded() {
        let mut used = UsedNonces::default();
        assert_eq!(used.advance("n1", 0, 1, 0, 60), NonceUse::Fresh);
        assert_eq!(used.advance("n1", 0, 1, 0, 60), NonceUse::Replayed);
        assert_eq!(used.advance("n1", 0, 5, 0, 60), NonceUse::Fresh);
        assert_eq!(used.advance("n1", 0, 3, 0, 60), NonceUse::Replayed);
        // One nonce per second, all within a long lifetime, more than the table holds.
        let lifetime = 1 << 20;
        let flood = MAX_TRACKED_NONCES as u64 + 10;
        for i in 1..=flood {
            let nonce = format!("flood{i}");
            assert_eq!(used.advance(&nonce, i, 1, i, lifetime), NonceUse::Fresh);
        }
        assert!(used.counts.len() <= MAX_TRACKED_NONCES);
        assert_eq!(used.counts.len(), used.order.len());
        // n1 and the first floods were evicted: their counts are unknown, so they cannot be
        // used again at all, while later nonces still can.
        assert_eq!(
            used.advance("n1", 0, 9, flood, lifetime),
            NonceUse::Forgotten
        );
        assert_eq!(
            used.advance("flood3", 3, 2, flood, lifetime),
            NonceUse::Forgotten
        );
        assert_eq!(
            used.advance("flood500", 500, 2, flood, lifetime),
            NonceUse::Fresh
        );
        assert_eq!(
            used.advance("newer", flood, 1, flood, lifetime),
            NonceUse::Fresh
        );
        // Long after, expired entries are dropped as new ones come.
        let late = flood + lifetime + 1;
        assert_eq!(
            used.advance("late", late, 1, late, lifetime),
            NonceUse::Fresh
        );
        assert_eq!(used.counts.len(), 1);
    }
}
