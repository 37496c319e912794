//! `sluice-passthrough-filter`: the baseline the sluice filter is measured against.
//!
//! Per request it makes the reads the sluice filter makes, the same way (see
//! `filters/proxy-wasm/src/request.rs` and `lib.rs`): the whole request header map in one
//! call, as the SDK's names and byte values; the clock; and the `source.address` property,
//! which sluice reads when a rule keys by client IP (the benchmark configurations do). Then it
//! lets the request through untouched. What sluice costs above this is the rate limiting
//! itself (including turning header values into text).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> {
        Box::new(PassThrough)
    });
}}

struct PassThrough;

impl Context for PassThrough {}

impl HttpContext for PassThrough {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        let now = hostcalls::get_current_time();
        let peer = hostcalls::get_property(vec!["source", "address"]);
        // Look at what was read, so none of it is optimised away.
        let read =
            headers.len() + usize::from(now.is_ok()) + usize::from(matches!(peer, Ok(Some(_))));
        if read == usize::MAX {
            return Action::Pause;
        }
        Action::Continue
    }
}
