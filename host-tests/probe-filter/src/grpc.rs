//! The probe's gRPC instructions: one call or one stream per request,
//! dispatched with the SDK once every instruction is read (so the SDK routes
//! its callbacks here), with the request paused until it ends.
//!
//! Each callback is logged at info level (`probe grpc <callback> <token>`)
//! and recorded; when the call or stream ends, the records become result
//! headers and the request resumes.

use std::time::Duration;

use proxy_wasm::traits::Context;
use proxy_wasm::types::LogLevel;

use crate::{log_lazy, raw, report};

/// What a call or stream is made of.
#[derive(Debug)]
pub(crate) struct GrpcPlan {
    /// `None`: a unary call; `Some`: a stream and what it sends.
    stream: Option<Vec<Vec<u8>>>,
    upstream: String,
    service: String,
    method: Option<String>,
    metadata: Vec<(String, Vec<u8>)>,
    message: Vec<u8>,
    timeout_ms: u64,
    end: Finish,
    echo_metadata: Vec<String>,
}

/// What the probe does once the call or stream is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Finish {
    /// A call: wait for its answer. A stream: send, then `proxy_grpc_close`.
    #[default]
    Default,
    /// Send with `end_stream` on the last message instead of closing.
    EndStream,
    /// `proxy_grpc_cancel` at once; the request goes on.
    Cancel,
    /// `proxy_grpc_close` at once (on a call: a cancel); the request goes on.
    Close,
    /// Leave the stream open (the server may still close it).
    Open,
    /// `proxy_grpc_cancel` from the root context on the next tick; the
    /// request stays paused.
    CancelOnTick,
}

/// The answer so far.
#[derive(Debug, Default)]
pub(crate) struct GrpcRecord {
    /// Callbacks in order: `initial`, `message`, `trailing`, `close`,
    /// `response`.
    events: Vec<&'static str>,
    messages: Vec<String>,
    results: Vec<(String, String)>,
}

fn hex(text: &str) -> Vec<u8> {
    let digits = text.trim().as_bytes();
    digits
        .chunks(2)
        .filter_map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

fn split_pair(value: &str) -> (String, Vec<u8>) {
    match value.split_once('=') {
        Some((name, value)) => (name.trim().to_string(), value.as_bytes().to_vec()),
        None => (value.trim().to_string(), Vec::new()),
    }
}

impl GrpcPlan {
    fn new(upstream: &str, stream: bool) -> GrpcPlan {
        GrpcPlan {
            stream: stream.then(Vec::new),
            upstream: upstream.trim().to_string(),
            service: "probe.Echo".to_string(),
            method: None,
            metadata: Vec::new(),
            message: Vec::new(),
            timeout_ms: 1000,
            end: Finish::Default,
            echo_metadata: Vec::new(),
        }
    }

    /// Carries out a `x-probe-grpc-…` instruction; answers whether it was
    /// one.
    pub(crate) fn instruction(plan: &mut Option<GrpcPlan>, instruction: &str, value: &str) -> bool {
        match instruction {
            "grpc-call" => *plan = Some(GrpcPlan::new(value, false)),
            "grpc-stream" => *plan = Some(GrpcPlan::new(value, true)),
            _ => {
                let Some(plan) = plan.as_mut() else {
                    return instruction.starts_with("grpc-");
                };
                match instruction {
                    "grpc-upstream-hex" => {
                        plan.upstream = String::from_utf8_lossy(&hex(value)).into_owned()
                    }
                    "grpc-service" => plan.service = value.trim().to_string(),
                    "grpc-method" => plan.method = Some(value.trim().to_string()),
                    "grpc-metadata" => plan.metadata.push(split_pair(value)),
                    "grpc-message" => plan.message = value.as_bytes().to_vec(),
                    "grpc-message-hex" => plan.message = hex(value),
                    "grpc-timeout-ms" => plan.timeout_ms = value.trim().parse().unwrap_or(1000),
                    "grpc-send" => {
                        if let Some(sends) = plan.stream.as_mut() {
                            sends.push(value.as_bytes().to_vec());
                        }
                    }
                    "grpc-end" => {
                        plan.end = match value.trim() {
                            "end-stream" => Finish::EndStream,
                            "cancel" => Finish::Cancel,
                            "close" => Finish::Close,
                            "open" => Finish::Open,
                            "cancel-on-tick" => Finish::CancelOnTick,
                            _ => Finish::Default,
                        }
                    }
                    "grpc-echo-metadata" => plan.echo_metadata.push(value.trim().to_string()),
                    _ => return instruction.starts_with("grpc-"),
                }
            }
        }
        true
    }

    /// Opens the call or stream; answers its results, and its token if the
    /// request must wait for it.
    pub(crate) fn dispatch(&self, context: &dyn Context) -> (Vec<(String, String)>, Option<u32>) {
        let metadata: Vec<(&str, &[u8])> = self
            .metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let mut results = Vec::new();
        let opened = match &self.stream {
            None => context.dispatch_grpc_call(
                &self.upstream,
                &self.service,
                self.method.as_deref().unwrap_or("Unary"),
                metadata,
                Some(&self.message),
                Duration::from_millis(self.timeout_ms),
            ),
            Some(_) => context.open_grpc_stream(
                &self.upstream,
                &self.service,
                self.method.as_deref().unwrap_or("Stream"),
                metadata,
            ),
        };
        let name = if self.stream.is_some() {
            "grpc-stream"
        } else {
            "grpc-call"
        };
        let token = match opened {
            Ok(token) => {
                results.push((name.to_string(), "0".to_string()));
                token
            }
            Err(status) => {
                results.push((name.to_string(), (status as u32).to_string()));
                return (results, None);
            }
        };
        log_lazy(LogLevel::Info, || format!("probe grpc opened {token}"));
        if let Some(sends) = &self.stream {
            let last = sends.len().saturating_sub(1);
            let statuses: Vec<String> = sends
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    let end_stream = self.end == Finish::EndStream && index == last;
                    raw::grpc_send_message(token, message, end_stream).to_string()
                })
                .collect();
            results.push(("grpc-send".to_string(), statuses.join(",")));
        }
        let (ended, waits) = match (self.end, self.stream.is_some()) {
            (Finish::Cancel, _) => (Some(raw::grpc_cancel(token)), false),
            (Finish::Close, _) => (Some(raw::grpc_close(token)), false),
            (Finish::Default, true) => (Some(raw::grpc_close(token)), true),
            _ => (None, true),
        };
        if let Some(status) = ended {
            results.push(("grpc-end".to_string(), status.to_string()));
        }
        (results, waits.then_some(token))
    }

    /// Whether the root context cancels the call on the next tick.
    pub(crate) fn cancels_on_tick(&self) -> bool {
        self.end == Finish::CancelOnTick
    }

    /// Reads the echoed names from the metadata map `map_type` (4 initial,
    /// 5 trailing).
    fn echo(&self, record: &mut GrpcRecord, which: &str, map_type: u32) {
        for name in &self.echo_metadata {
            let value = match raw::header_value(map_type, name) {
                (raw::OK, value) => report::bytes(&value.unwrap_or_default()),
                (status, _) => format!("status {status}"),
            };
            record.results.push((format!("grpc-{which}-{name}"), value));
        }
    }

    pub(crate) fn on_initial_metadata(&self, record: &mut GrpcRecord, token: u32, entries: u32) {
        log_lazy(LogLevel::Info, || {
            format!("probe grpc initial metadata {token}: {entries}")
        });
        record.events.push("initial");
        record
            .results
            .push(("grpc-initial-metadata".to_string(), entries.to_string()));
        self.echo(record, "initial", 4);
    }

    pub(crate) fn on_message(record: &mut GrpcRecord, token: u32, size: usize) {
        log_lazy(LogLevel::Info, || {
            format!("probe grpc message {token}: {size} bytes")
        });
        record.events.push("message");
        let (_, message) = raw::buffer_bytes(5, 0, size);
        record
            .messages
            .push(report::bytes(&message.unwrap_or_default()));
    }

    pub(crate) fn on_trailing_metadata(&self, record: &mut GrpcRecord, token: u32, entries: u32) {
        log_lazy(LogLevel::Info, || {
            format!("probe grpc trailing metadata {token}: {entries}")
        });
        record.events.push("trailing");
        record
            .results
            .push(("grpc-trailing-metadata".to_string(), entries.to_string()));
        self.echo(record, "trailing", 5);
    }

    /// The end of a call (`response`) or stream (`close`): the results to
    /// report.
    pub(crate) fn on_end(
        record: &mut GrpcRecord,
        event: &'static str,
        token: u32,
        status_code: u32,
        reply: Option<Vec<u8>>,
    ) -> Vec<(String, String)> {
        log_lazy(LogLevel::Info, || {
            format!("probe grpc {event} {token}: status {status_code}")
        });
        record.events.push(event);
        let (_, code, message) = raw::status();
        let mut results = std::mem::take(&mut record.results);
        results.push(("grpc-status".to_string(), status_code.to_string()));
        results.push((
            "grpc-get-status".to_string(),
            format!("{code}:{}", report::bytes(&message.unwrap_or_default())),
        ));
        if let Some(reply) = reply {
            results.push(("grpc-reply".to_string(), report::bytes(&reply)));
        }
        results.push(("grpc-messages".to_string(), record.messages.join("|")));
        results.push(("grpc-events".to_string(), record.events.join(",")));
        results
    }
}
