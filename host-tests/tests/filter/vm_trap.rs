//! A VM that traps in the middle of a request, as Envoy handles it: that stream fails with 503
//! (500 under ngx_wasm_module), the other VMs carry on, and the VM started in its place adopts
//! the deployment's seed and tables, so every count made before the trap still holds.
//!
//! The trap is real: the filter runs metered, and one request carries a header so large that
//! hashing it into the rule's key exceeds the per-callback fuel budget, which ordinary
//! requests (without the header) stay far below. (Reading a header costs next to nothing: the
//! filter walks the host's buffer in place.)

use std::sync::OnceLock;

use serde_json::json;
use sluice_host::test_filters::SLUICE_FILTER_WASM;
use sluice_host::{FilterModule, FuelMetering, Proxy, ProxyOptions, RequestOutcome};

use crate::support::{Host, get, options, seed_key, send, status};

/// The filter compiled with fuel metering, once.
pub(crate) fn metered() -> FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let wasm = std::fs::read(SLUICE_FILTER_WASM).expect("the filter .wasm");
            FilterModule::compile(&wasm, FuelMetering::On).expect("the filter compiles")
        })
        .clone()
}

fn config() -> serde_json::Value {
    json!({"store": {"max_keys": 64},
           "rules": [{"name": "per-client", "key": ["client_ip", {"header": "x-padding"}],
                      "limit": {"requests": 5, "period": "1h"}}]})
}

fn start_metered(host: Host, fuel: Option<u64>) -> Proxy {
    let mut options = ProxyOptions {
        module: metered(),
        ..options(host, &config(), 2)
    };
    if let Some(fuel) = fuel {
        options = options.fuel_per_callback(fuel);
    }
    Proxy::start(options).expect("the proxy starts")
}

const CLIENT: &str = "203.0.113.50:4000";

/// A request whose one header takes `bytes` bytes.
fn heavy(bytes: usize) -> sluice_host::HttpRequest {
    get("/", CLIENT).header("x-padding", &"a".repeat(bytes))
}

/// A budget between what a plain request needs and what the heavy one needs, measured on an
/// unlimited proxy (fuel is deterministic).
pub(crate) fn budget() -> (u64, usize) {
    let proxy = start_metered(Host::Envoy, None);
    let fuel = |request| {
        send(&proxy, 0, request)
            .report
            .fuel_consumed
            .expect("metered")
    };
    let plain = fuel(get("/", "198.51.100.1:1"));
    let bytes = 1 << 20;
    let heavy = fuel(heavy(bytes));
    assert!(
        heavy > 20 * plain,
        "the heavy request must cost far more: {heavy} vs {plain}"
    );
    // Generous for every ordinary callback (configuring creates the 16 buckets), far below
    // the heavy request.
    ((heavy / 4).max(plain * 10), bytes)
}

#[test]
fn a_trap_mid_request_fails_that_stream_and_the_counts_survive_it() {
    let (fuel, bytes) = budget();
    for (host, failure_status) in [(Host::Envoy, 503), (Host::Ngx, 500)] {
        let proxy = start_metered(host, Some(fuel));
        let seed = proxy
            .shared_data()
            .get(seed_key(&proxy))
            .expect("a seed")
            .value;
        for _ in 0..3 {
            assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 200);
        }

        let trapped = send(&proxy, 0, heavy(bytes));
        let RequestOutcome::Failed(failure) = &trapped.request else {
            panic!(
                "{host:?}: the heavy request must trap, got {:?}",
                trapped.request
            );
        };
        assert!(failure.trap.contains("fuel"), "{host:?}: {}", failure.trap);
        assert_eq!(status(&trapped), failure_status, "{host:?}");

        // The other VM carries on, with the counts made before the trap.
        assert_eq!(status(&send(&proxy, 1, get("/", CLIENT))), 200, "{host:?}");
        // The trapped VM's replacement finds the same seed and table: the fifth request
        // passes, the sixth is the first over the limit, whichever VM serves it.
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 200, "{host:?}");
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 429, "{host:?}");
        assert_eq!(status(&send(&proxy, 1, get("/", CLIENT))), 429, "{host:?}");
        assert_eq!(
            proxy
                .shared_data()
                .get(seed_key(&proxy))
                .expect("a seed")
                .value,
            seed,
            "{host:?}: the replacement VM must adopt the seed, not draw a new one"
        );
        assert_eq!(
            proxy
                .logs()
                .messages()
                .iter()
                .filter(|m| m.contains("sluice: configured"))
                .count(),
            3,
            "{host:?}: two VMs configured at start, one replacement"
        );
        // Other clients were never affected.
        assert_eq!(
            status(&send(&proxy, 0, get("/", "198.51.100.2:1"))),
            200,
            "{host:?}"
        );
    }
}
