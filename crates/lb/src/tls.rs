//! TLS termination on the public port, with rustls (ring provider).
//!
//! The certificate chain and key are read once at start; changing them needs
//! a restart. ALPN offers `h2` and `http/1.1`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::LbError;

/// Builds the acceptor from the PEM files of `cfg`.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, LbError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| LbError::Tls(format!("{what}: {e}"));
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| bad(&cfg.cert.display().to_string(), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&cfg.cert.display().to_string(), &e))?;
    if certs.is_empty() {
        return Err(LbError::Tls(format!(
            "{}: no certificate",
            cfg.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| bad(&cfg.key.display().to_string(), &e))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
