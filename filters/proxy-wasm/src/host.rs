//! Raw proxy-wasm host calls for the places where an error is an expected answer.
//!
//! The SDK's wrappers panic on any status they do not expect, and a panic takes the plugin
//! down. Shared data (whose failures the rules' failure modes handle), metrics and logging are
//! therefore called directly here, with every status turned into a value.

use std::ptr::{null, null_mut};

use sluice_core::{SetError, SlotStore, StoreError};

use crate::header_map::HeaderMap;

/// Status codes of ABI v0.2.1 that the filter tells apart.
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// proxy-wasm `LogLevel`.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum LogLevel {
    Info = 2,
    Warn = 3,
    Error = 4,
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// `MapType::HttpRequestHeaders`.
const HTTP_REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpResponseHeaders`.
const HTTP_RESPONSE_HEADERS: u32 = 2;

/// The request's header map, serialised as the host gives it (empty if it gives none).
pub fn request_headers() -> HeaderMap {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the out-pointers are valid and writable.
    let status = answering(|| unsafe {
        proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size)
    });
    // SAFETY: the host allocated the map with our allocator (or left it null).
    let bytes = unsafe { host_buffer(data, size) };
    HeaderMap::new(if status == OK { bytes } else { Vec::new() })
}

/// Asks for `proxy_on_tick` every `period`; false if the host refused (the SDK's wrapper
/// would panic instead).
pub fn set_tick_period(period: std::time::Duration) -> bool {
    let millis = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: a plain value.
    unsafe { proxy_set_tick_period_milliseconds(millis) == OK }
}

/// Sets a header of the request to the upstream, replacing every line of that name the
/// client sent; false if the host refused.
pub fn set_request_header(name: &str, value: &[u8]) -> bool {
    // SAFETY: `name` and `value` are valid for the call.
    let status = unsafe {
        proxy_replace_header_map_value(
            HTTP_REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == OK
}

/// Removes every line of a header from the request to the upstream; false if the host
/// refused.
pub fn remove_request_header(name: &str) -> bool {
    // SAFETY: `name` is valid for the call.
    let status =
        unsafe { proxy_remove_header_map_value(HTTP_REQUEST_HEADERS, name.as_ptr(), name.len()) };
    status == OK
}

/// Adds a header to the upstream's response; false if the host refused.
pub fn add_response_header(name: &str, value: &[u8]) -> bool {
    // SAFETY: `name` and `value` are valid for the call.
    let status = unsafe {
        proxy_add_header_map_value(
            HTTP_RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == OK
}

/// A property's value; `path` is its segments joined by NUL bytes (`source\0address`).
pub fn property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: `path` is valid for the call; the out-pointers are valid and writable.
    let status = answering(|| unsafe {
        proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size)
    });
    // SAFETY: the host allocated the value with our allocator (or left it null).
    let value = unsafe { host_buffer(data, size) };
    (status == OK && !data.is_null()).then_some(value)
}

/// Answers the request locally; `headers` is a header map serialised as the ABI's
/// (see `header_map`). False if the host refused.
pub fn send_local_response(status: u16, headers: &[u8], body: &[u8]) -> bool {
    const NO_GRPC_STATUS: i32 = -1;
    // SAFETY: every pointer and length describes a slice valid for the call.
    let result = unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            NO_GRPC_STATUS,
        )
    };
    result == OK
}

/// `MapType::HttpCallResponseHeaders`.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// `BufferType::HttpCallResponseBody`.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// `StreamType::HttpRequest`.
const HTTP_REQUEST_STREAM: u32 = 0;

/// Runs a host call that answers a buffer the host copies into guest memory; with the
/// `count-allocations` feature, allocations meanwhile count as the host's copies.
#[inline(always)]
fn answering<T>(call: impl FnOnce() -> T) -> T {
    #[cfg(feature = "count-allocations")]
    return crate::allocations::in_host_call(call);
    #[cfg(not(feature = "count-allocations"))]
    call()
}

/// Takes ownership of a buffer the host allocated in guest memory.
///
/// # Safety
/// `data` is null or points to `size` bytes the host obtained from this module's allocator.
unsafe fn host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: as the caller guarantees.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// The `:status` of the response to an HTTP call, inside `on_http_call_response`; `None` when
/// there is no response (the call failed) or the status is not a number.
pub fn http_call_status() -> Option<u16> {
    let key = ":status";
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: `key` is valid for the call; the out-pointers are valid and writable.
    let status = answering(|| unsafe {
        proxy_get_header_map_value(
            HTTP_CALL_RESPONSE_HEADERS,
            key.as_ptr(),
            key.len(),
            &mut data,
            &mut size,
        )
    });
    // SAFETY: the host allocated the value with our allocator (or left it null).
    let value = unsafe { host_buffer(data, size) };
    if status != OK {
        return None;
    }
    core::str::from_utf8(&value).ok()?.trim().parse().ok()
}

/// The body of the response to an HTTP call (`size` bytes as the callback announced), inside
/// `on_http_call_response`; `None` if the host does not give it.
pub fn http_call_body(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    let mut data: *mut u8 = null_mut();
    let mut returned: usize = 0;
    // SAFETY: the out-pointers are valid and writable.
    let status = answering(|| unsafe {
        proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, size, &mut data, &mut returned)
    });
    // SAFETY: as in `http_call_status`.
    let body = unsafe { host_buffer(data, returned) };
    (status == OK).then_some(body)
}

/// Resumes the paused request; false if the host refused.
pub fn continue_request() -> bool {
    // SAFETY: a plain value.
    unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) == OK }
}

/// Makes `context_id` the context the next stream calls act on (until the current callback
/// returns); false if the host refused (e.g. a stream that no longer exists).
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: a plain value.
    unsafe { proxy_set_effective_context(context_id) == OK }
}

/// Whether the host checks the context id given to `proxy_set_effective_context` (Envoy
/// refuses an unknown one): a host that answers OK to an id no context has ignores the call,
/// so it cannot resume a stream from the root context.
pub fn effective_context_is_checked() -> bool {
    // No context ever has this id.
    // SAFETY: a plain value.
    unsafe { proxy_set_effective_context(u32::MAX) != OK }
}

/// Writes one log line; a host that refuses it is ignored (there is nowhere else to report).
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the pointer and length describe `message`, valid for the call.
    unsafe {
        proxy_log(level as u32, message.as_ptr(), message.len());
    }
}

/// The host's wall clock in nanoseconds since the Unix epoch, if it answers.
pub fn now_nanos() -> Option<u64> {
    let mut now = 0u64;
    // SAFETY: `now` is a valid, writable u64 for the duration of the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut now) };
    (status == OK).then_some(now)
}

/// Defines a counter metric and returns its id.
pub fn define_counter(name: &str) -> Option<u32> {
    const COUNTER: u32 = 0;
    let mut id = 0u32;
    // SAFETY: `name` is valid for the call and `id` is writable.
    let status = unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

/// Adds `delta` to a counter; zero deltas are skipped (a host rejects them).
pub fn increment(id: u32, delta: u64) {
    if delta == 0 {
        return;
    }
    let delta = i64::try_from(delta).unwrap_or(i64::MAX);
    // SAFETY: plain values only.
    unsafe {
        proxy_increment_metric(id, delta);
    }
}

/// The proxy's shared data, as the limiter's `SlotStore`.
#[derive(Debug, Default)]
pub struct SharedData;

impl SlotStore for SharedData {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the out-pointers are valid and writable; `key` is valid for the call.
        let status = answering(|| unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        });
        value.clear();
        match status {
            OK => {
                if !data.is_null() {
                    // SAFETY: the host copied `size` bytes into guest memory it obtained from our
                    // allocator (malloc / proxy_on_memory_allocate), and hands its ownership to us.
                    *value = unsafe { Vec::from_raw_parts(data, size, size) };
                }
                Ok(Some(cas))
            }
            NOT_FOUND => Ok(None),
            other => Err(StoreError::Host(other)),
        }
    }

    /// `cas == 0` (a key the limiter saw missing) creates the key only if it is still absent,
    /// atomically on both hosts; any other cas is a plain compare-and-swap.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        if cas != 0 {
            return set_raw(key, value, cas);
        }
        // Envoy: a set on a missing key succeeds whatever the cas, and on an existing key only
        // if the cas matches; a cas no existing key carries therefore creates atomically (cas 0
        // would overwrite unconditionally). ngx_wasm_module refuses a non-zero cas for a
        // missing key, and takes cas 0 as an atomic create instead.
        match set_raw(key, value, CREATE_CAS) {
            Err(SetError::CasMismatch) => {}
            other => return other,
        }
        let mut existing = Vec::new();
        match self.get(key, &mut existing) {
            Ok(Some(_)) => Err(SetError::CasMismatch),
            Ok(None) => set_raw(key, value, 0),
            Err(e) => Err(SetError::Store(e)),
        }
    }
}

/// The cas used to create a key on Envoy. Envoy numbers writes from 1 with one process-wide
/// counter, so an existing key carries this cas only if it was written as the 4,294,967,295th
/// write and never since; buckets are created once, at start-up.
const CREATE_CAS: u32 = u32::MAX;

fn set_raw(key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
    // SAFETY: `key` and `value` are valid for the call.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        OK => Ok(()),
        CAS_MISMATCH => Err(SetError::CasMismatch),
        other => Err(SetError::Store(StoreError::Host(other))),
    }
}
