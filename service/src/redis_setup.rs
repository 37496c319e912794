//! From the command line's Redis options to a checked [`RedisConfig`]: URLs, the password file,
//! the TLS files. Every error names the flag and the file at fault, and none quotes a password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_redis::config::redact_url;
use sluice_redis::{RedisConfig, TlsConfig, TlsFile};

/// The Redis options of `sluice-service`.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `--redis`: one URL, or the seed nodes of a cluster.
    pub urls: Vec<String>,
    /// `--redis-cluster`.
    pub cluster: bool,
    /// `--redis-password-file`.
    pub password_file: Option<PathBuf>,
    /// `--redis-ca-cert`.
    pub ca_cert: Option<PathBuf>,
    /// `--redis-client-cert`.
    pub client_cert: Option<PathBuf>,
    /// `--redis-client-key`.
    pub client_key: Option<PathBuf>,
    /// `--redis-timeout`.
    pub call_timeout: Option<Duration>,
}

/// The flag that names a TLS file.
pub fn tls_flag(file: TlsFile) -> &'static str {
    match file {
        TlsFile::CaCert => "--redis-ca-cert",
        TlsFile::ClientCert => "--redis-client-cert",
        TlsFile::ClientKey => "--redis-client-key",
    }
}

impl RedisOptions {
    /// The store's configuration, with every file read and checked.
    pub fn config(&self) -> Result<RedisConfig, String> {
        let mut config = if self.cluster || self.urls.len() > 1 {
            RedisConfig::cluster(self.urls.iter().cloned())
        } else {
            RedisConfig::new(self.urls.first().cloned().unwrap_or_default())
        };
        if let Some(file) = &self.password_file {
            config.password = Some(read_password(file)?);
        }
        let tls_files = [&self.ca_cert, &self.client_cert, &self.client_key];
        if tls_files.iter().any(|file| file.is_some()) {
            let tls = TlsConfig::from_files(
                self.ca_cert.as_deref(),
                self.client_cert.as_deref(),
                self.client_key.as_deref(),
            )
            .map_err(|e| format!("{}: {e}", tls_flag(e.file())))?;
            config.tls = Some(tls);
        }
        if let Some(timeout) = self.call_timeout {
            config.call_timeout = timeout;
        }
        config.validate()?;
        for url in &config.urls {
            if !url.contains("://") {
                return Err(format!(
                    "--redis {}: not a URL; expected redis://host:port or rediss://host:port",
                    redact_url(url)
                ));
            }
        }
        Ok(config)
    }
}

/// The password in `file`: its first line, without the line ending.
fn read_password(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "--redis-password-file {}: cannot read the Redis password: {e}",
            file.display()
        )
    })?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(format!(
            "--redis-password-file {}: the file is empty (the password is its first line)",
            file.display()
        ));
    }
    Ok(password)
}
