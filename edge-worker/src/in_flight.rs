//! Concurrency rules: a passed request holds one slot per concurrency rule, taken by the
//! rule's object when it admitted the request, until the request's forward to the origin has
//! ended (the origin's response has come back, or the origin failed); the slots are then given
//! back with one release call per object, after the response ([`release`]).
//!
//! A release that is lost (the call fails, the isolate is evicted) costs nothing forever: a
//! slot expires on its own after the rule's `slot_ttl` (`sluice_core::algorithm::concurrency`).
//! A body the origin streams after its headers does not hold the slot. A request whose client
//! leaves while it is forwarded keeps `waitUntil` work pending (`keep_alive`), so the forward
//! and the release still run.

use std::cell::Cell;

use crate::gateway::{self, Commits, Objects};
use crate::isolate_clock::{self, IsolateClock};
use crate::stats;

thread_local! {
    /// Requests of this isolate holding slots not given back yet (forwarded, or releasing).
    static HOLDING_SLOTS: Cell<u64> = const { Cell::new(0) };
}

/// A request that took `slots` and is being forwarded: counted until [`release`] has given
/// them back.
#[derive(Debug)]
pub struct Forwarding {
    slots: Commits,
}

/// Starts counting a forwarded request's slots (none: nothing to count or release).
pub fn forwarding(slots: Commits) -> Option<Forwarding> {
    if slots.is_empty() {
        return None;
    }
    HOLDING_SLOTS.with(|n| n.set(n.get().saturating_add(1)));
    Some(Forwarding { slots })
}

/// Gives back the slots of a request whose forward has ended, after the response
/// (`ctx.wait_until`), at the isolate's time on `clock` (a test clock: its latest time; the
/// runtime's: each object's own).
pub fn release(
    ctx: &worker::Context,
    objects: &Objects,
    forwarded: Forwarding,
    clock: IsolateClock,
) {
    let slots = forwarded.slots;
    let objects = objects.clone();
    ctx.wait_until(async move {
        let now = match clock {
            IsolateClock::Test(_) => isolate_clock::latest_test_time(),
            IsolateClock::Runtime => None,
        };
        let released = gateway::release_slots(&objects, slots, now).await;
        stats::count(
            &stats::RELEASED,
            u64::try_from(released.len()).unwrap_or(u64::MAX),
        );
        HOLDING_SLOTS.with(|n| n.set(n.get().saturating_sub(1)));
    });
}

/// Requests of this isolate holding concurrency slots not given back yet (for the test
/// hooks).
pub fn holding_slots() -> u64 {
    HOLDING_SLOTS.with(Cell::get)
}
