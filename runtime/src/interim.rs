//! Interim (1xx) responses: an origin's `103 Early Hints` or `102 Processing` is forwarded to
//! the viewer ahead of the final response (RFC 9110 §15.2) and never stored.
//!
//! hyper's server sends exactly one response per request and refuses 1xx statuses, so the
//! node writes interim responses beneath it: each viewer connection's socket is wrapped in an
//! [`InterimIo`], whose [`InterimSink`] travels beside the request to the origin client, where
//! hyper's `on_informational` callback hands each 1xx to it. The sink queues the encoded
//! response; the wrapper writes queued bytes before anything hyper writes next, so an interim
//! response always precedes the final one.
//!
//! An interim response is written only when every byte hyper wrote before it has been flushed
//! (no earlier response still on its way, as with pipelined requests); otherwise it is dropped,
//! which RFC 8297 allows an intermediary to do.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the wrapper and the sink share.
#[derive(Default)]
struct Shared {
    /// Encoded interim responses not yet written.
    pending: Vec<u8>,
    /// Whether hyper has written since its last complete flush.
    dirty: bool,
    /// Wakes the connection task so that it writes `pending` without waiting for hyper.
    reader: Option<Waker>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the interim responses to one viewer connection's current request go.
#[derive(Clone)]
pub struct InterimSink(Arc<Mutex<Shared>>);

impl std::fmt::Debug for InterimSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterimSink")
    }
}

impl InterimSink {
    /// Has hyper's client hand `request`'s 1xx interim responses to this sink; it returns only
    /// the final response, which alone is stored.
    pub fn attach<B>(&self, request: &mut http::Request<B>) {
        let sink = self.clone();
        hyper::ext::on_informational(request, move |interim| {
            sink.forward(interim.status(), interim.headers());
        });
    }

    /// Queues an origin's interim response for the viewer. `100 Continue` (hyper answers
    /// `Expect` itself) and `101 Switching Protocols` are not forwarded.
    pub fn forward(&self, status: StatusCode, headers: &HeaderMap) {
        if !status.is_informational()
            || status == StatusCode::CONTINUE
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return;
        }
        let mut shared = lock(&self.0);
        if shared.dirty {
            tracing::debug!(%status, "interim response dropped: an earlier response is still being written");
            return;
        }
        encode(&mut shared.pending, status, headers);
        if let Some(reader) = shared.reader.take() {
            reader.wake();
        }
    }
}

/// An HTTP/1.1 interim response head, without the fields that describe a connection or a body.
fn encode(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == CONNECTION || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A viewer connection's socket, with interim responses written ahead of hyper's bytes.
pub struct InterimIo<T> {
    inner: T,
    shared: Arc<Mutex<Shared>>,
}

impl<T> InterimIo<T> {
    /// Wraps `inner`; the sink is cloned into every request the connection serves.
    pub fn new(inner: T) -> (Self, InterimSink) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let sink = InterimSink(Arc::clone(&shared));
        (InterimIo { inner, shared }, sink)
    }
}

/// Writes every queued interim byte.
fn drain<T: AsyncWrite + Unpin>(
    inner: &mut T,
    shared: &mut Shared,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !shared.pending.is_empty() {
        let n = ready!(Pin::new(&mut *inner).poll_write(cx, &shared.pending))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        shared.pending.drain(..n);
    }
    Poll::Ready(Ok(()))
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            // hyper keeps reading a connection while a request is in flight (to notice the
            // viewer leaving): that is the moment to write what an origin sent meanwhile.
            let mut shared = lock(&this.shared);
            if !shared.pending.is_empty() {
                if let Poll::Ready(Err(e)) = drain(&mut this.inner, &mut shared, cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if !shared
                .reader
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                shared.reader = Some(cx.waker().clone());
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut shared = lock(&this.shared);
        ready!(drain(&mut this.inner, &mut shared, cx))?;
        shared.dirty = true;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut shared = lock(&this.shared);
        ready!(drain(&mut this.inner, &mut shared, cx))?;
        shared.dirty = true;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut shared = lock(&this.shared);
        ready!(drain(&mut this.inner, &mut shared, cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        // hyper flushes its transport only once its own buffer is empty: everything it has
        // written so far is on the wire.
        shared.dirty = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hints() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("link", "</s.css>; rel=preload".parse().expect("value"));
        headers.insert(CONNECTION, "close".parse().expect("value"));
        headers
    }

    #[tokio::test]
    async fn interim_bytes_go_out_before_the_next_write_and_only_when_flushed() {
        let (near, mut far) = tokio::io::duplex(4096);
        let (mut io, sink) = InterimIo::new(near);
        sink.forward(StatusCode::from_u16(103).expect("status"), &hints());
        sink.forward(StatusCode::CONTINUE, &hints());
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        // Written, not flushed: a later interim response would land inside this one.
        sink.forward(
            StatusCode::from_u16(102).expect("status"),
            &HeaderMap::new(),
        );
        io.flush().await.expect("flush");
        drop(io);
        let mut seen = String::new();
        far.read_to_string(&mut seen).await.expect("read");
        assert_eq!(
            seen,
            "HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
        );
    }
}
