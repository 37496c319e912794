//! A request built in tests.

use crate::request::OwnedRequest;
use alloc::string::String;

/// Requests in tests: an [`OwnedRequest`] built with chained calls.
pub(crate) type TestRequest = OwnedRequest;

impl OwnedRequest {
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
