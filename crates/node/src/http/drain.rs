//! Reading the rest of a refused request body, so that the client receives the error
//! instead of a connection reset.
//!
//! A route that refuses a body before reading it all (413 past its limit, 415, 404, 405)
//! drops it. Hyper then stops reading the connection while the client is still sending;
//! the kernel answers the unread bytes with a reset, and a client that is busy writing
//! reports "broken pipe" instead of the 413. So a body dropped unfinished is read to its
//! end and discarded in the background, bounded in bytes and time; past the bound the
//! connection is dropped as before.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use futures::StreamExt;
use http_body::{Frame, SizeHint};

/// Most bytes of a refused body read and thrown away.
pub(crate) const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Longest time spent on it.
pub(crate) const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// The outermost step of the middleware (`map_request`): the body, wrapped.
pub(crate) fn drain_refused_body(req: Request) -> Request {
    req.map(|b| Body::new(DrainOnDrop(Some(b))))
}

/// The request body, drained in a background task if dropped before its end.
struct DrainOnDrop(Option<Body>);

impl HttpBody for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut().0.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else { return };
        // Nothing left, or more announced than we would ever read: nothing to gain.
        if body.is_end_stream() || body.size_hint().lower() > DRAIN_MAX_BYTES {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(body));
        }
    }
}

async fn drain(body: Body) {
    let mut data = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = data.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}
