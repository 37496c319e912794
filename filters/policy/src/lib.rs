//! sluice's policy: the JSON configuration, parsed and compiled into types that cannot be
//! invalid; how a request maps to the rules that apply and their keys; how decisions become a
//! response. Shared by the proxy-wasm filter and the edge worker, so both decide alike.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod request;

pub use request::Request;
