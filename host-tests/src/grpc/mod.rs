//! gRPC calls and streams (`proxy_grpc_call`, `proxy_grpc_stream`): what
//! one VM has in flight, under the tokens Envoy would give them.
//!
//! - [`upstream`] reads the `upstream` argument (a serialized
//!   `GrpcService`, or a cluster name);
//! - [`client`] carries a call out over HTTP/2 and turns what happens into
//!   Envoy's events;
//! - [`VmGrpc`] keeps a VM's calls and streams, and answers
//!   `proxy_grpc_send`, `proxy_grpc_close` and `proxy_grpc_cancel` as Envoy's
//!   `Context` does; `worker/grpc.rs` delivers the events to the filter.
//!
//! Tokens follow proxy-wasm-cpp-host's callout ids: the low two bits say the
//! kind (1 a call, 2 a stream), and each kind counts up by 4 from 5 and 6.

pub(crate) mod client;
pub(crate) mod upstream;

use std::collections::{HashMap, VecDeque};
use std::fmt;

use tokio::task::AbortHandle;

use crate::headers::HeaderMap;
use crate::types::Status;

use self::client::{GrpcEvent, GrpcSender, SendBufferFull};

/// An event of a call, for the worker of the VM that made it.
#[derive(Debug)]
pub(crate) struct GrpcDelivery {
    pub vm_instance: u64,
    pub token: u32,
    pub event: GrpcEvent,
    /// Delivered even though the token is not in flight: Envoy's close of a
    /// call it refused to start (a `GrpcService` naming an unknown cluster).
    pub orphan: bool,
}

/// What a token names, by its low two bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Call,
    Stream,
    /// Neither (an HTTP call's, or none): `BAD_ARGUMENT`.
    Other,
}

impl TokenKind {
    pub(crate) fn of(token: u32) -> TokenKind {
        match token & 3 {
            1 => TokenKind::Call,
            2 => TokenKind::Stream,
            _ => TokenKind::Other,
        }
    }
}

/// What the filter reads while a gRPC callback runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliveredGrpc {
    /// During `proxy_on_grpc_receive_initial_metadata`.
    pub initial_metadata: Option<HeaderMap>,
    /// During `proxy_on_grpc_receive` (the `GrpcReceiveBuffer`).
    pub message: Option<Vec<u8>>,
    /// During `proxy_on_grpc_receive_trailing_metadata`.
    pub trailing_metadata: Option<HeaderMap>,
    /// During `proxy_on_grpc_close`: what `proxy_get_status` answers.
    pub status: (u32, String),
}

/// A call or stream in flight.
struct Entry {
    /// The context that made it (the call belongs to the root context, as
    /// in Envoy; this only books its cost).
    origin_context: u32,
    abort: AbortHandle,
    /// A stream's sending half, until the filter ends it.
    sender: Option<GrpcSender>,
    /// A stream the filter closed (`proxy_grpc_close`).
    local_closed: bool,
}

/// What `proxy_grpc_send` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued, or dropped because the stream had ended (Envoy answers OK).
    Ok,
    /// The bytes waiting to be sent exceed the limit: the stream was reset
    /// and must be closed with `RESOURCE_EXHAUSTED`.
    Overflow,
}

/// One VM's gRPC calls and streams.
pub(crate) struct VmGrpc {
    in_flight: HashMap<u32, Entry>,
    last_call_token: u32,
    last_stream_token: u32,
    /// Streams the server closed but the filter has not: Envoy keeps them
    /// until the filter closes or cancels them (so those answer OK). The
    /// most recent ones are kept, up to the in-flight limit.
    server_closed: VecDeque<u32>,
    /// The event being delivered, during a gRPC callback.
    pub delivering: Option<DeliveredGrpc>,
}

impl Default for VmGrpc {
    fn default() -> VmGrpc {
        VmGrpc {
            in_flight: HashMap::new(),
            last_call_token: 1,
            last_stream_token: 2,
            server_closed: VecDeque::new(),
            delivering: None,
        }
    }
}

impl fmt::Debug for VmGrpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmGrpc")
            .field("in_flight", &self.in_flight.len())
            .field("server_closed", &self.server_closed.len())
            .finish_non_exhaustive()
    }
}

impl VmGrpc {
    fn next_token(&self, last: u32) -> u32 {
        let mut token = last;
        loop {
            token = token.wrapping_add(4);
            if !self.in_flight.contains_key(&token) && !self.server_closed.contains(&token) {
                return token;
            }
        }
    }

    /// The next call token (1 modulo 4, from 5).
    pub(crate) fn next_call_token(&mut self) -> u32 {
        self.last_call_token = self.next_token(self.last_call_token);
        self.last_call_token
    }

    /// The next stream token (2 modulo 4, from 6).
    pub(crate) fn next_stream_token(&mut self) -> u32 {
        self.last_stream_token = self.next_token(self.last_stream_token);
        self.last_stream_token
    }

    /// Calls and streams in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn track(
        &mut self,
        token: u32,
        origin_context: u32,
        abort: AbortHandle,
        sender: Option<GrpcSender>,
    ) {
        self.in_flight.insert(
            token,
            Entry {
                origin_context,
                abort,
                sender,
                local_closed: false,
            },
        );
    }

    /// The context that made the call `token`, if it is in flight.
    pub(crate) fn origin_of(&self, token: u32) -> Option<u32> {
        self.in_flight.get(&token).map(|entry| entry.origin_context)
    }

    /// A call delivered its reply or its close: it is over.
    pub(crate) fn call_done(&mut self, token: u32) {
        self.in_flight.remove(&token);
    }

    /// The server closed the stream `token` (its close was delivered). A
    /// stream the filter has not closed is remembered, `keep` at most.
    pub(crate) fn stream_closed_by_server(&mut self, token: u32, keep: usize) {
        let Some(entry) = self.in_flight.remove(&token) else {
            return;
        };
        if entry.local_closed || keep == 0 {
            return;
        }
        if self.server_closed.len() >= keep {
            self.server_closed.pop_front();
        }
        self.server_closed.push_back(token);
    }

    fn forget_server_closed(&mut self, token: u32) -> bool {
        match self
            .server_closed
            .iter()
            .position(|closed| *closed == token)
        {
            Some(index) => {
                self.server_closed.remove(index);
                true
            }
            None => false,
        }
    }

    /// `proxy_grpc_cancel`: ends the call or stream at once; no callback
    /// follows.
    pub(crate) fn cancel(&mut self, token: u32) -> Result<(), Status> {
        if TokenKind::of(token) == TokenKind::Other {
            return Err(Status::BadArgument);
        }
        if let Some(entry) = self.in_flight.remove(&token) {
            entry.abort.abort();
            return Ok(());
        }
        if self.forget_server_closed(token) {
            return Ok(());
        }
        Err(Status::NotFound)
    }

    /// `proxy_grpc_close`: a call is cancelled; a stream is half-closed (the
    /// server's answer still comes).
    pub(crate) fn close(&mut self, token: u32) -> Result<(), Status> {
        match TokenKind::of(token) {
            TokenKind::Other => Err(Status::BadArgument),
            TokenKind::Call => self.cancel(token),
            TokenKind::Stream => {
                if let Some(entry) = self.in_flight.get_mut(&token) {
                    entry.sender = None;
                    entry.local_closed = true;
                    return Ok(());
                }
                if self.forget_server_closed(token) {
                    return Ok(());
                }
                Err(Status::NotFound)
            }
        }
    }

    /// `proxy_grpc_send`: queues `message` on the stream `token` (ending
    /// its sending half with `end_stream`), within `limit` bytes waiting.
    pub(crate) fn send(
        &mut self,
        token: u32,
        message: &[u8],
        end_stream: bool,
        limit: usize,
    ) -> Result<Sent, Status> {
        if TokenKind::of(token) != TokenKind::Stream {
            return Err(Status::BadArgument);
        }
        let Some(entry) = self.in_flight.get_mut(&token) else {
            return if self.server_closed.contains(&token) {
                Ok(Sent::Ok)
            } else {
                Err(Status::NotFound)
            };
        };
        if let Some(sender) = &entry.sender {
            if let Err(SendBufferFull) = sender.send(message, limit) {
                // Reset: nothing more is sent or received; the close the
                // caller delivers is the last event.
                entry.abort.abort();
                entry.sender = None;
                return Ok(Sent::Overflow);
            }
            if end_stream {
                entry.sender = None;
            }
        }
        Ok(Sent::Ok)
    }
}

impl Drop for VmGrpc {
    fn drop(&mut self) {
        // A VM that goes away takes its calls with it, as Envoy's `Context`
        // destructor cancels and resets them.
        for entry in self.in_flight.values() {
            entry.abort.abort();
        }
    }
}
