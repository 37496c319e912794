//! The one clock a limiter object decides, schedules its alarm and cleans up by.
//!
//! In production it is the runtime's clock. With the test hooks enabled, a request may carry a
//! test time; from the first such request on, the object runs on the test clock: the latest
//! test time it has been given. That clock stands still between test requests for every part
//! of the object (decisions, the alarm and the clean-up alike), so real time passing while a
//! test's clock stands still never recovers a state, and the clean-up never deletes a state
//! that has not recovered at the time of the requests the object serves. The test clock never
//! goes back: a request stamped earlier than the latest test time is decided at that time, as
//! the runtime's clock would have it.

use sluice_core::Nanos;
use sluice_core::time::NANOS_PER_MILLI;
use worker::Date;

/// Where an object's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectClock {
    /// The runtime's clock (production, and tests that send no test time).
    Runtime,
    /// The test clock: the latest test time given, in nanoseconds since the Unix epoch.
    Test(Nanos),
}

fn runtime_now() -> Nanos {
    Date::now().as_millis().saturating_mul(NANOS_PER_MILLI)
}

impl ObjectClock {
    /// Takes a request's test time into account (`None`: the request has none, or the hooks are
    /// off) and returns the time to decide it at.
    pub fn observe(&mut self, test_now: Option<Nanos>) -> Nanos {
        if let Some(at) = test_now {
            *self = match *self {
                ObjectClock::Test(latest) => ObjectClock::Test(latest.max(at)),
                ObjectClock::Runtime => ObjectClock::Test(at),
            };
        }
        self.now()
    }

    /// The current time.
    pub fn now(&self) -> Nanos {
        match *self {
            ObjectClock::Runtime => runtime_now(),
            ObjectClock::Test(now) => now,
        }
    }

    /// The current time in whole milliseconds (the unit of stored recovery times).
    pub fn now_ms(&self) -> u64 {
        self.now() / NANOS_PER_MILLI
    }

    /// In how many milliseconds of real time an alarm must fire for a clean-up due at `due_ms`
    /// on this clock, or `None` if no alarm can be set yet. On the runtime's clock: when that
    /// time comes. On a test clock, which only moves with requests: at once if the clock has
    /// reached `due_ms`, otherwise not until a request moves it there.
    pub fn alarm_delay_ms(&self, due_ms: u64) -> Option<i64> {
        let now_ms = self.now_ms();
        match self {
            ObjectClock::Runtime => {
                // One millisecond late rather than early: recovery times are rounded up to the
                // millisecond, and an alarm runs at or after its time.
                let wait = due_ms.saturating_sub(now_ms).saturating_add(1);
                Some(i64::try_from(wait).unwrap_or(i64::MAX))
            }
            ObjectClock::Test(_) => (now_ms >= due_ms).then_some(0),
        }
    }
}
