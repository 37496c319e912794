//! Timers: `proxy_set_tick_period_milliseconds`. The worker running the VM
//! calls `proxy_on_tick` on the root context every period (or when the fake
//! clock passes the next tick, or when a test asks for a tick).
//!
//! Envoy (proxy-wasm-cpp-host's `Wasm::setTickPeriod`) re-arms the root
//! context's timer from now on every call, from any of its contexts, and
//! after each tick re-arms it with the period then set; so does this host.
//! ngx_wasm_module (`ngx_proxy_wasm_hfuncs_set_tick_period`) sets the period
//! once: a call from a stream's context is ignored (answered OK), and a second
//! one from the root context traps ("tick_period already set").

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::options::HostFlavor;
use crate::state::HostState;
use crate::types::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period_ms: u32| -> wasmtime::Result<u32> {
            let state = caller.data_mut();
            if state.env.flavor == HostFlavor::NgxWasmModule {
                if state.call.effective_context != state.root_context_id {
                    return Ok(Status::Ok.code());
                }
                if state.tick_period_set_once {
                    return Err(wasmtime::Error::msg("tick_period already set"));
                }
                state.tick_period_set_once = true;
            }
            // A period of 0 stops the timer.
            state.tick_period =
                (period_ms > 0).then(|| Duration::from_millis(u64::from(period_ms)));
            state.tick_period_changed = true;
            // The timer is armed now, not when the worker next looks.
            state.tick_period_set_at_ns = state.env.clock.now_ns();
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
