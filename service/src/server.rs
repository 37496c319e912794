//! Runs the service's listeners: gRPC (Envoy's RLS) and HTTP (the decide API, RLS JSON,
//! health, readiness, metrics), both stopping gracefully: on shutdown they stop accepting,
//! finish the requests in flight (up to a grace period) and return.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::decider::Decider;
use crate::http_api;
use crate::rls::GrpcService;
use crate::store::DecisionStore;

/// Limits on what clients can make the service hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open HTTP connections at most; more wait in the kernel's accept queue.
    pub max_http_connections: usize,
    /// Concurrent gRPC requests per connection.
    pub grpc_concurrency_per_connection: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long requests in flight may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_http_connections: 4096,
            grpc_concurrency_per_connection: 1024,
            header_read_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The running service.
#[derive(Debug)]
pub struct Running {
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Where the gRPC listener is bound.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Where the HTTP listener is bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops accepting, lets requests in flight finish, and returns when both listeners have
    /// stopped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds the listeners (an address with port 0 picks a free port) and starts serving.
pub async fn start<S: DecisionStore, C: Clock>(
    decider: Arc<Decider<S, C>>,
    grpc_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    limits: Limits,
) -> std::io::Result<Running> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut grpc_addr = None;
    if let Some(addr) = grpc_listen {
        let listener = TcpListener::bind(addr).await?;
        grpc_addr = Some(listener.local_addr()?);
        let service = RateLimitServiceServer::new(GrpcService::new(Arc::clone(&decider)));
        let mut stopped = stopped.clone();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(limits.grpc_concurrency_per_connection)
            .add_service(service);
        tasks.push(tokio::spawn(async move {
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = server.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(%error, "gRPC listener failed");
            }
        }));
    }
    let mut http_addr = None;
    if let Some(addr) = http_listen {
        let listener = TcpListener::bind(addr).await?;
        http_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(serve_http(
            listener,
            decider,
            stopped.clone(),
            limits,
        )));
    }
    Ok(Running {
        grpc_addr,
        http_addr,
        stop,
        tasks,
    })
}

async fn serve_http<S: DecisionStore, C: Clock>(
    listener: TcpListener,
    decider: Arc<Decider<S, C>>,
    mut stopped: watch::Receiver<bool>,
    limits: Limits,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_http_connections));
    loop {
        let permit = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let decider = Arc::clone(&decider);
        let service = service_fn(move |request| http_api::handle(Arc::clone(&decider), request));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the shutdown grace period");
    }
}
