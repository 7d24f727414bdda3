//! Keep-alive HTTP/1.1 connections to the tracker, each driven by the simulated peer that
//! holds it for one exchange.
//!
//! A peer takes an idle connection (or opens one), writes its POST in one write, reads the
//! answer on the same task and puts the connection back. hyper-util's pooled client, used
//! before, handed every request to a connection task and every answer back through
//! channels, and collected the body frame by frame: it took a fifth of the load
//! generator's CPU, which the tracker sharing the machine then lacked (see
//! `docs/benchmarks.md`). Response heads are parsed by `httparse`, the parser under hyper.
//!
//! Only what a tracker's answer needs is understood: a status line, headers, and a body
//! framed by `Content-Length`. Anything else (chunked framing, a head or body over the
//! limits, bytes after the body, a connection closed mid-answer) fails the exchange, and
//! the connection is dropped. `Connection: close` and HTTP/1.0 answers are read, and their
//! connection is not reused.

use std::io;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use hyper::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head read.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body read (a FIND answer listing the most peers a tracker gives is far
/// smaller).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Most response headers parsed.
const MAX_HEADERS: usize = 32;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// Connecting, writing or reading failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The connection closed before a single byte of the answer: a kept-alive connection
    /// the server had closed meanwhile. The request can be sent again on a new one.
    #[error("connection closed before the answer")]
    ClosedBeforeAnswer,
    /// The connection closed in the middle of the answer.
    #[error("connection closed in the middle of the answer")]
    Truncated,
    /// The answer is not HTTP/1.x as this client reads it.
    #[error("unreadable answer: {0}")]
    Malformed(&'static str),
}

/// Connections to one tracker URL.
pub(crate) struct Wire {
    /// `host:port` to connect to.
    authority: String,
    /// Request line and headers up to the value of `Content-Length`.
    head: Vec<u8>,
    idle: Mutex<Vec<Connection>>,
}

impl Wire {
    /// Connections that POST to `uri` with this `Content-Type`. The URI has been checked to
    /// be `http` with a host.
    pub(crate) fn new(uri: &Uri, content_type: &str) -> Self {
        let host = uri.host().unwrap_or("localhost");
        let port = uri.port_u16().unwrap_or(80);
        // An IPv6 literal keeps its brackets in both the address and the Host header.
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let host_header = uri.authority().map_or(authority.as_str(), |a| a.as_str());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: {content_type}\r\n\
             Content-Length: "
        )
        .into_bytes();
        Self {
            authority,
            head,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// POSTs `body` and returns the answer's status code and body. A kept-alive connection
    /// found closed before it answered is replaced by a new one once.
    pub(crate) async fn post(&self, body: &[u8]) -> Result<(u16, Bytes), WireError> {
        let mut request = Vec::with_capacity(self.head.len() + 24 + body.len());
        request.extend_from_slice(&self.head);
        request.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let answer = match reused {
            Some(mut connection) => match connection.exchange(&request).await {
                Err(WireError::ClosedBeforeAnswer) => self.fresh_exchange(&request).await?,
                other => (connection, other?),
            },
            None => self.fresh_exchange(&request).await?,
        };
        let (connection, (status, body, keep_alive)) = answer;
        if keep_alive && let Ok(mut idle) = self.idle.lock() {
            idle.push(connection);
        }
        Ok((status, body))
    }

    async fn fresh_exchange(
        &self,
        request: &[u8],
    ) -> Result<(Connection, (u16, Bytes, bool)), WireError> {
        let stream = TcpStream::connect(self.authority.as_str()).await?;
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            stream,
            buffer: BytesMut::with_capacity(8 * 1024),
        };
        let answer = connection.exchange(request).await?;
        Ok((connection, answer))
    }
}

/// One connection and what has been read from it.
struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
}

impl Connection {
    /// Writes `request` and reads one answer: status, body, and whether the connection may
    /// carry another request.
    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, Bytes, bool), WireError> {
        self.stream
            .write_all(request)
            .await
            .map_err(closed_before_answer)?;
        self.buffer.clear();
        let head = loop {
            let read = match self.read_more().await {
                Err(error) if self.buffer.is_empty() => return Err(closed_before_answer(error)),
                read => read?,
            };
            if read == 0 {
                return Err(if self.buffer.is_empty() {
                    WireError::ClosedBeforeAnswer
                } else {
                    WireError::Truncated
                });
            }
            if let Some(head) = parse_head(&self.buffer)? {
                break head;
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(WireError::Malformed("response head too large"));
            }
        };
        let end = head.length + head.content_length;
        while self.buffer.len() < end {
            if self.read_more().await? == 0 {
                return Err(WireError::Truncated);
            }
        }
        if self.buffer.len() > end {
            return Err(WireError::Malformed("bytes after the answer's body"));
        }
        let body = self.buffer.split().freeze().slice(head.length..);
        Ok((head.status, body, head.keep_alive))
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        self.buffer.reserve(4096);
        self.stream.read_buf(&mut self.buffer).await
    }
}

/// A connection the server reset or closed before anything of the answer came is one it
/// closed while idle; any other failure is the exchange's.
fn closed_before_answer(error: io::Error) -> WireError {
    match error.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => WireError::ClosedBeforeAnswer,
        _ => WireError::Io(error),
    }
}

/// What the head of an answer says.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the head, blank line included.
    length: usize,
    content_length: usize,
    keep_alive: bool,
}

/// Parses the head at the start of `buffer`; `None` while it is incomplete.
fn parse_head(buffer: &[u8]) -> Result<Option<Head>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::Malformed("too many response headers"));
        }
        Err(_) => return Err(WireError::Malformed("invalid response head")),
    };
    let status = response.code.unwrap_or(0);
    let mut keep_alive = response.version == Some(1);
    let mut content_length = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(WireError::Malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(WireError::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(WireError::Malformed(
                "Transfer-Encoding is not read, only Content-Length",
            ));
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(header.value);
            for option in value.split(',') {
                let option = option.trim();
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // No body without a length: 1xx, 204 and 304 answers, which a tracker does not send
    // to a POST, are the only ones allowed to omit it.
    let content_length = match (content_length, status) {
        (Some(length), _) => length,
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => return Err(WireError::Malformed("answer without Content-Length")),
    };
    if content_length > MAX_BODY {
        return Err(WireError::Malformed("response body too large"));
    }
    Ok(Some(Head {
        status,
        length,
        content_length,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server on a free loopback port that reads one request per connection, sends
    /// `answer(n)` for the `n`th connection, and closes it.
    async fn one_answer_per_connection(answer: fn(usize) -> Vec<u8>) -> Uri {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"ping") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&chunk[..read]),
                    }
                }
                let _ = stream.write_all(&answer(n)).await;
            }
        });
        format!("http://{addr}/tracker").parse().expect("uri")
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced() {
        // The answers claim keep-alive, yet every connection is closed after one.
        let uri = one_answer_per_connection(|n| {
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{n}").into_bytes()
        })
        .await;
        let wire = Wire::new(&uri, "text/xml");
        for n in 0..3 {
            let (status, body) = wire.post(b"ping").await.expect("answered");
            assert_eq!((status, &body[..]), (200, n.to_string().as_bytes()));
        }
    }

    #[tokio::test]
    async fn an_answer_cut_short_fails() {
        let uri = one_answer_per_connection(|_| {
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec()
        })
        .await;
        let wire = Wire::new(&uri, "text/xml");
        assert!(matches!(
            wire.post(b"ping").await,
            Err(WireError::Truncated)
        ));
        let uri = one_answer_per_connection(|_| Vec::new()).await;
        let wire = Wire::new(&uri, "text/xml");
        // A new connection closed without an answer is not sent again.
        assert!(matches!(
            wire.post(b"ping").await,
            Err(WireError::ClosedBeforeAnswer)
        ));
    }

    #[test]
    fn heads_are_read_with_their_framing_and_persistence() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            parse_head(head).expect("parses"),
            Some(Head {
                status: 200,
                length: head.len() - 5,
                content_length: 5,
                keep_alive: true,
            })
        );
        let closing =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let parsed = parse_head(closing).expect("parses").expect("complete");
        assert_eq!((parsed.status, parsed.keep_alive), (503, false));
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(
            !parse_head(old)
                .expect("parses")
                .expect("complete")
                .keep_alive
        );
        let kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert!(
            parse_head(kept)
                .expect("parses")
                .expect("complete")
                .keep_alive
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").expect("partial"),
            None
        );
    }

    #[test]
    fn answers_this_client_cannot_frame_are_refused() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(head), Err(WireError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            parse_head(no_content)
                .expect("parses")
                .expect("complete")
                .content_length,
            0
        );
    }
}
