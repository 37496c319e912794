//! Running the real sluice `.wasm` in the host: one compiled module per test binary, proxies
//! with a fake clock, and requests as a client would send them.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use sluice_host::test_filters::SLUICE_FILTER_WASM;
use sluice_host::{
    Clock, Exchange, FilterModule, HttpRequest, HttpResponse, LogLevel, Metrics, Proxy,
    ProxyOptions,
};

/// The proxy's counters once every worker's VM has flushed what it counted: the filter counts
/// in the VM and hands its counts to the proxy on its timer (and at VM shutdown), so a test
/// reading them right after its requests ticks every worker first.
pub fn flushed_metrics(proxy: &Proxy) -> &Metrics {
    proxy
        .tick_all()
        .unwrap_or_else(|error| panic!("ticking the workers fails: {error}"));
    proxy.metrics()
}

/// 2026-01-01T00:00:00Z in nanoseconds: a day boundary, as in the shared vectors.
pub const T0_NS: u64 = 1_767_225_600_000_000_000;

/// The sluice filter, compiled once for the whole test binary.
pub fn sluice() -> FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE
        .get_or_init(|| FilterModule::from_file(SLUICE_FILTER_WASM).expect("the filter compiles"))
        .clone()
}

/// Which proxy the host behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Envoy,
    Ngx,
}

/// Options for the sluice filter with `config`, `workers` VMs and a fake clock at T0.
pub fn options(host: Host, config: &serde_json::Value, workers: usize) -> ProxyOptions {
    let options = match host {
        Host::Envoy => ProxyOptions::new(sluice()),
        Host::Ngx => ProxyOptions::ngx_wasm_module(sluice()),
    };
    options
        .plugin_config(config.to_string())
        .workers(workers)
        .clock(Clock::fake(T0_NS))
        .log_level(LogLevel::Info)
        .pause_timeout(Duration::from_secs(5))
}

/// A started proxy (panics with the filter's logs if the filter rejects its config).
pub fn start(host: Host, config: &serde_json::Value, workers: usize) -> Proxy {
    match Proxy::start(options(host, config, workers)) {
        Ok(proxy) => proxy,
        Err(error) => panic!("the proxy did not start: {error}"),
    }
}

/// Sets the fake clock to `ms` milliseconds after T0.
pub fn at_ms(proxy: &Proxy, ms: u64) {
    proxy
        .clock()
        .as_fake()
        .expect("a fake clock")
        .set_ns(T0_NS + ms * 1_000_000);
}

/// `GET path` from `peer`.
pub fn get(path: &str, peer: &str) -> HttpRequest {
    HttpRequest::new("GET", path, "api.example.com").from(peer.parse::<SocketAddr>().expect("peer"))
}

/// The exchange on `worker`, with an upstream that answers 200 and adds no headers.
pub fn send(proxy: &Proxy, worker: usize, request: HttpRequest) -> Exchange {
    proxy
        .exchange(worker, request, |_| HttpResponse::new(200))
        .expect("the exchange completes")
}

/// The status the client received.
pub fn status(exchange: &Exchange) -> u16 {
    exchange.client.status().expect("a response")
}

/// Both shared-data flavours, for tests that must hold on every host.
pub const HOSTS: [Host; 2] = [Host::Envoy, Host::Ngx];

/// The store key of bucket `bucket` of rule `rule` (`sluice/<namespace>/<rule>/<tag>/<bucket>`),
/// as the filter created it.
pub fn bucket_key(proxy: &Proxy, rule: &str, bucket: usize) -> String {
    let suffix = format!("/{bucket}");
    proxy
        .shared_data()
        .keys()
        .into_iter()
        .map(|key| String::from_utf8(key).expect("UTF-8 key names"))
        .find(|key| {
            let parts: Vec<&str> = key.split('/').collect();
            parts.len() == 5 && parts[2] == rule && key.ends_with(&suffix)
        })
        .unwrap_or_else(|| panic!("no bucket {bucket} of rule {rule}"))
}

/// The store key of the hash seed (`sluice/<namespace>/seed`).
pub fn seed_key(proxy: &Proxy) -> String {
    proxy
        .shared_data()
        .keys()
        .into_iter()
        .map(|key| String::from_utf8(key).expect("UTF-8 key names"))
        .find(|key| key.ends_with("/seed"))
        .expect("a seed")
}
