//! The one body type of the node: what flows from viewer to origin and back, whether it comes
//! from memory (a cache hit), a socket (hyper's `Incoming`) or a task (a response being stored
//! while it streams, a large static file).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;

/// Errors inside a body stream; they abort the viewer's connection, as a proxy must when an
/// origin body breaks after the status was sent.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A viewer's request body broke (bad chunk size, truncated upload): the viewer's fault, not
/// the origin's, even when it surfaces while the body is being sent to an origin.
#[derive(Debug, thiserror::Error)]
#[error("viewer request body is malformed or incomplete")]
pub struct ViewerBodyError(#[source] pub hyper::Error);

/// A body sent more or fewer bytes than the `Content-Length` the response announced.
#[derive(Debug, thiserror::Error)]
#[error("body does not match its Content-Length of {announced} bytes")]
pub struct LengthMismatch {
    /// The announced length.
    pub announced: u64,
}

/// Whether `error` or one of its sources is a [`ViewerBodyError`].
pub fn is_viewer_body_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<ViewerBodyError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Sending half of [`EdgeBody::Channel`].
pub type BodySender = mpsc::Sender<Result<Bytes, BodyError>>;

/// A request or response body.
#[derive(Debug, Default)]
pub enum EdgeBody {
    /// No body.
    #[default]
    Empty,
    /// All in memory; `None` once sent.
    Full(Option<Bytes>),
    /// Straight from a hyper connection (an origin's response).
    Incoming(Incoming),
    /// An origin's response on a pooled HTTP/1.1 connection, which goes back to its pool
    /// when the body has been read.
    Pooled(crate::origin::h1_pool::PooledBody),
    /// A viewer's request body; its errors are [`ViewerBodyError`]s.
    Viewer(Incoming),
    /// Fed by a task through a bounded channel (the bound gives backpressure).
    Channel(mpsc::Receiver<Result<Bytes, BodyError>>),
    /// Bytes already read from `rest` (e.g. to give a function the start of a body that turned
    /// out too large), then `rest`.
    Chain(Option<Bytes>, Box<EdgeBody>),
    /// `body`, which must carry exactly `remaining` more bytes: one more is a
    /// [`LengthMismatch`] error, and so is an end before it (see [`EdgeBody::framed`]).
    Framed {
        /// The body being checked.
        body: Box<EdgeBody>,
        /// Bytes still owed.
        remaining: u64,
    },
}

impl EdgeBody {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        EdgeBody::Full(Some(bytes.into()))
    }

    /// `body` checked against the `Content-Length` a response announces. hyper writes the
    /// announced length on the wire; a body that disagreed would otherwise be cut short
    /// silently, or (when its own size is known) run into the next response on the connection.
    /// A mismatch becomes a body error, which aborts the viewer's connection instead.
    pub fn framed(body: EdgeBody, length: u64) -> Self {
        EdgeBody::Framed {
            body: Box::new(body),
            remaining: length,
        }
    }

    /// A body fed through a channel of `depth` chunks.
    pub fn channel(depth: usize) -> (BodySender, Self) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, EdgeBody::Channel(rx))
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            EdgeBody::Empty => Poll::Ready(None),
            EdgeBody::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            EdgeBody::Incoming(incoming) => Pin::new(incoming).poll_frame(cx).map_err(Into::into),
            EdgeBody::Pooled(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            EdgeBody::Viewer(incoming) => Pin::new(incoming)
                .poll_frame(cx)
                .map_err(|e| ViewerBodyError(e).into()),
            EdgeBody::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|r| r.map(Frame::data))),
            EdgeBody::Chain(prefix, rest) => match prefix.take().filter(|b| !b.is_empty()) {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
            EdgeBody::Framed { body, remaining } => {
                let announced = *remaining;
                let frame = match Pin::new(body.as_mut()).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) if *remaining == 0 => return Poll::Ready(None),
                    Poll::Ready(None) => {
                        return Poll::Ready(Some(Err(LengthMismatch { announced }.into())))
                    }
                    Poll::Ready(Some(frame)) => frame,
                };
                if let Ok(frame) = &frame {
                    if let Some(data) = frame.data_ref() {
                        let len = data.len() as u64;
                        if len > *remaining {
                            *remaining = 0;
                            return Poll::Ready(Some(Err(LengthMismatch { announced }.into())));
                        }
                        *remaining -= len;
                    }
                }
                Poll::Ready(Some(frame))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Empty => true,
            EdgeBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            EdgeBody::Incoming(incoming) | EdgeBody::Viewer(incoming) => incoming.is_end_stream(),
            EdgeBody::Pooled(body) => body.is_end_stream(),
            EdgeBody::Channel(_) => false,
            EdgeBody::Chain(prefix, rest) => {
                prefix.as_ref().is_none_or(Bytes::is_empty) && rest.is_end_stream()
            }
            // Ends only when the inner body does, so that surplus bytes surface as an error.
            EdgeBody::Framed { body, remaining } => *remaining == 0 && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Empty => SizeHint::with_exact(0),
            EdgeBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            EdgeBody::Incoming(incoming) | EdgeBody::Viewer(incoming) => incoming.size_hint(),
            EdgeBody::Pooled(body) => body.size_hint(),
            EdgeBody::Channel(_) | EdgeBody::Chain(..) => SizeHint::default(),
            EdgeBody::Framed { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn collect(body: EdgeBody) -> Result<Bytes, BodyError> {
        Ok(body.collect().await?.to_bytes())
    }

    fn chunks(parts: &[&'static str]) -> EdgeBody {
        let (tx, body) = EdgeBody::channel(parts.len().max(1));
        for part in parts {
            tx.try_send(Ok(Bytes::from_static(part.as_bytes())))
                .expect("the channel has room for every part");
        }
        body
    }

    #[tokio::test]
    async fn framed_body_passes_exact_length() {
        let body = EdgeBody::framed(chunks(&["hel", "lo"]), 5);
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(collect(body).await.expect("exact"), "hello");
    }

    #[tokio::test]
    async fn framed_body_refuses_surplus_and_shortfall() {
        let long = collect(EdgeBody::framed(chunks(&["hello", " world"]), 5)).await;
        assert!(long.is_err_and(|e| e.is::<LengthMismatch>()));
        let short = collect(EdgeBody::framed(chunks(&["hel"]), 5)).await;
        assert!(short.is_err_and(|e| e.is::<LengthMismatch>()));
        let full = collect(EdgeBody::framed(EdgeBody::full("hello world"), 5)).await;
        assert!(full.is_err());
    }
}
