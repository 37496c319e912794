//! A request built in tests.

use alloc::string::String;
use alloc::vec::Vec;

use crate::request::Request;

/// A request with owned parts, built with chained calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct TestRequest {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    peer: Option<String>,
}

impl TestRequest {
    pub(crate) fn new(method: &str, path: &str) -> TestRequest {
        TestRequest {
            method: String::from(method),
            path: String::from(path),
            authority: String::from("api.example.com"),
            ..TestRequest::default()
        }
    }

    pub(crate) fn get(path: &str) -> TestRequest {
        TestRequest::new("GET", path)
    }

    pub(crate) fn authority(mut self, authority: &str) -> TestRequest {
        self.authority = String::from(authority);
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> TestRequest {
        self.headers.push((String::from(name), String::from(value)));
        self
    }

    pub(crate) fn peer(mut self, peer: &str) -> TestRequest {
        self.peer = Some(String::from(peer));
        self
    }
}

impl Request for TestRequest {
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
