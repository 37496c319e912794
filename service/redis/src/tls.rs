//! TLS towards Redis (`rediss://`): which certificate authorities to trust and, for mutual
//! TLS, the client's certificate and key. Everything is read and checked when the
//! configuration is built, so a wrong file is refused at start with a message naming it,
//! never discovered at the first connection.
//!
//! Without a [`TlsConfig`], a `rediss://` URL trusts the system's certificate authorities
//! (enough for managed Redis with public certificates). The cryptography is rustls with the
//! `ring` provider. There is no mode that skips verifying the server: a server whose
//! certificate does not verify is not connected to.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Which file a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate authorities to trust.
    CaCert,
    /// The client certificate (chain) for mutual TLS.
    ClientCert,
    /// The client certificate's private key.
    ClientKey,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::CaCert => "the Redis CA certificate",
            TlsFile::ClientCert => "the Redis client certificate",
            TlsFile::ClientKey => "the Redis client key",
        })
    }
}

/// Why the TLS files cannot be used. Each message names the file and what is wrong with it;
/// none quotes a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{file} {path}: cannot read it: {reason}")]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// The file holds nothing usable in PEM form.
    #[error("{file} {path}: {reason}")]
    NotPem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },
    /// A client certificate without a key, or a key without a certificate.
    #[error(
        "a client certificate and its key go together (mutual TLS): {given} is set but {missing} is not"
    )]
    Unpaired {
        /// The one given.
        given: TlsFile,
        /// The one missing.
        missing: TlsFile,
    },
    /// The client key is not the key of the client certificate.
    #[error("{key_path} is not the key of the Redis client certificate {cert_path}: {reason}")]
    KeyMismatch {
        /// The certificate's path.
        cert_path: PathBuf,
        /// The key's path.
        key_path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

impl TlsError {
    /// The file the error is about (for a pairing error: the missing one).
    pub fn file(&self) -> TlsFile {
        match self {
            TlsError::Read { file, .. } | TlsError::NotPem { file, .. } => *file,
            TlsError::Unpaired { missing, .. } => *missing,
            TlsError::KeyMismatch { .. } => TlsFile::ClientKey,
        }
    }
}

/// Certificates for TLS towards Redis, checked: the CA file holds at least one certificate
/// that can be a trust anchor, the client certificate and key parse, and the key is the
/// certificate's. `Debug` shows which parts are set, never their contents.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    ca_pem: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("private_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Reads and checks the files: a private CA to trust instead of the system's (optional),
    /// and a client certificate with its key for mutual TLS (both or neither).
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<TlsConfig, TlsError> {
        let read = |file: TlsFile, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::Read {
                file,
                path: path.to_owned(),
                reason: e.to_string(),
            })
        };
        let ca = match ca_cert {
            Some(path) => Some((read(TlsFile::CaCert, path)?, path)),
            None => None,
        };
        let client = match (client_cert, client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                (read(TlsFile::ClientCert, cert)?, cert),
                (read(TlsFile::ClientKey, key)?, key),
            )),
            (Some(_), None) => {
                return Err(TlsError::Unpaired {
                    given: TlsFile::ClientCert,
                    missing: TlsFile::ClientKey,
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Unpaired {
                    given: TlsFile::ClientKey,
                    missing: TlsFile::ClientCert,
                });
            }
        };
        let ca_pem = match ca {
            Some((pem, path)) => {
                check_ca(&pem, path)?;
                Some(pem)
            }
            None => None,
        };
        let client = match client {
            Some(((cert, cert_path), (key, key_path))) => {
                check_client(&cert, cert_path, &key, key_path)?;
                Some((cert, key))
            }
            None => None,
        };
        Ok(TlsConfig { ca_pem, client })
    }

    /// Whether a private CA replaces the system's certificate authorities.
    pub fn has_private_ca(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// Whether a client certificate is presented (mutual TLS).
    pub fn has_client_certificate(&self) -> bool {
        self.client.is_some()
    }

    /// The certificates as the `redis` crate takes them.
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca_pem.clone(),
        }
    }
}

fn certificates(
    pem: &[u8],
    file: TlsFile,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let not_pem = |reason: String| TlsError::NotPem {
        file,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(not_pem(
            "no certificate in it (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")".to_owned(),
        ));
    }
    Ok(certs)
}

fn check_ca(pem: &[u8], path: &Path) -> Result<(), TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, TlsFile::CaCert, path)? {
        roots.add(cert).map_err(|e| TlsError::NotPem {
            file: TlsFile::CaCert,
            path: path.to_owned(),
            reason: format!("a certificate in it cannot be a trust anchor: {e}"),
        })?;
    }
    Ok(())
}

fn check_client(
    cert: &[u8],
    cert_path: &Path,
    key: &[u8],
    key_path: &Path,
) -> Result<(), TlsError> {
    let chain = certificates(cert, TlsFile::ClientCert, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NotPem {
        file: TlsFile::ClientKey,
        path: key_path.to_owned(),
        reason: format!(
            "no unencrypted PEM private key in it (PKCS#8 \"BEGIN PRIVATE KEY\", PKCS#1 or SEC1): {e}"
        ),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::NotPem {
                file: TlsFile::ClientKey,
                path: key_path.to_owned(),
                reason: format!("the key cannot be used: {e}"),
            })?;
    match CertifiedKey::new(chain, signing_key).keys_match() {
        // A key type whose public half rustls cannot derive: the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(e) => Err(TlsError::KeyMismatch {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Makes `ring` the process's rustls provider (the `redis` crate builds its TLS settings
/// with the process default). Does nothing if one is installed already.
pub(crate) fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
    });
}
