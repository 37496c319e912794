//! Direct calls to the host ABI, answering the raw status code.
//!
//! The SDK's wrappers panic on any status they do not expect for a call, which
//! would turn every error answer of the host into a trap. The probe exists to
//! observe those answers, so it declares the imports itself (with the same
//! wasm signatures as the SDK, so both declarations resolve to one import).

use std::ptr::{null, null_mut};

pub const OK: u32 = 0;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_status(
        buffer_type: u32,
        return_buffer_size: *mut usize,
        return_flags: *mut u32,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_size(map_type: u32, return_map_size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
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
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
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
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_grpc_call(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        message_data_data: *const u8,
        message_data_size: usize,
        timeout: u32,
        return_callout_id: *mut u32,
    ) -> u32;
    fn proxy_grpc_stream(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        return_stream_id: *mut u32,
    ) -> u32;
    fn proxy_grpc_send(
        token: u32,
        message_ptr: *const u8,
        message_len: usize,
        end_stream: bool,
    ) -> u32;
    fn proxy_grpc_cancel(token_id: u32) -> u32;
    fn proxy_grpc_close(token_id: u32) -> u32;
    fn proxy_get_status(
        return_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_done() -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    /// Not part of any ABI version: lets the tests check how the host answers
    /// an import it does not know.
    fn proxy_probe_unknown_hostcall(argument: u32) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buffer: *mut u8, buffer_size: usize) -> i32;
}

/// An address far beyond any memory the probe will ever have: every access
/// through it is out of bounds.
pub const INVALID_ADDRESS: usize = 0xFFFF_FF00;

/// Takes ownership of a buffer the host allocated in this module's memory
/// (through `proxy_on_memory_allocate`, which allocates exactly `size` bytes).
fn take_host_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: the host filled `data` with a pointer returned by
        // `proxy_on_memory_allocate(size)`, an exactly `size`-byte allocation.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

pub fn log(level: u32, message: &str) -> u32 {
    unsafe { proxy_log(level, message.as_ptr(), message.len()) }
}

pub fn log_from_invalid_memory() -> u32 {
    unsafe { proxy_log(2, INVALID_ADDRESS as *const u8, 0x1000) }
}

pub fn log_level() -> (u32, u32) {
    let mut level = 0;
    let status = unsafe { proxy_get_log_level(&mut level) };
    (status, level)
}

pub fn current_time() -> (u32, u64) {
    let mut time = 0;
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut time) };
    (status, time)
}

pub fn buffer_bytes(buffer_type: u32, start: usize, max_size: usize) -> (u32, Option<Vec<u8>>) {
    let mut data = null_mut();
    let mut size = 0;
    let status =
        unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    (status, take_host_buffer(data, size))
}

pub fn buffer_status(buffer_type: u32) -> (u32, usize) {
    let mut size = 0;
    let mut flags = 0;
    let status = unsafe { proxy_get_buffer_status(buffer_type, &mut size, &mut flags) };
    (status, size)
}

pub fn header_map_pairs(map_type: u32) -> (u32, Option<Vec<u8>>) {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    (status, take_host_buffer(data, size))
}

pub fn header_map_size(map_type: u32) -> (u32, usize) {
    let mut size = 0;
    let status = unsafe { proxy_get_header_map_size(map_type, &mut size) };
    (status, size)
}

pub fn header_value(map_type: u32, key: &str) -> (u32, Option<Vec<u8>>) {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe {
        proxy_get_header_map_value(map_type, key.as_ptr(), key.len(), &mut data, &mut size)
    };
    (status, take_host_buffer(data, size))
}

pub fn set_header_map_from_invalid_memory(map_type: u32) -> u32 {
    unsafe { proxy_set_header_map_pairs(map_type, INVALID_ADDRESS as *const u8, 64) }
}

pub fn header_value_into_invalid_memory(map_type: u32, key: &str) -> u32 {
    let mut size = 0;
    unsafe {
        proxy_get_header_map_value(
            map_type,
            key.as_ptr(),
            key.len(),
            INVALID_ADDRESS as *mut *mut u8,
            &mut size,
        )
    }
}

pub fn property(path: &[u8]) -> (u32, Option<Vec<u8>>) {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    (status, take_host_buffer(data, size))
}

pub fn set_property(path: &[u8], value: &[u8]) -> u32 {
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

pub fn shared_data(key: &str) -> (u32, Option<Vec<u8>>, u32) {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    (status, take_host_buffer(data, size), cas)
}

pub fn shared_data_with_invalid_key() -> u32 {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    unsafe {
        proxy_get_shared_data(
            INVALID_ADDRESS as *const u8,
            0x1000,
            &mut data,
            &mut size,
            &mut cas,
        )
    }
}

/// Sets `key`; `None` passes a null value pointer (a delete on hosts that
/// support it).
pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: u32) -> u32 {
    let (data, size) = value.map_or((null(), 0), |value| (value.as_ptr(), value.len()));
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), data, size, cas) }
}

pub fn register_shared_queue(name: &str) -> u32 {
    let mut id = 0;
    unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) }
}

pub fn resolve_shared_queue(vm_id: &str, name: &str) -> u32 {
    let mut id = 0;
    unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    }
}

pub fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> u32 {
    unsafe { proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len()) }
}

pub fn dequeue_shared_queue(queue_id: u32) -> u32 {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_dequeue_shared_queue(queue_id, &mut data, &mut size) };
    drop(take_host_buffer(data, size));
    status
}

pub fn continue_stream(stream_type: u32) -> u32 {
    unsafe { proxy_continue_stream(stream_type) }
}

pub fn close_stream(stream_type: u32) -> u32 {
    unsafe { proxy_close_stream(stream_type) }
}

pub fn send_local_response(
    status_code: u32,
    details: &str,
    body: &[u8],
    serialized_headers: &[u8],
    grpc_status: i32,
) -> u32 {
    unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            serialized_headers.as_ptr(),
            serialized_headers.len(),
            grpc_status,
        )
    }
}

pub fn http_call(upstream: &str, serialized_headers: &[u8]) -> u32 {
    let mut token = 0;
    unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            serialized_headers.as_ptr(),
            serialized_headers.len(),
            null(),
            0,
            null(),
            0,
            1000,
            &mut token,
        )
    }
}

pub fn grpc_call(upstream: &str) -> u32 {
    let mut token = 0;
    let service = "probe.Service";
    let method = "Call";
    unsafe {
        proxy_grpc_call(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            null(),
            0,
            null(),
            0,
            1000,
            &mut token,
        )
    }
}

pub fn grpc_stream(upstream: &str) -> u32 {
    let mut token = 0;
    let service = "probe.Service";
    let method = "Stream";
    unsafe {
        proxy_grpc_stream(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            null(),
            0,
            &mut token,
        )
    }
}

pub fn grpc_send(token: u32) -> u32 {
    unsafe { proxy_grpc_send(token, null(), 0, true) }
}

/// `proxy_grpc_send` of `message` on `token`.
pub fn grpc_send_message(token: u32, message: &[u8], end_stream: bool) -> u32 {
    unsafe { proxy_grpc_send(token, message.as_ptr(), message.len(), end_stream) }
}

pub fn grpc_cancel(token: u32) -> u32 {
    unsafe { proxy_grpc_cancel(token) }
}

pub fn grpc_close(token: u32) -> u32 {
    unsafe { proxy_grpc_close(token) }
}

pub fn status() -> (u32, u32, Option<Vec<u8>>) {
    let mut code = 0;
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe { proxy_get_status(&mut code, &mut data, &mut size) };
    (status, code, take_host_buffer(data, size))
}

pub fn set_effective_context(context_id: u32) -> u32 {
    unsafe { proxy_set_effective_context(context_id) }
}

pub fn call_foreign_function(name: &str) -> u32 {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, &mut data, &mut size)
    };
    drop(take_host_buffer(data, size));
    status
}

pub fn done() -> u32 {
    unsafe { proxy_done() }
}

pub fn define_metric(metric_type: u32, name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn metric(metric_id: u32) -> (u32, u64) {
    let mut value = 0;
    let status = unsafe { proxy_get_metric(metric_id, &mut value) };
    (status, value)
}

pub fn record_metric(metric_id: u32, value: u64) -> u32 {
    unsafe { proxy_record_metric(metric_id, value) }
}

pub fn increment_metric(metric_id: u32, delta: i64) -> u32 {
    unsafe { proxy_increment_metric(metric_id, delta) }
}

pub fn unknown_hostcall() -> u32 {
    unsafe { proxy_probe_unknown_hostcall(7) }
}

/// WASI `random_get` into a 16-byte buffer: the errno and the bytes.
pub fn random_bytes() -> (i32, [u8; 16]) {
    let mut buffer = [0u8; 16];
    let errno = unsafe { random_get(buffer.as_mut_ptr(), buffer.len()) };
    (errno, buffer)
}

/// Serialises header pairs as the ABI expects (count, sizes, NUL-terminated
/// names and values).
pub fn serialize_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}
