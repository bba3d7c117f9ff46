//! A wake-up flag for tasks on one thread: the single-threaded worker needs no atomics or
//! locks to wake a connection's task. (tokio's `Notify` is built for threads and
//! takes a lock on its waiter list; this is the few lines that one thread needs.)

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Wakes one waiting task on the same thread; a notify before the wait is kept.
#[derive(Default)]
pub struct LocalSignal {
    notified: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl LocalSignal {
    /// A signal with no pending notification.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes the waiting task, if any.
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Ready (clearing the flag) when notified since the last ready poll; else registers
    /// the task's waker.
    pub fn poll_wait(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.notified.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    /// Resolves once the flag is set, and clears it.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.notified.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}
