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
    /// Straight from a hyper connection.
    Incoming(Incoming),
    /// Fed by a task through a bounded channel (the bound gives backpressure).
    Channel(mpsc::Receiver<Result<Bytes, BodyError>>),
    /// Bytes already read from `rest` (e.g. to give a function the start of a body that turned
    /// out too large), then `rest`.
    Chain(Option<Bytes>, Box<EdgeBody>),
}

impl EdgeBody {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        EdgeBody::Full(Some(bytes.into()))
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
            EdgeBody::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|r| r.map(Frame::data))),
            EdgeBody::Chain(prefix, rest) => match prefix.take().filter(|b| !b.is_empty()) {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Empty => true,
            EdgeBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            EdgeBody::Incoming(incoming) => incoming.is_end_stream(),
            EdgeBody::Channel(_) => false,
            EdgeBody::Chain(prefix, rest) => {
                prefix.as_ref().is_none_or(Bytes::is_empty) && rest.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Empty => SizeHint::with_exact(0),
            EdgeBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            EdgeBody::Incoming(incoming) => incoming.size_hint(),
            EdgeBody::Channel(_) | EdgeBody::Chain(..) => SizeHint::default(),
        }
    }
}
