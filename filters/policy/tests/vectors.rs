//! Runs every shared test vector in `vectors/` (see `vectors/README.md`) through
//! `Policy::handle` with the core's in-memory store, once with Envoy's shared-data semantics
//! and once with ngx_wasm_module's strict ones, each with a different hash seed: a vector's
//! results must not depend on either.
//!
//! A file that cannot be read or parsed fails the test, as does any step whose status,
//! headers or body differ; the message names the file, the step and what differed.

use std::collections::HashMap;
use std::fmt::Write as _;

use sluice_core::{Limiter, MemoryStore, Seed, Semantics, StoreError};
use sluice_policy::global::{MemoryService, Started};
use sluice_policy::{Policy, RequestBuffers, TakenSlots};
use sluice_vectors::{Vector, compare, compare_upstream, load, upstream_headers};

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
            if let Err(e) = run(&vector, semantics, seed, false) {
                failures.push(format!("{name} ({semantics:?} store): {e}"));
            }
            // Global rules once more through the decide protocol, against the in-memory
            // service: the same decisions and headers as deciding them locally.
            if has_global_rules(&vector)
                && let Err(e) = run(&vector, semantics, seed, true)
            {
                failures.push(format!("{name} ({semantics:?} store, global path): {e}"));
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

fn has_global_rules(vector: &Vector) -> bool {
    Policy::from_json(&vector.config).is_ok_and(|policy| policy.has_global_rules())
}

fn run(
    vector: &Vector,
    semantics: Semantics,
    seed: Seed,
    through_service: bool,
) -> Result<(), String> {
    let policy =
        Policy::from_json(&vector.config).map_err(|e| format!("the config is rejected: {e}"))?;
    let mut service = through_service.then(|| MemoryService::new(policy.clone()));
    let mut limiter = Limiter::new(seed, policy.cas_retries());
    let mut store = MemoryStore::new(semantics);
    // As the filter does when it is configured.
    for rule in policy.rules() {
        limiter
            .prepare(rule.name(), &rule.limit(), rule.max_keys(), &mut store)
            .map_err(|e| format!("preparing rule {:?}: {e}", rule.name()))?;
    }
    // Concurrency slots: a request's stream ends (its slots are released) as soon as it is
    // answered, unless the step holds it in flight until its end step.
    let mut buffers = RequestBuffers::new();
    let mut in_flight: HashMap<&str, TakenSlots> = HashMap::new();
    for index in 0..=vector.steps.len() {
        for end in vector.ends_before(index) {
            let now = end.now().map_err(|e| format!("end of {:?}: {e}", end.id))?;
            let slots = in_flight.remove(end.id.as_str());
            release(&policy, slots, now, &mut limiter, &mut store, &mut buffers);
        }
        let Some(step) = vector.steps.get(index) else {
            break;
        };
        let now = step.now().map_err(|e| format!("steps[{index}]: {e}"))?;
        for round in 1..=step.repeat {
            if step.store_fails {
                store.set_outage(Some(StoreError::Unavailable));
            }
            let mut held = 0;
            let mut handled = match service.as_mut() {
                None => {
                    let handled = policy.handle(&step.request, now, &mut limiter, &mut store);
                    held = handled.verdict.as_ref().map_or(0, |v| v.delay());
                    handled
                }
                Some(service) => match policy.start(&step.request, now, &mut limiter, &mut store) {
                    Started::Done(handled) => handled,
                    Started::Call(call) => {
                        let (status, reply) = service.decide(call.body(), now);
                        if status != 200 {
                            return Err(format!(
                                "steps[{index}]: the service answered {status}: {}",
                                String::from_utf8_lossy(&reply)
                            ));
                        }
                        policy
                            .finish(call, Ok(&reply), &mut limiter, &mut store)
                            .handled
                    }
                },
            };
            store.set_outage(None);
            let slots = handled.take_slots(now, &mut buffers);
            match &step.id {
                Some(id) => {
                    if let Some(slots) = slots {
                        in_flight.insert(id.as_str(), slots);
                    }
                }
                None => release(&policy, slots, now, &mut limiter, &mut store, &mut buffers),
            }
            let response = handled.response;
            let mut differences = compare(&response, &step.expect);
            if !response.is_deny() {
                let upstream = upstream_headers(&policy, &step.request, &response);
                differences.extend(compare_upstream(&upstream, &step.expect));
            }
            // Computed, not waited out: exact.
            differences.extend(sluice_vectors::held_difference(held, &step.expect, 0));
            if !differences.is_empty() {
                let mut message = format!("steps[{index}] (at_ms {}", step.at_ms);
                if step.repeat > 1 {
                    let _ = write!(message, ", repeat {round} of {}", step.repeat);
                }
                let _ = write!(
                    message,
                    ", {} {}): {}",
                    String::from_utf8_lossy(&step.request.method),
                    String::from_utf8_lossy(&step.request.path),
                    differences.join("; ")
                );
                return Err(message);
            }
        }
    }
    Ok(())
}

/// The end of a request's stream: its concurrency slots, if it took any, are given back.
fn release(
    policy: &Policy,
    slots: Option<TakenSlots>,
    now: u64,
    limiter: &mut Limiter,
    store: &mut MemoryStore,
    buffers: &mut RequestBuffers,
) {
    if let Some(slots) = slots {
        policy.release(slots, now, limiter, store, buffers, |_, _| {});
    }
}
