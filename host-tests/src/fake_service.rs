//! A fake rate-limit service for the filter's tests and benchmarks: an HTTP/1.1 server on a loopback port
//! speaking the native decide and lease protocols (`POST /v1/decide`, `POST /v1/lease`),
//! deciding with the core over an
//! in-memory map (`sluice_policy::global::MemoryService`, the reference implementation of the
//! protocol) at the time of a clock the test controls, so its decisions are exactly those
//! the local path makes. It can be told to misbehave: answer a status, answer garbage, or
//! answer late.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Clock;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sluice_policy::Policy;
use sluice_policy::global::MemoryService;

/// How the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Decides, as `sluice-service` would.
    Decide,
    /// Answers this status with an error body, deciding nothing.
    Status(u16),
    /// Answers 200 with a body that is not a decide reply.
    Garbage,
    /// Decides, but answers only after this long.
    Late(Duration),
}

/// One request the service received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

struct Inner {
    service: MemoryService,
    behaviour: Behaviour,
    received: Vec<Received>,
}

/// The running service; stops when dropped.
pub struct FakeService {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeService {
    /// Serves `config`'s global rules on a free loopback port, reading time from `clock`.
    pub fn start(config: &serde_json::Value, clock: Clock) -> FakeService {
        let policy = Policy::from_json(config.to_string().as_bytes()).expect("a valid config");
        let inner = Arc::new(Mutex::new(Inner {
            service: MemoryService::new(policy),
            behaviour: Behaviour::Decide,
            received: Vec::new(),
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::clone(&inner);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                let clock = clock.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, Arc::clone(&shared), clock.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeService {
            addr,
            inner,
            _runtime: runtime,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how it answers from the next request on.
    pub fn behave(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// How many requests reached `path` so far.
    pub fn calls_to(&self, path: &str) -> usize {
        self.lock()
            .received
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the service's state")
    }
}

impl std::fmt::Debug for FakeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeService")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A loopback address nothing listens on (connection refused).
pub fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address")
}

async fn answer(
    request: Request<Incoming>,
    inner: Arc<Mutex<Inner>>,
    clock: Clock,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut received = Received {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        authority: header("host"),
        content_type: header("content-type"),
        body: Vec::new(),
    };
    received.body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let behaviour = {
        let mut inner = inner.lock().expect("the service's state");
        inner.received.push(received.clone());
        inner.behaviour
    };
    let reply = |status: u16, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().expect("a value"));
        Ok(response)
    };
    match behaviour {
        Behaviour::Status(status) => reply(status, br#"{"error": "injected"}"#.to_vec()),
        Behaviour::Garbage => reply(200, b"<html>not json</html>".to_vec()),
        Behaviour::Decide | Behaviour::Late(_) => {
            if let Behaviour::Late(delay) = behaviour {
                tokio::time::sleep(delay).await;
            }
            let mut inner = inner.lock().expect("the service's state");
            let (status, body) = if received.path.ends_with("/lease") {
                inner.service.lease(&received.body, clock.now_ns())
            } else {
                inner.service.decide(&received.body, clock.now_ns())
            };
            reply(status, body)
        }
    }
}
