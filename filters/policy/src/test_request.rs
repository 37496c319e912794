//! A request built in tests.

use crate::request::OwnedRequest;
use alloc::string::String;
use alloc::vec::Vec;

/// Requests in tests: an [`OwnedRequest`] built with chained calls.
pub(crate) type TestRequest = OwnedRequest;

impl OwnedRequest {
    pub(crate) fn new(method: &str, path: &str) -> TestRequest {
        TestRequest {
            method: Vec::from(method),
            path: Vec::from(path),
            authority: Vec::from("api.example.com"),
            ..TestRequest::default()
        }
    }

    pub(crate) fn get(path: &str) -> TestRequest {
        TestRequest::new("GET", path)
    }

    pub(crate) fn authority(mut self, authority: &str) -> TestRequest {
        self.authority = Vec::from(authority);
        self
    }

    pub(crate) fn header(self, name: &str, value: &str) -> TestRequest {
        self.header_bytes(name, value.as_bytes())
    }

    /// A header whose value need not be UTF-8.
    pub(crate) fn header_bytes(mut self, name: &str, value: &[u8]) -> TestRequest {
        self.headers.push((String::from(name), Vec::from(value)));
        self
    }

    pub(crate) fn peer(mut self, peer: &str) -> TestRequest {
        self.peer = Some(String::from(peer));
        self
    }
}
