//! gRPC over HTTP/2 (cleartext, prior knowledge) to a cluster, turned into
//! the events Envoy's gRPC client (`source/common/grpc/async_client_impl.cc`)
//! hands to a filter: initial metadata, messages, trailing metadata and a
//! close with a status and message. Failures become the statuses Envoy
//! gives them, including the gRPC local replies of its router (a refused
//! connection is `UNAVAILABLE` with the router's text, a timeout
//! `DEADLINE_EXCEEDED` with `upstream request timeout`).
//!
//! Connections are pooled per cluster address and multiplexed, as Envoy's
//! HTTP/2 pool does; a closed connection is replaced on the next call.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::headers::Pairs;
use crate::outbound::envoy_connect_failure;

/// gRPC status codes this host produces itself.
pub(crate) mod code {
    pub const OK: u32 = 0;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    /// Envoy's `InvalidCode` (-1) as the filter receives it.
    pub const INVALID: u32 = u32::MAX;
}

/// Envoy's cluster connect timeout by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Envoy's `MAX_GRPC_TIMEOUT_VALUE`: at most 8 digits in `grpc-timeout`.
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// What happens on a call, in order, as the filter is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GrpcEvent {
    InitialMetadata(Pairs),
    Message(Vec<u8>),
    TrailingMetadata(Pairs),
    Close { status: u32, message: String },
}

/// A call or stream ready to start.
#[derive(Debug)]
pub(crate) struct GrpcRequest {
    /// The cluster's address.
    pub address: SocketAddr,
    /// The `:authority` sent.
    pub authority: String,
    /// `/<service>/<method>`.
    pub path: String,
    /// Pairs sent after the standard headers: the service's initial
    /// metadata, then the filter's.
    pub metadata: Pairs,
    /// A unary call's timeout: `grpc-timeout` says `sent`; the call fails
    /// after `local` (they differ only for a timeout of 0, which Envoy sends
    /// as `0m` while setting no timer; this host never lets a call hang).
    pub timeout: Option<(Duration, Duration)>,
    /// The largest message received; a longer one ends the call with
    /// `RESOURCE_EXHAUSTED`.
    pub max_message: usize,
    /// Whether this is a unary call (one message, then Envoy's
    /// `AsyncRequestImpl` reduction of the events).
    pub unary: bool,
}

/// Envoy's `toGrpcTimeout`: milliseconds, else seconds, minutes or hours,
/// within 8 digits.
pub(crate) fn grpc_timeout(timeout: Duration) -> String {
    let mut time = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut units = ['m', 'S', 'M', 'H'].into_iter();
    let mut unit = units.next().unwrap_or('m');
    if time > MAX_TIMEOUT_VALUE {
        time /= 1000;
        unit = units.next().unwrap_or('S');
    }
    while time > MAX_TIMEOUT_VALUE {
        match units.next() {
            Some(next) => {
                time /= 60;
                unit = next;
            }
            None => time = MAX_TIMEOUT_VALUE,
        }
    }
    format!("{time}{unit}")
}

/// A message as gRPC frames it: uncompressed, 4-byte big-endian length.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// The request body: framed messages from the filter, ended when the
/// sending half is dropped (half-close).
pub(crate) struct GrpcBody {
    messages: mpsc::UnboundedReceiver<Bytes>,
    unsent: Arc<AtomicUsize>,
}

/// The filter's end of a stream's request body.
#[derive(Debug)]
pub(crate) struct GrpcSender {
    messages: mpsc::UnboundedSender<Bytes>,
    unsent: Arc<AtomicUsize>,
}

/// More than the limit of bytes waits to be sent.
#[derive(Debug)]
pub(crate) struct SendBufferFull;

impl GrpcSender {
    /// Queues `message`, unless the bytes waiting to be sent would exceed
    /// `limit`. A message for a stream that has ended is dropped.
    pub(crate) fn send(&self, message: &[u8], limit: usize) -> Result<(), SendBufferFull> {
        let framed = frame(message);
        let waiting = self.unsent.load(Ordering::Acquire);
        if waiting.saturating_add(framed.len()) > limit {
            return Err(SendBufferFull);
        }
        self.unsent.fetch_add(framed.len(), Ordering::AcqRel);
        if let Err(unsent) = self.messages.send(framed) {
            self.unsent.fetch_sub(unsent.0.len(), Ordering::AcqRel);
        }
        Ok(())
    }
}

impl GrpcBody {
    /// A body and the sender that feeds it.
    pub(crate) fn channel() -> (GrpcSender, GrpcBody) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let unsent = Arc::new(AtomicUsize::new(0));
        (
            GrpcSender {
                messages: sender,
                unsent: Arc::clone(&unsent),
            },
            GrpcBody {
                messages: receiver,
                unsent,
            },
        )
    }

    /// A unary call's body: one message, then the end.
    pub(crate) fn unary(message: &[u8]) -> GrpcBody {
        let (sender, body) = GrpcBody::channel();
        // Unlimited: the filter gave the whole message at once.
        let _ = sender.send(message, usize::MAX);
        body
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.messages.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => {
                self.unsent.fetch_sub(bytes.len(), Ordering::AcqRel);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Splits received bytes into messages, as Envoy's `Grpc::Decoder`.
struct FrameDecoder {
    buffer: Vec<u8>,
    max_message: usize,
}

enum DecodeError {
    /// A message longer than the limit (`RESOURCE_EXHAUSTED`).
    TooLarge,
    /// Flags other than "uncompressed" on a message (`INTERNAL`).
    BadFlags,
}

impl FrameDecoder {
    fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
        self.buffer.extend_from_slice(data);
        let mut messages = Vec::new();
        while let Some(header) = self.buffer.get(..5) {
            let flags = header[0];
            let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if flags & !1 != 0 {
                return Err(DecodeError::BadFlags);
            }
            if length > self.max_message {
                return Err(DecodeError::TooLarge);
            }
            if self.buffer.len() < 5 + length {
                break;
            }
            // Envoy refuses compressed messages (it asked for none).
            if flags != 0 && length > 0 {
                return Err(DecodeError::BadFlags);
            }
            let message = self.buffer[5..5 + length].to_vec();
            self.buffer.drain(..5 + length);
            messages.push(message);
        }
        Ok(messages)
    }
}

fn pairs_of(headers: &hyper::HeaderMap) -> Pairs {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

fn value<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(candidate, _)| candidate == name.as_bytes())
        .map(|(_, value)| value.as_slice())
}

/// Envoy's `Common::getGrpcStatus`: none when absent or empty; `InvalidCode`
/// when not a number up to 16.
fn grpc_status(pairs: &Pairs) -> Option<u32> {
    let value = value(pairs, "grpc-status").filter(|value| !value.is_empty())?;
    Some(
        std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<u32>().ok())
            .filter(|code| *code <= 16)
            .unwrap_or(code::INVALID),
    )
}

/// Envoy's `Utility::httpToGrpcStatus`.
fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// Where the events of one call go.
pub(crate) trait EventSink: Send {
    fn emit(&mut self, event: GrpcEvent);
}

/// A unary call's events as Envoy's `AsyncRequestImpl` reduces them: only
/// the last message on success, or a close on failure (`INTERNAL` for a
/// success without a message).
struct UnaryReduction<S> {
    sink: S,
    last_message: Option<Vec<u8>>,
}

impl<S: EventSink> EventSink for UnaryReduction<S> {
    fn emit(&mut self, event: GrpcEvent) {
        match event {
            GrpcEvent::InitialMetadata(_) | GrpcEvent::TrailingMetadata(_) => {}
            GrpcEvent::Message(message) => self.last_message = Some(message),
            GrpcEvent::Close { status, message } => {
                let event = match (status, self.last_message.take()) {
                    (code::OK, Some(reply)) => GrpcEvent::Message(reply),
                    (code::OK, None) => GrpcEvent::Close {
                        status: code::INTERNAL,
                        message: String::new(),
                    },
                    (status, _) => GrpcEvent::Close { status, message },
                };
                self.sink.emit(event);
            }
        }
    }
}

/// The response side of one call, as Envoy's `AsyncStreamImpl` handles it.
struct Exchange<S> {
    sink: S,
    decoder: FrameDecoder,
}

impl<S: EventSink> Exchange<S> {
    /// A gRPC local reply of Envoy's router (trailers-only, `:status` 200).
    fn local_reply(&mut self, status: u32, message: &str) {
        let mut headers: Pairs = vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
            (b"grpc-status".to_vec(), status.to_string().into_bytes()),
        ];
        if !message.is_empty() {
            headers.push((b"grpc-message".to_vec(), message.as_bytes().to_vec()));
        }
        self.headers(headers, true);
    }

    /// `onHeaders`; answers whether the call has ended.
    fn headers(&mut self, headers: Pairs, end_stream: bool) -> bool {
        let http_status = value(&headers, ":status")
            .and_then(|status| std::str::from_utf8(status).ok())
            .and_then(|status| status.parse::<u16>().ok())
            .unwrap_or(0);
        let status = grpc_status(&headers);
        let initial = if end_stream {
            Vec::new()
        } else {
            headers.clone()
        };
        self.sink.emit(GrpcEvent::InitialMetadata(initial));
        if http_status != 200 {
            if end_stream && status.is_some() {
                self.trailers(headers);
            } else {
                self.stream_error(http_to_grpc_status(http_status), "");
            }
            return true;
        }
        if end_stream {
            self.trailers(headers);
        }
        end_stream
    }

    /// `onData`; answers whether the call has ended.
    fn data(&mut self, data: &[u8]) -> bool {
        match self.decoder.push(data) {
            Ok(messages) => {
                for message in messages {
                    self.sink.emit(GrpcEvent::Message(message));
                }
                false
            }
            Err(DecodeError::TooLarge) => {
                self.stream_error(code::RESOURCE_EXHAUSTED, "");
                true
            }
            Err(DecodeError::BadFlags) => {
                self.stream_error(code::INTERNAL, "");
                true
            }
        }
    }

    /// `onTrailers`.
    fn trailers(&mut self, trailers: Pairs) {
        let status = grpc_status(&trailers).unwrap_or(code::UNKNOWN);
        // The message as received (Envoy does not percent-decode it).
        let message = value(&trailers, "grpc-message")
            .map(|message| String::from_utf8_lossy(message).into_owned())
            .unwrap_or_default();
        self.sink.emit(GrpcEvent::TrailingMetadata(trailers));
        self.sink.emit(GrpcEvent::Close { status, message });
    }

    /// `streamError`: empty trailing metadata, then the close.
    fn stream_error(&mut self, status: u32, message: &str) {
        self.sink.emit(GrpcEvent::TrailingMetadata(Vec::new()));
        self.sink.emit(GrpcEvent::Close {
            status,
            message: message.to_string(),
        });
    }
}

/// The OS error number behind an I/O error, as Envoy prints it.
fn connect_reason(error: &std::io::Error) -> String {
    error
        .raw_os_error()
        .map_or_else(|| error.to_string(), |errno| errno.to_string())
}

/// The connection to one address, once made (locked while it is made).
type ConnectionSlot = Arc<tokio::sync::Mutex<Option<SendRequest<GrpcBody>>>>;

/// HTTP/2 connections to the clusters, one per address, multiplexed.
#[derive(Default)]
pub(crate) struct GrpcConnections {
    by_address: Mutex<HashMap<SocketAddr, ConnectionSlot>>,
}

/// Why no request could be sent.
enum ConnectError {
    /// Refused, unreachable…: the reason as Envoy prints it.
    Failed(String),
    TimedOut,
}

impl GrpcConnections {
    async fn sender(&self, address: SocketAddr) -> Result<SendRequest<GrpcBody>, ConnectError> {
        let slot = {
            let mut by_address = self
                .by_address
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(by_address.entry(address).or_default())
        };
        // One connection attempt at a time per address; the others wait
        // and share it.
        let mut slot = slot.lock().await;
        if let Some(sender) = slot.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
            {
                Err(_) => return Err(ConnectError::TimedOut),
                Ok(Err(error)) => return Err(ConnectError::Failed(connect_reason(&error))),
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| ConnectError::Failed(error.to_string()))?;
        tokio::spawn(async move {
            // Ends when the peer or the last sender closes the connection.
            let _ = connection.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

fn build(request: &GrpcRequest, body: GrpcBody) -> Option<hyper::Request<GrpcBody>> {
    let uri: hyper::Uri = format!("http://{}{}", request.authority, request.path)
        .parse()
        .ok()?;
    let mut builder = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(uri)
        .header("te", "trailers");
    if let Some((sent, _)) = request.timeout {
        builder = builder.header("grpc-timeout", grpc_timeout(sent));
    }
    builder = builder.header("content-type", "application/grpc");
    for (name, value) in &request.metadata {
        if name.starts_with(b":") {
            continue;
        }
        builder = builder.header(
            hyper::header::HeaderName::from_bytes(name).ok()?,
            hyper::header::HeaderValue::from_bytes(value).ok()?,
        );
    }
    builder.body(body).ok()
}

async fn until<F: std::future::Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

/// Carries out a call or stream; its events go to `sink`, the last one
/// always a close (or, for a unary call, the reply or a close).
pub(crate) async fn perform(
    connections: Arc<GrpcConnections>,
    request: GrpcRequest,
    body: GrpcBody,
    sink: impl EventSink,
) {
    if request.unary {
        let reduction = UnaryReduction {
            sink,
            last_message: None,
        };
        exchange(&connections, request, body, reduction).await;
    } else {
        exchange(&connections, request, body, sink).await;
    }
}

async fn exchange(
    connections: &GrpcConnections,
    request: GrpcRequest,
    body: GrpcBody,
    sink: impl EventSink,
) {
    let deadline = request.timeout.map(|(_, local)| Instant::now() + local);
    let mut exchange = Exchange {
        sink,
        decoder: FrameDecoder {
            buffer: Vec::new(),
            max_message: request.max_message,
        },
    };
    let timed_out = |exchange: &mut Exchange<_>| {
        exchange.local_reply(code::DEADLINE_EXCEEDED, "upstream request timeout");
    };
    let sender = match until(deadline, connections.sender(request.address)).await {
        None => return timed_out(&mut exchange),
        Some(Err(ConnectError::Failed(reason))) => {
            return exchange.local_reply(code::UNAVAILABLE, &envoy_connect_failure(&reason));
        }
        Some(Err(ConnectError::TimedOut)) => {
            return exchange.local_reply(
                code::UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: \
                 connection timeout",
            );
        }
        Some(Ok(sender)) => sender,
    };
    let Some(http_request) = build(&request, body) else {
        // Headers HTTP/2 cannot carry: Envoy's codec resets the stream.
        return exchange.stream_error(code::INTERNAL, "");
    };
    let mut sender = sender;
    let response = match until(deadline, sender.send_request(http_request)).await {
        None => return timed_out(&mut exchange),
        Some(Err(_)) => {
            return exchange.local_reply(
                code::UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: \
                 connection termination",
            );
        }
        Some(Ok(response)) => response,
    };
    let (parts, mut body): (_, Incoming) = response.into_parts();
    let mut headers = vec![(
        b":status".to_vec(),
        parts.status.as_u16().to_string().into_bytes(),
    )];
    headers.extend(pairs_of(&parts.headers));
    if exchange.headers(headers, body.is_end_stream()) {
        return;
    }
    loop {
        let frame = match until(deadline, body.frame()).await {
            // A timeout after the headers resets the stream: `INTERNAL`.
            None | Some(Some(Err(_))) => return exchange.stream_error(code::INTERNAL, ""),
            Some(None) => return exchange.stream_error(code::UNKNOWN, ""),
            Some(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if exchange.data(&data) {
                    return;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return exchange.trailers(pairs_of(&trailers));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as emitted.
    #[derive(Default)]
    struct Recorded(Vec<GrpcEvent>);

    impl EventSink for Recorded {
        fn emit(&mut self, event: GrpcEvent) {
            self.0.push(event);
        }
    }

    fn events(run: impl FnOnce(&mut Exchange<Recorded>)) -> Vec<GrpcEvent> {
        let mut exchange = Exchange {
            sink: Recorded::default(),
            decoder: FrameDecoder {
                buffer: Vec::new(),
                max_message: 16,
            },
        };
        run(&mut exchange);
        exchange.sink.0
    }

    fn pairs(items: &[(&str, &str)]) -> Pairs {
        items
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect()
    }

    fn close(status: u32, message: &str) -> GrpcEvent {
        GrpcEvent::Close {
            status,
            message: message.to_string(),
        }
    }

    #[test]
    fn timeouts_are_written_as_envoy_writes_them() {
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250m");
        assert_eq!(grpc_timeout(Duration::ZERO), "0m");
        assert_eq!(grpc_timeout(Duration::from_millis(100_000_000)), "100000S");
        assert_eq!(
            grpc_timeout(Duration::from_secs(100_000_000)),
            "1666666M",
            "over 8 digits of seconds: minutes"
        );
        assert_eq!(grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn a_stream_reports_metadata_messages_and_its_close() {
        let headers = pairs(&[(":status", "200"), ("x-stream", "open")]);
        let got = events(|exchange| {
            assert!(!exchange.headers(headers.clone(), false));
            let mut data = frame(b"one").to_vec();
            data.extend_from_slice(&frame(b"two")[..4]);
            assert!(!exchange.data(&data));
            assert!(!exchange.data(&frame(b"two")[4..]));
            exchange.trailers(pairs(&[("grpc-status", "0")]));
        });
        assert_eq!(
            got,
            [
                GrpcEvent::InitialMetadata(headers),
                GrpcEvent::Message(b"one".to_vec()),
                GrpcEvent::Message(b"two".to_vec()),
                GrpcEvent::TrailingMetadata(pairs(&[("grpc-status", "0")])),
                close(0, ""),
            ]
        );
    }

    #[test]
    fn a_trailers_only_answer_has_empty_initial_metadata() {
        let headers = pairs(&[
            (":status", "200"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20key"),
        ]);
        let got = events(|exchange| {
            assert!(exchange.headers(headers.clone(), true));
        });
        assert_eq!(
            got,
            [
                GrpcEvent::InitialMetadata(Vec::new()),
                GrpcEvent::TrailingMetadata(headers),
                close(5, "no%20such%20key"),
            ],
            "the message is passed on as received"
        );
    }

    #[test]
    fn http_errors_map_to_grpc_statuses() {
        let got = events(|exchange| {
            exchange.headers(pairs(&[(":status", "503")]), false);
        });
        assert_eq!(got.last(), Some(&close(14, "")));
        let got = events(|exchange| {
            exchange.headers(pairs(&[(":status", "404"), ("grpc-status", "7")]), true);
        });
        assert_eq!(got.last(), Some(&close(7, "")), "grpc-status wins");
        let got = events(|exchange| {
            exchange.headers(pairs(&[(":status", "200")]), false);
            exchange.trailers(pairs(&[("grpc-status", "nope")]));
        });
        assert_eq!(got.last(), Some(&close(code::INVALID, "")));
    }

    #[test]
    fn oversized_or_compressed_messages_end_the_call() {
        let got = events(|exchange| {
            exchange.headers(pairs(&[(":status", "200")]), false);
            assert!(exchange.data(&frame(&[7; 17])[..5]), "the header is enough");
        });
        assert_eq!(
            &got[1..],
            [GrpcEvent::TrailingMetadata(Vec::new()), close(8, "")]
        );
        let got = events(|exchange| {
            exchange.headers(pairs(&[(":status", "200")]), false);
            assert!(exchange.data(&[1, 0, 0, 0, 1, 9]));
        });
        assert_eq!(got.last(), Some(&close(13, "")));
    }

    #[test]
    fn a_unary_call_is_reduced_to_its_reply_or_its_failure() {
        let mut reduction = UnaryReduction {
            sink: Recorded::default(),
            last_message: None,
        };
        reduction.emit(GrpcEvent::InitialMetadata(Vec::new()));
        reduction.emit(GrpcEvent::Message(b"first".to_vec()));
        reduction.emit(GrpcEvent::Message(b"last".to_vec()));
        reduction.emit(GrpcEvent::TrailingMetadata(Vec::new()));
        reduction.emit(close(0, ""));
        reduction.emit(close(0, ""));
        reduction.emit(close(9, "failed"));
        assert_eq!(
            reduction.sink.0,
            [
                GrpcEvent::Message(b"last".to_vec()),
                close(13, ""),
                close(9, "failed")
            ]
        );
    }

    #[test]
    fn a_full_send_buffer_refuses_the_message() {
        let (sender, _body) = GrpcBody::channel();
        assert!(sender.send(b"12345", 15).is_ok(), "10 bytes framed");
        assert!(sender.send(b"12345", 15).is_err(), "20 bytes would wait");
        assert!(sender.send(b"", 15).is_ok(), "15 bytes at the limit");
    }
}
