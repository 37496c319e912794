//! Timers: `proxy_set_tick_period_milliseconds`. The worker running the VM
//! calls `proxy_on_tick` on the root context every period (or when the fake
//! clock passes the next tick, or when a test asks for a tick).

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::state::HostState;
use crate::types::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period_ms: u32| -> wasmtime::Result<u32> {
            let state = caller.data_mut();
            // A period of 0 stops the timer.
            state.tick_period =
                (period_ms > 0).then(|| Duration::from_millis(u64::from(period_ms)));
            state.tick_period_changed = true;
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}
