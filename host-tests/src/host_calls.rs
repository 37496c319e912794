//! Counting the host calls a filter makes, by ABI function: unlike their
//! time, the number of calls a request causes is deterministic, so a
//! benchmark can report it and a test can pin it.
//!
//! A counting module is linked to wrappers: each `env` import (the
//! proxy-wasm ABI) and WASI `fd_write` (which this host implements itself)
//! is a function that counts the call and forwards it to the host's own
//! definition, instantiated in the same store. The other WASI functions come
//! from wasmtime-wasi, which must be called by the guest itself (it looks up
//! the caller's memory export), so they are linked directly and not counted;
//! [`FilterModule::uncounted_imports`](crate::FilterModule::uncounted_imports)
//! names them.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::{Caller, ExternType, Func, Linker, Module, Store, Val};

use crate::state::HostState;

/// Whether the host counts the calls the filter makes (see [`HostCalls`]).
/// Counting routes every counted call through a dynamic wrapper, which
/// costs time: time a counting module's requests only to compare them with
/// each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HostCallCounting {
    #[default]
    Off,
    On,
}

/// How many times a stream's callbacks called each host function, by its
/// import name (`proxy_get_shared_data`, `fd_write`, …). Functions never
/// called are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCalls {
    counts: BTreeMap<String, u64>,
}

impl HostCalls {
    /// The calls to `function`.
    pub fn get(&self, function: &str) -> u64 {
        self.counts.get(function).copied().unwrap_or(0)
    }

    /// All counted calls.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Each function called, with its count, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts
            .iter()
            .map(|(name, count)| (name.as_str(), *count))
    }

    /// Adds `other`'s counts to these (e.g. to total several streams).
    pub fn merge(&mut self, other: &HostCalls) {
        for (name, count) in other.iter() {
            *self.counts.entry(name.to_string()).or_insert(0) += count;
        }
    }

    /// The calls counted here but not in `earlier`, an earlier reading of the same running
    /// total (e.g. [`TickReport::host_calls`](crate::TickReport::host_calls) before and
    /// after a stretch of requests).
    pub fn since(&self, earlier: &HostCalls) -> HostCalls {
        let counts = self
            .iter()
            .map(|(name, count)| (name.to_string(), count.saturating_sub(earlier.get(name))))
            .filter(|(_, count)| *count > 0)
            .collect();
        HostCalls { counts }
    }

    pub(crate) fn add(&mut self, names: &[String], counts: &[u64]) {
        for (name, &count) in names.iter().zip(counts) {
            if count > 0 {
                *self.counts.entry(name.clone()).or_insert(0) += count;
            }
        }
    }
}

/// The counted imports of a module, and the linker with the host's own
/// definitions the wrappers forward to.
#[derive(Clone)]
pub(crate) struct CountedImports {
    names: Arc<[String]>,
    /// `(module, name)` of each counted import, in the order of `names`.
    imports: Vec<(String, String)>,
    targets: Linker<HostState>,
}

/// One VM's counts and the definitions its wrappers forward to.
pub(crate) struct Counter {
    pub names: Arc<[String]>,
    targets: Vec<Func>,
    counts: Vec<u64>,
}

impl Counter {
    /// The counts since the last call, which start again from zero.
    pub(crate) fn take(&mut self) -> Vec<u64> {
        let fresh = vec![0; self.counts.len()];
        std::mem::replace(&mut self.counts, fresh)
    }
}

fn counted(module: &str, name: &str) -> bool {
    module == "env" || (module == "wasi_snapshot_preview1" && name == "fd_write")
}

/// Builds the linker a counting module is instantiated with: `targets` (the
/// host's definitions) with every counted import of `module` replaced by a
/// counting wrapper. Answers that linker, the counted imports, and the names
/// of the imports left uncounted.
pub(crate) fn counting_linker(
    targets: &Linker<HostState>,
    module: &Module,
) -> wasmtime::Result<(Linker<HostState>, CountedImports, Vec<String>)> {
    let mut linker = targets.clone();
    linker.allow_shadowing(true);
    let mut names = Vec::new();
    let mut imports = Vec::new();
    let mut uncounted = Vec::new();
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        if !counted(import.module(), import.name()) {
            uncounted.push(format!("{}.{}", import.module(), import.name()));
            continue;
        }
        let index = names.len();
        names.push(import.name().to_string());
        imports.push((import.module().to_string(), import.name().to_string()));
        linker.func_new(
            import.module(),
            import.name(),
            ty,
            move |mut caller: Caller<'_, HostState>, params: &[Val], results: &mut [Val]| {
                let target = caller.data_mut().host_calls.as_mut().and_then(|counter| {
                    let count = counter.counts.get_mut(index)?;
                    *count += 1;
                    counter.targets.get(index).copied()
                });
                match target {
                    Some(target) => target.call(&mut caller, params, results),
                    None => Err(wasmtime::format_err!(
                        "host call counting is not set up for this VM"
                    )),
                }
            },
        )?;
    }
    Ok((
        linker,
        CountedImports {
            names: names.into(),
            imports,
            targets: targets.clone(),
        },
        uncounted,
    ))
}

impl CountedImports {
    /// The counter of a VM living in `store`: the host's definitions
    /// instantiated there, and zero counts.
    pub(crate) fn counter(&self, store: &mut Store<HostState>) -> wasmtime::Result<Counter> {
        let mut targets = Vec::with_capacity(self.imports.len());
        for (module, name) in &self.imports {
            let Some(target) = self.targets.get(&mut *store, module, name)?.into_func() else {
                return Err(wasmtime::format_err!(
                    "the host's {module}.{name} is not a function"
                ));
            };
            targets.push(target);
        }
        Ok(Counter {
            names: Arc::clone(&self.names),
            counts: vec![0; targets.len()],
            targets,
        })
    }
}
