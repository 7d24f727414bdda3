//! `ppsp-bench-hello [ADDR]`: answers every HTTP/1.1 request with the same short body,
//! with keep-alive, on a multi-threaded tokio runtime with hyper's HTTP/1.1 defaults.
//!
//! It does no work per request beyond HTTP itself, so its request rate on a machine is the
//! ceiling a tracker's rate is compared with (`scripts/bench-compare.sh`). It listens on
//! ADDR (default `127.0.0.1:0`, a free port) and prints `listening on http://HOST:PORT` once
//! it accepts connections.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The answer to every request.
const BODY: &[u8] = b"hello\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr
            .parse()
            .map_err(|e| format!("{addr:?} is not a socket address: {e}"))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen))
}

async fn serve(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        // Small answers would otherwise wait for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
            });
            // A client closing mid-request is its own business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
