//! The worker's request as the policy sees it (`sluice_policy::Request`).

use worker::Request;

use crate::test_hooks::{self, TestHooks};

/// The header Cloudflare sets to the address of the client that connected to it; the worker's
/// peer address. Cloudflare overwrites any value a client sends.
pub const CONNECTING_IP: &str = "cf-connecting-ip";

/// The parts of a request that matches, exemptions and keys read, copied out of the runtime's
/// objects once so the policy reads plain strings.
#[derive(Debug, Clone)]
pub struct RequestView {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    peer: Option<String>,
}

impl RequestView {
    /// Reads `request`. Test headers are left out; with the hooks enabled, a test peer
    /// address replaces `CF-Connecting-IP`.
    pub fn new(request: &Request, hooks: &TestHooks) -> RequestView {
        let (path, authority) = match request.url() {
            Ok(url) => {
                let mut path = url.path().to_owned();
                if let Some(query) = url.query() {
                    path.push('?');
                    path.push_str(query);
                }
                let mut authority = url.host_str().unwrap_or_default().to_owned();
                if let Some(port) = url.port() {
                    authority.push(':');
                    authority.push_str(&port.to_string());
                }
                (path, authority)
            }
            Err(_) => ("/".to_owned(), String::new()),
        };
        let test_request = hooks.peer.is_some();
        let mut headers: Vec<(String, String)> = request
            .headers()
            .entries()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, _)| !(hooks.enabled && name.starts_with(test_hooks::PREFIX)))
            .filter(|(name, _)| !(test_request && name == CONNECTING_IP))
            .collect();
        if let (true, Some(value)) = (test_request, &hooks.connecting_ip) {
            headers.push((CONNECTING_IP.to_owned(), value.clone()));
        }
        let peer = match &hooks.peer {
            Some(peer) => peer.clone(),
            None => headers
                .iter()
                .find(|(name, _)| name == CONNECTING_IP)
                .map(|(_, value)| value.clone()),
        };
        RequestView {
            method: request.method().to_string(),
            path,
            authority,
            headers,
            peer,
        }
    }
}

impl sluice_policy::Request for RequestView {
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
