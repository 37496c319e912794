//! TLS in front of the test Redis. The provisioned Redis 6.2 is built without TLS (it refuses
//! `--tls-port`), so a TLS terminator stands in for Redis' own TLS: it accepts TLS on its own
//! loopback port (optionally requiring a client certificate) and relays the plaintext to the
//! server. Clients see what they would see from a Redis with TLS on: a `rediss://` URL, the
//! server certificate, and a refusal when they do not trust it or bring no certificate.
//!
//! [`TestPki`] makes the certificates at test time (rcgen): a CA, a server certificate for
//! `localhost` and `127.0.0.1` signed by it, and a client certificate signed by it, written as
//! PEM files for the service's command line.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::HarnessError;
use crate::server::fresh_dir;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A CA, a server certificate and a client certificate, as PEM files in a directory of their
/// own (removed on drop).
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl TestPki {
    /// A fresh CA (`name` goes in its common name) with a server certificate for `localhost`
    /// and `127.0.0.1` and a client certificate, all ECDSA P-256.
    pub fn generate(name: &str) -> Result<TestPki, HarnessError> {
        let fail = |what: &str, e: rcgen::Error| HarnessError::Start(format!("{what}: {e}"));
        let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", e))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("sluice test CA {name}"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| fail("CA", e))?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().map_err(|e| fail("server key", e))?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(|e| fail("server certificate", e))?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .map_err(|e| fail("server certificate", e))?;

        let client_key = KeyPair::generate().map_err(|e| fail("client key", e))?;
        let mut client =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("client", e))?;
        client
            .distinguished_name
            .push(DnType::CommonName, "sluice-service");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client
            .signed_by(&client_key, &issuer)
            .map_err(|e| fail("client certificate", e))?;

        let pki = TestPki {
            dir: fresh_dir()?,
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        };
        for (file, pem) in [
            ("ca.pem", pki.ca_pem.clone()),
            ("server.pem", pki.server_cert_pem.clone()),
            ("server.key", pki.server_key_pem.clone()),
            ("client.pem", client_cert.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            let path = pki.dir.join(file);
            fs::write(&path, pem).map_err(|e| {
                HarnessError::Start(format!("cannot write {}: {e}", path.display()))
            })?;
        }
        Ok(pki)
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (`ca.pem`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate (`server.pem`), for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server certificate's key (`server.key`).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The client certificate (`client.pem`).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's key (`client.key`).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    fn acceptor(&self, require_client_cert: bool) -> Result<TlsAcceptor, HarnessError> {
        let fail = |e: &dyn std::fmt::Display| HarnessError::Start(format!("TLS setup: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| fail(&e))?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(&e))?;
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| fail(&e))?)
                    .map_err(|e| fail(&e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| fail(&e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| fail(&e))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether the terminator asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Any client that trusts the server may connect.
    #[default]
    None,
    /// Mutual TLS: only clients with a certificate signed by the test CA.
    Required,
}

/// A TLS terminator on a loopback port relaying to a Redis port. It runs on a runtime of its
/// own, so it serves synchronous and asynchronous tests alike; dropping it stops it.
#[derive(Debug)]
pub struct TlsProxy {
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsProxy {
    /// Listens on a free loopback port, terminating TLS with `pki`'s server certificate and
    /// relaying every connection to `127.0.0.1:backend_port`.
    pub fn start(
        backend_port: u16,
        pki: &TestPki,
        client_auth: ClientAuth,
    ) -> Result<TlsProxy, HarnessError> {
        TlsProxy::start_on(0, backend_port, pki, client_auth)
    }

    /// As [`TlsProxy::start`], on `port` (0: a free one).
    pub fn start_on(
        port: u16,
        backend_port: u16,
        pki: &TestPki,
        client_auth: ClientAuth,
    ) -> Result<TlsProxy, HarnessError> {
        let acceptor = pki.acceptor(client_auth == ClientAuth::Required)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tls-proxy")
            .enable_all()
            .build()
            .map_err(|e| HarnessError::Start(format!("TLS proxy runtime: {e}")))?;
        // Bound here, outside the runtime: a caller may be inside a runtime of its own, where
        // blocking on ours is not allowed.
        let listener = std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|e| HarnessError::Start(format!("TLS proxy cannot bind: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::Start(format!("TLS proxy address: {e}")))?
            .port();
        let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, backend_port));
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(relay(stream, acceptor, backend));
            }
        });
        Ok(TlsProxy {
            port,
            runtime: Some(runtime),
        })
    }

    /// The TLS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Allowed inside an async test, unlike dropping the runtime.
            runtime.shutdown_background();
        }
    }
}

/// One client: the handshake (a failed one closes the connection, as Redis does), then bytes
/// both ways until either side closes.
async fn relay(stream: TcpStream, acceptor: TlsAcceptor, backend: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(Ok(mut tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
    else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = plain.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}
