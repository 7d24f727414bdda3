//! The response body the peer's HTTP server sends.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::limit::AddressSlot;

/// Either a body known in full, or a stream of pieces produced while it is sent (the
/// player endpoint waits for chunks still on their way). An upload slot, when one is held,
/// is released only once the body is finished or dropped.
#[derive(Debug, Default)]
pub(crate) struct OutBody {
    data: Option<Bytes>,
    stream: Option<mpsc::Receiver<Bytes>>,
    _permit: Option<UploadPermit>,
}

/// An upload slot (of the swarm's total, and of the requesting address's share), held
/// until the answer carrying the chunk is sent or dropped.
#[derive(Debug)]
pub(crate) struct UploadPermit {
    _slot: OwnedSemaphorePermit,
    _per_address: AddressSlot,
}

impl UploadPermit {
    pub(crate) fn new(slot: OwnedSemaphorePermit, per_address: AddressSlot) -> Self {
        Self {
            _slot: slot,
            _per_address: per_address,
        }
    }
}

impl OutBody {
    pub(crate) fn empty() -> Self {
        Self::default()
    }

    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        Self {
            data: Some(data.into()),
            ..Self::default()
        }
    }

    pub(crate) fn with_permit(data: Bytes, permit: UploadPermit) -> Self {
        Self {
            data: Some(data),
            stream: None,
            _permit: Some(permit),
        }
    }

    pub(crate) fn streaming(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            stream: Some(rx),
            ..Self::default()
        }
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(rx) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Ready(Some(piece)) => Poll::Ready(Some(Ok(Frame::data(piece)))),
            Poll::Ready(None) => {
                self.stream = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.stream.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, &self.stream) {
            (Some(data), None) => SizeHint::with_exact(data.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
