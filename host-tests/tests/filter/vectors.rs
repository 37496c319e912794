//! The shared vectors (`vectors/*.json`) through the real filter in the host: the same
//! decisions and headers as the core gives natively. Every file runs on Envoy's and on
//! ngx_wasm_module's shared-data semantics, with requests spread over two VMs, so the
//! counts must be shared through shared data to come out right. A vector with global rules
//! runs against a fake rate-limit service deciding with the core over memory on the proxy's
//! clock (`sluice_host::fake_service`), so the global path must give the same decisions and headers as
//! the local one. And every vector runs once more through leases: each rule made global with
//! `"lease": {"size": 1}` (a slice of one unit is exact: every unit is asked for when it is
//! needed), so slices, the negative cache and the all-or-nothing give-backs must give the
//! same decisions and headers too.
//!
//! A step with `expect.held_ms` is held by a delay rule: its stream stays paused while the
//! later steps run, the fake clock moves 1 ms at a time while any is held, and each must reach
//! the upstream `held_ms` after its `at_ms`, or at most 1 ms later (the filter's tick is set in
//! whole milliseconds). Vectors that hold requests are left out of the lease run (delay rules
//! are local only), by [`holds_requests`], and run on the Envoy flavour only (ngx_wasm_module
//! cannot resume a stream from a tick).
//!
//! A step with `hold_upstream` reaches the upstream, which holds its response until the end
//! step naming its `id`: then the upstream answers (`response`, the client's response checked
//! against the step's `expect`), resets the stream (`reset`: the proxy's own reply passes the
//! filter's response callbacks) or the client goes away (`client_closed`); either way the
//! stream ends as the proxy ends it (`proxy_on_log`, `proxy_on_done`). Every other forwarded
//! request is answered and ended at once. Vectors with concurrency rules are left out of the
//! lease run ([`has_concurrency_rules`]: such rules are local only).

use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_host::{
    ClientResponse, Clock, FaultTimes, HttpRequest, HttpResponse, Proxy, RequestOutcome, Status,
    Stream,
};

use crate::global_rules::start_with_service;
use crate::support::{HOSTS, Host, T0_NS, at_ms, send, start};
use sluice_host::fake_service::FakeService;

fn vector_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the vector files in {}",
        dir.display()
    );
    files
}

#[test]
fn every_vector_gives_the_same_decisions_through_the_filter() {
    let mut failures = Vec::new();
    for file in vector_files() {
        let text = std::fs::read_to_string(&file).expect("readable vector");
        let vector: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        for host in HOSTS {
            // ngx_wasm_module cannot resume a stream from a tick: the filter denies there what
            // it would hold (`delay::ngx_wasm_module_cannot_resume_from_a_tick...`).
            if host == Host::Ngx && holds_requests(&vector) {
                continue;
            }
            if let Err(message) = run_vector(&vector, host) {
                failures.push(format!("{} on {host:?}: {message}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_vector_gives_the_same_decisions_through_leases_of_one_unit() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in vector_files() {
        let text = std::fs::read_to_string(&file).expect("readable vector");
        let vector: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        // Shared-data faults are a local rule's business: through leases they would hit the
        // slices, not the counters the vector means.
        let injects_faults = vector["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s.get("store_fails").is_some()));
        if injects_faults {
            continue;
        }
        if holds_requests(&vector) || has_concurrency_rules(&vector) {
            continue;
        }
        let Some(leased) = leased(&vector) else {
            continue;
        };
        ran += 1;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let status_only = STATUS_ONLY_THROUGH_LEASES.contains(&name);
        for host in HOSTS {
            if let Err(message) = run_vector_with(&leased, host, status_only) {
                failures.push(format!("{} on {host:?}: {message}", file.display()));
            }
        }
    }
    assert!(ran >= 15, "only {ran} vectors ran through leases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Whether a vector holds requests (a rule with a `delay`, or a step expecting `held_ms`), as
/// `sluice_vectors::holds_requests` decides for the Rust runners: delay rules are local only.
fn holds_requests(vector: &Value) -> bool {
    let delay_rule = vector["config"]["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|rule| rule.get("delay").is_some()));
    let held_step = vector["steps"]
        .as_array()
        .is_some_and(|steps| steps.iter().any(|step| held_ms(step) > 0));
    delay_rule || held_step
}

/// Whether a vector has a concurrency rule or holds streams in flight, as
/// `sluice_vectors::has_concurrency_rules` decides for the Rust runners: concurrency rules are
/// local only.
fn has_concurrency_rules(vector: &Value) -> bool {
    let concurrency_rule = vector["config"]["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|rule| rule.get("concurrency").is_some()));
    let in_flight = vector["steps"].as_array().is_some_and(|steps| {
        steps
            .iter()
            .any(|step| step.get("end").is_some() || step.get("hold_upstream").is_some())
    });
    concurrency_rule || in_flight
}

/// A request the upstream holds until its end step.
struct InFlight {
    id: String,
    stream: Stream,
    step: usize,
    expect: Value,
}

/// Ends a stream held in flight as the end step says.
fn end_in_flight(end: &Value, in_flight: &mut Vec<InFlight>) -> Result<(), String> {
    let id = end["end"].as_str().ok_or("end: expected an id")?;
    let position = in_flight
        .iter()
        .position(|held| held.id == id)
        .ok_or(format!("end {id:?}: no such stream in flight"))?;
    let InFlight {
        mut stream,
        step,
        expect,
        ..
    } = in_flight.remove(position);
    match end["how"].as_str() {
        Some("response") => {
            let client = answer(&mut stream, step)?;
            check_client(&expect, &client).map_err(|m| format!("step {step} (ended): {m}"))?;
        }
        Some("reset") => {
            stream.upstream_reset().map_err(|e| e.to_string())?;
        }
        Some("client_closed") => {}
        other => return Err(format!("end {id:?}: unknown how {other:?}")),
    }
    let report = stream.finish().map_err(|e| e.to_string())?;
    match report.trap {
        Some(trap) => Err(format!(
            "step {step}: the filter trapped at the end: {trap}"
        )),
        None => Ok(()),
    }
}

/// The upstream answers 200 to `step`'s stream, which it holds: the response the client gets.
fn answer(stream: &mut Stream, step: usize) -> Result<ClientResponse, String> {
    let response = stream
        .response(HttpResponse::new(200))
        .map_err(|e| e.to_string())?;
    let forwarded = response
        .forwarded()
        .ok_or(format!("step {step}: the response was not passed back"))?;
    Ok(ClientResponse::Response {
        status: forwarded.status,
        headers: forwarded.headers.clone(),
        body: forwarded.body.clone(),
        trailers: None,
    })
}

/// Begins step `index`'s request on `worker` as a stream the runner keeps: one the filter
/// holds (`held`), or one it passes to an upstream that holds the response.
fn begin_kept(
    proxy: &Proxy,
    worker: usize,
    step: &Value,
    index: usize,
    held: bool,
) -> Result<Stream, String> {
    let (stream, outcome) = proxy
        .begin(worker, request(&step["request"])?)
        .map_err(|e| e.to_string())?;
    match (held, &outcome) {
        (true, RequestOutcome::Paused) => Ok(stream),
        (false, outcome) if outcome.forwarded().is_some() => Ok(stream),
        (true, _) => Err(format!("step {index}: expected held, got {outcome:?}")),
        (false, _) => Err(format!(
            "step {index}: expected the upstream to get the request, got {outcome:?}"
        )),
    }
}

fn held_ms(step: &Value) -> u64 {
    step["expect"]
        .get("held_ms")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A request held by a delay rule, still in flight.
struct Held {
    stream: Stream,
    step: usize,
    due_ms: u64,
    expect: Value,
}

/// How late (fake clock) a held request may reach the upstream.
const HELD_TOLERANCE_MS: u64 = 1;

/// Moves the fake clock 1 ms at a time from `now_ms` to `until_ms`, completing each held
/// request when it reaches the upstream and checking when it did.
fn release_until(
    proxy: &Proxy,
    now_ms: &mut u64,
    until_ms: u64,
    held: &mut Vec<Held>,
) -> Result<(), String> {
    while !held.is_empty() && *now_ms < until_ms {
        *now_ms += 1;
        at_ms(proxy, *now_ms);
        proxy.settle().map_err(|e| e.to_string())?;
        let mut index = 0;
        while index < held.len() {
            let outcome = held[index]
                .stream
                .wait_request(std::time::Duration::ZERO)
                .map_err(|e| e.to_string())?;
            if outcome == RequestOutcome::Paused {
                index += 1;
                continue;
            }
            let Held {
                mut stream,
                step,
                due_ms,
                expect,
            } = held.remove(index);
            if outcome.forwarded().is_none() {
                return Err(format!("step {step}: a held request ended as {outcome:?}"));
            }
            if *now_ms < due_ms || *now_ms > due_ms + HELD_TOLERANCE_MS {
                return Err(format!(
                    "step {step}: reached the upstream at {now_ms} ms, expected {due_ms} ms \
                     (tolerance +{HELD_TOLERANCE_MS} ms)"
                ));
            }
            let client = answer(&mut stream, step)?;
            stream.finish().map_err(|e| e.to_string())?;
            check_client(&expect, &client).map_err(|m| format!("step {step} (held): {m}"))?;
        }
    }
    Ok(())
}

/// Vectors whose headers the lease path gives otherwise, by design, and why; their statuses
/// must still agree.
///
/// - `denial_reports_every_denying_rule.json`: a request that one rule's cached denial
///   answers (with no call) reports that rule; the service, asked, would also report another
///   rule that denies it.
const STATUS_ONLY_THROUGH_LEASES: &[&str] = &["denial_reports_every_denying_rule.json"];

/// The vector with every rule global, leased with a slice of one unit where the rule allows
/// it (a sliding log or a tiered rule stays global without a lease); `None` if no rule can
/// lease.
fn leased(vector: &Value) -> Option<Value> {
    let mut vector = vector.clone();
    let config = vector.get_mut("config")?;
    let mut any = false;
    for rule in config.get_mut("rules")?.as_array_mut()? {
        let rule = rule.as_object_mut()?;
        rule.insert("scope".into(), Value::from("global"));
        // A small lease table: the vectors use a few keys, and every VM creates it.
        rule.entry("max_keys").or_insert(Value::from(64));
        // A slice is of one limit: a sliding log, or a limit chosen by the caller (tiers,
        // overrides), stays global without a lease.
        if rule.get("algorithm").and_then(Value::as_str) != Some("sliding_log")
            && !rule.contains_key("tier")
            && !rule.contains_key("overrides")
        {
            rule.insert(
                "lease".into(),
                serde_json::json!({"size": 1, "lifetime": "10ms"}),
            );
            any = true;
        }
    }
    let config = config.as_object_mut()?;
    config
        .entry("global")
        .or_insert_with(|| serde_json::json!({"cluster": "limits"}));
    any.then_some(vector)
}

fn run_vector(vector: &Value, host: Host) -> Result<(), String> {
    run_vector_with(vector, host, false)
}

fn run_vector_with(vector: &Value, host: Host, status_only: bool) -> Result<(), String> {
    let config = &vector["config"];
    let has_global = config["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|rule| rule["scope"] == "global"));
    let clock = Clock::fake(T0_NS);
    let service = has_global.then(|| FakeService::start(config, clock.clone()));
    let proxy = match &service {
        Some(service) => start_with_service(host, config, 2, service.addr(), &clock),
        None => start(host, config, 2),
    };
    let steps = vector["steps"].as_array().ok_or("no steps")?;
    let mut sent = 0usize;
    let mut held: Vec<Held> = Vec::new();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut now_ms = 0;
    for (index, step) in steps.iter().enumerate() {
        let step_ms = step["at_ms"].as_u64().ok_or("at_ms")?;
        release_until(&proxy, &mut now_ms, step_ms, &mut held)?;
        now_ms = step_ms;
        at_ms(&proxy, step_ms);
        if step.get("end").is_some() {
            end_in_flight(step, &mut in_flight)?;
            continue;
        }
        if let Some(service) = &service {
            // The ticks due have run (a tick command queues behind the clock's move), and the
            // calls they made (returns of expired slices) land before the next request.
            proxy.tick_all().map_err(|e| e.to_string())?;
            settle(&proxy, service)?;
        }
        let repeat = step.get("repeat").and_then(Value::as_u64).unwrap_or(1);
        for round in 0..repeat {
            let fails = step
                .get("store_fails")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if fails {
                let store = proxy.shared_data_store();
                store.fail_gets(Status::InternalFailure, FaultTimes::Always);
                store.fail_sets(Status::InternalFailure, FaultTimes::Always);
            }
            // Alternate VMs: the second request of a key is seen by the other worker.
            let worker = sent % proxy.workers();
            sent += 1;
            if held_ms(step) > 0 {
                held.push(Held {
                    stream: begin_kept(&proxy, worker, step, index, true)?,
                    step: index,
                    due_ms: step_ms + held_ms(step),
                    expect: step["expect"].clone(),
                });
                continue;
            }
            if let Some(id) = step.get("id").and_then(Value::as_str) {
                // The client's response is checked when the upstream answers.
                in_flight.push(InFlight {
                    id: id.to_owned(),
                    stream: begin_kept(&proxy, worker, step, index, false)?,
                    step: index,
                    expect: step["expect"].clone(),
                });
                continue;
            }
            let exchange = send(&proxy, worker, request(&step["request"])?);
            if fails {
                proxy.shared_data_store().clear_faults();
            }
            let expect = if status_only {
                serde_json::json!({"status": step["expect"]["status"]})
            } else {
                step["expect"].clone()
            };
            check(&proxy, &expect, &exchange)
                .map_err(|m| format!("step {index} (repeat {round}): {m}"))?;
        }
    }
    let last = held.iter().map(|h| h.due_ms).max().unwrap_or(now_ms);
    release_until(&proxy, &mut now_ms, last + HELD_TOLERANCE_MS + 1, &mut held)?;
    if let Some(stuck) = held.first() {
        return Err(format!("step {}: never reached the upstream", stuck.step));
    }
    Ok(())
}

/// Waits until every call the proxy made has reached the service.
fn settle(proxy: &Proxy, service: &FakeService) -> Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        let made = proxy.metrics().counter("sluice.global.calls").unwrap_or(0);
        if service.received().len() as u64 >= made {
            return Ok(());
        }
        if started.elapsed() > std::time::Duration::from_secs(5) {
            return Err(format!("{made} calls made, the service got fewer"));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn request(spec: &Value) -> Result<HttpRequest, String> {
    let text = |name: &str| spec[name].as_str().ok_or(format!("request.{name}"));
    let mut request = HttpRequest::new(text("method")?, text("path")?, text("authority")?);
    match spec.get("peer").and_then(Value::as_str) {
        Some(peer) => request = request.source_address(peer),
        None => request = request.without_source_address(),
    }
    for pair in spec
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = pair[0].as_str().ok_or("header name")?;
        let value = pair[1].as_str().ok_or("header value")?;
        request = request.header(name, value);
    }
    Ok(request)
}

fn check(_proxy: &Proxy, expect: &Value, exchange: &sluice_host::Exchange) -> Result<(), String> {
    check_client(expect, &exchange.client)?;
    check_upstream(expect, exchange)
}

fn check_client(expect: &Value, client: &ClientResponse) -> Result<(), String> {
    let want = expect["status"].as_u64().ok_or("expect.status")?;
    let got = client.status().ok_or("the stream was reset")?;
    if u64::from(got) != want {
        return Err(format!(
            "status {got}, expected {want}; headers {:?}",
            headers_of(client)
        ));
    }
    if let Some(headers) = expect.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let want = value.as_str().ok_or("header value")?;
            match client.header(name) {
                Some(got) if got == want => {}
                got => return Err(format!("header {name}: {got:?}, expected {want:?}")),
            }
        }
    }
    for name in expect
        .get("absent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().ok_or("absent name")?;
        if let Some(got) = client.header(name) {
            return Err(format!("header {name} should be absent, is {got:?}"));
        }
    }
    if let Some(body) = expect.get("body").and_then(Value::as_str) {
        let got = String::from_utf8_lossy(client.body());
        // ngx_wasm_module ends local-response bodies with a newline of its own.
        if got != body && got.strip_suffix('\n') != Some(body) {
            return Err(format!("body {got:?}, expected {body:?}"));
        }
    }
    Ok(())
}

/// `expect.upstream_headers` and `expect.upstream_absent` against the request as the
/// upstream received it: each expected header in exactly one line with exactly that value.
fn check_upstream(expect: &Value, exchange: &sluice_host::Exchange) -> Result<(), String> {
    let wanted = expect.get("upstream_headers").and_then(Value::as_object);
    let absent = expect.get("upstream_absent").and_then(Value::as_array);
    if wanted.is_none() && absent.is_none() {
        return Ok(());
    }
    let forwarded = exchange
        .forwarded()
        .ok_or("the request did not reach the upstream")?;
    let lines = |name: &str| -> Vec<&str> {
        forwarded
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (name, value) in wanted.into_iter().flatten() {
        let want = value.as_str().ok_or("upstream header value")?;
        let got = lines(name);
        if got != [want] {
            return Err(format!(
                "upstream request header {name}: {got:?}, expected {want:?}; all: {:?}",
                forwarded.headers
            ));
        }
    }
    for name in absent.into_iter().flatten() {
        let name = name.as_str().ok_or("upstream_absent name")?;
        let got = lines(name);
        if !got.is_empty() {
            return Err(format!(
                "upstream request header {name} should be absent, is {got:?}"
            ));
        }
    }
    Ok(())
}

fn headers_of(client: &sluice_host::ClientResponse) -> Vec<(String, String)> {
    match client {
        sluice_host::ClientResponse::Response { headers, .. } => headers.clone(),
        sluice_host::ClientResponse::Reset => Vec::new(),
    }
}
