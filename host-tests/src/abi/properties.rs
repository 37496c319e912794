//! Properties: `proxy_get_property` and `proxy_set_property`.
//!
//! A path is its components separated by NUL bytes (`source\0address`).
//! Served, as Envoy's attributes (values as Envoy serialises them: text as
//! is, integers as 8-byte little-endian, maps as serialised pairs):
//!
//! - `source.address` (`IP:port`, `[IPv6]:port`), `source.port`,
//!   `destination.address`, `destination.port`;
//! - `request.path`, `request.url_path`, `request.query`, `request.host`,
//!   `request.scheme`, `request.method`, `request.headers` (and
//!   `request.headers.<name>`), `request.referer`, `request.useragent`,
//!   `request.id`, `request.protocol`, `request.time` (ns since the epoch),
//!   `request.size`;
//! - `response.code`, `response.code_details`, `response.headers` (and
//!   `response.headers.<name>`), `response.size`, once there is a response;
//! - `plugin_name`, `plugin_root_id`, `plugin_vm_id`, `node` (an
//!   `envoy.config.core.v3.Node` with `id` and `cluster`), `node.id`,
//!   `node.cluster`;
//! - any path the filter set on the stream with `proxy_set_property`.
//!
//! Under the ngx_wasm_module flavour `source.address` is the IP alone,
//! integers are decimal text and `node` is not served. Anything else is
//! `NOT_FOUND`.

use crate::http::SourceAddress;
use std::net::SocketAddr;

use wasmtime::{Caller, Linker};

use super::{AbiResult, answer, memory};
use crate::headers::{HeaderMap, serialize_pairs};
use crate::options::HostFlavor;
use crate::state::{HostState, ProxyEnv, StreamData};
use crate::types::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         path: u32,
         path_size: u32,
         value_out: u32,
         value_size_out: u32| {
            answer(get_property(
                &mut caller,
                path,
                path_size,
                value_out,
                value_size_out,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         path: u32,
         path_size: u32,
         value: u32,
         value_size: u32| {
            answer(set_property(
                &mut caller,
                path,
                path_size,
                value,
                value_size,
            ))
        },
    )?;
    Ok(())
}

/// A property value before serialisation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Text(Vec<u8>),
    Integer(i64),
    Map(Vec<(Vec<u8>, Vec<u8>)>),
    /// Serialised already (a protobuf message, a value set by the filter).
    Raw(Vec<u8>),
}

impl Value {
    fn text(text: impl Into<Vec<u8>>) -> Value {
        Value::Text(text.into())
    }

    fn encode(self, flavor: HostFlavor) -> Vec<u8> {
        match self {
            Value::Text(bytes) | Value::Raw(bytes) => bytes,
            Value::Integer(number) => match flavor {
                HostFlavor::Envoy => number.to_le_bytes().to_vec(),
                HostFlavor::NgxWasmModule => number.to_string().into_bytes(),
            },
            Value::Map(pairs) => serialize_pairs(&pairs),
        }
    }
}

fn get_property(
    caller: &mut Caller<'_, HostState>,
    path: u32,
    path_size: u32,
    value_out: u32,
    value_size_out: u32,
) -> AbiResult<()> {
    let path = memory::read(caller, path, path_size)?;
    let state = caller.data_mut();
    let env = std::sync::Arc::clone(&state.env);
    let stream = state.effective_stream().map(|stream| &*stream);
    let value = resolve(&env, stream, &path).ok_or(Status::NotFound)?;
    let bytes = value.encode(env.flavor);
    memory::return_bytes(caller, &bytes, value_out, value_size_out)
}

fn set_property(
    caller: &mut Caller<'_, HostState>,
    path: u32,
    path_size: u32,
    value: u32,
    value_size: u32,
) -> AbiResult<()> {
    let path = memory::read(caller, path, path_size)?;
    let value = memory::read(caller, value, value_size)?;
    // Envoy keeps filter-set properties in the stream's filter state: a root
    // context has none.
    let stream = caller
        .data_mut()
        .effective_stream()
        .ok_or(Status::NotFound)?;
    stream.properties.insert(path, value);
    Ok(())
}

fn resolve(env: &ProxyEnv, stream: Option<&StreamData>, raw_path: &[u8]) -> Option<Value> {
    let path: Vec<&[u8]> = raw_path.split(|byte| *byte == 0).collect();
    let builtin = match path.as_slice() {
        [b"plugin_name"] => Some(Value::text(env.plugin_name.as_str())),
        [b"plugin_root_id"] => Some(Value::text(env.root_id.as_str())),
        [b"plugin_vm_id"] => Some(Value::text(env.vm_id.as_str())),
        [b"node"] if env.flavor == HostFlavor::Envoy => Some(Value::Raw(node_message(env))),
        [b"node", b"id"] => Some(Value::text(env.node.id.as_str())),
        [b"node", b"cluster"] => Some(Value::text(env.node.cluster.as_str())),
        [b"source", b"address"] => match &stream?.facts.source_address {
            SourceAddress::FromSource => {
                address_field(env.flavor, Some(stream?.facts.source), b"address")
            }
            SourceAddress::Text(text) => Some(Value::text(text.as_str())),
            SourceAddress::Missing => None,
        },
        [b"source", field] => address_field(env.flavor, Some(stream?.facts.source), field),
        [b"destination", field] => address_field(env.flavor, stream?.facts.destination, field),
        [b"request", rest @ ..] => request_field(stream?, rest),
        [b"response", rest @ ..] => response_field(stream?, rest),
        _ => None,
    };
    builtin.or_else(|| {
        stream
            .and_then(|stream| stream.properties.get(raw_path))
            .map(|value| Value::Raw(value.clone()))
    })
}

fn address_field(flavor: HostFlavor, address: Option<SocketAddr>, field: &[u8]) -> Option<Value> {
    let address = address?;
    match field {
        b"address" => Some(Value::text(match flavor {
            // `SocketAddr`'s display is Envoy's form: `[::1]:80` for IPv6.
            HostFlavor::Envoy => address.to_string(),
            HostFlavor::NgxWasmModule => address.ip().to_string(),
        })),
        b"port" => Some(Value::Integer(i64::from(address.port()))),
        _ => None,
    }
}

fn header(headers: Option<&HeaderMap>, name: &[u8]) -> Option<Value> {
    headers?.get(name).map(Value::text)
}

/// All values of `name`, joined by commas as Envoy's attribute maps join them.
fn joined_header(headers: Option<&HeaderMap>, name: &[u8]) -> Option<Value> {
    let name = name.to_ascii_lowercase();
    let values: Vec<Vec<u8>> = headers?
        .to_pairs()
        .into_iter()
        .filter(|(candidate, _)| candidate.as_bytes() == name.as_slice())
        .map(|(_, value)| value.into_bytes())
        .collect();
    (!values.is_empty()).then(|| Value::Text(values.join(&b","[..])))
}

fn map(headers: Option<&HeaderMap>) -> Option<Value> {
    let pairs = headers?
        .to_pairs()
        .into_iter()
        .map(|(name, value)| (name.into_bytes(), value.into_bytes()))
        .collect();
    Some(Value::Map(pairs))
}

fn size(length: usize) -> Value {
    Value::Integer(i64::try_from(length).unwrap_or(i64::MAX))
}

fn request_field(stream: &StreamData, path: &[&[u8]]) -> Option<Value> {
    let headers = stream.request_headers.as_ref();
    let full_path = headers.and_then(|headers| headers.get(b":path"));
    match path {
        [b"path"] => header(headers, b":path"),
        [b"url_path"] => {
            let full_path = full_path?;
            let end = full_path
                .iter()
                .position(|byte| *byte == b'?')
                .unwrap_or(full_path.len());
            Some(Value::text(full_path.get(..end)?))
        }
        [b"query"] => {
            let full_path = full_path?;
            let query = match full_path.iter().position(|byte| *byte == b'?') {
                Some(mark) => full_path.get(mark + 1..)?,
                None => &[],
            };
            Some(Value::text(query))
        }
        [b"host"] => header(headers, b":authority"),
        [b"scheme"] => header(headers, b":scheme"),
        [b"method"] => header(headers, b":method"),
        [b"referer"] => header(headers, b"referer"),
        [b"useragent"] => header(headers, b"user-agent"),
        [b"id"] => header(headers, b"x-request-id"),
        [b"protocol"] => Some(Value::text(stream.facts.protocol.as_str())),
        [b"time"] => Some(Value::Integer(
            i64::try_from(stream.facts.start_ns).unwrap_or(i64::MAX),
        )),
        [b"size"] => Some(size(stream.facts.body_size)),
        [b"headers"] => map(headers),
        [b"headers", name] => joined_header(headers, name),
        _ => None,
    }
}

fn response_field(stream: &StreamData, path: &[&[u8]]) -> Option<Value> {
    let headers = stream.response_headers.as_ref();
    match path {
        [b"code"] => {
            let status = headers?.get(b":status")?;
            let code: i64 = std::str::from_utf8(status).ok()?.parse().ok()?;
            Some(Value::Integer(code))
        }
        [b"code_details"] => stream.response_code_details.as_deref().map(Value::text),
        [b"size"] => Some(size(stream.response_body.as_ref()?.len())),
        [b"headers"] => map(headers),
        [b"headers", name] => joined_header(headers, name),
        _ => None,
    }
}

fn varint(mut value: usize, into: &mut Vec<u8>) {
    while value >= 0x80 {
        into.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    into.push(value as u8);
}

/// `envoy.config.core.v3.Node { id = 1; cluster = 2; }` in protobuf wire form.
fn node_message(env: &ProxyEnv) -> Vec<u8> {
    let mut message = Vec::new();
    for (tag, field) in [(0x0a, &env.node.id), (0x12, &env.node.cluster)] {
        message.push(tag);
        varint(field.len(), &mut message);
        message.extend_from_slice(field.as_bytes());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn addresses_follow_the_flavour() {
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080);
        assert_eq!(
            address_field(HostFlavor::Envoy, Some(v6), b"address"),
            Some(Value::text("[::1]:8080"))
        );
        assert_eq!(
            address_field(HostFlavor::NgxWasmModule, Some(v6), b"address"),
            Some(Value::text("::1"))
        );
        assert_eq!(
            Value::Integer(8080).encode(HostFlavor::Envoy),
            8080i64.to_le_bytes().to_vec()
        );
        assert_eq!(
            Value::Integer(8080).encode(HostFlavor::NgxWasmModule),
            b"8080"
        );
        assert_eq!(address_field(HostFlavor::Envoy, None, b"port"), None);
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut bytes = Vec::new();
        varint(300, &mut bytes);
        assert_eq!(bytes, [0xac, 0x02]);
    }
}
