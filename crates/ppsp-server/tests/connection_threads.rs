//! Connections run on the configured number of connection threads, which end with the
//! server. Alone in its test binary, so no other test's server adds threads to the count.

mod support;

use ppsp_server::ServerConfig;
use support::{TestServer, connect};

/// Threads of this process named like the server's connection threads.
fn connection_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with("ppsp-conn-"))
        .count()
}

#[tokio::test]
async fn connections_are_spread_over_the_threads_which_end_with_the_server() {
    let mut config = ServerConfig::default();
    config.server.connection_threads = 3;
    let server = TestServer::start(config).await;
    // More connections than threads, each served (every thread gets two in turn).
    for (index, txid) in (1..=6).enumerate() {
        let token = connect(server.http, &format!("spread-{index}"), txid).await;
        assert!(!token.is_empty());
    }
    assert_eq!(connection_threads(), 3);
    server.stop().await.expect("clean stop");
    // The threads are joined before `serve` returns.
    assert_eq!(connection_threads(), 0);
}
