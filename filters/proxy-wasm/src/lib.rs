//! The sluice proxy-wasm HTTP filter.
//!
//! A thin layer over `sluice-policy` and `sluice-core`: the root context compiles the plugin
//! configuration once per VM; each HTTP context asks the policy what to do with its request,
//! with the proxy's shared data as the counter store, and applies the answer.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "count-allocations")]
mod allocations;
mod footprint;
mod global_call;
mod header_map;
mod holding;
mod host;
mod lease;
mod lease_store;
// Public only for its fuzz target (`fuzz/src/lease_bucket.rs`): the encoding of what other
// VMs leave in shared data is an input like any other.
#[doc(hidden)]
pub mod lease_table;
mod metrics;
mod request;
mod seed;

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel as SdkLogLevel};
use sluice_core::{Algorithm, Limiter, Released, Verdict};
use sluice_policy::global::{CallFailure, GlobalCall, Started};
use sluice_policy::{
    Handled, HeldRequest, Policy, Request as _, RequestBuffers, Response, TakenSlots,
};

use crate::global_call::GlobalRuntime;
use crate::holding::Holding;
use crate::host::{LogLevel, SharedData, log};
use crate::lease::{Leases, Stage, Step, Waiting};
use crate::metrics::{Metrics, RuleMetrics};
use crate::request::HostRequest;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(SdkLogLevel::Info);
    // A panic aborts the VM; say why first, in the proxy's log.
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Error, &format!("sluice: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(SluiceRoot::default()) });
}}

/// Everything a configured VM needs per request; shared by its HTTP contexts.
struct Runtime {
    policy: Policy,
    limiter: RefCell<Limiter>,
    metrics: Metrics,
    /// Set when a rule is global: how to call the rate-limit service.
    global: Option<GlobalRuntime>,
    /// Set when a rule is global: its leases and negative cache in shared data.
    leases: Option<Leases>,
    /// A denial's headers serialised for the host, reused from one denial to the next.
    local_response: RefCell<Vec<u8>>,
    /// What the policy builds a request's checks, verdict and headers in, reused from one
    /// request to the next (a passed request's headers come back once added).
    buffers: RefCell<RequestBuffers>,
    /// The timer's period when no request is held.
    tick_period: std::time::Duration,
    /// Set when a rule has a `delay`: the requests this VM holds.
    holding: Option<Holding>,
}

impl Runtime {
    /// Gives a request's header list and values back for the next request.
    fn reclaim_headers(&self, headers: Vec<(&'static str, String)>) {
        if let Ok(mut buffers) = self.buffers.try_borrow_mut() {
            buffers.reclaim_headers(headers);
        }
    }

    /// Hands what the VM counted to the proxy's counters.
    fn flush_metrics(&self) {
        self.metrics.flush();
        if let Some(global) = &self.global {
            global.counters.flush();
        }
        if let Some(leases) = &self.leases {
            leases.flush_metrics();
        }
        if let Some(holding) = &self.holding {
            holding.counters.flush();
        }
    }
}

#[derive(Default)]
struct SluiceRoot {
    runtime: Option<Rc<Runtime>>,
}

impl Context for SluiceRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(runtime) = self.runtime.clone() {
            lease_call_answered(&runtime, token_id, num_headers, body_size);
        }
    }

    /// Envoy calls this at VM shutdown: the last counts reach the proxy.
    fn on_done(&mut self) -> bool {
        if let Some(runtime) = &self.runtime {
            runtime.flush_metrics();
        }
        true
    }
}

impl Drop for SluiceRoot {
    /// A host that deletes the root context (`proxy_on_delete`) without calling `on_done`
    /// first still gets the last counts.
    fn drop(&mut self) {
        if let Some(runtime) = &self.runtime {
            runtime.flush_metrics();
        }
    }
}

impl RootContext for SluiceRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match configure(self.get_plugin_configuration().unwrap_or_default()) {
            Ok(runtime) => {
                let period = runtime.tick_period;
                if let Some(previous) = self.runtime.replace(Rc::new(runtime)) {
                    previous.flush_metrics();
                }
                if !host::set_tick_period(period) {
                    log(
                        LogLevel::Warn,
                        "sluice: the proxy refused a timer; metrics reach it only when the VM \
                         is done",
                    );
                }
                true
            }
            Err(message) => {
                log(LogLevel::Error, &format!("sluice: {message}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let holding = runtime.holding.as_ref();
        let now = holding.and_then(|_| host::now_nanos());
        if holding.is_none_or(|holding| holding.base_work_due(now)) {
            // Only counters that moved cost a host call, so flushing on the leases' shorter
            // period too costs at most a few calls per tick.
            runtime.flush_metrics();
            lease_tick(self, &runtime);
        }
        if let (Some(holding), Some(now)) = (holding, now) {
            holding.release_due(now);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let runtime = Rc::clone(self.runtime.as_ref()?);
        let make = || -> Box<dyn HttpContext> {
            Box::new(SluiceHttp {
                runtime,
                context_id,
                response_headers: Vec::new(),
                warning: None,
                forged_warning: false,
                pending: None,
                leased: None,
                held: None,
                slots: None,
            })
        };
        #[cfg(feature = "count-allocations")]
        return Some(allocations::context_box(make));
        #[cfg(not(feature = "count-allocations"))]
        Some(make())
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Compiles the configuration and prepares the shared state. The error is the one log line
/// a user sees when the proxy rejects the plugin.
fn configure(config: Vec<u8>) -> Result<Runtime, String> {
    let policy = Policy::from_json(&config).map_err(|e| format!("invalid configuration: {e}"))?;
    let mut names = policy.table_names();
    let lease_tables = lease::table_names(&policy);
    let mut specs = policy.table_specs();
    specs.extend(lease::table_specs(&policy, &lease_tables));
    let renamed = names.separate_crc32(&specs).map_err(|e| e.to_string())?;
    let mut store = SharedData;
    let seed = seed::shared_seed(&mut store, &names.seed_key()).map_err(|e| e.to_string())?;
    let leases = policy.has_global_rules().then(|| {
        Leases::new(
            &policy,
            &names,
            seed,
            policy.global().map_or(0, |global| global.timeout()),
        )
    });
    let limiter = Limiter::new(seed, policy.cas_retries()).with_names(names);
    let footprint = footprint::Footprint::of(&policy, limiter.names(), leases.as_ref());
    // Before the writes: on ngx_wasm_module with `eviction=none` a full zone traps the VM
    // during them, and this line is then the one that says what the zone needs.
    log(
        LogLevel::Info,
        &format!("sluice: creating the tables; {footprint}"),
    );
    for table in policy.table_specs() {
        limiter
            .prepare(table.rule, &table.limit, table.max_keys, &mut store)
            .map_err(|e| {
                format!(
                    "rule \"{}\": cannot create its table in shared data: {e}",
                    table.rule
                )
            })?;
    }
    if let Some(leases) = &leases {
        leases.prepare(&mut store)?;
    }
    footprint.verify(&policy, limiter.names(), leases.as_ref(), &mut store)?;
    let metrics = Metrics::define(policy.rules().iter().map(|rule| RuleMetrics {
        name: rule.name(),
        marks: rule.marks_requests(),
        releases: rule.limit().algorithm == Algorithm::Concurrency,
    }));
    let global = match policy.global() {
        Some(config) if policy.has_global_rules() => Some(GlobalRuntime::new(config.clone())),
        _ => None,
    };
    #[cfg(feature = "count-allocations")]
    allocations::define();
    // One timer for all: the metrics' flush period, or the leases' shorter one when a rule
    // has a lease (the metrics are then flushed that often); shorter still while requests
    // are held (see `holding`).
    let tick_period = leases
        .as_ref()
        .and_then(Leases::tick_period_ms)
        .map_or(metrics::FLUSH_PERIOD, |ms| {
            std::time::Duration::from_millis(u64::from(ms)).min(metrics::FLUSH_PERIOD)
        });
    let holding = policy.holds_requests().then(|| {
        let holding = Holding::new(
            policy.shaping().max_held(),
            tick_period,
            host::now_nanos().unwrap_or_default(),
        );
        if !holding.can_resume() {
            log(
                LogLevel::Warn,
                "sluice: this proxy cannot resume a request from a timer \
                 (proxy_set_effective_context has no effect), so delay rules deny instead of \
                 holding",
            );
        }
        holding
    });
    log(
        LogLevel::Info,
        &format!(
            "sluice: configured {} rules in namespace {}{}",
            policy.rules().len(),
            limiter.names().namespace(),
            if renamed > 0 {
                format!(" ({renamed} tables renamed to keep key names apart by CRC32)")
            } else {
                String::new()
            },
        ),
    );
    Ok(Runtime {
        policy,
        limiter: RefCell::new(limiter),
        metrics,
        global,
        leases,
        local_response: RefCell::new(Vec::new()),
        buffers: RefCell::new(RequestBuffers::new()),
        tick_period,
        holding,
    })
}

struct SluiceHttp {
    runtime: Rc<Runtime>,
    context_id: u32,
    /// Rate-limit headers for an allowed request, added to the upstream's response.
    response_headers: Vec<(&'static str, String)>,
    /// The warning header's value for a request a soft limit marked, added to the
    /// upstream's response (it went on the request to the upstream when decided).
    warning: Option<String>,
    /// The client sent the warning header itself: removed from the request to the upstream
    /// unless sluice marks it, so the upstream only ever sees sluice's mark.
    forged_warning: bool,
    /// The request waiting for the rate-limit service.
    pending: Option<GlobalCall>,
    /// The request waiting for the rate-limit service on the lease path.
    leased: Option<Waiting>,
    /// Set while (and after) the request is held by a delay rule: what to give back if its
    /// stream ends before it is released.
    held: Option<HeldRequest>,
    /// The concurrency slots a passed request holds, given back when its stream ends.
    slots: Option<TakenSlots>,
}

impl Context for SluiceHttp {
    fn on_done(&mut self) -> bool {
        self.end_stream();
        true
    }

    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let runtime = Rc::clone(&self.runtime);
        if let Some(waiting) = self.leased.take() {
            let answer = global_call::read_answer(num_headers, body_size);
            if self.resume_leased(&runtime, waiting, answer) == Action::Continue
                && !host::continue_request()
            {
                log(
                    LogLevel::Error,
                    "sluice: the proxy refused to resume the request after the rate-limit service answered",
                );
            }
            return;
        }
        let Some(call) = self.pending.take() else {
            return;
        };
        let answer = global_call::read_answer(num_headers, body_size);
        if self.finish_global(&runtime, call, answer) == Action::Continue
            && !host::continue_request()
        {
            log(
                LogLevel::Error,
                "sluice: the proxy refused to resume the request after the rate-limit service answered",
            );
        }
    }
}

impl Drop for SluiceHttp {
    /// A context deleted without `on_done` or `on_log` still gives back a held request and
    /// its concurrency slots, and
    /// a stream that ends before its response (a reset, a local reply upstream) still gives
    /// its headers' buffers back.
    fn drop(&mut self) {
        self.end_stream();
        if self.response_headers.capacity() > 0 {
            self.runtime
                .reclaim_headers(std::mem::take(&mut self.response_headers));
        }
    }
}

impl HttpContext for SluiceHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "count-allocations")]
        allocations::flush();
        let Some(now) = host::now_nanos() else {
            log(
                LogLevel::Error,
                "sluice: the host gave no time; request passed unchecked",
            );
            return Action::Continue;
        };
        let request = HostRequest::from_host(host::request_headers());
        let runtime = Rc::clone(&self.runtime);
        // Read from the header map already in memory: no host call.
        self.forged_warning = runtime.policy.marks_requests()
            && request
                .header(runtime.policy.response().warning_header())
                .is_some();
        if runtime.leases.is_some() {
            return self.start_leased(&runtime, &request, now);
        }
        if runtime.global.is_some() {
            return self.start_global(&runtime, &request, now);
        }
        let handled = {
            let (Ok(mut limiter), Ok(mut buffers)) = (
                runtime.limiter.try_borrow_mut(),
                runtime.buffers.try_borrow_mut(),
            ) else {
                return Action::Continue;
            };
            runtime
                .policy
                .handle_into(&request, now, &mut limiter, &mut SharedData, &mut buffers)
        };
        self.apply(&runtime, handled, now)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = std::mem::take(&mut self.response_headers);
        for (name, value) in &headers {
            host::add_response_header(name, value.as_bytes());
        }
        if let Some(value) = self.warning.take() {
            let name = self.runtime.policy.response().warning_header();
            host::add_response_header(name, value.as_bytes());
        }
        self.runtime.reclaim_headers(headers);
        #[cfg(feature = "count-allocations")]
        allocations::flush();
        Action::Continue
    }

    /// The stream has ended (Envoy calls `on_done` then `on_log`; ngx_wasm_module `on_log`
    /// then `on_done`): its concurrency slots come back, and a request still held never went
    /// upstream.
    fn on_log(&mut self) {
        self.end_stream();
    }
}

impl SluiceHttp {
    /// The stream has ended, however it ended (response, reset, local reply, client gone):
    /// its concurrency slots are given back, and if it was still held (not yet released) it
    /// never went upstream, so its units are given back too. Runs once per stream: what it
    /// gives back is taken out of the context.
    fn end_stream(&mut self) {
        self.release_slots();
        self.give_back_held();
    }

    /// Gives back the request's concurrency slots, once: those it holds, or those its local
    /// rules took before it waited for the rate-limit service (the answer will not come).
    fn release_slots(&mut self) {
        let slots = match self.slots.take() {
            Some(slots) => slots,
            // The common end: nothing held, nothing waiting (checked without moving either).
            None if self.pending.is_none() && self.leased.is_none() => return,
            None => match self.waiting_slots() {
                Some(slots) => slots,
                None => return,
            },
        };
        let runtime = Rc::clone(&self.runtime);
        // Without a clock reading, at the time they were taken: still live then.
        let now = host::now_nanos().unwrap_or(slots.taken_at());
        let (Ok(mut limiter), Ok(mut buffers)) = (
            runtime.limiter.try_borrow_mut(),
            runtime.buffers.try_borrow_mut(),
        ) else {
            // Not reachable (nothing else runs in the VM meanwhile); the slots would come
            // back when they expire.
            return;
        };
        runtime.policy.release(
            slots,
            now,
            &mut limiter,
            &mut SharedData,
            &mut buffers,
            |rule, released| {
                if released == Released::Given {
                    runtime.metrics.record_released(rule);
                }
            },
        );
    }

    /// The slots the local rules of a request still waiting for the rate-limit service took.
    #[cold]
    fn waiting_slots(&mut self) -> Option<TakenSlots> {
        let policy = &self.runtime.policy;
        match (self.pending.take(), self.leased.take()) {
            (Some(call), _) => TakenSlots::committed(policy, call.now(), call.local_checks()),
            (None, Some(waiting)) => {
                TakenSlots::committed(policy, waiting.now(), waiting.local_checks())
            }
            (None, None) => None,
        }
    }

    /// A held request's stream ended: if it was still held (not yet released), it never
    /// went upstream, so its units are given back.
    fn give_back_held(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let runtime = Rc::clone(&self.runtime);
        let Some(holding) = &runtime.holding else {
            return;
        };
        let abandoned = holding.abandon(self.context_id);
        let Ok(mut buffers) = runtime.buffers.try_borrow_mut() else {
            return;
        };
        if !abandoned {
            // Released and sent upstream: only its keys and list come back.
            buffers.reclaim_held(held);
            return;
        }
        if let Ok(mut limiter) = runtime.limiter.try_borrow_mut() {
            runtime
                .policy
                .give_back(held, &mut limiter, &mut SharedData, &mut buffers);
        }
    }

    /// Counts, logs and applies a decided request: `Continue` with the rate-limit headers
    /// kept for the response, `Pause` while it is held by a delay rule (released from the
    /// root context's tick), or the local denial sent (`Pause`). `now` is when it was
    /// decided.
    fn apply<'r>(&mut self, runtime: &'r Runtime, mut handled: Handled<'r>, now: u64) -> Action {
        let delay = handled.verdict.as_ref().map_or(0, Verdict::delay);
        let hold = delay > 0 && runtime.holding.as_ref().is_some_and(Holding::has_room);
        if delay > 0 && !hold {
            if let Some(holding) = &runtime.holding {
                holding.counters.refused();
            }
            if let Ok(mut limiter) = runtime.limiter.try_borrow_mut() {
                handled = runtime
                    .policy
                    .refuse_hold(handled, now, &mut limiter, &mut SharedData);
            }
        }
        if handled.evaluation.is_exempt() {
            runtime.metrics.record_exempt();
        }
        for (rule, _check, outcome) in handled.outcomes() {
            runtime.metrics.record(rule, outcome);
        }
        for notice in handled.notices() {
            log(LogLevel::Warn, &format!("sluice: {notice}"));
        }
        if handled.response.warning().is_some() {
            for (rule, _reason) in handled.marks() {
                runtime.metrics.record_marked(rule);
            }
        }
        let response = std::mem::replace(&mut handled.response, Response::pass());
        let mut queued = false;
        if let Ok(mut buffers) = runtime.buffers.try_borrow_mut() {
            // A held request keeps its commits' keys (to give them back if it never goes
            // upstream); the rest of the request's buffers come back now either way.
            if hold && let Some(held) = HeldRequest::of(&mut handled, now, &mut buffers) {
                let holding = runtime.holding.as_ref();
                if holding.is_some_and(|h| h.hold(self.context_id, held.release_at(), now)) {
                    self.held = Some(held);
                    queued = true;
                } else {
                    buffers.reclaim_held(held);
                }
            }
            // A passed request's concurrency slots stay with the stream until it ends.
            self.slots = handled.take_slots(now, &mut buffers);
            buffers.reclaim(handled);
        }
        match response {
            Response::Pass { headers, warning } => {
                self.response_headers = headers;
                // One host call, and only for a marked request (or one carrying a forged
                // mark); the request is still before the upstream here, on every path.
                match warning {
                    Some(warning) => {
                        host::set_request_header(warning.name, warning.value.as_bytes());
                        self.warning = Some(warning.value);
                    }
                    None if self.forged_warning => {
                        host::remove_request_header(runtime.policy.response().warning_header());
                    }
                    None => {}
                }
                if queued {
                    return Action::Pause;
                }
                Action::Continue
            }
            Response::Deny {
                status,
                body,
                content_type,
                headers,
            } => {
                let pairs = std::iter::once(("content-type", content_type))
                    .chain(headers.iter().map(|(name, value)| (*name, value.as_str())));
                let sent = match runtime.local_response.try_borrow_mut() {
                    Ok(mut serialised) => {
                        header_map::serialise_into(pairs, &mut serialised);
                        host::send_local_response(status, &serialised, body.as_bytes())
                    }
                    Err(_) => false,
                };
                runtime.reclaim_headers(headers);
                if sent {
                    return Action::Pause;
                }
                // Pausing would leave the request hanging: let it through, and say why.
                log(
                    LogLevel::Error,
                    "sluice: the proxy refused the local response of a denied request; passed",
                );
                Action::Continue
            }
        }
    }

    /// A request under a policy with global rules: local rules first, then (if they allow
    /// and a global rule applies) one call to the service, the request paused until it
    /// answers.
    fn start_global(&mut self, runtime: &Runtime, request: &HostRequest, now: u64) -> Action {
        let started = {
            let Ok(mut limiter) = runtime.limiter.try_borrow_mut() else {
                return Action::Continue;
            };
            runtime
                .policy
                .start(request, now, &mut limiter, &mut SharedData)
        };
        let call = match started {
            Started::Done(handled) => return self.apply(runtime, handled, now),
            Started::Call(call) => call,
        };
        let Some(global) = runtime.global.as_ref() else {
            return self.finish_global(runtime, call, Err(CallFailure::NoResponse));
        };
        global.counters.record_call();
        let dispatched = self.dispatch_http_call(
            global.cluster(),
            global.request_headers(),
            Some(call.body()),
            Vec::new(),
            global.timeout(),
        );
        match dispatched {
            Ok(_token) => {
                self.pending = Some(call);
                Action::Pause
            }
            Err(status) => {
                self.finish_global(runtime, call, Err(CallFailure::Dispatch(status as u32)))
            }
        }
    }

    /// A request under a policy with global rules, through its leases and negative cache:
    /// decided from shared data when it can be, else paused for one call.
    fn start_leased(&mut self, runtime: &Runtime, request: &HostRequest, now: u64) -> Action {
        let Some(leases) = runtime.leases.as_ref() else {
            return Action::Continue;
        };
        let step = {
            let (Ok(mut limiter), Ok(mut buffers)) = (
                runtime.limiter.try_borrow_mut(),
                runtime.buffers.try_borrow_mut(),
            ) else {
                return Action::Continue;
            };
            leases.start(
                &runtime.policy,
                request,
                now,
                &mut limiter,
                &mut SharedData,
                &mut buffers,
            )
        };
        self.step_leased(runtime, step, now)
    }

    fn step_leased(&mut self, runtime: &Runtime, step: Step<'_>, now: u64) -> Action {
        let waiting = match step {
            Step::Done(handled) => return self.apply(runtime, handled, now),
            Step::Call(waiting) => waiting,
        };
        let Some(global) = runtime.global.as_ref() else {
            return self.resume_leased(runtime, waiting, Err(CallFailure::NoResponse));
        };
        global.counters.record_call();
        let headers = match waiting.stage() {
            Stage::Lease => global.lease_request_headers(),
            Stage::Decide => global.request_headers(),
        };
        let dispatched = self.dispatch_http_call(
            global.cluster(),
            headers,
            Some(waiting.body()),
            Vec::new(),
            global.timeout(),
        );
        match dispatched {
            Ok(_token) => {
                self.leased = Some(waiting);
                Action::Pause
            }
            Err(status) => {
                self.resume_leased(runtime, waiting, Err(CallFailure::Dispatch(status as u32)))
            }
        }
    }

    /// Continues a paused request with the service's answer to its call.
    fn resume_leased(
        &mut self,
        runtime: &Runtime,
        waiting: Waiting,
        answer: Result<Vec<u8>, CallFailure>,
    ) -> Action {
        let Some(leases) = runtime.leases.as_ref() else {
            return Action::Continue;
        };
        let now = waiting.now();
        let global_rules = waiting.global_checks();
        let (step, failure) = {
            let Ok(mut limiter) = runtime.limiter.try_borrow_mut() else {
                return Action::Continue;
            };
            leases.resume(
                &runtime.policy,
                waiting,
                answer.as_deref().map_err(Clone::clone),
                &mut limiter,
                &mut SharedData,
            )
        };
        if let (Some(failure), Some(global)) = (&failure, runtime.global.as_ref()) {
            global.record_failure(failure, now, global_rules);
        }
        self.step_leased(runtime, step, now)
    }

    /// Decides a request from the service's answer (or its failure) and applies it.
    fn finish_global(
        &mut self,
        runtime: &Runtime,
        call: GlobalCall,
        answer: Result<Vec<u8>, CallFailure>,
    ) -> Action {
        let now = call.now();
        let global_rules = call.global_checks();
        let finished = {
            let Ok(mut limiter) = runtime.limiter.try_borrow_mut() else {
                return Action::Continue;
            };
            runtime.policy.finish(
                call,
                answer.as_deref().map_err(Clone::clone),
                &mut limiter,
                &mut SharedData,
            )
        };
        if let (Some(failure), Some(global)) = (&finished.failure, runtime.global.as_ref()) {
            global.record_failure(failure, now, global_rules);
        }
        self.apply(runtime, finished.handled, now)
    }
}

/// The root context's tick: the leases' background work (renewals, returns), one call per
/// batch from the root context, so no request's end cancels it.
fn lease_tick(root: &SluiceRoot, runtime: &Runtime) {
    let (Some(leases), Some(global)) = (runtime.leases.as_ref(), runtime.global.as_ref()) else {
        return;
    };
    let Some(now) = host::now_nanos() else {
        return;
    };
    for call in leases.tick(&runtime.policy, now, &mut SharedData) {
        global.counters.record_call();
        let dispatched = root.dispatch_http_call(
            global.cluster(),
            global.lease_request_headers(),
            Some(&call.body),
            Vec::new(),
            global.timeout(),
        );
        match dispatched {
            Ok(token) => leases.dispatched(token, call),
            Err(status) => {
                global.record_background_failure(&CallFailure::Dispatch(status as u32), now, 0);
            }
        }
    }
}

/// The answer to a call the tick made.
fn lease_call_answered(runtime: &Runtime, token: u32, num_headers: usize, body_size: usize) {
    let Some(leases) = runtime.leases.as_ref() else {
        return;
    };
    if !leases.owns(token) {
        return;
    }
    let answer = global_call::read_answer(num_headers, body_size);
    let now = host::now_nanos().unwrap_or_default();
    let renewals = leases.renewals(token);
    let failure = leases.renewed(
        token,
        answer.as_deref().map_err(Clone::clone),
        now,
        &mut SharedData,
    );
    if let (Some(failure), Some(global)) = (failure, runtime.global.as_ref()) {
        global.record_background_failure(&failure, now, renewals);
    }
}
