//! While a million distinct client addresses flood the filter (IPv4 and IPv6, 10,000 new
//! clients a second, each leaving a second of debt, so about 10,000 keys are live against the
//! rule's 4,096-key table: it is full and evicting on every flood request), shared data stays
//! at its configure-time size and under the rule's byte ceiling, and the clients that keep
//! sending are limited as the documentation says: a client at exactly its rate is never
//! denied, and clients above it (three and ten times) are admitted what GCRA admits on an empty
//! table, plus at most one burst (README, "Limits of the design": a key is evicted only while
//! its debt is the smallest in a full bucket, which for these clients can happen only in their
//! first second, and an evicted key spends at most one more burst).
//!
//! `SLUICE_FLOOD_KEYS` sets the flood size (default 1,000,000; at least 100,000).

use serde_json::json;
use sluice_host::{HttpRequest, Proxy};

use crate::support::{Host, T0_NS, bucket_key, get, seed_key, send, start, status};

const LIMIT: u64 = 10;
const PERIOD_NS: u64 = 10_000_000_000;
const MAX_KEYS: u64 = 4096;
const BUCKETS: u64 = MAX_KEYS / 4;

fn flood_keys() -> u64 {
    std::env::var("SLUICE_FLOOD_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u64)
        .max(100_000)
}

/// The `i`th flood client: IPv4 addresses from 10.0.0.0, every third one an IPv6 /64.
fn flood_request(i: u64) -> HttpRequest {
    if i.is_multiple_of(3) {
        let net = i / 3;
        get(
            "/",
            &format!("[2001:db8:{:x}:{:x}::1]:5000", net >> 16, net & 0xffff),
        )
    } else {
        get(
            "/",
            &format!("{}:5000", std::net::Ipv4Addr::from(0x0a00_0000 + i as u32)),
        )
    }
}

/// A client that keeps sending, one request every `every_ns`.
struct Steady {
    peer: &'static str,
    every_ns: u64,
    sent_at: Vec<u64>,
    admitted: u64,
}

impl Steady {
    fn new(peer: &'static str, per_period: u64) -> Steady {
        Steady {
            peer,
            every_ns: PERIOD_NS / per_period,
            sent_at: Vec::new(),
            admitted: 0,
        }
    }

    fn maybe_send(&mut self, proxy: &Proxy, now_ns: u64, worker: usize) {
        let due = self.sent_at.len() as u64 * self.every_ns;
        if now_ns - T0_NS >= due {
            self.sent_at.push(now_ns);
            if status(&send(proxy, worker, get("/", self.peer))) == 200 {
                self.admitted += 1;
            }
        }
    }

    /// What GCRA (limit 10 per 10 s, burst 10) admits of these requests on its own.
    fn exact(&self) -> u64 {
        let interval = PERIOD_NS / LIMIT;
        let mut tat = 0u64;
        let mut admitted = 0;
        for &now in &self.sent_at {
            let start = tat.max(now);
            if start + interval - now <= LIMIT * interval {
                tat = start + interval;
                admitted += 1;
            }
        }
        admitted
    }
}

#[test]
fn steady_clients_stay_limited_as_documented_through_a_million_client_flood() {
    let config = json!({
        "store": {"max_keys": MAX_KEYS},
        "rules": [{"name": "flood", "key": ["client_ip"], "algorithm": "gcra",
                   "limit": {"requests": LIMIT, "period": "10s"}}]});
    let proxy = start(Host::Envoy, &config, 2);
    let shared = proxy.shared_data();
    let keys_at_start = shared.len();
    assert_eq!(keys_at_start as u64, BUCKETS + 1, "the table and the seed");
    // Each bucket at its largest: header, 4 entries of fingerprint, length and a GCRA state.
    let max_bucket = 10 + 4 * (12 + 10);
    let ceiling = BUCKETS * (bucket_key(&proxy, "flood", 1023).len() as u64 + max_bucket)
        + (seed_key(&proxy).len() + 17) as u64;

    let mut at_rate = Steady::new("192.0.2.10:6000", LIMIT);
    let mut thrice = Steady::new("192.0.2.20:6000", 3 * LIMIT);
    let mut abusive = Steady::new("[2001:db8:ffff:1::7]:6000", 10 * LIMIT);
    let keys = flood_keys();
    let started = std::time::Instant::now();
    for i in 0..keys {
        // 10,000 new clients a simulated second.
        let now_ns = T0_NS + i * 100_000;
        proxy
            .clock()
            .as_fake()
            .expect("a fake clock")
            .set_ns(now_ns);
        let worker = (i % 2) as usize;
        assert_eq!(status(&send(&proxy, worker, flood_request(i))), 200);
        at_rate.maybe_send(&proxy, now_ns, 1 - worker);
        thrice.maybe_send(&proxy, now_ns, worker);
        abusive.maybe_send(&proxy, now_ns, 1 - worker);
        if i % 50_000 == 0 {
            assert_eq!(
                shared.len(),
                keys_at_start,
                "a flood key was added to shared data"
            );
            assert!(
                shared.total_bytes() as u64 <= ceiling,
                "{} > {ceiling}",
                shared.total_bytes()
            );
        }
    }
    eprintln!(
        "flood of {keys} clients in {:.1?}: shared data {} keys, {} bytes (ceiling {ceiling}); \
         at rate {}/{} admitted, at three times {}/{} (exact {}), at ten times {}/{} (exact {})",
        started.elapsed(),
        shared.len(),
        shared.total_bytes(),
        at_rate.admitted,
        at_rate.sent_at.len(),
        thrice.admitted,
        thrice.sent_at.len(),
        thrice.exact(),
        abusive.admitted,
        abusive.sent_at.len(),
        abusive.exact(),
    );
    assert_eq!(shared.len(), keys_at_start);
    assert!(shared.total_bytes() as u64 <= ceiling);
    assert_eq!(
        at_rate.admitted,
        at_rate.sent_at.len() as u64,
        "a client at its rate is never denied"
    );
    for client in [&thrice, &abusive] {
        let (exact, admitted) = (client.exact(), client.admitted);
        assert!(
            client.sent_at.len() as u64 > exact,
            "{} must exceed its limit",
            client.peer
        );
        assert!(
            (exact..=exact + LIMIT).contains(&admitted),
            "{}: {admitted} admitted, exact {exact}, documented error one burst ({LIMIT})",
            client.peer
        );
    }
}
