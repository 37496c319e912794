//! `sluice-service`: the global tier's rate-limit service. See `service/README.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sluice_service::clock::SystemClock;
use sluice_service::decider::Decider;
use sluice_service::domains::Domains;
use sluice_service::metrics::Metrics;
use sluice_service::redis_setup::RedisOptions;
use sluice_service::server::{self, Limits};
use sluice_service::store::RedisBackend;

/// A stateless rate-limit service for sluice's global rules: Envoy's rate-limit service API v3
/// (gRPC and JSON) and sluice's decide API, with every counter in Redis.
#[derive(Debug, Parser)]
#[command(name = "sluice-service", version)]
struct Args {
    /// A sluice JSON configuration (the proxies' own); repeat for several domains
    /// (each config's `global.domain`).
    #[arg(long = "config", value_name = "FILE", required = true)]
    configs: Vec<PathBuf>,
    /// Redis: `redis://[user[:password]@]host:port[/db]`, or `rediss://` for TLS. Repeat to
    /// give several seed nodes of a Redis Cluster.
    #[arg(
        long = "redis",
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: Vec<String>,
    /// Treat the Redis URL(s) as seed nodes of a Redis Cluster (implied by several --redis).
    #[arg(long)]
    redis_cluster: bool,
    /// The Redis password, read from the first line of this file (keeps it out of the
    /// command line); it overrides a password in the URL. An ACL user goes in the URL.
    #[arg(long, value_name = "FILE")]
    redis_password_file: Option<PathBuf>,
    /// TLS (rediss://): trust the certificate authorities in this PEM file instead of the
    /// system's, e.g. a private CA.
    #[arg(long, value_name = "FILE")]
    redis_ca_cert: Option<PathBuf>,
    /// TLS: present this PEM certificate (chain) to Redis (mutual TLS); needs
    /// --redis-client-key.
    #[arg(long, value_name = "FILE", requires = "redis_client_key")]
    redis_client_cert: Option<PathBuf>,
    /// TLS: the private key (PEM, unencrypted) of --redis-client-cert.
    #[arg(long, value_name = "FILE", requires = "redis_client_cert")]
    redis_client_key: Option<PathBuf>,
    /// How long one Redis call may take before the rules' failure modes apply.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = humantime::parse_duration)]
    redis_timeout: Duration,
    /// Where to serve Envoy's RLS API over gRPC (`none` to disable).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081", value_parser = listen_addr)]
    grpc_listen: Listen,
    /// Where to serve HTTP: the decide API, RLS JSON, /healthz, /readyz, /metrics (`none` to
    /// disable).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8082", value_parser = listen_addr)]
    http_listen: Listen,
    /// Requests decided at once at most; beyond it requests are refused (503 / UNAVAILABLE).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// The longest a decision may take in total before the rules' failure modes apply.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = humantime::parse_duration)]
    decision_timeout: Duration,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Check the configurations and exit.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

fn listen_addr(text: &str) -> Result<Listen, String> {
    if text == "none" {
        return Ok(Listen(None));
    }
    text.parse::<SocketAddr>()
        .map(|addr| Listen(Some(addr)))
        .map_err(|e| format!("{text:?} is not an address like 127.0.0.1:8080 ({e})"))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logs(args.log_format);
    let domains = match Domains::load(&args.configs) {
        Ok(domains) => domains,
        Err(error) => {
            eprintln!("sluice-service: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        for name in domains.names() {
            println!("domain \"{name}\": ok");
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sluice-service: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, domains)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("sluice-service: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, domains: Domains) -> Result<(), String> {
    let options = RedisOptions {
        urls: args.redis.clone(),
        cluster: args.redis_cluster,
        password_file: args.redis_password_file.clone(),
        ca_cert: args.redis_ca_cert.clone(),
        client_cert: args.redis_client_cert.clone(),
        client_key: args.redis_client_key.clone(),
        call_timeout: Some(args.redis_timeout),
    };
    let config = options.config()?;
    // The config's Debug output shows no password.
    tracing::info!(redis = ?config, "connecting to Redis");
    let store = RedisBackend::start(config)
        .await
        .map_err(|e| format!("cannot use Redis: {e}"))?;
    let decider = Arc::new(Decider::new(
        domains,
        store,
        SystemClock,
        Metrics::new(),
        args.max_in_flight,
        args.decision_timeout,
    ));
    let running = server::start(
        decider,
        args.grpc_listen.0,
        args.http_listen.0,
        Limits::default(),
    )
    .await
    .map_err(|e| format!("cannot listen: {e}"))?;
    if let Some(addr) = running.grpc_addr() {
        tracing::info!(%addr, "serving Envoy's rate-limit service API (gRPC)");
    }
    if let Some(addr) = running.http_addr() {
        tracing::info!(%addr, "serving HTTP: /v1/decide, /json, /healthz, /readyz, /metrics");
    }
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
