//! A filter compiled once and linked to the host, ready to instantiate on
//! every worker (and in every proxy of a process: cloning is cheap).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use wasmtime::{
    Caller, Config, Engine, ExternType, FuncType, InstancePre, Linker, Module, ProfilingStrategy,
    Val, ValType,
};

use crate::abi;
use crate::error::HostError;
use crate::host_calls::{self, CountedImports, HostCallCounting};
use crate::state::HostState;
use crate::types::{LogLevel, Status};

/// Whether wasmtime counts the fuel (roughly, instructions) each callback
/// uses. Metering costs some speed, and lets a benchmark report the work
/// a filter does per request independently of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FuelMetering {
    #[default]
    Off,
    On,
}

/// A compiled filter module.
#[derive(Clone)]
pub struct FilterModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    engine: Engine,
    instance_pre: InstancePre<HostState>,
    metering: FuelMetering,
    unknown_imports: Vec<String>,
    /// With host-call counting, what each VM's counter needs.
    counted_imports: Option<CountedImports>,
    uncounted_imports: Vec<String>,
}

/// An export the host calls: its name, and how many `i32` it takes and
/// answers (every callback of ABI 0.2.1 deals in `i32` only).
struct Callback {
    name: &'static str,
    params: usize,
    results: usize,
    signature: &'static str,
}

const fn callback(
    name: &'static str,
    params: usize,
    results: usize,
    signature: &'static str,
) -> Callback {
    Callback {
        name,
        params,
        results,
        signature,
    }
}

/// The callbacks the host calls, with the signatures of ABI 0.2.1.
const CALLBACKS: &[Callback] = &[
    callback("_initialize", 0, 0, "() -> ()"),
    callback("_start", 0, 0, "() -> ()"),
    callback("main", 2, 1, "(i32, i32) -> i32"),
    callback("malloc", 1, 1, "(i32) -> i32"),
    callback("proxy_on_memory_allocate", 1, 1, "(i32) -> i32"),
    callback("proxy_on_context_create", 2, 0, "(i32, i32) -> ()"),
    callback("proxy_on_vm_start", 2, 1, "(i32, i32) -> i32"),
    callback("proxy_on_configure", 2, 1, "(i32, i32) -> i32"),
    callback("proxy_on_tick", 1, 0, "(i32) -> ()"),
    callback("proxy_on_done", 1, 1, "(i32) -> i32"),
    callback("proxy_on_log", 1, 0, "(i32) -> ()"),
    callback("proxy_on_delete", 1, 0, "(i32) -> ()"),
    callback("proxy_on_request_headers", 3, 1, "(i32, i32, i32) -> i32"),
    callback("proxy_on_request_body", 3, 1, "(i32, i32, i32) -> i32"),
    callback("proxy_on_request_trailers", 2, 1, "(i32, i32) -> i32"),
    callback("proxy_on_response_headers", 3, 1, "(i32, i32, i32) -> i32"),
    callback("proxy_on_response_body", 3, 1, "(i32, i32, i32) -> i32"),
    callback("proxy_on_response_trailers", 2, 1, "(i32, i32) -> i32"),
    callback(
        "proxy_on_http_call_response",
        5,
        0,
        "(i32, i32, i32, i32, i32) -> ()",
    ),
];

/// Whether `types` are `count` values of type `i32`.
fn all_i32(types: impl ExactSizeIterator<Item = ValType>, count: usize) -> bool {
    types.len() == count && types.into_iter().all(|ty| ty.is_i32())
}

fn check_exports(module: &Module) -> Result<(), HostError> {
    let exports_function =
        |name: &str| matches!(module.get_export(name), Some(ExternType::Func(_)));
    if !exports_function("proxy_abi_version_0_2_1") && !exports_function("proxy_abi_version_0_2_0")
    {
        return Err(HostError::UnsupportedAbi);
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(HostError::MissingMemory);
    }
    for callback in CALLBACKS {
        match module.get_export(callback.name) {
            None => {}
            Some(ExternType::Func(function))
                if all_i32(function.params(), callback.params)
                    && all_i32(function.results(), callback.results) => {}
            Some(other) => {
                return Err(HostError::BadExport {
                    name: callback.name,
                    expected: callback.signature,
                    message: format!("it is {other:?}"),
                });
            }
        }
    }
    Ok(())
}

/// Defines every `env` import the host does not know as a function that
/// answers `UNIMPLEMENTED` (and logs it); answers their names.
fn define_unknown_imports(linker: &mut Linker<HostState>, module: &Module) -> Vec<String> {
    let mut unknown = Vec::new();
    for import in module.imports() {
        let ExternType::Func(function) = import.ty() else {
            continue;
        };
        if import.module() != "env" {
            continue;
        }
        let name = import.name().to_string();
        let answers_status = all_i32(function.results(), 1);
        let ty: FuncType = function.clone();
        let call_name = name.clone();
        // Defining fails only for names the host already defines: those are
        // not unknown.
        let defined = linker.func_new(
            "env",
            &name,
            ty,
            move |caller: Caller<'_, HostState>, _params: &[Val], results: &mut [Val]| {
                if !answers_status {
                    return Err(wasmtime::format_err!(
                        "the filter called env.{call_name}, which this host does not know \
                         and which has no status to answer"
                    ));
                }
                caller.data().host_log(
                    LogLevel::Warn,
                    format!(
                        "the filter called env.{call_name}, which this host does not know: \
                         answered UNIMPLEMENTED"
                    ),
                );
                if let Some(result) = results.first_mut() {
                    *result = Val::I32(Status::Unimplemented.code() as i32);
                }
                Ok(())
            },
        );
        if defined.is_ok() {
            unknown.push(name);
        }
    }
    unknown
}

impl FilterModule {
    /// Compiles a filter without fuel metering.
    pub fn from_bytes(wasm: &[u8]) -> Result<FilterModule, HostError> {
        FilterModule::compile(wasm, FuelMetering::Off)
    }

    /// Reads and compiles a filter without fuel metering.
    pub fn from_file(path: impl AsRef<Path>) -> Result<FilterModule, HostError> {
        let path = path.as_ref();
        let wasm = std::fs::read(path).map_err(|source| HostError::ReadModule {
            path: path.to_path_buf(),
            source,
        })?;
        FilterModule::from_bytes(&wasm)
    }

    /// Compiles a filter, checks its exports against the ABI, and links it
    /// to the host.
    pub fn compile(wasm: &[u8], metering: FuelMetering) -> Result<FilterModule, HostError> {
        FilterModule::compile_instrumented(wasm, metering, HostCallCounting::Off)
    }

    /// Like [`FilterModule::compile`], optionally counting the host calls of
    /// each stream ([`StreamReport::host_calls`](crate::StreamReport::host_calls)).
    pub fn compile_instrumented(
        wasm: &[u8],
        metering: FuelMetering,
        counting: HostCallCounting,
    ) -> Result<FilterModule, HostError> {
        let mut config = Config::new();
        config.consume_fuel(metering == FuelMetering::On);
        // For `perf record` of a benchmark (BENCHMARKS.md, "Where the fuel goes"): wasmtime
        // names the compiled functions in /tmp/perf-<pid>.map, so samples in the filter's code
        // show under the filter's function names.
        if std::env::var_os("SLUICE_HOST_PERFMAP").is_some() {
            config.profiler(ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|error| HostError::Compile {
            message: format!("{error:?}"),
        })?;
        let module = Module::new(&engine, wasm).map_err(|error| HostError::Compile {
            message: format!("{error:?}"),
        })?;
        check_exports(&module)?;
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker).map_err(|error| HostError::Link {
            message: format!("{error:?}"),
        })?;
        let unknown_imports = define_unknown_imports(&mut linker, &module);
        let (linker, counted_imports, uncounted_imports) = match counting {
            HostCallCounting::Off => (linker, None, Vec::new()),
            HostCallCounting::On => {
                let (counting, counted, uncounted) = host_calls::counting_linker(&linker, &module)
                    .map_err(|error| HostError::Link {
                        message: format!("{error:?}"),
                    })?;
                (counting, Some(counted), uncounted)
            }
        };
        let instance_pre = linker
            .instantiate_pre(&module)
            .map_err(|error| HostError::Link {
                message: format!("{error:?}"),
            })?;
        Ok(FilterModule {
            inner: Arc::new(ModuleInner {
                engine,
                instance_pre,
                metering,
                unknown_imports,
                counted_imports,
                uncounted_imports,
            }),
        })
    }

    /// Whether callbacks are fuel-metered.
    pub fn metering(&self) -> FuelMetering {
        self.inner.metering
    }

    /// Whether the host counts each stream's host calls.
    pub fn host_call_counting(&self) -> HostCallCounting {
        match self.inner.counted_imports {
            Some(_) => HostCallCounting::On,
            None => HostCallCounting::Off,
        }
    }

    /// With host-call counting, the imports whose calls are not counted
    /// (`module.name`; see [`HostCalls`](crate::HostCalls)).
    pub fn uncounted_imports(&self) -> &[String] {
        &self.inner.uncounted_imports
    }

    pub(crate) fn counted_imports(&self) -> Option<&CountedImports> {
        self.inner.counted_imports.as_ref()
    }

    /// The `env` imports the host did not know, answered with
    /// `UNIMPLEMENTED` when called.
    pub fn unknown_imports(&self) -> &[String] {
        &self.inner.unknown_imports
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HostState> {
        &self.inner.instance_pre
    }
}

impl fmt::Debug for FilterModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterModule")
            .field("metering", &self.inner.metering)
            .field("host_call_counting", &self.host_call_counting())
            .field("unknown_imports", &self.inner.unknown_imports)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A module exporting `memory` (if asked), `proxy_abi_version_0_2_1` and
    /// the given names, all bound to one function of type `() -> ()`.
    pub(crate) fn minimal_module(with_memory: bool, extra_exports: &[&str]) -> Vec<u8> {
        fn section(id: u8, content: &[u8], into: &mut Vec<u8>) {
            into.push(id);
            into.push(u8::try_from(content.len()).expect("a small section"));
            into.extend_from_slice(content);
        }
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        section(1, &[1, 0x60, 0, 0], &mut wasm);
        section(3, &[1, 0], &mut wasm);
        if with_memory {
            section(5, &[1, 0, 1], &mut wasm);
        }
        let mut exports = Vec::new();
        let mut count = 0u8;
        let mut export = |name: &str, kind: u8| {
            exports.push(u8::try_from(name.len()).expect("a short name"));
            exports.extend_from_slice(name.as_bytes());
            exports.extend_from_slice(&[kind, 0]);
            count += 1;
        };
        if with_memory {
            export("memory", 2);
        }
        export("proxy_abi_version_0_2_1", 0);
        for name in extra_exports {
            export(name, 0);
        }
        exports.insert(0, count);
        section(7, &exports, &mut wasm);
        section(10, &[1, 2, 0, 0x0b], &mut wasm);
        wasm
    }

    #[test]
    fn a_module_with_only_the_abi_marker_and_memory_is_a_filter() {
        let module = FilterModule::from_bytes(&minimal_module(true, &[]));
        assert!(module.is_ok(), "{:?}", module.err());
    }

    #[test]
    fn a_callback_with_another_signature_is_refused() {
        let error = FilterModule::from_bytes(&minimal_module(true, &["proxy_on_tick"]))
            .expect_err("proxy_on_tick takes the root context id");
        assert!(
            matches!(
                error,
                HostError::BadExport {
                    name: "proxy_on_tick",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_module_without_memory_is_refused() {
        let error = FilterModule::from_bytes(&minimal_module(false, &[])).expect_err("no memory");
        assert!(matches!(error, HostError::MissingMemory), "{error}");
    }
}
