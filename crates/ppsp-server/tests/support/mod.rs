//! An in-process tracker on 127.0.0.1:0 and a small HTTP client for the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::StatusCode;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use ppsp_server::{Listeners, ServerConfig, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running tracker; stops it when dropped.
pub struct TestServer {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    /// The first `[admin] listen` listener, when the config names one.
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a tracker with `config`, its HTTP listener on 127.0.0.1:0 (and its HTTPS
    /// listener on 127.0.0.1:0 when the config names a certificate).
    pub async fn start(mut config: ServerConfig) -> Self {
        config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        if config.tls.cert.is_some() {
            config.server.tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        }
        let listeners = Listeners::bind(&config).await.expect("bind");
        let http = listeners.http[0].local_addr().expect("addr");
        let https = listeners
            .https
            .first()
            .map(|l| l.local_addr().expect("addr"));
        let admin = listeners
            .admin
            .first()
            .map(|l| l.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ppsp_server::serve(config, listeners, async move {
            let _ = stopped.await;
        }));
        Self {
            http,
            https,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks for a graceful shutdown and waits for the server to return.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("task");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("server stops in time")
            .expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as received (still compressed if the server compressed it).
    pub raw: Bytes,
}

impl Answer {
    /// The body, gunzipped when the server compressed it.
    pub fn body(&self) -> Vec<u8> {
        if self
            .headers
            .get("content-encoding")
            .is_some_and(|v| v == "gzip")
        {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.raw[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
            out
        } else {
            self.raw.to_vec()
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body()).expect("utf-8 body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body decoded as an XML PPSP response.
    pub fn xml(&self) -> ppsp_proto::Response {
        ppsp_proto::xml::decode_response(&self.body(), &ppsp_proto::Limits::default())
            .unwrap_or_else(|err| panic!("not an XML response ({err}): {}", self.text()))
    }

    /// The body decoded as a JSON PPSP response.
    pub fn json(&self) -> ppsp_proto::Response {
        ppsp_proto::json::decode_response(&self.body(), &ppsp_proto::Limits::default())
            .unwrap_or_else(|err| panic!("not a JSON response ({err}): {}", self.text()))
    }
}

/// Sends one request over a fresh connection on any stream.
pub async fn send_on<S>(
    stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "tracker.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body.into()))
        .expect("request builds");
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = response.status();
    let headers = response.headers().clone();
    let raw = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        raw,
    }
}

/// Sends one request to `addr` over cleartext HTTP.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    send_on(stream, method, path, headers, body).await
}

/// POSTs an XML body.
pub async fn post_xml(addr: SocketAddr, body: impl Into<Bytes>) -> Answer {
    send(
        addr,
        "POST",
        "/",
        &[("content-type", "application/xml; charset=utf-8")],
        body,
    )
    .await
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, "GET", path, &[], Bytes::new()).await
}

const HEAD: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PPSPTrackerProtocol version=\"1.0\">";
const TAIL: &str = "</PPSPTrackerProtocol>";

/// CONNECT with SASL ANONYMOUS and one declared address.
pub fn connect_anonymous(peer: &str, txid: u64, port: u16) -> String {
    format!(
        "{HEAD}<Method>CONNECT</Method><PeerID>{peer}</PeerID><Auth mechanism=\"ANONYMOUS\"/>\
         <TransactionID>{txid}</TransactionID><PeerAddresses><PeerAddress ip=\"127.0.0.1\" \
         port=\"{port}\" type=\"HOST\"/></PeerAddresses>{TAIL}"
    )
}

/// CONNECT with SASL PLAIN (`authzid` empty).
pub fn connect_plain(peer: &str, password: &str, txid: u64) -> String {
    use base64::Engine as _;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{peer}\0{password}"));
    format!(
        "{HEAD}<Method>CONNECT</Method><PeerID>{peer}</PeerID><Auth mechanism=\"PLAIN\"/>\
         <Credentials>{credentials}</Credentials><TransactionID>{txid}</TransactionID>\
         <PeerAddresses><PeerAddress ip=\"127.0.0.1\" port=\"7000\"/></PeerAddresses>{TAIL}"
    )
}

pub fn join(peer: &str, token: &str, swarm: &str, mode: &str, txid: u64) -> String {
    format!(
        "{HEAD}<Method>JOIN</Method><PeerID>{peer}</PeerID><AuthToken>{token}</AuthToken>\
         <SwarmID>{swarm}</SwarmID><PeerMode>{mode}</PeerMode><PeerNum>50</PeerNum>\
         <ExpireTime>0</ExpireTime><TransactionID>{txid}</TransactionID>{TAIL}"
    )
}

pub fn find(peer: &str, token: &str, swarm: &str, txid: u64, scope: Option<(u64, u64)>) -> String {
    let clip = scope.map_or(String::new(), |(from, to)| {
        format!(
            "<Clip><Name>movie</Name><ChunkSegments type=\"video\">\
             <Segment from=\"{from}\" to=\"{to}\"/></ChunkSegments></Clip>"
        )
    });
    format!(
        "{HEAD}<Method>FIND</Method><PeerID>{peer}</PeerID><AuthToken>{token}</AuthToken>\
         <SwarmID>{swarm}</SwarmID><PeerNum>50</PeerNum>{clip}\
         <TransactionID>{txid}</TransactionID>{TAIL}"
    )
}

/// STAT_REPORT with a chunk map of `movie`/video `from..=to` (base64 `bitmap`) and stream
/// statistics.
pub fn stat_report(
    peer: &str,
    token: &str,
    swarm: &str,
    txid: u64,
    map: (u64, u64, &str),
    uploaded: u64,
    downloaded: u64,
) -> String {
    let (from, to, bitmap) = map;
    let bits = to - from + 1;
    format!(
        "{HEAD}<Method>STAT_REPORT</Method><PeerID>{peer}</PeerID><AuthToken>{token}</AuthToken>\
         <TransactionID>{txid}</TransactionID><Stats>\
         <Stat property=\"ChunkMap\"><ChunkMapReport><SwarmID>{swarm}</SwarmID><Clip>\
         <Name>movie</Name><ChunkSegments type=\"video\"><Segment from=\"{from}\" to=\"{to}\" \
         bitmapsize=\"{bits}\">{bitmap}</Segment></ChunkSegments></Clip></ChunkMapReport></Stat>\
         <Stat property=\"StreamStats\"><StreamStatsReport><SwarmID>{swarm}</SwarmID>\
         <UploadedBytes>{uploaded}</UploadedBytes><DownloadedBytes>{downloaded}</DownloadedBytes>\
         <AvailBandwidth>1000000</AvailBandwidth></StreamStatsReport></Stat>\
         <Stat property=\"STUN\">true</Stat></Stats>{TAIL}"
    )
}

/// A method that carries only PeerID, AuthToken and TransactionID (KEEPALIVE, DISCONNECT).
pub fn bare(method: &str, peer: &str, token: &str, txid: u64) -> String {
    format!(
        "{HEAD}<Method>{method}</Method><PeerID>{peer}</PeerID><AuthToken>{token}</AuthToken>\
         <TransactionID>{txid}</TransactionID>{TAIL}"
    )
}

pub fn leave(peer: &str, token: &str, swarm: &str, txid: u64) -> String {
    format!(
        "{HEAD}<Method>LEAVE</Method><PeerID>{peer}</PeerID><AuthToken>{token}</AuthToken>\
         <SwarmID>{swarm}</SwarmID><TransactionID>{txid}</TransactionID>{TAIL}"
    )
}

/// The head of an XML POST whose body of `body_len` bytes follows, for tests that write
/// requests on a raw socket.
pub fn xml_post_head(body_len: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/xml\r\nContent-Length: {body_len}\r\n\r\n"
    )
}

/// CONNECTs anonymously and returns the AuthToken.
pub async fn connect(addr: SocketAddr, peer: &str, txid: u64) -> String {
    let answer = post_xml(addr, connect_anonymous(peer, txid, 7000)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer
        .xml()
        .auth_token
        .expect("CONNECT answer carries an AuthToken")
        .as_str()
        .to_owned()
}

/// Peer IDs in the first swarm result of a response.
pub fn peer_ids(response: &ppsp_proto::Response) -> Vec<String> {
    response
        .swarm_results
        .first()
        .map(|r| {
            r.peers
                .iter()
                .map(|p| p.peer_id.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ppsp-server-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
