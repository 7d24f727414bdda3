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
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| ServerError::Tls(format!("certificate {}: {err}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "no certificate in {}",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|err| ServerError::Tls(format!("private key {}: {err}", key_path.display())))?;
    server_config_from_der(certs, key)
}

/// Builds the rustls server configuration from DER values already in memory.
///
/// # Errors
/// [`ServerError::Tls`] when the key does not fit the certificate or is unsupported.
pub fn server_config_from_der(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ServerError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| ServerError::Tls(err.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
