//! TLS for the HTTPS listeners: rustls with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ServerError;

/// Builds the rustls server configuration from PEM files: the certificate chain (leaf first)
/// and the private key. TLS 1.2 and 1.3 with rustls' safe defaults; ALPN offers HTTP/1.1.
///
/// # Errors
/// [`ServerError::Tls`] when a file is unreadable, holds no certificate or key, or the key
/// does not match the certificate.
pub fn load_server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    load_server_config_with_client_ca(cert_path, key_path, None)
}

/// As [`load_server_config`], and with `client_ca` (PEM CA certificates) clients may
/// present a certificate signed by one of those CAs. Presenting none is still allowed (such
/// clients authenticate otherwise); presenting one that does not verify fails the
/// handshake.
///
/// # Errors
/// As [`load_server_config`], and when the CA file is unreadable or holds no usable CA.
pub fn load_server_config_with_client_ca(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let certs = read_certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|err| ServerError::Tls(format!("private key {}: {err}", key_path.display())))?;
    let verifier = match client_ca {
        None => None,
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certificates(path)? {
                roots.add(ca).map_err(|err| {
                    ServerError::Tls(format!("client CA {}: {err}", path.display()))
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|err| ServerError::Tls(format!("client CA {}: {err}", path.display())))?;
            Some(verifier)
        }
    };
    build(certs, key, verifier)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| ServerError::Tls(format!("certificate {}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds the rustls server configuration from DER values already in memory.
///
/// # Errors
/// [`ServerError::Tls`] when the key does not fit the certificate or is unsupported.
pub fn server_config_from_der(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    build(certs, key, None)
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ServerError::Tls(err.to_string()))?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|err| ServerError::Tls(err.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
