//! The time the host gives its filters, and that drives their ticks.
//!
//! Time is absolute: nanoseconds since the Unix epoch, as
//! `proxy_get_current_time_nanoseconds` and WASI's realtime clock report it.
//! A [`FakeClock`] only moves when a test moves it; moving it also fires the
//! ticks that became due, on every worker of every proxy using it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Called when a fake clock moves; answers `false` once it no longer wants to
/// be called (its proxy has stopped).
pub(crate) type ClockListener = Box<dyn Fn() -> bool + Send + Sync>;

/// Where the host reads the time.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The operating system's clock; ticks fire on real timers.
    #[default]
    System,
    /// A clock that tests set and advance.
    Fake(FakeClock),
}

impl Clock {
    /// A fake clock starting at `start_ns` nanoseconds since the Unix epoch.
    pub fn fake(start_ns: u64) -> Clock {
        Clock::Fake(FakeClock::new(start_ns))
    }

    /// Nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::System => system_now_ns(),
            Clock::Fake(fake) => fake.now_ns(),
        }
    }

    /// The fake clock, if this is one.
    pub fn as_fake(&self) -> Option<&FakeClock> {
        match self {
            Clock::System => None,
            Clock::Fake(fake) => Some(fake),
        }
    }

    /// Registers `listener` to be called whenever a fake clock moves. A system
    /// clock has no such moments: workers wait on real timers instead.
    pub(crate) fn subscribe(&self, listener: ClockListener) {
        if let Clock::Fake(fake) = self {
            fake.subscribe(listener);
        }
    }
}

fn system_now_ns() -> u64 {
    // A system clock set before 1970 reads as the epoch rather than failing.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A clock shared by a test and the proxies it drives. Cloning shares it.
#[derive(Clone)]
pub struct FakeClock {
    inner: Arc<FakeClockInner>,
}

struct FakeClockInner {
    now_ns: AtomicU64,
    listeners: Mutex<Vec<ClockListener>>,
}

impl FakeClock {
    /// A clock reading `start_ns` nanoseconds since the Unix epoch.
    pub fn new(start_ns: u64) -> FakeClock {
        FakeClock {
            inner: Arc::new(FakeClockInner {
                now_ns: AtomicU64::new(start_ns),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        self.inner.now_ns.load(Ordering::SeqCst)
    }

    /// Sets the time (it may go backwards, as a real clock can).
    pub fn set_ns(&self, now_ns: u64) {
        self.inner.now_ns.store(now_ns, Ordering::SeqCst);
        self.notify();
    }

    /// Moves the time forward by `by` (saturating at the largest time).
    pub fn advance(&self, by: Duration) {
        let by_ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // `fetch_update` with a closure that always answers `Some` cannot fail.
        let _ = self
            .inner
            .now_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by_ns))
            });
        self.notify();
    }

    fn subscribe(&self, listener: ClockListener) {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    fn notify(&self) {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|listener| listener());
    }
}

impl fmt::Debug for FakeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeClock")
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_fake_clock_moves_only_when_told() {
        let clock = Clock::fake(1_000);
        assert_eq!(clock.now_ns(), 1_000);
        let fake = clock
            .as_fake()
            .cloned()
            .unwrap_or_else(|| FakeClock::new(0));
        fake.advance(Duration::from_micros(2));
        assert_eq!(clock.now_ns(), 3_000, "clones share the time");
        fake.set_ns(500);
        assert_eq!(clock.now_ns(), 500);
        fake.advance(Duration::MAX);
        assert_eq!(clock.now_ns(), u64::MAX, "advancing saturates");
    }

    #[test]
    fn listeners_hear_every_move_until_they_decline() {
        let fake = FakeClock::new(0);
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        fake.subscribe(Box::new(move || seen.fetch_add(1, Ordering::SeqCst) < 1));
        fake.advance(Duration::from_secs(1));
        fake.set_ns(5);
        fake.advance(Duration::from_secs(1));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "dropped after answering false"
        );
    }

    #[test]
    fn the_system_clock_reads_a_plausible_time() {
        let after_2020 = 1_577_836_800_000_000_000;
        assert!(Clock::System.now_ns() > after_2020);
    }
}
