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
mod host;
mod metrics;
mod request;
mod seed;

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel as SdkLogLevel};
use sluice_core::Limiter;
use sluice_policy::global::{CallFailure, GlobalCall, Started};
use sluice_policy::{Handled, Policy, Response};

use crate::global_call::GlobalRuntime;
use crate::host::{LogLevel, SharedData, log};
use crate::metrics::Metrics;
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
    /// A denial's headers serialised for the host, reused from one denial to the next.
    local_response: RefCell<Vec<u8>>,
}

impl Runtime {
    /// Hands what the VM counted to the proxy's counters.
    fn flush_metrics(&self) {
        self.metrics.flush();
        if let Some(global) = &self.global {
            global.counters.flush();
        }
    }
}

#[derive(Default)]
struct SluiceRoot {
    runtime: Option<Rc<Runtime>>,
}

impl Context for SluiceRoot {
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
                if let Some(previous) = self.runtime.replace(Rc::new(runtime)) {
                    previous.flush_metrics();
                }
                if !host::set_tick_period(metrics::FLUSH_PERIOD) {
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
        if let Some(runtime) = &self.runtime {
            runtime.flush_metrics();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let runtime = Rc::clone(self.runtime.as_ref()?);
        let make = || -> Box<dyn HttpContext> {
            Box::new(SluiceHttp {
                runtime,
                response_headers: Vec::new(),
                pending: None,
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
    let renamed = names
        .separate_crc32(&policy.table_specs())
        .map_err(|e| e.to_string())?;
    let mut store = SharedData;
    let seed = seed::shared_seed(&mut store, &names.seed_key()).map_err(|e| e.to_string())?;
    let limiter = Limiter::new(seed, policy.cas_retries()).with_names(names);
    let footprint = footprint::Footprint::of(&policy, limiter.names());
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
    footprint.verify(&policy, limiter.names(), &mut store)?;
    let metrics = Metrics::define(policy.rules().iter().map(|rule| rule.name()));
    let global = match policy.global() {
        Some(config) if policy.has_global_rules() => Some(GlobalRuntime::new(config.clone())),
        _ => None,
    };
    #[cfg(feature = "count-allocations")]
    allocations::define();
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
        local_response: RefCell::new(Vec::new()),
    })
}

struct SluiceHttp {
    runtime: Rc<Runtime>,
    /// Rate-limit headers for an allowed request, added to the upstream's response.
    response_headers: Vec<(&'static str, String)>,
    /// The request waiting for the rate-limit service.
    pending: Option<GlobalCall>,
}

impl Context for SluiceHttp {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(call) = self.pending.take() else {
            return;
        };
        let answer = global_call::read_answer(num_headers, body_size);
        let runtime = Rc::clone(&self.runtime);
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
        if runtime.global.is_some() {
            return self.start_global(&runtime, &request, now);
        }
        let handled = {
            let Ok(mut limiter) = runtime.limiter.try_borrow_mut() else {
                return Action::Continue;
            };
            runtime
                .policy
                .handle(&request, now, &mut limiter, &mut SharedData)
        };
        self.apply(&runtime, handled)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.response_headers.drain(..) {
            host::add_response_header(name, value.as_bytes());
        }
        #[cfg(feature = "count-allocations")]
        allocations::flush();
        Action::Continue
    }
}

impl SluiceHttp {
    /// Counts, logs and applies a decided request: `Continue` with the rate-limit headers
    /// kept for the response, or the local denial sent (`Pause`).
    fn apply(&mut self, runtime: &Runtime, handled: Handled<'_>) -> Action {
        if handled.evaluation.is_exempt() {
            runtime.metrics.record_exempt();
        }
        for (rule, _check, outcome) in handled.outcomes() {
            runtime.metrics.record(rule, outcome);
        }
        for notice in handled.notices() {
            log(LogLevel::Warn, &format!("sluice: {notice}"));
        }
        match handled.response {
            Response::Pass { headers } => {
                self.response_headers = headers;
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
            Started::Done(handled) => return self.apply(runtime, handled),
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
        self.apply(runtime, finished.handled)
    }
}
