//! The view of an HTTP request that the core needs. The filter implements it over the
//! proxy's header map and properties; [`OwnedRequest`] holds the parts as owned bytes for
//! the edge worker (which copies them out of its runtime's objects), the test-vector runners
//! and the fuzz targets.
//!
//! # Bytes, not text
//!
//! Everything the client sends (method, target, authority, header values) is read as the
//! bytes the proxy passes on, which need not be UTF-8: HTTP allows bytes 0x80-0xFF in header
//! values, and NGINX passes them in the target too. Keys are built from those bytes, so two
//! values that differ in any byte count apart (decoding first would turn every invalid
//! sequence into U+FFFD, and `\xff\xfe` and `\xfe\xff` would share a counter). Matches and
//! exemptions compare the bytes with the configured text, which is the same as comparing
//! text for a UTF-8 value and never equal for another. Only parts read as numbers or
//! addresses (a cost header, `X-Forwarded-For`, a client-address header) are decoded, and a
//! value that is not valid text there is not a number or an address.

use alloc::string::String;
use alloc::vec::Vec;

/// Read-only access to the parts of a request that matches, exemptions and keys use.
pub trait Request {
    /// The method, e.g. `GET` (`:method`).
    fn method(&self) -> &[u8];
    /// The request target as sent, with its query string (`:path`).
    fn path(&self) -> &[u8];
    /// The authority (`:authority`, or `Host`), possibly with a port.
    fn authority(&self) -> &[u8];
    /// The first value of header `name` (given in lowercase), as sent.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Calls `f` with every value of header `name` (given in lowercase), in order.
    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&[u8]));
    /// The peer (downstream) address as the host gives it: `IP`, `IP:port` or `[IPv6]:port`.
    fn peer_address(&self) -> Option<&[u8]>;
}

/// A request whose parts are owned bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedRequest {
    /// `:method`.
    pub method: Vec<u8>,
    /// `:path`, with its query string.
    pub path: Vec<u8>,
    /// `:authority`.
    pub authority: Vec<u8>,
    /// Header lines as (name, value) pairs, in order; names are matched ignoring ASCII case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The peer address as a host gives it (`IP`, `IP:port` or `[IPv6]:port`).
    pub peer: Option<String>,
}

impl Request for OwnedRequest {
    fn method(&self) -> &[u8] {
        &self.method
    }

    fn path(&self) -> &[u8] {
        &self.path
    }

    fn authority(&self) -> &[u8] {
        &self.authority
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }

    fn peer_address(&self) -> Option<&[u8]> {
        self.peer.as_deref().map(str::as_bytes)
    }
}
