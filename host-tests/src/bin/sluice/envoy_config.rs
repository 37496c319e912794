//! The proxy-wasm plugins of an Envoy configuration (bootstrap, xDS resources or an Istio
//! `EnvoyFilter`, as YAML or JSON), wherever they sit: listeners' HTTP filters,
//! `typed_per_filter_config`, extension configs, `TypedStruct` wrappers.
//!
//! A plugin is a `envoy.extensions.filters.{http,network}.wasm.v3.Wasm` message; its
//! `config.configuration` is what the filter receives. Envoy hands a
//! `google.protobuf.StringValue` (or `BytesValue`) over as its text and any other type as
//! serialized protobuf, which no JSON reader accepts.

use saphyr::{MarkedYaml, YamlData};

use crate::embedded::{Embedded, Found, Skipped, is_sluice};
use crate::yaml_tree::{as_str, at, get, location, scalar_text};

const WASM_TYPES: &[&str] = &[
    "envoy.extensions.filters.http.wasm.v3.Wasm",
    "envoy.extensions.filters.network.wasm.v3.Wasm",
];
const TYPED_STRUCTS: &[&str] = &["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];
const STRING_VALUE: &str = "google.protobuf.StringValue";

/// Every proxy-wasm plugin in `documents` (read from `file`).
pub fn plugins(file: &str, documents: &[MarkedYaml<'_>]) -> Found {
    let mut found = Found::default();
    for document in documents {
        walk(file, document, &mut Vec::new(), &mut found);
    }
    found
}

/// The type a `@type` or `type_url` names, without its `type.googleapis.com/` prefix.
fn type_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn walk(file: &str, node: &MarkedYaml<'_>, path: &mut Vec<String>, found: &mut Found) {
    match &node.data {
        YamlData::Mapping(map) => {
            let type_url = get(node, "@type").and_then(as_str).map(type_name);
            if type_url.is_some_and(|t| WASM_TYPES.contains(&t)) {
                plugin(file, node, path, found);
                return;
            }
            if type_url.is_some_and(|t| TYPED_STRUCTS.contains(&t))
                && get(node, "type_url")
                    .and_then(as_str)
                    .is_some_and(|t| WASM_TYPES.contains(&type_name(t)))
                && let Some(value) = get(node, "value")
            {
                path.push(".value".to_string());
                plugin(file, value, path, found);
                path.pop();
                return;
            }
            for (key, value) in map {
                path.push(format!(
                    ".{}",
                    scalar_text(key).unwrap_or_else(|| "?".into())
                ));
                walk(file, value, path, found);
                path.pop();
            }
        }
        YamlData::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                let name = get(item, "name").and_then(as_str);
                path.push(match name {
                    Some(name) => format!("[{name}]"),
                    None => format!("[{index}]"),
                });
                walk(file, item, path, found);
                path.pop();
            }
        }
        YamlData::Tagged(_, inner) => walk(file, inner, path, found),
        _ => {}
    }
}

/// One `Wasm` message at `path`.
fn plugin(file: &str, wasm: &MarkedYaml<'_>, path: &[String], found: &mut Found) {
    let config = get(wasm, "config");
    let text = |keys: &[&str]| config.and_then(|c| at(c, keys)).and_then(as_str);
    let name = text(&["name"]).unwrap_or("");
    let names = [
        name,
        text(&["root_id"]).unwrap_or(""),
        text(&["vm_config", "vm_id"]).unwrap_or(""),
        text(&["vm_config", "code", "local", "filename"]).unwrap_or(""),
        text(&["vm_config", "code", "remote", "http_uri", "uri"]).unwrap_or(""),
    ];
    let where_ = path.concat();
    let what = format!(
        "wasm plugin \"{name}\" at {}",
        where_.strip_prefix('.').unwrap_or(&where_)
    );
    let configuration = config.and_then(|c| get(c, "configuration"));
    let (start, bytes) = match configuration {
        // No configuration: the filter receives an empty one.
        None => (config.unwrap_or(wasm), Ok(Vec::new())),
        Some(any) => {
            let type_url = get(any, "@type").and_then(as_str).unwrap_or("");
            match get(any, "value") {
                _ if type_name(type_url) != STRING_VALUE => (
                    any,
                    Err(format!(
                        "configuration is a \"{type_url}\": Envoy hands the filter the text of a \
                         google.protobuf.StringValue, and any other type as binary protobuf; put \
                         the sluice JSON in a StringValue"
                    )),
                ),
                None => (any, Ok(Vec::new())),
                Some(value) => match as_str(value) {
                    Some(json) => (value, Ok(json.as_bytes().to_vec())),
                    None => (
                        value,
                        Err("configuration.value must be a string (the sluice JSON)".to_string()),
                    ),
                },
            }
        }
    };
    let location = location(file, start);
    if is_sluice(&names, bytes.as_deref().ok()) {
        found.configs.push(Embedded {
            location,
            what,
            config: bytes,
        });
    } else {
        found.skipped.push(Skipped { location, what });
    }
}
