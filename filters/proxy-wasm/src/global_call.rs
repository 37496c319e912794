//! Asking the rate-limit service about a request's global rules: one HTTP call per request
//! (`proxy_http_call`, on Envoy and ngx_wasm_module alike), the request paused meanwhile.
//! The policy decides what to send and what the answer means; this module makes the call,
//! reads the response, and logs failures at most once per kind per 10 s.

use std::cell::RefCell;
use std::time::Duration;

use sluice_policy::GlobalConfig;
use sluice_policy::global::{CallFailure, FailureLog, MAX_BODY_BYTES};

use crate::host::{self, LogLevel, log};
use crate::metrics::CallCounters;

/// What a configured VM needs to call the service.
pub struct GlobalRuntime {
    config: GlobalConfig,
    /// `:path` of lease calls: `global.path` with its last segment `decide` made `lease`
    /// (`/v1/lease` by default).
    lease_path: String,
    pub counters: CallCounters,
    failures: RefCell<FailureLog>,
}

impl GlobalRuntime {
    pub fn new(config: GlobalConfig) -> GlobalRuntime {
        let lease_path = match config.path().strip_suffix("decide") {
            Some(prefix) if prefix.ends_with('/') => format!("{prefix}lease"),
            _ => String::from("/v1/lease"),
        };
        GlobalRuntime {
            lease_path,
            config,
            counters: CallCounters::define(),
            failures: RefCell::new(FailureLog::default()),
        }
    }

    /// The call's headers (`:method`, `:path`, `:authority`, `content-type`) and timeout.
    pub fn request_headers(&self) -> Vec<(&str, &str)> {
        vec![
            (":method", "POST"),
            (":path", self.config.path()),
            (":authority", self.config.authority()),
            ("content-type", "application/json"),
        ]
    }

    /// The headers of a `/v1/lease` call.
    pub fn lease_request_headers(&self) -> Vec<(&str, &str)> {
        vec![
            (":method", "POST"),
            (":path", &self.lease_path),
            (":authority", self.config.authority()),
            ("content-type", "application/json"),
        ]
    }

    pub fn cluster(&self) -> &str {
        self.config.cluster()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_nanos(self.config.timeout())
    }

    /// Counts a failed call, and logs it unless a failure of its kind was logged in the last
    /// 10 s; `now` is the request's own clock reading.
    pub fn record_failure(&self, failure: &CallFailure, now: u64, global_rules: usize) {
        self.log_failure(
            failure,
            now,
            &format!("{global_rules} global rule(s) decided by their failure_mode"),
        );
    }

    /// As [`GlobalRuntime::record_failure`], for a call the root context's tick made.
    pub fn record_background_failure(&self, failure: &CallFailure, now: u64, renewals: usize) {
        self.log_failure(
            failure,
            now,
            &format!(
                "{renewals} lease renewal(s) not made (the slices keep deciding until they \
                 expire) and the returns it carried not made"
            ),
        );
    }

    fn log_failure(&self, failure: &CallFailure, now: u64, consequence: &str) {
        self.counters.record_error();
        let Ok(mut failures) = self.failures.try_borrow_mut() else {
            return;
        };
        let Some(suppressed) = failures.record(failure, now) else {
            return;
        };
        let mut line = format!(
            "sluice: rate-limit service (cluster \"{}\"): {failure}; {consequence}",
            self.config.cluster()
        );
        if suppressed > 0 {
            line.push_str(&format!(
                "; {suppressed} more failure(s) of this kind since the last such line were not logged"
            ));
        }
        log(LogLevel::Warn, &line);
    }
}

/// The service's answer, read inside `on_http_call_response`: the body of a 200, or why
/// there is none.
pub fn read_answer(num_headers: usize, body_size: usize) -> Result<Vec<u8>, CallFailure> {
    // A failed call (timeout, connection refused, reset) comes back without headers.
    if num_headers == 0 {
        return Err(CallFailure::NoResponse);
    }
    let status = host::http_call_status().ok_or(CallFailure::NoResponse)?;
    if status != 200 {
        return Err(CallFailure::Status(status));
    }
    if body_size > MAX_BODY_BYTES {
        return Err(CallFailure::BadReply(
            sluice_policy::global::ReplyError::TooLarge { bytes: body_size },
        ));
    }
    host::http_call_body(body_size).ok_or(CallFailure::NoResponse)
}
