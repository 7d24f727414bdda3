//! Configuration file parsing, checked against the names the documentation gives.

use ppsp_server::config::{JsonErrorHttpStatus, ServerConfig};

#[test]
fn json_error_http_status_accepts_the_documented_spellings() {
    for (text, expected) in [
        ("mirror", JsonErrorHttpStatus::Mirror),
        ("always_200", JsonErrorHttpStatus::Always200),
    ] {
        let toml = format!("[server]\njson_error_http_status = \"{text}\"\n");
        let config = ServerConfig::from_toml(&toml)
            .unwrap_or_else(|err| panic!("{text:?} must parse: {err}"));
        assert_eq!(config.server.json_error_http_status, expected, "{text}");
    }
    assert!(ServerConfig::from_toml("[server]\njson_error_http_status = \"sometimes\"\n").is_err());
}

#[test]
fn printed_configuration_round_trips_with_always_200() {
    let mut config = ServerConfig::default();
    config.server.json_error_http_status = JsonErrorHttpStatus::Always200;
    let text = config.commented_toml();
    assert!(
        text.contains("json_error_http_status = \"always_200\""),
        "printed form must use the documented name:\n{text}"
    );
    let parsed = ServerConfig::from_toml(&text).expect("printed configuration parses");
    assert_eq!(parsed, config);
}

#[test]
fn connection_threads_are_bounded() {
    let config = ServerConfig::from_toml("[server]\nconnection_threads = 3\n").expect("parses");
    assert_eq!(config.server.connection_threads, 3);
    let refused = ServerConfig::from_toml("[server]\nconnection_threads = 5000\n")
        .and_then(|config| config.validate().map(|()| config));
    let message = refused.expect_err("5000 threads refused").to_string();
    assert!(message.contains("connection_threads"), "{message}");
}
