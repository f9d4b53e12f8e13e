//! Streamed response bodies fed through a bounded channel, so that a producer (reading
//! from the store, decrypting) runs only as fast as the client reads and memory stays flat.
//!
//! A producer that fails sends an `Err`: hyper then aborts the response (the connection
//! closes before the declared length or the final chunk), so a client never mistakes a
//! truncated body for a whole one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::response::Body;

/// What a producer sends: the next piece of the body, or the error that aborts it.
pub type Piece = Result<Bytes, std::io::Error>;

/// The receiving end, as an HTTP body.
struct ChannelBody {
    rx: mpsc::Receiver<Piece>,
    /// Bytes still to come, when the producer declared the length.
    remaining: Option<u64>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(r) = self.remaining.as_mut() {
                    *r = r.saturating_sub(bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A body fed by the returned sender, holding at most `depth` pieces in flight. With
/// `length`, the body declares that exact size (`Content-Length`); the producer must then
/// send exactly that many bytes or an error.
pub fn channel(depth: usize, length: Option<u64>) -> (mpsc::Sender<Piece>, Body) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let body = ChannelBody {
        rx,
        remaining: length,
    };
    (tx, body.boxed())
}
