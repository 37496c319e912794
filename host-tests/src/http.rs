//! The HTTP messages a proxy passes through its filter, and what the filter
//! made of them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The first value of header `name` (compared case-insensitively).
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A request arriving from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Every header, including the pseudo-headers `:method`, `:path`,
    /// `:authority` and `:scheme`. Names are lower-cased on entry.
    pub headers: Vec<(String, String)>,
    /// Headers whose values are bytes, not necessarily UTF-8, after `headers`: HTTP allows
    /// `obs-text` (bytes 0x80–0xFF) in values, and Envoy passes such values to filters as
    /// they came.
    pub byte_headers: Vec<(String, Vec<u8>)>,
    /// The body; empty means no body (the headers end the stream).
    pub body: Vec<u8>,
    /// Trailers, if the request has any.
    pub trailers: Option<Vec<(String, String)>>,
    /// The client's address (`source.address` / `source.port`).
    pub source: SocketAddr,
    /// What `source.address` reports; by default the flavour's rendering of `source`.
    pub source_address: SourceAddress,
    /// The address the client connected to, if known (`destination.*`).
    pub destination: Option<SocketAddr>,
    /// The protocol, as Envoy's `request.protocol` names it (`HTTP/1.1`).
    pub protocol: String,
}

impl HttpRequest {
    /// A request with the four pseudo-headers (scheme `http`), from
    /// 127.0.0.1:40000, without body.
    pub fn new(method: &str, path: &str, authority: &str) -> HttpRequest {
        HttpRequest {
            headers: vec![
                (":method".to_string(), method.to_string()),
                (":path".to_string(), path.to_string()),
                (":authority".to_string(), authority.to_string()),
                (":scheme".to_string(), "http".to_string()),
            ],
            byte_headers: Vec::new(),
            body: Vec::new(),
            trailers: None,
            source: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
            source_address: SourceAddress::FromSource,
            destination: None,
            protocol: "HTTP/1.1".to_string(),
        }
    }

    /// `GET <path>` to `example.com`.
    pub fn get(path: &str) -> HttpRequest {
        HttpRequest::new("GET", path, "example.com")
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a header whose value is raw bytes (see [`HttpRequest::byte_headers`]).
    pub fn header_bytes(mut self, name: &str, value: impl Into<Vec<u8>>) -> HttpRequest {
        self.byte_headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpRequest {
        self.body = body.into();
        self
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> HttpRequest {
        self.trailers
            .get_or_insert_with(Vec::new)
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the client address.
    pub fn from(mut self, source: SocketAddr) -> HttpRequest {
        self.source = source;
        self
    }

    /// Makes `source.address` read exactly `text`, whatever the flavour (e.g. a bare IP, or
    /// something that is not an address at all, to test a filter's parsing). If `text` is a
    /// socket address, `source` and `source.port` follow it.
    pub fn source_address(mut self, text: &str) -> HttpRequest {
        if let Ok(address) = text.parse::<SocketAddr>() {
            self.source = address;
        }
        self.source_address = SourceAddress::Text(text.to_string());
        self
    }

    /// Makes `source.address` missing (NotFound), as for a request with no known peer.
    pub fn without_source_address(mut self) -> HttpRequest {
        self.source_address = SourceAddress::Missing;
        self
    }
}

/// What a request's `source.address` property reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SourceAddress {
    /// `source`, as the host flavour renders it (`IP:port` for Envoy, `IP` for ngx).
    #[default]
    FromSource,
    /// This text, verbatim.
    Text(String),
    /// No such property.
    Missing,
}

/// A response arriving from the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Headers without `:status` (the host adds it from `status`).
    pub headers: Vec<(String, String)>,
    /// The body; empty means no body.
    pub body: Vec<u8>,
    pub trailers: Option<Vec<(String, String)>>,
}

impl HttpResponse {
    /// A response with this status, no headers and no body.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = body.into();
        self
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> HttpResponse {
        self.trailers
            .get_or_insert_with(Vec::new)
            .push((name.to_string(), value.to_string()));
        self
    }
}

/// The request as the filter lets it through to the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// Headers including pseudo-headers, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Option<Vec<(String, String)>>,
}

impl ForwardedRequest {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// The response as the filter lets it through to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedResponse {
    /// The status, from the `:status` header the filter left.
    pub status: u16,
    /// Headers without `:status`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Option<Vec<(String, String)>>,
}

impl ForwardedResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// A response the filter made itself (`proxy_send_local_response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    /// The filter's headers, then the proxy's (Envoy adds `content-type:
    /// text/plain` and `content-length` for a body), as changed by the
    /// filter's own response callbacks, which see a local response as Envoy
    /// shows it to them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status code details the filter gave (Envoy's `%RESPONSE_CODE_DETAILS%`).
    pub details: String,
    /// The gRPC status, if the filter gave one.
    pub grpc_status: Option<i32>,
}

impl LocalResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// A stream the filter failed: its VM trapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamFailure {
    /// What the client receives: 503 under Envoy (`wasm_fail_stream`), 500
    /// under ngx_wasm_module.
    pub status: u16,
    /// The response code details.
    pub details: String,
    /// Why: the trap, as wasmtime reports it.
    pub trap: String,
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Pass it to the upstream.
    Forward(ForwardedRequest),
    /// Answer the client with this response instead.
    LocalResponse(LocalResponse),
    /// The filter failed: answer the client with `failure.status`.
    Failed(StreamFailure),
    /// The filter reset the stream (`proxy_close_stream`): answer nothing.
    Reset,
    /// The filter paused the request and has not resumed it yet.
    Paused,
}

impl RequestOutcome {
    /// The forwarded request, if the request goes upstream.
    pub fn forwarded(&self) -> Option<&ForwardedRequest> {
        match self {
            RequestOutcome::Forward(request) => Some(request),
            _ => None,
        }
    }

    /// The local response, if the filter answered.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        match self {
            RequestOutcome::LocalResponse(response) => Some(response),
            _ => None,
        }
    }

    /// The failure, if the filter failed.
    pub fn failure(&self) -> Option<&StreamFailure> {
        match self {
            RequestOutcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What became of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Pass it to the client.
    Forward(ForwardedResponse),
    /// Answer the client with this response instead.
    LocalResponse(LocalResponse),
    /// The filter failed: answer the client with `failure.status`.
    Failed(StreamFailure),
    /// The filter reset the stream.
    Reset,
    /// The filter paused the response and has not resumed it yet.
    Paused,
}

impl ResponseOutcome {
    /// The forwarded response, if the upstream's response goes on.
    pub fn forwarded(&self) -> Option<&ForwardedResponse> {
        match self {
            ResponseOutcome::Forward(response) => Some(response),
            _ => None,
        }
    }

    /// The local response, if the filter answered.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        match self {
            ResponseOutcome::LocalResponse(response) => Some(response),
            _ => None,
        }
    }

    /// The failure, if the filter failed.
    pub fn failure(&self) -> Option<&StreamFailure> {
        match self {
            ResponseOutcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What the client gets, whichever way the exchange went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse {
    /// A response: the upstream's, the filter's, or the failure response
    /// (which has no headers and no body).
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Option<Vec<(String, String)>>,
    },
    /// The stream was reset: no response at all.
    Reset,
}

impl ClientResponse {
    /// The status, `None` for a reset.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientResponse::Response { status, .. } => Some(*status),
            ClientResponse::Reset => None,
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            ClientResponse::Response { headers, .. } => header_value(headers, name),
            ClientResponse::Reset => None,
        }
    }

    /// The body (empty for a reset).
    pub fn body(&self) -> &[u8] {
        match self {
            ClientResponse::Response { body, .. } => body,
            ClientResponse::Reset => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_case_and_answers_the_first_value() {
        let request = HttpRequest::get("/")
            .header("X-One", "1")
            .header("x-one", "2");
        assert_eq!(header_value(&request.headers, "x-ONE"), Some("1"));
        assert_eq!(header_value(&request.headers, ":path"), Some("/"));
        assert_eq!(header_value(&request.headers, "missing"), None);
    }

    #[test]
    fn builders_fill_trailers_only_when_asked() {
        let response = HttpResponse::new(200).body("x");
        assert_eq!(response.trailers, None);
        let response = response.trailer("grpc-status", "0");
        assert_eq!(response.trailers.map(|trailers| trailers.len()), Some(1));
    }
}
