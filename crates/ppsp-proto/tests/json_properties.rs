//! Properties of the JSON codec over generated values and bytes: exact round trips for
//! everything the JSON form carries, stable handling of what it does not, no panic on any
//! input, and every emitted message valid against the project's JSON Schema.

mod json_support;

use json_support::*;
use ppsp_proto::json::{
    decode, decode_request, decode_response, encode_request, encode_response, request_has_json_form,
};
use ppsp_proto::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

fn limits() -> Limits {
    Limits::default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(request in json_request()) {
        let encoded = encode_request(&request);
        let decoded = decode_request(encoded.as_bytes(), &limits());
        prop_assert_eq!(decoded, Ok(request.clone()), "{}", encoded);
        // The generic decoder agrees.
        prop_assert_eq!(decode(encoded.as_bytes(), &limits()), Ok(Message::Request(request)));
    }

    #[test]
    fn responses_round_trip(response in json_response()) {
        let encoded = encode_response(&response);
        let decoded = decode_response(encoded.as_bytes(), &limits());
        prop_assert_eq!(decoded, Ok(response.clone()), "{}", encoded);
        prop_assert_eq!(decode(encoded.as_bytes(), &limits()), Ok(Message::Response(response)));
    }

    /// Whatever the model holds, the encoder writes something; it decodes exactly when the
    /// method has a JSON form, and what it decodes to encodes to the same text.
    #[test]
    fn any_request_encodes_stably(request in any_request()) {
        let encoded = encode_request(&request);
        let decoded = decode_request(encoded.as_bytes(), &limits());
        prop_assert_eq!(decoded.is_ok(), request_has_json_form(&request.body), "{}", encoded);
        if let Ok(decoded) = decoded {
            prop_assert_eq!(&decoded.peer_id, &request.peer_id);
            prop_assert_eq!(&decoded.transaction_id, &request.transaction_id);
            prop_assert_eq!(&decoded.auth_token, &None);
            prop_assert_eq!(encode_request(&decoded), encoded);
        }
    }

    #[test]
    fn any_response_encodes_stably(response in any_response()) {
        let encoded = encode_response(&response);
        let decoded = decode_response(encoded.as_bytes(), &limits())
            .map_err(|e| TestCaseError::fail(format!("{e}: {encoded}")))?;
        prop_assert_eq!(decoded.status.json_error_code(), response.status.json_error_code());
        prop_assert_eq!(&decoded.transaction_id, &response.transaction_id);
        prop_assert!(decoded.reflexive_addresses.len() <= 1);
        if response.status != Status::Ok {
            prop_assert!(decoded.swarm_results.is_empty());
        }
        for result in &decoded.swarm_results {
            prop_assert!(result.peers.iter().all(|p| p.addresses.len() == 1));
        }
        prop_assert_eq!(encode_response(&decoded), encoded);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        check_no_panic_and_round_trip(&bytes)?;
    }

    /// Bodies assembled from the protocol's own vocabulary reach far deeper into the decoder
    /// than uniform random bytes.
    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(token(), 0..80)) {
        check_no_panic_and_round_trip(tokens.concat().as_bytes())?;
    }

    /// Damaged copies of valid messages: bytes replaced, removed or inserted.
    #[test]
    fn mutated_messages_never_panic(
        request in json_request(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = encode_request(&request).into_bytes();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len());
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        check_no_panic_and_round_trip(&bytes)?;
    }
}

/// The fuzz target's invariant: decoding never panics, and whatever decodes re-encodes to a
/// body that decodes to the same value. The second decode allows a larger body and two more
/// levels, because the canonical form can be longer (T5 adds members) and deeper (T1 wraps
/// single objects in arrays, T4 adds the `find` object) than what came in.
fn check_no_panic_and_round_trip(bytes: &[u8]) -> Result<(), TestCaseError> {
    let relaxed = Limits {
        max_body_bytes: usize::MAX,
        max_depth: limits().max_depth + 2,
        ..limits()
    };
    let _ = decode_request(bytes, &limits());
    let _ = decode_response(bytes, &limits());
    match decode(bytes, &limits()) {
        Ok(Message::Request(request)) => {
            let again = decode_request(encode_request(&request).as_bytes(), &relaxed);
            prop_assert_eq!(again, Ok(request));
        }
        Ok(Message::Response(response)) => {
            let again = decode_response(encode_response(&response).as_bytes(), &relaxed);
            prop_assert_eq!(again, Ok(response));
        }
        Err(error) => {
            // Every error maps to error code 1 or 2.
            prop_assert!(matches!(
                error.status(),
                Status::InvalidSyntax | Status::VersionNotSupported
            ));
        }
    }
    Ok(())
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "\"PPSPTrackerProtocol\"",
        "\"version\"",
        "1",
        "2",
        "0",
        "-1",
        "1.0",
        "1e400",
        "null",
        "true",
        "\"request_type\"",
        "\"CONNECT\"",
        "\"FIND\"",
        "\"STAT_REPORT\"",
        "\"response_type\"",
        "\"error_code\"",
        "\"03\"",
        "\"transaction_id\"",
        "\"t\"",
        "\"peer_id\"",
        "\"p\"",
        "\"connect\"",
        "\"find\"",
        "\"stat_report\"",
        "\"swarm_action\"",
        "\"swarm_id\"",
        "\"s\"",
        "\"action\"",
        "\"JOIN\"",
        "\"LEAVE\"",
        "\"peer_mode\"",
        "\"SEEDER\"",
        "\"LEECH\"",
        "\"peer_num\"",
        "\"peer_count\"",
        "\"5\"",
        "\"peer_addr\"",
        "\"ip_address\"",
        "\"address_type\"",
        "\"ipv4\"",
        "\"ipv6\"",
        "\"address\"",
        "\"10.0.0.1\"",
        "\"::1\"",
        "\"port\"",
        "65535",
        "65536",
        "\"type\"",
        "\"STREAM_STATS\"",
        "\"stat\"",
        "\"Stat\"",
        "\"swarm_result\"",
        "\"result\"",
        "\"peer_group\"",
        "\"peer_info\"",
        "\"priority\"",
        "4294967296",
        "18446744073709551616",
        " ",
        "\"\\u0000\"",
        "\"\\ud800\"",
    ])
}

// --- schema ------------------------------------------------------------------------------------

/// Writes `count` generated values, encoded, into `dir`.
fn emit<T: std::fmt::Debug>(
    dir: &std::path::Path,
    prefix: &str,
    count: usize,
    strategy: impl Strategy<Value = T>,
    encode: impl Fn(&T) -> String,
) {
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    for i in 0..count {
        let value = strategy
            .new_tree(&mut runner)
            .expect("generator works")
            .current();
        std::fs::write(dir.join(format!("{prefix}-{i:04}.json")), encode(&value)).expect("write");
    }
}

#[test]
fn every_emitted_message_matches_the_schema() {
    let dir = scratch_dir("emitted");
    emit(&dir, "request", 300, json_request(), encode_request);
    emit(&dir, "response", 300, json_response(), encode_response);
    // What the encoder makes of values JSON cannot carry is canonical too, except a
    // DISCONNECT (or a CONNECT with no swarm action), which has no valid JSON form at all.
    emit(
        &dir,
        "any-request",
        300,
        any_request().prop_filter("has a JSON form", |r| request_has_json_form(&r.body)),
        encode_request,
    );
    emit(&dir, "any-response", 300, any_response(), encode_response);
    let verdicts = validate_dir(&dir);
    assert_eq!(verdicts.len(), 1200, "every emitted message was validated");
    let failures: Vec<_> = verdicts
        .iter()
        .filter_map(|(name, error)| error.as_ref().map(|e| (name, e)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} emitted messages break the schema, first: {:?} (files kept in {})",
        failures.len(),
        failures.first(),
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn messages_without_a_json_form_fail_the_schema() {
    let dir = scratch_dir("no-json-form");
    let request = Request {
        peer_id: PeerId::new("p1").expect("id"),
        auth_token: None,
        transaction_id: TransactionId::new("d-1").expect("id"),
        body: RequestBody::Disconnect,
    };
    assert!(!request_has_json_form(&request.body));
    std::fs::write(dir.join("disconnect.json"), encode_request(&request)).expect("write");
    let verdicts = validate_dir(&dir);
    assert!(verdicts["disconnect.json"].is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
