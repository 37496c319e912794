//! Metrics: `proxy_define_metric`, `proxy_increment_metric`,
//! `proxy_record_metric`, `proxy_get_metric`.
//!
//! Ids belong to the VM; the values live in the proxy-wide registry, keyed by
//! name, so every VM defining `requests` updates one stat. Defining the same
//! metric again in a VM answers the id it already has.

use wasmtime::{Caller, Linker};

use super::{AbiResult, answer, memory};
use crate::metrics::MetricKind;
use crate::state::HostState;
use crate::types::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         metric_type: u32,
         name: u32,
         name_size: u32,
         id_out: u32| { answer(define(&mut caller, metric_type, name, name_size, id_out)) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: Caller<'_, HostState>, metric_id: u32, delta: i64| {
            answer(with_metric(&caller, metric_id, |metrics, name| {
                metrics.increment(name, delta)
            }))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: Caller<'_, HostState>, metric_id: u32, value: u64| {
            answer(with_metric(&caller, metric_id, |metrics, name| {
                metrics.record(name, value)
            }))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, metric_id: u32, value_out: u32| {
            answer(get(&mut caller, metric_id, value_out))
        },
    )?;
    Ok(())
}

fn define(
    caller: &mut Caller<'_, HostState>,
    metric_type: u32,
    name: u32,
    name_size: u32,
    id_out: u32,
) -> AbiResult<()> {
    let kind = MetricKind::from_code(metric_type).ok_or(Status::BadArgument)?;
    let name = String::from_utf8_lossy(&memory::read(caller, name, name_size)?).into_owned();
    memory::check(caller, id_out, 4)?;
    let state = caller.data_mut();
    state.env.metrics.define(kind, &name)?;
    let existing = state
        .metric_ids
        .iter()
        .find(|(_, (known_kind, known_name))| *known_kind == kind && *known_name == name)
        .map(|(id, _)| *id);
    let id = match existing {
        Some(id) => id,
        None => {
            let id = state
                .last_metric_id
                .checked_add(1)
                .ok_or(Status::InternalFailure)?;
            state.last_metric_id = id;
            state.metric_ids.insert(id, (kind, name));
            id
        }
    };
    memory::write_u32(caller, id_out, id)
}

fn with_metric(
    caller: &Caller<'_, HostState>,
    metric_id: u32,
    operation: impl FnOnce(&crate::metrics::Metrics, &str) -> Result<(), Status>,
) -> AbiResult<()> {
    let state = caller.data();
    let (_, name) = state.metric_ids.get(&metric_id).ok_or(Status::NotFound)?;
    operation(&state.env.metrics, name)?;
    Ok(())
}

fn get(caller: &mut Caller<'_, HostState>, metric_id: u32, value_out: u32) -> AbiResult<()> {
    let state = caller.data();
    let (_, name) = state.metric_ids.get(&metric_id).ok_or(Status::NotFound)?;
    let value = state.env.metrics.get(name)?;
    memory::write_u64(caller, value_out, value)
}
