//! Keeping a request's context alive while the worker still owes it work that must not be
//! lost if its client leaves: a held request's give-back, a concurrency slot's release.
//!
//! The runtime tears a request's context down as soon as its client disconnects, cancelling
//! whatever the request was waiting for, unless `waitUntil` work is pending. A [`KeepAlive`]
//! is such work: a future that resolves when the guard is dropped.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Resolves once its [`KeepAlive`] is dropped.
#[derive(Debug, Clone, Default)]
struct Ended {
    done: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Future for Ended {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done.get() {
            return Poll::Ready(());
        }
        if let Ok(mut waker) = self.waker.try_borrow_mut() {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// While it lives, the request's context has `waitUntil` work pending.
#[derive(Debug)]
pub struct KeepAlive(Ended);

/// Keeps `ctx` alive until the returned guard is dropped.
pub fn start(ctx: &worker::Context) -> KeepAlive {
    let ended = Ended::default();
    ctx.wait_until(ended.clone());
    KeepAlive(ended)
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.done.set(true);
        if let Some(waker) = self
            .0
            .waker
            .try_borrow_mut()
            .ok()
            .and_then(|mut w| w.take())
        {
            waker.wake();
        }
    }
}
