//! `sluice-passthrough-filter`: the baseline the sluice filter is measured against.
//!
//! Per request it makes the reads the sluice filter makes, the same way (see
//! `filters/proxy-wasm/src/request.rs` and `host.rs`): the whole request header map in one
//! call, kept as the host's serialised bytes and walked in place to look at every pair; the
//! clock; and the `source.address` property, which sluice reads when a rule keys by client IP
//! (the benchmark configurations do). Then it lets the request through untouched. What sluice
//! costs above this is the rate limiting itself.
//!
//! For the host cost model (BENCHMARKS.md, "Host calls in a real proxy") its plugin
//! configuration can name one host call to repeat per request on top of those reads:
//! `<call> <times>`, with `<call>` one of `get_shared_data`, `set_shared_data` (a
//! compare-and-swap with the cas just read, as sluice writes), `increment_metric`,
//! `add_response_header`, `get_property`, `get_header_map_pairs`, `get_current_time`. An empty
//! configuration repeats nothing.
//!
//! `floor <rules>` makes, on top of its reads, the host calls sluice cannot do without for that
//! many local rules and do nothing else: per rule a shared-data read and a compare-and-swap
//! write of what it read (each rule its own key, as each of sluice's rules reads its own
//! bucket), then the two response headers of the default `ietf` style. What sluice costs
//! above this floor is its own work in the VM.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ptr::null_mut;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
}

/// One host call to repeat per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    GetSharedData,
    SetSharedData,
    IncrementMetric(u32),
    AddResponseHeader,
    GetProperty,
    GetHeaderMapPairs,
    GetCurrentTime,
    /// `floor <rules>`: per rule a read and a compare-and-swap of its own key; two response
    /// headers.
    Floor,
}

/// The shared-data key the repeated calls use: in ngx_wasm_module's `sluice` zone, where the
/// benchmark's configuration declares it.
const KEY: &[u8] = b"sluice/bench/cost";

/// The keys of `floor`'s rules, one per rule (at most as many as sluice's benchmarks have).
const FLOOR_KEYS: [&[u8]; 5] = [
    b"sluice/bench/floor-0",
    b"sluice/bench/floor-1",
    b"sluice/bench/floor-2",
    b"sluice/bench/floor-3",
    b"sluice/bench/floor-4",
];

#[derive(Debug, Default, Clone, Copy)]
struct Root {
    repeat: Option<(Repeat, u32)>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let mut words = text.split_whitespace();
        let (Some(call), Some(times)) = (words.next(), words.next()) else {
            return text.trim().is_empty();
        };
        let Ok(times) = times.parse::<u32>() else {
            return false;
        };
        let repeat = match call {
            "get_shared_data" => Repeat::GetSharedData,
            "set_shared_data" => Repeat::SetSharedData,
            "increment_metric" => {
                let name = "bench_cost";
                let mut id = 0;
                // SAFETY: `name` is valid for the call, `id` writable.
                unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
                Repeat::IncrementMetric(id)
            }
            "add_response_header" => Repeat::AddResponseHeader,
            "get_property" => Repeat::GetProperty,
            "get_header_map_pairs" => Repeat::GetHeaderMapPairs,
            "get_current_time" => Repeat::GetCurrentTime,
            "floor" if times as usize <= FLOOR_KEYS.len() => Repeat::Floor,
            _ => return false,
        };
        if repeat == Repeat::Floor {
            // Sluice's buckets exist (it creates its tables at start-up), with a value of
            // about a bucket's size.
            for key in &FLOOR_KEYS[..times as usize] {
                // SAFETY: the slices are valid for the call.
                unsafe {
                    proxy_set_shared_data(key.as_ptr(), key.len(), [0u8; 64].as_ptr(), 64, 0)
                };
            }
        }
        if repeat == Repeat::SetSharedData || repeat == Repeat::GetSharedData {
            // The key exists, as sluice's buckets do.
            // SAFETY: the slices are valid for the call.
            unsafe { proxy_set_shared_data(KEY.as_ptr(), KEY.len(), [0u8; 64].as_ptr(), 64, 0) };
        }
        self.repeat = Some((repeat, times));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough {
            repeat: self.repeat,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PassThrough {
    repeat: Option<(Repeat, u32)>,
}

/// Takes ownership of a buffer the host wrote into guest memory.
///
/// # Safety
/// `data` is null or points to `size` bytes from this module's allocator.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: as the caller guarantees.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

fn header_map() -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the out-pointers are valid.
    unsafe {
        proxy_get_header_map_pairs(0, &mut data, &mut size);
        owned(data, size)
    }
}

fn now() -> u64 {
    let mut now = 0;
    // SAFETY: `now` is writable.
    unsafe { proxy_get_current_time_nanoseconds(&mut now) };
    now
}

fn peer() -> Vec<u8> {
    let path = b"source\0address";
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: `path` is valid, the out-pointers writable.
    unsafe {
        proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
        owned(data, size)
    }
}

/// The header map's pairs walked as sluice walks them (lengths, then NUL-ended names and
/// values): the number of bytes seen.
fn walk(map: &[u8]) -> usize {
    let word = |at: usize| {
        map.get(at..at + 4)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u32::from_le_bytes) as usize
    };
    let count = word(0).min(map.len() / 10);
    let mut seen = 0;
    for pair in 0..count {
        seen += word(4 + pair * 8) + word(8 + pair * 8) + 2;
    }
    seen
}

/// Reads `key` and, if `write`, writes back what it read with the cas it read (a
/// compare-and-swap, as sluice writes its buckets): the value's length.
fn read_and_swap(key: &[u8], write: bool) -> usize {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    // SAFETY: `key` is valid, the out-pointers writable; the value is ours.
    let value = unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas);
        owned(data, size)
    };
    if write {
        // SAFETY: the slices are valid for the call.
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    }
    value.len()
}

fn repeat(call: Repeat) -> usize {
    match call {
        Repeat::GetSharedData => read_and_swap(KEY, false),
        Repeat::SetSharedData => read_and_swap(KEY, true),
        Repeat::IncrementMetric(id) => {
            // SAFETY: plain values.
            unsafe { proxy_increment_metric(id, 1) as usize }
        }
        Repeat::AddResponseHeader | Repeat::Floor => {
            let (name, value) = ("x-bench", "1");
            // SAFETY: the slices are valid for the call.
            unsafe {
                proxy_add_header_map_value(2, name.as_ptr(), name.len(), value.as_ptr(), 1) as usize
            }
        }
        Repeat::GetProperty => peer().len(),
        Repeat::GetHeaderMapPairs => header_map().len(),
        Repeat::GetCurrentTime => usize::from(now() > 0),
    }
}

impl Context for PassThrough {}

impl HttpContext for PassThrough {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = header_map();
        let read = walk(&headers) + usize::from(now() > 0) + peer().len();
        // Look at what was read, so none of it is optimised away.
        if read == usize::MAX {
            return Action::Pause;
        }
        match self.repeat {
            Some((Repeat::AddResponseHeader, _)) | None => {}
            Some((Repeat::Floor, rules)) => {
                for key in FLOOR_KEYS.iter().take(rules as usize) {
                    std::hint::black_box(read_and_swap(key, true));
                }
            }
            Some((call, times)) => {
                for _ in 0..times {
                    std::hint::black_box(repeat(call));
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let times = match self.repeat {
            Some((Repeat::AddResponseHeader, times)) => times,
            // `RateLimit` and `RateLimit-Policy`.
            Some((Repeat::Floor, _)) => 2,
            _ => 0,
        };
        for _ in 0..times {
            std::hint::black_box(repeat(Repeat::AddResponseHeader));
        }
        Action::Continue
    }
}
