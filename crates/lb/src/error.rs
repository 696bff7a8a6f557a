//! Why the load balancer cannot start or cannot take a new configuration.

/// A failure to start, or a configuration refused at reload.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A setting is out of range.
    #[error("invalid lb config: {0}")]
    Config(String),
    /// A pool configuration is invalid.
    #[error("invalid {pool} pool: {source}")]
    Pool {
        /// Which pool (`rpc` or `static`).
        pool: &'static str,
        /// What is wrong with it.
        #[source]
        source: upstream::ConfigError,
    },
    /// The certificate or key cannot be loaded.
    #[error("cannot load TLS certificate or key: {0}")]
    Tls(String),
    /// A listener cannot be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    /// The reload source (file, flags) failed.
    #[error("cannot reload: {0}")]
    Reload(String),
}
