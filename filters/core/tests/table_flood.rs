//! A flood of distinct keys cannot grow the store past the rule's table, and a client kept
//! above its limit stays limited through it.
//!
//! One GCRA rule (10 per second, burst 10, `max_keys` 65,536: 16,384 buckets) receives one
//! request from each of `SLUICE_FLOOD_KEYS` distinct keys (default 1,000,000; set it lower for a
//! quick run), each spending 5 units, one every 5 µs of simulated time: about 6 live keys per
//! 4-way bucket at any moment, so the table is full and evicting throughout. Meanwhile two
//! clients keep sending: one far above its limit (1,000/s), one at twice it (20/s).
//!
//! What is proved: the store never holds more than the bucket count of keys nor more bytes than
//! `RuleTable::max_store_bytes`; the heavy client is never evicted (its debt always exceeds a
//! flood key's) and is limited exactly as with an empty table; and any client is admitted at
//! most what it would be with an empty table plus one burst per time its entry was evicted
//! (the accuracy bound in the `table` module docs).

mod common;

use common::*;
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Algorithm, Check, Limiter, Nanos, RuleTable};

const MAX_KEYS: u32 = 65_536;
const FLOOD_GAP: Nanos = 5_000;

struct Client {
    name: &'static str,
    every: Nanos,
    next_at: Nanos,
    sent: u64,
    admitted: u64,
    evictions: u64,
    /// Its own requests replayed against a key with no neighbours.
    clean: Key,
    clean_admitted: u64,
}

fn flood_keys() -> u64 {
    std::env::var("SLUICE_FLOOD_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

#[test]
fn a_key_flood_stays_within_the_table_and_limited_clients_stay_limited() {
    let rule = "per-client";
    let l = limit(Algorithm::Gcra, 10, SECOND, 10);
    let table = RuleTable::new(rule, l, MAX_KEYS);
    let ceiling = table.max_store_bytes();
    let mut store = MemoryStore::new(Semantics::Envoy);
    let mut limiter = Limiter::new(SEED, 8);
    assert_eq!(
        limiter.prepare(rule, &l, MAX_KEYS, &mut store),
        Ok(table.bucket_count())
    );

    let keys = flood_keys();
    let mut clients =
        [("heavy", SECOND / 1_000), ("moderate", SECOND / 20)].map(|(name, every)| Client {
            name,
            every,
            // Once the flood has filled the table (a twenty-fifth of the run: 200 ms by default).
            next_at: BASE + keys * FLOOD_GAP / 25,
            sent: 0,
            admitted: 0,
            evictions: 0,
            clean: Key::new(l),
            clean_admitted: 0,
        });
    let mut checks = vec![Check {
        max_keys: MAX_KEYS,
        ..check(rule, l, "", 5)
    }];
    let mut now = BASE;
    for n in 0..keys {
        now += FLOOD_GAP;
        for client in &mut clients {
            while client.next_at <= now {
                let at = client.next_at;
                client.next_at += client.every;
                let own = Check {
                    max_keys: MAX_KEYS,
                    ..check(rule, l, client.name, 1)
                };
                if client.sent > 0 && stored_state(&store, &own).is_none() {
                    client.evictions += 1;
                }
                client.sent += 1;
                if limiter
                    .check(std::slice::from_ref(&own), at, &mut store)
                    .allowed
                {
                    client.admitted += 1;
                }
                if client.clean.send(at, 1).allowed {
                    client.clean_admitted += 1;
                }
            }
        }
        checks[0].key.clear();
        checks[0].key.extend_from_slice(b"flood-");
        checks[0].key.extend_from_slice(&n.to_le_bytes());
        assert!(limiter.check(&checks, now, &mut store).allowed);
        if n % 65_536 == 0 {
            assert!(store.len() as u64 <= u64::from(table.bucket_count()));
            assert!(store.total_bytes() as u64 <= ceiling);
        }
    }
    assert_eq!(store.len() as u64, u64::from(table.bucket_count()));
    assert!(
        store.total_bytes() as u64 <= ceiling,
        "{} bytes stored, ceiling {ceiling}",
        store.total_bytes()
    );

    for client in &clients {
        assert!(
            client.admitted <= client.clean_admitted + client.evictions * 10,
            "{}: admitted {} of {}, {} with an empty table, evicted {} times",
            client.name,
            client.admitted,
            client.sent,
            client.clean_admitted,
            client.evictions
        );
    }
    let [heavy, moderate] = &clients;
    assert_eq!(heavy.evictions, 0);
    assert_eq!(heavy.admitted, heavy.clean_admitted);
    if keys >= 1_000_000 {
        // The run is long enough for both clients to be limited well below what they send.
        assert!(heavy.admitted * 10 < heavy.sent);
        assert!(moderate.admitted < moderate.sent * 3 / 4);
    }
    eprintln!(
        "heavy: {} of {} admitted ({} with an empty table); moderate: {} of {} ({}), evicted {} times",
        heavy.admitted,
        heavy.sent,
        heavy.clean_admitted,
        moderate.admitted,
        moderate.sent,
        moderate.clean_admitted,
        moderate.evictions
    );
}
