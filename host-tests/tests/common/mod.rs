//! Helpers shared by the end-to-end tests: the probe filter, compiled once
//! per test binary, and proxies running it.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use sluice_host::{
    Clock, Exchange, FilterModule, FuelMetering, HttpRequest, HttpResponse, LogLevel, Proxy,
    ProxyOptions,
};

/// 2023-11-14T22:13:20Z, in nanoseconds.
pub const START_NS: u64 = 1_700_000_000_000_000_000;

/// The probe filter, compiled once for the whole test binary.
pub fn probe() -> FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            FilterModule::from_file(env!("PROBE_FILTER_WASM"))
                .expect("the probe filter compiles and links")
        })
        .clone()
}

/// The probe filter with fuel metering, compiled once.
pub fn metered_probe() -> FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let wasm = std::fs::read(env!("PROBE_FILTER_WASM")).expect("the probe filter exists");
            FilterModule::compile(&wasm, FuelMetering::On).expect("the probe filter compiles")
        })
        .clone()
}

/// Options for the probe: one worker, Envoy, a fake clock, every log level.
pub fn options() -> ProxyOptions {
    ProxyOptions::new(probe())
        .clock(Clock::fake(START_NS))
        .log_level(LogLevel::Trace)
        .pause_timeout(Duration::from_secs(2))
}

pub fn start(options: ProxyOptions) -> Proxy {
    Proxy::start(options).expect("the proxy starts")
}

/// A request to `/` carrying the given `x-probe-` instructions.
pub fn probe_request(instructions: &[(&str, &str)]) -> HttpRequest {
    instructions
        .iter()
        .fold(HttpRequest::get("/"), |request, (name, value)| {
            request.header(name, value)
        })
}

/// An exchange on worker 0 whose upstream answers 200 with body `upstream`.
pub fn exchange(proxy: &Proxy, request: HttpRequest) -> Exchange {
    exchange_on(proxy, 0, request)
}

pub fn exchange_on(proxy: &Proxy, worker: usize, request: HttpRequest) -> Exchange {
    proxy
        .exchange(worker, request, |_| {
            HttpResponse::new(200)
                .header("content-type", "text/plain")
                .body("upstream")
        })
        .expect("the exchange completes")
}

/// The value of a probe result header (`x-probe-r-<name>`) in the response
/// the client gets.
pub fn result(exchange: &Exchange, name: &str) -> Option<String> {
    exchange
        .header(&format!("x-probe-r-{name}"))
        .map(str::to_string)
}
