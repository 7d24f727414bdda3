//! The JSON codec against hand-written RFC 7846 messages: every flow of the protocol, every
//! error body, each tolerant-reader quirk, and malformed bodies that must be refused.

mod json_support;

use std::net::IpAddr;

use json_support::{fixture_dir, fixtures, scratch_dir, validate_dir};
use ppsp_proto::json::{decode, decode_request, decode_response, encode_request, encode_response};
use ppsp_proto::*;

fn limits() -> Limits {
    Limits::default()
}

fn load(kind: &str, name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir(kind).join(name)).expect("fixture exists")
}

fn request(name: &str) -> Request {
    decode_request(&load("valid", name), &limits())
        .unwrap_or_else(|e| panic!("{name} must decode: {e}"))
}

fn response(name: &str) -> Response {
    decode_response(&load("valid", name), &limits())
        .unwrap_or_else(|e| panic!("{name} must decode: {e}"))
}

fn encode(message: &Message) -> String {
    match message {
        Message::Request(r) => encode_request(r),
        Message::Response(r) => encode_response(r),
    }
}

#[test]
fn every_valid_fixture_decodes_and_round_trips() {
    for (name, bytes) in fixtures("valid") {
        let message = decode(&bytes, &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
        match &message {
            Message::Request(_) => assert!(name.contains("request"), "{name} decoded as request"),
            Message::Response(_) => {
                assert!(name.contains("response"), "{name} decoded as response")
            }
        }
        let encoded = encode(&message);
        let again = decode(encoded.as_bytes(), &limits())
            .unwrap_or_else(|e| panic!("{name} re-encoded does not decode: {e}\n{encoded}"));
        assert_eq!(again, message, "{name}");
        // Canonical fixtures are written exactly as the encoder writes them, up to layout.
        let original: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let emitted: serde_json::Value = serde_json::from_str(&encoded).expect("json");
        if !name.contains("unknown-members") {
            assert_eq!(emitted, original, "{name}: canonical form differs");
        }
    }
}

#[test]
fn seeder_connect_joins_three_swarms() {
    let request = request("01-connect-seeder-request.json");
    assert_eq!(request.peer_id.as_str(), "origin-7a41c0");
    assert_eq!(request.transaction_id.as_str(), "s-0001");
    assert_eq!(request.auth_token, None);
    let RequestBody::Connect(connect) = request.body else {
        panic!("expected CONNECT, got {:?}", request.body);
    };
    assert_eq!(connect.auth, None);
    assert_eq!(connect.peer_num, None);
    let swarms: Vec<_> = connect
        .swarm_actions
        .iter()
        .map(|a| (a.swarm_id.as_str(), a.action, a.mode))
        .collect();
    assert_eq!(
        swarms,
        [
            ("concert-2026", SwarmActionKind::Join, PeerMode::Seed),
            ("lecture-week-12", SwarmActionKind::Join, PeerMode::Seed),
            ("radio-one", SwarmActionKind::Join, PeerMode::Seed),
        ]
    );
    let address = &connect.addresses[0];
    assert_eq!(address.ip, "192.0.2.10".parse::<IpAddr>().expect("ip"));
    assert_eq!(address.port, 7100);
    assert_eq!(address.priority, Some(20));
    assert_eq!(address.kind, Some(AddressType::Host));
    assert_eq!(address.connection, Some(ConnectionKind::Wired));
    assert_eq!(address.asn.as_deref(), Some("64496"));
    assert_eq!(address.peer_protocol.as_deref(), Some("PPSP-PP"));
}

#[test]
fn leech_connect_carries_peer_num_and_two_families() {
    let RequestBody::Connect(connect) = request("03-connect-leech-request.json").body else {
        panic!("expected CONNECT");
    };
    assert_eq!(
        connect.peer_num,
        Some(PeerNum {
            count: 12,
            ability_nat: Some(AbilityNat::Turn),
            concurrent_links: Some(0),
            online_time: Some(5),
            upload_bandwidth: Some(512),
        })
    );
    assert_eq!(connect.addresses.len(), 2);
    assert_eq!(
        connect.addresses[1].ip,
        "2001:db8:1::abcd".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(connect.swarm_actions[0].mode, PeerMode::Leech);
}

#[test]
fn leech_connect_response_has_reflexive_address_and_peer_list() {
    let response = response("04-connect-leech-response.json");
    assert_eq!(response.status, Status::Ok);
    assert_eq!(response.reflexive_addresses.len(), 1);
    assert_eq!(
        response.reflexive_addresses[0].kind,
        Some(AddressType::Reflexive)
    );
    let result = &response.swarm_results[0];
    assert!(result.ok);
    assert_eq!(result.peers.len(), 2);
    assert_eq!(result.peers[1].peer_id.as_str(), "viewer-0c11aa");
    assert_eq!(result.peers[1].addresses.len(), 1);
    assert_eq!(result.peers[1].addresses[0].kind, Some(AddressType::Proxy));
    assert_eq!(result.peers[1].mode, None);
}

#[test]
fn channel_switch_leaves_and_joins_in_one_connect() {
    let RequestBody::Connect(connect) = request("05-connect-switch-request.json").body else {
        panic!("expected CONNECT");
    };
    assert_eq!(connect.swarm_actions[0].action, SwarmActionKind::Leave);
    assert_eq!(connect.swarm_actions[1].action, SwarmActionKind::Join);
    let response = response("06-connect-switch-response.json");
    assert!(response.swarm_results[0].peers.is_empty());
    assert_eq!(response.swarm_results[1].peers.len(), 1);
}

#[test]
fn leave_all_connect() {
    let RequestBody::Connect(connect) = request("07-connect-leave-all-request.json").body else {
        panic!("expected CONNECT");
    };
    assert!(
        connect
            .swarm_actions
            .iter()
            .all(|a| a.action == SwarmActionKind::Leave)
    );
    assert_eq!(
        response("08-connect-leave-all-response.json")
            .swarm_results
            .len(),
        3
    );
}

#[test]
fn find_and_its_answer() {
    let RequestBody::Find(find) = request("09-find-request.json").body else {
        panic!("expected FIND");
    };
    assert_eq!(find.swarm_id.as_str(), "radio-one");
    let peer_num = find.peer_num.expect("peer_num");
    assert_eq!(peer_num.count, 20);
    assert_eq!(peer_num.ability_nat, Some(AbilityNat::NoNat));
    assert_eq!(peer_num.online_time, Some(310));
    assert_eq!(peer_num.concurrent_links, None);
    let response = response("10-find-response.json");
    assert!(response.reflexive_addresses[0].ip.is_ipv6());
    assert_eq!(response.swarm_results[0].peers.len(), 2);
}

#[test]
fn stat_report_and_keep_alive() {
    let RequestBody::StatReport(report) = request("11-stat-report-request.json").body else {
        panic!("expected STAT_REPORT");
    };
    assert_eq!(report.stats.len(), 2);
    let Stat::StreamStats(stats) = &report.stats[0] else {
        panic!("expected stream stats");
    };
    assert_eq!(
        stats.swarm_id.as_ref().map(SwarmId::as_str),
        Some("concert-2026")
    );
    assert_eq!(stats.uploaded_bytes, Some(1_048_576_000));
    assert_eq!(stats.downloaded_bytes, Some(0));
    assert_eq!(stats.available_bandwidth, Some(90_000));
    assert_eq!(stats.concurrent_links, Some(31));
    assert_eq!(
        request("13-keepalive-request.json").body,
        RequestBody::StatReport(StatReport::default())
    );
    let ack = response("14-keepalive-response.json");
    assert_eq!(ack, Response::status(Status::Ok, Some(tid("v-0004"))));
}

#[test]
fn partial_connect_result() {
    let response = response("15-connect-partial-response.json");
    assert_eq!(response.status, Status::Ok);
    assert!(response.swarm_results[0].ok);
    assert!(!response.swarm_results[1].ok);
}

fn tid(text: &str) -> TransactionId {
    TransactionId::new(text).expect("valid transaction id")
}

#[test]
fn error_bodies_map_to_statuses() {
    let expected = [
        (
            "16-error-01-bad-request-response.json",
            Status::InvalidSyntax,
        ),
        (
            "17-error-02-unsupported-version-response.json",
            Status::VersionNotSupported,
        ),
        (
            "18-error-03-forbidden-action-response.json",
            Status::MessageForbidden,
        ),
        (
            "19-error-04-internal-error-response.json",
            Status::InternalError,
        ),
        (
            "20-error-05-service-unavailable-response.json",
            Status::TemporarilyOverloaded,
        ),
        (
            "21-error-06-authentication-required-response.json",
            Status::AuthenticationRequired,
        ),
    ];
    for (code, (name, status)) in (1u8..).zip(expected) {
        let decoded = response(name);
        assert_eq!(decoded.status, status, "{name}");
        assert_eq!(status.json_error_code(), code);
        assert_eq!(
            decoded,
            Response::status(status, Some(tid(&format!("e-{code:04}"))))
        );
    }
    assert_eq!(
        response("22-error-unreadable-transaction-id-response.json"),
        Response::status(Status::InvalidSyntax, None)
    );
}

#[test]
fn unknown_members_are_ignored() {
    let RequestBody::Find(find) = request("23-find-request-with-unknown-members.json").body else {
        panic!("expected FIND");
    };
    assert_eq!(find.swarm_id.as_str(), "radio-one");
    assert_eq!(find.peer_num, None);
}

#[test]
fn object_not_found_is_sent_as_forbidden_action() {
    let encoded = encode_response(&Response::status(Status::ObjectNotFound, Some(tid("x"))));
    let decoded = decode_response(encoded.as_bytes(), &limits()).expect("decodes");
    assert_eq!(decoded.status, Status::MessageForbidden);
}

// --- tolerant reader ---------------------------------------------------------------------------

fn tolerant(name: &str) -> Message {
    let bytes = load("tolerant", name);
    let message = decode(&bytes, &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Accepted on input, never emitted: the encoder writes something else, which decodes to
    // the same value.
    let encoded = encode(&message);
    let original: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let emitted: serde_json::Value = serde_json::from_str(&encoded).expect("json");
    assert_ne!(emitted, original, "{name}: the quirk was emitted");
    assert_eq!(
        decode(encoded.as_bytes(), &limits()).expect("canonical form decodes"),
        message
    );
    message
}

#[test]
fn t1_single_objects_instead_of_arrays() {
    let Message::Request(request) = tolerant("t1-connect-single-objects-request.json") else {
        panic!("request expected");
    };
    let RequestBody::Connect(connect) = request.body else {
        panic!("CONNECT expected");
    };
    assert_eq!(connect.addresses.len(), 1);
    assert_eq!(connect.swarm_actions.len(), 1);

    let Message::Response(response) = tolerant("t1-single-swarm-result-response.json") else {
        panic!("response expected");
    };
    assert_eq!(response.swarm_results.len(), 1);
    assert_eq!(response.swarm_results[0].peers.len(), 1);

    let Message::Request(request) = tolerant("t1-single-stat-request.json") else {
        panic!("request expected");
    };
    let RequestBody::StatReport(report) = request.body else {
        panic!("STAT_REPORT expected");
    };
    assert_eq!(report.stats.len(), 1);
}

#[test]
fn t2_numbers_as_digit_strings() {
    let Message::Request(request) = tolerant("t2-peer-num-strings-request.json") else {
        panic!("request expected");
    };
    let RequestBody::Connect(connect) = request.body else {
        panic!("CONNECT expected");
    };
    let peer_num = connect.peer_num.expect("peer_num");
    assert_eq!(peer_num.concurrent_links, Some(4));
    assert_eq!(peer_num.online_time, Some(120));
    assert_eq!(peer_num.upload_bandwidth, Some(2048));
}

#[test]
fn t3_capital_stat_key() {
    let Message::Request(request) = tolerant("t3-capital-stat-request.json") else {
        panic!("request expected");
    };
    let RequestBody::StatReport(report) = request.body else {
        panic!("STAT_REPORT expected");
    };
    assert_eq!(
        report.stats,
        [Stat::StreamStats(StreamStats {
            swarm_id: Some(SwarmId::new("radio-one").expect("id")),
            uploaded_bytes: Some(5),
            downloaded_bytes: Some(6),
            available_bandwidth: Some(7),
            concurrent_links: Some(8),
        })]
    );
}

#[test]
fn t4_find_without_wrapper() {
    let Message::Request(request) = tolerant("t4-flat-find-request.json") else {
        panic!("request expected");
    };
    let RequestBody::Find(find) = request.body else {
        panic!("FIND expected");
    };
    assert_eq!(find.swarm_id.as_str(), "radio-one");
    assert_eq!(find.peer_num.map(|p| p.count), Some(3));
}

#[test]
fn t5_addresses_without_type_or_priority() {
    let Message::Response(response) = tolerant("t5-peer-addr-without-type-response.json") else {
        panic!("response expected");
    };
    let reflexive = &response.reflexive_addresses[0];
    assert_eq!(reflexive.kind, Some(AddressType::Reflexive));
    assert_eq!(reflexive.priority, Some(0));
    let peer = &response.swarm_results[0].peers[0].addresses[0];
    assert_eq!(peer.kind, Some(AddressType::Host));
    assert_eq!(peer.priority, Some(0));
}

#[test]
fn t6_error_code_as_two_digit_string() {
    let Message::Response(response) = tolerant("t6-error-code-string-response.json") else {
        panic!("response expected");
    };
    assert_eq!(response.status, Status::MessageForbidden);
}

// --- malformed ---------------------------------------------------------------------------------

/// What each malformed fixture must produce: the error, the PPSP status it maps to, and
/// whether the transaction ID was recovered for the error response.
fn expected_error(name: &str) -> (DecodeErrorKind, Status, Option<&'static str>) {
    use DecodeErrorKind as K;
    let bad = Status::InvalidSyntax;
    let value = |field, reason| K::InvalidValue { field, reason };
    match name {
        "m01-connect-missing-swarm-action.json" => {
            (K::Missing("swarm_action"), bad, Some("m-0001"))
        }
        "m02-xml-method-join.json" => (K::UnknownMethod("JOIN".into()), bad, Some("m-0002")),
        "m03-failed-response-with-body.json" => (
            value("swarm_result", "not allowed in a failed response"),
            bad,
            Some("m-0003"),
        ),
        "m04-numeric-transaction-id.json" => {
            (value("transaction_id", "must be a string"), bad, None)
        }
        "m05-version-2.json" => (
            K::UnsupportedVersion("2".into()),
            Status::VersionNotSupported,
            Some("m-0005"),
        ),
        "m06-version-string.json" => (K::BadVersion, bad, Some("m-0006")),
        "m07-peer-count-string.json" => (
            value("peer_count", "must be a non-negative integer"),
            bad,
            Some("m-0007"),
        ),
        "m08-error-code-with-success.json" => (
            value("error_code", "must be 0 exactly when response_type is 0"),
            bad,
            Some("m-0008"),
        ),
        "m09-success-type-failed-code-zero.json" => (
            value("error_code", "must be 0 exactly when response_type is 0"),
            bad,
            Some("m-0009"),
        ),
        "m10-address-family-mismatch.json" => {
            (value("address", "not an IPv6 address"), bad, Some("m-0010"))
        }
        "m11-lowercase-request-type.json" => {
            (K::UnknownMethod("connect".into()), bad, Some("m-0011"))
        }
        "m12-empty-stat-list.json" => (
            value("stat", "needs at least one entry"),
            bad,
            Some("m-0012"),
        ),
        "m13-port-out-of-range.json" => (value("port", "must be 0 to 65535"), bad, Some("m-0013")),
        "m14-missing-peer-id.json" => (K::Missing("peer_id"), bad, Some("m-0014")),
        "m15-seed-peer-mode.json" => (
            value("peer_mode", "must be SEEDER or LEECH"),
            bad,
            Some("m-0015"),
        ),
        "m16-wrong-root.json" => (K::WrongRoot("PPSPTrackerProtocolX".into()), bad, None),
        "m17-ability-nat-proxy.json" => (
            value("ability_nat", "must be NO_NAT, STUN or TURN"),
            bad,
            Some("m-0017"),
        ),
        "m18-both-directions.json" => (K::BothDirections, bad, Some("m-0018")),
        "m19-deep-nesting.json" => (K::TooDeep { limit: 16 }, bad, None),
        other => panic!("no expectation written for malformed fixture {other}"),
    }
}

#[test]
fn every_malformed_fixture_is_refused_for_its_reason() {
    for (name, bytes) in fixtures("malformed") {
        let (kind, status, transaction_id) = expected_error(&name);
        let error = decode(&bytes, &limits()).expect_err(&name);
        assert_eq!(error.kind, kind, "{name}");
        assert_eq!(error.status(), status, "{name}");
        assert_eq!(
            error.transaction_id.as_ref().map(TransactionId::as_str),
            transaction_id,
            "{name}"
        );
        // The direction-specific decoders refuse it too.
        assert!(decode_request(&bytes, &limits()).is_err(), "{name}");
        assert!(decode_response(&bytes, &limits()).is_err(), "{name}");
    }
}

/// A CONNECT with `count` swarm actions (compact, generated rather than stored).
fn connect_with_actions(count: usize) -> Vec<u8> {
    let action = r#"{"swarm_id":"s","action":"JOIN","peer_mode":"LEECH"}"#;
    let actions = vec![action; count].join(",");
    format!(
        r#"{{"PPSPTrackerProtocol":{{"version":1,"request_type":"CONNECT","transaction_id":"big","peer_id":"p","connect":{{"swarm_action":[{actions}]}}}}}}"#
    )
    .into_bytes()
}

#[test]
fn huge_arrays_are_refused() {
    let limits = limits();
    let at_limit = connect_with_actions(limits.max_list_len);
    assert!(decode_request(&at_limit, &limits).is_ok());
    let error = decode_request(&connect_with_actions(limits.max_list_len + 1), &limits)
        .expect_err("one too many");
    assert_eq!(
        error.kind,
        DecodeErrorKind::TooMany {
            what: "swarm_action",
            limit: limits.max_list_len
        }
    );
    assert_eq!(error.transaction_id, Some(tid("big")));
}

#[test]
fn body_size_is_checked_before_anything_else() {
    let small = Limits {
        max_body_bytes: 100,
        ..Limits::default()
    };
    let body = load("valid", "03-connect-leech-request.json");
    let error = decode(&body, &small).expect_err("too large");
    assert_eq!(
        error.kind,
        DecodeErrorKind::TooLarge {
            size: body.len(),
            limit: 100
        }
    );
    // Even garbage of the wrong size is reported as too large, not as malformed.
    let error = decode(&[b'x'; 101], &small).expect_err("too large");
    assert!(matches!(error.kind, DecodeErrorKind::TooLarge { .. }));
}

#[test]
fn depth_is_checked_before_parsing() {
    // Unbalanced, unparsable, and deep: the depth limit speaks first.
    let body = "[".repeat(10_000);
    let error = decode(body.as_bytes(), &limits()).expect_err("too deep");
    assert_eq!(error.kind, DecodeErrorKind::TooDeep { limit: 16 });
    // The deepest canonical message, a peer list, needs nine levels (root, message,
    // swarm_result, its entry, peer_group, peer_info, its entry, peer_addr, ip_address).
    let with_depth = |max_depth| Limits {
        max_depth,
        ..Limits::default()
    };
    let peer_list = load("valid", "04-connect-leech-response.json");
    assert!(decode(&peer_list, &with_depth(9)).is_ok());
    assert_eq!(
        decode(&peer_list, &with_depth(8)).map_err(|e| e.kind),
        Err(DecodeErrorKind::TooDeep { limit: 8 })
    );
}

#[test]
fn not_json_is_malformed() {
    for body in [
        &b""[..],
        b"<xml/>",
        b"{",
        b"{\"PPSPTrackerProtocol\":",
        b"\xff\xfe{}",
    ] {
        let error = decode(body, &limits()).expect_err("not JSON");
        assert!(
            matches!(error.kind, DecodeErrorKind::Malformed(_)),
            "{body:?}"
        );
        assert_eq!(error.status(), Status::InvalidSyntax);
    }
    let error = decode(b"[1]", &limits()).expect_err("array root");
    assert!(matches!(error.kind, DecodeErrorKind::WrongRoot(_)));
}

#[test]
fn direction_specific_decoders_refuse_the_other_direction() {
    let request = load("valid", "09-find-request.json");
    let error = decode_response(&request, &limits()).expect_err("request");
    assert_eq!(error.kind, DecodeErrorKind::Missing("response_type"));
    assert_eq!(error.transaction_id, Some(tid("v-0003")));
    let response = load("valid", "10-find-response.json");
    let error = decode_request(&response, &limits()).expect_err("response");
    assert_eq!(error.kind, DecodeErrorKind::Missing("request_type"));
}

// --- schema ------------------------------------------------------------------------------------

#[test]
fn schema_accepts_canonical_fixtures_and_refuses_the_rest() {
    let verdicts = |kind: &str| {
        let dir = scratch_dir(&format!("fixtures-{kind}"));
        for (name, bytes) in fixtures(kind) {
            std::fs::write(dir.join(&name), bytes).expect("write");
        }
        let verdicts = validate_dir(&dir);
        assert_eq!(verdicts.len(), fixtures(kind).len(), "every file validated");
        let _ = std::fs::remove_dir_all(&dir);
        verdicts
    };
    for (name, error) in verdicts("valid") {
        assert_eq!(error, None, "{name} must match the schema");
    }
    for (name, error) in verdicts("malformed") {
        assert!(error.is_some(), "{name} must not match the schema");
    }
    // The schema describes what we emit; the quirks we tolerate are outside it.
    for (name, error) in verdicts("tolerant") {
        assert!(
            error.is_some(),
            "{name} is not canonical and must not match"
        );
    }
}

#[test]
fn huge_array_fails_the_schema_too() {
    let dir = scratch_dir("huge");
    std::fs::write(
        dir.join("huge.json"),
        connect_with_actions(limits().max_list_len + 1),
    )
    .expect("write");
    let verdicts = validate_dir(&dir);
    assert!(verdicts["huge.json"].is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_is_read_in_any_form_and_written_in_rfc_5952_form() {
    let cases = [
        ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ];
    for (input, canonical) in cases {
        let body = format!(
            r#"{{"PPSPTrackerProtocol":{{"version":1,"response_type":0,"error_code":0,"transaction_id":"x",
               "peer_addr":{{"ip_address":{{"address_type":"ipv6","address":"{input}"}},"port":1,"priority":0,"type":"REFLEXIVE"}}}}}}"#
        );
        let response = decode_response(body.as_bytes(), &limits()).expect(input);
        let encoded = encode_response(&response);
        assert!(
            encoded.contains(&format!(r#""address":"{canonical}""#)),
            "{input}: {encoded}"
        );
    }
}
