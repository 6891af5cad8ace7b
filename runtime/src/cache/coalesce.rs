//! Request collapsing: concurrent misses for one key share one origin fetch.
//!
//! The first miss becomes the leader and fetches; later misses wait for what it learns. If the
//! object is stored, waiters serve it; if it turns out uncacheable (or the fetch fails or is
//! dropped), waiters are told to forward their own requests, since sharing a response that the
//! origin did not allow to be shared would leak one viewer's answer to another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::key::CacheKey;
use super::store::CachedObject;

/// What waiters learn from the leader.
#[derive(Debug, Clone)]
pub enum FlightOutcome {
    /// The leader has not finished yet.
    Pending,
    /// The object was stored: serve it.
    Stored(Arc<CachedObject>),
    /// Not shareable or failed: each waiter goes to the origin itself.
    Forward,
}

/// Result of joining a flight.
pub enum Join {
    /// First miss: fetch, then call [`Leader::finish`] (dropping it also releases waiters).
    Leader(Leader),
    /// Another request is fetching: wait with [`wait`].
    Waiter(watch::Receiver<FlightOutcome>),
}

/// Keys being fetched right now.
#[derive(Default)]
pub struct Coalescer {
    flights: Mutex<HashMap<CacheKey, watch::Receiver<FlightOutcome>>>,
}

impl Coalescer {
    /// Joins the flight for `key`, starting it if there is none.
    pub fn join(self: &Arc<Self>, key: &CacheKey) -> Join {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(rx) = flights.get(key) {
            return Join::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(FlightOutcome::Pending);
        flights.insert(key.clone(), rx);
        Join::Leader(Leader {
            key: key.clone(),
            tx,
            coalescer: Arc::clone(self),
            finished: false,
        })
    }

    fn end(&self, key: &CacheKey) {
        self.flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }
}

/// The request that fetches for everyone.
pub struct Leader {
    key: CacheKey,
    tx: watch::Sender<FlightOutcome>,
    coalescer: Arc<Coalescer>,
    finished: bool,
}

impl Leader {
    /// Tells waiters the outcome and ends the flight; later misses start a new one.
    pub fn finish(mut self, outcome: FlightOutcome) {
        self.publish(outcome);
    }

    fn publish(&mut self, outcome: FlightOutcome) {
        if !self.finished {
            self.finished = true;
            // Remove first so that a request arriving after this point looks the store up again
            // instead of joining a finished flight.
            self.coalescer.end(&self.key);
            self.tx.send_replace(outcome);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.publish(FlightOutcome::Forward);
    }
}

/// Waits for the leader; a leader that vanished counts as [`FlightOutcome::Forward`].
pub async fn wait(mut rx: watch::Receiver<FlightOutcome>) -> FlightOutcome {
    match rx.wait_for(|o| !matches!(o, FlightOutcome::Pending)).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => FlightOutcome::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CacheKey {
        let (parts, ()) = http::Request::get(path)
            .body(())
            .expect("valid")
            .into_parts();
        CacheKey::build(&Default::default(), &parts)
    }

    #[tokio::test]
    async fn second_join_waits_for_leader() {
        let c = Arc::new(Coalescer::default());
        let Join::Leader(leader) = c.join(&key("/a")) else {
            panic!("first join leads")
        };
        let Join::Waiter(rx) = c.join(&key("/a")) else {
            panic!("second join waits")
        };
        assert!(matches!(c.join(&key("/b")), Join::Leader(_)));
        let waiter = tokio::spawn(wait(rx));
        leader.finish(FlightOutcome::Forward);
        assert!(matches!(
            waiter.await.expect("joined"),
            FlightOutcome::Forward
        ));
        assert!(
            matches!(c.join(&key("/a")), Join::Leader(_)),
            "flight ended"
        );
    }

    #[tokio::test]
    async fn dropped_leader_releases_waiters() {
        let c = Arc::new(Coalescer::default());
        let Join::Leader(leader) = c.join(&key("/a")) else {
            panic!("first join leads")
        };
        let Join::Waiter(rx) = c.join(&key("/a")) else {
            panic!("second join waits")
        };
        drop(leader);
        assert!(matches!(wait(rx).await, FlightOutcome::Forward));
    }
}
