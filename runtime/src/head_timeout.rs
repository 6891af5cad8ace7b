//! The header read timeout of HTTP/1.1 viewer connections (`[server] header_read_timeout`): a
//! connection that waits that long for a request head, counted from its start or from the end of
//! its last response, is closed, so idle and slow-loris connections cannot pile up. A request in
//! progress (its body still arriving, its response still being made or sent) is never cut.
//!
//! hyper has the same timeout (`http1::Builder::header_read_timeout`), but it arms a timer in
//! tokio's wheel when it starts reading each head and cancels it when the head is in: about
//! 1,500 instructions a request, 8% of a cache hit. Here a connection has one sleep, armed for
//! when the wait would end and checked only when it fires; a request costs two atomic updates and
//! a clock read.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One connection's clock: whether a request is in progress and, if not, since when none is.
#[derive(Debug)]
pub struct HeadClock {
    opened: Instant,
    /// Requests whose response body has not been dropped yet.
    in_flight: AtomicU32,
    /// When the last request in progress ended, in nanoseconds after `opened` (0: never one).
    idle_since: AtomicU64,
}

impl HeadClock {
    /// A clock for a connection that starts waiting for its first head now.
    pub fn start() -> Arc<Self> {
        Arc::new(HeadClock {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    /// A request head is in: the connection is busy until the returned guard is dropped, which
    /// the response body carries.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Resolves once the connection has waited `timeout` for a request head with none in
    /// progress.
    pub async fn expired(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            // Busy: the wait cannot end before a full `timeout` from now, so look again then.
            let deadline = if self.in_flight.load(Relaxed) > 0 {
                now + timeout
            } else {
                self.opened + Duration::from_nanos(self.idle_since.load(Relaxed)) + timeout
            };
            if deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Marks a request in progress on its connection's [`HeadClock`] until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<HeadClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let clock = &self.0;
        if clock.in_flight.fetch_sub(1, Relaxed) == 1 {
            // Saturates after 584 years of one connection.
            let since = u64::try_from(clock.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
            clock.idle_since.store(since, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(50);
    /// Bound on a wait that should end, so a failure does not hang.
    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_idle_connection_expires_one_timeout_after_it_opened() {
        let clock = HeadClock::start();
        tokio::time::timeout(LIMIT, clock.expired(TIMEOUT))
            .await
            .expect("expires");
        assert!(clock.opened.elapsed() >= TIMEOUT);
    }

    #[tokio::test]
    async fn a_request_in_progress_holds_it_and_the_wait_restarts_at_its_end() {
        let clock = HeadClock::start();
        let request = clock.request();
        let held = tokio::time::timeout(TIMEOUT * 4, clock.expired(TIMEOUT)).await;
        assert!(held.is_err(), "expired with a request in progress");
        drop(request);
        let ended = Instant::now();
        tokio::time::timeout(LIMIT, clock.expired(TIMEOUT))
            .await
            .expect("expires once idle");
        assert!(ended.elapsed() >= TIMEOUT - Duration::from_millis(1));
    }

    #[test]
    fn two_requests_in_progress_keep_it_busy_until_both_end() {
        let clock = HeadClock::start();
        let (first, second) = (clock.request(), clock.request());
        drop(first);
        assert_eq!(clock.in_flight.load(Relaxed), 1);
        assert_eq!(clock.idle_since.load(Relaxed), 0);
        drop(second);
        assert_eq!(clock.in_flight.load(Relaxed), 0);
        assert!(clock.idle_since.load(Relaxed) > 0);
    }
}
