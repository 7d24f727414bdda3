//! Connections to `http://` and `https://` trackers for hyper-util's pooled client.
//!
//! TCP comes from hyper-util's [`HttpConnector`]; for `https` the stream is wrapped in TLS
//! with rustls (ring provider, TLS 1.2 and 1.3), verifying the tracker's certificate against
//! the configured roots.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientError;

/// Where operating systems commonly keep the bundle of trusted CA certificates, tried in
/// order when no roots are configured.
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Reads every certificate of a PEM file (for [`super::ClientConfig::tls_roots`]).
///
/// # Errors
/// [`ClientError::Config`] when the file cannot be read or holds no certificate.
pub fn load_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| ClientError::Config(format!("{}: {error}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ClientError::Config(format!("{}: {error}", path.display())))?;
    if certificates.is_empty() {
        return Err(ClientError::Config(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The roots to trust: the configured ones, or else the system bundle if one exists.
fn root_store(configured: &[CertificateDer<'static>]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if configured.is_empty() {
        for path in SYSTEM_CA_BUNDLES {
            if let Ok(certificates) = load_pem_certificates(Path::new(path)) {
                let (added, _ignored) = roots.add_parsable_certificates(certificates);
                if added > 0 {
                    break;
                }
            }
        }
    } else {
        let (_added, ignored) = roots.add_parsable_certificates(configured.iter().cloned());
        if ignored > 0 {
            tracing::warn!(ignored, "some configured TLS roots could not be parsed");
        }
    }
    roots
}

/// Builds the TLS side of the connector.
pub(crate) fn tls_connector(
    configured_roots: &[CertificateDer<'static>],
) -> Result<TlsConnector, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Config(format!("TLS: {error}")))?
        .with_root_certificates(root_store(configured_roots))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens TCP, plus TLS for `https` URIs.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    tls: TlsConnector,
}

impl Connector {
    pub(crate) fn new(mut http: HttpConnector, tls: TlsConnector) -> Self {
        // The scheme check happens here instead, so HttpConnector must let https through.
        http.enforce_http(false);
        Self { http, tls }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                other => return Err(format!("unsupported scheme {other:?}").into()),
            };
            let host = uri
                .host()
                .ok_or("URI without host")?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let tcp = tower_service::Service::<Uri>::call(&mut http, uri).await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let name = ServerName::try_from(host)?;
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A connection to a tracker, with or without TLS.
pub(crate) enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(stream) => stream.connected(),
            Self::Tls(stream) => stream.inner().get_ref().0.connected(),
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
