//! Requests held by delay rules: a bounded queue per VM of paused streams and when each goes
//! on, released from the root context's tick.
//!
//! A held request's stream is paused in `on_http_request_headers`. The root context's tick
//! releases every request whose time has come: `proxy_set_effective_context` to its stream,
//! then `proxy_continue_stream`. While requests are held, the tick is set to fire at the
//! earliest release (whole milliseconds, rounded up: a request goes on at most 1 ms after its
//! slot, plus the proxy's own timer lateness); when none are, it goes back to the VM's normal
//! period (metrics, leases). Setting a period re-arms the timer from now (Envoy since
//! proxy-wasm-cpp-host's timer rework; the host tests do the same), so the period is only set
//! when the tick must come sooner than it is due, or from the tick itself.
//!
//! A host where `proxy_set_effective_context` cannot switch to a stream (ngx_wasm_module
//! answers OK to any id and ignores it, and allows the tick period to be set only once) cannot
//! resume a request from the tick: the VM then holds nothing, and a request a delay rule would
//! hold is denied as the rule denies without delay.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use sluice_core::Nanos;

use crate::host;
use crate::metrics::HoldCounters;

const NANOS_PER_MILLI: u64 = 1_000_000;

/// The held requests of one VM.
pub struct Holding {
    /// (release time, stream context id), earliest first.
    queue: RefCell<BinaryHeap<Reverse<(Nanos, u32)>>>,
    max_held: usize,
    /// Whether this host can resume a stream from the root context.
    can_resume: bool,
    /// The VM's tick period when nothing is held.
    base_period: Duration,
    /// The period last set, and when the tick it set is due.
    period: Cell<Duration>,
    due_at: Cell<Nanos>,
    /// When a tick last did the base period's work.
    base_work_at: Cell<Nanos>,
    pub counters: HoldCounters,
}

impl Holding {
    /// The holding queue of a VM whose tick period is `base_period`, holding at most
    /// `max_held` requests. Probes whether the host can switch the effective context to a
    /// stream (an unknown context id must be refused, as Envoy does).
    pub fn new(max_held: u32, base_period: Duration, now: Nanos) -> Holding {
        let can_resume = host::effective_context_is_checked();
        Holding {
            queue: RefCell::new(BinaryHeap::new()),
            max_held: usize::try_from(max_held).unwrap_or(usize::MAX),
            can_resume,
            base_period,
            period: Cell::new(base_period),
            due_at: Cell::new(now.saturating_add(duration_nanos(base_period))),
            base_work_at: Cell::new(now),
            counters: HoldCounters::define(),
        }
    }

    /// Whether requests can be held on this host at all.
    pub fn can_resume(&self) -> bool {
        self.can_resume
    }

    /// Whether this tick does the base period's work (the metrics' flush, the leases): a
    /// tick at the base period always; one brought forward to release a held request only
    /// once the base period has passed since that work was last done (a steady stream of
    /// held requests would otherwise flush the metrics, host calls, once per request).
    pub fn base_work_due(&self, now: Option<Nanos>) -> bool {
        let early = self.period.get() < self.base_period;
        let due = !early
            || now.is_none_or(|now| {
                now >= self
                    .base_work_at
                    .get()
                    .saturating_add(duration_nanos(self.base_period))
            });
        if due {
            self.base_work_at.set(now.unwrap_or_default());
        }
        due
    }

    /// Whether one more request can be held now.
    pub fn has_room(&self) -> bool {
        self.can_resume
            && self
                .queue
                .try_borrow()
                .is_ok_and(|queue| queue.len() < self.max_held)
    }

    /// Holds stream `context_id` until `release_at`; false if there is no room (the caller
    /// checked [`Holding::has_room`] first, so only a re-entrant call gets there).
    pub fn hold(&self, context_id: u32, release_at: Nanos, now: Nanos) -> bool {
        {
            let Ok(mut queue) = self.queue.try_borrow_mut() else {
                return false;
            };
            if !self.can_resume || queue.len() >= self.max_held {
                return false;
            }
            queue.push(Reverse((release_at, context_id)));
        }
        self.counters.held();
        // Only sooner than the tick already due: setting the period re-arms the timer, so
        // doing it for every request would keep pushing the tick back.
        if release_at < self.due_at.get() {
            self.retime(now);
        }
        true
    }

    /// Takes stream `context_id` out of the queue (its stream ended while held); false if it
    /// was not held (already released).
    pub fn abandon(&self, context_id: u32) -> bool {
        let Ok(mut queue) = self.queue.try_borrow_mut() else {
            return false;
        };
        let before = queue.len();
        queue.retain(|Reverse((_, id))| *id != context_id);
        let removed = queue.len() < before;
        if removed {
            self.counters.abandoned();
        }
        removed
    }

    /// From the root context's tick: resumes every held stream whose time has come, then
    /// sets the tick for the next release (or back to the base period).
    pub fn release_due(&self, now: Nanos) {
        loop {
            let next = {
                let Ok(mut queue) = self.queue.try_borrow_mut() else {
                    return;
                };
                match queue.peek() {
                    Some(Reverse((release_at, _))) if *release_at <= now => queue.pop(),
                    _ => None,
                }
            };
            let Some(Reverse((_, context_id))) = next else {
                break;
            };
            // A stream that is gone (reset meanwhile) is refused: nothing to resume.
            if host::set_effective_context(context_id) && !host::continue_request() {
                host::log(
                    host::LogLevel::Error,
                    "sluice: the proxy refused to resume a held request",
                );
            }
        }
        // After a tick the proxy re-arms the timer with the period from now.
        self.retime(now);
    }

    /// Sets the tick to fire at the earliest release (at least 1 ms away, at most the base
    /// period), or back to the base period when nothing is held.
    fn retime(&self, now: Nanos) {
        let next = self
            .queue
            .try_borrow()
            .ok()
            .and_then(|queue| queue.peek().map(|Reverse((at, _))| *at));
        let period = match next {
            Some(at) => {
                let millis = at.saturating_sub(now).div_ceil(NANOS_PER_MILLI).max(1);
                Duration::from_millis(millis).min(self.base_period)
            }
            None => self.base_period,
        };
        let due = now.saturating_add(duration_nanos(period));
        if period != self.period.get() || next.is_some() {
            if !host::set_tick_period(period) {
                return;
            }
            self.period.set(period);
        }
        self.due_at.set(due);
    }
}

fn duration_nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
