//! The view of an HTTP request that the core needs. The filter implements it over the
//! proxy's header map and properties; the worker over its `Request`.

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
