//! Feed supervision: a feed thread runs its [`Feed`] under `catch_unwind`, and a feed
//! that panics is restarted after an exponential backoff with jitter.
//!
//! Contract:
//!
//! - **Threads.** [`run_feed`] is the body of one feed thread; it owns the feed and its
//!   [`Publisher`] and shares only the publisher's counters (atomics) and the stop flag.
//! - **A panic.** What the feed pushed before it panicked is published as it stands (the
//!   open book event is ended, so that the feed's state and every worker's agree), the
//!   feed counts a restart (`restarts`), shows `restarting` (so `/health` answers `503`
//!   naming it) and, after the backoff, [`Feed::run`] is called again on the same feed,
//!   which starts over as after a reconnection: venue feeds reconnect, resubscribe and
//!   rebuild every book (clients get fresh snapshots), and trades lost meanwhile reach
//!   clients as one exact `gap` (trade-id continuity, [`Publisher::skip_trades`]).
//! - **Backoff.** Doubling from `feed_restart_initial_ms` to `feed_restart_max_ms`, each
//!   delay drawn uniformly from its upper half (jitter: feeds that fail together do not
//!   retry together); a feed that ran [`STABLE_AFTER`] before panicking starts over at
//!   the initial delay. While waiting, the thread keeps serving workers' resync requests
//!   and notices the stop flag within [`WAIT_STEP`].
//! - **Other ends.** `run` returning (shutdown, end of a recording) or returning an error
//!   (a fatal configuration or I/O problem, logged) stops the feed: `stopped`, no
//!   restart.
//! - **Allocation.** Only on a panic (the message, the log line).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use crate::backoff::Backoff;
use crate::feed::{Feed, FeedState, Publisher};

/// A feed that ran this long before it panicked starts its backoff over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// How often a waiting feed thread serves resync requests and looks at the stop flag.
pub const WAIT_STEP: Duration = Duration::from_millis(20);

/// What a panic said, for the log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Runs `feed` until it stops or `stop` is set, restarting it after a panic (see the
/// module doc). Leaves the feed `stopped`.
pub fn run_feed(
    feed: &mut dyn Feed,
    publisher: &mut Publisher,
    stop: &AtomicBool,
    mut backoff: Backoff,
) {
    let name = feed.name().to_owned();
    loop {
        publisher.shared().stats.set_state(FeedState::Connecting);
        let started = Instant::now();
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| feed.run(publisher, stop)));
        match ran {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::error!(feed = %name, error = %e, "feed stopped with an error");
                let _ = publisher.shared().stats.last_error.set(e.to_string());
                break;
            }
            Err(payload) => {
                // Publish what the feed pushed, as it stands: its state and the workers'
                // stay the same.
                publisher.flush();
                let stats = &publisher.shared().stats;
                let restarts = stats.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                stats.set_state(FeedState::Restarting);
                let _ = stats.last_error.set("the feed panicked".to_owned());
                if started.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::error!(
                    feed = %name,
                    panic = panic_message(payload.as_ref()),
                    restarts,
                    delay_ms = delay.as_millis() as u64,
                    "feed panicked; restarting it after a backoff"
                );
                if !wait(publisher, stop, delay) {
                    break;
                }
                tracing::info!(feed = %name, restarts, "restarting feed");
            }
        }
    }
    publisher.flush();
    publisher.shared().stats.set_state(FeedState::Stopped);
}

/// Waits `delay`, serving resync requests; false when `stop` was set meanwhile.
fn wait(publisher: &mut Publisher, stop: &AtomicBool, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    // Relaxed: a request to end; it hands over no data.
    while !stop.load(Ordering::Relaxed) {
        publisher.flush();
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(WAIT_STEP.min(until - now));
    }
    false
}
