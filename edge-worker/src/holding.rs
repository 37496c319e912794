//! Requests held by delay rules: the isolate's bounded set of held requests, and waiting out a
//! hold while watching for the client to leave.
//!
//! A request a delay rule admits with a hold ([`sluice_core::Verdict::delay`]) was committed
//! by its objects at once; the worker then waits before forwarding it to the origin. The
//! isolate holds at most `shaping.max_held` requests at once ([`reserve`]): beyond that, the
//! request is denied as its holding rules deny without delay and its commits are given back
//! (`sluice_policy::shaping::deny_instead_of_holding`), as the filter does per VM.
//!
//! A request's release time is when its slot comes on the clock of the object that admitted
//! it: the object's time of the decision plus the hold (the latest of its holding rules'). On
//! the runtime's clock the worker waits for that time with one timer (whole milliseconds,
//! rounded up), so the trip of the object's answer is part of the hold rather than added to
//! it; the wait is never longer than the hold itself, so a worker clock behind the object's
//! cannot hold a request longer than its rule says. On a test clock ([`IsolateClock::Test`])
//! the request goes on when a later request brings the isolate's test clock to its release
//! time (checked every millisecond of real time).
//!
//! A client that leaves while its request is held is seen through the incoming request's
//! `signal` (the `enable_request_signal` compatibility flag, set in `wrangler.toml`): the wait
//! ends with [`HoldEnd::ClientGone`], and the caller gives the request's units back. The hold
//! keeps `waitUntil` work pending, without which the runtime tears the context down as the
//! client leaves, before the abort is delivered. Without the flag, or where the runtime does
//! not abort the signal (local workerd, which the test suite runs, does not: workerd issue
//! 5062), a departed client's request stays counted, as if it had gone on.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::{Either, select};
use sluice_core::time::NANOS_PER_MILLI;
use sluice_core::{Check, Nanos, Verdict};
use sluice_policy::Policy;
use sluice_policy::shaping::deny_instead_of_holding;
use worker::Delay;
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen::closure::Closure;
use worker::web_sys::AbortSignal;

use crate::gateway::{self, Commits, Objects};
use crate::isolate_clock::IsolateClock;
use crate::keep_alive;
use crate::{negative_cache, stats};

/// How often a request held on a test clock looks whether the clock has reached its release.
const TEST_CLOCK_POLL: Duration = Duration::from_millis(1);

/// The held requests of this isolate: (id, release time on the request's clock).
#[derive(Debug, Default)]
struct Held {
    requests: Vec<(u64, Nanos)>,
    next_id: u64,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// A held request's place in the isolate's count; dropping it (released, given back, or the
/// request cancelled) frees the place.
#[derive(Debug)]
struct HoldSlot {
    id: u64,
    release_at: Nanos,
    delay: Nanos,
}

/// When a request allowed with `verdict` goes on: the latest, over its rules that hold it, of
/// the time their object committed it (`committed_at`, per check; `now` if unknown) plus the
/// rule's hold.
pub fn release_time(verdict: &Verdict, committed_at: &[Option<Nanos>], now: Nanos) -> Nanos {
    verdict
        .outcomes
        .iter()
        .zip(committed_at.iter().copied().chain(std::iter::repeat(None)))
        .filter(|(outcome, _)| outcome.decision.delay > 0)
        .map(|(outcome, at)| at.unwrap_or(now).saturating_add(outcome.decision.delay))
        .max()
        .unwrap_or(now)
}

/// Takes a place for a request held `delay` (its verdict's) until `release_at`, if fewer than
/// `max_held` requests are held in this isolate.
fn reserve(max_held: u32, release_at: Nanos, delay: Nanos) -> Option<HoldSlot> {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        let max = usize::try_from(max_held).unwrap_or(usize::MAX);
        if held.requests.len() >= max {
            return None;
        }
        let id = held.next_id;
        held.next_id = held.next_id.wrapping_add(1);
        held.requests.push((id, release_at));
        Some(HoldSlot {
            id,
            release_at,
            delay,
        })
    })
}

impl Drop for HoldSlot {
    fn drop(&mut self) {
        HELD.with(|held| {
            if let Ok(mut held) = held.try_borrow_mut() {
                held.requests.retain(|(id, _)| *id != self.id);
            }
        });
    }
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Its time came: forward the request.
    Released,
    /// The client left first: give its units back.
    ClientGone,
}

/// A request being held: its place, and what it committed, to give back if it never goes on.
#[derive(Debug)]
pub struct Hold {
    slot: HoldSlot,
    commits: Commits,
}

/// For a request `verdict` allows with a hold (its checks' commits at `committed_at`): a place
/// among the isolate's held requests, or, when `shaping.max_held` are held already, its
/// commits given back and `verdict` turned into its holding rules' denial. Returns the hold
/// (`None`: refused) and the object calls made.
pub async fn hold_or_refuse(
    policy: &Policy,
    objects: &Objects,
    checks: &[Check<'_>],
    verdict: &mut Verdict,
    committed_at: &[Option<Nanos>],
    now: Nanos,
) -> (Option<Hold>, u32) {
    let commits = Commits::of(checks, committed_at);
    let release_at = release_time(verdict, committed_at, now);
    match reserve(policy.shaping().max_held(), release_at, verdict.delay()) {
        Some(slot) => {
            stats::count(&stats::HELD, 1);
            (Some(Hold { slot, commits }), 0)
        }
        None => {
            stats::count(&stats::HELD_REFUSED, 1);
            let calls = give_back(objects, commits, now).await;
            deny_instead_of_holding(checks, verdict);
            (None, calls)
        }
    }
}

impl Hold {
    /// Waits until the request's release on `clock`, or until `client` (the incoming request's
    /// signal, if the runtime gives one) aborts. While it waits, `ctx` has work pending: a
    /// request's context is torn down as soon as its client leaves unless it has, and the
    /// abort would then never be delivered.
    pub async fn wait(
        &self,
        ctx: &worker::Context,
        clock: IsolateClock,
        client: Option<&AbortSignal>,
    ) -> HoldEnd {
        let _alive = client.is_some().then(|| keep_alive::start(ctx));
        let slot = &self.slot;
        let gone = || client.is_some_and(AbortSignal::aborted);
        match clock {
            IsolateClock::Runtime => {
                let left = slot.release_at.saturating_sub(clock.now()).min(slot.delay);
                let millis = left.div_ceil(NANOS_PER_MILLI);
                let timer = Delay::from(Duration::from_millis(millis));
                match client {
                    Some(signal) => {
                        match select(Box::pin(timer), Box::pin(Aborted::new(signal))).await {
                            Either::Left(((), _)) => HoldEnd::Released,
                            Either::Right(((), _)) => HoldEnd::ClientGone,
                        }
                    }
                    None => {
                        timer.await;
                        HoldEnd::Released
                    }
                }
            }
            IsolateClock::Test(_) => loop {
                if gone() {
                    return HoldEnd::ClientGone;
                }
                if clock.has_reached(slot.release_at) {
                    return HoldEnd::Released;
                }
                Delay::from(TEST_CLOCK_POLL).await;
            },
        }
    }

    /// The client left while the request was held: its commits are given back after the
    /// request's context (which ends with its client), and it keeps its place among the held
    /// until they are.
    pub fn abandon(self, ctx: &worker::Context, objects: &Objects, now: Nanos) {
        stats::count(&stats::HELD_ABANDONED, 1);
        let objects = objects.clone();
        ctx.wait_until(async move {
            give_back(&objects, self.commits, now).await;
            drop(self.slot);
        });
    }
}

/// Gives back what a request that will not go on committed, and lets the negative cache learn
/// the keys' states after. Returns the object calls made.
async fn give_back(objects: &Objects, commits: Commits, now: Nanos) -> u32 {
    if commits.is_empty() {
        return 0;
    }
    let (refunded, calls) = gateway::refund_commits(objects, commits).await;
    negative_cache::with(|cache| {
        for (check, seen) in &refunded {
            cache.refunded(&check.rule, &check.key, check.limit, seen.as_ref(), now);
        }
    });
    calls
}

/// The release times of the requests held now whose time has not come on the isolate's test
/// clock, earliest first (for the test hooks).
pub fn pending_on_test_clock() -> Vec<Nanos> {
    let latest = crate::isolate_clock::latest_test_time().unwrap_or(0);
    let mut pending: Vec<Nanos> = HELD.with(|held| {
        held.borrow()
            .requests
            .iter()
            .map(|(_, at)| *at)
            .filter(|at| *at > latest)
            .collect()
    });
    pending.sort_unstable();
    pending
}

/// The incoming request's abort signal, if the runtime gives it one.
pub fn client_signal(request: &worker::Request) -> Option<AbortSignal> {
    let value = worker::js_sys::Reflect::get(request.inner(), &"signal".into()).ok()?;
    value.dyn_into::<AbortSignal>().ok()
}

/// Resolves when `signal` aborts.
struct Aborted {
    signal: AbortSignal,
    waker: Rc<RefCell<Option<Waker>>>,
    fired: Rc<Cell<bool>>,
    handler: Option<Closure<dyn FnMut()>>,
}

impl Aborted {
    fn new(signal: &AbortSignal) -> Aborted {
        Aborted {
            signal: signal.clone(),
            waker: Rc::new(RefCell::new(None)),
            fired: Rc::new(Cell::new(false)),
            handler: None,
        }
    }
}

impl Future for Aborted {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.get() || self.signal.aborted() {
            return Poll::Ready(());
        }
        if let Ok(mut waker) = self.waker.try_borrow_mut() {
            *waker = Some(cx.waker().clone());
        }
        if self.handler.is_none() {
            let (waker, fired) = (self.waker.clone(), self.fired.clone());
            let handler = Closure::<dyn FnMut()>::new(move || {
                fired.set(true);
                if let Some(waker) = waker.try_borrow_mut().ok().and_then(|mut w| w.take()) {
                    waker.wake();
                }
            });
            self.signal
                .set_onabort(Some(handler.as_ref().unchecked_ref()));
            self.handler = Some(handler);
        }
        Poll::Pending
    }
}

impl Drop for Aborted {
    fn drop(&mut self) {
        if self.handler.is_some() {
            self.signal.set_onabort(None);
        }
    }
}
