//! Clocks: `proxy_get_current_time_nanoseconds`, and the clocks behind
//! WASI's `clock_time_get`. Both read the proxy's [`Clock`], so a filter under
//! a fake clock sees the fake time whichever way it asks (Rust's
//! `SystemTime::now()` included).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Caller, Linker};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::{answer, memory};
use crate::clock::Clock;
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, time_out: u32| {
            let now = caller.data().env.clock.now_ns();
            answer(memory::write_u64(&mut caller, time_out, now))
        },
    )?;
    Ok(())
}

/// WASI's realtime clock: the proxy's clock.
pub(crate) struct WasiWallClock {
    pub clock: Clock,
}

impl HostWallClock for WasiWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.clock.now_ns())
    }
}

/// WASI's monotonic clock: real elapsed time under the system clock, the fake
/// time under a fake clock; never going backwards even if the fake time does.
pub(crate) struct WasiMonotonicClock {
    clock: Clock,
    origin: Instant,
    last: AtomicU64,
}

impl WasiMonotonicClock {
    pub(crate) fn new(clock: Clock) -> WasiMonotonicClock {
        WasiMonotonicClock {
            clock,
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl HostMonotonicClock for WasiMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let reading = match &self.clock {
            Clock::System => u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Fake(fake) => fake.now_ns(),
        };
        self.last.fetch_max(reading, Ordering::SeqCst).max(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let clock = Clock::fake(1_000);
        let monotonic = WasiMonotonicClock::new(clock.clone());
        assert_eq!(monotonic.now(), 1_000);
        if let Some(fake) = clock.as_fake() {
            fake.set_ns(10);
        }
        assert_eq!(monotonic.now(), 1_000);
        let wall = WasiWallClock { clock };
        assert_eq!(wall.now(), Duration::from_nanos(10), "the wall clock may");
    }
}
