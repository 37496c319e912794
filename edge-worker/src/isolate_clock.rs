//! The isolate's time: what a request is decided at, and what work that outlives the decision
//! (holding a request for a delay rule, lease expiry) goes by.
//!
//! In production it is the runtime's clock. With the test hooks enabled, a request may carry a
//! test time (`x-sluice-test-now-ms`); the isolate then keeps the latest test time any of its
//! requests brought, which never goes back, as [`crate::object_clock`] does for an object. A
//! request held on the test clock goes on when a later request (a vector's next step, or the
//! test-only clock request, see [`crate::test_hooks`]) brings the isolate's clock to its
//! release time: tests move time and see exactly when each held request leaves, as the host's
//! fake clock shows it for the filter.

use std::cell::Cell;

use sluice_core::Nanos;
use sluice_core::time::NANOS_PER_MILLI;
use worker::Date;

/// Where a request's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolateClock {
    /// The runtime's clock.
    Runtime,
    /// A test clock standing at the request's test time.
    Test(Nanos),
}

thread_local! {
    /// The latest test time a request of this isolate brought.
    static LATEST_TEST_TIME: Cell<Option<Nanos>> = const { Cell::new(None) };
}

fn runtime_now() -> Nanos {
    Date::now().as_millis().saturating_mul(NANOS_PER_MILLI)
}

impl IsolateClock {
    /// The clock of a request with test time `test_now` (`None`: none, or the hooks are off),
    /// moving the isolate's test clock forward to it.
    pub fn observe(test_now: Option<Nanos>) -> IsolateClock {
        match test_now {
            Some(at) => {
                LATEST_TEST_TIME.with(|latest| {
                    latest.set(Some(latest.get().map_or(at, |seen| seen.max(at))));
                });
                IsolateClock::Test(at)
            }
            None => IsolateClock::Runtime,
        }
    }

    /// The request's time: the runtime's clock now, or the request's test time.
    pub fn now(self) -> Nanos {
        match self {
            IsolateClock::Runtime => runtime_now(),
            IsolateClock::Test(now) => now,
        }
    }

    /// Whether `at` has come: on the runtime's clock, by now; on the test clock, by the
    /// isolate's latest test time (which later requests move).
    pub fn has_reached(self, at: Nanos) -> bool {
        match self {
            IsolateClock::Runtime => runtime_now() >= at,
            IsolateClock::Test(_) => latest_test_time().is_some_and(|latest| latest >= at),
        }
    }
}

/// The isolate's latest test time, if a request brought one.
pub fn latest_test_time() -> Option<Nanos> {
    LATEST_TEST_TIME.with(Cell::get)
}
