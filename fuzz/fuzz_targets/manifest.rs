//! Feeds arbitrary bytes to the manifest decoders: as a VoD manifest, and as the body of a
//! live manifest envelope signed with a fixed test key (so the fuzzer reaches the body
//! checks behind the signature, which random bytes never pass).
//!
//! Invariants: nothing panics; a decoded VoD manifest re-encodes canonically to bytes that
//! decode to the same manifest and hash to its swarm ID, and its chunk geometry is
//! consistent; a decoded live manifest's chunk range does not overflow and each chunk fits
//! the chunk size; a live envelope with the signature of another body is refused.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use ppsp_peer::manifest::{Manifest, SignedLiveManifest, to_hex};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

fn key() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("a 32-byte seed is a key")
    })
}

fn envelope(body: &str, signed: &[u8]) -> Vec<u8> {
    let signature = STANDARD.encode(key().sign(signed).as_ref());
    serde_json::to_vec(&serde_json::json!({ "body": body, "signature": signature }))
        .expect("JSON of two strings")
}

fn check_vod(data: &[u8]) {
    let Ok(manifest) = Manifest::decode(data) else {
        return;
    };
    let encoded = manifest.encode();
    let again = Manifest::decode_verified(&encoded, &manifest.swarm_id())
        .expect("a manifest's own encoding verifies against its swarm ID");
    assert_eq!(again, manifest, "canonical round trip");
    assert_eq!(again.encode(), encoded, "encoding is deterministic");
    let count = manifest.chunk_count();
    assert!(count > 0 || manifest.total_length() == 0);
    let mut covered = 0u64;
    for index in [0, count / 2, count.saturating_sub(1)] {
        if index >= count {
            continue;
        }
        let len = manifest
            .chunk_len(index)
            .expect("chunk in range has a length");
        assert!(len > 0 && len <= manifest.chunk_size());
        let offset = manifest.offset(index);
        assert_eq!(manifest.chunk_of(offset), index);
        covered = covered.max(offset + u64::from(len));
        assert!(manifest.hash(index).is_some());
    }
    if count > 0 {
        assert_eq!(
            covered,
            manifest.total_length(),
            "the last chunk ends the content"
        );
    }
    assert!(manifest.chunk_len(count).is_none());
}

fn check_live(data: &[u8]) {
    let swarm_id = format!("live-{}", to_hex(key().public_key().as_ref()));
    let body = String::from_utf8_lossy(data);
    if let Ok(signed) =
        SignedLiveManifest::decode_verified(&envelope(&body, body.as_bytes()), &swarm_id)
    {
        let manifest = signed.manifest();
        assert_eq!(manifest.swarm_id(), swarm_id);
        let end = manifest.end();
        assert!(end >= manifest.first);
        for index in [manifest.first, end.saturating_sub(1)] {
            if let Some(chunk) = manifest.chunk(index) {
                assert!(chunk.len > 0 && chunk.len <= manifest.chunk_size);
            }
        }
        assert!(manifest.chunk(end).is_none());
    }
    // The same body under the signature of something else never verifies.
    let forged = envelope(&body, b"another body");
    assert!(
        SignedLiveManifest::decode_verified(&forged, &swarm_id).is_err() || body == "another body"
    );
}

fuzz_target!(|data: &[u8]| {
    check_vod(data);
    check_live(data);
});
