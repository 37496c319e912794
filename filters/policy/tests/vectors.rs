//! Runs every shared test vector in `vectors/` (see `vectors/README.md`) through
//! `Policy::handle` with the core's in-memory store, once with Envoy's shared-data semantics
//! and once with ngx_wasm_module's strict ones, each with a different hash seed: a vector's
//! results must not depend on either.
//!
//! A file that cannot be read or parsed fails the test, as does any step whose status,
//! headers or body differ; the message names the file, the step and what differed.

use std::fmt::Write as _;

use sluice_core::{Limiter, MemoryStore, Seed, Semantics, StoreError};
use sluice_policy::Policy;
use sluice_vectors::{Vector, compare, load};

/// The store semantics and seeds each vector runs under.
const RUNS: [(Semantics, Seed); 2] = [
    (
        Semantics::Envoy,
        Seed {
            k0: 0x0123_4567_89ab_cdef,
            k1: 0xfedc_ba98_7654_3210,
        },
    ),
    (Semantics::Strict, Seed { k0: 7, k1: 11 }),
];

#[test]
fn every_vector_passes() {
    let files = sluice_vectors::files();
    assert!(
        files.len() >= 15,
        "expected the vector set in {}, found {} files",
        sluice_vectors::dir().display(),
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = sluice_vectors::name(file);
        let vector = match load(file) {
            Ok(vector) => vector,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for (semantics, seed) in RUNS {
            if let Err(e) = run(&vector, semantics, seed) {
                failures.push(format!("{name} ({semantics:?} store): {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vector runs failed:\n{}",
        failures.len(),
        files.len() * RUNS.len(),
        failures.join("\n")
    );
}

fn run(vector: &Vector, semantics: Semantics, seed: Seed) -> Result<(), String> {
    let policy =
        Policy::from_json(&vector.config).map_err(|e| format!("the config is rejected: {e}"))?;
    let mut limiter = Limiter::new(seed, policy.cas_retries());
    let mut store = MemoryStore::new(semantics);
    // As the filter does when it is configured.
    for rule in policy.rules() {
        limiter
            .prepare(rule.name(), &rule.limit(), rule.max_keys(), &mut store)
            .map_err(|e| format!("preparing rule {:?}: {e}", rule.name()))?;
    }
    for (index, step) in vector.steps.iter().enumerate() {
        let now = step.now().map_err(|e| format!("steps[{index}]: {e}"))?;
        for round in 1..=step.repeat {
            if step.store_fails {
                store.set_outage(Some(StoreError::Unavailable));
            }
            let handled = policy.handle(&step.request, now, &mut limiter, &mut store);
            store.set_outage(None);
            let differences = compare(&handled.response, &step.expect);
            if !differences.is_empty() {
                let mut message = format!("steps[{index}] (at_ms {}", step.at_ms);
                if step.repeat > 1 {
                    let _ = write!(message, ", repeat {round} of {}", step.repeat);
                }
                let _ = write!(
                    message,
                    ", {} {}): {}",
                    step.request.method,
                    step.request.path,
                    differences.join("; ")
                );
                return Err(message);
            }
        }
    }
    Ok(())
}

