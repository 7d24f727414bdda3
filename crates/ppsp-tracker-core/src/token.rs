//! AuthTokens that need no storage.
//!
//! A token is `base64url(generation ‖ MAC)`: the session's generation (4 bytes, big-endian)
//! and the first 20 bytes of HMAC-SHA256 under the tracker's secret key over the generation
//! and the PeerID. 24 bytes in all, 32 characters on the wire. The core checks a token
//! without looking anything up: a forged or altered token fails the MAC before any state is
//! touched, and a genuine one names the generation the store must still hold for the peer.
//! Every node sharing a store shares the key, so a token minted by one is accepted by all.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use ppsp_proto::{AuthToken, PeerId};

const MAC_BYTES: usize = 20;
const TOKEN_BYTES: usize = 4 + MAC_BYTES;

/// Mints and checks AuthTokens with one secret key.
pub struct TokenKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from 32 secret bytes (random, or shared by the nodes of one store).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn mac(&self, generation: u32, peer_id: &PeerId) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&generation.to_be_bytes());
        context.update(peer_id.as_str().as_bytes());
        context.sign()
    }

    /// The token of `peer_id`'s session `generation`. `None` only if the model refused a
    /// 32-character base64url string, which it never does.
    pub fn mint(&self, peer_id: &PeerId, generation: u32) -> Option<AuthToken> {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[..4].copy_from_slice(&generation.to_be_bytes());
        bytes[4..].copy_from_slice(&self.mac(generation, peer_id).as_ref()[..MAC_BYTES]);
        AuthToken::new(URL_SAFE_NO_PAD.encode(bytes)).ok()
    }

    /// The generation a token names, when its MAC is right for `peer_id`.
    pub fn verify(&self, peer_id: &PeerId, token: &AuthToken) -> Option<u32> {
        let text = token.as_str().as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        let written = URL_SAFE_NO_PAD.decode_slice(text, &mut bytes).ok()?;
        if written != TOKEN_BYTES {
            return None;
        }
        let generation = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let expected = self.mac(generation, peer_id);
        constant_time_eq(&expected.as_ref()[..MAC_BYTES], &bytes[4..]).then_some(generation)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> PeerId {
        PeerId::new(s).expect("id")
    }

    #[test]
    fn minted_tokens_verify_for_their_peer_only() {
        let key = TokenKey::new(&[7; 32]);
        let token = key.mint(&pid("alice"), 42).expect("token");
        assert_eq!(token.as_str().len(), 32);
        assert_eq!(key.verify(&pid("alice"), &token), Some(42));
        assert_eq!(key.verify(&pid("bob"), &token), None);
        assert_eq!(TokenKey::new(&[8; 32]).verify(&pid("alice"), &token), None);
        assert_ne!(key.mint(&pid("alice"), 43), Some(token));
    }

    #[test]
    fn altered_or_malformed_tokens_are_refused() {
        let key = TokenKey::new(&[1; 32]);
        let token = key.mint(&pid("p"), 9).expect("token");
        let mut chars: Vec<char> = token.as_str().chars().collect();
        chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
        let altered = AuthToken::new(chars.into_iter().collect::<String>()).expect("token");
        assert_eq!(key.verify(&pid("p"), &altered), None);
        for bad in ["short", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", &"A".repeat(33)] {
            assert_eq!(
                key.verify(&pid("p"), &AuthToken::new(bad).expect("token")),
                None
            );
        }
    }
}
