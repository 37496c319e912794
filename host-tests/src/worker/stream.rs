//! A stream's way through the filter: the request callbacks, the upstream's
//! response or a local response through the response callbacks, pauses and
//! resets, and the end of the stream.

use std::sync::mpsc::Sender;

use super::{StreamEvent, StreamId, StreamReport, Worker};
use crate::headers::{HeaderMap, Pairs};
use crate::host_calls::{HostCallCounting, HostCalls};
use crate::http::{
    ForwardedRequest, ForwardedResponse, HttpRequest, HttpResponse, LocalResponse, RequestOutcome,
    ResponseOutcome, StreamFailure,
};
use crate::module::FuelMetering;
use crate::options::HostFlavor;
use crate::state::{
    Access, DeferredAction, Direction, PendingLocalResponse, RequestFacts, StreamData,
};
use crate::vm::{Called, FilterAction, Trap, Vm};

/// Where a stream's callbacks stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Headers,
    Body,
    Trailers,
    Complete,
}

impl Step {
    fn next(self) -> Step {
        match self {
            Step::Headers => Step::Body,
            Step::Body => Step::Trailers,
            Step::Trailers | Step::Complete => Step::Complete,
        }
    }
}

/// Which call of the stream's owner waits for a response's outcome: the
/// request's (a local response sent while handling the request) or the
/// response's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    Request,
    Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Request(Step),
    RequestPaused(Step),
    AwaitingResponse,
    Response(Step, Waiter),
    ResponsePaused(Step, Waiter),
    Closed,
}

#[derive(Debug, Default)]
struct Flags {
    continue_request: bool,
    continue_response: bool,
    reset: bool,
    local_response: bool,
}

#[derive(Clone, Debug)]
enum Origin {
    Upstream {
        status: u16,
    },
    Local {
        status: u16,
        details: String,
        grpc_status: Option<i32>,
    },
}

/// Parts of a message not yet handed to the filter.
#[derive(Debug, Default)]
struct Pending {
    headers: Option<HeaderMap>,
    body: Option<Vec<u8>>,
    trailers: Option<HeaderMap>,
}

pub(super) struct StreamState {
    pub(super) vm_instance: u64,
    context_id: u32,
    context_created: bool,
    events: Sender<StreamEvent>,
    phase: Phase,
    flags: Flags,
    request: Pending,
    response: Pending,
    origin: Option<Origin>,
    /// The answer for a response that arrives after the stream closed.
    final_response: Option<ResponseOutcome>,
    failed: bool,
    fuel: u64,
    host_calls: HostCalls,
}

impl StreamState {
    fn send(&self, event: StreamEvent) {
        // The stream's owner may have gone; the event then has no reader.
        let _ = self.events.send(event);
    }

    fn send_to(&self, waiter: Waiter, request: RequestOutcome, response: ResponseOutcome) {
        match waiter {
            Waiter::Request => self.send(StreamEvent::Request(request)),
            Waiter::Response => self.send(StreamEvent::Response(response)),
        }
    }

    /// Fails the stream: whoever waits for it hears of the failure, and a
    /// response passed later gets it too.
    pub(super) fn fail(&mut self, failure: &StreamFailure) {
        if self.failed {
            return;
        }
        self.failed = true;
        match self.phase {
            Phase::Request(_) | Phase::RequestPaused(_) => {
                self.send(StreamEvent::Request(RequestOutcome::Failed(
                    failure.clone(),
                )));
            }
            Phase::Response(_, waiter) | Phase::ResponsePaused(_, waiter) => self.send_to(
                waiter,
                RequestOutcome::Failed(failure.clone()),
                ResponseOutcome::Failed(failure.clone()),
            ),
            Phase::AwaitingResponse => {
                self.final_response = Some(ResponseOutcome::Failed(failure.clone()));
            }
            Phase::Closed => {}
        }
        self.phase = Phase::Closed;
    }
}

impl Worker {
    pub(super) fn begin(
        &mut self,
        id: StreamId,
        request: HttpRequest,
        events: Sender<StreamEvent>,
    ) {
        self.ensure_vm();
        let facts = RequestFacts {
            source: request.source,
            source_address: request.source_address.clone(),
            destination: request.destination,
            protocol: request.protocol.clone(),
            start_ns: self.clock().now_ns(),
            body_size: request.body.len(),
        };
        let mut stream = StreamState {
            vm_instance: self.vm_instance,
            context_id: 0,
            context_created: false,
            events,
            phase: Phase::Request(Step::Headers),
            flags: Flags::default(),
            request: Pending {
                headers: Some(HeaderMap::from_request(
                    &request.headers,
                    &request.byte_headers,
                )),
                body: (!request.body.is_empty()).then_some(request.body),
                trailers: request.trailers.as_deref().map(HeaderMap::from_pairs),
            },
            response: Pending::default(),
            origin: None,
            final_response: None,
            failed: false,
            fuel: 0,
            host_calls: HostCalls::default(),
        };
        let Some(vm) = self.vm.as_mut() else {
            let reason = format!(
                "the filter VM could not be restarted: {}",
                self.vm_failure.as_deref().unwrap_or("unknown reason")
            );
            stream.fail(&self.failure(&reason));
            self.streams.insert(id, stream);
            return;
        };
        let context_id = vm.new_context_id();
        stream.context_id = context_id;
        vm.state()
            .streams
            .insert(context_id, StreamData::new(facts));
        self.streams.insert(id, stream);
        self.contexts.insert(context_id, id);
        let created = vm.context_create(context_id, Vm::ROOT_CONTEXT_ID);
        if self
            .after_call(id, created, "proxy_on_context_create")
            .is_some()
        {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.context_created = true;
            }
            self.drive_request(id);
        }
    }

    /// Books a call's fuel and deferred actions; on a trap, fails the VM.
    /// Answers the call's value, or `None` if the stream must stop here
    /// (trap, reset, local response).
    fn after_call<R>(
        &mut self,
        id: StreamId,
        result: Result<Called<R>, Trap>,
        callback: &'static str,
    ) -> Option<R> {
        match result {
            Err(trap) => {
                self.fail_vm(&trap, callback);
                None
            }
            Ok(called) => {
                self.book(id, called.fuel, called.host_calls.as_deref());
                self.apply_deferred(called.deferred, Some(id));
                if self.interrupt(id) {
                    None
                } else {
                    Some(called.value)
                }
            }
        }
    }

    /// Records the deferred actions on their streams; streams other than
    /// `current` are woken once the current work is done.
    pub(super) fn apply_deferred(
        &mut self,
        actions: Vec<DeferredAction>,
        current: Option<StreamId>,
    ) {
        for action in actions {
            let context_id = match action {
                DeferredAction::Continue { context_id, .. }
                | DeferredAction::Reset { context_id }
                | DeferredAction::LocalResponse { context_id } => context_id,
            };
            let Some(&id) = self.contexts.get(&context_id) else {
                continue;
            };
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            match action {
                DeferredAction::Continue {
                    direction: Direction::Request,
                    ..
                } => stream.flags.continue_request = true,
                DeferredAction::Continue {
                    direction: Direction::Response,
                    ..
                } => stream.flags.continue_response = true,
                DeferredAction::Reset { .. } => stream.flags.reset = true,
                DeferredAction::LocalResponse { .. } => stream.flags.local_response = true,
            }
            if Some(id) != current && !self.woken.contains(&id) {
                self.woken.push_back(id);
            }
        }
    }

    pub(super) fn process_woken(&mut self) {
        while let Some(id) = self.woken.pop_front() {
            if self.interrupt(id) {
                continue;
            }
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            match stream.phase {
                Phase::RequestPaused(step) if stream.flags.continue_request => {
                    stream.flags.continue_request = false;
                    stream.phase = Phase::Request(step);
                    self.drive_request(id);
                }
                Phase::ResponsePaused(step, waiter) if stream.flags.continue_response => {
                    stream.flags.continue_response = false;
                    stream.phase = Phase::Response(step, waiter);
                    self.drive_response(id);
                }
                _ => {
                    // Continuing a stream that is not paused does nothing.
                    stream.flags.continue_request = false;
                    stream.flags.continue_response = false;
                }
            }
        }
    }

    /// Carries out a reset or a local response the filter asked for. Answers
    /// whether the stream's callbacks must stop.
    fn interrupt(&mut self, id: StreamId) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return true;
        };
        if stream.flags.reset {
            stream.flags.reset = false;
            match stream.phase {
                Phase::Request(_) | Phase::RequestPaused(_) => {
                    stream.send(StreamEvent::Request(RequestOutcome::Reset));
                }
                Phase::Response(_, waiter) | Phase::ResponsePaused(_, waiter) => {
                    stream.send_to(waiter, RequestOutcome::Reset, ResponseOutcome::Reset);
                }
                Phase::AwaitingResponse => stream.final_response = Some(ResponseOutcome::Reset),
                Phase::Closed => return true,
            }
            stream.phase = Phase::Closed;
            return true;
        }
        if !stream.flags.local_response {
            return false;
        }
        stream.flags.local_response = false;
        let context_id = stream.context_id;
        let phase = stream.phase;
        let Some(local) = self
            .vm
            .as_mut()
            .and_then(|vm| vm.state().streams.get_mut(&context_id))
            .and_then(|data| data.local_response.take())
        else {
            return false;
        };
        match phase {
            Phase::Request(_) | Phase::RequestPaused(_) => {
                self.start_local_response(id, local, Waiter::Request);
            }
            Phase::AwaitingResponse => {
                let response = self.local_response_as_sent(&local);
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.final_response = Some(ResponseOutcome::LocalResponse(response));
                    stream.phase = Phase::Closed;
                }
            }
            Phase::Response(_, waiter) | Phase::ResponsePaused(_, waiter) => {
                // The response is already in the filter's hands: the local
                // response replaces it without another pass through the filter.
                let response = self.local_response_as_sent(&local);
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.send_to(
                        waiter,
                        RequestOutcome::LocalResponse(response.clone()),
                        ResponseOutcome::LocalResponse(response),
                    );
                    stream.phase = Phase::Closed;
                }
            }
            Phase::Closed => {}
        }
        true
    }

    /// The headers and body a local response goes out with: the filter's
    /// headers, then for a body `content-length` and (under Envoy)
    /// `content-type: text/plain`; under ngx_wasm_module a body ends with a
    /// newline.
    fn local_response_parts(&self, local: &PendingLocalResponse) -> (Pairs, Vec<u8>) {
        let mut body = local.body.clone();
        let mut headers = local.headers.clone();
        let has = |headers: &[(Vec<u8>, Vec<u8>)], name: &[u8]| {
            headers
                .iter()
                .any(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        };
        if self.env().flavor == HostFlavor::NgxWasmModule && !body.is_empty() {
            body.push(b'\n');
        }
        if !body.is_empty() {
            if !has(&headers, b"content-length") {
                headers.push((
                    b"content-length".to_vec(),
                    body.len().to_string().into_bytes(),
                ));
            }
            if self.env().flavor == HostFlavor::Envoy && !has(&headers, b"content-type") {
                headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
            }
        }
        (headers, body)
    }

    fn local_response_as_sent(&self, local: &PendingLocalResponse) -> LocalResponse {
        let (headers, body) = self.local_response_parts(local);
        let mut map = HeaderMap::default();
        map.set_all(headers);
        LocalResponse {
            status: local.status,
            headers: map.to_pairs(),
            body,
            details: local.details.clone(),
            grpc_status: local.grpc_status,
        }
    }

    /// A local response sent while handling the request goes through the
    /// filter's response callbacks, as Envoy encodes it through the filter
    /// chain.
    fn start_local_response(&mut self, id: StreamId, local: PendingLocalResponse, waiter: Waiter) {
        let (headers, body) = self.local_response_parts(&local);
        let mut map = HeaderMap::default();
        map.add(b":status", local.status.to_string().as_bytes());
        for (name, value) in &headers {
            map.add(name, value);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let context_id = stream.context_id;
        stream.origin = Some(Origin::Local {
            status: local.status,
            details: local.details.clone(),
            grpc_status: local.grpc_status,
        });
        stream.response = Pending {
            headers: Some(map),
            body: (!body.is_empty()).then_some(body),
            trailers: None,
        };
        stream.phase = Phase::Response(Step::Headers, waiter);
        if let Some(data) = self
            .vm
            .as_mut()
            .and_then(|vm| vm.state().streams.get_mut(&context_id))
        {
            data.response_code_details = Some(local.details);
        }
        self.drive_response(id);
    }

    /// Fails a stream whose data is no longer in the VM. The worker keeps
    /// streams and VM data in step, so this does not happen; if it did, the
    /// stream's owner must hear of it rather than wait forever.
    fn lose(&mut self, id: StreamId) {
        let failure = self.failure("the host lost the stream's state in its VM");
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.fail(&failure);
        }
    }

    fn stream_data(&mut self, context_id: u32) -> Option<&mut StreamData> {
        self.vm
            .as_mut()
            .and_then(|vm| vm.state().streams.get_mut(&context_id))
    }

    /// Runs the request callbacks from where the stream stands, until the
    /// request is forwarded, paused, answered or failed.
    fn drive_request(&mut self, id: StreamId) {
        loop {
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            let Phase::Request(step) = stream.phase else {
                return;
            };
            stream.flags.continue_request = false;
            let context_id = stream.context_id;
            let result = match step {
                Step::Headers => {
                    let headers = stream.request.headers.take().unwrap_or_default();
                    let count = headers.len();
                    let end_of_stream =
                        stream.request.body.is_none() && stream.request.trailers.is_none();
                    let Some(data) = self.stream_data(context_id) else {
                        self.lose(id);
                        return;
                    };
                    data.request_headers = Some(headers);
                    data.access.request_headers = true;
                    self.vm.as_mut().map(|vm| {
                        (
                            vm.request_headers(context_id, count, end_of_stream),
                            "proxy_on_request_headers",
                        )
                    })
                }
                Step::Body => match stream.request.body.take() {
                    None => None,
                    Some(body) => {
                        let size = body.len();
                        let end_of_stream = stream.request.trailers.is_none();
                        let Some(data) = self.stream_data(context_id) else {
                            self.lose(id);
                            return;
                        };
                        data.request_body = Some(body);
                        data.access.request_body = true;
                        self.vm.as_mut().map(|vm| {
                            (
                                vm.request_body(context_id, size, end_of_stream),
                                "proxy_on_request_body",
                            )
                        })
                    }
                },
                Step::Trailers => match stream.request.trailers.take() {
                    None => None,
                    Some(trailers) => {
                        let count = trailers.len();
                        let Some(data) = self.stream_data(context_id) else {
                            self.lose(id);
                            return;
                        };
                        data.request_trailers = Some(trailers);
                        data.access.request_trailers = true;
                        self.vm.as_mut().map(|vm| {
                            (
                                vm.request_trailers(context_id, count),
                                "proxy_on_request_trailers",
                            )
                        })
                    }
                },
                Step::Complete => {
                    self.forward_request(id);
                    return;
                }
            };
            let action = match result {
                None => FilterAction::Continue,
                Some((result, callback)) => match self.after_call(id, result, callback) {
                    Some(action) => action,
                    None => return,
                },
            };
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            if action == FilterAction::Pause && !stream.flags.continue_request {
                stream.phase = Phase::RequestPaused(step.next());
                stream.send(StreamEvent::Request(RequestOutcome::Paused));
                return;
            }
            stream.phase = Phase::Request(step.next());
            // Once a callback continues, the filter lets go of that part.
            if let Some(data) = self.stream_data(context_id) {
                data.access.release(Direction::Request);
            }
        }
    }

    /// The request leaves the filter as the filter left it.
    fn forward_request(&mut self, id: StreamId) {
        let Some(context_id) = self.streams.get(&id).map(|stream| stream.context_id) else {
            return;
        };
        let Some(data) = self.stream_data(context_id) else {
            self.lose(id);
            return;
        };
        let forwarded = ForwardedRequest {
            headers: data
                .request_headers
                .as_ref()
                .map(HeaderMap::to_pairs)
                .unwrap_or_default(),
            body: data.request_body.clone().unwrap_or_default(),
            trailers: data.request_trailers.as_ref().map(HeaderMap::to_pairs),
        };
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.phase = Phase::AwaitingResponse;
            stream.send(StreamEvent::Request(RequestOutcome::Forward(forwarded)));
        }
    }

    pub(super) fn respond(&mut self, id: StreamId, response: HttpResponse) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.phase != Phase::AwaitingResponse {
            let answer = stream
                .final_response
                .clone()
                .unwrap_or(ResponseOutcome::Reset);
            stream.send(StreamEvent::Response(answer));
            return;
        }
        let mut headers = HeaderMap::default();
        headers.add(b":status", response.status.to_string().as_bytes());
        for (name, value) in &response.headers {
            headers.add(name.as_bytes(), value.as_bytes());
        }
        stream.origin = Some(Origin::Upstream {
            status: response.status,
        });
        stream.response = Pending {
            headers: Some(headers),
            body: (!response.body.is_empty()).then_some(response.body),
            trailers: response.trailers.as_deref().map(HeaderMap::from_pairs),
        };
        stream.phase = Phase::Response(Step::Headers, Waiter::Response);
        let context_id = stream.context_id;
        if let Some(data) = self.stream_data(context_id) {
            // Envoy's details for a response that came from the upstream.
            data.response_code_details = Some("via_upstream".to_string());
        }
        self.drive_response(id);
    }

    /// The upstream resets the stream before its response starts: the proxy answers the
    /// client itself, and that answer goes through the filter's response callbacks as any
    /// local reply (Envoy's router sends a 503 with details
    /// `upstream_reset_before_response_started{remote_reset}`; NGINX's upstream module a 502).
    /// The stream then ends as the owner finishes it.
    pub(super) fn upstream_reset(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.phase != Phase::AwaitingResponse {
            let answer = stream
                .final_response
                .clone()
                .unwrap_or(ResponseOutcome::Reset);
            stream.send(StreamEvent::Response(answer));
            return;
        }
        let reply = match self.env().flavor {
            HostFlavor::Envoy => PendingLocalResponse {
                status: 503,
                details: "upstream_reset_before_response_started{remote_reset}".to_string(),
                body: b"upstream connect error or disconnect/reset before headers. reset reason: \
                        remote reset"
                    .to_vec(),
                headers: Vec::new(),
                grpc_status: None,
            },
            HostFlavor::NgxWasmModule => PendingLocalResponse {
                status: 502,
                details: String::new(),
                body: b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                        <center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>"
                    .to_vec(),
                headers: vec![(b"content-type".to_vec(), b"text/html".to_vec())],
                grpc_status: None,
            },
        };
        self.start_local_response(id, reply, Waiter::Response);
    }

    /// Runs the response callbacks from where the stream stands.
    fn drive_response(&mut self, id: StreamId) {
        loop {
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            let Phase::Response(step, waiter) = stream.phase else {
                return;
            };
            stream.flags.continue_response = false;
            let context_id = stream.context_id;
            let result = match step {
                Step::Headers => {
                    let headers = stream.response.headers.take().unwrap_or_default();
                    let count = headers.len();
                    let end_of_stream =
                        stream.response.body.is_none() && stream.response.trailers.is_none();
                    let Some(data) = self.stream_data(context_id) else {
                        self.lose(id);
                        return;
                    };
                    data.response_headers = Some(headers);
                    data.access.response_headers = true;
                    self.vm.as_mut().map(|vm| {
                        (
                            vm.response_headers(context_id, count, end_of_stream),
                            "proxy_on_response_headers",
                        )
                    })
                }
                Step::Body => match stream.response.body.take() {
                    None => None,
                    Some(body) => {
                        let size = body.len();
                        let end_of_stream = stream.response.trailers.is_none();
                        let Some(data) = self.stream_data(context_id) else {
                            self.lose(id);
                            return;
                        };
                        data.response_body = Some(body);
                        data.access.response_body = true;
                        self.vm.as_mut().map(|vm| {
                            (
                                vm.response_body(context_id, size, end_of_stream),
                                "proxy_on_response_body",
                            )
                        })
                    }
                },
                Step::Trailers => match stream.response.trailers.take() {
                    None => None,
                    Some(trailers) => {
                        let count = trailers.len();
                        let Some(data) = self.stream_data(context_id) else {
                            self.lose(id);
                            return;
                        };
                        data.response_trailers = Some(trailers);
                        data.access.response_trailers = true;
                        self.vm.as_mut().map(|vm| {
                            (
                                vm.response_trailers(context_id, count),
                                "proxy_on_response_trailers",
                            )
                        })
                    }
                },
                Step::Complete => {
                    self.deliver_response(id, waiter);
                    return;
                }
            };
            let action = match result {
                None => FilterAction::Continue,
                Some((result, callback)) => match self.after_call(id, result, callback) {
                    Some(action) => action,
                    None => return,
                },
            };
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            if action == FilterAction::Pause && !stream.flags.continue_response {
                stream.phase = Phase::ResponsePaused(step.next(), waiter);
                stream.send_to(waiter, RequestOutcome::Paused, ResponseOutcome::Paused);
                return;
            }
            stream.phase = Phase::Response(step.next(), waiter);
            if let Some(data) = self.stream_data(context_id) {
                data.access.release(Direction::Response);
            }
        }
    }

    /// The response leaves the filter as the filter left it.
    fn deliver_response(&mut self, id: StreamId, waiter: Waiter) {
        let Some(context_id) = self.streams.get(&id).map(|stream| stream.context_id) else {
            return;
        };
        let Some(data) = self.stream_data(context_id) else {
            self.lose(id);
            return;
        };
        let pairs = data
            .response_headers
            .as_ref()
            .map(HeaderMap::to_pairs)
            .unwrap_or_default();
        let body = data.response_body.clone().unwrap_or_default();
        let trailers = data.response_trailers.as_ref().map(HeaderMap::to_pairs);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let status_header = pairs
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse::<u16>().ok());
        let headers: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(name, _)| !name.starts_with(':'))
            .collect();
        stream.phase = Phase::Closed;
        match stream.origin.clone() {
            Some(Origin::Local {
                status,
                details,
                grpc_status,
            }) => {
                let response = LocalResponse {
                    status: status_header.unwrap_or(status),
                    headers,
                    body,
                    details,
                    grpc_status,
                };
                stream.send_to(
                    waiter,
                    RequestOutcome::LocalResponse(response.clone()),
                    ResponseOutcome::LocalResponse(response),
                );
            }
            origin => {
                // An upstream response: only `Stream::response` waits for one.
                let status = match origin {
                    Some(Origin::Upstream { status }) => status,
                    _ => 502,
                };
                stream.send(StreamEvent::Response(ResponseOutcome::Forward(
                    ForwardedResponse {
                        status: status_header.unwrap_or(status),
                        headers,
                        body,
                        trailers,
                    },
                )));
            }
        }
    }

    /// ngx_wasm_module resumes a stream paused in its request once the last
    /// of its HTTP calls has been answered (unless the filter answered or
    /// reset it meanwhile, which the woken stream carries out first).
    pub(super) fn continue_after_calls(&mut self, context_id: u32) {
        let Some(&id) = self.contexts.get(&context_id) else {
            return;
        };
        let pending = self
            .vm
            .as_mut()
            .is_some_and(|vm| vm.state().calls.pending_from(context_id));
        if pending {
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if matches!(stream.phase, Phase::RequestPaused(_)) {
            stream.flags.continue_request = true;
            if !self.woken.contains(&id) {
                self.woken.push_back(id);
            }
        }
    }

    /// Ends a stream: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete` (if
    /// its VM is still the one running), then forgets it.
    pub(super) fn finish(&mut self, id: StreamId) -> StreamReport {
        let metered = self.config.module.metering() == FuelMetering::On;
        let Some(stream) = self.streams.get_mut(&id) else {
            return StreamReport::default();
        };
        stream.phase = Phase::Closed;
        let context_id = stream.context_id;
        let same_vm = stream.vm_instance == self.vm_instance;
        if self.env().flavor == HostFlavor::NgxWasmModule
            && same_vm
            && let Some(vm) = self.vm.as_mut()
        {
            // ngx_wasm_module's calls live with the request: they end with it.
            // Envoy's belong to the root context and carry on.
            vm.state().calls.cancel_from(context_id);
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return StreamReport::default();
        };
        let live = stream.context_created
            && !stream.failed
            && stream.vm_instance == self.vm_instance
            && self.vm.is_some();
        let mut trap = None;
        if live {
            // Envoy's order: the access log (`proxy_on_log`, with the maps of
            // the access-log phase), then the filter's destruction
            // (`proxy_on_done`, `proxy_on_delete`).
            for callback in ["proxy_on_log", "proxy_on_done", "proxy_on_delete"] {
                let log_phase = callback == "proxy_on_log";
                if let Some(data) = self.stream_data(context_id) {
                    data.access = Access::default();
                    data.log_phase = log_phase;
                }
                let Some(vm) = self.vm.as_mut() else {
                    break;
                };
                let result = match callback {
                    "proxy_on_log" => vm.log(context_id),
                    // Envoy ignores the answer of an HTTP context's on_done.
                    "proxy_on_done" => vm.done(context_id).map(Called::discard),
                    _ => vm.delete(context_id),
                };
                match result {
                    Ok(called) => {
                        self.book(id, called.fuel, called.host_calls.as_deref());
                        self.apply_deferred(called.deferred, Some(id));
                    }
                    Err(failed) => {
                        trap = Some(failed.message.clone());
                        self.fail_vm(&failed, callback);
                        break;
                    }
                }
            }
            // After a trap, the stream's VM (and its data) is gone already.
            let same_vm = self
                .streams
                .get(&id)
                .is_some_and(|stream| stream.vm_instance == self.vm_instance);
            if same_vm && let Some(vm) = self.vm.as_mut() {
                vm.state().streams.remove(&context_id);
                self.contexts.remove(&context_id);
            }
        }
        let counting = self.config.module.host_call_counting() == HostCallCounting::On;
        let (fuel, host_calls) = self
            .streams
            .remove(&id)
            .map_or((0, HostCalls::default()), |stream| {
                (stream.fuel, stream.host_calls)
            });
        StreamReport {
            fuel_consumed: metered.then_some(fuel),
            host_calls: counting.then_some(host_calls),
            trap,
        }
    }

    /// Adds a call's fuel and host calls to its stream.
    pub(super) fn book(&mut self, id: StreamId, fuel: u64, host_calls: Option<&[u64]>) {
        let names = match host_calls {
            Some(_) => self.vm.as_ref().and_then(Vm::host_call_names),
            None => None,
        };
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.fuel = stream.fuel.saturating_add(fuel);
        if let (Some(names), Some(counts)) = (names, host_calls) {
            stream.host_calls.add(&names, counts);
        }
    }
}
