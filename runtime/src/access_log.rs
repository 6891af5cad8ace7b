//! The access log: one line per request, written when the response body has been sent (or the
//! viewer went away), so `bytes` and `duration` are what really happened.
//!
//! The record is only built when the `edge::access` target is enabled at INFO, so a node with
//! access logging off pays one level check per request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::body::{BodyError, EdgeBody};
use crate::metrics::Metrics;
use crate::wait_clock::Busy;

/// What one access-log line says.
#[derive(Debug)]
pub struct AccessRecord {
    /// Request id.
    pub id: u64,
    /// Method.
    pub method: Method,
    /// Path and query as received.
    pub path: String,
    /// Response status.
    pub status: StatusCode,
    /// `X-Cache` value.
    pub x_cache: &'static str,
    /// Origin fetched from, or `-`.
    pub origin: String,
    /// Viewer address.
    pub viewer: std::net::SocketAddr,
    /// When the request arrived.
    pub started: Instant,
}

/// Whether access logging is on (checked once per request).
pub fn enabled() -> bool {
    tracing::enabled!(target: "edge::access", tracing::Level::INFO)
}

/// A response body that writes the access-log line when it ends or is dropped.
#[derive(Debug)]
pub struct LoggedBody {
    body: EdgeBody,
    record: Option<Box<AccessRecord>>,
    bytes: u64,
    /// `Content-Length`, if the response has one: hyper stops polling once it has sent that many
    /// bytes, so reaching it means complete.
    expected: Option<u64>,
    /// Where the bytes sent are counted, once, when the body ends or is dropped.
    metrics: Option<std::sync::Arc<Metrics>>,
    /// Keeps the request in progress on its HTTP/1.1 connection until hyper drops the body.
    _in_flight: Option<Busy>,
}

impl LoggedBody {
    /// Wraps `body` of a response with `expected` bytes; `record` is `None` when logging is off.
    pub fn new(
        body: EdgeBody,
        record: Option<Box<AccessRecord>>,
        expected: Option<u64>,
        metrics: std::sync::Arc<Metrics>,
        in_flight: Option<Busy>,
    ) -> Self {
        LoggedBody {
            body,
            record,
            bytes: 0,
            expected,
            metrics: Some(metrics),
            _in_flight: in_flight,
        }
    }

    fn emit(&mut self, complete: bool) {
        if let Some(metrics) = self.metrics.take() {
            metrics.served(self.bytes);
        }
        if let Some(r) = self.record.take() {
            tracing::info!(
                target: "edge::access",
                id = r.id,
                viewer = %r.viewer,
                method = %r.method,
                path = %r.path,
                status = r.status.as_u16(),
                x_cache = r.x_cache,
                origin = %r.origin,
                bytes = self.bytes,
                duration_us = r.started.elapsed().as_micros() as u64,
                complete,
            );
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.body).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.emit(true),
            Poll::Ready(Some(Err(_))) => this.emit(false),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // hyper drops a body it never polls (HEAD, 304, end-of-stream bodies): those are complete.
        let complete = self.body.is_end_stream() || self.expected == Some(self.bytes);
        self.emit(complete);
    }
}
