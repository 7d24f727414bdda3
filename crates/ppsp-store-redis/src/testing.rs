//! Real `redis-server` instances for tests: one server, or a cluster of three primaries
//! (with a replica each, or none), on free loopback ports in a temporary directory, ready
//! when they answer. They are stopped (by their process IDs) and their directory removed on
//! drop.
//!
//! Each server runs under a small `sh` supervisor that holds the read end of a pipe from
//! the test process: when the test process ends in any way (its last test done, a panic, a
//! SIGKILL), the pipe closes and the supervisor kills its server. So a cluster kept in a
//! `static` for a whole test binary, which is never dropped, does not outlive it.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

/// How long a server may take to answer its first PING, or a cluster to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Sends one inline command and reads what is there after the first reply line.
fn command(port: u16, line: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    let mut buffer = vec![0u8; 16 << 10];
    let read = stream.read(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer[..read]).into_owned())
}

/// Sends two inline commands on one connection and returns what follows.
fn command_pair(port: u16, first: &str, second: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{first}\r\n{second}\r\n").as_bytes())?;
    let mut reply = String::new();
    let mut buffer = [0u8; 1024];
    // Both replies: "+OK" then the second.
    while reply.matches("\r\n").count() < 2 {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        reply.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    Ok(reply)
}

fn wait_until(mut ready: impl FnMut() -> bool, what: &str) -> io::Result<()> {
    let start = Instant::now();
    while start.elapsed() < READY_WITHIN {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} not ready"),
    ))
}

/// A free port for a cluster node: its bus port (10,000 higher) must exist and be free.
fn free_cluster_port() -> io::Result<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        if port <= 55_535 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair for a cluster node"))
}

fn scratch_dir(label: &str) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ppsp-redis-{label}-{}-{}",
        std::process::id(),
        free_port()?
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs `redis-server` with the script's arguments and kills it (SIGKILL, then reaps it)
/// once its standard input reaches end of file; exits when the server exits, removing the
/// server's directory (`$PPSP_REDIS_DIR`: a cluster node writes its `nodes.conf` there, and
/// a server kept in a `static` is never dropped). The watcher reads a copy of standard
/// input (descriptor 3) because the shell gives a background command `/dev/null` as its
/// input.
const SUPERVISOR: &str = r#"exec 3<&0
redis-server "$@" </dev/null >/dev/null 2>&1 3<&- &
server=$!
( read -r line <&3; kill -9 "$server" 2>/dev/null ) &
watcher=$!
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
rm -rf "$PPSP_REDIS_DIR"
exit "$status""#;

/// One running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    /// The supervisor (see [`SUPERVISOR`]).
    child: Child,
    /// The write end of the supervisor's standard input: closing it stops the server.
    lifeline: Option<ChildStdin>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a standalone server.
    ///
    /// # Errors
    /// When `redis-server` cannot be started or does not answer in time.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> io::Result<Self> {
        let cluster = extra.contains(&"--cluster-enabled");
        // A port can be taken between the probe and the bind: try a few.
        let mut last_error = io::Error::other("redis-server did not start");
        for _ in 0..5 {
            let dir = scratch_dir("server")?;
            let port = if cluster {
                free_cluster_port()?
            } else {
                free_port()?
            };
            match Self::spawn(port, dir, extra) {
                Ok(server) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn spawn(port: u16, dir: PathBuf, extra: &[&str]) -> io::Result<Self> {
        // A restart reuses the directory its supervisor removed.
        std::fs::create_dir_all(&dir)?;
        let mut child = Command::new("sh")
            .args(["-c", SUPERVISOR, "redis-server"])
            .env("PPSP_REDIS_DIR", &dir)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lifeline = child.stdin.take();
        let mut server = Self {
            child,
            lifeline,
            port,
            dir,
        };
        wait_until(
            || {
                matches!(server.child.try_wait(), Ok(Some(_)))
                    || command(port, "PING").is_ok_and(|r| r.starts_with("+PONG"))
            },
            "redis-server",
        )?;
        match server.child.try_wait() {
            Ok(None) => Ok(server),
            _ => Err(io::Error::other("redis-server exited (port taken?)")),
        }
    }

    /// Starts a killed standalone server again on the same port (its data is gone).
    ///
    /// # Errors
    /// When it cannot be started or does not answer in time.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let dir = std::mem::take(&mut self.dir);
        let fresh = Self::spawn(self.port, dir, &[])?;
        *self = fresh;
        Ok(())
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits until it is gone.
    pub fn kill(&mut self) {
        // The supervisor kills its server when its input closes, then exits.
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Three primaries with one replica each, or with none.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    replicas: usize,
}

/// Primaries of every cluster these helpers start.
const PRIMARIES: usize = 3;

impl RedisCluster {
    /// Starts six cluster-enabled servers and joins them with `redis-cli --cluster create`:
    /// three primaries with one replica each.
    ///
    /// # Errors
    /// When a server cannot be started or the cluster does not become ready in time.
    pub fn start() -> io::Result<Self> {
        Self::start_with_replicas(1)
    }

    /// Three primaries and no replica: the smallest cluster whose slots are spread over
    /// several servers, for tests about slots rather than failover.
    ///
    /// # Errors
    /// As for [`RedisCluster::start`].
    pub fn start_primaries_only() -> io::Result<Self> {
        Self::start_with_replicas(0)
    }

    fn start_with_replicas(replicas: usize) -> io::Result<Self> {
        // A node can vanish between its start and `redis-cli --cluster create` (a port taken
        // by someone else, say), and the creation would then wait for it forever: each
        // attempt is bounded, and a failed one is retried with fresh nodes.
        let mut last_error = io::Error::other("redis cluster did not start");
        for _ in 0..3 {
            match Self::try_start(replicas) {
                Ok(cluster) => return Ok(cluster),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn try_start(replicas: usize) -> io::Result<Self> {
        let count = PRIMARIES * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut create = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut status = None;
        let created = wait_until(
            || {
                status = create.try_wait().ok().flatten();
                status.is_some()
            },
            "redis-cli --cluster create",
        );
        if created.is_err() {
            let _ = create.kill();
            let _ = create.wait();
        }
        created?;
        if !status.is_some_and(|status| status.success()) {
            return Err(io::Error::other("redis-cli --cluster create failed"));
        }
        let cluster = Self { nodes, replicas };
        wait_until(|| cluster.ready(), "redis cluster")?;
        Ok(cluster)
    }

    /// Every node says the cluster is up and each of the three primaries has its replicas.
    pub fn ready(&self) -> bool {
        self.nodes.iter().all(|n| {
            command(n.port(), "CLUSTER INFO").is_ok_and(|r| r.contains("cluster_state:ok"))
        }) && self.primaries().len() == PRIMARIES
            && self
                .nodes
                .iter()
                .filter(|n| command(n.port(), "ROLE").is_ok_and(|r| r.contains("slave")))
                .count()
                == PRIMARIES * self.replicas
    }

    /// Ports of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| command(n.port(), "ROLE").is_ok_and(|r| r.contains("master")))
            .map(RedisServer::port)
            .collect()
    }

    /// `redis-cluster://127.0.0.1:P1,...` naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of(&self, key: &str) -> Option<u16> {
        let slot = command(
            self.nodes.first()?.port(),
            &format!("CLUSTER KEYSLOT {key}"),
        )
        .ok()?;
        let slot: u16 = slot.trim().trim_start_matches(':').parse().ok()?;
        self.primaries()
            .into_iter()
            .find(|port| owns_slot(*port, slot))
    }

    /// True when a replica of the primary on `primary` holds field `field` of hash `key`
    /// (replication is asynchronous).
    pub fn replicated(&self, primary: u16, key: &str, field: &str) -> bool {
        self.nodes.iter().filter(|n| n.port() != primary).any(|n| {
            command(n.port(), "ROLE").is_ok_and(|r| r.contains(&primary.to_string()))
                && command_pair(n.port(), "READONLY", &format!("HEXISTS {key} {field}"))
                    .is_ok_and(|r| r.contains(":1"))
        })
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        // Dropping the node kills it and removes its directory.
        self.nodes.retain(|n| n.port() != port);
    }

    /// Waits until a replica took over every slot again (`cluster_state:ok` everywhere).
    ///
    /// # Errors
    /// When the cluster does not recover in time.
    pub fn wait_healthy(&self) -> io::Result<()> {
        wait_until(
            || {
                self.nodes.iter().all(|n| {
                    command(n.port(), "CLUSTER INFO").is_ok_and(|r| r.contains("cluster_state:ok"))
                }) && self.primaries().len() == PRIMARIES
            },
            "redis cluster after failover",
        )
    }
}

/// True when the node on `port` is a primary whose slot ranges (in its own line of
/// `CLUSTER NODES`) include `slot`.
fn owns_slot(port: u16, slot: u16) -> bool {
    command(port, "CLUSTER NODES").is_ok_and(|nodes| {
        nodes.lines().any(|line| {
            line.contains("myself") && line.contains("master") && {
                line.split_whitespace().skip(8).any(|range| {
                    let mut bounds = range.split('-');
                    match (
                        bounds.next().and_then(|a| a.parse::<u16>().ok()),
                        bounds.next().and_then(|b| b.parse::<u16>().ok()),
                    ) {
                        (Some(a), Some(b)) => (a..=b).contains(&slot),
                        (Some(a), None) => a == slot,
                        _ => false,
                    }
                })
            }
        })
    })
}
