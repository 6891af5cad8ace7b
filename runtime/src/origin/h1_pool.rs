//! Keep-alive HTTP/1.1 connections to one plain-`http` target, the path every uncached API call
//! takes. hyper-util's general client did the same job with about 7,700 more instructions a
//! request (a hashed pool key, a checkout racing a lazy connect, a task spawned per response to
//! put the connection back; `bench/instructions.sh`); here a connection goes back on a stack the
//! moment its response body has been read, and the next request takes the most recently used
//! one, whose socket is warm.
//!
//! A connection taken from the stack can turn out to have been closed by the target while it
//! sat idle; hyper then hands the unsent request back and it goes out on another connection.
//! A close can also cross a request already written: the target's keep-alive timeout ran out as
//! the request arrived. A replayable request (idempotent, no body) is then sent once more, on a
//! new connection, as nginx does with a cached upstream connection and browsers do with their
//! own (RFC 9112 §9.3.1); any other request fails, since it may have reached the target.
//!
//! The response timeout is kept by each connection ([`WaitClock`]): a connection that has waited
//! that long for a response head is closed, and its request fails with [`SendError::Timeout`].
//! `tokio::time::timeout` around each request cost about 1,100 instructions of a pass-through.
//!
//! `https` targets, which may speak HTTP/2 and need a TLS handshake, use [`super::client`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use std::{io, pin::Pin};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::resend;
use crate::body::EdgeBody;
use crate::interim::InterimSink;
use crate::wait_clock::{WaitClock, Waits};

/// Idle connections are closed after this, as hyper-util's pool did (see
/// [`super::client::POOL_IDLE_TIMEOUT`]).
const IDLE_TIMEOUT: Duration = super::client::POOL_IDLE_TIMEOUT;

/// Idle connections kept per target; more than a burst of concurrent requests needs, few enough
/// that a burst does not hold thousands of sockets open afterwards.
const MAX_IDLE: usize = 512;

/// A failed exchange with the target.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, timed out: `TimedOut`); the request
    /// was not sent.
    Connect(io::Error),
    /// The exchange failed on a connection; the request may have reached the target.
    Exchange(hyper::Error),
    /// No response head within the response timeout; the request may have reached the target.
    Timeout,
}

/// The idle connections to one target.
pub struct H1Pool {
    authority: Authority,
    connect_timeout: Duration,
    response_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    /// Whether the task that closes long-idle connections runs; started by the first check-in,
    /// since the pool is built outside the runtime.
    reaper: AtomicBool,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// One connection to the target: where requests go, and its clock for the response timeout.
struct Connection {
    sender: SendRequest<EdgeBody>,
    clock: Arc<WaitClock>,
}

impl H1Pool {
    /// A pool for `authority` (`host:port`, resolved on each connect).
    pub fn new(
        authority: Authority,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(H1Pool {
            authority,
            connect_timeout,
            response_timeout,
            idle: Mutex::new(Vec::new()),
            reaper: AtomicBool::new(false),
        })
    }

    /// Sends `request` (origin-form URI, `Host` set) on an idle connection, or a new one.
    /// `replayable` (idempotent, no body): it may be sent again if the target closes a reused
    /// connection under it, with its 1xx going to `interim` as the first time's did.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<EdgeBody>,
        replayable: bool,
        interim: Option<&InterimSink>,
    ) -> Result<Response<EdgeBody>, SendError> {
        let mut idle_allowed = true;
        loop {
            let idle = if idle_allowed {
                self.checkout().await
            } else {
                None
            };
            let (mut connection, reused) = match idle {
                Some(connection) => (connection, true),
                None => (self.connect().await.map_err(SendError::Connect)?, false),
            };
            // hyper consumes a request it wrote; the copy is the only way to send it again.
            let again = (reused && replayable).then(|| resend::copy(&request));
            let waiting = connection.clock.busy();
            let sent = connection.sender.try_send_request(request).await;
            drop(waiting);
            match sent {
                // The connection is being closed for it, even if the answer came as it was.
                _ if connection.clock.has_expired() => return Err(SendError::Timeout),
                Ok(response) => return Ok(self.attach(response, connection)),
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request was written: nothing reached
                    // the target. A fresh connection that does that is as good as refused.
                    Some(unsent) if reused => request = unsent,
                    Some(_) => {
                        return Err(SendError::Connect(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            e.into_error(),
                        )))
                    }
                    None => {
                        let e = e.into_error();
                        match again {
                            Some(copy) if resend::closed_under_request(&e) => {
                                tracing::debug!(target = %self.authority, error = %e, "an idle connection closed under a replayable request; sending it on a new one");
                                request = copy;
                                if let Some(sink) = interim {
                                    sink.attach(&mut request);
                                }
                                // Every idle connection may be as stale (a target restarted).
                                idle_allowed = false;
                            }
                            _ => return Err(SendError::Exchange(e)),
                        }
                    }
                },
            }
        }
    }

    /// The most recently used idle connection that is still open, once it can take a request.
    async fn checkout(&self) -> Option<Connection> {
        loop {
            let idle = self.lock().pop()?;
            if idle.connection.sender.is_closed() || idle.since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            let mut connection = idle.connection;
            // A connection is checked in when its response body has been read, which can be
            // just before its task has seen that and asked for the next request. The wait is
            // bounded as the response would be; it is rare, so a timer is cheap here.
            let ready = connection.sender.is_ready()
                || matches!(
                    tokio::time::timeout(self.response_timeout, connection.sender.ready()).await,
                    Ok(Ok(()))
                );
            if ready {
                return Some(connection);
            }
        }
    }

    async fn connect(&self) -> io::Result<Connection> {
        let timeout = self.connect_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.authority.as_str()))
            .await
            .map_err(|_elapsed| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                )
            })??;
        // Without TCP_NODELAY a request whose headers and body go out in two writes waits for
        // the delayed ACK (40 ms on Linux loopback).
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let target = self.authority.clone();
        let clock = WaitClock::start(Waits::WhenBusy);
        let watch = Arc::clone(&clock);
        let timeout = self.response_timeout;
        tokio::spawn(async move {
            // Dropping the connection at the timeout fails the request waiting on it.
            match watch.run(timeout, connection).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::debug!(%target, error = %e, "origin connection closed on an error");
                }
                None => {
                    tracing::debug!(%target, ?timeout, "no response head within the response timeout; closing the connection");
                }
            }
        });
        Ok(Connection { sender, clock })
    }

    /// The response with a body that checks its connection back in once it has been read.
    fn attach(
        self: &Arc<Self>,
        response: Response<Incoming>,
        connection: Connection,
    ) -> Response<EdgeBody> {
        response.map(|incoming| {
            let mut body = PooledBody {
                incoming,
                checkin: Some((connection, Arc::clone(self))),
            };
            body.release_if_done();
            EdgeBody::Pooled(body)
        })
    }

    fn checkin(self: &Arc<Self>, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        // A plain load first: the swap is a locked instruction, needed once per pool.
        if !self.reaper.load(Ordering::Relaxed) && !self.reaper.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The list holds no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Closes connections idle for [`IDLE_TIMEOUT`] while the pool lives; a pool that sees no
/// more requests would otherwise hold them until the target closes them.
async fn reap(pool: Weak<H1Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let expired: Vec<Idle> = {
            let mut idle = pool.lock();
            let (keep, expired) = std::mem::take(&mut *idle).into_iter().partition(|i| {
                !i.connection.sender.is_closed() && i.since.elapsed() < IDLE_TIMEOUT
            });
            *idle = keep;
            expired
        };
        // Dropped outside the lock: each drop wakes its connection's task to close it.
        drop(expired);
    }
}

/// A response body from a pooled connection; the connection goes back to its pool when the
/// body has been read to its end, and is closed if the body is dropped before that.
pub struct PooledBody {
    incoming: Incoming,
    checkin: Option<(Connection, Arc<H1Pool>)>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("incoming", &self.incoming)
            .finish_non_exhaustive()
    }
}

impl PooledBody {
    /// Checks the connection in if the body is complete. A body with a length is complete after
    /// its last byte, and a server stops polling it there: waiting for the end-of-stream poll
    /// would never put the connection back.
    fn release_if_done(&mut self) {
        if self.incoming.is_end_stream() {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some((connection, pool)) = self.checkin.take() {
            pool.checkin(connection);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.incoming).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) => this.release_if_done(),
            // A connection whose body broke is not reused.
            Poll::Ready(Some(Err(_))) => this.checkin = None,
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
