//! Timeouts on a connection's waits, kept per connection rather than per request: the viewer's
//! header read timeout (`[server] header_read_timeout`: a viewer connection waiting that long for
//! a request head, from its start or from the end of its last response, is closed) and an origin's
//! `response_timeout` (an origin connection waiting that long for a response head is closed and
//! the request gets 504).
//!
//! A per-request timer, as hyper's `header_read_timeout` and `tokio::time::timeout` give, arms an
//! entry in tokio's timer wheel when the wait starts and removes it when the wait ends, a lock
//! each way: hyper's cost 1,574 instructions of a 1 KiB cache hit's 18,657. Here a connection has
//! one sleep, armed for when its current wait would end and checked only when it fires; a request
//! costs two atomic updates and a clock read.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Which state of the connection is the wait the timeout bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waits {
    /// No request in progress: a viewer connection waiting for its next request head.
    WhenIdle,
    /// A request in progress: an origin connection waiting for a response head.
    WhenBusy,
}

/// In [`WaitClock`]'s `busy`: the clock gave up on the connection.
const EXPIRED: u32 = 1 << 31;

/// One connection's clock: how many requests are in progress, and since when the current wait
/// has lasted.
#[derive(Debug)]
pub struct WaitClock {
    waits: Waits,
    opened: Instant,
    /// Requests in progress (each a [`Busy`] guard), and [`EXPIRED`]. One atomic, so that a
    /// request ending as the clock gives up sees which came first.
    busy: AtomicU32,
    /// When the current wait began, in nanoseconds after `opened`.
    since: AtomicU64,
}

impl WaitClock {
    /// A clock for a connection opened now, with no request in progress.
    pub fn start(waits: Waits) -> Arc<Self> {
        Arc::new(WaitClock {
            waits,
            opened: Instant::now(),
            busy: AtomicU32::new(0),
            since: AtomicU64::new(0),
        })
    }

    /// A request is in progress until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        // `since` is read only while waiting, so it is set before a wait begins: a look in
        // between would otherwise take the last wait's start for this one's. (The check and
        // the count are two steps; each connection's requests come one at a time.)
        if self.waits == Waits::WhenBusy && self.busy.load(Relaxed) & !EXPIRED == 0 {
            self.mark();
        }
        self.busy.fetch_add(1, Release);
        Busy(Arc::clone(self))
    }

    /// Drives `connection` to its end, or until it has been in its waiting state for `timeout`
    /// on end: then `None`, and `connection` is dropped, which closes it.
    pub async fn run<F: Future>(&self, timeout: Duration, connection: F) -> Option<F::Output> {
        let mut connection = pin!(connection);
        // The first look is one timeout after the start: no wait can have ended before.
        let mut sleep = pin!(tokio::time::sleep(timeout));
        let mut registered: Option<Waker> = None;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = connection.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            // The sleep keeps the waker of its last poll and wakes the task when it fires, so it
            // is polled again only then (polling it at every wake cost about 200 instructions).
            let armed = registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if armed && !sleep.is_elapsed() {
                return Poll::Pending;
            }
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    registered = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                match self.next_look(timeout) {
                    Some(deadline) => sleep.as_mut().reset(deadline.into()),
                    None if self.give_up() => return Poll::Ready(None),
                    // The wait ended just now: look again from here.
                    None => {}
                }
            }
        })
        .await
    }

    /// Whether a connection with this `busy` value is in its waiting state.
    fn waiting(&self, busy: u32) -> bool {
        match self.waits {
            Waits::WhenIdle => busy & !EXPIRED == 0,
            Waits::WhenBusy => busy & !EXPIRED > 0,
        }
    }

    /// Marks the clock expired if the connection is still waiting: a request whose response
    /// head arrived as the timeout fell is then either answered or timed out, never answered on
    /// a connection that is closing under its body. (A new wait beginning between the look and
    /// this mark, nanoseconds apart, would be cut with the old one.)
    fn give_up(&self) -> bool {
        let mut busy = self.busy.load(Acquire);
        while self.waiting(busy) {
            match self
                .busy
                .compare_exchange_weak(busy, busy | EXPIRED, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => busy = now,
            }
        }
        false
    }

    /// When the current wait would reach `timeout`, or `None` if it has.
    fn next_look(&self, timeout: Duration) -> Option<Instant> {
        let now = Instant::now();
        // Acquire: the `since` stored before the count changed is seen with it.
        let waiting = self.waiting(self.busy.load(Acquire));
        // Not waiting: no wait can end before a full `timeout` from now, so look again then.
        let deadline = if waiting {
            self.opened + Duration::from_nanos(self.since.load(Relaxed)) + timeout
        } else {
            now + timeout
        };
        (deadline > now).then_some(deadline)
    }

    /// Whether [`WaitClock::run`] gave up on its connection. Asked after the request's
    /// [`Busy`] is dropped, it says whether the request timed out, even if its answer came.
    pub fn has_expired(&self) -> bool {
        self.busy.load(Relaxed) & EXPIRED != 0
    }

    fn mark(&self) {
        // Saturates after 584 years of one connection.
        let since = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.since.store(since, Relaxed);
    }
}

/// Marks a request in progress on its connection's [`WaitClock`] until dropped.
#[derive(Debug)]
pub struct Busy(Arc<WaitClock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let clock = &self.0;
        // As in `WaitClock::busy`: the wait's start before the wait.
        if clock.waits == Waits::WhenIdle && clock.busy.load(Relaxed) & !EXPIRED == 1 {
            clock.mark();
        }
        clock.busy.fetch_sub(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(50);
    /// Bound on a wait that should end, so a failure does not hang.
    const LIMIT: Duration = Duration::from_secs(5);

    /// Runs a connection that never ends under `clock`: whether it was given up within `within`.
    async fn given_up(clock: &WaitClock, within: Duration) -> bool {
        let run = clock.run(TIMEOUT, std::future::pending::<()>());
        match tokio::time::timeout(within, run).await {
            Ok(output) => output.is_none(),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn an_idle_connection_expires_one_timeout_after_it_opened() {
        let clock = WaitClock::start(Waits::WhenIdle);
        assert!(given_up(&clock, LIMIT).await);
        assert!(clock.opened.elapsed() >= TIMEOUT);
        assert!(clock.has_expired());
    }

    #[tokio::test]
    async fn a_connection_that_ends_first_gives_its_output() {
        let clock = WaitClock::start(Waits::WhenIdle);
        assert_eq!(clock.run(TIMEOUT, async { 7 }).await, Some(7));
        assert!(!clock.has_expired());
    }

    #[tokio::test]
    async fn a_request_in_progress_holds_it_and_the_wait_restarts_at_its_end() {
        let clock = WaitClock::start(Waits::WhenIdle);
        let request = clock.busy();
        assert!(
            !given_up(&clock, TIMEOUT * 4).await,
            "expired with a request in progress"
        );
        assert!(!clock.has_expired());
        drop(request);
        let ended = Instant::now();
        assert!(given_up(&clock, LIMIT).await);
        assert!(ended.elapsed() >= TIMEOUT - Duration::from_millis(1));
    }

    #[tokio::test]
    async fn waiting_when_busy_counts_from_the_request_not_the_connection() {
        let clock = WaitClock::start(Waits::WhenBusy);
        // Idle for three timeouts: not a wait.
        assert!(!given_up(&clock, TIMEOUT * 3).await, "expired while idle");
        let request = clock.busy();
        let sent = Instant::now();
        assert!(given_up(&clock, LIMIT).await);
        assert!(sent.elapsed() >= TIMEOUT - Duration::from_millis(1));
        assert!(clock.has_expired());
        drop(request);
    }

    #[tokio::test]
    async fn a_wait_that_begins_between_looks_gets_its_whole_timeout() {
        let clock = WaitClock::start(Waits::WhenBusy);
        let watched = Arc::clone(&clock);
        let run = tokio::spawn(async move {
            watched
                .run(TIMEOUT, std::future::pending::<()>())
                .await
                .is_none()
        });
        // The first look, one timeout in, finds no wait; the request begins half-way to the next.
        tokio::time::sleep(TIMEOUT * 3 / 2).await;
        let request = clock.busy();
        let sent = Instant::now();
        let given_up = tokio::time::timeout(LIMIT, run).await;
        assert!(matches!(given_up, Ok(Ok(true))), "{given_up:?}");
        assert!(
            sent.elapsed() >= TIMEOUT - Duration::from_millis(1),
            "gave up {:?} into the wait",
            sent.elapsed()
        );
        drop(request);
    }

    #[test]
    fn a_request_that_ends_as_the_clock_gives_up_knows_which_came_first() {
        let clock = WaitClock::start(Waits::WhenBusy);
        // The request ended first: the clock does not give up, and the connection lives.
        drop(clock.busy());
        assert!(!clock.give_up());
        assert!(!clock.has_expired());
        // The clock gave up first: the request, ending after, counts as timed out even if its
        // answer came.
        let request = clock.busy();
        assert!(clock.give_up());
        drop(request);
        assert!(clock.has_expired());
        assert!(!clock.waiting(clock.busy.load(Relaxed)));
    }

    #[test]
    fn two_requests_in_progress_keep_it_busy_until_both_end() {
        let clock = WaitClock::start(Waits::WhenIdle);
        let (first, second) = (clock.busy(), clock.busy());
        drop(first);
        assert_eq!(clock.busy.load(Relaxed), 1);
        assert_eq!(clock.since.load(Relaxed), 0);
        drop(second);
        assert_eq!(clock.busy.load(Relaxed), 0);
        assert!(clock.since.load(Relaxed) > 0);
    }
}
