//! The clock and the randomness a filter sees: the proxy's clock through
//! both the proxy-wasm call and WASI, and fresh random bytes from WASI.

mod common;

use std::time::Duration;

use common::{START_NS, exchange, options, probe_request, result, start};

#[test]
fn the_filter_reads_the_fake_clock_through_the_abi_and_through_wasi() {
    let proxy = start(options());
    let read = || {
        exchange(
            &proxy,
            probe_request(&[("x-probe-raw", "time"), ("x-probe-raw", "wasi-time")]),
        )
    };
    let done = read();
    assert_eq!(
        result(&done, "raw-time"),
        Some(format!("0 value={START_NS}"))
    );
    assert_eq!(
        result(&done, "raw-wasi-time"),
        Some(format!("0 value={START_NS}"))
    );
    proxy
        .clock()
        .as_fake()
        .expect("a fake clock")
        .advance(Duration::from_secs(5));
    let later = START_NS + 5_000_000_000;
    let done = read();
    assert_eq!(result(&done, "raw-time"), Some(format!("0 value={later}")));
    assert_eq!(
        result(&done, "raw-wasi-time"),
        Some(format!("0 value={later}"))
    );
}

#[test]
fn random_get_gives_fresh_bytes_every_time() {
    let proxy = start(options());
    let draw = || {
        let done = exchange(&proxy, probe_request(&[("x-probe-raw", "random")]));
        result(&done, "raw-random").expect("a result")
    };
    let (first, second) = (draw(), draw());
    assert!(first.starts_with("0 value="), "errno 0: {first}");
    assert_eq!(
        first.len(),
        "0 value=".len() + 32,
        "16 bytes in hex: {first}"
    );
    assert_ne!(first, second);
}
