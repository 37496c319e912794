//! The proxy: worker threads running the filter, and the streams passed
//! through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::HostError;
use crate::http::{
    ClientResponse, ForwardedRequest, HttpRequest, HttpResponse, RequestOutcome, ResponseOutcome,
};
use crate::logs::LogSink;
use crate::metrics::Metrics;
use crate::options::{HostFlavor, ProxyOptions};
use crate::outbound::CallEngine;
use crate::shared_data::{SharedData, SharedDataNamespace};
use crate::state::ProxyEnv;
use crate::worker::{self, Command, StreamEvent, StreamId, StreamReport, TickReport, WorkerConfig};

struct WorkerHandle {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// A proxy running a filter on `workers` threads, one VM each, sharing one
/// shared-data store, metrics registry, log sink and clock.
///
/// `Proxy` is `Send + Sync`: share it (in an `Arc`) between the threads or
/// tasks that handle connections. Its calls block while the worker runs the
/// filter; from async code, call them through `spawn_blocking`.
///
/// ```no_run
/// use sluice_host::{FilterModule, HttpRequest, HttpResponse, Proxy, ProxyOptions};
///
/// let module = FilterModule::from_file("filter.wasm")?;
/// let proxy = Proxy::start(ProxyOptions::new(module).plugin_config(r#"{"rules": []}"#))?;
/// let exchange = proxy.exchange(proxy.next_worker(), HttpRequest::get("/"), |_forwarded| {
///     HttpResponse::new(200).body("hello")
/// })?;
/// println!("the client gets {:?}", exchange.client.status());
/// # Ok::<(), sluice_host::HostError>(())
/// ```
pub struct Proxy {
    workers: Vec<WorkerHandle>,
    next_stream: AtomicU64,
    next_worker: AtomicUsize,
    vm_id: String,
    shared_data: SharedData,
    metrics: Metrics,
    logs: LogSink,
    clock: Clock,
    pause_timeout: Duration,
    /// What the proxy was started with, for [`Proxy::reload`].
    options: ProxyOptions,
}

impl Proxy {
    /// Starts the workers; each instantiates the filter and starts it
    /// (`_initialize`, `proxy_on_context_create`, `proxy_on_vm_start`,
    /// `proxy_on_configure`). Fails if any VM fails to start, with the
    /// filter's log lines when it rejected its configuration.
    pub fn start(options: ProxyOptions) -> Result<Proxy, HostError> {
        if options.workers == 0 {
            return Err(HostError::NoWorkers);
        }
        let started_with = options.clone();
        let env = Arc::new(ProxyEnv {
            flavor: options.flavor,
            vm_id: options.vm_id.clone(),
            root_id: options.root_id,
            plugin_name: options.plugin_name,
            plugin_config: options.plugin_config,
            vm_config: options.vm_config,
            node: options.node,
            log_level: options.log_level,
            shared_data: options.shared_data.clone(),
            metrics: options.metrics.clone(),
            logs: options.logs.clone(),
            clock: options.clock.clone(),
            calls: CallEngine::new(options.clusters, options.call_limits),
        });
        let vm_numbers = Arc::new(AtomicU64::new(0));
        let mut proxy = Proxy {
            workers: Vec::with_capacity(options.workers),
            next_stream: AtomicU64::new(1),
            next_worker: AtomicUsize::new(0),
            vm_id: options.vm_id,
            shared_data: options.shared_data,
            metrics: options.metrics,
            logs: options.logs,
            clock: options.clock,
            pause_timeout: options.pause_timeout,
            options: started_with,
        };
        let mut readiness = Vec::with_capacity(options.workers);
        for index in 0..options.workers {
            let (commands, receiver) = mpsc::channel();
            let (ready, ready_receiver) = mpsc::channel();
            let config = WorkerConfig {
                index,
                module: options.module.clone(),
                env: Arc::clone(&env),
                fuel_per_callback: options.fuel_per_callback,
                vm_numbers: Arc::clone(&vm_numbers),
                commands: commands.clone(),
            };
            // On an error, dropping `proxy` stops the workers already started.
            let thread = worker::spawn(config, receiver, ready).map_err(HostError::Spawn)?;
            proxy.workers.push(WorkerHandle {
                commands,
                thread: Some(thread),
            });
            readiness.push(ready_receiver);
        }
        for (worker, ready) in readiness.into_iter().enumerate() {
            match ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(HostError::WorkerStopped { worker }),
            }
        }
        let senders: Vec<Sender<Command>> = proxy
            .workers
            .iter()
            .map(|handle| handle.commands.clone())
            .collect();
        proxy.clock.subscribe(Box::new(move || {
            // Every worker hears of the move; the listener stays while any of
            // them is still running.
            let mut running = false;
            for sender in &senders {
                running |= sender.send(Command::ClockMoved).is_ok();
            }
            running
        }));
        Ok(proxy)
    }

    /// Reloads the proxy with a new plugin configuration: new VMs (started
    /// and configured like the first ones) replace this proxy's, as a
    /// configuration change does. What becomes of shared data is the host's:
    ///
    /// - Envoy keeps a `vm_id`'s shared data while any VM of it lives, and
    ///   starts the new VMs before the old ones go: the counts carry over.
    /// - ngx_wasm_module maps a fresh `shm_kv` zone on every `nginx -s
    ///   reload` (`noreuse = 1`, a TODO in its `ngx_wasm_directives.c`): the
    ///   new workers start from empty shared data, of the same size.
    ///
    /// The clock, metrics and logs carry over. If the new VMs fail to start,
    /// the error is returned and this proxy is gone (as NGINX is left without
    /// workers when every new one fails `on_configure`).
    pub fn reload(self, plugin_config: impl Into<Vec<u8>>) -> Result<Proxy, HostError> {
        let mut options = self.options.clone();
        options.plugin_config = plugin_config.into();
        if options.flavor == HostFlavor::NgxWasmModule {
            options.shared_data = self.shared_data.fresh();
        }
        let reloaded = Proxy::start(options);
        drop(self);
        reloaded
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The next worker in round-robin order.
    pub fn next_worker(&self) -> usize {
        self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len().max(1)
    }

    fn commands(&self, worker: usize) -> Result<&Sender<Command>, HostError> {
        self.workers
            .get(worker)
            .map(|handle| &handle.commands)
            .ok_or(HostError::NoSuchWorker {
                worker,
                workers: self.workers.len(),
            })
    }

    /// Passes a request to the filter on `worker`: creates the stream's
    /// context and runs the request callbacks. Answers the stream, and what
    /// became of the request ([`RequestOutcome::Paused`] if the filter paused
    /// it: see [`Stream::wait_request`]).
    pub fn begin(
        &self,
        worker: usize,
        request: HttpRequest,
    ) -> Result<(Stream, RequestOutcome), HostError> {
        let commands = self.commands(worker)?.clone();
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = mpsc::channel();
        commands
            .send(Command::Begin {
                stream: id,
                request,
                events,
            })
            .map_err(|_| HostError::WorkerStopped { worker })?;
        let mut stream = Stream {
            worker,
            id,
            commands,
            events: receiver,
            state: StreamState::RequestPaused,
            finished: false,
        };
        let outcome = stream.next_request_event(None)?;
        Ok((stream, outcome))
    }

    /// A whole exchange: the request through the filter, `upstream` to answer
    /// it if the filter forwards it, the response back through the filter,
    /// and the end of the stream. A paused stream is waited for up to the
    /// `pause_timeout` of the options.
    pub fn exchange(
        &self,
        worker: usize,
        request: HttpRequest,
        upstream: impl FnOnce(&ForwardedRequest) -> HttpResponse,
    ) -> Result<Exchange, HostError> {
        let (mut stream, mut request_outcome) = self.begin(worker, request)?;
        if request_outcome == RequestOutcome::Paused {
            request_outcome = stream.wait_request(self.pause_timeout)?;
            if request_outcome == RequestOutcome::Paused {
                stream.finish()?;
                return Err(HostError::PauseTimedOut {
                    phase: "request",
                    waited: self.pause_timeout,
                });
            }
        }
        let response_outcome = match &request_outcome {
            RequestOutcome::Forward(forwarded) => {
                let mut outcome = stream.response(upstream(forwarded))?;
                if outcome == ResponseOutcome::Paused {
                    outcome = stream.wait_response(self.pause_timeout)?;
                    if outcome == ResponseOutcome::Paused {
                        stream.finish()?;
                        return Err(HostError::PauseTimedOut {
                            phase: "response",
                            waited: self.pause_timeout,
                        });
                    }
                }
                Some(outcome)
            }
            _ => None,
        };
        let client = client_response(&request_outcome, response_outcome.as_ref());
        let report = stream.finish()?;
        Ok(Exchange {
            request: request_outcome,
            response: response_outcome,
            client,
            report,
        })
    }

    /// Calls `proxy_on_tick` on `worker`'s root context now (if the filter
    /// set a tick period); answers whether it did. Streams the tick resumes
    /// are driven before this returns.
    pub fn tick(&self, worker: usize) -> Result<bool, HostError> {
        self.ask(worker, |delivered| Command::Tick { delivered })
    }

    /// Sends `worker` the command `make` builds around a reply channel, and waits for the
    /// reply.
    fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(mpsc::Sender<T>) -> Command,
    ) -> Result<T, HostError> {
        let (reply, receiver) = mpsc::channel();
        self.commands(worker)?
            .send(make(reply))
            .map_err(|_| HostError::WorkerStopped { worker })?;
        receiver
            .recv()
            .map_err(|_| HostError::WorkerStopped { worker })
    }

    /// Waits until every worker has handled what it was sent before (a move
    /// of the fake clock included) and fired the ticks that made due, and
    /// has driven the streams those ticks resumed. Unlike [`Proxy::tick`], it
    /// calls no tick that is not due.
    pub fn settle(&self) -> Result<(), HostError> {
        for worker in 0..self.workers.len() {
            self.ask(worker, |done| Command::Settle { done })?;
        }
        Ok(())
    }

    /// What `worker`'s ticks have cost since it started: the count, fuel and host calls of
    /// every `proxy_on_tick` (none of which a [`StreamReport`] carries), for weighing the
    /// work ticks do for streams.
    pub fn tick_report(&self, worker: usize) -> Result<TickReport, HostError> {
        self.ask(worker, |report| Command::TickReport { report })
    }

    /// Ticks every worker; answers how many ticked.
    pub fn tick_all(&self) -> Result<usize, HostError> {
        let mut ticked = 0;
        for worker in 0..self.workers.len() {
            if self.tick(worker)? {
                ticked += 1;
            }
        }
        Ok(ticked)
    }

    /// The shared data of this proxy's `vm_id`.
    pub fn shared_data(&self) -> SharedDataNamespace {
        self.shared_data.namespace(&self.vm_id)
    }

    /// The whole shared-data store (to inject faults, or share it).
    pub fn shared_data_store(&self) -> &SharedData {
        &self.shared_data
    }

    /// The metrics the filter defined, by name.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The log lines of the filter and of the host about it.
    pub fn logs(&self) -> &LogSink {
        &self.logs
    }

    /// The clock the filter sees.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for handle in &self.workers {
            let _ = handle.commands.send(Command::Shutdown);
        }
        for handle in &mut self.workers {
            if let Some(thread) = handle.thread.take() {
                // A worker that panicked has nothing left to clean up.
                let _ = thread.join();
            }
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("workers", &self.workers.len())
            .field("vm_id", &self.vm_id)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn client_response(request: &RequestOutcome, response: Option<&ResponseOutcome>) -> ClientResponse {
    let local = |local: &crate::http::LocalResponse| ClientResponse::Response {
        status: local.status,
        headers: local.headers.clone(),
        body: local.body.clone(),
        trailers: None,
    };
    let failed = |status: u16| ClientResponse::Response {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        trailers: None,
    };
    match (request, response) {
        (RequestOutcome::LocalResponse(response), _) => local(response),
        (RequestOutcome::Failed(failure), _) => failed(failure.status),
        (_, Some(ResponseOutcome::Forward(response))) => ClientResponse::Response {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.clone(),
            trailers: response.trailers.clone(),
        },
        (_, Some(ResponseOutcome::LocalResponse(response))) => local(response),
        (_, Some(ResponseOutcome::Failed(failure))) => failed(failure.status),
        _ => ClientResponse::Reset,
    }
}

/// A whole exchange through the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// What became of the request.
    pub request: RequestOutcome,
    /// What became of the upstream's response, if the request was forwarded.
    pub response: Option<ResponseOutcome>,
    /// What the client gets.
    pub client: ClientResponse,
    pub report: StreamReport,
}

impl Exchange {
    /// The request as the upstream received it, if it was forwarded.
    pub fn forwarded(&self) -> Option<&ForwardedRequest> {
        self.request.forwarded()
    }

    /// The status the client gets (`None` for a reset).
    pub fn status(&self) -> Option<u16> {
        self.client.status()
    }

    /// A header of the response the client gets.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.client.header(name)
    }
}

/// Where a stream stands, from its owner's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    RequestPaused,
    Forwarded,
    ResponsePaused,
    Ended,
}

impl StreamState {
    fn describe(self) -> &'static str {
        match self {
            StreamState::RequestPaused => "has its request paused",
            StreamState::Forwarded => "has its request forwarded and waits for a response",
            StreamState::ResponsePaused => "has its response paused",
            StreamState::Ended => "has its answer already",
        }
    }
}

/// One HTTP stream through a filter, begun by [`Proxy::begin`].
///
/// Dropping a stream ends it like [`Stream::finish`] (the filter's
/// `proxy_on_log`, `proxy_on_done` and `proxy_on_delete` run before the drop
/// returns).
pub struct Stream {
    worker: usize,
    id: StreamId,
    commands: Sender<Command>,
    events: Receiver<StreamEvent>,
    state: StreamState,
    finished: bool,
}

impl Stream {
    /// The worker whose VM runs this stream.
    pub fn worker(&self) -> usize {
        self.worker
    }

    fn stopped(&self) -> HostError {
        HostError::WorkerStopped {
            worker: self.worker,
        }
    }

    fn receive(&self, timeout: Option<Duration>) -> Result<Option<StreamEvent>, HostError> {
        match timeout {
            None => self.events.recv().map(Some).map_err(|_| self.stopped()),
            Some(timeout) => match self.events.recv_timeout(timeout) {
                Ok(event) => Ok(Some(event)),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Disconnected) => Err(self.stopped()),
            },
        }
    }

    fn next_request_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<RequestOutcome, HostError> {
        loop {
            match self.receive(timeout)? {
                None => return Ok(RequestOutcome::Paused),
                Some(StreamEvent::Request(outcome)) => {
                    self.state = match outcome {
                        RequestOutcome::Paused => StreamState::RequestPaused,
                        RequestOutcome::Forward(_) => StreamState::Forwarded,
                        _ => StreamState::Ended,
                    };
                    return Ok(outcome);
                }
                // A response event cannot precede the request's outcome.
                Some(StreamEvent::Response(_)) => {}
            }
        }
    }

    fn next_response_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<ResponseOutcome, HostError> {
        loop {
            match self.receive(timeout)? {
                None => return Ok(ResponseOutcome::Paused),
                Some(StreamEvent::Response(outcome)) => {
                    self.state = match outcome {
                        ResponseOutcome::Paused => StreamState::ResponsePaused,
                        _ => StreamState::Ended,
                    };
                    return Ok(outcome);
                }
                Some(StreamEvent::Request(_)) => {}
            }
        }
    }

    /// Waits up to `timeout` for the filter to resume a paused request (from
    /// a tick, say); answers [`RequestOutcome::Paused`] if it did not.
    pub fn wait_request(&mut self, timeout: Duration) -> Result<RequestOutcome, HostError> {
        if self.state != StreamState::RequestPaused {
            return Err(HostError::InvalidStreamState {
                operation: "wait for the request to resume",
                state: self.state.describe(),
            });
        }
        self.next_request_event(Some(timeout))
    }

    /// Passes the upstream's response through the filter's response
    /// callbacks. Only after the request was forwarded.
    pub fn response(&mut self, response: HttpResponse) -> Result<ResponseOutcome, HostError> {
        if self.state != StreamState::Forwarded {
            return Err(HostError::InvalidStreamState {
                operation: "pass a response",
                state: self.state.describe(),
            });
        }
        self.commands
            .send(Command::Respond {
                stream: self.id,
                response,
            })
            .map_err(|_| self.stopped())?;
        self.next_response_event(None)
    }

    /// The upstream resets the stream before it responds (only after the
    /// request was forwarded): the proxy's own reply (Envoy: 503 with details
    /// `upstream_reset_before_response_started{remote_reset}`;
    /// ngx_wasm_module: 502) passes through the filter's response callbacks,
    /// as a local reply does. End the stream with [`Stream::finish`] then, as
    /// the proxy does once the reply is sent.
    pub fn upstream_reset(&mut self) -> Result<ResponseOutcome, HostError> {
        if self.state != StreamState::Forwarded {
            return Err(HostError::InvalidStreamState {
                operation: "reset from the upstream",
                state: self.state.describe(),
            });
        }
        self.commands
            .send(Command::UpstreamReset { stream: self.id })
            .map_err(|_| self.stopped())?;
        self.next_response_event(None)
    }

    /// Waits up to `timeout` for the filter to resume a paused response;
    /// answers [`ResponseOutcome::Paused`] if it did not.
    pub fn wait_response(&mut self, timeout: Duration) -> Result<ResponseOutcome, HostError> {
        if self.state != StreamState::ResponsePaused {
            return Err(HostError::InvalidStreamState {
                operation: "wait for the response to resume",
                state: self.state.describe(),
            });
        }
        self.next_response_event(Some(timeout))
    }

    fn end(&mut self) -> Result<StreamReport, HostError> {
        self.finished = true;
        let (report, receiver) = mpsc::channel();
        self.commands
            .send(Command::Finish {
                stream: self.id,
                report,
            })
            .map_err(|_| self.stopped())?;
        receiver.recv().map_err(|_| self.stopped())
    }

    /// Ends the stream: the filter's `proxy_on_log`, `proxy_on_done` and
    /// `proxy_on_delete` run (as when a client goes away, if the stream is
    /// still paused).
    pub fn finish(mut self) -> Result<StreamReport, HostError> {
        self.end()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.finished {
            // Nothing to report to from a drop; a stopped worker has nothing
            // left to end.
            let _ = self.end();
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("worker", &self.worker)
            .field("id", &self.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::FilterModule;
    use crate::module::tests::minimal_module;

    #[test]
    fn a_filter_without_callbacks_lets_everything_through() {
        let module = FilterModule::from_bytes(&minimal_module(true, &[])).expect("a filter");
        let proxy = Proxy::start(ProxyOptions::new(module)).expect("the proxy starts");
        let exchange = proxy
            .exchange(0, HttpRequest::get("/").header("x-a", "1"), |forwarded| {
                assert_eq!(forwarded.header("x-a"), Some("1"));
                HttpResponse::new(204)
            })
            .expect("the exchange completes");
        assert_eq!(exchange.status(), Some(204));
        assert!(
            !proxy.tick(0).expect("the worker answers"),
            "no tick period"
        );
    }
}
