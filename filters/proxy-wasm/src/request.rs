//! The request as the policy sees it: one host call for the whole header map, and one for the
//! peer address only if a rule's key or the client-IP source needs it.

use std::cell::OnceCell;

use proxy_wasm::hostcalls;
use sluice_policy::Request;

/// A request's headers, and its peer address once asked for.
#[derive(Debug)]
pub struct HostRequest {
    headers: Vec<(String, String)>,
    peer: OnceCell<Option<String>>,
}

impl HostRequest {
    /// The request with the header map as the host gives it. Values need not be UTF-8 (HTTP
    /// allows bytes 0x80-0xFF in them, and Envoy passes them on as they came): invalid
    /// sequences become U+FFFD, so such a value is never read as an address and otherwise
    /// counts like any other value. (The SDK's text accessor would panic on them, and a panic
    /// fails every stream of the VM.)
    pub fn from_host(headers: Vec<(String, Vec<u8>)>) -> HostRequest {
        let headers = headers
            .into_iter()
            .map(|(name, value)| {
                let value = String::from_utf8(value)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                (name, value)
            })
            .collect();
        HostRequest {
            headers,
            peer: OnceCell::new(),
        }
    }

    fn pseudo(&self, name: &str) -> &str {
        self.header(name).unwrap_or_default()
    }
}

impl Request for HostRequest {
    fn method(&self) -> &str {
        self.pseudo(":method")
    }

    fn path(&self) -> &str {
        self.pseudo(":path")
    }

    fn authority(&self) -> &str {
        match self.header(":authority") {
            Some(authority) => authority,
            None => self.pseudo("host"),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        // Envoy lowercases names; ngx_wasm_module may pass HTTP/1 names as the client sent
        // them, so compare without case (`name` is lowercase).
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&str)) {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .for_each(|(_, v)| f(v));
    }

    fn peer_address(&self) -> Option<&str> {
        self.peer
            .get_or_init(|| {
                // Envoy: `IP:port` / `[IPv6]:port`; ngx_wasm_module: the IP alone.
                hostcalls::get_property(vec!["source", "address"])
                    .ok()
                    .flatten()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
            })
            .as_deref()
    }
}
