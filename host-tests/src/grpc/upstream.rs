//! The `upstream` argument of `proxy_grpc_call` and `proxy_grpc_stream`, read
//! as Envoy reads it (`Context::grpcCall` in
//! `source/extensions/common/wasm/context.cc`): bytes that parse as a
//! serialized `envoy.config.core.v3.GrpcService` are that service; any
//! other bytes are a cluster name.
//!
//! The decoder follows protobuf's wire format as the C++ runtime parses it
//! (unknown fields skipped, groups matched, a recursion limit of 100, proto3
//! strings checked for UTF-8), for the fields Envoy's gRPC client uses:
//! `envoy_grpc` (`cluster_name`, `authority`, `max_receive_message_length`)
//! and `initial_metadata` (`key`, `value`). The other known fields
//! (`google_grpc`, `timeout`, `retry_policy`) are checked for their wire
//! structure only.

/// What the bytes name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// A `GrpcService` with an `envoy_grpc` target.
    EnvoyGrpc(EnvoyGrpc),
    /// A `GrpcService` with a `google_grpc` target (Envoy's Google gRPC
    /// client, which this host does not have).
    GoogleGrpc,
    /// A `GrpcService` without a target (the empty string is one).
    NoTarget,
    /// Bytes that are not a `GrpcService`: a cluster name.
    ClusterName(Vec<u8>),
}

/// `envoy.config.core.v3.GrpcService.EnvoyGrpc`, with the service's
/// `initial_metadata`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvoyGrpc {
    pub cluster_name: String,
    /// The `:authority` sent; the cluster name when empty.
    pub authority: String,
    /// `max_receive_message_length`; 0 (or absent) is no limit.
    pub max_receive_message_length: u32,
    /// `GrpcService.initial_metadata`: sent with every call.
    pub initial_metadata: Vec<(String, String)>,
}

/// Reads the `upstream` argument.
pub(crate) fn parse(bytes: &[u8]) -> Upstream {
    match parse_service(bytes) {
        Some(upstream) => upstream,
        None => Upstream::ClusterName(bytes.to_vec()),
    }
}

/// protobuf's default recursion limit (`CodedInputStream`).
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A field's tag: its number and wire type.
struct Tag {
    number: u32,
    wire_type: u8,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for index in 0..10 {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(length)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn tag(&mut self) -> Option<Tag> {
        // A tag is read as a 32-bit varint; field number 0 is invalid.
        let tag = self.varint()? as u32;
        let number = tag >> 3;
        if number == 0 {
            return None;
        }
        Some(Tag {
            number,
            wire_type: (tag & 7) as u8,
        })
    }

    fn length_delimited(&mut self) -> Option<&'a [u8]> {
        let length = usize::try_from(self.varint()?).ok()?;
        if length > i32::MAX as usize {
            return None;
        }
        self.take(length)
    }

    /// Skips the value of a field of an unknown (or unused) field.
    fn skip(&mut self, tag: &Tag, depth: u32) -> Option<()> {
        match tag.wire_type {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.take(8).map(|_| ()),
            LENGTH_DELIMITED => self.length_delimited().map(|_| ()),
            START_GROUP => self.skip_group(tag.number, depth + 1),
            FIXED32 => self.take(4).map(|_| ()),
            // An end-group outside its group, or wire types 6 and 7.
            _ => None,
        }
    }

    fn skip_group(&mut self, number: u32, depth: u32) -> Option<()> {
        if depth > RECURSION_LIMIT {
            return None;
        }
        loop {
            let tag = self.tag()?;
            if tag.wire_type == END_GROUP {
                return (tag.number == number).then_some(());
            }
            self.skip(&tag, depth)?;
        }
    }
}

/// Checks the wire structure of a message whose fields are not used.
fn check_message(bytes: &[u8], depth: u32) -> Option<()> {
    if depth > RECURSION_LIMIT {
        return None;
    }
    let mut reader = Reader::new(bytes);
    while !reader.done() {
        let tag = reader.tag()?;
        reader.skip(&tag, depth)?;
    }
    Some(())
}

/// A proto3 `string`: the C++ runtime refuses one that is not UTF-8.
fn string(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

/// Whether `tag` is the length-delimited field `number` (a known field with
/// another wire type is kept as an unknown field).
fn is_message(tag: &Tag, number: u32) -> bool {
    tag.number == number && tag.wire_type == LENGTH_DELIMITED
}

fn parse_service(bytes: &[u8]) -> Option<Upstream> {
    let mut reader = Reader::new(bytes);
    let mut target = Upstream::NoTarget;
    let mut initial_metadata = Vec::new();
    let depth = 1;
    while !reader.done() {
        let tag = reader.tag()?;
        if is_message(&tag, 1) {
            let value = reader.length_delimited()?;
            // `target_specifier` is a oneof: a second `envoy_grpc` merges
            // into the first, a switch from `google_grpc` starts afresh.
            let mut envoy = match target {
                Upstream::EnvoyGrpc(envoy) => envoy,
                _ => EnvoyGrpc::default(),
            };
            merge_envoy_grpc(&mut envoy, value, depth + 1)?;
            target = Upstream::EnvoyGrpc(envoy);
        } else if is_message(&tag, 2) {
            check_message(reader.length_delimited()?, depth + 1)?;
            target = Upstream::GoogleGrpc;
        } else if is_message(&tag, 5) {
            let value = reader.length_delimited()?;
            initial_metadata.push(parse_header_value(value, depth + 1)?);
        } else if is_message(&tag, 3) || is_message(&tag, 6) {
            check_message(reader.length_delimited()?, depth + 1)?;
        } else {
            reader.skip(&tag, depth)?;
        }
    }
    if let Upstream::EnvoyGrpc(envoy) = &mut target {
        envoy.initial_metadata = initial_metadata;
    }
    Some(target)
}

fn merge_envoy_grpc(envoy: &mut EnvoyGrpc, bytes: &[u8], depth: u32) -> Option<()> {
    if depth > RECURSION_LIMIT {
        return None;
    }
    let mut reader = Reader::new(bytes);
    while !reader.done() {
        let tag = reader.tag()?;
        if is_message(&tag, 1) {
            envoy.cluster_name = string(reader.length_delimited()?)?;
        } else if is_message(&tag, 2) {
            envoy.authority = string(reader.length_delimited()?)?;
        } else if is_message(&tag, 4) {
            // `google.protobuf.UInt32Value`: present means its value (0
            // when unset).
            let wrapper = reader.length_delimited()?;
            envoy.max_receive_message_length = parse_uint32_value(wrapper, depth + 1)?;
        } else if is_message(&tag, 3) {
            check_message(reader.length_delimited()?, depth + 1)?;
        } else {
            reader.skip(&tag, depth)?;
        }
    }
    Some(())
}

fn parse_uint32_value(bytes: &[u8], depth: u32) -> Option<u32> {
    if depth > RECURSION_LIMIT {
        return None;
    }
    let mut reader = Reader::new(bytes);
    let mut value = 0;
    while !reader.done() {
        let tag = reader.tag()?;
        if tag.number == 1 && tag.wire_type == VARINT {
            // A uint32 keeps the low 32 bits of the varint.
            value = reader.varint()? as u32;
        } else {
            reader.skip(&tag, depth)?;
        }
    }
    Some(value)
}

/// `envoy.config.core.v3.HeaderValue`: `key` and `value` (`raw_value`,
/// which Envoy's gRPC client does not send, is checked only).
fn parse_header_value(bytes: &[u8], depth: u32) -> Option<(String, String)> {
    if depth > RECURSION_LIMIT {
        return None;
    }
    let mut reader = Reader::new(bytes);
    let (mut key, mut value) = (String::new(), String::new());
    while !reader.done() {
        let tag = reader.tag()?;
        if is_message(&tag, 1) {
            key = string(reader.length_delimited()?)?;
        } else if is_message(&tag, 2) {
            value = string(reader.length_delimited()?)?;
        } else {
            reader.skip(&tag, depth)?;
        }
    }
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u8, value: &[u8]) -> Vec<u8> {
        let mut bytes = vec![(number << 3) | LENGTH_DELIMITED, value.len() as u8];
        bytes.extend_from_slice(value);
        bytes
    }

    #[test]
    fn a_plain_name_is_a_cluster_name() {
        assert_eq!(
            parse(b"limits"),
            Upstream::ClusterName(b"limits".to_vec()),
            "'l' is field 13 with an end-group wire type: not a GrpcService"
        );
        assert_eq!(
            parse(b"sluice_service"),
            Upstream::ClusterName(b"sluice_service".to_vec())
        );
    }

    #[test]
    fn a_serialized_grpc_service_names_its_envoy_cluster() {
        let mut envoy_grpc = field(1, b"limits");
        envoy_grpc.extend(field(2, b"rls.internal"));
        // max_receive_message_length { value: 300 }
        envoy_grpc.extend(field(4, &[0x08, 0xac, 0x02]));
        let mut service = field(1, &envoy_grpc);
        let mut header = field(1, b"x-tenant");
        header.extend(field(2, b"blue"));
        service.extend(field(5, &header));
        assert_eq!(
            parse(&service),
            Upstream::EnvoyGrpc(EnvoyGrpc {
                cluster_name: "limits".to_string(),
                authority: "rls.internal".to_string(),
                max_receive_message_length: 300,
                initial_metadata: vec![("x-tenant".to_string(), "blue".to_string())],
            })
        );
    }

    #[test]
    fn the_oneof_target_merges_and_switches_as_protobuf_does() {
        let mut service = field(1, &field(1, b"first"));
        service.extend(field(1, &field(2, b"authority")));
        let Upstream::EnvoyGrpc(envoy) = parse(&service) else {
            panic!("an envoy_grpc target");
        };
        assert_eq!(envoy.cluster_name, "first", "the second envoy_grpc merged");
        assert_eq!(envoy.authority, "authority");

        let mut switched = field(1, &field(1, b"first"));
        switched.extend(field(2, &field(1, b"dns:///target")));
        assert_eq!(parse(&switched), Upstream::GoogleGrpc);
        assert_eq!(parse(b""), Upstream::NoTarget, "the empty message");
    }

    #[test]
    fn malformed_messages_and_invalid_strings_are_cluster_names() {
        let truncated = vec![0x0a, 0x05, 0x0a];
        assert_eq!(parse(&truncated), Upstream::ClusterName(truncated.clone()));
        let not_utf8 = field(1, &field(1, &[0xff, 0xfe]));
        assert_eq!(parse(&not_utf8), Upstream::ClusterName(not_utf8.clone()));
        let wire_type_7 = vec![0x0f];
        assert_eq!(
            parse(&wire_type_7),
            Upstream::ClusterName(wire_type_7.clone())
        );
        let unmatched_group = vec![0x0b, 0x14];
        assert_eq!(
            parse(&unmatched_group),
            Upstream::ClusterName(unmatched_group.clone()),
            "a group of field 1 closed by field 2"
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x0b, 200).collect();
        assert_eq!(parse(&deep), Upstream::ClusterName(deep.clone()));
    }

    #[test]
    fn unknown_fields_and_known_fields_of_another_wire_type_are_skipped() {
        // field 9 varint, field 1 as a varint (unknown), a fixed64 and a
        // closed group, then the target.
        let mut service = vec![0x48, 0x01, 0x08, 0x07, 0x51];
        service.extend_from_slice(&[0; 8]);
        service.extend_from_slice(&[0x5b, 0x08, 0x01, 0x5c]);
        service.extend(field(1, &field(1, b"limits")));
        assert!(
            matches!(parse(&service), Upstream::EnvoyGrpc(envoy) if envoy.cluster_name == "limits")
        );
    }

    #[test]
    fn no_input_makes_the_decoder_panic() {
        // A deterministic sweep of short inputs (every input surface is
        // answered, never panicked on).
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for length in 0..64 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..length)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (seed >> 24) as u8
                    })
                    .collect();
                let _ = parse(&bytes);
            }
        }
    }
}
