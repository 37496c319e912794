//! The worker's request as the policy sees it (`sluice_policy::Request`).

use sluice_policy::OwnedRequest;
use worker::Request;

use crate::test_hooks::{self, TestHooks};

/// The header Cloudflare sets to the address of the client that connected to it; the worker's
/// peer address. Cloudflare overwrites any value a client sends.
pub const CONNECTING_IP: &str = "cf-connecting-ip";

/// The parts of `request` that matches, exemptions and keys read, copied out of the runtime's
/// objects once (the runtime gives text; the policy reads its bytes). Test headers are left
/// out; with the hooks enabled, a test peer address replaces `CF-Connecting-IP`.
pub fn read(request: &Request, hooks: &TestHooks) -> OwnedRequest {
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
    OwnedRequest {
        method: request.method().to_string().into_bytes(),
        path: path.into_bytes(),
        authority: authority.into_bytes(),
        headers: headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes()))
            .collect(),
        peer,
    }
}
