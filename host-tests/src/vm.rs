//! One VM: an instance of the filter in its own store, its start-up as
//! Envoy performs it, and every call into it.

use std::sync::Arc;

use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use crate::error::{FilterLogs, HostError};
use crate::logs::VmLabel;
use crate::module::{FilterModule, FuelMetering};
use crate::outbound::CompletionSink;
use crate::state::{CallState, Callback, DeferredAction, HostState, ProxyEnv};
use crate::{abi, state};

/// What a header, body or trailer callback answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FilterAction {
    Continue,
    /// Stop until `proxy_continue_stream`. Any non-zero answer pauses, as
    /// Envoy turns every stop status of ABI 0.2 into "stop all iteration".
    Pause,
}

impl FilterAction {
    fn from_answer(answer: u32) -> FilterAction {
        if answer == 0 {
            FilterAction::Continue
        } else {
            FilterAction::Pause
        }
    }
}

/// A call that returned.
#[derive(Debug)]
pub(crate) struct Called<R> {
    pub value: R,
    /// The fuel it used (0 without metering).
    pub fuel: u64,
    /// What the filter asked for during the call, to carry out now.
    pub deferred: Vec<DeferredAction>,
    /// With host-call counting, the calls it made (by the module's counted
    /// imports, in order).
    pub host_calls: Option<Vec<u64>>,
}

impl<R> Called<R> {
    /// The call without its value.
    pub(crate) fn discard(self) -> Called<()> {
        Called {
            value: (),
            fuel: self.fuel,
            deferred: self.deferred,
            host_calls: self.host_calls,
        }
    }
}

/// A call that trapped.
#[derive(Clone, Debug)]
pub(crate) struct Trap {
    /// The trap itself (`wasm trap: wasm `unreachable` instruction executed`).
    pub message: String,
    /// With the wasm backtrace.
    pub details: String,
}

impl Trap {
    fn of(error: &wasmtime::Error) -> Trap {
        let message = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("wasm trap: {trap}"),
            None => error.root_cause().to_string(),
        };
        Trap {
            message,
            details: format!("{error:?}"),
        }
    }
}

type Callback0 = Option<TypedFunc<(), ()>>;
type Callback1 = Option<TypedFunc<u32, ()>>;
type Callback1Answer = Option<TypedFunc<u32, u32>>;
type Callback2 = Option<TypedFunc<(u32, u32), ()>>;
type Callback2Answer = Option<TypedFunc<(u32, u32), u32>>;
type Callback3 = Option<TypedFunc<(u32, u32, u32), ()>>;
type Callback3Answer = Option<TypedFunc<(u32, u32, u32), u32>>;
type Callback5 = Option<TypedFunc<(u32, u32, u32, u32, u32), ()>>;

/// The filter's callbacks (each optional, as the spec allows).
struct Exports {
    initialize: Callback0,
    start: Callback0,
    main: Callback2Answer,
    on_context_create: Callback2,
    on_vm_start: Callback2Answer,
    on_configure: Callback2Answer,
    on_tick: Callback1,
    on_done: Callback1Answer,
    on_log: Callback1,
    on_delete: Callback1,
    on_request_headers: Callback3Answer,
    on_request_body: Callback3Answer,
    on_request_trailers: Callback2Answer,
    on_response_headers: Callback3Answer,
    on_response_body: Callback3Answer,
    on_response_trailers: Callback2Answer,
    on_http_call_response: Callback5,
    on_grpc_receive_initial_metadata: Callback3,
    on_grpc_receive: Callback3,
    on_grpc_receive_trailing_metadata: Callback3,
    on_grpc_close: Callback3,
}

fn export<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<HostState>,
    name: &'static str,
) -> Result<Option<TypedFunc<P, R>>, HostError> {
    let Some(function) = instance.get_func(&mut *store, name) else {
        return Ok(None);
    };
    function
        .typed::<P, R>(&*store)
        .map(Some)
        .map_err(|error| HostError::BadExport {
            name,
            expected: "as proxy-wasm ABI 0.2.1 defines it",
            message: format!("{error:?}"),
        })
}

impl Exports {
    fn of(instance: &Instance, store: &mut Store<HostState>) -> Result<Exports, HostError> {
        Ok(Exports {
            initialize: export(instance, store, "_initialize")?,
            start: export(instance, store, "_start")?,
            main: export(instance, store, "main")?,
            on_context_create: export(instance, store, "proxy_on_context_create")?,
            on_vm_start: export(instance, store, "proxy_on_vm_start")?,
            on_configure: export(instance, store, "proxy_on_configure")?,
            on_tick: export(instance, store, "proxy_on_tick")?,
            on_done: export(instance, store, "proxy_on_done")?,
            on_log: export(instance, store, "proxy_on_log")?,
            on_delete: export(instance, store, "proxy_on_delete")?,
            on_request_headers: export(instance, store, "proxy_on_request_headers")?,
            on_request_body: export(instance, store, "proxy_on_request_body")?,
            on_request_trailers: export(instance, store, "proxy_on_request_trailers")?,
            on_response_headers: export(instance, store, "proxy_on_response_headers")?,
            on_response_body: export(instance, store, "proxy_on_response_body")?,
            on_response_trailers: export(instance, store, "proxy_on_response_trailers")?,
            on_http_call_response: export(instance, store, "proxy_on_http_call_response")?,
            on_grpc_receive_initial_metadata: export(
                instance,
                store,
                "proxy_on_grpc_receive_initial_metadata",
            )?,
            on_grpc_receive: export(instance, store, "proxy_on_grpc_receive")?,
            on_grpc_receive_trailing_metadata: export(
                instance,
                store,
                "proxy_on_grpc_receive_trailing_metadata",
            )?,
            on_grpc_close: export(instance, store, "proxy_on_grpc_close")?,
        })
    }
}

/// A running filter instance.
pub(crate) struct Vm {
    store: Store<HostState>,
    exports: Exports,
    label: VmLabel,
    /// The fuel each call starts with, when metered.
    fuel_budget: Option<u64>,
    last_context_id: u32,
}

fn size(length: usize) -> u32 {
    // Sizes handed to a wasm32 guest; nothing this host passes comes close.
    u32::try_from(length).unwrap_or(u32::MAX)
}

impl Vm {
    /// The root context's id (proxy-wasm-cpp-host gives the plugin's root
    /// context the first id of the VM).
    pub(crate) const ROOT_CONTEXT_ID: u32 = 1;

    /// Instantiates the filter and starts it as Envoy does: `_initialize`,
    /// `proxy_on_context_create(root, 0)`, `proxy_on_vm_start`,
    /// `proxy_on_configure`.
    pub(crate) fn start(
        module: &FilterModule,
        env: Arc<ProxyEnv>,
        label: VmLabel,
        fuel_per_callback: Option<u64>,
        call_sink: CompletionSink,
    ) -> Result<Vm, HostError> {
        let wasi = abi::wasi::context(&env.clock);
        let mut store = Store::new(
            module.engine(),
            HostState::new(Arc::clone(&env), label, wasi),
        );
        let fuel_budget =
            (module.metering() == FuelMetering::On).then(|| fuel_per_callback.unwrap_or(u64::MAX));
        if let Some(budget) = fuel_budget {
            store
                .set_fuel(budget)
                .map_err(|error| HostError::Instantiate {
                    worker: label.worker,
                    message: format!("cannot give the store fuel: {error:?}"),
                })?;
        }
        let instance = module
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|error| HostError::Instantiate {
                worker: label.worker,
                message: format!("{error:?}"),
            })?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(HostError::MissingMemory)?;
        let allocator = match export::<u32, u32>(&instance, &mut store, "malloc")? {
            Some(malloc) => Some(malloc),
            None => export(&instance, &mut store, "proxy_on_memory_allocate")?,
        };
        let exports = Exports::of(&instance, &mut store)?;
        if let Some(counted) = module.counted_imports() {
            let counter = counted
                .counter(&mut store)
                .map_err(|error| HostError::Instantiate {
                    worker: label.worker,
                    message: format!("{error:?}"),
                })?;
            store.data_mut().host_calls = Some(counter);
        }
        let state = store.data_mut();
        state.memory = Some(memory);
        state.allocator = allocator;
        state.root_context_id = Vm::ROOT_CONTEXT_ID;
        state.calls.sink = Some(call_sink);
        let mut vm = Vm {
            store,
            exports,
            label,
            fuel_budget,
            last_context_id: Vm::ROOT_CONTEXT_ID,
        };
        vm.run_start_sequence(&env)?;
        Ok(vm)
    }

    fn run_start_sequence(&mut self, env: &ProxyEnv) -> Result<(), HostError> {
        let worker = self.label.worker;
        let logs = |env: &ProxyEnv, label| FilterLogs(env.logs.records_of(label));
        let trapped = |callback: &'static str, trap: Trap, vm: &Vm| {
            state::host_log(
                env,
                vm.label,
                crate::types::LogLevel::Critical,
                format!("the filter trapped in {callback}: {}", trap.details),
            );
            HostError::StartTrapped {
                worker,
                callback,
                trap: trap.message,
                logs: logs(env, vm.label),
            }
        };
        self.initialize()
            .map_err(|trap| trapped("_initialize", trap, self))?;
        self.context_create(Vm::ROOT_CONTEXT_ID, 0)
            .map_err(|trap| trapped("proxy_on_context_create", trap, self))?;
        let started = self
            .vm_start()
            .map_err(|trap| trapped("proxy_on_vm_start", trap, self))?;
        if !started.value {
            return Err(HostError::VmStartRejected {
                worker,
                logs: logs(env, self.label),
            });
        }
        let configured = self
            .configure()
            .map_err(|trap| trapped("proxy_on_configure", trap, self))?;
        if !configured.value {
            return Err(HostError::ConfigurationRejected {
                worker,
                logs: logs(env, self.label),
            });
        }
        Ok(())
    }

    /// The names of the counted imports, with host-call counting.
    pub(crate) fn host_call_names(&self) -> Option<Arc<[String]>> {
        self.store
            .data()
            .host_calls
            .as_ref()
            .map(|counter| Arc::clone(&counter.names))
    }

    pub(crate) fn label(&self) -> VmLabel {
        self.label
    }

    pub(crate) fn state(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// A fresh context id for a stream.
    pub(crate) fn new_context_id(&mut self) -> u32 {
        // Ids are never reused within a VM; a VM serving four billion
        // streams wraps around, skipping 0 and the root context.
        self.last_context_id = match self.last_context_id.wrapping_add(1) {
            0 | Vm::ROOT_CONTEXT_ID => Vm::ROOT_CONTEXT_ID + 1,
            id => id,
        };
        self.last_context_id
    }

    fn call<R>(
        &mut self,
        context_id: u32,
        callback: Callback,
        run: impl FnOnce(&Exports, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<Called<R>, Trap> {
        self.store.data_mut().call = CallState {
            callback,
            effective_context: context_id,
        };
        if let Some(budget) = self.fuel_budget {
            // Only fails when fuel is not enabled, which `fuel_budget` rules out.
            let _ = self.store.set_fuel(budget);
        }
        let result = run(&self.exports, &mut self.store);
        let fuel = match self.fuel_budget {
            Some(budget) => budget.saturating_sub(self.store.get_fuel().unwrap_or(0)),
            None => 0,
        };
        let state = self.store.data_mut();
        state.call = CallState {
            callback: Callback::Idle,
            effective_context: state.root_context_id,
        };
        let deferred = std::mem::take(&mut state.deferred);
        let host_calls = state.host_calls.as_mut().map(|counter| counter.take());
        match result {
            Ok(value) => Ok(Called {
                value,
                fuel,
                deferred,
                host_calls,
            }),
            Err(error) => Err(Trap::of(&error)),
        }
    }

    fn initialize(&mut self) -> Result<Called<()>, Trap> {
        self.call(0, Callback::Initialize, |exports, store| {
            if let Some(initialize) = &exports.initialize {
                initialize.call(&mut *store, ())?;
                if let Some(main) = &exports.main {
                    main.call(&mut *store, (0, 0))?;
                }
            } else if let Some(start) = &exports.start {
                start.call(&mut *store, ())?;
            }
            Ok(())
        })
    }

    pub(crate) fn context_create(
        &mut self,
        context_id: u32,
        parent_id: u32,
    ) -> Result<Called<()>, Trap> {
        self.call(
            context_id,
            Callback::ContextCreate,
            |exports, store| match &exports.on_context_create {
                Some(create) => create.call(store, (context_id, parent_id)),
                None => Ok(()),
            },
        )
    }

    fn vm_start(&mut self) -> Result<Called<bool>, Trap> {
        let size = size(self.store.data().env.vm_config.len());
        self.call(
            Vm::ROOT_CONTEXT_ID,
            Callback::VmStart,
            |exports, store| match &exports.on_vm_start {
                Some(start) => Ok(start.call(store, (Vm::ROOT_CONTEXT_ID, size))? != 0),
                None => Ok(true),
            },
        )
    }

    fn configure(&mut self) -> Result<Called<bool>, Trap> {
        let size = size(self.store.data().env.plugin_config.len());
        self.call(
            Vm::ROOT_CONTEXT_ID,
            Callback::Configure,
            |exports, store| match &exports.on_configure {
                Some(configure) => Ok(configure.call(store, (Vm::ROOT_CONTEXT_ID, size))? != 0),
                None => Ok(true),
            },
        )
    }

    pub(crate) fn tick(&mut self) -> Result<Called<()>, Trap> {
        self.call(
            Vm::ROOT_CONTEXT_ID,
            Callback::Tick,
            |exports, store| match &exports.on_tick {
                Some(tick) => tick.call(store, Vm::ROOT_CONTEXT_ID),
                None => Ok(()),
            },
        )
    }

    fn action(
        &mut self,
        context_id: u32,
        callback: Callback,
        function: impl FnOnce(&Exports) -> &Callback3Answer,
        size: usize,
        end_of_stream: bool,
    ) -> Result<Called<FilterAction>, Trap> {
        let size = self::size(size);
        self.call(context_id, callback, |exports, store| {
            match function(exports) {
                Some(callback) => Ok(FilterAction::from_answer(
                    callback.call(store, (context_id, size, u32::from(end_of_stream)))?,
                )),
                None => Ok(FilterAction::Continue),
            }
        })
    }

    fn trailers_action(
        &mut self,
        context_id: u32,
        callback: Callback,
        function: impl FnOnce(&Exports) -> &Callback2Answer,
        count: usize,
    ) -> Result<Called<FilterAction>, Trap> {
        let count = size(count);
        self.call(context_id, callback, |exports, store| {
            match function(exports) {
                Some(callback) => Ok(FilterAction::from_answer(
                    callback.call(store, (context_id, count))?,
                )),
                None => Ok(FilterAction::Continue),
            }
        })
    }

    pub(crate) fn request_headers(
        &mut self,
        context_id: u32,
        count: usize,
        end_of_stream: bool,
    ) -> Result<Called<FilterAction>, Trap> {
        self.action(
            context_id,
            Callback::RequestHeaders,
            |exports| &exports.on_request_headers,
            count,
            end_of_stream,
        )
    }

    pub(crate) fn request_body(
        &mut self,
        context_id: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Result<Called<FilterAction>, Trap> {
        self.action(
            context_id,
            Callback::RequestBody { end_of_stream },
            |exports| &exports.on_request_body,
            size,
            end_of_stream,
        )
    }

    pub(crate) fn request_trailers(
        &mut self,
        context_id: u32,
        count: usize,
    ) -> Result<Called<FilterAction>, Trap> {
        self.trailers_action(
            context_id,
            Callback::RequestTrailers,
            |exports| &exports.on_request_trailers,
            count,
        )
    }

    pub(crate) fn response_headers(
        &mut self,
        context_id: u32,
        count: usize,
        end_of_stream: bool,
    ) -> Result<Called<FilterAction>, Trap> {
        self.action(
            context_id,
            Callback::ResponseHeaders,
            |exports| &exports.on_response_headers,
            count,
            end_of_stream,
        )
    }

    pub(crate) fn response_body(
        &mut self,
        context_id: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Result<Called<FilterAction>, Trap> {
        self.action(
            context_id,
            Callback::ResponseBody { end_of_stream },
            |exports| &exports.on_response_body,
            size,
            end_of_stream,
        )
    }

    pub(crate) fn response_trailers(
        &mut self,
        context_id: u32,
        count: usize,
    ) -> Result<Called<FilterAction>, Trap> {
        self.trailers_action(
            context_id,
            Callback::ResponseTrailers,
            |exports| &exports.on_response_trailers,
            count,
        )
    }

    /// `proxy_on_done`: whether the filter is done with the context.
    pub(crate) fn done(&mut self, context_id: u32) -> Result<Called<bool>, Trap> {
        self.call(
            context_id,
            Callback::Done,
            |exports, store| match &exports.on_done {
                Some(done) => Ok(done.call(store, context_id)? != 0),
                None => Ok(true),
            },
        )
    }

    pub(crate) fn log(&mut self, context_id: u32) -> Result<Called<()>, Trap> {
        self.call(context_id, Callback::Log, |exports, store| {
            match &exports.on_log {
                Some(log) => log.call(store, context_id),
                None => Ok(()),
            }
        })
    }

    pub(crate) fn delete(&mut self, context_id: u32) -> Result<Called<()>, Trap> {
        self.call(
            context_id,
            Callback::Delete,
            |exports, store| match &exports.on_delete {
                Some(delete) => delete.call(store, context_id),
                None => Ok(()),
            },
        )
    }

    /// `proxy_on_http_call_response` on the root context, as both Envoy and
    /// ngx_wasm_module call it (the SDKs route it by token to the context
    /// that made the call).
    pub(crate) fn http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        trailers: usize,
    ) -> Result<Called<()>, Trap> {
        let (headers, body_size, trailers) = (size(headers), size(body_size), size(trailers));
        self.call(
            Vm::ROOT_CONTEXT_ID,
            Callback::HttpCallResponse,
            |exports, store| match &exports.on_http_call_response {
                Some(respond) => respond.call(
                    store,
                    (Vm::ROOT_CONTEXT_ID, token, headers, body_size, trailers),
                ),
                None => Ok(()),
            },
        )
    }

    /// A gRPC callback on the root context, as Envoy makes it
    /// (proxy-wasm-cpp-host's `ContextBase::onGrpc*`): the token and a count
    /// (metadata entries, message bytes or the status code).
    pub(crate) fn grpc_callback(
        &mut self,
        callback: GrpcCallback,
        token: u32,
        count: u32,
    ) -> Result<Called<()>, Trap> {
        self.call(
            Vm::ROOT_CONTEXT_ID,
            Callback::GrpcEvent,
            |exports, store| {
                let function = match callback {
                    GrpcCallback::ReceiveInitialMetadata => {
                        &exports.on_grpc_receive_initial_metadata
                    }
                    GrpcCallback::Receive => &exports.on_grpc_receive,
                    GrpcCallback::ReceiveTrailingMetadata => {
                        &exports.on_grpc_receive_trailing_metadata
                    }
                    GrpcCallback::Close => &exports.on_grpc_close,
                };
                match function {
                    Some(function) => function.call(store, (Vm::ROOT_CONTEXT_ID, token, count)),
                    None => Ok(()),
                }
            },
        )
    }
}

/// The four gRPC callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrpcCallback {
    ReceiveInitialMetadata,
    Receive,
    ReceiveTrailingMetadata,
    Close,
}

impl GrpcCallback {
    /// The export's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GrpcCallback::ReceiveInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
            GrpcCallback::Receive => "proxy_on_grpc_receive",
            GrpcCallback::ReceiveTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
            GrpcCallback::Close => "proxy_on_grpc_close",
        }
    }
}
