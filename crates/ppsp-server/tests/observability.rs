//! Metrics read back by a real OpenMetrics parser (Python's `prometheus_client`), and the
//! paged statistics documents.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use hyper::StatusCode;
use ppsp_server::ServerConfig;
use support::*;

/// Parses OpenMetrics text with `prometheus_client.openmetrics.parser` and returns every
/// sample as `(name, labels, value)`. The parser rejects malformed exposition outright.
fn parse_openmetrics(text: &str) -> Vec<(String, serde_json::Value, f64)> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value, family.type])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("parser exits");
    assert!(
        output.status.success(),
        "OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Vec<(String, serde_json::Value, f64, String)> =
        serde_json::from_slice(&output.stdout).expect("parser output");
    parsed
        .into_iter()
        .map(|(name, labels, value, _)| (name, labels, value))
        .collect()
}

fn value(samples: &[(String, serde_json::Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, v)| *v)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

#[tokio::test]
async fn metrics_pass_an_openmetrics_parser() {
    let mut config = ServerConfig::default();
    config.limits.max_body_bytes = 4096;
    let server = TestServer::start(config).await;
    let addr = server.http;
    let seed = connect(addr, "seed", 1).await;
    post_xml(addr, join("seed", &seed, "film", "SEED", 2)).await;
    let leech = connect(addr, "leech", 3).await;
    post_xml(addr, join("leech", &leech, "film", "LEECH", 4)).await;
    for (txid, uploaded) in [(5, 1000), (6, 1000), (7, 2500)] {
        let answer = post_xml(
            addr,
            stat_report("seed", &seed, "film", txid, (0, 7, "/w=="), uploaded, 0),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    let answer = post_xml(addr, leave("leech", &leech, "film", 8)).await;
    assert_eq!(answer.status, StatusCode::OK);
    // Too big: refused for its size.
    let answer = post_xml(addr, vec![b' '; 8192]).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A stale token: refused for authentication.
    let answer = post_xml(addr, bare("KEEPALIVE", "seed", "not-the-token", 9)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let text = get(addr, "/metrics").await.text();
    let samples = parse_openmetrics(&text);
    let ok = |method: &str| {
        value(
            &samples,
            "ppsp_requests_total",
            &[("method", method), ("protocol", "xml"), ("status", "OK")],
        )
    };
    assert_eq!(ok("CONNECT"), 2.0);
    assert_eq!(ok("JOIN"), 2.0);
    assert_eq!(ok("STAT_REPORT"), 3.0);
    assert_eq!(ok("LEAVE"), 1.0);
    // Cumulative totals 1000, 1000, 2500: 2500 bytes reported in all.
    assert_eq!(
        value(
            &samples,
            "ppsp_reported_bytes_total",
            &[("direction", "uploaded")]
        ),
        2500.0
    );
    assert_eq!(value(&samples, "ppsp_swarm_joins_total", &[]), 2.0);
    assert_eq!(value(&samples, "ppsp_swarm_leaves_total", &[]), 1.0);
    assert_eq!(
        value(&samples, "ppsp_refusals_total", &[("cause", "body_limit")]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "ppsp_refusals_total",
            &[("cause", "authentication")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "ppsp_peers", &[("mode", "SEED")]), 1.0);
    assert_eq!(value(&samples, "ppsp_peers", &[("mode", "LEECH")]), 0.0);
    assert_eq!(value(&samples, "ppsp_sessions", &[]), 2.0);
    assert_eq!(
        value(
            &samples,
            "ppsp_request_duration_seconds_count",
            &[("method", "STAT_REPORT")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "ppsp_request_duration_seconds_bucket",
            &[("method", "STAT_REPORT"), ("le", "+Inf")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "ppsp_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let started = value(&samples, "process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        started <= now && started > now - 600.0,
        "{started} vs {now}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn stats_page_swarms_and_peers() {
    let mut config = ServerConfig::default();
    config.server.history_sample_secs = 1;
    let server = TestServer::start(config).await;
    let addr = server.http;
    // Swarm sizes 3, 2 and 1 (swarm-3 is the largest).
    let mut txid = 0;
    for size in 1..=3 {
        for member in 0..size {
            txid += 2;
            let peer = format!("p{size}-{member}");
            let token = connect(addr, &peer, txid).await;
            let answer = post_xml(
                addr,
                join(&peer, &token, &format!("swarm-{size}"), "LEECH", txid + 1),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK);
        }
    }
    let json = |path: String| async move {
        let answer = get(addr, &path).await;
        (
            answer.status,
            serde_json::from_slice::<serde_json::Value>(&answer.body()).expect("json"),
        )
    };
    let (_, page) = json("/api/stats?limit=2&peers=0".to_owned()).await;
    assert_eq!(page["totals"]["swarms"], 3);
    assert_eq!(page["totals"]["peers"], 6);
    assert_eq!(page["swarms_matching"], 3);
    let ids: Vec<&str> = page["swarms"]
        .as_array()
        .expect("swarms")
        .iter()
        .map(|s| s["swarm_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["swarm-3", "swarm-2"]);
    assert_eq!(page["swarms"][0]["peers"].as_array().map(Vec::len), Some(0));
    assert_eq!(page["swarms"][0]["peers_truncated"], true);
    let (_, page) = json("/api/stats?limit=2&offset=2".to_owned()).await;
    assert_eq!(page["swarms"][0]["swarm_id"], "swarm-1");
    let (_, page) = json("/api/stats?q=ARM-2".to_owned()).await;
    assert_eq!(page["swarms_matching"], 1);
    assert_eq!(page["swarms"][0]["peer_count"], 2);

    let (status, detail) = json("/api/stats?swarm=swarm-3&limit=2&offset=1".to_owned()).await;
    assert_eq!(status, StatusCode::OK);
    let peers: Vec<&str> = detail["swarm"]["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["peer_id"].as_str().expect("id"))
        .collect();
    assert_eq!(peers, ["p3-1", "p3-2"]);
    assert_eq!(detail["swarm"]["peers_by_mode"]["LEECH"], 3);
    let (status, _) = json("/api/stats?swarm=nobody".to_owned()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The history fills every second; two samples make the first point.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, history) = json("/api/history".to_owned()).await;
        let points = history["points"].as_array().cloned().unwrap_or_default();
        if let Some(last) = points.last() {
            assert_eq!(history["interval_secs"], 1);
            assert_eq!(last["peers"], 6);
            assert!(last["requests_per_second"]["JOIN"].is_number());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no history point");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.stop().await.expect("clean stop");
}

/// Metric names (`ppsp_...`, `process_...`) in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut start = None;
    for (index, byte) in bytes.iter().chain([&b' ']).enumerate() {
        let word = byte.is_ascii_alphanumeric() || *byte == b'_';
        match (word, start) {
            (true, None) => start = Some(index),
            (false, Some(from)) => {
                let name = &expr[from..index];
                if name.starts_with("ppsp_") || name.starts_with("process_") {
                    names.push(name.to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    names
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_exported_series() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana-tracker.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard file"))
            .expect("JSON");
    let server = TestServer::start(ServerConfig::default()).await;
    // One request of each kind the panels chart, so labelled series exist.
    let token = connect(server.http, "g", 1).await;
    post_xml(server.http, join("g", &token, "s", "SEED", 2)).await;
    let samples = parse_openmetrics(&get(server.http, "/metrics").await.text());
    server.stop().await.expect("clean stop");
    let exported: std::collections::BTreeSet<&str> =
        samples.iter().map(|(name, _, _)| name.as_str()).collect();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                used += 1;
                assert!(
                    exported.contains(name.as_str()),
                    "panel {:?} uses {name}, which /metrics does not export",
                    panel["title"]
                );
            }
        }
    }
    assert!(used >= 15, "only {used} series references");
}
