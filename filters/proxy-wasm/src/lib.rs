//! The sluice proxy-wasm HTTP filter.
