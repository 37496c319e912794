//! WASI preview 1, from wasmtime-wasi, for filters built for `wasm32-wasip1`.
//!
//! A filter gets no arguments, no environment, no files and no stdin; its
//! clocks are the proxy's clock (see [`super::clocks`]); `random_get` draws
//! from the operating system; `fd_write` on stdout and stderr becomes log
//! lines (see [`super::logging`]).

use wasmtime::Linker;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use super::clocks::{WasiMonotonicClock, WasiWallClock};
use super::logging;
use crate::clock::Clock;
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |state: &mut HostState| &mut state.wasi)?;
    linker.allow_shadowing(true);
    let replaced = logging::add_fd_write_to_linker(linker);
    linker.allow_shadowing(false);
    replaced
}

/// The WASI context of one VM.
pub(crate) fn context(clock: &Clock) -> WasiP1Ctx {
    WasiCtxBuilder::new()
        .wall_clock(WasiWallClock {
            clock: clock.clone(),
        })
        .monotonic_clock(WasiMonotonicClock::new(clock.clone()))
        .build_p1()
}
