//! A worker: one OS thread owning one VM, as Envoy runs one VM per worker
//! thread. It receives commands from the [`Proxy`](crate::Proxy) and its
//! streams, fires ticks, and replaces its VM when the VM traps; [`stream`]
//! drives each stream through the filter's callbacks.

mod calls;
mod grpc;
mod stream;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::HostError;
use crate::host_calls::{HostCallCounting, HostCalls};
use crate::http::{HttpRequest, HttpResponse, RequestOutcome, ResponseOutcome, StreamFailure};
use crate::logs::VmLabel;
use crate::module::{FilterModule, FuelMetering};
use crate::options::HostFlavor;
use crate::outbound::{CallEvent, CompletionSink};
use crate::state::{ProxyEnv, host_log};
use crate::types::LogLevel;
use crate::vm::{Trap, Vm};

use self::stream::StreamState;

pub(crate) type StreamId = u64;

pub(crate) enum Command {
    Begin {
        stream: StreamId,
        request: HttpRequest,
        events: Sender<StreamEvent>,
    },
    Respond {
        stream: StreamId,
        response: HttpResponse,
    },
    /// The upstream resets the stream before responding.
    UpstreamReset {
        stream: StreamId,
    },
    Finish {
        stream: StreamId,
        report: Sender<StreamReport>,
    },
    Tick {
        delivered: Sender<bool>,
    },
    /// What the root context's ticks have cost so far.
    TickReport {
        report: Sender<TickReport>,
    },
    /// The fake clock moved: fire the ticks that are due.
    ClockMoved,
    /// Answers once every command sent before it has been handled (and the
    /// ticks they made due have fired).
    Settle {
        done: Sender<()>,
    },
    /// Something happened on a call of this worker's VM.
    CallDone(CallEvent),
    Shutdown,
}

/// What a stream hears back.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    Request(RequestOutcome),
    Response(ResponseOutcome),
}

/// What is left to say about a stream once it has ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// The fuel the filter used for this stream, from context creation to
    /// `proxy_on_delete` (with a fuel-metered module).
    pub fuel_consumed: Option<u64>,
    /// The host calls the filter made for this stream, from context creation
    /// to `proxy_on_delete` (with a module that counts them).
    pub host_calls: Option<HostCalls>,
    /// A trap in `proxy_on_log`, `proxy_on_done` or `proxy_on_delete` (the
    /// VM was replaced).
    pub trap: Option<String>,
}

/// What a worker's `proxy_on_tick` calls cost, summed over the worker's life (its VMs
/// included), so work a tick does for streams (resuming held requests) can be weighed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The ticks delivered to the filter.
    pub ticks: u64,
    /// Their fuel (with a fuel-metered module).
    pub fuel_consumed: Option<u64>,
    /// Their host calls (with a module that counts them).
    pub host_calls: Option<HostCalls>,
}

/// What a worker needs to run.
pub(crate) struct WorkerConfig {
    pub index: usize,
    pub module: FilterModule,
    pub env: Arc<ProxyEnv>,
    pub fuel_per_callback: Option<u64>,
    /// Numbers VMs across the proxy's workers.
    pub vm_numbers: Arc<AtomicU64>,
    /// This worker's own queue, where its VM's HTTP calls report.
    pub commands: Sender<Command>,
}

/// Starts a worker thread. It reports on `ready` whether its VM started, and
/// then serves `commands` until told to shut down.
pub(crate) fn spawn(
    config: WorkerConfig,
    commands: Receiver<Command>,
    ready: Sender<Result<(), HostError>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("sluice-worker-{}", config.index))
        .spawn(move || {
            let mut worker = Worker::new(config);
            match worker.start_vm() {
                Ok(()) => {
                    let _ = ready.send(Ok(()));
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            }
            drop(ready);
            worker.run(&commands);
        })
}

struct TickTimer {
    period: Option<Duration>,
    due_ns: Option<u64>,
}

struct Worker {
    config: WorkerConfig,
    vm: Option<Vm>,
    vm_instance: u64,
    /// Why there is no VM, when restarting one failed.
    vm_failure: Option<String>,
    streams: HashMap<StreamId, StreamState>,
    contexts: HashMap<u32, StreamId>,
    woken: VecDeque<StreamId>,
    ticks: TickTimer,
    tick_costs: TickCosts,
}

#[derive(Default)]
struct TickCosts {
    ticks: u64,
    fuel: u64,
    host_calls: HostCalls,
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Worker {
    fn new(config: WorkerConfig) -> Worker {
        Worker {
            config,
            vm: None,
            vm_instance: 0,
            vm_failure: None,
            streams: HashMap::new(),
            contexts: HashMap::new(),
            woken: VecDeque::new(),
            ticks: TickTimer {
                period: None,
                due_ns: None,
            },
            tick_costs: TickCosts::default(),
        }
    }

    fn env(&self) -> &ProxyEnv {
        &self.config.env
    }

    fn clock(&self) -> &Clock {
        &self.config.env.clock
    }

    fn start_vm(&mut self) -> Result<(), HostError> {
        let instance = self
            .config
            .vm_numbers
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        let label = VmLabel {
            worker: self.config.index,
            instance,
        };
        let commands = self.config.commands.clone();
        let sink: CompletionSink = Arc::new(move |event| {
            // A stopped worker has no VM left to answer.
            let _ = commands.send(Command::CallDone(event));
        });
        let vm = Vm::start(
            &self.config.module,
            Arc::clone(&self.config.env),
            label,
            self.config.fuel_per_callback,
            sink,
        )?;
        self.vm = Some(vm);
        self.vm_instance = instance;
        self.vm_failure = None;
        self.refresh_ticks();
        Ok(())
    }

    /// Starts a VM if the last one failed and could not be replaced then.
    fn ensure_vm(&mut self) {
        if self.vm.is_some() {
            return;
        }
        if let Err(error) = self.start_vm() {
            self.vm_failure = Some(error.to_string());
        }
    }

    fn run(&mut self, commands: &Receiver<Command>) {
        loop {
            let command = match self.time_to_next_tick() {
                Some(wait) => match commands.recv_timeout(wait) {
                    Ok(command) => Some(command),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                },
            };
            match command {
                Some(Command::Shutdown) => {
                    self.shutdown();
                    return;
                }
                Some(command) => self.handle(command),
                None => {}
            }
            self.refresh_ticks();
            self.fire_due_tick();
            self.process_woken();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Begin {
                stream,
                request,
                events,
            } => self.begin(stream, request, events),
            Command::Respond { stream, response } => self.respond(stream, response),
            Command::UpstreamReset { stream } => self.upstream_reset(stream),
            Command::Finish { stream, report } => {
                let finished = self.finish(stream);
                let _ = report.send(finished);
            }
            Command::Tick { delivered } => {
                let fired = self.tick();
                let _ = delivered.send(fired);
            }
            Command::TickReport { report } => {
                let _ = report.send(self.tick_report());
            }
            Command::CallDone(CallEvent::Http(completion)) => self.call_done(completion),
            Command::CallDone(CallEvent::Grpc(delivery)) => self.grpc_event(delivery),
            Command::Settle { done } => {
                // The ticks the commands before made due fire first.
                self.refresh_ticks();
                self.fire_due_tick();
                self.process_woken();
                let _ = done.send(());
            }
            Command::ClockMoved | Command::Shutdown => {}
        }
        self.process_woken();
    }

    // Ticks.

    /// How long to wait for a command before a tick is due (system clock
    /// only: a fake clock tells the worker when it moves).
    fn time_to_next_tick(&self) -> Option<Duration> {
        let due = self.ticks.due_ns?;
        match self.clock() {
            Clock::System => Some(Duration::from_nanos(
                due.saturating_sub(self.clock().now_ns()),
            )),
            Clock::Fake(_) => None,
        }
    }

    /// Picks up a tick period the filter set.
    fn refresh_ticks(&mut self) {
        let now = self.clock().now_ns();
        let Some(vm) = self.vm.as_mut() else {
            self.ticks = TickTimer {
                period: None,
                due_ns: None,
            };
            return;
        };
        let state = vm.state();
        if !state.tick_period_changed {
            return;
        }
        state.tick_period_changed = false;
        let period = state.tick_period;
        // Armed when the filter set it (a fake clock may have moved since).
        let armed_at = state.tick_period_set_at_ns.min(now);
        self.ticks = TickTimer {
            period,
            due_ns: period.map(|period| armed_at.saturating_add(duration_ns(period))),
        };
    }

    fn fire_due_tick(&mut self) {
        let Some(due) = self.ticks.due_ns else {
            return;
        };
        let now = self.clock().now_ns();
        if now < due {
            return;
        }
        // Like a timer that re-arms after firing: one tick, however late.
        self.ticks.due_ns = self
            .ticks
            .period
            .map(|period| now.saturating_add(duration_ns(period)));
        self.tick();
    }

    /// `proxy_on_tick` on the root context, if the filter set a period.
    fn tick(&mut self) -> bool {
        self.ensure_vm();
        let Some(vm) = self.vm.as_mut() else {
            return false;
        };
        if vm.state().tick_period.is_none() {
            return false;
        }
        let names = vm.host_call_names();
        match vm.tick() {
            Ok(called) => {
                self.tick_costs.ticks += 1;
                self.tick_costs.fuel = self.tick_costs.fuel.saturating_add(called.fuel);
                if let (Some(names), Some(counts)) = (names, called.host_calls.as_deref()) {
                    self.tick_costs.host_calls.add(&names, counts);
                }
                self.apply_deferred(called.deferred, None);
            }
            Err(trap) => self.fail_vm(&trap, "proxy_on_tick"),
        }
        self.refresh_ticks();
        true
    }

    fn tick_report(&self) -> TickReport {
        let module = &self.config.module;
        TickReport {
            ticks: self.tick_costs.ticks,
            fuel_consumed: (module.metering() == FuelMetering::On).then_some(self.tick_costs.fuel),
            host_calls: (module.host_call_counting() == HostCallCounting::On)
                .then(|| self.tick_costs.host_calls.clone()),
        }
    }

    // Failures.

    fn failure(&self, trap: &str) -> StreamFailure {
        match self.env().flavor {
            HostFlavor::Envoy => StreamFailure {
                status: 503,
                details: "wasm_fail_stream".to_string(),
                trap: trap.to_string(),
            },
            HostFlavor::NgxWasmModule => StreamFailure {
                status: 500,
                details: String::new(),
                trap: trap.to_string(),
            },
        }
    }

    /// A trap: every stream of the VM fails (Envoy fails each stream of a
    /// failed VM with a local 503), and a fresh VM replaces it.
    fn fail_vm(&mut self, trap: &Trap, callback: &'static str) {
        let failed_instance = self.vm_instance;
        if let Some(vm) = &self.vm {
            host_log(
                self.env(),
                vm.label(),
                LogLevel::Critical,
                format!(
                    "the filter trapped in {callback}; the VM is replaced: {}",
                    trap.details
                ),
            );
        }
        let failure = self.failure(&trap.message);
        for stream in self.streams.values_mut() {
            if stream.vm_instance == failed_instance {
                stream.fail(&failure);
            }
        }
        self.contexts.clear();
        self.woken.clear();
        self.vm = None;
        self.ticks = TickTimer {
            period: None,
            due_ns: None,
        };
        if let Err(error) = self.start_vm() {
            self.vm_failure = Some(error.to_string());
        }
    }

    fn shutdown(&mut self) {
        if let Some(vm) = self.vm.as_mut() {
            // As at Envoy's VM shutdown: the root context is done, and deleted
            // if it agrees.
            if let Ok(done) = vm.done(Vm::ROOT_CONTEXT_ID)
                && done.value
            {
                let _ = vm.delete(Vm::ROOT_CONTEXT_ID);
            }
        }
    }
}
