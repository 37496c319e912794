//! The view of an HTTP request that the core needs. The filter implements it over the
//! proxy's header map and properties; [`OwnedRequest`] holds the parts as owned strings for
//! the edge worker (which copies them out of its runtime's objects), the test-vector runners
//! and the fuzz targets.

use alloc::string::String;
use alloc::vec::Vec;

/// Read-only access to the parts of a request that matches, exemptions and keys use.
pub trait Request {
    /// The method, e.g. `GET` (`:method`).
    fn method(&self) -> &str;
    /// The request target as sent, with its query string (`:path`).
    fn path(&self) -> &str;
    /// The authority (`:authority`, or `Host`), possibly with a port.
    fn authority(&self) -> &str;
    /// The first value of header `name` (given in lowercase).
    fn header(&self, name: &str) -> Option<&str>;
    /// Calls `f` with every value of header `name` (given in lowercase), in order.
    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&str));
    /// The peer (downstream) address as the host gives it: `IP`, `IP:port` or `[IPv6]:port`.
    fn peer_address(&self) -> Option<&str>;
}

/// A request whose parts are owned strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedRequest {
    /// `:method`.
    pub method: String,
    /// `:path`, with its query string.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Header lines as (name, value) pairs, in order; names are matched ignoring ASCII case.
    pub headers: Vec<(String, String)>,
    /// The peer address as a host gives it (`IP`, `IP:port` or `[IPv6]:port`).
    pub peer: Option<String>,
}

impl Request for OwnedRequest {
    fn method(&self) -> &str {
        &self.method
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn authority(&self) -> &str {
        &self.authority
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&str)) {
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }

    fn peer_address(&self) -> Option<&str> {
        self.peer.as_deref()
    }
}
