//! One HTTP POST to a tracker: headers of draft-gu-ppsp-tracker-protocol-06, a bounded body read, and gzip
//! decoding of answers (§2.3: a tracker may compress even when not asked to). Connections
//! are kept alive and reused, over TLS for `https` trackers.

use std::io::Read as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Uri;
use hyper::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio_rustls::TlsConnector;

use super::connector::Connector;
use hyper_util::rt::TokioExecutor;

/// What came back from one POST, before PPSP decoding.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    /// HTTP status code.
    pub(crate) code: u16,
    /// `Retry-After` in seconds, when present and numeric.
    pub(crate) retry_after: Option<Duration>,
    /// The body, already decompressed.
    pub(crate) body: Bytes,
}

/// Why a POST got no HTTP answer.
#[derive(Debug)]
pub(crate) struct PostFailure {
    /// What happened, on one line.
    pub(crate) reason: String,
    /// The tracker's host refused the connection: nothing listens there, so sending again
    /// cannot help (unlike a lost or late answer).
    pub(crate) refused: bool,
}

impl PostFailure {
    fn other(reason: String) -> Self {
        Self {
            reason,
            refused: false,
        }
    }
}

/// A keep-alive HTTP/1.1 client for tracker requests.
#[derive(Clone)]
pub(crate) struct Transport {
    client: Client<Connector, Full<Bytes>>,
    max_body_bytes: usize,
}

impl Transport {
    pub(crate) fn new(max_body_bytes: usize, tls: TlsConnector) -> Self {
        let mut connector = HttpConnector::new();
        // Requests are small and latency-bound; do not let Nagle hold them back.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .build(Connector::new(connector, tls));
        Self {
            client,
            max_body_bytes,
        }
    }

    /// POSTs `body` to `uri`, giving up after `timeout` (connect, send and read included).
    ///
    /// Any HTTP answer, whatever its status, is `Ok`; `Err` describes a transport failure
    /// (connection refused or reset, timeout, unreadable or oversized body), which the
    /// caller may retransmit.
    pub(crate) async fn post(
        &self,
        uri: &Uri,
        body: Bytes,
        timeout: Duration,
    ) -> Result<HttpAnswer, PostFailure> {
        match tokio::time::timeout(timeout, self.post_inner(uri, body)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(PostFailure::other(format!("no answer within {timeout:?}"))),
        }
    }

    async fn post_inner(&self, uri: &Uri, body: Bytes) -> Result<HttpAnswer, PostFailure> {
        let request = hyper::Request::post(uri.clone())
            .header(CONTENT_TYPE, ppsp_proto::XML_MEDIA_TYPE)
            .header(ACCEPT_ENCODING, "gzip")
            .body(Full::new(body))
            .map_err(|error| PostFailure::other(format!("building the request: {error}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| PostFailure {
                reason: describe_client_error(&error),
                refused: is_refused(&error),
            })?;
        let code = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let gzipped = is_gzip(response.headers());
        let collected = Limited::new(response.into_body(), self.max_body_bytes)
            .collect()
            .await
            .map_err(|error| PostFailure::other(format!("reading the answer: {error}")))?
            .to_bytes();
        let body = if gzipped {
            gunzip(&collected, self.max_body_bytes).map_err(PostFailure::other)?
        } else {
            collected
        };
        Ok(HttpAnswer {
            code,
            retry_after,
            body,
        })
    }
}

/// The error and its causes on one line: hyper's top-level message alone ("client error
/// (Connect)") says too little to act on.
fn describe_client_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// True when a cause of `error` is a refused TCP connection.
fn is_refused(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn is_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|coding| {
                matches!(
                    coding.trim().to_ascii_lowercase().as_str(),
                    "gzip" | "x-gzip"
                )
            })
        })
    })
}

/// `Retry-After` as delay-seconds. The HTTP-date form is not used by PPSP trackers; it is
/// treated as absent, so the caller's default wait applies.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Decompresses a gzip body, refusing output larger than `limit` (a small compressed body
/// can expand enormously).
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, String> {
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    (&mut decoder)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|error| format!("gzip answer does not decompress: {error}"))?;
    if out.len() > limit {
        return Err(format!("gzip answer expands beyond {limit} bytes"));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("in-memory write");
        encoder.finish().expect("in-memory finish")
    }

    #[test]
    fn gunzip_round_trip_and_limit() {
        let data = b"<PPSPTrackerProtocol/>".repeat(10);
        assert_eq!(
            gunzip(&gzip(&data), 1024).expect("fits").as_ref(),
            &data[..]
        );
        assert!(gunzip(&gzip(&vec![0u8; 10_000]), 1000).is_err());
        assert!(gunzip(b"not gzip", 1000).is_err());
    }

    #[test]
    fn header_parsing() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "identity, GZip".parse().expect("value"));
        headers.insert(RETRY_AFTER, " 7 ".parse().expect("value"));
        assert!(is_gzip(&headers));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&headers), None);
        assert!(!is_gzip(&HeaderMap::new()));
    }
}
