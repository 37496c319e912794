//! Two proxies (an Envoy and an ngx_wasm_module flavour, three VMs each) in front of one
//! rate-limit service: a client hammering both from many threads gets exactly its limit in
//! total, for every algorithm, where local rules would have let it through once per proxy.

use std::sync::Arc;

use serde_json::json;
use sluice_host::Clock;

use crate::global_rules::start_with_service;
use crate::support::{Host, T0_NS, get, send, status};
use sluice_host::fake_service::FakeService;

#[test]
fn two_proxies_admit_exactly_the_limit_in_total() {
    for algorithm in ["gcra", "fixed_window", "sliding_window", "sliding_log"] {
        let limit = 40;
        let config = json!({
            "global": {"cluster": "limits", "timeout": "2s"},
            "rules": [{"name": "fleet", "scope": "global", "key": ["client_ip"],
                       "algorithm": algorithm, "failure_mode": "closed",
                       "limit": {"requests": limit, "period": "1h"}}]});
        let clock = Clock::fake(T0_NS);
        let service = FakeService::start(&config, clock.clone());
        let proxies = Arc::new([
            start_with_service(Host::Envoy, &config, 3, service.addr(), &clock),
            start_with_service(Host::Ngx, &config, 3, service.addr(), &clock),
        ]);
        let threads: Vec<_> = (0..6)
            .map(|thread| {
                let proxies = Arc::clone(&proxies);
                std::thread::spawn(move || {
                    let proxy = &proxies[thread % 2];
                    let worker = thread / 2;
                    (0..20)
                        .filter(|_| {
                            status(&send(proxy, worker, get("/", "203.0.113.7:1000"))) == 200
                        })
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(
            admitted, limit as usize,
            "{algorithm}: 120 sent through two proxies"
        );
        let denied: u64 = proxies
            .iter()
            .map(|p| {
                crate::support::flushed_metrics(p)
                    .counter("sluice.fleet.denied")
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(denied, 120 - limit, "{algorithm}");
    }
}
