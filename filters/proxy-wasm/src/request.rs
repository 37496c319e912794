//! The request as the policy sees it: one host call for the whole header map, read in place
//! ([`HeaderMap`]), and one for the peer address only if a rule's key or the client-IP source
//! needs it.

use std::cell::OnceCell;

use sluice_policy::Request;

use crate::header_map::HeaderMap;
use crate::host;

/// A request's headers, and its peer address once asked for.
#[derive(Debug)]
pub struct HostRequest {
    headers: HeaderMap,
    peer: OnceCell<Option<Vec<u8>>>,
}

impl HostRequest {
    /// The request with the header map as the host serialised it. Values are kept as bytes:
    /// they need not be UTF-8 (HTTP allows bytes 0x80-0xFF in them, and Envoy and NGINX pass
    /// them on as they came), and keys are built from the bytes so that values differing in
    /// any byte count apart (see `sluice_policy::request`). Nothing is decoded or copied here.
    pub fn from_host(headers: HeaderMap) -> HostRequest {
        HostRequest {
            headers,
            peer: OnceCell::new(),
        }
    }

    fn pseudo(&self, name: &str) -> &[u8] {
        self.header(name).unwrap_or_default()
    }
}

impl Request for HostRequest {
    fn method(&self) -> &[u8] {
        self.pseudo(":method")
    }

    fn path(&self) -> &[u8] {
        self.pseudo(":path")
    }

    fn authority(&self) -> &[u8] {
        match self.header(":authority") {
            Some(authority) => authority,
            None => self.pseudo("host"),
        }
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        self.headers
            .pairs()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .for_each(|(_, v)| f(v));
    }

    fn peer_address(&self) -> Option<&[u8]> {
        self.peer
            // Envoy: `IP:port` / `[IPv6]:port`; ngx_wasm_module: the IP alone.
            .get_or_init(|| host::property(b"source\0address"))
            .as_deref()
    }
}
