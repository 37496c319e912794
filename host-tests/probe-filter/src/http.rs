//! The probe's HTTP context: carries out the `x-probe-` instructions.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::grpc::{GrpcPlan, GrpcRecord};
use crate::{RootState, StreamKind, log_lazy, raw, report, trap};

const PREFIX: &str = "x-probe-";
const RESULT_PREFIX: &str = "x-probe-r-";

/// Where `x-probe-trap` executes `unreachable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrapPoint {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
    Done,
    Panic,
}

/// Where `x-probe-pause` returns `Pause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PausePoint {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
}

#[derive(Debug)]
enum HeaderEdit {
    Add(String, String),
    Replace(String, String),
    Remove(String),
    SetAll(Vec<(String, String)>),
}

/// What the probe does once its HTTP call is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum CallThen {
    /// `resume_http_request`.
    #[default]
    Continue,
    /// A local response with the call's status and body.
    Respond,
    /// Nothing: the stream stays as it is.
    Nothing,
}

/// The HTTP call `x-probe-http-call` dispatches.
#[derive(Debug)]
struct ProbeCall {
    upstream: String,
    method: String,
    path: String,
    authority: Option<String>,
    omitted: Vec<String>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout_ms: u64,
    then: CallThen,
    echo_headers: Vec<String>,
}

impl Default for ProbeCall {
    fn default() -> ProbeCall {
        ProbeCall {
            upstream: String::new(),
            method: "GET".to_string(),
            path: "/".to_string(),
            authority: None,
            omitted: Vec::new(),
            headers: Vec::new(),
            body: None,
            timeout_ms: 1000,
            then: CallThen::Continue,
            echo_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct LocalReply {
    status: Option<u32>,
    body: String,
    details: String,
    headers: Vec<(String, String)>,
    grpc_status: Option<i32>,
    from_response_phase: bool,
}

pub(crate) struct ProbeHttp {
    context_id: u32,
    root: Rc<RefCell<RootState>>,
    results: Vec<(String, String)>,
    response_edits: Vec<HeaderEdit>,
    local_reply: LocalReply,
    pauses: Vec<PausePoint>,
    pause_and_resume_self: bool,
    reset: Option<StreamKind>,
    trap_at: Option<TrapPoint>,
    echo_request_headers: bool,
    echo_request_body: bool,
    echo_request_trailers: bool,
    replace_request_body: Option<String>,
    replace_response_body: Option<String>,
    added_request_trailers: Vec<(String, String)>,
    /// Request headers to read again in the response headers callback.
    late_request_header_reads: Vec<String>,
    /// Properties to read in the response headers callback.
    late_property_reads: Vec<String>,
    /// The HTTP call to dispatch, once every instruction is read.
    call: Option<ProbeCall>,
    /// The gRPC call or stream to open, once every instruction is read.
    grpc: Option<GrpcPlan>,
    grpc_record: GrpcRecord,
}

fn split_pair(value: &str) -> (String, String) {
    match value.split_once('=') {
        Some((name, value)) => (name.trim().to_string(), value.to_string()),
        None => (value.trim().to_string(), String::new()),
    }
}

fn split_pairs(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .filter(|item| !item.trim().is_empty())
        .map(split_pair)
        .collect()
}

/// Splits `<subject>[;cas=<n>]`.
fn split_cas(value: &str) -> (&str, u32) {
    match value.rsplit_once(";cas=") {
        Some((subject, cas)) => (subject, cas.trim().parse().unwrap_or(0)),
        None => (value, 0),
    }
}

fn log_level(name: &str) -> Option<u32> {
    match name {
        "trace" => Some(0),
        "debug" => Some(1),
        "info" => Some(2),
        "warn" => Some(3),
        "error" => Some(4),
        "critical" => Some(5),
        _ => None,
    }
}

fn property_path(dotted: &str) -> Vec<u8> {
    dotted.replace('.', "\0").into_bytes()
}

/// Runs one direct ABI call named by `x-probe-raw` and describes its answer.
///
/// Operations: `log-invalid-memory`, `log-bad-level`,
/// `header-value-invalid-memory`, `set-header-map-invalid-memory`,
/// `shared-get-invalid-memory`, `log-level`, `time`, `wasi-time`, `random`,
/// `http-call`, `grpc-call`, `grpc-stream`, `grpc-send`, `grpc-cancel`,
/// `grpc-close`, `foreign-function`, `register-queue`, `resolve-queue`,
/// `enqueue-queue`, `dequeue-queue`, `unknown-hostcall`, `done`,
/// `effective-context-unknown`, `counter-zero`, `counter-negative`,
/// `histogram-get`, `metric-unknown-id`, `stdout`, `stderr`,
/// `plugin-config-outside-configure`, `vm-config`, `buffer-bad-type`,
/// `map-bad-type`, `continue-bad-type`, `header-map-size`,
/// `request-body-status`, `get-status`, `response-headers-in-request`.
pub fn raw_operation(operation: &str) -> String {
    match operation {
        "log-invalid-memory" => raw::log_from_invalid_memory().to_string(),
        "log-bad-level" => raw::log(99, "bad level").to_string(),
        "header-value-invalid-memory" => {
            raw::header_value_into_invalid_memory(0, ":path").to_string()
        }
        "set-header-map-invalid-memory" => raw::set_header_map_from_invalid_memory(0).to_string(),
        "shared-get-invalid-memory" => raw::shared_data_with_invalid_key().to_string(),
        "log-level" => {
            let (status, level) = raw::log_level();
            format!("{status} value={level}")
        }
        "time" => {
            let (status, time) = raw::current_time();
            format!("{status} value={time}")
        }
        "wasi-time" => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or(0);
            format!("0 value={nanos}")
        }
        "random" => {
            let (errno, bytes) = raw::random_bytes();
            format!(
                "{errno} value={}",
                report::bytes(&bytes).trim_start_matches("hex:")
            )
        }
        "http-call" => {
            let headers = raw::serialize_pairs(&[
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), "/".to_string()),
                (":authority".to_string(), "upstream".to_string()),
            ]);
            raw::http_call("upstream", &headers).to_string()
        }
        "grpc-call" => raw::grpc_call("upstream").to_string(),
        "grpc-stream" => raw::grpc_stream("upstream").to_string(),
        "grpc-send" => raw::grpc_send(1).to_string(),
        "grpc-cancel" => raw::grpc_cancel(1).to_string(),
        "grpc-close" => raw::grpc_close(1).to_string(),
        "foreign-function" => raw::call_foreign_function("compress").to_string(),
        "register-queue" => raw::register_shared_queue("probe-queue").to_string(),
        "resolve-queue" => raw::resolve_shared_queue("", "probe-queue").to_string(),
        "enqueue-queue" => raw::enqueue_shared_queue(1, b"item").to_string(),
        "dequeue-queue" => raw::dequeue_shared_queue(1).to_string(),
        "unknown-hostcall" => raw::unknown_hostcall().to_string(),
        "done" => raw::done().to_string(),
        "effective-context-unknown" => raw::set_effective_context(0xFFFF).to_string(),
        "counter-zero" | "counter-negative" => {
            let (status, id) = raw::define_metric(0, "probe_bad_delta");
            if status != raw::OK {
                return format!("define {status}");
            }
            let delta = if operation == "counter-zero" { 0 } else { -1 };
            raw::increment_metric(id, delta).to_string()
        }
        "histogram-get" => {
            let (status, id) = raw::define_metric(2, "probe_histogram");
            if status != raw::OK {
                return format!("define {status}");
            }
            raw::metric(id).0.to_string()
        }
        "metric-unknown-id" => raw::increment_metric(0xFFFF_FFF0, 1).to_string(),
        "stdout" => {
            println!("probe stdout line");
            "0".to_string()
        }
        "stderr" => {
            eprintln!("probe stderr line");
            "0".to_string()
        }
        "plugin-config-outside-configure" => {
            let (status, value) = raw::buffer_bytes(7, 0, usize::MAX);
            report::status_and_value(status, value.as_deref())
        }
        "vm-config" => {
            let (status, value) = raw::buffer_bytes(6, 0, usize::MAX);
            report::status_and_value(status, value.as_deref())
        }
        "buffer-bad-type" => raw::buffer_bytes(99, 0, 10).0.to_string(),
        "map-bad-type" => raw::header_map_pairs(99).0.to_string(),
        "continue-bad-type" => raw::continue_stream(9).to_string(),
        "header-map-size" => {
            let (status, size) = raw::header_map_size(0);
            report::status_and_value(status, Some(size.to_string().as_bytes()))
        }
        "request-body-status" => {
            let (status, size) = raw::buffer_status(0);
            report::status_and_value(status, Some(size.to_string().as_bytes()))
        }
        "get-status" => {
            let (status, code, message) = raw::status();
            format!(
                "{status} value={code}:{}",
                report::bytes(&message.unwrap_or_default())
            )
        }
        "response-headers-in-request" => {
            let (status, pairs) = raw::header_map_pairs(2);
            format!("{status} value={}", pairs.map_or(0, |pairs| pairs.len()))
        }
        _ => format!("unknown operation {operation}"),
    }
}

impl ProbeHttp {
    pub(crate) fn new(context_id: u32, root: Rc<RefCell<RootState>>) -> ProbeHttp {
        ProbeHttp {
            context_id,
            root,
            results: Vec::new(),
            response_edits: Vec::new(),
            local_reply: LocalReply::default(),
            pauses: Vec::new(),
            pause_and_resume_self: false,
            reset: None,
            trap_at: None,
            echo_request_headers: false,
            echo_request_body: false,
            echo_request_trailers: false,
            replace_request_body: None,
            replace_response_body: None,
            added_request_trailers: Vec::new(),
            late_request_header_reads: Vec::new(),
            late_property_reads: Vec::new(),
            call: None,
            grpc: None,
            grpc_record: GrpcRecord::default(),
        }
    }

    /// Opens the gRPC call or stream, if one was asked for; answers whether
    /// the request waits for it.
    fn dispatch_grpc(&mut self) -> bool {
        let Some(plan) = &self.grpc else {
            return false;
        };
        let (results, waiting_on) = plan.dispatch(self);
        if let Some(token) = waiting_on
            && plan.cancels_on_tick()
        {
            self.root.borrow_mut().grpc_cancels.push(token);
        }
        for (name, value) in results {
            self.result(&name, value);
        }
        waiting_on.is_some()
    }

    /// The gRPC call or stream ended: its results join the request, which
    /// resumes.
    fn finish_grpc(&mut self, results: Vec<(String, String)>) {
        for (name, value) in results {
            let name = format!("{RESULT_PREFIX}{name}");
            self.add_http_request_header(&name, &value);
            self.results.push((name, value));
        }
        self.resume_http_request();
    }

    fn call_mut(&mut self) -> &mut ProbeCall {
        self.call.get_or_insert_with(ProbeCall::default)
    }

    /// Dispatches the HTTP call, if one was asked for; answers whether it
    /// is in flight.
    fn dispatch_call(&mut self) -> bool {
        let Some(call) = &self.call else {
            return false;
        };
        let authority = call
            .authority
            .clone()
            .unwrap_or_else(|| call.upstream.clone());
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", call.method.as_str()),
            (":path", call.path.as_str()),
            (":authority", authority.as_str()),
        ];
        headers.retain(|(name, _)| !call.omitted.iter().any(|omitted| omitted == name));
        headers.extend(
            call.headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let dispatched = self.dispatch_http_call(
            &call.upstream,
            headers,
            call.body.as_deref().map(str::as_bytes),
            vec![],
            std::time::Duration::from_millis(call.timeout_ms),
        );
        let answer = match dispatched {
            Ok(_) => "0".to_string(),
            Err(status) => (status as u32).to_string(),
        };
        let in_flight = dispatched.is_ok();
        self.result("http-call", answer);
        in_flight
    }

    fn result(&mut self, name: &str, value: String) {
        self.results.push((format!("{RESULT_PREFIX}{name}"), value));
    }

    fn carry_out(&mut self, instruction: &str, value: &str) {
        if GrpcPlan::instruction(&mut self.grpc, instruction, value) {
            return;
        }
        match instruction {
            "log" => {
                let (level, message) = value.split_once(':').unwrap_or(("info", value));
                let status = match log_level(level.trim()) {
                    Some(level) => raw::log(level, message),
                    None => raw::log(99, message),
                };
                if status != raw::OK {
                    self.result("log", status.to_string());
                }
            }
            "log-all" => {
                for level in 0..=5 {
                    raw::log(level, value);
                }
            }
            "shared-get" => {
                let key = value.trim();
                let (status, data, cas) = raw::shared_data(key);
                let answer = if status == raw::OK {
                    format!(
                        "0 cas={cas} value={}",
                        report::bytes(data.as_deref().unwrap_or_default())
                    )
                } else {
                    status.to_string()
                };
                self.result(&format!("shared-get-{key}"), answer);
            }
            "shared-set" => {
                let (assignment, cas) = split_cas(value);
                let (key, data) = split_pair(assignment);
                let status = raw::set_shared_data(&key, Some(data.as_bytes()), cas);
                self.result(&format!("shared-set-{key}"), status.to_string());
            }
            "shared-delete" => {
                let (key, cas) = split_cas(value);
                let key = key.trim();
                let status = raw::set_shared_data(key, None, cas);
                self.result(&format!("shared-delete-{key}"), status.to_string());
            }
            "metric" => self.metric(value),
            "get-request-header" => {
                let name = value.trim();
                let answer = match self.get_http_request_header(name) {
                    Some(found) => format!("0 value={found}"),
                    None => "1".to_string(),
                };
                self.result(&format!("get-{name}"), answer);
            }
            "add-request-header" => {
                let (name, value) = split_pair(value);
                self.add_http_request_header(&name, &value);
            }
            "replace-request-header" => {
                let (name, value) = split_pair(value);
                self.set_http_request_header(&name, Some(&value));
            }
            "remove-request-header" => self.remove_http_request_header(value.trim()),
            "set-request-headers" => {
                let pairs = split_pairs(value);
                self.set_http_request_headers(
                    pairs
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_str()))
                        .collect(),
                );
            }
            "add-response-header" => {
                let (name, value) = split_pair(value);
                self.response_edits.push(HeaderEdit::Add(name, value));
            }
            "replace-response-header" => {
                let (name, value) = split_pair(value);
                self.response_edits.push(HeaderEdit::Replace(name, value));
            }
            "remove-response-header" => self
                .response_edits
                .push(HeaderEdit::Remove(value.trim().to_string())),
            "set-response-headers" => self
                .response_edits
                .push(HeaderEdit::SetAll(split_pairs(value))),
            "echo-request-headers" => self.echo_request_headers = true,
            "property" => {
                let path = value.trim();
                let (status, data) = raw::property(&property_path(path));
                self.result(
                    &format!("property-{path}"),
                    report::status_and_value(status, data.as_deref()),
                );
            }
            "property-i64" => {
                let path = value.trim();
                let (status, data) = raw::property(&property_path(path));
                let answer = match (status, data.as_deref().map(<[u8; 8]>::try_from)) {
                    (0, Some(Ok(bytes))) => format!("0 value={}", i64::from_le_bytes(bytes)),
                    (0, _) => "0 value=not-an-i64".to_string(),
                    (status, _) => status.to_string(),
                };
                self.result(&format!("property-{path}"), answer);
            }
            "set-property" => {
                let (path, data) = split_pair(value);
                let status = raw::set_property(&property_path(&path), data.as_bytes());
                self.result(&format!("set-property-{path}"), status.to_string());
            }
            "respond" => self.local_reply.status = value.trim().parse().ok(),
            "respond-body" => self.local_reply.body = value.to_string(),
            "respond-details" => self.local_reply.details = value.to_string(),
            "respond-header" => self.local_reply.headers.push(split_pair(value)),
            "respond-grpc" => self.local_reply.grpc_status = value.trim().parse().ok(),
            "respond-in" => self.local_reply.from_response_phase = value.trim() == "response",
            "pause" => match value.trim() {
                "request" => self.pauses.push(PausePoint::RequestHeaders),
                "request-body" => self.pauses.push(PausePoint::RequestBody),
                "response" => self.pauses.push(PausePoint::ResponseHeaders),
                other => self.result("pause", format!("unknown pause point {other}")),
            },
            "pause-self-resume" => self.pause_and_resume_self = true,
            "reset" => {
                self.reset = match value.trim() {
                    "response" => Some(StreamKind::Response),
                    _ => Some(StreamKind::Request),
                }
            }
            "trap" => {
                self.trap_at = match value.trim() {
                    "request" => Some(TrapPoint::RequestHeaders),
                    "request-body" => Some(TrapPoint::RequestBody),
                    "response" => Some(TrapPoint::ResponseHeaders),
                    "response-body" => Some(TrapPoint::ResponseBody),
                    "log" => Some(TrapPoint::Log),
                    "done" => Some(TrapPoint::Done),
                    "panic" => Some(TrapPoint::Panic),
                    "tick" => {
                        self.root.borrow_mut().trap_on_next_tick = true;
                        None
                    }
                    _ => None,
                }
            }
            "raw" => {
                let operation = value.trim();
                let answer = raw_operation(operation);
                self.result(&format!("raw-{operation}"), answer);
            }
            "echo-config" => {
                let configuration = report::bytes(&self.root.borrow().configuration);
                self.result("config", configuration);
            }
            "echo-request-body" => self.echo_request_body = true,
            "echo-request-trailers" => self.echo_request_trailers = true,
            "replace-request-body" => self.replace_request_body = Some(value.to_string()),
            "replace-response-body" => self.replace_response_body = Some(value.to_string()),
            "add-request-trailer" => self.added_request_trailers.push(split_pair(value)),
            "property-later" => self.late_property_reads.push(value.trim().to_string()),
            "get-request-header-later" => self
                .late_request_header_reads
                .push(value.trim().to_string()),
            "http-call" => self.call_mut().upstream = value.trim().to_string(),
            "call-method" => self.call_mut().method = value.trim().to_string(),
            "call-path" => self.call_mut().path = value.trim().to_string(),
            "call-authority" => self.call_mut().authority = Some(value.trim().to_string()),
            "call-omit" => self.call_mut().omitted.push(value.trim().to_string()),
            "call-header" => self.call_mut().headers.push(split_pair(value)),
            "call-body" => self.call_mut().body = Some(value.to_string()),
            "call-timeout-ms" => self.call_mut().timeout_ms = value.trim().parse().unwrap_or(1000),
            "call-echo-header" => self.call_mut().echo_headers.push(value.trim().to_string()),
            "call-then" => {
                self.call_mut().then = match value.trim() {
                    "respond" => CallThen::Respond,
                    "nothing" => CallThen::Nothing,
                    _ => CallThen::Continue,
                }
            }
            other => {
                log_lazy(LogLevel::Warn, || {
                    format!("probe: unknown instruction x-probe-{other}")
                });
            }
        }
    }

    fn metric(&mut self, value: &str) {
        let mut parts = value.splitn(4, ':');
        let kind = parts.next().unwrap_or_default().trim();
        let name = parts.next().unwrap_or_default().trim().to_string();
        let operation = parts.next().unwrap_or_default().trim();
        let operand = parts.next().unwrap_or_default().trim();
        let metric_type = match kind {
            "counter" => 0,
            "gauge" => 1,
            "histogram" => 2,
            other => other.parse().unwrap_or(u32::MAX),
        };
        let (status, id) = raw::define_metric(metric_type, &name);
        if status != raw::OK {
            self.result(&format!("metric-{name}"), format!("define {status}"));
            return;
        }
        let answer = match operation {
            "inc" => raw::increment_metric(id, operand.parse().unwrap_or(0)).to_string(),
            "record" => raw::record_metric(id, operand.parse().unwrap_or(0)).to_string(),
            "get" => {
                let (status, value) = raw::metric(id);
                if status == raw::OK {
                    format!("0 value={value}")
                } else {
                    status.to_string()
                }
            }
            other => format!("unknown operation {other}"),
        };
        self.result(&format!("metric-{name}"), answer);
    }

    fn send_local_reply(&self) {
        let Some(status) = self.local_reply.status else {
            return;
        };
        let mut headers = self.local_reply.headers.clone();
        headers.extend(self.results.iter().cloned());
        let outcome = raw::send_local_response(
            status,
            &self.local_reply.details,
            self.local_reply.body.as_bytes(),
            &raw::serialize_pairs(&headers),
            self.local_reply.grpc_status.unwrap_or(-1),
        );
        log_lazy(LogLevel::Debug, || {
            format!("probe local response {status}: {outcome}")
        });
    }

    fn pause(&self, kind: StreamKind) -> Action {
        self.root.borrow_mut().paused.push((self.context_id, kind));
        Action::Pause
    }

    fn apply_response_edits(&self) {
        for edit in &self.response_edits {
            match edit {
                HeaderEdit::Add(name, value) => self.add_http_response_header(name, value),
                HeaderEdit::Replace(name, value) => {
                    self.set_http_response_header(name, Some(value))
                }
                HeaderEdit::Remove(name) => self.remove_http_response_header(name),
                HeaderEdit::SetAll(pairs) => self.set_http_response_headers(
                    pairs
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_str()))
                        .collect(),
                ),
            }
        }
    }
}

impl Context for ProbeHttp {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        let mut results = vec![
            ("call-headers".to_string(), num_headers.to_string()),
            ("call-trailers".to_string(), num_trailers.to_string()),
        ];
        let status = self.get_http_call_response_header(":status");
        results.push((
            "call-status".to_string(),
            status.clone().unwrap_or_else(|| "none".to_string()),
        ));
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        results.push(("call-body".to_string(), report::bytes(&body)));
        let (_, code, message) = raw::status();
        results.push((
            "call-get-status".to_string(),
            format!("{code}:{}", report::bytes(&message.unwrap_or_default())),
        ));
        let echoed = self
            .call
            .as_ref()
            .map(|call| call.echo_headers.clone())
            .unwrap_or_default();
        for name in echoed {
            let value = self.get_http_call_response_header(&name);
            results.push((
                format!("call-header-{name}"),
                value.unwrap_or_else(|| "none".to_string()),
            ));
        }
        for (name, value) in results {
            let name = format!("{RESULT_PREFIX}{name}");
            self.add_http_request_header(&name, &value);
            self.results.push((name, value));
        }
        match self
            .call
            .as_ref()
            .map_or(CallThen::Continue, |call| call.then)
        {
            CallThen::Continue => self.resume_http_request(),
            CallThen::Respond => {
                let status = status.and_then(|status| status.parse().ok()).unwrap_or(500);
                self.send_http_response(
                    status,
                    self.results
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_str()))
                        .collect(),
                    Some(&body),
                );
            }
            CallThen::Nothing => {}
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let reply = (status_code == 0)
            .then(|| raw::buffer_bytes(5, 0, response_size).1.unwrap_or_default());
        let results = GrpcPlan::on_end(
            &mut self.grpc_record,
            "response",
            token_id,
            status_code,
            reply,
        );
        self.finish_grpc(results);
    }

    fn on_grpc_stream_initial_metadata(&mut self, token_id: u32, num_elements: u32) {
        if let Some(plan) = &self.grpc {
            plan.on_initial_metadata(&mut self.grpc_record, token_id, num_elements);
        }
    }

    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        GrpcPlan::on_message(&mut self.grpc_record, token_id, message_size);
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token_id: u32, num_elements: u32) {
        if let Some(plan) = &self.grpc {
            plan.on_trailing_metadata(&mut self.grpc_record, token_id, num_elements);
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        let results = GrpcPlan::on_end(&mut self.grpc_record, "close", token_id, status_code, None);
        self.finish_grpc(results);
    }

    fn on_done(&mut self) -> bool {
        log_lazy(LogLevel::Debug, || {
            format!("probe on_done {}", self.context_id)
        });
        if self.trap_at == Some(TrapPoint::Done) {
            trap();
        }
        true
    }
}

impl HttpContext for ProbeHttp {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers();
        log_lazy(LogLevel::Trace, || {
            format!(
                "probe request headers {}: {num_headers} headers, end_of_stream={end_of_stream}",
                self.context_id
            )
        });
        for (name, value) in &headers {
            // Result headers (`x-probe-r-…`) are not instructions.
            if let Some(instruction) = name.strip_prefix(PREFIX)
                && !instruction.starts_with("r-")
            {
                self.carry_out(instruction, value);
            }
        }
        if self.echo_request_headers {
            let seen = self
                .get_http_request_headers()
                .iter()
                .filter(|(name, _)| !name.starts_with(PREFIX))
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            self.result("request-headers", seen);
        }
        let call_in_flight = self.dispatch_call();
        let grpc_in_flight = self.dispatch_grpc();
        for (name, value) in &self.results {
            self.add_http_request_header(name, value);
        }
        match self.trap_at {
            Some(TrapPoint::RequestHeaders) => trap(),
            Some(TrapPoint::Panic) => panic!("probe panic requested"),
            _ => {}
        }
        if self.reset == Some(StreamKind::Request) {
            raw::close_stream(StreamKind::Request as u32);
        }
        if !self.local_reply.from_response_phase {
            // The host answers with the local response whatever this callback
            // returns; `Continue` shows that the return value is ignored.
            self.send_local_reply();
        }
        if self.pause_and_resume_self {
            raw::continue_stream(StreamKind::Request as u32);
            return Action::Pause;
        }
        if self.pauses.contains(&PausePoint::RequestHeaders) {
            return self.pause(StreamKind::Request);
        }
        if call_in_flight || grpc_in_flight {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        log_lazy(LogLevel::Trace, || {
            format!(
                "probe request body {}: {body_size} bytes, end_of_stream={end_of_stream}",
                self.context_id
            )
        });
        if self.trap_at == Some(TrapPoint::RequestBody) {
            trap();
        }
        if self.echo_request_body {
            let body = self.get_http_request_body(0, body_size).unwrap_or_default();
            self.result("request-body", report::bytes(&body));
        }
        if let Some(replacement) = &self.replace_request_body {
            self.set_http_request_body(0, body_size, replacement.as_bytes());
        }
        if end_of_stream {
            for (name, value) in &self.added_request_trailers {
                self.add_http_request_trailer(name, value);
            }
        }
        if self.pauses.contains(&PausePoint::RequestBody) {
            return self.pause(StreamKind::Request);
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        log_lazy(LogLevel::Trace, || {
            format!(
                "probe request trailers {}: {num_trailers} trailers",
                self.context_id
            )
        });
        for (name, value) in &self.added_request_trailers {
            self.add_http_request_trailer(name, value);
        }
        if self.echo_request_trailers {
            let trailers = self
                .get_http_request_trailers()
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            self.result("request-trailers", trailers);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        log_lazy(LogLevel::Trace, || {
            format!(
                "probe response headers {}: {num_headers} headers, end_of_stream={end_of_stream}",
                self.context_id
            )
        });
        if self.trap_at == Some(TrapPoint::ResponseHeaders) {
            trap();
        }
        self.apply_response_edits();
        for name in std::mem::take(&mut self.late_request_header_reads) {
            let (status, value) = raw::header_value(0, &name);
            self.result(
                &format!("later-get-{name}"),
                report::status_and_value(status, value.as_deref()),
            );
        }
        for path in std::mem::take(&mut self.late_property_reads) {
            let (status, data) = raw::property(&property_path(&path));
            self.result(
                &format!("later-property-{path}"),
                report::status_and_value(status, data.as_deref()),
            );
        }
        for (name, value) in &self.results {
            self.add_http_response_header(name, value);
        }
        if self.reset == Some(StreamKind::Response) {
            raw::close_stream(StreamKind::Response as u32);
        }
        if self.local_reply.from_response_phase {
            self.send_local_reply();
        }
        if self.pauses.contains(&PausePoint::ResponseHeaders) {
            return self.pause(StreamKind::Response);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        log_lazy(LogLevel::Trace, || {
            format!(
                "probe response body {}: {body_size} bytes, end_of_stream={end_of_stream}",
                self.context_id
            )
        });
        if self.trap_at == Some(TrapPoint::ResponseBody) {
            trap();
        }
        if let Some(replacement) = &self.replace_response_body {
            self.set_http_response_body(0, body_size, replacement.as_bytes());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // Reads the response status only when the line will be kept, so the
        // pass-through path makes no call it does not need.
        log_lazy(LogLevel::Debug, || {
            let status = self
                .get_http_response_header(":status")
                .unwrap_or_else(|| "none".to_string());
            format!("probe on_log {} status={status}", self.context_id)
        });
        if self.trap_at == Some(TrapPoint::Log) {
            trap();
        }
    }
}
