//! The data path goes first: a worker runs its fan-out as the `LocalSet`'s own future,
//! not as one of its tasks.
//!
//! A `LocalSet` polls the future it was started with (`block_on`/`run_until`) before
//! every turn of at most [`TASKS_PER_TURN`] tasks. A spawned task that yields goes to the
//! back of the queue instead, behind every connection task that is ready: when many
//! connections have work at once (a reconnect storm, a thousand dashboards resubscribing)
//! the trades would wait in the ring for all of them. As the top-level future the
//! fan-out waits at most one turn. (The 10–16 ms stalls once seen during connect ramps
//! had another cause, the descriptor table's growth: see `crate::fd_table`. This bounds
//! the worst case that remains.)
//!
//! A spawned task's panic was caught by tokio and seen through its `JoinHandle`; the
//! top-level future has no handle, so [`Caught`] catches the fan-out's panic itself.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How many tasks a `LocalSet` runs between two polls of its own future (tokio's
/// `MAX_TASKS_PER_TICK`); the most connection tasks a fan-out pass can wait for.
pub const TASKS_PER_TURN: usize = 61;

/// What a panicking future left: the panic's payload.
pub type Panic = Box<dyn Any + Send + 'static>;

/// A future whose panic becomes its output (`Err`) instead of unwinding into the
/// runtime. It must not be polled again after it has returned.
pub struct Caught<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Caught<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        // AssertUnwindSafe: after a panic the future is never polled again (the caller
        // stops at the first `Ready`), and what it shared (the worker's `Core`, behind a
        // `RefCell` whose guard unwinding released) is only used to close the clients.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// A panic payload as text, for the log.
pub fn panic_message(panic: &Panic) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(a panic without a message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// The scheduling the worker relies on: with hundreds of tasks always ready, the
    /// `LocalSet`'s own future, yielding after every step like a busy fan-out, is polled
    /// again after at most one turn of tasks, never after all of them.
    #[test]
    fn the_top_level_future_waits_at_most_one_turn_of_tasks() {
        const TASKS: usize = 1000;
        const STEPS: usize = 200;
        let polls = Rc::new(Cell::new(0usize));
        let local = tokio::task::LocalSet::new();
        let worst = local.block_on(&runtime(), {
            let polls = polls.clone();
            async move {
                for _ in 0..TASKS {
                    let polls = polls.clone();
                    tokio::task::spawn_local(async move {
                        loop {
                            polls.set(polls.get() + 1);
                            tokio::task::yield_now().await;
                        }
                    });
                }
                let mut worst = 0usize;
                let mut last = polls.get();
                for _ in 0..STEPS {
                    tokio::task::yield_now().await;
                    let now = polls.get();
                    worst = worst.max(now - last);
                    last = now;
                }
                worst
            }
        });
        assert!(polls.get() >= STEPS, "the tasks ran: {}", polls.get());
        assert!(
            worst <= TASKS_PER_TURN,
            "the top-level future waited for {worst} task polls (a spawned one waits for all {TASKS})"
        );
    }

    /// The contrast that makes the test above mean something: as a spawned task, the same
    /// busy loop waits behind every ready task.
    #[test]
    fn a_spawned_busy_task_waits_behind_every_ready_task() {
        const TASKS: usize = 1000;
        let polls = Rc::new(Cell::new(0usize));
        let local = tokio::task::LocalSet::new();
        let worst = local.block_on(&runtime(), {
            let polls = polls.clone();
            async move {
                for _ in 0..TASKS {
                    let polls = polls.clone();
                    tokio::task::spawn_local(async move {
                        loop {
                            polls.set(polls.get() + 1);
                            tokio::task::yield_now().await;
                        }
                    });
                }
                let busy = tokio::task::spawn_local(async move {
                    let mut worst = 0usize;
                    let mut last = polls.get();
                    for _ in 0..50 {
                        tokio::task::yield_now().await;
                        let now = polls.get();
                        worst = worst.max(now - last);
                        last = now;
                    }
                    worst
                });
                busy.await.expect("busy task")
            }
        });
        assert!(
            worst >= TASKS - 1,
            "a spawned task waited for {worst} task polls"
        );
    }

    #[test]
    fn a_panic_becomes_the_output_with_its_message() {
        let caught = runtime().block_on(Caught::new(async {
            tokio::task::yield_now().await;
            panic!("fan-out broke");
        }));
        let panic = caught.expect_err("the panic is the output");
        assert_eq!(panic_message(&panic), "fan-out broke");
        let fine = runtime().block_on(Caught::new(async { 7 }));
        assert_eq!(fine.ok(), Some(7));
    }
}
