//! Runs every shared test vector in `vectors/` (see `vectors/README.md`) through
//! `Policy::handle` with the core's in-memory store, once with Envoy's shared-data semantics
//! and once with ngx_wasm_module's strict ones, each with a different hash seed: a vector's
//! results must not depend on either.
//!
//! A file that cannot be read or parsed fails the test, as does any step whose status,
//! headers or body differ; the message names the file, the step and what differed.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sluice_core::time::NANOS_PER_MILLI;
use sluice_core::{Limiter, MemoryStore, Seed, Semantics, StoreError};
use sluice_policy::global::{MemoryService, Started};
use sluice_policy::{OwnedRequest, Policy, Response};

/// `at_ms: 0`: 2026-01-01T00:00:00Z, a day boundary, so windows of a day or less start there.
const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

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
    let files = vector_files();
    assert!(
        files.len() >= 15,
        "expected the vector set in {}, found {} files",
        vectors_dir().display(),
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
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

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors")
}

fn vector_files() -> Vec<PathBuf> {
    let dir = vectors_dir();
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the vectors directory {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// A parsed vector file.
struct Vector {
    config: Vec<u8>,
    steps: Vec<Step>,
}

struct Step {
    at_ms: u64,
    request: OwnedRequest,
    repeat: u64,
    store_fails: bool,
    expect: Expect,
}

struct Expect {
    status: u16,
    headers: Vec<(String, String)>,
    absent: Vec<String>,
    body: Option<String>,
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
    for (index, step) in vector.steps.iter().enumerate() {
        let now = step
            .at_ms
            .checked_mul(NANOS_PER_MILLI)
            .and_then(|ns| ns.checked_add(EPOCH_NS))
            .ok_or_else(|| format!("steps[{index}]: at_ms is too large"))?;
        for round in 1..=step.repeat {
            if step.store_fails {
                store.set_outage(Some(StoreError::Unavailable));
            }
            let response = match service.as_mut() {
                None => {
                    policy
                        .handle(&step.request, now, &mut limiter, &mut store)
                        .response
                }
                Some(service) => match policy.start(&step.request, now, &mut limiter, &mut store) {
                    Started::Done(handled) => handled.response,
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
                            .response
                    }
                },
            };
            store.set_outage(None);
            let differences = compare(&response, &step.expect);
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

/// Every way `response` differs from `expect`; empty if it matches.
fn compare(response: &Response<'_>, expect: &Expect) -> Vec<String> {
    let (status, mut headers, body) = match response {
        Response::Pass { headers } => (200, headers.clone(), None),
        Response::Deny {
            status,
            body,
            content_type,
            headers,
        } => {
            let mut headers = headers.clone();
            headers.push(("content-type", (*content_type).to_owned()));
            (*status, headers, Some(*body))
        }
    };
    headers.sort();
    let actual = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut differences = Vec::new();
    if status != expect.status {
        differences.push(format!("status: expected {}, got {status}", expect.status));
    }
    for (name, value) in &expect.headers {
        match actual(name) {
            Some(v) if v == value => {}
            Some(v) => differences.push(format!("{name}: expected {value:?}, got {v:?}")),
            None => differences.push(format!("{name}: expected {value:?}, but it is absent")),
        }
    }
    for name in &expect.absent {
        if let Some(v) = actual(name) {
            differences.push(format!("{name}: expected absent, got {v:?}"));
        }
    }
    if let Some(expected) = &expect.body {
        match body {
            Some(b) if b == expected => {}
            Some(b) => differences.push(format!("body: expected {expected:?}, got {b:?}")),
            None => differences.push(format!(
                "body: expected the local response {expected:?}, but the request was passed"
            )),
        }
    }
    if !differences.is_empty() {
        let all: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        differences.push(format!("(all headers: {})", all.join(" | ")));
    }
    differences
}

// Parsing: strict, so a typo in a vector is an error rather than a silently skipped check.

fn load(path: &Path) -> Result<Vector, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
    parse_vector(&value)
}

fn object<'v>(
    value: &'v Value,
    at: &str,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object"))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{at}: unknown field {unknown:?} (allowed: {})",
            allowed.join(", ")
        ));
    }
    Ok(map)
}

fn string(map: &Map<String, Value>, field: &str, at: &str) -> Result<String, String> {
    map.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{at}.{field}: expected a string"))
}

fn parse_vector(value: &Value) -> Result<Vector, String> {
    let map = object(value, "vector", &["description", "config", "steps"])?;
    let description = string(map, "description", "vector")?;
    if description.trim().is_empty() {
        return Err("description: say what the vector proves".to_owned());
    }
    let config = map.get("config").ok_or("config: required")?;
    let steps = map
        .get("steps")
        .and_then(Value::as_array)
        .filter(|steps| !steps.is_empty())
        .ok_or("steps: expected a non-empty list")?
        .iter()
        .enumerate()
        .map(|(i, step)| parse_step(step, &format!("steps[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Vector {
        config: config.to_string().into_bytes(),
        steps,
    })
}

fn parse_step(value: &Value, at: &str) -> Result<Step, String> {
    let map = object(
        value,
        at,
        &[
            "at_ms",
            "note",
            "request",
            "repeat",
            "store_fails",
            "expect",
        ],
    )?;
    if map.get("note").is_some_and(|note| !note.is_string()) {
        return Err(format!("{at}.note: expected a string"));
    }
    let at_ms = map
        .get("at_ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{at}.at_ms: expected a whole number"))?;
    let repeat = match map.get("repeat") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{at}.repeat: expected a whole number of at least 1"))?,
    };
    let store_fails = match map.get("store_fails") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{at}.store_fails: expected true or false"))?,
    };
    let request = parse_request(
        map.get("request")
            .ok_or_else(|| format!("{at}.request: required"))?,
        &format!("{at}.request"),
    )?;
    let expect = parse_expect(
        map.get("expect")
            .ok_or_else(|| format!("{at}.expect: required"))?,
        &format!("{at}.expect"),
    )?;
    Ok(Step {
        at_ms,
        request,
        repeat,
        store_fails,
        expect,
    })
}

fn parse_request(value: &Value, at: &str) -> Result<OwnedRequest, String> {
    let map = object(
        value,
        at,
        &["method", "path", "authority", "peer", "headers"],
    )?;
    let peer = match map.get("peer") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| format!("{at}.peer: expected a string"))?
                .to_owned(),
        ),
    };
    let headers = match map.get("headers") {
        None => Vec::new(),
        Some(v) => pairs(v, &format!("{at}.headers"))?
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect(),
    };
    Ok(OwnedRequest {
        method: string(map, "method", at)?.into_bytes(),
        path: string(map, "path", at)?.into_bytes(),
        authority: string(map, "authority", at)?.into_bytes(),
        peer,
        headers,
    })
}

/// `[["name", "value"], ...]`, names lowercase.
fn pairs(value: &Value, at: &str) -> Result<Vec<(String, String)>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{at}: expected a list of [name, value] pairs"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(value)]) if *name == name.to_lowercase() => {
                Ok((name.clone(), value.clone()))
            }
            _ => Err(format!(
                "{at}[{i}]: expected [name, value] with a lowercase name"
            )),
        })
        .collect()
}

fn parse_expect(value: &Value, at: &str) -> Result<Expect, String> {
    let map = object(value, at, &["status", "headers", "absent", "body"])?;
    let status = map
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| format!("{at}.status: expected a status code"))?;
    let headers = match map.get("headers") {
        None => Vec::new(),
        Some(v) => v
            .as_object()
            .ok_or_else(|| format!("{at}.headers: expected an object"))?
            .iter()
            .map(|(name, value)| match value.as_str() {
                Some(text) if *name == name.to_lowercase() => Ok((name.clone(), text.to_owned())),
                _ => Err(format!(
                    "{at}.headers.{name}: expected a string value and a lowercase name"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let absent = match map.get("absent") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or_else(|| format!("{at}.absent: expected a list of header names"))?
            .iter()
            .map(|name| match name.as_str() {
                Some(text) if text == text.to_lowercase() => Ok(text.to_owned()),
                _ => Err(format!("{at}.absent: expected lowercase header names")),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let body = match map.get("body") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| format!("{at}.body: expected a string"))?
                .to_owned(),
        ),
    };
    Ok(Expect {
        status,
        headers,
        absent,
        body,
    })
}
