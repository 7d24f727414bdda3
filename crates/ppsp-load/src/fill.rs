//! The fill: registers many peers in a running tracker as fast as it takes them,
//! to measure what the tracker's state costs in memory.
//!
//! Each peer is one 20-byte PeerID with one IPv4 address, joined to one swarm (peer `i`
//! joins swarm `i mod --swarms`): over XML a CONNECT (SASL `ANONYMOUS`) and a JOIN, over
//! JSON (RFC 7846) one CONNECT carrying a JOIN swarm action. Peers stay registered when the
//! fill ends; nothing is left or disconnected.
//!
//! The fill opens `--connections` keep-alive connections and sends on each one peer's
//! requests after the other. When the tracker is on an IPv4 loopback address, the
//! connections are bound to different source addresses (127.0.0.1, 127.0.0.2, ... up to
//! `--source-addresses`) so that a tracker capping sessions per source address still takes
//! the whole population; every peer declares the address its connection comes from.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use ppsp_proto::{
    AddressType, AuthToken, Connect, Join, Limits, NatHints, PeerAddress, PeerId, PeerMode,
    Request, RequestBody, SaslAuth, Status, SwarmAction, SwarmActionKind, SwarmId, TransactionId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpSocket;

use crate::LoadError;

/// Protocol a fill speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FillFormat {
    /// draft-gu-ppsp-tracker-protocol-06: CONNECT, then JOIN.
    Xml,
    /// RFC 7846: one CONNECT with a JOIN swarm action.
    Json,
}

/// Options of the fill (`ppsp bench fill`).
#[derive(Debug, clap::Args)]
pub struct FillArgs {
    /// Tracker to fill, for example http://127.0.0.1:7070/ (the path is used as is).
    #[arg(long, value_name = "URL")]
    tracker: String,
    /// Peers to register.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    peers: u32,
    /// Swarms the peers spread over (peer i joins swarm i mod N).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    swarms: u32,
    /// Protocol of the requests.
    #[arg(long, value_enum, default_value_t = FillFormat::Json)]
    format: FillFormat,
    /// Keep-alive connections used in parallel.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4_096))]
    connections: u32,
    /// Source addresses 127.0.0.1 to 127.0.0.N the connections are spread over when the
    /// tracker is on an IPv4 loopback address (1: all from 127.0.0.1).
    #[arg(long, value_name = "N", default_value_t = 255,
          value_parser = clap::value_parser!(u8).range(1..=255))]
    source_addresses: u8,
    /// Give up on a request after this many seconds (then the peer is tried again).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
}

/// Attempts per peer before it counts as failed (a connection lost, a 503).
const ATTEMPTS: u32 = 5;

/// Runs the fill on a runtime of its own and returns its report: a header line, a summary
/// line (`peers N  failed N  requests N ...`) and the first failure, if any.
///
/// # Errors
///
/// [`LoadError::PeersNotRegistered`] (with the report) when a peer could not be registered;
/// other [`LoadError`]s when an option is wrong or the tracker's host does not resolve.
pub fn run_fill(args: &FillArgs) -> Result<String, LoadError> {
    let plan = Arc::new(FillPlan::from_args(args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    let outcome = runtime.block_on(fill(Arc::clone(&plan)))?;
    let report = outcome.render(&plan);
    if outcome.failed_peers > 0 {
        return Err(LoadError::PeersNotRegistered {
            failed: outcome.failed_peers,
            report,
        });
    }
    Ok(report)
}

#[derive(Debug)]
struct FillPlan {
    uri: Uri,
    host_header: HeaderValue,
    format: FillFormat,
    peers: u32,
    swarms: u32,
    connections: u32,
    source_addresses: u8,
    timeout: Duration,
    /// Distinguishes this fill's PeerIDs from those of an earlier fill of the same tracker.
    run_tag: u32,
}

impl FillPlan {
    fn from_args(args: &FillArgs) -> Result<Self, LoadError> {
        let uri = crate::tracker_uri(&args.tracker)?;
        let no_host = || LoadError::NoHost {
            url: args.tracker.clone(),
        };
        let authority = uri.authority().ok_or_else(no_host)?;
        // An authority that parsed as part of a URI is a valid header value.
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| no_host())?;
        let timeout = crate::load::seconds(args.timeout, "--timeout")?;
        Ok(Self {
            uri,
            host_header,
            format: args.format,
            peers: args.peers,
            swarms: args.swarms,
            connections: args.connections.min(args.peers),
            source_addresses: args.source_addresses,
            timeout,
            run_tag: StdRng::from_os_rng().random(),
        })
    }

    /// A 20-byte PeerID: `f`, the run tag and the index, in hexadecimal.
    fn peer_id(&self, index: u32) -> Result<PeerId, LoadError> {
        PeerId::new(format!("f{:08x}{index:011x}", self.run_tag)).map_err(LoadError::Identifier)
    }

    fn swarm_id(&self, index: u32) -> Result<SwarmId, LoadError> {
        SwarmId::new(format!("fill-swarm-{}", index % self.swarms)).map_err(LoadError::Identifier)
    }

    /// The port peer `index` declares (distinct among neighbours, never 0).
    fn port(index: u32) -> u16 {
        1024 + (index % 64_000) as u16
    }
}

/// What a fill achieved.
#[derive(Debug, Default)]
struct Outcome {
    registered: u64,
    failed_peers: u64,
    requests: u64,
    retries: u64,
    elapsed: Duration,
    source_addresses: usize,
    first_failure: Option<String>,
}

impl Outcome {
    fn render(&self, plan: &FillPlan) -> String {
        let format = match plan.format {
            FillFormat::Xml => "XML (CONNECT + JOIN)",
            FillFormat::Json => "JSON (CONNECT with JOIN)",
        };
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ppsp bench fill: {} peers, {} swarms, {format}, {} connections from {} source addresses, target {}",
            plan.peers, plan.swarms, plan.connections, self.source_addresses, plan.uri
        );
        let _ = writeln!(
            out,
            "peers {}  failed {}  requests {}  retries {}  elapsed {seconds:.2} s  throughput {:.1} req/s  {:.1} peers/s",
            self.registered,
            self.failed_peers,
            self.requests,
            self.retries,
            self.requests as f64 / seconds,
            self.registered as f64 / seconds,
        );
        if let Some(failure) = &self.first_failure {
            let _ = writeln!(out, "first failure: {failure}");
        }
        out
    }
}

/// Counters the connections share.
#[derive(Debug, Default)]
struct Progress {
    registered: AtomicU64,
    failed_peers: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

async fn fill(plan: Arc<FillPlan>) -> Result<Outcome, LoadError> {
    let target = resolve(&plan.uri).await?;
    let sources: Vec<Option<IpAddr>> = match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => (1..=plan.source_addresses)
            .map(|last| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
            .collect(),
        _ => vec![None],
    };
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..plan.connections {
        let source = sources[lane as usize % sources.len()];
        tasks.spawn(fill_lane(
            Arc::clone(&plan),
            Arc::clone(&progress),
            lane,
            target,
            source,
        ));
    }
    let reporter = tokio::spawn(report_progress(Arc::clone(&plan), Arc::clone(&progress)));
    let mut first_failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                first_failure.get_or_insert(failure);
            }
            Err(e) => {
                first_failure.get_or_insert(format!("a connection task ended: {e}"));
            }
        }
    }
    reporter.abort();
    Ok(Outcome {
        registered: progress.registered.load(Ordering::Relaxed),
        failed_peers: progress.failed_peers.load(Ordering::Relaxed),
        requests: progress.requests.load(Ordering::Relaxed),
        retries: progress.retries.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        source_addresses: sources.len(),
        first_failure,
    })
}

async fn resolve(uri: &Uri) -> Result<SocketAddr, LoadError> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| LoadError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| LoadError::NoAddress {
            host: host.to_owned(),
        })
}

async fn report_progress(plan: Arc<FillPlan>, progress: Arc<Progress>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        tracing::info!(
            "filled {} of {} peers",
            progress.registered.load(Ordering::Relaxed),
            plan.peers
        );
    }
}

/// Why one attempt at registering a peer failed.
#[derive(Debug)]
enum Attempt {
    /// Worth another try on a new connection (transport error, timeout, 503).
    Retry(String),
    /// The tracker refused the peer; trying again would not help.
    Refused(String),
}

/// One connection's share of the peers: `lane`, `lane + connections`, ...
async fn fill_lane(
    plan: Arc<FillPlan>,
    progress: Arc<Progress>,
    lane: u32,
    target: SocketAddr,
    source: Option<IpAddr>,
) -> Result<(), String> {
    let limits = Limits::default();
    let mut connection: Option<Lane> = None;
    let mut first_failure = None;
    let mut index = lane;
    while index < plan.peers {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = match connection.as_mut() {
                Some(lane) => lane.register(&plan, &progress, &limits, index).await,
                None => match Lane::open(target, source).await {
                    Ok(opened) => {
                        let lane = connection.insert(opened);
                        lane.register(&plan, &progress, &limits, index).await
                    }
                    Err(e) => Err(Attempt::Retry(e)),
                },
            };
            match outcome {
                Ok(()) => {
                    progress.registered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(Attempt::Retry(why)) if attempts < ATTEMPTS => {
                    progress.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("peer {index}: {why}; trying again");
                    connection = None;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempts))).await;
                }
                Err(Attempt::Retry(why) | Attempt::Refused(why)) => {
                    progress.failed_peers.fetch_add(1, Ordering::Relaxed);
                    first_failure.get_or_insert(format!("peer {index}: {why}"));
                    break;
                }
            }
        }
        index = index.saturating_add(plan.connections);
    }
    first_failure.map_or(Ok(()), Err)
}

/// One keep-alive connection to the tracker.
struct Lane {
    sender: SendRequest<Full<Bytes>>,
    local: IpAddr,
}

impl Lane {
    async fn open(target: SocketAddr, source: Option<IpAddr>) -> Result<Self, String> {
        let socket = match target {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(source) = source {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| format!("binding {source}: {e}"))?;
        }
        let stream = socket
            .connect(target)
            .await
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let local = stream
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?
            .ip();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("fill connection ended: {e}");
            }
        });
        Ok(Self { sender, local })
    }

    /// Registers peer `index`: CONNECT and JOIN, or one JSON CONNECT with a JOIN action.
    async fn register(
        &mut self,
        plan: &FillPlan,
        progress: &Progress,
        limits: &Limits,
        index: u32,
    ) -> Result<(), Attempt> {
        let peer_id = plan
            .peer_id(index)
            .map_err(|e| Attempt::Refused(e.to_string()))?;
        let swarm_id = plan
            .swarm_id(index)
            .map_err(|e| Attempt::Refused(e.to_string()))?;
        let address = PeerAddress::new(self.local, FillPlan::port(index))
            .with_kind(AddressType::Host)
            .with_priority(1);
        match plan.format {
            FillFormat::Xml => {
                let connect = Request {
                    peer_id: peer_id.clone(),
                    auth_token: None,
                    transaction_id: TransactionId::numeric(1),
                    body: RequestBody::Connect(Connect {
                        auth: Some(SaslAuth {
                            mechanism: "ANONYMOUS".to_owned(),
                            credentials: None,
                        }),
                        addresses: vec![address],
                        peer_num: None,
                        swarm_actions: Vec::new(),
                    }),
                };
                let token = self
                    .exchange(plan, progress, limits, &connect)
                    .await?
                    .ok_or_else(|| Attempt::Refused("CONNECT answer has no AuthToken".into()))?;
                let join = Request {
                    peer_id,
                    auth_token: Some(token),
                    transaction_id: TransactionId::numeric(2),
                    body: RequestBody::Join(Join {
                        swarm_id,
                        mode: PeerMode::Leech,
                        hints: NatHints::default(),
                        peer_num: None,
                        clip: None,
                        expire_time: 0,
                    }),
                };
                self.exchange(plan, progress, limits, &join).await?;
            }
            FillFormat::Json => {
                let connect = Request {
                    peer_id,
                    auth_token: None,
                    transaction_id: TransactionId::numeric(1),
                    body: RequestBody::Connect(Connect {
                        auth: None,
                        addresses: vec![address],
                        peer_num: None,
                        swarm_actions: vec![SwarmAction {
                            swarm_id,
                            action: SwarmActionKind::Join,
                            mode: PeerMode::Leech,
                        }],
                    }),
                };
                self.exchange(plan, progress, limits, &connect).await?;
            }
        }
        Ok(())
    }

    /// Sends one request and checks its answer; returns the AuthToken it carries.
    async fn exchange(
        &mut self,
        plan: &FillPlan,
        progress: &Progress,
        limits: &Limits,
        request: &Request,
    ) -> Result<Option<AuthToken>, Attempt> {
        let (body, content_type) = match plan.format {
            FillFormat::Xml => (
                ppsp_proto::xml::encode_request(request),
                ppsp_proto::XML_MEDIA_TYPE,
            ),
            FillFormat::Json => (
                ppsp_proto::json::encode_request(request),
                ppsp_proto::JSON_MEDIA_TYPE,
            ),
        };
        let mut http = hyper::Request::new(Full::new(Bytes::from(body)));
        *http.method_mut() = hyper::Method::POST;
        *http.uri_mut() = plan
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        let headers = http.headers_mut();
        headers.insert(HOST, plan.host_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        progress.requests.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(plan.timeout, async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection: {e}"))?;
            let response = self
                .sender
                .send_request(http)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("answer body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        })
        .await;
        let (status, bytes) = match answer {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "no answer within {:?}",
                    plan.timeout
                )));
            }
            Ok(Err(why)) => return Err(Attempt::Retry(why)),
            Ok(Ok(answer)) => answer,
        };
        match status {
            200 => {}
            503 => return Err(Attempt::Retry("HTTP 503".into())),
            other => return Err(Attempt::Refused(format!("HTTP {other}"))),
        }
        let response = match plan.format {
            FillFormat::Xml => ppsp_proto::xml::decode_response(&bytes, limits),
            FillFormat::Json => ppsp_proto::json::decode_response(&bytes, limits),
        }
        .map_err(|e| Attempt::Refused(format!("undecodable answer: {e}")))?;
        if response.status != Status::Ok {
            return Err(Attempt::Refused(format!("refused: {}", response.status)));
        }
        Ok(response.auth_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tracker: &str) -> FillArgs {
        FillArgs {
            tracker: tracker.to_owned(),
            peers: 10,
            swarms: 3,
            format: FillFormat::Xml,
            connections: 4,
            source_addresses: 255,
            timeout: 1.0,
        }
    }

    #[test]
    fn peer_ids_are_twenty_bytes_and_distinct() {
        let plan = FillPlan::from_args(&args("http://127.0.0.1:1/")).expect("plan");
        let first = plan.peer_id(0).expect("id");
        let last = plan.peer_id(99_999_999).expect("id");
        assert_eq!(first.as_str().len(), 20);
        assert_eq!(last.as_str().len(), 20);
        assert_ne!(first, last);
        assert_eq!(
            plan.swarm_id(4).expect("swarm"),
            plan.swarm_id(1).expect("swarm")
        );
    }

    #[test]
    fn only_http_targets_are_taken() {
        assert!(FillPlan::from_args(&args("https://127.0.0.1:1/")).is_err());
        assert!(FillPlan::from_args(&args("127.0.0.1:7070")).is_err());
        let plan = FillPlan::from_args(&args("http://127.0.0.1:7070/")).expect("plan");
        assert_eq!(plan.connections, 4);
    }
}
