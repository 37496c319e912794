//! `sluice serve`: a local HTTP/1.1 proxy on loopback whose requests pass through the filter.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use sluice_host::{
    Clock, Clusters, FilterModule, HttpRequest, HttpResponse, LogLevel, LogRecord, LogSink, Proxy,
    ProxyOptions, RequestOutcome, ResponseOutcome,
};
use tokio::net::TcpListener;

use crate::echo;

/// The filter, built for wasm32-wasip1 when this crate was built.
const FILTER_WASM: &[u8] = include_bytes!(env!("SLUICE_FILTER_WASM"));
/// The config used when `--config` is not given.
const DEFAULT_CONFIG: &str = include_str!("../../../../envoy-config/sluice.json");
/// Request bodies above this are refused (the filter never reads bodies; this bounds memory).
const MAX_BODY: usize = 8 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The sluice config (JSON). Default: envoy-config/sluice.json, built in.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, short, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Forward allowed requests to this upstream (`http://host:port`) instead of the
    /// built-in echo.
    #[arg(long, short)]
    upstream: Option<Uri>,
    /// Worker threads, each with its own VM, sharing counters as Envoy's workers do.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Run this filter `.wasm` instead of the built-in one.
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Behave as Kong's ngx_wasm_module (strict CAS, `source.address` without a port)
    /// instead of Envoy.
    #[arg(long)]
    ngx: bool,
    /// A cluster the filter's HTTP calls (HTTP/1.1) and gRPC calls and streams (HTTP/2,
    /// Envoy only) can reach, `NAME=HOST:PORT` (repeatable), e.g.
    /// `--cluster sluice_service=127.0.0.1:8082` for a config whose `global.cluster` is
    /// `sluice_service`.
    #[arg(long = "cluster", value_name = "NAME=HOST:PORT", value_parser = parse_cluster)]
    clusters: Vec<(String, SocketAddr)>,
}

fn parse_cluster(entry: &str) -> Result<(String, SocketAddr), String> {
    Clusters::parse_entry(entry).map_err(|error| error.to_string())
}

struct Server {
    proxy: Proxy,
    upstream: Option<Upstream>,
}

struct Upstream {
    uri: Uri,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => DEFAULT_CONFIG.as_bytes().to_vec(),
    };
    // The same validation the filter does, with the same message, before any VM starts.
    let policy = sluice_policy::Policy::from_json(&config).map_err(|error| {
        anyhow::anyhow!(
            "{}: {error}",
            args.config
                .as_deref()
                .map_or("built-in config".into(), |p| p.display().to_string())
        )
    })?;
    let module = match &args.wasm {
        Some(path) => FilterModule::from_file(path)?,
        None => FilterModule::from_bytes(FILTER_WASM)?,
    };
    let mut options = if args.ngx {
        ProxyOptions::ngx_wasm_module(module)
    } else {
        ProxyOptions::new(module)
    };
    options = options
        .plugin_config(config)
        .workers(args.workers)
        .clock(Clock::System)
        .log_level(LogLevel::Info);
    for (name, address) in &args.clusters {
        options = options.cluster(name, *address);
    }
    options.logs = LogSink::with_forwarder(0, forward_log());
    let proxy = Proxy::start(options)?;
    let upstream = match args.upstream {
        None => None,
        Some(uri) => {
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                bail!("--upstream must be an http://host:port URL, got {uri}");
            }
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            Some(Upstream { uri, client })
        }
    };
    let upstream_name = upstream
        .as_ref()
        .map_or("built-in echo".to_string(), |u| u.uri.to_string());
    let server = Arc::new(Server { proxy, upstream });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!(
            "sluice: listening on http://{} ({} rules, {} workers, upstream: {upstream_name}{})",
            listener.local_addr()?,
            policy.rules().len(),
            args.workers,
            if args.clusters.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = args
                    .clusters
                    .iter()
                    .map(|(name, address)| format!("{name}={address}"))
                    .collect();
                format!(", clusters: {}", names.join(", "))
            },
        );
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => accepted.context("accepting a connection")?,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("sluice: stopping");
                    return Ok(());
                }
            };
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let server = Arc::clone(&server);
                    async move { Ok::<_, Infallible>(server.handle(request, peer).await) }
                });
                // A client that goes away mid-request is not the proxy's error.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    })
}

/// Filter log lines go to stderr, as a proxy's log would.
fn forward_log() -> sluice_host::LogForwarder {
    Arc::new(|record: &LogRecord| {
        eprintln!("[{:?}] {}", record.level, record.message);
    })
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        match self.pass(request, peer).await {
            Ok(response) => response,
            Err(error) => {
                eprintln!("sluice: {error:#}");
                plain(
                    StatusCode::BAD_GATEWAY,
                    "sluice: upstream or filter error\n",
                )
            }
        }
    }

    async fn pass(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> anyhow::Result<Response<Full<Bytes>>> {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return Ok(plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large\n",
                ));
            }
        };
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| header_str(&parts.headers, "host"))
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut host_request =
            HttpRequest::new(parts.method.as_str(), &path, &authority).from(peer);
        for (name, value) in &parts.headers {
            if name == hyper::header::HOST {
                continue;
            }
            if let Ok(value) = value.to_str() {
                host_request = host_request.header(name.as_str(), value);
            }
        }
        host_request = host_request.body(body.to_vec());

        let this = Arc::clone(self);
        let worker = this.proxy.next_worker();
        let (mut stream, outcome) =
            blocking(move || this.proxy.begin(worker, host_request)).await??;
        let outcome = match outcome {
            RequestOutcome::Paused => {
                let (s, o) = blocking(move || {
                    let o = stream.wait_request(Duration::from_secs(30));
                    (stream, o)
                })
                .await?;
                stream = s;
                o?
            }
            other => other,
        };
        let response = match outcome {
            RequestOutcome::Forward(forwarded) => {
                let upstream_response = match &self.upstream {
                    None => echo::respond(&forwarded),
                    Some(upstream) => upstream.send(&forwarded).await?,
                };
                let (s, o) = blocking(move || {
                    let o = stream.response(upstream_response);
                    (stream, o)
                })
                .await?;
                stream = s;
                match o? {
                    ResponseOutcome::Forward(r) => build(r.status, &r.headers, r.body),
                    ResponseOutcome::LocalResponse(r) => build(r.status, &r.headers, r.body),
                    ResponseOutcome::Failed(f) => plain(status(f.status), "filter failed\n"),
                    ResponseOutcome::Reset | ResponseOutcome::Paused => {
                        plain(StatusCode::BAD_GATEWAY, "stream reset by the filter\n")
                    }
                }
            }
            RequestOutcome::LocalResponse(r) => build(r.status, &r.headers, r.body),
            RequestOutcome::Failed(f) => {
                eprintln!("sluice: the filter failed: {}", f.trap);
                plain(status(f.status), "filter failed\n")
            }
            RequestOutcome::Reset | RequestOutcome::Paused => {
                plain(StatusCode::BAD_GATEWAY, "stream reset by the filter\n")
            }
        };
        blocking(move || stream.finish()).await??;
        Ok(response)
    }
}

impl Upstream {
    async fn send(
        &self,
        forwarded: &sluice_host::ForwardedRequest,
    ) -> anyhow::Result<HttpResponse> {
        let path = forwarded.header(":path").unwrap_or("/");
        let mut uri = format!("{}", self.uri).trim_end_matches('/').to_string();
        uri.push_str(path);
        let method = forwarded.header(":method").unwrap_or("GET");
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in &forwarded.headers {
            if name.starts_with(':') {
                if name == ":authority" {
                    builder = builder.header("host", value);
                }
                continue;
            }
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(Bytes::from(forwarded.body.clone())))?;
        let response = self
            .client
            .request(request)
            .await
            .context("calling the upstream")?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the upstream's body")?
            .to_bytes();
        let mut out = HttpResponse::new(parts.status.as_u16()).body(body.to_vec());
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                out = out.header(name.as_str(), value);
            }
        }
        Ok(out)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a filter call panicked")
}

fn header_str(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

fn plain(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = code;
    response
}

fn build(code: u16, headers: &[(String, String)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status(code);
    for (name, value) in headers {
        // Pseudo-headers and hop-by-hop framing are the server's to set.
        if name.starts_with(':')
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
