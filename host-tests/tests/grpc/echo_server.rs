//! A real gRPC server for the host's gRPC tests: tonic's server with a codec
//! that passes message bytes through, serving `probe.Echo` on a free
//! loopback port, and recording what it received.
//!
//! - `Unary`: answers `echo: <message>` (with initial metadata `x-reply`,
//!   which Envoy does not hand to a unary call's filter);
//! - `Fail`: answers `NOT_FOUND`, `no such key`;
//! - `Slow`: answers `late` after the number of milliseconds in the message;
//! - `Big`: answers a message of as many bytes as the message says;
//! - `Stream`: sends initial metadata `x-stream: open`, answers each message
//!   with `echo: <message>`, and ends with `OK` once the client has
//!   half-closed;
//! - `StreamFail`: answers the first message, then ends with `ABORTED`,
//!   `stop`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

/// Message bytes as they are.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A call as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub authority: Option<String>,
    pub headers: Vec<(String, String)>,
    pub messages: Vec<Vec<u8>>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
    }
}

type Record = Arc<Mutex<Vec<Seen>>>;

fn remember(record: &Record, index: usize, message: &Bytes) {
    if let Ok(mut all) = record.lock()
        && let Some(seen) = all.get_mut(index)
    {
        seen.messages.push(message.to_vec());
    }
}

#[derive(Clone)]
struct Echo {
    record: Record,
}

impl NamedService for Echo {
    const NAME: &'static str = "probe.Echo";
}

struct Unary {
    method: String,
    record: Record,
    index: usize,
}

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let message = request.into_inner();
        remember(&self.record, self.index, &message);
        let method = self.method.clone();
        Box::pin(async move {
            let text = String::from_utf8_lossy(&message).into_owned();
            let reply = match method.as_str() {
                "Fail" => return Err(Status::not_found("no such key")),
                "Slow" => {
                    let wait = text.trim().parse().unwrap_or(1000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    Bytes::from_static(b"late")
                }
                "Big" => Bytes::from(vec![b'x'; text.trim().parse().unwrap_or(0)]),
                _ => Bytes::from(format!("echo: {text}")),
            };
            let mut response = Response::new(reply);
            response
                .metadata_mut()
                .insert("x-reply", "unary".parse().expect("a metadata value"));
            Ok(response)
        })
    }
}

struct Bidi {
    fail: bool,
    record: Record,
    index: usize,
}

type Replies = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl StreamingService<Bytes> for Bidi {
    type Response = Bytes;
    type ResponseStream = Replies;
    type Future = BoxFuture<Response<Replies>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let (record, index, fail) = (Arc::clone(&self.record), self.index, self.fail);
        let messages = request.into_inner();
        let mut count = 0;
        let replies = messages.map(move |message| {
            let message = message?;
            count += 1;
            remember(&record, index, &message);
            if fail && count > 1 {
                return Err(Status::aborted("stop"));
            }
            Ok(Bytes::from(format!(
                "echo: {}",
                String::from_utf8_lossy(&message)
            )))
        });
        Box::pin(async move {
            // tonic ends the stream with the first error as its status.
            let stream: Replies = Box::pin(replies);
            let mut response = Response::new(stream);
            response
                .metadata_mut()
                .insert("x-stream", "open".parse().expect("a metadata value"));
            Ok(response)
        })
    }
}

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let seen = Seen {
            path: path.clone(),
            authority: request.uri().authority().map(|a| a.to_string()),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            messages: Vec::new(),
        };
        let index = match self.record.lock() {
            Ok(mut all) => {
                all.push(seen);
                all.len() - 1
            }
            Err(_) => 0,
        };
        let record = Arc::clone(&self.record);
        let method = path.trim_start_matches("/probe.Echo/").to_string();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            let response = match method.as_str() {
                "Unary" | "Fail" | "Slow" | "Big" => {
                    let unary = Unary {
                        method,
                        record,
                        index,
                    };
                    grpc.unary(unary, request).await
                }
                "Stream" | "StreamFail" => {
                    let bidi = Bidi {
                        fail: method == "StreamFail",
                        record,
                        index,
                    };
                    grpc.streaming(bidi, request).await
                }
                _ => Status::unimplemented(format!("no method {method}")).into_http(),
            };
            Ok(response)
        })
    }
}

/// The server, on its own runtime; stops when dropped.
pub struct EchoServer {
    pub address: SocketAddr,
    record: Record,
    _runtime: tokio::runtime::Runtime,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the test server");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free loopback port");
        let address = listener.local_addr().expect("a bound address");
        let record = Record::default();
        let echo = Echo {
            record: Arc::clone(&record),
        };
        runtime.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(echo)
                .serve_with_incoming(incoming)
                .await;
        });
        EchoServer {
            address,
            record,
            _runtime: runtime,
        }
    }

    /// Every call received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.record
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default()
    }
}
