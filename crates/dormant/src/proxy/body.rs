//! The bodies the proxy moves: a request body that may have been partly read
//! while its container woke, and a response body that keeps its container in
//! use until it has been sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::budget::HoldTicket;
use super::upstream_pool::Turn;
use crate::lifecycle::table::InUse;

/// A request body: what was read ahead (while waiting for a wake), then the
/// rest still streaming from the client.
#[derive(Debug)]
pub struct RequestBody {
    read_ahead: Option<Bytes>,
    /// The held request's share of the hold budget, given back once the
    /// read-ahead bytes are handed on.
    ticket: Option<HoldTicket>,
    rest: Option<Incoming>,
}

impl RequestBody {
    /// The client's body, untouched.
    pub fn streaming(body: Incoming) -> Self {
        Self {
            read_ahead: None,
            ticket: None,
            rest: Some(body),
        }
    }

    /// No body at all.
    pub fn empty() -> Self {
        Self {
            read_ahead: None,
            ticket: None,
            rest: None,
        }
    }

    /// `read_ahead`, then `rest` if the client had more to send. `ticket`
    /// is held until `read_ahead` is handed on.
    pub fn resumed(read_ahead: Bytes, ticket: HoldTicket, rest: Option<Incoming>) -> Self {
        let read_ahead = (!read_ahead.is_empty()).then_some(read_ahead);
        Self {
            ticket: read_ahead.as_ref().map(|_| ticket),
            read_ahead,
            rest,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(bytes) = self.read_ahead.take() {
            self.ticket = None;
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read_ahead.is_none() && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.read_ahead.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map(Body::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0));
        let mut hint = SizeHint::new();
        hint.set_lower(ahead + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(ahead + upper);
        }
        hint
    }
}

/// A response body from a container that keeps the route in use (never
/// idle) until the last byte is sent or the client goes away, and the
/// upstream connection's turn, if it is new, as long (see `Turn`).
#[derive(Debug)]
pub struct TrackedBody {
    inner: Incoming,
    in_use: Option<InUse>,
    turn: Option<Turn>,
}

impl TrackedBody {
    pub fn new(inner: Incoming, in_use: Option<InUse>) -> Self {
        Self {
            inner,
            in_use,
            turn: None,
        }
    }

    pub fn keeping(mut self, turn: Option<Turn>) -> Self {
        self.turn = turn;
        self
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Done: the container is no longer in use by this response,
            // and its connection can take the next request.
            self.in_use = None;
            self.turn = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
